// Byte layouts of the edge program's maps (bpf/include/edge_maps.h,
// edge_counters.h). Multi-byte fields the program compares with packet
// bytes (addresses, ports) are network order; ids, offsets, sizes and flags
// are host order (little-endian on every platform edgelb runs on: x86-64,
// arm64). Change both sides together. Addresses, CIDRs, protocols and
// ports are read and checked by src/net.
import { parseCidr } from '../net/cidr.js';
import { bigIntToIp, ipFamily, ipToBigInt, ipv4ToU32, u32ToIpv4 } from '../net/ip.js';
import { checkPort } from '../net/l4.js';

export const SVC_F_SNAT = 0x1;
export const SVC_F_SRC_RANGES = 0x2;
export const SVC_F_MARKER = 0x4;

export const BE_F_VALID = 0x1;
export const BE_F_ACTIVE = 0x2;
export const BE_F_IPIP = 0x4;

export const CFG_F_FIB_BYPASS = 0x1;
export const CFG_F_GW_MAC = 0x2;
export const CFG_F_NO_FIB_CACHE = 0x4;
/** own_mac is the uplink's: frames to another unicast MAC are left to the stack (edge_frame_other_host). */
export const CFG_F_DST_MAC = 0x8;

/** Slots in edge_ring; EDGE_RING_PER_ELEM per array element. */
export const EDGE_RING_SLOTS = 1 << 24;
export const EDGE_RING_PER_ELEM = 16;
export const EDGE_MAX_SERVICES = 1 << 16;
export const EDGE_MAX_BACKENDS = 1 << 18;

/** Every map of bpf/out/edge.o. */
/** struct edge_sc_prev (bpf/include/edge_second_chance.h; second-chance.ts encodes it). */
export const SC_PREV_SIZE = 24;

export const EDGE_MAP_NAMES = [
  'edge_services',
  'edge_ring',
  'edge_backends',
  'edge_ct',
  'edge_affinity',
  'edge_src_ranges',
  'edge_snat_rev',
  'edge_snat_frags',
  'edge_frag_scratch',
  'edge_config',
  'edge_stats',
  'edge_svc_stats',
  'edge_be_stats',
  'edge_insert_limit',
  'edge_icmp_bucket',
  'edge_fib_cache',
  'edge_sc_prev',
  'edge_sc_flows',
  'edge_sc_stats',
  'edge_services6',
  'edge_backends6',
  'edge_ct6',
  'edge_affinity6',
  'edge_src_ranges6',
  'edge_config6',
  'edge_fib_cache6',
  'edge_sc_flows6',
  'edge_snat_rev6',
  'edge_snat_frags6',
  'edge_frag6_scratch',
  'edge_progs',
  'edge_progs_tc',
] as const;
export type EdgeMapName = (typeof EDGE_MAP_NAMES)[number];

/** enum edge_stat, in order. */
export const EDGE_STAT_NAMES = [
  'drop_no_backend',
  'drop_src_range',
  'drop_fragment',
  'drop_ip_options',
  'drop_vlan',
  'drop_adjust',
  'drop_snat_ports',
  'drop_too_big_icmp_fail',
  'drop_malformed',
  'fib_pass',
  'fib_bypass',
  'ct_insert_skipped',
  'icmp_too_big_sent',
  'too_big_pass',
  'icmp_steered',
  'icmp_not_steered',
  'snat_reverse',
  'ct_stale',
  'affinity_hit',
  'snat_reclaimed',
  'drop_snat_iface',
  'drop_bad_source',
  'drop_ttl',
  'ttl_exceeded',
  'drop_unsupported6',
  'snat_rst_ignored',
  'drop_icmp_rate',
  'snat_fin_ignored',
  'drop_l2_group',
  'snat_icmp',
  'snat_fragment',
  'other_host',
] as const;
export type EdgeStatName = (typeof EDGE_STAT_NAMES)[number];

export interface SvcKey {
  vip: string;
  port: number;
  /** IP protocol number; 0 (with port 0) = the VIP marker. */
  proto: number;
}

export const SVC_KEY_SIZE = 8;
export const SVC_VALUE_SIZE = 20;

export function encodeSvcKey(k: SvcKey): Buffer {
  checkPort(k.port, 'service port');
  const b = Buffer.alloc(SVC_KEY_SIZE);
  b.writeUInt32BE(ipv4ToU32(k.vip, 'VIP'), 0);
  b.writeUInt16BE(k.port, 4);
  b.writeUInt8(k.proto, 6);
  return b;
}

export function decodeSvcKey(b: Buffer): SvcKey {
  return { vip: u32ToIpv4(b.readUInt32BE(0)), port: b.readUInt16BE(4), proto: b.readUInt8(6) };
}

export interface SvcValue {
  id: number;
  ringOff: number;
  ringSize: number;
  affinityTimeout: number;
  flags: number;
}

export function encodeSvc(v: SvcValue): Buffer {
  const b = Buffer.alloc(SVC_VALUE_SIZE);
  b.writeUInt32LE(v.id, 0);
  b.writeUInt32LE(v.ringOff, 4);
  b.writeUInt32LE(v.ringSize, 8);
  b.writeUInt32LE(v.affinityTimeout, 12);
  b.writeUInt32LE(v.flags, 16);
  return b;
}

export function decodeSvc(b: Buffer): SvcValue {
  return {
    id: b.readUInt32LE(0),
    ringOff: b.readUInt32LE(4),
    ringSize: b.readUInt32LE(8),
    affinityTimeout: b.readUInt32LE(12),
    flags: b.readUInt32LE(16),
  };
}

export interface BackendValue {
  ip: string;
  nodeIp: string;
  port: number;
  flags: number;
  svcId: number;
}

export const BACKEND_SIZE = 16;

export function encodeBackendInto(v: BackendValue, b: Buffer, off = 0): void {
  checkPort(v.port, 'backend port');
  b.writeUInt32BE(ipv4ToU32(v.ip, 'backend IP'), off);
  b.writeUInt32BE(ipv4ToU32(v.nodeIp, 'node IP'), off + 4);
  b.writeUInt16BE(v.port, off + 8);
  b.writeUInt8(v.flags, off + 10);
  b.writeUInt8(0, off + 11);
  b.writeUInt32LE(v.svcId, off + 12);
}

export function encodeBackend(v: BackendValue): Buffer {
  const b = Buffer.alloc(BACKEND_SIZE);
  encodeBackendInto(v, b);
  return b;
}

export function decodeBackend(b: Buffer): BackendValue {
  return {
    ip: u32ToIpv4(b.readUInt32BE(0)),
    nodeIp: u32ToIpv4(b.readUInt32BE(4)),
    port: b.readUInt16BE(8),
    flags: b.readUInt8(10),
    svcId: b.readUInt32LE(12),
  };
}

export interface CtKey {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
}

export const CT_KEY_SIZE = 16;
export const CT_VALUE_SIZE = 8;

export function encodeCtKey(k: CtKey): Buffer {
  const b = Buffer.alloc(CT_KEY_SIZE);
  b.writeUInt32BE(ipv4ToU32(k.saddr), 0);
  b.writeUInt32BE(ipv4ToU32(k.daddr), 4);
  b.writeUInt16BE(k.sport, 8);
  b.writeUInt16BE(k.dport, 10);
  b.writeUInt8(k.proto, 12);
  return b;
}

export interface CtValue {
  backendId: number;
  snatPort: number;
  /** CT_F_* (the client's FIN/RST), absent = 0. */
  flags?: number;
}

export const CT_F_FIN = 0x1;
export const CT_F_RST = 0x2;

export function decodeCtValue(b: Buffer): CtValue {
  return { backendId: b.readUInt32LE(0), snatPort: b.readUInt16BE(4), flags: b.readUInt8(6) };
}

export function encodeCtValue(v: CtValue): Buffer {
  const b = Buffer.alloc(CT_VALUE_SIZE);
  b.writeUInt32LE(v.backendId, 0);
  b.writeUInt16BE(v.snatPort, 4);
  b.writeUInt8(v.flags ?? 0, 6);
  return b;
}

export const SRC_RANGE_KEY_SIZE = 12;

/** LPM key: 32 bits of service id, then the CIDR. */
export function encodeSrcRangeKey(svcId: number, cidr: string): Buffer {
  const c = parseCidr(cidr, { clearHostBits: true });
  if (c.family !== 4) throw new Error(`source range '${cidr}' is not an IPv4 CIDR`);
  const b = Buffer.alloc(SRC_RANGE_KEY_SIZE);
  b.writeUInt32LE(32 + c.prefix, 0);
  b.writeUInt32LE(svcId, 4);
  b.writeUInt32BE(Number(c.base), 8);
  return b;
}

export interface EdgeConfigValue {
  addr: string;
  ipipSrcNet: string;
  ipipSrcBits: number;
  flags: number;
  mtu: number;
  snatPortMin: number;
  snatPortMax: number;
  ctInsertLimit: number;
  /** The same for the IPv6 flow tables, counted apart; EdgeDatapath scales it to edge_ct6's share (ct6InsertLimit). */
  ct6InsertLimit: number;
  gwMac: string;
  ownMac: string;
  /** Test clock (ns); 0n/absent = the kernel's coarse monotonic clock. */
  nowNs?: bigint;
}

export const EDGE_CONFIG_SIZE = 56;

/**
 * edge_snat_rev (struct edge_snat_key / edge_snat_val): only the program
 * reads and writes it, but an object built from older headers (value 16
 * bytes before the reclaim and interface fields, 28 before the RST sequence
 * numbers of struct edge_snat_life) must be refused at open. (A pinned map
 * of the old size is replaced by an empty one at the upgrade's restart,
 * pinned-maps.ts: a flow's next client packet takes its port back.)
 */
export const SNAT_KEY_SIZE = 12;
export const SNAT_VALUE_SIZE = 32;

function macBytes(mac: string, what: string): Buffer {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`${what} '${mac}' is not a MAC address`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

/**
 * The IPv6 flow tables' insert limit: the IPv4 one scaled by edge_ct6's size
 * against edge_ct's, so a flood at the limit rewrites either table at the
 * same pace (edge_select.h). Never 0 for a non-zero limit (0 is unlimited).
 */
export function ct6InsertLimit(ctInsertLimit: number, ctEntries: number, ct6Entries: number): number {
  if (ctInsertLimit === 0) return 0;
  return Math.max(1, Math.min(0xffffffff, Math.round((ctInsertLimit * ct6Entries) / ctEntries)));
}

export function encodeConfig(c: EdgeConfigValue): Buffer {
  if (!Number.isInteger(c.mtu) || c.mtu < 576 || c.mtu > 65535) throw new Error(`datapath mtu ${c.mtu} must be 576..65535`);
  if (!Number.isInteger(c.ipipSrcBits) || c.ipipSrcBits < 0 || c.ipipSrcBits > 16) {
    throw new Error(`IPIP source bits ${c.ipipSrcBits} must be 0..16`);
  }
  checkPort(c.snatPortMin, 'SNAT port min');
  checkPort(c.snatPortMax, 'SNAT port max');
  if (c.snatPortMin > c.snatPortMax) throw new Error(`SNAT port range ${c.snatPortMin}-${c.snatPortMax} is empty`);
  const b = Buffer.alloc(EDGE_CONFIG_SIZE);
  b.writeUInt32BE(ipv4ToU32(c.addr, 'edge address'), 0);
  b.writeUInt32BE(ipv4ToU32(c.ipipSrcNet, 'IPIP source network'), 4);
  b.writeUInt32LE(c.ipipSrcBits, 8);
  b.writeUInt32LE(c.flags, 12);
  b.writeUInt16LE(c.mtu, 16);
  b.writeUInt16LE(c.snatPortMin, 18);
  b.writeUInt16LE(c.snatPortMax, 20);
  b.writeUInt32LE(c.ctInsertLimit, 24);
  macBytes(c.gwMac, 'gateway MAC').copy(b, 28);
  macBytes(c.ownMac, 'own MAC').copy(b, 34);
  b.writeBigUInt64LE(c.nowNs ?? 0n, 40);
  b.writeUInt32LE(c.ct6InsertLimit, 48);
  return b;
}

// ---------------------------------------------------------------- IPv6 (bpf/include/edge_maps6.h)
// An IPv6 frontend's service value is encodeSvc's; its backends take ids
// from the same space as IPv4 ones and its Maglev region lies in the same
// edge_ring. Only keys and addresses are IPv6.

/** 16 network-order bytes of an IPv6 address (any textual form), or an Error naming `what`. */
export function ipv6Bytes(addr: string, what = 'address'): Buffer {
  if (ipFamily(addr) !== 6) throw new Error(`${what} '${addr}' is not an IPv6 address`);
  const v = ipToBigInt(addr).value;
  const b = Buffer.alloc(16);
  b.writeBigUInt64BE(v >> 64n, 0);
  b.writeBigUInt64BE(v & 0xffff_ffff_ffff_ffffn, 8);
  return b;
}

export function ipv6FromBytes(b: Buffer, off = 0): string {
  return bigIntToIp((b.readBigUInt64BE(off) << 64n) | b.readBigUInt64BE(off + 8), 6);
}

export const SVC6_KEY_SIZE = 20;

export function encodeSvc6Key(k: SvcKey): Buffer {
  checkPort(k.port, 'service port');
  const b = Buffer.alloc(SVC6_KEY_SIZE);
  ipv6Bytes(k.vip, 'VIP').copy(b, 0);
  b.writeUInt16BE(k.port, 16);
  b.writeUInt8(k.proto, 18);
  return b;
}

export function decodeSvc6Key(b: Buffer): SvcKey {
  return { vip: ipv6FromBytes(b, 0), port: b.readUInt16BE(16), proto: b.readUInt8(18) };
}

export const BACKEND6_SIZE = 40;

export function encodeBackend6Into(v: BackendValue, b: Buffer, off = 0): void {
  checkPort(v.port, 'backend port');
  ipv6Bytes(v.ip, 'backend IP').copy(b, off);
  ipv6Bytes(v.nodeIp, 'node IP').copy(b, off + 16);
  b.writeUInt16BE(v.port, off + 32);
  b.writeUInt8(v.flags, off + 34);
  b.writeUInt8(0, off + 35);
  b.writeUInt32LE(v.svcId, off + 36);
}

export function encodeBackend6(v: BackendValue): Buffer {
  const b = Buffer.alloc(BACKEND6_SIZE);
  encodeBackend6Into(v, b);
  return b;
}

export function decodeBackend6(b: Buffer): BackendValue {
  return { ip: ipv6FromBytes(b, 0), nodeIp: ipv6FromBytes(b, 16), port: b.readUInt16BE(32), flags: b.readUInt8(34), svcId: b.readUInt32LE(36) };
}

export const CT6_KEY_SIZE = 40;

export function encodeCt6Key(k: CtKey): Buffer {
  const b = Buffer.alloc(CT6_KEY_SIZE);
  ipv6Bytes(k.saddr, 'source').copy(b, 0);
  ipv6Bytes(k.daddr, 'destination').copy(b, 16);
  b.writeUInt16BE(k.sport, 32);
  b.writeUInt16BE(k.dport, 34);
  b.writeUInt8(k.proto, 36);
  return b;
}

export const SRC_RANGE6_KEY_SIZE = 24;

/** LPM key: 32 bits of service id, then the IPv6 CIDR. */
export function encodeSrcRange6Key(svcId: number, cidr: string): Buffer {
  const c = parseCidr(cidr, { clearHostBits: true });
  if (c.family !== 6) throw new Error(`source range '${cidr}' is not an IPv6 CIDR`);
  const b = Buffer.alloc(SRC_RANGE6_KEY_SIZE);
  b.writeUInt32LE(32 + c.prefix, 0);
  b.writeUInt32LE(svcId, 4);
  b.writeBigUInt64BE(BigInt(c.base) >> 64n, 8);
  b.writeBigUInt64BE(BigInt(c.base) & 0xffff_ffff_ffff_ffffn, 16);
  return b;
}

export const EDGE_CONFIG6_SIZE = 16;

/** edge_snat_rev6 (struct edge_snat6_key / edge_snat6_val): program-only, like edge_snat_rev; checked at open. */
/**
 * edge_sc_flows / edge_sc_flows6 value (struct edge_sc_pair): program-only —
 * primary and secondary backend ids, then the client's FIN/RST marks (flags,
 * mark) as in a connection-table entry. 8 bytes before the marks: a pinned
 * map of that size is replaced by an empty one at the upgrade's restart
 * (pinned-maps.ts), and flows it remembered are balanced afresh.
 */
export const SC_PAIR_SIZE = 12;

export const SNAT6_KEY_SIZE = 24;
export const SNAT6_VALUE_SIZE = 56;

/** struct edge_config6: the edge's IPv6 address (IP6IP6 outer source); null = none (:: — IP6IP6 backends are then dropped). */
export function encodeConfig6(addr: string | null): Buffer {
  return addr === null ? Buffer.alloc(EDGE_CONFIG6_SIZE) : ipv6Bytes(addr, 'edge IPv6 address');
}

export function u32Key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

/** Sum a per-CPU {packets, bytes} value (lookup() layout: 16 bytes per CPU). */
export function sumPacketsBytes(b: Buffer): { packets: number; bytes: number } {
  let packets = 0;
  let bytes = 0;
  for (let o = 0; o + 16 <= b.length; o += 16) {
    packets += Number(b.readBigUInt64LE(o));
    bytes += Number(b.readBigUInt64LE(o + 8));
  }
  return { packets, bytes };
}

/** Sum a per-CPU u64 value. */
export function sumU64(b: Buffer): number {
  let n = 0;
  for (let o = 0; o + 8 <= b.length; o += 8) n += Number(b.readBigUInt64LE(o));
  return n;
}

/**
 * Key and value sizes of every edge map user space encodes or decodes (and
 * edge_snat_rev / edge_snat_rev6, see above), as the layouts above define them (value: one
 * element, per CPU for per-CPU maps). edgeLayoutMismatches() compares them with the loaded object at open
 * time, so a struct changed on one side only is an error naming the map, not
 * silently misread entries. edge_ring's value is EDGE_RING_PER_ELEM u32 ids.
 */
export const EDGE_MAP_LAYOUTS: Readonly<Record<string, { key: number; value: number }>> = {
  edge_services: { key: SVC_KEY_SIZE, value: SVC_VALUE_SIZE },
  edge_ring: { key: 4, value: 4 * EDGE_RING_PER_ELEM },
  edge_backends: { key: 4, value: BACKEND_SIZE },
  edge_ct: { key: CT_KEY_SIZE, value: CT_VALUE_SIZE },
  edge_src_ranges: { key: SRC_RANGE_KEY_SIZE, value: 1 },
  edge_snat_rev: { key: SNAT_KEY_SIZE, value: SNAT_VALUE_SIZE },
  // struct edge_snat_frag_key / edge_snat_frag_val and the fragment path's per-CPU scratch (edge_snat_frag.h): program-only.
  edge_snat_frags: { key: 8, value: 24 },
  edge_frag_scratch: { key: 4, value: 48 },
  edge_config: { key: 4, value: EDGE_CONFIG_SIZE },
  edge_stats: { key: 4, value: 8 },
  edge_svc_stats: { key: 4, value: 16 },
  edge_be_stats: { key: 4, value: 16 },
  edge_sc_prev: { key: 4, value: SC_PREV_SIZE },
  edge_sc_flows: { key: CT_KEY_SIZE, value: SC_PAIR_SIZE },
  edge_sc_stats: { key: 4, value: 8 },
  edge_services6: { key: SVC6_KEY_SIZE, value: SVC_VALUE_SIZE },
  edge_backends6: { key: 4, value: BACKEND6_SIZE },
  edge_ct6: { key: CT6_KEY_SIZE, value: CT_VALUE_SIZE },
  edge_src_ranges6: { key: SRC_RANGE6_KEY_SIZE, value: 1 },
  edge_config6: { key: 4, value: EDGE_CONFIG6_SIZE },
  edge_sc_flows6: { key: CT6_KEY_SIZE, value: SC_PAIR_SIZE },
  edge_snat_rev6: { key: SNAT6_KEY_SIZE, value: SNAT6_VALUE_SIZE },
  // struct edge_snat_frag6_key / _val and the fragment path's per-CPU scratch (edge_snat_frag6.h): program-only.
  edge_snat_frags6: { key: 24, value: 48 },
  edge_frag6_scratch: { key: 4, value: 96 },
  edge_progs: { key: 4, value: 4 },
  edge_progs_tc: { key: 4, value: 4 },
};

/** Slot of the IPv6 program in each hook's program array: edge_xdp6 in edge_progs, edge_tc6 in edge_progs_tc (EDGE_PROG_IPV6 in bpf/edge.c). */
export const EDGE_PROG_IPV6 = 0;

/** Every layout mismatch between `maps` (as loaded) and EDGE_MAP_LAYOUTS, in words; empty when all match. */
export function edgeLayoutMismatches(maps: ReadonlyMap<string, { keySize: number; valueSize: number }>): string[] {
  const out: string[] = [];
  for (const [name, want] of Object.entries(EDGE_MAP_LAYOUTS)) {
    const m = maps.get(name);
    if (!m) {
      out.push(`${name}: missing from the object`);
      continue;
    }
    if (m.keySize !== want.key) out.push(`${name}: key is ${m.keySize} bytes in the object, ${want.key} in edge-maps.ts`);
    if (m.valueSize !== want.value) out.push(`${name}: value is ${m.valueSize} bytes in the object, ${want.value} in edge-maps.ts`);
  }
  return out;
}
