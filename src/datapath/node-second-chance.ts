// The node's side of the second chance (docs/second-chance.md,
// bpf/include/node_second_chance.h, node_second_chance6.h): node_sc_backends
// (IPv4 frontends) and node_sc_backends6 (IPv6 ones) hold every backend of
// the node's DSR TCP frontends, cluster-wide, with its node — the only
// secondaries a node will hand a packet to. Pure planning (scBackendEntries)
// and one writer that changes only what differs.
import type { BpfMap } from './loader.js';
import type { DesiredService } from '../model/types.js';
import { ipv4ToU32, isIpv4, isIpv6 } from '../net/ip.js';
import { ipv6Bytes, isV6 } from './node-maps.js';

export const NODE_SC_MAP = 'node_sc_backends';
export const NODE_SC6_MAP = 'node_sc_backends6';
export const NODE_SC_STATS_MAP = 'node_sc_stats';
/** node_config.flags: hand-overs are passed to the stack instead of FIB-routed (tests). */
export const NODE_CFG_SC_FIB_BYPASS = 0x80;

export const NODE_SC_STAT_NAMES = [
  'sc_owned',
  'sc_handed',
  'sc_handed_local',
  'sc_handed_in',
  'sc_fib_bypass',
  'sc_drop_not_backend',
  'sc_drop_handed',
  'sc_drop_no_route',
  'sc_drop_ttl',
  'sc_drop_malformed',
] as const;
export type NodeScStatName = (typeof NODE_SC_STAT_NAMES)[number];

export interface ScBackendEntry {
  vip: string;
  port: number;
  podIp: string;
  podPort: number;
  nodeIp: string;
}

/**
 * Every backend (ready or terminating) of the DSR TCP frontends, either
 * family: the second chance is TCP only. A backend is listed with a pod and
 * a node address of its frontend's family.
 */
export function scBackendEntries(services: readonly DesiredService[]): ScBackendEntry[] {
  const out: ScBackendEntry[] = [];
  for (const s of services) {
    const dsr = s.mode === 'dsr' || s.mode === 'hybrid';
    if (!dsr || s.frontend.protocol !== 'TCP') continue;
    const ofFamily = isV6(s.frontend.vip) ? isIpv6 : isIpv4;
    for (const b of s.backends) {
      // An endpoint on a node without a known address of the family cannot be handed to (issue 12: nodeIp '').
      if (!ofFamily(b.ip) || !ofFamily(b.nodeIp)) continue;
      out.push({ vip: s.frontend.vip, port: s.frontend.port, podIp: b.ip, podPort: b.port, nodeIp: b.nodeIp });
    }
  }
  return out;
}

/** The map an entry goes to, by its VIP's family. */
export function scBackendMapOf(e: Pick<ScBackendEntry, 'vip'>): typeof NODE_SC_MAP | typeof NODE_SC6_MAP {
  return isV6(e.vip) ? NODE_SC6_MAP : NODE_SC_MAP;
}

/** struct node_sc_be_key, or node_sc6_be_key for an IPv6 VIP (40 bytes: vip6, port, proto, pad, pod6, port, pad). */
export function encodeScBackendKey(e: Pick<ScBackendEntry, 'vip' | 'port' | 'podIp' | 'podPort'>): Buffer {
  if (isV6(e.vip)) {
    const k = Buffer.alloc(40);
    ipv6Bytes(e.vip, 'VIP').copy(k, 0);
    k.writeUInt16BE(e.port, 16);
    k[18] = 6;
    ipv6Bytes(e.podIp, 'backend IP').copy(k, 20);
    k.writeUInt16BE(e.podPort, 36);
    return k;
  }
  const k = Buffer.alloc(16);
  k.writeUInt32BE(ipv4ToU32(e.vip, 'VIP'), 0);
  k.writeUInt16BE(e.port, 4);
  k[6] = 6;
  k.writeUInt32BE(ipv4ToU32(e.podIp, 'backend IP'), 8);
  k.writeUInt16BE(e.podPort, 12);
  return k;
}

export function encodeScBackendValue(nodeIp: string): Buffer {
  if (isV6(nodeIp)) return ipv6Bytes(nodeIp, 'node IP');
  const v = Buffer.alloc(4);
  v.writeUInt32BE(ipv4ToU32(nodeIp, 'node IP'), 0);
  return v;
}

/** Makes a node_sc_backends map hold exactly `entries` (all of its family: scBackendMapOf); returns what changed. */
export function writeScBackends(map: BpfMap, entries: readonly ScBackendEntry[]): { added: number; updated: number; removed: number } {
  const want = new Map<string, { k: Buffer; v: Buffer }>();
  for (const e of entries) {
    const k = encodeScBackendKey(e);
    want.set(k.toString('hex'), { k, v: encodeScBackendValue(e.nodeIp) });
  }
  let added = 0;
  let updated = 0;
  let removed = 0;
  for (const k of map.keys()) if (!want.has(k.toString('hex')) && map.delete(k)) removed++;
  for (const { k, v } of want.values()) {
    const cur = map.lookup(k);
    if (cur && cur.equals(v)) continue;
    map.update(k, v);
    if (cur) updated++;
    else added++;
  }
  return { added, updated, removed };
}

/** node_sc_stats summed over CPUs. */
export function sumScCounters(map: BpfMap): Record<NodeScStatName, number> {
  const out = {} as Record<NodeScStatName, number>;
  NODE_SC_STAT_NAMES.forEach((name, i) => {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(i);
    const slots = map.lookupPerCpu(k) ?? [];
    out[name] = Number(slots.reduce((acc, b) => acc + b.readBigUInt64LE(0), 0n));
  });
  return out;
}
