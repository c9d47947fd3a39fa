// Byte layouts of the edge program's maps (bpf/include/edge_maps.h,
// edge_counters.h). Multi-byte fields the program compares with packet
// bytes (addresses, ports) are network order; ids, offsets, sizes and flags
// are host order (little-endian on every platform edgelb runs on: x86-64,
// arm64). Change both sides together. Addresses, CIDRs, protocols and
// ports are read and checked by src/net.
import { parseCidr } from '../net/cidr.js';
import { ipv4ToU32, u32ToIpv4 } from '../net/ip.js';
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

/** Slots in edge_ring; EDGE_RING_PER_ELEM per array element. */
export const EDGE_RING_SLOTS = 1 << 24;
export const EDGE_RING_PER_ELEM = 16;
export const EDGE_MAX_SERVICES = 1 << 16;
export const EDGE_MAX_BACKENDS = 1 << 18;

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
] as const;
export type EdgeStatName = (typeof EDGE_STAT_NAMES)[number];

export interface SvcKey {
  vip: string;
  port: number;
  /** IP protocol number; 0 (with port 0) = the VIP marker. */
  proto: number;
}

export function encodeSvcKey(k: SvcKey): Buffer {
  checkPort(k.port, 'service port');
  const b = Buffer.alloc(8);
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
  const b = Buffer.alloc(20);
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

export function encodeCtKey(k: CtKey): Buffer {
  const b = Buffer.alloc(16);
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
  const b = Buffer.alloc(8);
  b.writeUInt32LE(v.backendId, 0);
  b.writeUInt16BE(v.snatPort, 4);
  b.writeUInt8(v.flags ?? 0, 6);
  return b;
}

/** LPM key: 32 bits of service id, then the CIDR. */
export function encodeSrcRangeKey(svcId: number, cidr: string): Buffer {
  const c = parseCidr(cidr, { clearHostBits: true });
  if (c.family !== 4) throw new Error(`source range '${cidr}' is not an IPv4 CIDR`);
  const b = Buffer.alloc(12);
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
  gwMac: string;
  ownMac: string;
  /** Test clock (ns); 0n/absent = the kernel's coarse monotonic clock. */
  nowNs?: bigint;
}

export const EDGE_CONFIG_SIZE = 48;

function macBytes(mac: string, what: string): Buffer {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`${what} '${mac}' is not a MAC address`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
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
  return b;
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
