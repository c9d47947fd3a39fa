// Byte layouts of the node program's maps (bpf/include/node_maps.h), and the
// node's local-backend hash, in TypeScript. Pure: no I/O, so the encoders
// and nodeTupleHash are unit-tested without a kernel.
//
// Addresses and ports are network byte order in every struct (as on the
// wire); integers the kernel only counts with (timestamps, flags, counts)
// are host order (little-endian on every platform we run on). Addresses,
// protocols and ports are read and checked by src/net.
import { bigIntToIp, ipToBigInt, ipv4ToU32, isIpv6, u32ToIpv4 } from '../net/ip.js';
import { checkPort, protoName, protoNumber, type L4Proto } from '../net/l4.js';
import { checkCidr, type Cidr } from '../net/cidr.js';

export const NODE_MAP_NAMES = {
  flows: 'node_flows',
  fwd: 'node_fwd',
  services: 'node_services',
  config: 'node_config',
  counters: 'node_counters',
  edgeSources: 'node_edge_src',
  edgeMacs: 'node_edge_macs',
  edgeAddrs: 'node_edge_addrs',
  flows6: 'node_flows6',
  fwd6: 'node_fwd6',
  services6: 'node_services6',
  edgeSources6: 'node_edge_src6',
  config6: 'node_config6',
} as const;

export const NODE_PROGRAMS = { ingress: 'node_ingress', egress: 'node_egress' } as const;

export const FLOW_KEY_SIZE = 16;
export const FLOW_VALUE_SIZE = 24;
export const FWD_KEY_SIZE = 16;
export const FWD_VALUE_SIZE = 16;
export const SVC_KEY_SIZE = 8;
export const NODE_MAX_LOCAL_BACKENDS = 32;
export const SVC_VALUE_SIZE = 8 + 8 * NODE_MAX_LOCAL_BACKENDS;
export const CONFIG_VALUE_SIZE = 56;
export const CONFIG6_VALUE_SIZE = 24;
export const FLOW6_KEY_SIZE = 40;
export const FLOW6_VALUE_SIZE = 40;
export const FWD6_KEY_SIZE = 40;
export const FWD6_VALUE_SIZE = 32;
export const SVC6_KEY_SIZE = 20;
export const SVC6_VALUE_SIZE = 8 + 20 * NODE_MAX_LOCAL_BACKENDS;

export const FLOW_FIN_POD = 0x01;
export const FLOW_FIN_CLIENT = 0x02;
export const FLOW_CLOSING = 0x04;
/** A RST was seen and no other packet since. */
export const FLOW_RST = 0x08;

export const CFG_STRIP_OPTION = 0x1;
export const CFG_CHECK_OUTER_DST = 0x2;
export const CFG_VERIFY_VIP = 0x4;
/** node_config6.flags: IP6IP6's outer destination must be nodeIp6. */
export const CFG6_CHECK_OUTER_DST = 0x1;

/** Counter names by index (enum node_counter). Holes are unused slots. */
export const NODE_COUNTER_NAMES = [
  'in_pass',
  'in_opt_flow',
  'in_opt_stripped',
  'in_opt_kept',
  'in_ipip_dnat',
  'in_ipip_new_flow',
  'in_ipip_not_ours',
  'in_fin',
  'in_rst',
  'eg_pass',
  'eg_rewrite',
  'eg_fin',
  'eg_rst',
  'flow_expired',
  'flow_closing',
  'in_opt_fragment',
  'drop_bad_option',
  'drop_no_backend',
  'drop_decap',
  'drop_rewrite',
  'drop_malformed',
  'drop_unknown_vip',
  'in_ipip_icmp',
  'eg_icmp',
  'drop_untrusted_source',
  'edge_learnt',
  'drop_wrong_backend',
  'drop_vip_conflict',
  'drop_insert_limit',
  'eg_frag',
] as const;
export type NodeCounterName = (typeof NODE_COUNTER_NAMES)[number];
export const NODE_COUNTER_SLOTS = 30;

// ---------------------------------------------------------------- node_flows

/** Reply tuple: pod:podPort → client:clientPort. */
export interface FlowKey {
  podIp: string;
  podPort: number;
  clientIp: string;
  clientPort: number;
  proto: L4Proto;
}

export type FlowOrigin = 'option' | 'ipip';

export interface FlowValue {
  vip: string;
  vipPort: number;
  /** FLOW_* bits. */
  flags: number;
  origin: FlowOrigin;
  /** CLOCK_MONOTONIC ns (or the test clock). */
  lastSeenNs: bigint;
  createdNs: bigint;
}

export function encodeFlowKey(k: FlowKey): Buffer {
  const b = Buffer.alloc(FLOW_KEY_SIZE);
  b.writeUInt32BE(ipv4ToU32(k.podIp, 'flow podIp'), 0);
  b.writeUInt32BE(ipv4ToU32(k.clientIp, 'flow clientIp'), 4);
  b.writeUInt16BE(checkPort(k.podPort, 'flow podPort'), 8);
  b.writeUInt16BE(checkPort(k.clientPort, 'flow clientPort'), 10);
  b[12] = protoNumber(k.proto);
  return b;
}

export function decodeFlowKey(b: Buffer): FlowKey {
  if (b.length !== FLOW_KEY_SIZE) throw new RangeError(`flow key is ${b.length} bytes, expected ${FLOW_KEY_SIZE}`);
  return {
    podIp: u32ToIpv4(b.readUInt32BE(0)),
    clientIp: u32ToIpv4(b.readUInt32BE(4)),
    podPort: b.readUInt16BE(8),
    clientPort: b.readUInt16BE(10),
    proto: protoName(b[12]!),
  };
}

export function encodeFlowValue(v: FlowValue): Buffer {
  const b = Buffer.alloc(FLOW_VALUE_SIZE);
  b.writeUInt32BE(ipv4ToU32(v.vip, 'flow vip'), 0);
  b.writeUInt16BE(checkPort(v.vipPort, 'flow vipPort'), 4);
  b[6] = v.flags & 0xff;
  b[7] = v.origin === 'option' ? 1 : 2;
  b.writeBigUInt64LE(v.lastSeenNs, 8);
  b.writeBigUInt64LE(v.createdNs, 16);
  return b;
}

export function decodeFlowValue(b: Buffer): FlowValue {
  if (b.length !== FLOW_VALUE_SIZE) throw new RangeError(`flow value is ${b.length} bytes, expected ${FLOW_VALUE_SIZE}`);
  const origin = b[7];
  if (origin !== 1 && origin !== 2) throw new Error(`flow value has unknown origin ${origin}`);
  return {
    vip: u32ToIpv4(b.readUInt32BE(0)),
    vipPort: b.readUInt16BE(4),
    flags: b[6]!,
    origin: origin === 1 ? 'option' : 'ipip',
    lastSeenNs: b.readBigUInt64LE(8),
    createdNs: b.readBigUInt64LE(16),
  };
}

// ---------------------------------------------------------------- node_fwd

/** Forward tuple of an ipip flow: client:clientPort → vip:vipPort. */
export interface FwdKey {
  clientIp: string;
  clientPort: number;
  vip: string;
  vipPort: number;
  proto: L4Proto;
}

export interface FwdValue {
  podIp: string;
  podPort: number;
  lastSeenNs: bigint;
}

export function encodeFwdKey(k: FwdKey): Buffer {
  const b = Buffer.alloc(FWD_KEY_SIZE);
  b.writeUInt32BE(ipv4ToU32(k.clientIp, 'fwd clientIp'), 0);
  b.writeUInt32BE(ipv4ToU32(k.vip, 'fwd vip'), 4);
  b.writeUInt16BE(checkPort(k.clientPort, 'fwd clientPort'), 8);
  b.writeUInt16BE(checkPort(k.vipPort, 'fwd vipPort'), 10);
  b[12] = protoNumber(k.proto);
  return b;
}

export function decodeFwdKey(b: Buffer): FwdKey {
  if (b.length !== FWD_KEY_SIZE) throw new RangeError(`fwd key is ${b.length} bytes, expected ${FWD_KEY_SIZE}`);
  return {
    clientIp: u32ToIpv4(b.readUInt32BE(0)),
    vip: u32ToIpv4(b.readUInt32BE(4)),
    clientPort: b.readUInt16BE(8),
    vipPort: b.readUInt16BE(10),
    proto: protoName(b[12]!),
  };
}

export function encodeFwdValue(v: FwdValue): Buffer {
  const b = Buffer.alloc(FWD_VALUE_SIZE);
  b.writeUInt32BE(ipv4ToU32(v.podIp, 'fwd podIp'), 0);
  b.writeUInt16BE(checkPort(v.podPort, 'fwd podPort'), 4);
  b.writeBigUInt64LE(v.lastSeenNs, 8);
  return b;
}

export function decodeFwdValue(b: Buffer): FwdValue {
  if (b.length !== FWD_VALUE_SIZE) throw new RangeError(`fwd value is ${b.length} bytes, expected ${FWD_VALUE_SIZE}`);
  return { podIp: u32ToIpv4(b.readUInt32BE(0)), podPort: b.readUInt16BE(4), lastSeenNs: b.readBigUInt64LE(8) };
}

// ---------------------------------------------------------------- node_services

export interface SvcKey {
  vip: string;
  port: number;
  proto: L4Proto;
}

export interface LocalBackend {
  ip: string;
  port: number;
}

export function encodeSvcKey(k: SvcKey): Buffer {
  const b = Buffer.alloc(SVC_KEY_SIZE);
  b.writeUInt32BE(ipv4ToU32(k.vip, 'service vip'), 0);
  b.writeUInt16BE(checkPort(k.port, 'service port'), 4);
  b[6] = protoNumber(k.proto);
  return b;
}

export function decodeSvcKey(b: Buffer): SvcKey {
  if (b.length !== SVC_KEY_SIZE) throw new RangeError(`service key is ${b.length} bytes, expected ${SVC_KEY_SIZE}`);
  return { vip: u32ToIpv4(b.readUInt32BE(0)), port: b.readUInt16BE(4), proto: protoName(b[6]!) };
}

/** Backends in slot order: the datapath picks slot nodeTupleHash(...) % count (none: a known frontend without local pods). */
export function encodeSvcValue(backends: readonly LocalBackend[], pick = backends.length): Buffer {
  if (backends.length > NODE_MAX_LOCAL_BACKENDS) {
    throw new RangeError(`${backends.length} local backends exceed the node program's limit of ${NODE_MAX_LOCAL_BACKENDS}`);
  }
  if (!Number.isInteger(pick) || pick < 0 || pick > backends.length) throw new RangeError(`pick ${pick} is not within the ${backends.length} local backends`);
  const b = Buffer.alloc(SVC_VALUE_SIZE);
  b.writeUInt32LE(backends.length, 0);
  b.writeUInt32LE(pick, 4);
  backends.forEach((be, i) => {
    b.writeUInt32BE(ipv4ToU32(be.ip, `backend ${i} ip`), 8 + i * 8);
    b.writeUInt16BE(checkPort(be.port, `backend ${i} port`), 8 + i * 8 + 4);
  });
  return b;
}

/** How many leading backends new ipip flows choose among (the program's reading: 0 = all). */
export function decodeSvcPick(b: Buffer): number {
  if (b.length !== SVC_VALUE_SIZE) throw new RangeError(`service value is ${b.length} bytes, expected ${SVC_VALUE_SIZE}`);
  const count = b.readUInt32LE(0);
  const pick = b.readUInt32LE(4);
  return pick && pick < count ? pick : count;
}

export function decodeSvcValue(b: Buffer): LocalBackend[] {
  if (b.length !== SVC_VALUE_SIZE) throw new RangeError(`service value is ${b.length} bytes, expected ${SVC_VALUE_SIZE}`);
  const n = b.readUInt32LE(0);
  if (n > NODE_MAX_LOCAL_BACKENDS) throw new Error(`service value claims ${n} backends`);
  const out: LocalBackend[] = [];
  for (let i = 0; i < n; i++) out.push({ ip: u32ToIpv4(b.readUInt32BE(8 + i * 8)), port: b.readUInt16BE(8 + i * 8 + 4) });
  return out;
}

// ---------------------------------------------------------------- node_config

export interface NodeConfigValue {
  /** 0n = the program's default (3600 s). */
  tcpIdleNs: bigint;
  /** 0n = default (60 s). */
  udpIdleNs: bigint;
  /** 0n = default (10 s). */
  closeNs: bigint;
  /** Test clock; 0n = the kernel's CLOCK_MONOTONIC (coarse). */
  nowNs: bigint;
  /** This node's address ('0.0.0.0' when unknown). */
  nodeIp: string;
  stripOption: boolean;
  /** ipip: only decapsulate packets whose outer destination is nodeIp. */
  checkOuterDst: boolean;
  /** ip-option: drop packets whose option names no frontend in node_services, or a destination that is none of its pods here. */
  verifyVip: boolean;
  /** Silence after a RST before the connection counts as ended; 0n = default (2 s). */
  rstNs: bigint;
  /** New flows per CPU per ~1.07 s window; 0 = unlimited. */
  insertLimit: number;
}

export function encodeConfig(c: NodeConfigValue): Buffer {
  const b = Buffer.alloc(CONFIG_VALUE_SIZE);
  for (const [i, v] of [c.tcpIdleNs, c.udpIdleNs, c.closeNs, c.nowNs].entries()) {
    if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`config field ${i}: ${v} does not fit 64 bits`);
    b.writeBigUInt64LE(v, i * 8);
  }
  b.writeUInt32BE(ipv4ToU32(c.nodeIp, 'config nodeIp'), 32);
  b.writeUInt32LE((c.stripOption ? CFG_STRIP_OPTION : 0) | (c.checkOuterDst ? CFG_CHECK_OUTER_DST : 0) | (c.verifyVip ? CFG_VERIFY_VIP : 0), 36);
  if (c.rstNs < 0n || c.rstNs > 0xffffffffffffffffn) throw new RangeError(`config rstNs: ${c.rstNs} does not fit 64 bits`);
  b.writeBigUInt64LE(c.rstNs, 40);
  if (!Number.isInteger(c.insertLimit) || c.insertLimit < 0 || c.insertLimit > 0xffffffff) throw new RangeError(`config insertLimit: ${c.insertLimit} is not a 32-bit count`);
  b.writeUInt32LE(c.insertLimit, 48);
  return b;
}

export function decodeConfig(b: Buffer): NodeConfigValue {
  if (b.length !== CONFIG_VALUE_SIZE) throw new RangeError(`config value is ${b.length} bytes, expected ${CONFIG_VALUE_SIZE}`);
  const flags = b.readUInt32LE(36);
  return {
    tcpIdleNs: b.readBigUInt64LE(0),
    udpIdleNs: b.readBigUInt64LE(8),
    closeNs: b.readBigUInt64LE(16),
    nowNs: b.readBigUInt64LE(24),
    nodeIp: u32ToIpv4(b.readUInt32BE(32)),
    stripOption: (flags & CFG_STRIP_OPTION) !== 0,
    checkOuterDst: (flags & CFG_CHECK_OUTER_DST) !== 0,
    verifyVip: (flags & CFG_VERIFY_VIP) !== 0,
    rstNs: b.readBigUInt64LE(40),
    insertLimit: b.readUInt32LE(48),
  };
}

// ---------------------------------------------------------------- node_config6

/** The IPv6 settings (node_config6, a map of its own: node_config's pinned layout stays). */
export interface NodeConfig6Value {
  /** This node's IPv6 address; null = none given, IP6IP6's outer destination is not checked. */
  nodeIp6: string | null;
}

export function encodeConfig6(c: NodeConfig6Value): Buffer {
  const b = Buffer.alloc(CONFIG6_VALUE_SIZE);
  if (c.nodeIp6 !== null) {
    ipv6Bytes(c.nodeIp6, 'config nodeIp6').copy(b, 0);
    b.writeUInt32LE(CFG6_CHECK_OUTER_DST, 16);
  }
  return b;
}

export function decodeConfig6(b: Buffer): NodeConfig6Value {
  if (b.length !== CONFIG6_VALUE_SIZE) throw new RangeError(`config6 value is ${b.length} bytes, expected ${CONFIG6_VALUE_SIZE}`);
  return { nodeIp6: b.readUInt32LE(16) & CFG6_CHECK_OUTER_DST ? ipv6String(b, 0) : null };
}

// ---------------------------------------------------------------- edge sources

export const EDGE_SRC_KEY_SIZE = 8;
export const EDGE_SRC6_KEY_SIZE = 20;
export const EDGE_MAC_KEY_SIZE = 8;
export const EDGE_MAC_VALUE_SIZE = 16;
export const EDGE_MAC_FROM_ARP = 1;
export const EDGE_MAC_FROM_AGENT = 2;
export const EDGE_MAC_FROM_NDP = 3;
/** node_mac_value.how flag: a router (--edge-routers), trusted as the sender of IPIP only. */
export const EDGE_MAC_ROUTER = 0x100;
/** A neighbour unconfirmed (ARP, NS/NA, agent) for this long is trusted no more (NODE_EDGE_MAC_TTL_NS). */
export const EDGE_MAC_TTL_NS = 600n * 1_000_000_000n;
/** node_edge_src(6) values: what a block is. */
export const EDGE_SRC_EDGE = 1;
export const EDGE_SRC_ROUTER = 2;

/**
 * An edge source: an IPv4 or IPv6 CIDR (host bits refused, as everywhere in
 * the config) or a bare address (/32, /128). Throws naming the value and
 * the problem.
 */
export function parseEdgeSource(source: string): { family: 4 | 6; addr: string; bits: number; cidr: Cidr } {
  const c = checkCidr(source, { bareAddress: true });
  if (typeof c === 'string') throw new Error(`edge source '${source}': ${c}`);
  return { family: c.family, addr: bigIntToIp(c.base, c.family), bits: c.prefix, cidr: c };
}

/** Whether address `ip` (either family) lies inside edge source `source`. */
export function edgeSourceContains(source: string, ip: string): boolean {
  const c = checkCidr(source, { bareAddress: true });
  if (typeof c === 'string') throw new Error(`edge source '${source}': ${c}`);
  const a = ipToBigInt(ip);
  return a.family === c.family && a.value >= c.base && a.value < c.base + c.size;
}

/** LPM key of node_edge_src (IPv4) or node_edge_src6 (IPv6), by the source's family. */
export function encodeEdgeSourceKey(cidr: string): { family: 4 | 6; key: Buffer } {
  const { family, addr, bits } = parseEdgeSource(cidr);
  if (family === 6) {
    const b = Buffer.alloc(EDGE_SRC6_KEY_SIZE);
    b.writeUInt32LE(bits, 0);
    ipv6Bytes(addr, 'edge source').copy(b, 4);
    return { family, key: b };
  }
  const b = Buffer.alloc(EDGE_SRC_KEY_SIZE);
  b.writeUInt32LE(bits, 0);
  b.writeUInt32BE(ipv4ToU32(addr, 'edge source'), 4);
  return { family, key: b };
}

export function decodeEdgeSourceKey(b: Buffer): string {
  if (b.length === EDGE_SRC6_KEY_SIZE) return `${ipv6String(b, 4)}/${b.readUInt32LE(0)}`;
  if (b.length !== EDGE_SRC_KEY_SIZE) throw new RangeError(`edge source key is ${b.length} bytes, expected ${EDGE_SRC_KEY_SIZE} or ${EDGE_SRC6_KEY_SIZE}`);
  return `${u32ToIpv4(b.readUInt32BE(4))}/${b.readUInt32LE(0)}`;
}

export function macBytes(mac: string, what = 'MAC'): Buffer {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`${what}: '${mac}' is not a MAC address`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

/** node_edge_addrs key: the edge address, an IPv4 one as ::ffff:a.b.c.d. */
export function encodeEdgeAddrKey(ip: string): Buffer {
  if (isV6(ip)) return ipv6Bytes(ip, 'edge neighbour IP');
  const b = Buffer.alloc(16);
  b.writeUInt16BE(0xffff, 10);
  b.writeUInt32BE(ipv4ToU32(ip, 'edge neighbour IP'), 12);
  return b;
}

function macString(b: Buffer, off: number): string {
  return [...b.subarray(off, off + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export function encodeEdgeMacKey(mac: string): Buffer {
  const b = Buffer.alloc(EDGE_MAC_KEY_SIZE);
  macBytes(mac, 'edge neighbour MAC').copy(b, 0);
  return b;
}

export interface EdgeNeighbour {
  mac: string;
  /**
   * The IPv4 edge-source address the neighbour holds; null for an IPv6
   * edge (the map's value keeps 4 bytes: its layout is the one earlier
   * versions pinned, so an upgraded agent reuses the map).
   */
  ip: string | null;
  how: 'arp' | 'agent' | 'ndp';
  /** A router the edges' IPIP crosses (--edge-routers): trusted for IPIP, never for an option. */
  router: boolean;
  seenNs: bigint;
}

export function encodeEdgeMacValue(v: Omit<EdgeNeighbour, 'mac' | 'ip' | 'router'> & { ip: string; router?: boolean }): Buffer {
  const b = Buffer.alloc(EDGE_MAC_VALUE_SIZE);
  if (!isIpv6(v.ip)) b.writeUInt32BE(ipv4ToU32(v.ip, 'edge neighbour IP'), 0);
  const how = v.how === 'arp' ? EDGE_MAC_FROM_ARP : v.how === 'ndp' ? EDGE_MAC_FROM_NDP : EDGE_MAC_FROM_AGENT;
  b.writeUInt32LE(how | (v.router ? EDGE_MAC_ROUTER : 0), 4);
  b.writeBigUInt64LE(v.seenNs, 8);
  return b;
}

export function decodeEdgeNeighbour(k: Buffer, v: Buffer): EdgeNeighbour {
  if (k.length !== EDGE_MAC_KEY_SIZE || v.length !== EDGE_MAC_VALUE_SIZE) throw new RangeError('edge neighbour entry has the wrong size');
  const word = v.readUInt32LE(4);
  const how = word & ~EDGE_MAC_ROUTER;
  const ip = v.readUInt32BE(0);
  return { mac: macString(k, 0), ip: ip === 0 ? null : u32ToIpv4(ip), how: how === EDGE_MAC_FROM_ARP ? 'arp' : how === EDGE_MAC_FROM_NDP ? 'ndp' : 'agent', router: (word & EDGE_MAC_ROUTER) !== 0, seenNs: v.readBigUInt64LE(8) };
}

// ---------------------------------------------------------------- IPv6 maps
//
// node_flows6, node_fwd6, node_services6: the IPv4 maps' entries with
// 16-byte addresses (node_maps.h). The TS types are the IPv4 ones: an
// address's spelling says its family, and the encoders pick the layout.

/** 16 network-order bytes of an IPv6 address (throws naming `what`). */
export function ipv6Bytes(addr: string, what: string): Buffer {
  if (!isIpv6(addr)) throw new Error(`${what}: '${addr}' is not an IPv6 address`);
  const v = ipToBigInt(addr).value;
  const b = Buffer.alloc(16);
  for (let i = 0; i < 16; i++) b[i] = Number((v >> BigInt(8 * (15 - i))) & 0xffn);
  return b;
}

/** RFC 5952 text of the 16 bytes at off. */
export function ipv6String(b: Buffer, off: number): string {
  let v = 0n;
  for (let i = 0; i < 16; i++) v = (v << 8n) | BigInt(b[off + i]!);
  return bigIntToIp(v, 6);
}

/** Whether an address (as the maps' users spell it) is IPv6. */
export function isV6(addr: string): boolean {
  return addr.includes(':');
}

export function encodeFlow6Key(k: FlowKey): Buffer {
  const b = Buffer.alloc(FLOW6_KEY_SIZE);
  ipv6Bytes(k.podIp, 'flow podIp').copy(b, 0);
  ipv6Bytes(k.clientIp, 'flow clientIp').copy(b, 16);
  b.writeUInt16BE(checkPort(k.podPort, 'flow podPort'), 32);
  b.writeUInt16BE(checkPort(k.clientPort, 'flow clientPort'), 34);
  b[36] = protoNumber(k.proto);
  return b;
}

export function decodeFlow6Key(b: Buffer): FlowKey {
  if (b.length !== FLOW6_KEY_SIZE) throw new RangeError(`IPv6 flow key is ${b.length} bytes, expected ${FLOW6_KEY_SIZE}`);
  return { podIp: ipv6String(b, 0), clientIp: ipv6String(b, 16), podPort: b.readUInt16BE(32), clientPort: b.readUInt16BE(34), proto: protoName(b[36]!) };
}

/** The value embeds the IPv4 layout (its 4-byte vip 0), then the 16-byte VIP. */
export function encodeFlow6Value(v: FlowValue): Buffer {
  const b = Buffer.alloc(FLOW6_VALUE_SIZE);
  encodeFlowValue({ ...v, vip: '0.0.0.0' }).copy(b, 0);
  ipv6Bytes(v.vip, 'flow vip').copy(b, 24);
  return b;
}

export function decodeFlow6Value(b: Buffer): FlowValue {
  if (b.length !== FLOW6_VALUE_SIZE) throw new RangeError(`IPv6 flow value is ${b.length} bytes, expected ${FLOW6_VALUE_SIZE}`);
  return { ...decodeFlowValue(b.subarray(0, FLOW_VALUE_SIZE)), vip: ipv6String(b, 24) };
}

export function encodeFwd6Key(k: FwdKey): Buffer {
  const b = Buffer.alloc(FWD6_KEY_SIZE);
  ipv6Bytes(k.clientIp, 'fwd clientIp').copy(b, 0);
  ipv6Bytes(k.vip, 'fwd vip').copy(b, 16);
  b.writeUInt16BE(checkPort(k.clientPort, 'fwd clientPort'), 32);
  b.writeUInt16BE(checkPort(k.vipPort, 'fwd vipPort'), 34);
  b[36] = protoNumber(k.proto);
  return b;
}

export function decodeFwd6Key(b: Buffer): FwdKey {
  if (b.length !== FWD6_KEY_SIZE) throw new RangeError(`IPv6 fwd key is ${b.length} bytes, expected ${FWD6_KEY_SIZE}`);
  return { clientIp: ipv6String(b, 0), vip: ipv6String(b, 16), clientPort: b.readUInt16BE(32), vipPort: b.readUInt16BE(34), proto: protoName(b[36]!) };
}

export function encodeFwd6Value(v: FwdValue): Buffer {
  const b = Buffer.alloc(FWD6_VALUE_SIZE);
  ipv6Bytes(v.podIp, 'fwd podIp').copy(b, 0);
  b.writeUInt16BE(checkPort(v.podPort, 'fwd podPort'), 16);
  b.writeBigUInt64LE(v.lastSeenNs, 24);
  return b;
}

export function decodeFwd6Value(b: Buffer): FwdValue {
  if (b.length !== FWD6_VALUE_SIZE) throw new RangeError(`IPv6 fwd value is ${b.length} bytes, expected ${FWD6_VALUE_SIZE}`);
  return { podIp: ipv6String(b, 0), podPort: b.readUInt16BE(16), lastSeenNs: b.readBigUInt64LE(24) };
}

export function encodeSvc6Key(k: SvcKey): Buffer {
  const b = Buffer.alloc(SVC6_KEY_SIZE);
  ipv6Bytes(k.vip, 'service vip').copy(b, 0);
  b.writeUInt16BE(checkPort(k.port, 'service port'), 16);
  b[18] = protoNumber(k.proto);
  return b;
}

export function decodeSvc6Key(b: Buffer): SvcKey {
  if (b.length !== SVC6_KEY_SIZE) throw new RangeError(`IPv6 service key is ${b.length} bytes, expected ${SVC6_KEY_SIZE}`);
  return { vip: ipv6String(b, 0), port: b.readUInt16BE(16), proto: protoName(b[18]!) };
}

/** As encodeSvcValue: every local pod an option may name, new IP6IP6 flows pick among the first `pick`. */
export function encodeSvc6Value(backends: readonly LocalBackend[], pick = backends.length): Buffer {
  if (backends.length > NODE_MAX_LOCAL_BACKENDS) {
    throw new RangeError(`${backends.length} local backends exceed the node program's limit of ${NODE_MAX_LOCAL_BACKENDS}`);
  }
  if (!Number.isInteger(pick) || pick < 0 || pick > backends.length) throw new RangeError(`pick ${pick} is not within the ${backends.length} local backends`);
  const b = Buffer.alloc(SVC6_VALUE_SIZE);
  b.writeUInt32LE(backends.length, 0);
  b.writeUInt32LE(pick, 4);
  backends.forEach((be, i) => {
    ipv6Bytes(be.ip, `backend ${i} ip`).copy(b, 8 + i * 20);
    b.writeUInt16BE(checkPort(be.port, `backend ${i} port`), 8 + i * 20 + 16);
  });
  return b;
}

/** How many leading backends new IP6IP6 flows choose among (the program's reading: 0 = all). */
export function decodeSvc6Pick(b: Buffer): number {
  if (b.length !== SVC6_VALUE_SIZE) throw new RangeError(`IPv6 service value is ${b.length} bytes, expected ${SVC6_VALUE_SIZE}`);
  const count = b.readUInt32LE(0);
  const pick = b.readUInt32LE(4);
  return pick && pick < count ? pick : count;
}

export function decodeSvc6Value(b: Buffer): LocalBackend[] {
  if (b.length !== SVC6_VALUE_SIZE) throw new RangeError(`IPv6 service value is ${b.length} bytes, expected ${SVC6_VALUE_SIZE}`);
  const n = b.readUInt32LE(0);
  if (n > NODE_MAX_LOCAL_BACKENDS) throw new Error(`IPv6 service value claims ${n} backends`);
  const out: LocalBackend[] = [];
  for (let i = 0; i < n; i++) out.push({ ip: ipv6String(b, 8 + i * 20), port: b.readUInt16BE(8 + i * 20 + 16) });
  return out;
}

// ---------------------------------------------------------------- local backend hash

function rotl32(x: number, r: number): number {
  return ((x << r) | (x >>> (32 - r))) >>> 0;
}

function mixWord(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51) >>> 0;
  k = rotl32(k, 15);
  k = Math.imul(k, 0x1b873593) >>> 0;
  h = (h ^ k) >>> 0;
  h = rotl32(h, 13);
  return (Math.imul(h, 5) + 0xe6546b64) >>> 0;
}

/** An address's four network-order bytes read as a little-endian word. */
function wireWordLE(addr: string, what: string): number {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ipv4ToU32(addr, what), 0);
  return b.readUInt32LE(0);
}

/**
 * node.c's node_tuple_hash over client → VIP (addresses and ports as the
 * packet carries them, read as little-endian words like the BPF program
 * does on x86).
 */
export function nodeTupleHash(clientIp: string, vip: string, clientPort: number, vipPort: number, proto: L4Proto): number {
  const s = wireWordLE(clientIp, 'hash clientIp');
  const d = wireWordLE(vip, 'hash vip');
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(checkPort(clientPort, 'hash clientPort'), 0);
  ports.writeUInt16BE(checkPort(vipPort, 'hash vipPort'), 2);
  let h = (0x2c9277b5 ^ protoNumber(proto)) >>> 0;
  h = mixWord(h, s);
  h = mixWord(h, d);
  h = mixWord(h, ports.readUInt32LE(0));
  h = (h ^ 13) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h = (h ^ (h >>> 16)) >>> 0;
  return h;
}

/** Which of `count` local backends a new ipip flow goes to. */
export function localBackendSlot(clientIp: string, vip: string, clientPort: number, vipPort: number, proto: L4Proto, count: number): number {
  if (!Number.isInteger(count) || count < 1 || count > NODE_MAX_LOCAL_BACKENDS) throw new RangeError(`backend count ${count} out of 1..${NODE_MAX_LOCAL_BACKENDS}`);
  const h = isV6(vip) ? nodeTupleHash6(clientIp, vip, clientPort, vipPort, proto) : nodeTupleHash(clientIp, vip, clientPort, vipPort, proto);
  return h % count;
}

/**
 * node_hash.h's node_tuple_hash6 over client → VIP (IPv6): every word of
 * both addresses as the program loads them (little-endian on x86), then the
 * ports.
 */
export function nodeTupleHash6(clientIp: string, vip: string, clientPort: number, vipPort: number, proto: L4Proto): number {
  const c = ipv6Bytes(clientIp, 'hash clientIp');
  const v = ipv6Bytes(vip, 'hash vip');
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(checkPort(clientPort, 'hash clientPort'), 0);
  ports.writeUInt16BE(checkPort(vipPort, 'hash vipPort'), 2);
  let h = (0x2c9277b5 ^ protoNumber(proto)) >>> 0;
  for (let i = 0; i < 16; i += 4) h = mixWord(h, c.readUInt32LE(i));
  for (let i = 0; i < 16; i += 4) h = mixWord(h, v.readUInt32LE(i));
  h = mixWord(h, ports.readUInt32LE(0));
  return fmix((h ^ 37) >>> 0);
}

function fmix(h: number): number {
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}
