// Desired peers (from config) vs. what gobgpd has (ListPeer) → the minimal
// AddPeer / UpdatePeer / DeletePeer set. Only a peer whose own settings
// changed is touched, so a reload that adds or edits one peer never resets
// the sessions of the others.
import { readFileSync, statSync } from 'node:fs';
import type { PeerConfig } from '../config/types.js';
import { passwordFromText } from '../config/formats.js';
import type { Logger } from '../log/logger.js';
import { FAMILY_V4, FAMILY_V6, type ApiPeer } from './api-types.js';
import { canonicalAddress } from './attributes.js';
import type { GobgpClient } from './gobgp-client.js';
import { isIp, isIpv4 } from '../net/ip.js';

/** Seconds between gobgpd's connection attempts (its default, 120 s, is far too slow to recover). */
export const CONNECT_RETRY_S = 1;

/** Everything about a peer we configure, normalised so desired and actual compare with ===. */
export interface PeerSpec {
  address: string;
  asn: number;
  localAsn: number;
  localAddress: string;
  password: string;
  holdTime: number;
  keepalive: number;
  multihop: number;
  passive: boolean;
  gracefulRestart: boolean;
  restartTime: number;
}

export interface PeerDiff {
  add: PeerSpec[];
  update: PeerSpec[];
  delete: string[];
}

/** Reads an MD5 password file; refuses world-readable files as the config docs promise. */
export function readPasswordFile(path: string, where: string): string {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new Error(`${where}: passwordFile ${path}: ${(e as Error).message}`, { cause: e });
  }
  if ((st.mode & 0o004) !== 0) throw new Error(`${where}: passwordFile ${path} is world-readable; chmod o-r it`);
  const pw = passwordFromText(readFileSync(path, 'utf8'));
  if (typeof pw !== 'string') throw new Error(`${where}: passwordFile ${path} ${pw.problem}`);
  return pw;
}


export function desiredPeerSpec(p: PeerConfig, localAsn: number, password: string): PeerSpec {
  if (!isIp(p.address)) throw new Error(`bgp.peers[${p.address}]: address is not an IP address`);
  return {
    address: canonicalAddress(p.address),
    asn: p.asn,
    localAsn,
    localAddress: p.localAddress && canonicalAddress(p.localAddress),
    password,
    holdTime: p.holdTime,
    keepalive: p.keepalive,
    multihop: p.multihop,
    passive: p.passive,
    gracefulRestart: p.gracefulRestart.enabled,
    restartTime: p.gracefulRestart.enabled ? p.gracefulRestart.restartTime : 0,
  };
}

/** Build desired specs from config, reading password files through `readPassword` (I/O injected). */
export function desiredPeers(
  peers: PeerConfig[],
  localAsn: number,
  readPassword: (path: string, where: string) => string = readPasswordFile,
): PeerSpec[] {
  const seen = new Set<string>();
  return peers.map((p, i) => {
    const where = `bgp.peers[${i}] (${p.address})`;
    const spec = desiredPeerSpec(p, localAsn, p.passwordFile ? readPassword(p.passwordFile, where) : '');
    if (seen.has(spec.address)) throw new Error(`${where}: duplicate peer address`);
    seen.add(spec.address);
    return spec;
  });
}

export function peerSpecToApi(s: PeerSpec): ApiPeer {
  const family = isIpv4(s.address) ? FAMILY_V4 : FAMILY_V6;
  return {
    conf: { neighbor_address: s.address, peer_asn: s.asn, local_asn: s.localAsn, auth_password: s.password, description: 'edgelb' },
    ebgp_multihop: { enabled: s.multihop > 0, multihop_ttl: s.multihop },
    timers: { config: { connect_retry: CONNECT_RETRY_S, hold_time: s.holdTime, keepalive_interval: s.keepalive, idle_hold_time_after_reset: 1 } },
    transport: { local_address: s.localAddress, passive_mode: s.passive },
    graceful_restart: { enabled: s.gracefulRestart, restart_time: s.restartTime },
    afi_safis: [
      {
        config: { family, enabled: true },
        ...(s.gracefulRestart ? { mp_graceful_restart: { config: { enabled: true } } } : {}),
      },
    ],
  };
}

export function peerSpecFromApi(p: ApiPeer): PeerSpec {
  const gr = p.graceful_restart?.enabled ?? false;
  const local = p.transport?.local_address ?? '';
  return {
    address: p.conf.neighbor_address,
    asn: p.conf.peer_asn,
    localAsn: p.conf.local_asn ?? 0,
    // gobgpd reports an unset local address as the wildcard.
    localAddress: local === '0.0.0.0' || local === '::' ? '' : local,
    password: p.conf.auth_password ?? '',
    holdTime: Number(p.timers?.config?.hold_time ?? 0),
    keepalive: Number(p.timers?.config?.keepalive_interval ?? 0),
    multihop: p.ebgp_multihop?.enabled ? p.ebgp_multihop.multihop_ttl : 0,
    passive: p.transport?.passive_mode ?? false,
    gracefulRestart: gr,
    restartTime: gr ? (p.graceful_restart?.restart_time ?? 0) : 0,
  };
}

/**
 * gobgpd reports the address a session actually bound to once it connects,
 * so an unset (kernel-chosen) local address matches whatever it reports.
 */
function sameLocalAddress(desired: PeerSpec, actual: PeerSpec): boolean {
  return desired.localAddress === '' || desired.localAddress === actual.localAddress;
}

export function sameSpec(desired: PeerSpec, actual: PeerSpec): boolean {
  return (Object.keys(desired) as (keyof PeerSpec)[]).every((k) => (k === 'localAddress' ? sameLocalAddress(desired, actual) : desired[k] === actual[k]));
}

/** Pure: what to add, update and delete to turn `actual` into `desired`. */
export function diffPeers(desired: PeerSpec[], actual: PeerSpec[]): PeerDiff {
  const have = new Map(actual.map((p) => [p.address, p]));
  const want = new Set(desired.map((p) => p.address));
  const diff: PeerDiff = { add: [], update: [], delete: [] };
  for (const d of desired) {
    const a = have.get(d.address);
    if (!a) diff.add.push(d);
    else if (!sameSpec(d, a)) diff.update.push(d);
  }
  for (const a of actual) if (!want.has(a.address)) diff.delete.push(a.address);
  return diff;
}

export function diffIsEmpty(d: PeerDiff): boolean {
  return d.add.length === 0 && d.update.length === 0 && d.delete.length === 0;
}

/**
 * Changes that gobgpd cannot apply in place (ASN, local address, password,
 * transport) are applied as delete + add of that one peer; UpdatePeer would
 * otherwise silently keep some of the old values.
 */
export function needsRecreate(desired: PeerSpec, actual: PeerSpec | undefined): boolean {
  if (!actual) return false;
  return (
    desired.asn !== actual.asn ||
    desired.localAsn !== actual.localAsn ||
    !sameLocalAddress(desired, actual) ||
    desired.password !== actual.password ||
    desired.passive !== actual.passive ||
    desired.multihop !== actual.multihop ||
    desired.gracefulRestart !== actual.gracefulRestart ||
    desired.restartTime !== actual.restartTime
  );
}

/** I/O edge: read gobgpd's peers, apply the diff, return it. */
export async function reconcilePeers(client: GobgpClient, desired: PeerSpec[], log?: Logger): Promise<PeerDiff> {
  const actualList = (await client.listPeer()).map(peerSpecFromApi);
  const actual = new Map(actualList.map((p) => [p.address, p]));
  const diff = diffPeers(desired, actualList);
  for (const addr of diff.delete) {
    log?.info({ peer: addr }, 'deleting BGP peer');
    await client.deletePeer(addr);
  }
  for (const p of diff.update) {
    if (needsRecreate(p, actual.get(p.address))) {
      log?.info({ peer: p.address }, 're-creating BGP peer (session settings changed)');
      await client.deletePeer(p.address);
      await client.addPeer(peerSpecToApi(p));
    } else {
      log?.info({ peer: p.address }, 'updating BGP peer');
      await client.updatePeer(peerSpecToApi(p));
    }
  }
  for (const p of diff.add) {
    log?.info({ peer: p.address, asn: p.asn }, 'adding BGP peer');
    await client.addPeer(peerSpecToApi(p));
  }
  return diff;
}
