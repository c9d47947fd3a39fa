/**
 * Packet building and parsing for datapath tests: Ethernet, IPv4 (options,
 * fragments), TCP, UDP, ICMP (echo, fragmentation-needed with the embedded
 * original header) and IPIP. Builders fill in lengths and checksums unless a
 * field is overridden (to craft broken packets on purpose).
 *
 *   const frame = buildPacket({
 *     eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' },
 *     ip: { src: '198.51.100.7', dst: '203.0.113.10', ttl: 64, options: dsrOption('203.0.113.10', 80) },
 *     tcp: { sport: 40000, dport: 80, flags: { syn: true }, seq: 1 },
 *   });
 *   const p = parsePacket(frame);            // p.ip.dst, p.tcp.flags.syn, ...
 *   verifyIpv4Checksum(p.ipBytes); verifyL4Checksum(p.ipBytes);
 *
 * IPIP: `buildPacket({ eth, ip: outer, inner: { ip: inner, tcp: {...} } })`;
 * parsePacket() then returns the inner packet as `p.inner`.
 * `eth: false` builds a bare IPv4 packet; parsePacket(buf, { l2: false })
 * parses one.
 */

// ---------------------------------------------------------------- addresses

export function macToBytes(mac: string): Buffer {
  const parts = mac.split(/[:-]/);
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) throw new Error(`invalid MAC address '${mac}'`);
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

export function macToString(b: Buffer, offset = 0): string {
  if (b.length < offset + 6) throw new RangeError('MAC address needs 6 bytes');
  return [...b.subarray(offset, offset + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export function ipv4ToNumber(addr: string): number {
  const parts = addr.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) throw new Error(`invalid IPv4 address '${addr}'`);
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function numberToIpv4(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`invalid IPv4 number ${n}`);
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Network-order bytes of an IPv4 address. */
export function ipv4ToBytes(addr: string): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ipv4ToNumber(addr));
  return b;
}

export function ipv4ToString(b: Buffer, offset = 0): string {
  if (b.length < offset + 4) throw new RangeError('IPv4 address needs 4 bytes');
  return `${b[offset]}.${b[offset + 1]}.${b[offset + 2]}.${b[offset + 3]}`;
}

// ---------------------------------------------------------------- checksums

/** RFC 1071 ones'-complement sum of buf folded to 16 bits (not inverted). */
export function onesComplementSum(buf: Buffer, initial = 0): number {
  let sum = initial;
  const even = buf.length & ~1;
  for (let i = 0; i < even; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (buf.length & 1) sum += buf[buf.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** The Internet checksum (RFC 1071) of buf: the complement of the ones'-complement sum. */
export function internetChecksum(buf: Buffer, initial = 0): number {
  return ~onesComplementSum(buf, initial) & 0xffff;
}

function pseudoHeaderSum(src: Buffer, dst: Buffer, protocol: number, length: number): number {
  const ph = Buffer.alloc(12);
  src.copy(ph, 0);
  dst.copy(ph, 4);
  ph[9] = protocol;
  ph.writeUInt16BE(length, 10);
  return onesComplementSum(ph);
}

// Independent verification: a second, deliberately naive RFC 1071
// implementation (32-bit words via DataView, carry folded at the end), so a
// bug in the builder's summing cannot hide itself.
function naiveSum(chunks: Buffer[]): number {
  const all = Buffer.concat(chunks);
  const padded = all.length % 4 === 0 ? all : Buffer.concat([all, Buffer.alloc(4 - (all.length % 4))]);
  const dv = new DataView(padded.buffer, padded.byteOffset, padded.length);
  let sum = 0n;
  for (let i = 0; i < padded.length; i += 4) sum += BigInt(dv.getUint32(i, false));
  while (sum > 0xffffn) sum = (sum & 0xffffn) + (sum >> 16n);
  return Number(sum);
}

/** True when the IPv4 header at the start of ip has a correct header checksum. */
export function verifyIpv4Checksum(ip: Buffer): boolean {
  if (ip.length < 20 || ip[0]! >> 4 !== 4) throw new Error('not an IPv4 packet');
  const ihl = (ip[0]! & 15) * 4;
  if (ihl < 20 || ip.length < ihl) throw new Error(`bad IHL ${ihl} for ${ip.length} bytes`);
  return naiveSum([ip.subarray(0, ihl)]) === 0xffff;
}

/**
 * True when the TCP/UDP/ICMP checksum of an unfragmented IPv4 packet is
 * correct (UDP checksum 0 means "none" and counts as correct). Lengths come
 * from the IP header's total length.
 */
export function verifyL4Checksum(ip: Buffer): boolean {
  if (ip.length < 20 || ip[0]! >> 4 !== 4) throw new Error('not an IPv4 packet');
  const ihl = (ip[0]! & 15) * 4;
  const total = ip.readUInt16BE(2);
  if (total > ip.length || total < ihl) throw new Error(`IPv4 total length ${total} does not fit ${ip.length} bytes`);
  const fragField = ip.readUInt16BE(6);
  if (fragField & 0x3fff) throw new Error('cannot verify the L4 checksum of a fragment');
  const proto = ip[9]!;
  const l4 = ip.subarray(ihl, total);
  if (proto === IPPROTO_ICMP) return naiveSum([l4]) === 0xffff;
  if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) throw new Error(`no L4 checksum for protocol ${proto}`);
  if (proto === IPPROTO_UDP && l4.length >= 8 && l4.readUInt16BE(6) === 0) return true;
  const ph = Buffer.alloc(12);
  ip.copy(ph, 0, 12, 20);
  ph[9] = proto;
  ph.writeUInt16BE(l4.length, 10);
  return naiveSum([ph, l4]) === 0xffff;
}

// ---------------------------------------------------------------- building

export const ETH_P_IP = 0x0800;
export const ETH_P_ARP = 0x0806;
export const ETH_P_IPV6 = 0x86dd;
export const IPPROTO_ICMP = 1;
export const IPPROTO_IPIP = 4;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export interface EthSpec {
  src?: string;
  dst?: string;
  /** Default: 0x0800 (IPv4). */
  etherType?: number;
}

export interface Ipv4Spec {
  src: string;
  dst: string;
  tos?: number;
  /** Default 64. */
  ttl?: number;
  id?: number;
  df?: boolean;
  mf?: boolean;
  /** Fragment offset in bytes (multiple of 8). */
  fragOffset?: number;
  /** Raw option bytes; padded with zeros (EOL) to a multiple of 4. */
  options?: Buffer;
  /** Default: from the payload (tcp/udp/icmp/inner). */
  protocol?: number;
  /** Override the computed header checksum. */
  checksum?: number;
  /** Override the computed total length. */
  totalLength?: number;
}

export interface TcpFlags {
  fin?: boolean;
  syn?: boolean;
  rst?: boolean;
  psh?: boolean;
  ack?: boolean;
  urg?: boolean;
  ece?: boolean;
  cwr?: boolean;
}

export interface TcpSpec {
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  flags?: TcpFlags | number;
  window?: number;
  urgent?: number;
  /** Raw option bytes; padded with zeros to a multiple of 4. */
  options?: Buffer;
  payload?: Buffer;
  checksum?: number;
}

export interface UdpSpec {
  sport: number;
  dport: number;
  payload?: Buffer;
  /** Override; 0 means "no checksum". */
  checksum?: number;
}

export interface IcmpSpec {
  type: number;
  code?: number;
  /** Bytes 4..7 of the header (echo: id+seq; frag-needed: unused+MTU). */
  rest?: Buffer;
  payload?: Buffer;
  checksum?: number;
}

export interface PacketSpec {
  /** Ethernet header; false for a bare IPv4 packet. Default: zero MACs. */
  eth?: EthSpec | false;
  ip: Ipv4Spec;
  tcp?: TcpSpec;
  udp?: UdpSpec;
  icmp?: IcmpSpec;
  /** IPIP: the inner IPv4 packet (its eth is ignored). */
  inner?: Omit<PacketSpec, 'eth'>;
  /** Raw L4 bytes (set ip.protocol). */
  payload?: Buffer;
}

const TCP_FLAG_BITS: Record<keyof TcpFlags, number> = {
  fin: 0x01,
  syn: 0x02,
  rst: 0x04,
  psh: 0x08,
  ack: 0x10,
  urg: 0x20,
  ece: 0x40,
  cwr: 0x80,
};

function pad4(b: Buffer | undefined): Buffer {
  if (!b || b.length === 0) return Buffer.alloc(0);
  return b.length % 4 === 0 ? b : Buffer.concat([b, Buffer.alloc(4 - (b.length % 4))]);
}

function checkPort(what: string, p: number): void {
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new RangeError(`${what} ${p} is not a port`);
}

export function tcpFlagsByte(flags: TcpFlags | number | undefined): number {
  if (flags === undefined) return 0;
  if (typeof flags === 'number') return flags & 0xff;
  let v = 0;
  for (const [k, bit] of Object.entries(TCP_FLAG_BITS)) if (flags[k as keyof TcpFlags]) v |= bit;
  return v;
}

/** A TCP segment with its checksum over the IPv4 pseudo-header of src → dst. */
export function buildTcp(spec: TcpSpec, src: string, dst: string): Buffer {
  checkPort('tcp sport', spec.sport);
  checkPort('tcp dport', spec.dport);
  const opts = pad4(spec.options);
  const hlen = 20 + opts.length;
  if (hlen > 60) throw new RangeError(`TCP options too long (${opts.length} bytes)`);
  const payload = spec.payload ?? Buffer.alloc(0);
  const seg = Buffer.alloc(hlen + payload.length);
  seg.writeUInt16BE(spec.sport, 0);
  seg.writeUInt16BE(spec.dport, 2);
  seg.writeUInt32BE((spec.seq ?? 0) >>> 0, 4);
  seg.writeUInt32BE((spec.ack ?? 0) >>> 0, 8);
  seg[12] = (hlen / 4) << 4;
  seg[13] = tcpFlagsByte(spec.flags);
  seg.writeUInt16BE(spec.window ?? 65535, 14);
  seg.writeUInt16BE(spec.urgent ?? 0, 18);
  opts.copy(seg, 20);
  payload.copy(seg, hlen);
  const sum = spec.checksum ?? internetChecksum(seg, pseudoHeaderSum(ipv4ToBytes(src), ipv4ToBytes(dst), IPPROTO_TCP, seg.length));
  seg.writeUInt16BE(sum, 16);
  return seg;
}

/** A UDP datagram with its checksum over the IPv4 pseudo-header (a computed 0 is sent as 0xffff). */
export function buildUdp(spec: UdpSpec, src: string, dst: string): Buffer {
  checkPort('udp sport', spec.sport);
  checkPort('udp dport', spec.dport);
  const payload = spec.payload ?? Buffer.alloc(0);
  const d = Buffer.alloc(8 + payload.length);
  d.writeUInt16BE(spec.sport, 0);
  d.writeUInt16BE(spec.dport, 2);
  d.writeUInt16BE(d.length, 4);
  payload.copy(d, 8);
  let sum = spec.checksum;
  if (sum === undefined) {
    sum = internetChecksum(d, pseudoHeaderSum(ipv4ToBytes(src), ipv4ToBytes(dst), IPPROTO_UDP, d.length));
    if (sum === 0) sum = 0xffff;
  }
  d.writeUInt16BE(sum, 6);
  return d;
}

export function buildIcmp(spec: IcmpSpec): Buffer {
  const rest = spec.rest ?? Buffer.alloc(4);
  if (rest.length !== 4) throw new RangeError('icmp rest must be 4 bytes');
  const payload = spec.payload ?? Buffer.alloc(0);
  const m = Buffer.alloc(8 + payload.length);
  m[0] = spec.type;
  m[1] = spec.code ?? 0;
  rest.copy(m, 4);
  payload.copy(m, 8);
  m.writeUInt16BE(spec.checksum ?? internetChecksum(m), 2);
  return m;
}

/** ICMP echo request (or reply) fields. */
export function icmpEcho(opts: { id: number; seq: number; payload?: Buffer; reply?: boolean }): IcmpSpec {
  const rest = Buffer.alloc(4);
  rest.writeUInt16BE(opts.id, 0);
  rest.writeUInt16BE(opts.seq, 2);
  return { type: opts.reply ? 0 : 8, code: 0, rest, payload: opts.payload ?? Buffer.alloc(0) };
}

/**
 * ICMP destination unreachable / fragmentation needed (type 3 code 4) for
 * `original` (an IPv4 packet): carries its IP header plus the first 8 bytes
 * of its payload, as RFC 792 requires (more when `embedBytes` says so).
 */
export function icmpFragNeeded(opts: { mtu: number; original: Buffer; embedBytes?: number }): IcmpSpec {
  const rest = Buffer.alloc(4);
  rest.writeUInt16BE(opts.mtu, 2);
  const ihl = (opts.original[0]! & 15) * 4;
  const n = Math.min(opts.original.length, opts.embedBytes ?? ihl + 8);
  return { type: 3, code: 4, rest, payload: Buffer.from(opts.original.subarray(0, n)) };
}

/** The edgelb DSR IPv4 option (bpf/include/dsr_option.h): type 0x9e, len 8, port, VIP — network order. */
export function dsrOption(vip: string, port: number): Buffer {
  checkPort('dsr port', port);
  const o = Buffer.alloc(8);
  o[0] = DSR_OPT_TYPE;
  o[1] = 8;
  o.writeUInt16BE(port, 2);
  ipv4ToBytes(vip).copy(o, 4);
  return o;
}

export const DSR_OPT_TYPE = 0x9e;

/** An IPv4 packet around an already-built L4 payload. */
export function buildIpv4(spec: Ipv4Spec, payload: Buffer, protocol: number): Buffer {
  const opts = pad4(spec.options);
  const ihl = 20 + opts.length;
  if (ihl > 60) throw new RangeError(`IPv4 options too long (${opts.length} bytes)`);
  const frag = spec.fragOffset ?? 0;
  if (frag % 8 !== 0 || frag < 0 || frag / 8 > 0x1fff) throw new RangeError(`fragment offset ${frag} is not a multiple of 8 in range`);
  const p = Buffer.alloc(ihl + payload.length);
  p[0] = 0x40 | (ihl / 4);
  p[1] = spec.tos ?? 0;
  p.writeUInt16BE(spec.totalLength ?? p.length, 2);
  p.writeUInt16BE(spec.id ?? 0, 4);
  p.writeUInt16BE((spec.df ? 0x4000 : 0) | (spec.mf ? 0x2000 : 0) | (frag / 8), 6);
  p[8] = spec.ttl ?? 64;
  p[9] = spec.protocol ?? protocol;
  ipv4ToBytes(spec.src).copy(p, 12);
  ipv4ToBytes(spec.dst).copy(p, 16);
  opts.copy(p, 20);
  p.writeUInt16BE(spec.checksum ?? internetChecksum(p.subarray(0, ihl)), 10);
  payload.copy(p, ihl);
  return p;
}

export function buildEthernet(spec: EthSpec, payload: Buffer): Buffer {
  const f = Buffer.alloc(14 + payload.length);
  macToBytes(spec.dst ?? '00:00:00:00:00:00').copy(f, 0);
  macToBytes(spec.src ?? '00:00:00:00:00:00').copy(f, 6);
  f.writeUInt16BE(spec.etherType ?? ETH_P_IP, 12);
  payload.copy(f, 14);
  return f;
}

export interface ArpSpec {
  /** 1 = request, 2 = reply. */
  op: 1 | 2;
  senderMac: string;
  senderIp: string;
  targetMac?: string;
  targetIp: string;
  /** Ethernet source; default senderMac. */
  ethSrc?: string;
  /** Ethernet destination; default broadcast for a request, targetMac for a reply. */
  ethDst?: string;
}

/** An ARP (IPv4 over Ethernet) frame. */
export function buildArp(spec: ArpSpec): Buffer {
  const arp = Buffer.alloc(28);
  arp.writeUInt16BE(1, 0);
  arp.writeUInt16BE(ETH_P_IP, 2);
  arp[4] = 6;
  arp[5] = 4;
  arp.writeUInt16BE(spec.op, 6);
  macToBytes(spec.senderMac).copy(arp, 8);
  ipv4ToBytes(spec.senderIp).copy(arp, 14);
  macToBytes(spec.targetMac ?? '00:00:00:00:00:00').copy(arp, 18);
  ipv4ToBytes(spec.targetIp).copy(arp, 24);
  const dst = spec.ethDst ?? (spec.op === 1 ? 'ff:ff:ff:ff:ff:ff' : (spec.targetMac ?? 'ff:ff:ff:ff:ff:ff'));
  return buildEthernet({ src: spec.ethSrc ?? spec.senderMac, dst, etherType: ETH_P_ARP }, arp);
}

/** An Ethernet frame (or, with eth: false, a bare IPv4 packet) from a spec. */
export function buildPacket(spec: PacketSpec): Buffer {
  const l4s = [spec.tcp, spec.udp, spec.icmp, spec.inner, spec.payload].filter((x) => x !== undefined);
  if (l4s.length > 1) throw new Error('buildPacket: give only one of tcp, udp, icmp, inner, payload');
  let l4: Buffer;
  let proto: number;
  if (spec.tcp) {
    l4 = buildTcp(spec.tcp, spec.ip.src, spec.ip.dst);
    proto = IPPROTO_TCP;
  } else if (spec.udp) {
    l4 = buildUdp(spec.udp, spec.ip.src, spec.ip.dst);
    proto = IPPROTO_UDP;
  } else if (spec.icmp) {
    l4 = buildIcmp(spec.icmp);
    proto = IPPROTO_ICMP;
  } else if (spec.inner) {
    l4 = buildPacket({ ...spec.inner, eth: false });
    proto = IPPROTO_IPIP;
  } else {
    l4 = spec.payload ?? Buffer.alloc(0);
    if (spec.ip.protocol === undefined) throw new Error('buildPacket: a raw payload needs ip.protocol');
    proto = spec.ip.protocol;
  }
  const ip = buildIpv4(spec.ip, l4, proto);
  return spec.eth === false ? ip : buildEthernet(spec.eth ?? {}, ip);
}

// ---------------------------------------------------------------- parsing

export interface ParsedEth {
  dst: string;
  src: string;
  etherType: number;
}

export interface Ipv4Option {
  type: number;
  /** Whole option length (1 for EOL/NOP). */
  length: number;
  /** Bytes after type and length. */
  data: Buffer;
}

export interface ParsedIpv4 {
  version: number;
  /** Header length in bytes. */
  ihl: number;
  tos: number;
  totalLength: number;
  id: number;
  df: boolean;
  mf: boolean;
  /** In bytes. */
  fragOffset: number;
  ttl: number;
  protocol: number;
  checksum: number;
  src: string;
  dst: string;
  options: Buffer;
  optionList: Ipv4Option[];
}

export interface ParsedTcp {
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  dataOffset: number;
  flags: Required<TcpFlags>;
  flagsByte: number;
  window: number;
  checksum: number;
  urgent: number;
  options: Buffer;
  payload: Buffer;
}

export interface ParsedUdp {
  sport: number;
  dport: number;
  length: number;
  checksum: number;
  payload: Buffer;
}

export interface ParsedIcmp {
  type: number;
  code: number;
  checksum: number;
  rest: Buffer;
  /** Echo request/reply. */
  id?: number;
  seq?: number;
  /** Destination unreachable code 4. */
  mtu?: number;
  /** Errors (type 3, 11, 12): the embedded original packet, parsed as far as it goes. */
  embedded?: ParsedPacket;
  payload: Buffer;
}

export interface ParsedPacket {
  eth?: ParsedEth;
  ip: ParsedIpv4;
  /** The IPv4 packet bytes (header + payload, cut to totalLength when it fits). */
  ipBytes: Buffer;
  tcp?: ParsedTcp;
  udp?: ParsedUdp;
  icmp?: ParsedIcmp;
  /** IPIP: the inner packet. */
  inner?: ParsedPacket;
  /** L4 bytes after the IP header (all of them for non-first fragments). */
  l4Bytes: Buffer;
  /** True when the buffer ended before a header did (embedded ICMP headers). */
  truncated: boolean;
}

export function parseIpv4Options(opts: Buffer): Ipv4Option[] {
  const out: Ipv4Option[] = [];
  let i = 0;
  while (i < opts.length) {
    const type = opts[i]!;
    if (type === 0) break;
    if (type === 1) {
      out.push({ type, length: 1, data: Buffer.alloc(0) });
      i++;
      continue;
    }
    const len = opts[i + 1];
    if (len === undefined || len < 2 || i + len > opts.length) throw new Error(`malformed IPv4 option type ${type} at offset ${i}`);
    out.push({ type, length: len, data: opts.subarray(i + 2, i + len) });
    i += len;
  }
  return out;
}

/** The DSR option's {vip, port} when the IPv4 header carries one. */
export function findDsrOption(ip: ParsedIpv4): { vip: string; port: number } | null {
  const o = ip.optionList.find((x) => x.type === DSR_OPT_TYPE);
  if (!o || o.length !== 8) return null;
  return { port: o.data.readUInt16BE(0), vip: ipv4ToString(o.data, 2) };
}

function parseTcp(b: Buffer): { tcp?: ParsedTcp; truncated: boolean } {
  if (b.length < 20) {
    if (b.length >= 8) {
      // ICMP errors embed only 8 bytes: ports and sequence number.
      return {
        tcp: {
          sport: b.readUInt16BE(0), dport: b.readUInt16BE(2), seq: b.readUInt32BE(4), ack: 0, dataOffset: 0,
          flags: flagsFrom(0), flagsByte: 0, window: 0, checksum: 0, urgent: 0, options: Buffer.alloc(0), payload: Buffer.alloc(0),
        },
        truncated: true,
      };
    }
    return { truncated: true };
  }
  const off = (b[12]! >> 4) * 4;
  const fb = b[13]!;
  return {
    tcp: {
      sport: b.readUInt16BE(0),
      dport: b.readUInt16BE(2),
      seq: b.readUInt32BE(4),
      ack: b.readUInt32BE(8),
      dataOffset: off,
      flags: flagsFrom(fb),
      flagsByte: fb,
      window: b.readUInt16BE(14),
      checksum: b.readUInt16BE(16),
      urgent: b.readUInt16BE(18),
      options: b.subarray(20, Math.min(off, b.length)),
      payload: b.subarray(Math.min(off, b.length)),
    },
    truncated: off > b.length,
  };
}

function flagsFrom(fb: number): Required<TcpFlags> {
  const f = {} as Required<TcpFlags>;
  for (const [k, bit] of Object.entries(TCP_FLAG_BITS)) f[k as keyof TcpFlags] = (fb & bit) !== 0;
  return f;
}

function parseIcmp(b: Buffer): { icmp?: ParsedIcmp; truncated: boolean } {
  if (b.length < 8) return { truncated: true };
  const type = b[0]!;
  const code = b[1]!;
  const icmp: ParsedIcmp = { type, code, checksum: b.readUInt16BE(2), rest: b.subarray(4, 8), payload: b.subarray(8) };
  if (type === 0 || type === 8) {
    icmp.id = b.readUInt16BE(4);
    icmp.seq = b.readUInt16BE(6);
  }
  if (type === 3 && code === 4) icmp.mtu = b.readUInt16BE(6);
  if ((type === 3 || type === 11 || type === 12) && b.length >= 28) {
    try {
      icmp.embedded = parseIpv4(b.subarray(8));
    } catch {
      // not an IPv4 header: leave it as payload
    }
  }
  return { icmp, truncated: false };
}

/** Parses an IPv4 packet (tolerating truncation after the IP header). */
export function parseIpv4(b: Buffer): ParsedPacket {
  if (b.length < 20) throw new Error(`IPv4 packet too short (${b.length} bytes)`);
  const version = b[0]! >> 4;
  if (version !== 4) throw new Error(`not IPv4 (version ${version})`);
  const ihl = (b[0]! & 15) * 4;
  if (ihl < 20 || ihl > b.length) throw new Error(`bad IPv4 header length ${ihl} (${b.length} bytes)`);
  const totalLength = b.readUInt16BE(2);
  const fragField = b.readUInt16BE(6);
  const options = b.subarray(20, ihl);
  const ip: ParsedIpv4 = {
    version,
    ihl,
    tos: b[1]!,
    totalLength,
    id: b.readUInt16BE(4),
    df: (fragField & 0x4000) !== 0,
    mf: (fragField & 0x2000) !== 0,
    fragOffset: (fragField & 0x1fff) * 8,
    ttl: b[8]!,
    protocol: b[9]!,
    checksum: b.readUInt16BE(10),
    src: ipv4ToString(b, 12),
    dst: ipv4ToString(b, 16),
    options,
    optionList: parseIpv4Options(options),
  };
  const end = totalLength >= ihl && totalLength <= b.length ? totalLength : b.length;
  const ipBytes = b.subarray(0, end);
  const l4Bytes = b.subarray(ihl, end);
  const out: ParsedPacket = { ip, ipBytes, l4Bytes, truncated: totalLength > b.length };
  if (ip.fragOffset !== 0) return out;
  switch (ip.protocol) {
    case IPPROTO_TCP: {
      const r = parseTcp(l4Bytes);
      if (r.tcp) out.tcp = r.tcp;
      out.truncated ||= r.truncated;
      break;
    }
    case IPPROTO_UDP:
      if (l4Bytes.length >= 8) {
        out.udp = {
          sport: l4Bytes.readUInt16BE(0),
          dport: l4Bytes.readUInt16BE(2),
          length: l4Bytes.readUInt16BE(4),
          checksum: l4Bytes.readUInt16BE(6),
          payload: l4Bytes.subarray(8),
        };
      } else {
        out.truncated = true;
      }
      break;
    case IPPROTO_ICMP: {
      const r = parseIcmp(l4Bytes);
      if (r.icmp) out.icmp = r.icmp;
      out.truncated ||= r.truncated;
      break;
    }
    case IPPROTO_IPIP:
      if (l4Bytes.length >= 20) out.inner = parseIpv4(l4Bytes);
      else out.truncated = true;
      break;
  }
  return out;
}

/** Parses an Ethernet frame carrying IPv4 (or, with l2: false, a bare IPv4 packet). */
export function parsePacket(b: Buffer, opts: { l2?: boolean } = {}): ParsedPacket {
  if (opts.l2 === false) return parseIpv4(b);
  if (b.length < 14) throw new Error(`Ethernet frame too short (${b.length} bytes)`);
  const eth: ParsedEth = { dst: macToString(b, 0), src: macToString(b, 6), etherType: b.readUInt16BE(12) };
  if (eth.etherType !== ETH_P_IP) throw new Error(`EtherType 0x${eth.etherType.toString(16)} is not IPv4`);
  return { eth, ...parseIpv4(b.subarray(14)) };
}
