// IPv6 frames for datapath tests: the fixed header, extension headers
// (the edge's 24-byte Destination Options DSR header among them), TCP/UDP
// with checksums over the IPv6 pseudo-header, IP6IP6, Neighbor
// Solicitation/Advertisement — and independent checks of what comes out
// (a second, naive checksum and its own address parser, so a bug shared with
// the code under test cannot hide).
import { buildEthernet, buildTcp, buildUdp, onesComplementSum, type EthSpec, type TcpSpec, type UdpSpec } from './packets.js';

export const ETH_P_IPV6 = 0x86dd;
export const NH_HOPOPTS = 0;
export const NH_TCP = 6;
export const NH_UDP = 17;
export const NH_IPV6 = 41;
export const NH_ROUTING = 43;
export const NH_FRAGMENT = 44;
export const NH_ICMPV6 = 58;
export const NH_NONE = 59;
export const NH_DSTOPTS = 60;
export const DSR6_OPT_TYPE = 0x5e;

/** 16 bytes of an IPv6 address (own parser: "::" expansion, no zone, no dotted tail). */
export function ip6Bytes(addr: string): Buffer {
  const [head, tail] = addr.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) throw new Error(`not an IPv6 address: ${addr}`);
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

export interface Ipv6Spec {
  src: string;
  dst: string;
  hopLimit?: number;
  tclass?: number;
  flowLabel?: number;
  /** Override the computed payload length. */
  payloadLength?: number;
}

/** An extension header: its Next Header byte (0) is filled in by the builder. */
export interface ExtHeader {
  type: number;
  bytes: Buffer;
}

export interface Packet6Spec {
  /** Ethernet header (etherType defaults to IPv6); false for a bare packet. */
  eth?: EthSpec | false;
  ip: Ipv6Spec;
  /** Extension headers in order, between the fixed header and the upper layer. */
  ext?: ExtHeader[];
  tcp?: TcpSpec;
  udp?: UdpSpec;
  /** ICMPv6: type, code, body after the checksum (checksum computed). */
  icmp6?: { type: number; code?: number; body: Buffer };
  /** IP6IP6: the inner IPv6 packet. */
  inner?: Omit<Packet6Spec, 'eth'>;
  /** Raw upper-layer bytes with their Next Header. */
  raw?: { nh: number; bytes: Buffer };
}

/** The edge's Destination Options DSR header (dsr_option.h's layout). */
export function dsr6Header(vip: string, port: number, over: Partial<{ hdrlen: number; optType: number; optLen: number; pad: [number, number] }> = {}): ExtHeader {
  const b = Buffer.alloc(24);
  b[1] = over.hdrlen ?? 2;
  b[2] = over.optType ?? DSR6_OPT_TYPE;
  b[3] = over.optLen ?? 18;
  b.writeUInt16BE(port, 4);
  ip6Bytes(vip).copy(b, 6);
  b[22] = over.pad?.[0] ?? 1;
  b[23] = over.pad?.[1] ?? 0;
  return { type: NH_DSTOPTS, bytes: b };
}

/** An 8-byte header of `type` carrying only padding (PadN). */
export function padHeader(type: number): ExtHeader {
  return { type, bytes: Buffer.from([0, 0, 1, 4, 0, 0, 0, 0]) };
}

/** A Fragment header (offset in 8-byte units). */
export function fragHeader(offset: number, more: boolean, id = 0x1234): ExtHeader {
  const b = Buffer.alloc(8);
  b.writeUInt16BE((offset << 3) | (more ? 1 : 0), 2);
  b.writeUInt32BE(id, 4);
  return { type: NH_FRAGMENT, bytes: b };
}

function pseudo6(src: string, dst: string, nh: number, len: number): number {
  const ph = Buffer.alloc(40);
  ip6Bytes(src).copy(ph, 0);
  ip6Bytes(dst).copy(ph, 16);
  ph.writeUInt32BE(len, 32);
  ph[39] = nh;
  return onesComplementSum(ph);
}

function upper(spec: Omit<Packet6Spec, 'eth'>): { nh: number; bytes: Buffer } {
  const { src, dst } = spec.ip;
  if (spec.tcp) {
    const seg = buildTcp({ ...spec.tcp, checksum: 0 }, '0.0.0.0', '0.0.0.0');
    seg.writeUInt16BE(spec.tcp.checksum ?? ~onesComplementSum(seg, pseudo6(src, dst, NH_TCP, seg.length)) & 0xffff, 16);
    return { nh: NH_TCP, bytes: seg };
  }
  if (spec.udp) {
    const d = buildUdp({ ...spec.udp, checksum: 0 }, '0.0.0.0', '0.0.0.0');
    let sum = spec.udp.checksum ?? ~onesComplementSum(d, pseudo6(src, dst, NH_UDP, d.length)) & 0xffff;
    if (spec.udp.checksum === undefined && sum === 0) sum = 0xffff;
    d.writeUInt16BE(sum, 6);
    return { nh: NH_UDP, bytes: d };
  }
  if (spec.icmp6) {
    const m = Buffer.concat([Buffer.from([spec.icmp6.type, spec.icmp6.code ?? 0, 0, 0]), spec.icmp6.body]);
    m.writeUInt16BE(~onesComplementSum(m, pseudo6(src, dst, NH_ICMPV6, m.length)) & 0xffff, 2);
    return { nh: NH_ICMPV6, bytes: m };
  }
  if (spec.inner) return { nh: NH_IPV6, bytes: buildPacket6({ ...spec.inner, eth: false }) };
  if (spec.raw) return spec.raw;
  return { nh: NH_NONE, bytes: Buffer.alloc(0) };
}

/** An Ethernet frame (or, with eth: false, a bare IPv6 packet) from a spec. */
export function buildPacket6(spec: Packet6Spec): Buffer {
  const up = upper(spec);
  const ext = spec.ext ?? [];
  const chain: Buffer[] = ext.map((h, i) => {
    const b = Buffer.from(h.bytes);
    b[0] = i + 1 < ext.length ? ext[i + 1]!.type : up.nh;
    return b;
  });
  const body = Buffer.concat([...chain, up.bytes]);
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(((6 << 28) | ((spec.ip.tclass ?? 0) << 20) | (spec.ip.flowLabel ?? 0)) >>> 0, 0);
  ip.writeUInt16BE(spec.ip.payloadLength ?? body.length, 4);
  ip[6] = ext.length > 0 ? ext[0]!.type : up.nh;
  ip[7] = spec.ip.hopLimit ?? 64;
  ip6Bytes(spec.ip.src).copy(ip, 8);
  ip6Bytes(spec.ip.dst).copy(ip, 24);
  const pkt = Buffer.concat([ip, body]);
  return spec.eth === false ? pkt : buildEthernet({ etherType: ETH_P_IPV6, ...(spec.eth ?? {}) }, pkt);
}

/** A Neighbor Solicitation (135) or Advertisement (136) with one link-layer address option. */
export function buildNd6(o: { kind: 'ns' | 'na'; src: string; dst: string; target: string; lladdr?: string; optType?: number; hopLimit?: number; ethSrc: string; ethDst?: string }): Buffer {
  const body = Buffer.alloc(4 + 16 + (o.lladdr ? 8 : 0));
  if (o.kind === 'na') body.writeUInt32BE(0x60000000, 0); // solicited, override
  ip6Bytes(o.target).copy(body, 4);
  if (o.lladdr) {
    body[20] = o.optType ?? (o.kind === 'ns' ? 1 : 2);
    body[21] = 1;
    Buffer.from(o.lladdr.split(':').map((x) => parseInt(x, 16))).copy(body, 22);
  }
  return buildPacket6({
    eth: { src: o.ethSrc, dst: o.ethDst ?? '33:33:ff:00:00:01' },
    ip: { src: o.src, dst: o.dst, hopLimit: o.hopLimit ?? 255 },
    icmp6: { type: o.kind === 'ns' ? 135 : 136, body },
  });
}

// ---------------------------------------------------------------- checking

export interface Parsed6 {
  src: string;
  dst: string;
  payloadLength: number;
  /** Next Header values along the chain, ending with the upper layer's. */
  chain: number[];
  upperOffset: number;
  upper: Buffer;
}

function ip6String(b: Buffer, off: number): string {
  const g: string[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(off + i * 2).toString(16));
  return g.join(':');
}

/** Parses a bare IPv6 packet (walks HBH, routing, fragment, dest-opts headers). */
export function parse6(ip: Buffer): Parsed6 {
  if (ip.length < 40 || ip[0]! >> 4 !== 6) throw new Error('not an IPv6 packet');
  const payloadLength = ip.readUInt16BE(4);
  const chain = [ip[6]!];
  let off = 40;
  for (;;) {
    const nh = chain[chain.length - 1]!;
    if (nh !== NH_HOPOPTS && nh !== NH_ROUTING && nh !== NH_FRAGMENT && nh !== NH_DSTOPTS) break;
    chain.push(ip[off]!);
    off += nh === NH_FRAGMENT ? 8 : (ip[off + 1]! + 1) * 8;
  }
  return { src: ip6String(ip, 8), dst: ip6String(ip, 24), payloadLength, chain, upperOffset: off, upper: ip.subarray(off, 40 + payloadLength) };
}

/** Naive 32-bit-word checksum check of the upper layer over the IPv6 pseudo-header. */
export function verifyL4Checksum6(ip: Buffer): boolean {
  const p = parse6(ip);
  const nh = p.chain[p.chain.length - 1]!;
  const ph = Buffer.alloc(40);
  ip.copy(ph, 0, 8, 40);
  ph.writeUInt32BE(p.upper.length, 32);
  ph[39] = nh;
  const all = Buffer.concat([ph, p.upper, Buffer.alloc((4 - (p.upper.length % 4)) % 4)]);
  let sum = 0n;
  for (let i = 0; i < all.length; i += 4) sum += BigInt(all.readUInt32BE(i));
  while (sum > 0xffffn) sum = (sum & 0xffffn) + (sum >> 16n);
  return sum === 0xffffn;
}
