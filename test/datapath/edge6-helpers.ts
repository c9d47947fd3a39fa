// Fixtures for the edge's IPv6 datapath tests: IPv6 frontends written
// straight into the maps with ids and a ring region the test chooses
// (datapath tests name backend ids; the planner's own path is tested
// through applyServices), frames, and an independent TypeScript copy of the
// flow hash and the Maglev slot choice so a test can name the backend a flow
// must reach.
import type { Backend, DesiredService } from '../../src/model/types.js';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';
import { chooseTableSize, maglevTable } from '../../src/datapath/maglev.js';
import { protoNumber } from '../../src/net/l4.js';
import {
  BE_F_ACTIVE,
  BE_F_IPIP,
  BE_F_VALID,
  EDGE_RING_PER_ELEM,
  SVC_F_MARKER,
  SVC_F_SNAT,
  SVC_F_SRC_RANGES,
  encodeBackend6,
  encodeSrcRange6Key,
  encodeSvc,
  encodeSvc6Key,
  u32Key,
} from '../../src/datapath/edge-maps.js';
import { buildPacket6, ip6Bytes, type ExtHeader } from '../lib/packets6.js';
import type { TcpFlags } from '../lib/packets.js';
import { CLIENT_MAC, EDGE_MAC } from './edge-helpers.js';

export const CLIENT6 = '2001:db8:1::7';
export const VIP6 = '2001:db8:100::10';
export const EDGE6 = '2001:db8::1';


/** Ids far above what the planner hands out in these small maps' tests (it starts at 1). */
export const SVC6_ID = 3000;
export const BE6_ID0 = 3000;
/** A region at the top of the small ring (4096 elements × 16 = 65536 slots). */
export const RING6_OFF = 65536 - 16384;

export function backend6(i: number, over: Partial<Backend> = {}): Backend {
  return {
    ip: `fd00:244::${(i + 1).toString(16)}`,
    port: 8080,
    nodeIp: `fd00:10::${(10 + (i % 5)).toString(16)}`,
    nodeName: `node${i % 5}`,
    weight: 1,
    state: 'active',
    ...over,
  };
}

export function service6(over: Partial<DesiredService> = {}): DesiredService {
  return {
    service: 'default/web6',
    frontend: { vip: VIP6, port: 80, protocol: 'TCP' },
    mode: 'dsr',
    dispatch: 'ip-option',
    sourceRanges: [],
    affinityTimeoutSeconds: 0,
    backends: [backend6(1)],
    ...over,
  };
}

/** Writes an IPv6 frontend into the maps (backends, ring, ranges, then the service). */
export function apply6(dp: EdgeDatapath, d: DesiredService, slots: Partial<Frontend6Slots> = {}, maglevTableSize = 16381): Frontend6Slots {
  const s: Frontend6Slots = {
    svcId: slots.svcId ?? SVC6_ID,
    ringOff: slots.ringOff ?? RING6_OFF,
    backendIds: slots.backendIds ?? d.backends.map((_, i) => BE6_ID0 + i),
  };
  const w = frontend6Writes(d, s, maglevTableSize, d.dispatch === 'ipip' ? 'ipip' : 'ip-option');
  for (const [k, v] of w.backends6) dp.map('edge_backends6').update(k, v);
  for (const [k, v] of w.ring) dp.map('edge_ring').update(k, v);
  for (const k of w.srcRanges6) dp.map('edge_src_ranges6').update(k, Buffer.from([1]));
  for (const [k, v] of w.services6) dp.map('edge_services6').update(k, v);
  return s;
}

// ---------------------------------------------------------------- map entries of one frontend, by hand

export interface Frontend6Slots {
  svcId: number;
  /** First slot of the region (a multiple of its size, which is 2^cls of chooseTableSize). */
  ringOff: number;
  /** One id per backend of the frontend, in its order. */
  backendIds: number[];
}

export interface Frontend6Writes {
  /** edge_services6: the service and the VIP marker. */
  services6: Array<[Buffer, Buffer]>;
  backends6: Array<[Buffer, Buffer]>;
  /** edge_ring elements (16 slots each) of the region. */
  ring: Array<[Buffer, Buffer]>;
  srcRanges6: Buffer[];
  /** Region size in slots (2^cls). */
  regionSlots: number;
}

/** Entries for `d` (IPv6 VIP, backends and node addresses; any mode: snat, and hybrid UDP, set SVC_F_SNAT). Throws naming what it cannot encode. */
export function frontend6Writes(d: DesiredService, slots: Frontend6Slots, maglevTableSize: number, dispatch: 'ip-option' | 'ipip'): Frontend6Writes {
  const snat = d.mode === 'snat' || (d.mode === 'hybrid' && d.frontend.protocol === 'UDP');
  if (slots.backendIds.length !== d.backends.length) throw new Error(`${d.service}: ${d.backends.length} backends but ${slots.backendIds.length} ids`);
  const proto = protoNumber(d.frontend.protocol);
  const active = d.backends.map((b, i) => ({ b, id: slots.backendIds[i]! })).filter((x) => x.b.state === 'active');
  const size = active.length > 0 ? chooseTableSize(active.length, maglevTableSize) : null;
  const regionSlots = size ? 2 ** size.cls : 0;
  if (size && slots.ringOff % regionSlots !== 0) throw new Error(`ring offset ${slots.ringOff} is not aligned to the region size ${regionSlots}`);
  const out: Frontend6Writes = { services6: [], backends6: [], ring: [], srcRanges6: [], regionSlots };
  d.backends.forEach((b, i) => {
    const flags = BE_F_VALID | (b.state === 'active' ? BE_F_ACTIVE : 0) | (dispatch === 'ipip' && !snat ? BE_F_IPIP : 0);
    out.backends6.push([u32Key(slots.backendIds[i]!), encodeBackend6({ ip: b.ip, nodeIp: b.nodeIp, port: b.port, flags, svcId: slots.svcId })]);
  });
  if (size) {
    const idx = maglevTable(active.map((x) => ({ key: `${x.b.ip}:${x.b.port}`, weight: x.b.weight })), size.m);
    const ids = new Uint32Array(regionSlots);
    for (let i = 0; i < size.m; i++) ids[i] = active[idx[i]!]!.id;
    for (let e = 0; e < regionSlots; e += EDGE_RING_PER_ELEM) {
      const v = Buffer.alloc(4 * EDGE_RING_PER_ELEM);
      for (let j = 0; j < EDGE_RING_PER_ELEM; j++) v.writeUInt32LE(ids[e + j]!, 4 * j);
      out.ring.push([u32Key((slots.ringOff + e) / EDGE_RING_PER_ELEM), v]);
    }
  }
  for (const r of d.sourceRanges) out.srcRanges6.push(encodeSrcRange6Key(slots.svcId, r.includes('/') ? r : `${r}/128`));
  const flags = (d.sourceRanges.length > 0 ? SVC_F_SRC_RANGES : 0) | (snat ? SVC_F_SNAT : 0);
  out.services6.push([
    encodeSvc6Key({ vip: d.frontend.vip, port: d.frontend.port, proto }),
    encodeSvc({ id: slots.svcId, ringOff: size ? slots.ringOff : 0, ringSize: size ? size.m : 0, affinityTimeout: d.affinityTimeoutSeconds, flags }),
  ]);
  out.services6.push([encodeSvc6Key({ vip: d.frontend.vip, port: 0, proto: 0 }), encodeSvc({ id: 0, ringOff: 0, ringSize: 0, affinityTimeout: 0, flags: SVC_F_MARKER })]);
  return out;
}

// ---------------------------------------------------------------- hash and Maglev, independently

function rotl(x: number, r: number): number {
  return ((x << r) | (x >>> (32 - r))) >>> 0;
}

function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51) >>> 0;
  k = rotl(k, 15);
  k = Math.imul(k, 0x1b873593) >>> 0;
  h = (h ^ k) >>> 0;
  h = rotl(h, 13);
  return (Math.imul(h, 5) + 0xe6546b64) >>> 0;
}

function fmix(h: number): number {
  h = (h ^ (h >>> 16)) >>> 0;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h = (h ^ (h >>> 13)) >>> 0;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

/** edge_flow_hash6 as the program computes it on a little-endian host (network-order words loaded LE). */
export function flowHash6(src: string, dst: string, sport: number, dport: number, proto: number): number {
  let h = (0x2f6b5a13 ^ proto) >>> 0;
  const s = ip6Bytes(src);
  const d = ip6Bytes(dst);
  for (let i = 0; i < 16; i += 4) h = mix(h, s.readUInt32LE(i));
  for (let i = 0; i < 16; i += 4) h = mix(h, d.readUInt32LE(i));
  const p = Buffer.alloc(4);
  p.writeUInt16BE(sport, 0);
  p.writeUInt16BE(dport, 2);
  const sp = p.readUInt16LE(0);
  const dp = p.readUInt16LE(2);
  h = mix(h, ((sp << 16) | dp) >>> 0);
  return fmix(h);
}

/** The backend (index into d.backends) Maglev gives a flow of `hash`. */
export function maglevPick(d: DesiredService, hash: number, maglevTableSize = 16381): number {
  const active = d.backends.map((b, i) => ({ b, i })).filter((x) => x.b.state === 'active');
  const { m } = chooseTableSize(active.length, maglevTableSize);
  const idx = maglevTable(active.map((x) => ({ key: `${x.b.ip}:${x.b.port}`, weight: x.b.weight })), m);
  const slot = Number((BigInt(hash) * BigInt(m)) >> 32n);
  return active[idx[slot]!]!.i;
}

// ---------------------------------------------------------------- frames

export const eth6 = { src: CLIENT_MAC, dst: EDGE_MAC };

export interface Tcp6Opts {
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  flags?: TcpFlags;
  payload?: Buffer;
  hopLimit?: number;
  tclass?: number;
  flowLabel?: number;
  ext?: ExtHeader[];
  /** Sequence number (default 1000) and ACK number (default 2000 with ACK, else 0). */
  seq?: number;
  ack?: number;
}

export function tcp6(o: Tcp6Opts = {}): Buffer {
  const flags = o.flags ?? { syn: true };
  return buildPacket6({
    eth: eth6,
    ip: { src: o.src ?? CLIENT6, dst: o.dst ?? VIP6, hopLimit: o.hopLimit ?? 64, tclass: o.tclass ?? 0, flowLabel: o.flowLabel ?? 0x12345 },
    ...(o.ext ? { ext: o.ext } : {}),
    tcp: {
      sport: o.sport ?? 40000,
      dport: o.dport ?? 80,
      seq: o.seq ?? 1000,
      ack: o.ack ?? (flags.ack ? 2000 : 0),
      flags,
      ...(flags.syn ? { options: Buffer.from([2, 4, 0x05, 0xa0]) } : {}),
      payload: o.payload ?? Buffer.alloc(0),
    },
  });
}

export function udp6(o: { src?: string; dst?: string; sport?: number; dport?: number; payload?: Buffer; checksum?: number; hopLimit?: number; ext?: ExtHeader[] } = {}): Buffer {
  return buildPacket6({
    eth: eth6,
    ip: { src: o.src ?? CLIENT6, dst: o.dst ?? VIP6, hopLimit: o.hopLimit ?? 64 },
    ...(o.ext ? { ext: o.ext } : {}),
    udp: { sport: o.sport ?? 5353, dport: o.dport ?? 53, payload: o.payload ?? Buffer.from('hello edge6'), ...(o.checksum !== undefined ? { checksum: o.checksum } : {}) },
  });
}

// ---------------------------------------------------------------- ICMPv6 errors built on tc

/** One's-complement sum of big-endian 16-bit words, folded to 16 bits. */
function onesSum16(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length % 2) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** What a pending checksum completion over `l4` (an L4 header running to the frame's end, its checksum field included) stores in that field: the kernel's ~sum, never 0. */
export function completionStores(l4: Buffer): number {
  return (~onesSum16(l4) & 0xffff) || 0xffff;
}

/** The quoted L4 checksum field of an ICMPv6 quote (fixed header + TCP/UDP). */
export const quoteChecksumAt = (quote: Buffer): number => 40 + (quote[6] === 6 ? 16 : 6);

/**
 * The quote (the client's IPv6 header and L4 bytes) an ICMPv6 error built by
 * edge_tc6 carries: its L4 checksum set to the value a pending checksum
 * completion over the quoted L4 bytes would store, so completing it changes
 * nothing (edge_dsr6.h). Found here by search — the fixed point of
 * completionStores — not by the program's formula.
 */
export function settledQuote6(quote: Buffer): Buffer {
  const q = Buffer.from(quote);
  const at = quoteChecksumAt(q);
  const l4 = q.subarray(40);
  for (let v = 1; v <= 0xffff; v++) {
    q.writeUInt16BE(v, at);
    if (completionStores(l4) === v) return q;
  }
  throw new Error('no settled checksum');
}
