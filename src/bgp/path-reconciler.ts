// Desired VIP paths vs. what gobgpd's global RIB holds → AddPath/DeletePath.
//
// We reconcile against gobgpd's own RIB (ListPath), never against memory of
// what we sent: after an agent restart that adopts the existing paths (no
// withdraw/re-add, so the routers never see a flap), and after a gobgpd
// restart (empty RIB) it re-announces everything.
import type { Logger } from '../log/logger.js';
import { buildPath, parseVipPrefix, prefixKey, sameSummary, summarizePath, type DesiredVip, type PathOptions, type PathSummary } from './attributes.js';
import { FAMILY_V4, FAMILY_V6, type ApiDestination, type ApiPath } from './api-types.js';
import type { GobgpClient } from './gobgp-client.js';
import { isIpv4 } from '../net/ip.js';

export interface PathDiff {
  /** New or changed (AddPath of the same NLRI replaces our previous path). */
  add: ApiPath[];
  /** Prefix keys to withdraw. */
  delete: ApiPath[];
  unchanged: number;
}

export function desiredPaths(vips: DesiredVip[], opts: PathOptions): Map<string, ApiPath> {
  const m = new Map<string, ApiPath>();
  for (const v of vips) {
    const key = prefixKey(v.prefix);
    if (m.has(key)) throw new Error(`VIP ${key} is listed twice`);
    m.set(key, buildPath(v, opts));
  }
  return m;
}

/** Our paths in a ListPath(GLOBAL) answer: locally originated ones (import rejects the rest anyway). */
export function localPaths(dests: ApiDestination[]): Map<string, ApiPath> {
  const m = new Map<string, ApiPath>();
  for (const d of dests) {
    for (const p of d.paths) {
      const local = !p.neighbor_ip || p.neighbor_ip === '<nil>' || p.neighbor_ip === '0.0.0.0' || p.neighbor_ip === '::';
      if (local && !p.is_withdraw) {
        const s = summarizePath(p);
        m.set(prefixKey(s.prefix), p);
      }
    }
  }
  return m;
}

/** Pure diff between desired and actual paths keyed by prefix. */
export function diffPaths(desired: Map<string, ApiPath>, actual: Map<string, ApiPath>): PathDiff {
  const diff: PathDiff = { add: [], delete: [], unchanged: 0 };
  for (const [k, want] of desired) {
    const have = actual.get(k);
    if (have && sameSummary(summarizePath(want), summarizePath(have))) diff.unchanged++;
    else diff.add.push(want);
  }
  for (const [k, have] of actual) if (!desired.has(k)) diff.delete.push(have);
  return diff;
}

export async function readGlobalRib(client: GobgpClient): Promise<Map<string, ApiPath>> {
  const [v4, v6] = await Promise.all([client.listPath('GLOBAL', FAMILY_V4), client.listPath('GLOBAL', FAMILY_V6)]);
  return localPaths([...v4, ...v6]);
}

/** Paths per address family: what gobgpd's GetTable should count for a RIB that holds exactly these. */
export interface RibCounts {
  v4: number;
  v6: number;
}

export function countByFamily(paths: Map<string, ApiPath>): RibCounts {
  const c: RibCounts = { v4: 0, v6: 0 };
  for (const p of paths.values()) {
    if (p.family.afi === FAMILY_V6.afi) c.v6++;
    else c.v4++;
  }
  return c;
}

/**
 * Whether gobgpd's global RIB holds as many destinations and paths of each
 * family as `expected` (two small GetTable answers instead of every path).
 * Equal counts do not prove equal paths: a path replaced in place (same
 * prefix, other attributes) keeps them; a path deleted, added or a RIB
 * emptied by a restart changes them.
 */
export async function ribCountsMatch(client: GobgpClient, expected: RibCounts): Promise<boolean> {
  const [v4, v6] = await Promise.all([client.getTable('GLOBAL', FAMILY_V4), client.getTable('GLOBAL', FAMILY_V6)]);
  return v4.destinations === expected.v4 && v4.paths === expected.v4 && v6.destinations === expected.v6 && v6.paths === expected.v6;
}

/** Above this many additions a client stream is used instead of one RPC per path. */
export const STREAM_THRESHOLD = 64;

export async function applyPathDiff(client: GobgpClient, diff: PathDiff, concurrency = 16): Promise<void> {
  if (diff.add.length >= STREAM_THRESHOLD) {
    await client.addPathStream(diff.add);
  } else {
    await runLimited(diff.add, concurrency, (p) => client.addPath(p));
  }
  if (diff.delete.length >= STREAM_THRESHOLD) {
    // AddPathStream carries withdrawals too (is_withdraw), one stream instead of N DeletePath calls.
    await client.addPathStream(diff.delete.map((p) => ({ nlri: p.nlri, pattrs: p.pattrs, family: p.family, is_withdraw: true })));
  } else {
    await runLimited(diff.delete, concurrency, (p) => client.deletePath({ path: p }));
  }
}

export async function runLimited<T>(items: T[], limit: number, fn: (t: T) => Promise<unknown>): Promise<void> {
  let i = 0;
  const worker = async () => {
    while (i < items.length) {
      const item = items[i++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export async function reconcilePaths(client: GobgpClient, desired: Map<string, ApiPath>, log?: Logger): Promise<PathDiff> {
  const actual = await readGlobalRib(client);
  const diff = diffPaths(desired, actual);
  if (diff.add.length || diff.delete.length) {
    log?.info({ add: diff.add.length, withdraw: diff.delete.length, unchanged: diff.unchanged }, 'reconciling VIP paths');
  }
  await applyPathDiff(client, diff);
  return diff;
}

/**
 * Family selection: a VIP goes only to peers of its own address family (an
 * IPv6 VIP over an IPv6 session, whose local address gobgpd puts as the
 * next hop), among the peers its attributes allow. The VIPs that no
 * configured peer can carry, e.g. IPv6 VIPs on an edge with IPv4 sessions
 * only: allocated, yet announced to no router.
 */
export function vipsWithoutPeer(vips: DesiredVip[], peers: string[]): string[] {
  return vips
    .filter((v) => {
      const v6 = parseVipPrefix(v.prefix).v6;
      const allowed = v.attrs.peers.length > 0 ? peers.filter((p) => v.attrs.peers.includes(p)) : peers;
      return !allowed.some((p) => isIpv4(p) !== v6);
    })
    .map((v) => prefixKey(v.prefix));
}

/** The desired VIPs one peer may receive: those of its address family, a restricted one only if the peer is among its peers. */
export function vipsForPeer(vips: DesiredVip[], peer: string): DesiredVip[] {
  const peerV4 = isIpv4(peer);
  return vips.filter((v) => (v.attrs.peers.length === 0 || v.attrs.peers.includes(peer)) && parseVipPrefix(v.prefix).v6 !== peerV4);
}

/** What one peer should have been sent: desired VIPs it may receive, of its address family, mark stripped. */
export function expectedAdjOut(vips: DesiredVip[], peer: string, opts: PathOptions): Map<string, PathSummary> {
  const m = new Map<string, PathSummary>();
  for (const v of vipsForPeer(vips, peer)) {
    const s = summarizePath(buildPath({ prefix: v.prefix, attrs: { ...v.attrs, peers: [] } }, opts));
    m.set(prefixKey(v.prefix), s);
  }
  return m;
}

/**
 * How many paths gobgpd's adjacency-out for `peer` holds (GetTable: gobgpd
 * runs the export policy and counts, one small answer, where readAdjOut
 * streams every path for the agent to decode). Only the peer's own family,
 * the one its session carries.
 */
export async function adjOutCount(client: GobgpClient, peer: string): Promise<number> {
  return (await client.getTable('ADJ_OUT', isIpv4(peer) ? FAMILY_V4 : FAMILY_V6, peer)).paths;
}

export interface AdjOutMismatch {
  peer: string;
  missing: string[];
  unexpected: string[];
  /** Present but with different communities/large communities/MED/AS path. */
  differing: string[];
}

/**
 * Pure comparison of one peer's adjacency-out with what it should get. Next
 * hop, LOCAL_PREF (stripped on eBGP) and the AS path (gobgpd prepends on
 * export) are rewritten per session, so only the attributes we set that
 * survive export are compared.
 */
export function compareAdjOut(peer: string, expected: Map<string, PathSummary>, actual: Map<string, PathSummary>): AdjOutMismatch | null {
  const mm: AdjOutMismatch = { peer, missing: [], unexpected: [], differing: [] };
  for (const [k, want] of expected) {
    const have = actual.get(k);
    if (!have) mm.missing.push(k);
    else if (
      JSON.stringify([want.communities, want.largeCommunities, want.med]) !== JSON.stringify([have.communities, have.largeCommunities, have.med])
    ) {
      mm.differing.push(k);
    }
  }
  for (const k of actual.keys()) if (!expected.has(k)) mm.unexpected.push(k);
  return mm.missing.length || mm.unexpected.length || mm.differing.length ? mm : null;
}

export async function readAdjOut(client: GobgpClient, peer: string): Promise<Map<string, PathSummary>> {
  const dests = await client.listPath('ADJ_OUT', isIpv4(peer) ? FAMILY_V4 : FAMILY_V6, peer);
  const m = new Map<string, PathSummary>();
  for (const d of dests) {
    for (const p of d.paths) {
      if (p.is_withdraw) continue;
      const s = summarizePath(p);
      m.set(prefixKey(s.prefix), s);
    }
  }
  return m;
}
