// Pure translation of a VIP and its pool's advertisement settings into the
// GoBGP API's Path (NLRI + Any-wrapped path attributes), and back again for
// comparing what gobgpd holds with what we want.
import type { AdvertiseConfig } from '../config/types.js';
import { canonicalIp, isIpv4 } from '../net/ip.js';
import { FAMILY_V4, FAMILY_V6, type AnyMsg, type ApiFamily, type ApiPath } from './api-types.js';

const T = 'type.googleapis.com/apipb.';

/** RFC 8326 GRACEFUL_SHUTDOWN well-known community 65535:0. */
export const GRACEFUL_SHUTDOWN = 'graceful-shutdown';
export const GRACEFUL_SHUTDOWN_VALUE = (65535 << 16) >>> 0;

/**
 * Internal large community that tags a path restricted to a subset of peers;
 * the global export policy matches it against a neighbor-set and strips it
 * before the UPDATE leaves (see policy.ts). Middle field spells "edlb".
 */
export const RESTRICT_MARK_LOCAL1 = 0x65646c62;

/** The attributes a VIP is advertised with: its pool's `advertise` (peers empty = all peers). */
export type VipAttrs = AdvertiseConfig;

export interface DesiredVip {
  /** "10.0.0.1/32" or "2001:db8::1/128" (a bare address is accepted and normalised). */
  prefix: string;
  attrs: VipAttrs;
}

export function attrsFromAdvertise(a: AdvertiseConfig): VipAttrs {
  return {
    communities: [...a.communities],
    largeCommunities: [...a.largeCommunities],
    localPref: a.localPref,
    med: a.med,
    asPathPrepend: a.asPathPrepend,
    peers: a.peers.map(canonicalAddress),
  };
}

export const NO_ATTRS: VipAttrs = { communities: [], largeCommunities: [], localPref: null, med: null, asPathPrepend: 0, peers: [] };

export interface ParsedPrefix {
  address: string;
  len: number;
  family: ApiFamily;
  v6: boolean;
}

/** Parse and validate a VIP host prefix; `where` names the offending input in errors. */
export function parseVipPrefix(prefix: string, where = 'VIP'): ParsedPrefix {
  const [addr, lenStr, extra] = prefix.split('/');
  if (addr === undefined || extra !== undefined) throw new Error(`${where}: "${prefix}" is not an address or prefix`);
  // Canonical text, so keys compare equal however the user wrote the address.
  const address = canonicalIp(addr);
  if (address === null) throw new Error(`${where}: "${addr}" is not an IPv4/IPv6 address`);
  const v4 = isIpv4(address);
  const max = v4 ? 32 : 128;
  const len = lenStr === undefined ? max : Number(lenStr);
  if (!Number.isInteger(len) || len !== max) throw new Error(`${where}: "${prefix}" must be a host route (/${max})`);
  return { address, len, family: v4 ? FAMILY_V4 : FAMILY_V6, v6: !v4 };
}

/**
 * One spelling per address (RFC 5952 for IPv6) as a string: text that is no
 * address comes back as it is. Peers too: gobgpd keeps a neighbor's address
 * as written, bfdd reports it canonical, and a differently spelt peer would
 * otherwise be deleted and re-added (its BGP and BFD sessions reset) on
 * every reload.
 */
export function canonicalAddress(addr: string): string {
  return canonicalIp(addr) ?? addr;
}

export function prefixKey(prefix: string): string {
  const p = parseVipPrefix(prefix);
  return `${p.address}/${p.len}`;
}

function u16(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${what}: ${n} is not 0–65535`);
  return n;
}

function u32(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 4294967295) throw new Error(`${what}: ${n} is not 0–4294967295`);
  return n;
}

/** "a:b" → 32-bit community value. */
export function encodeCommunity(s: string): number {
  if (s === GRACEFUL_SHUTDOWN) return GRACEFUL_SHUTDOWN_VALUE;
  const parts = s.split(':');
  if (parts.length !== 2 || parts.some((p) => !/^\d+$/.test(p))) throw new Error(`community "${s}" is not "ASN:VALUE"`);
  const [a, b] = parts.map(Number) as [number, number];
  return ((u16(a, `community "${s}"`) << 16) >>> 0) + u16(b, `community "${s}"`);
}

export function decodeCommunity(v: number): string {
  return `${v >>> 16}:${v & 0xffff}`;
}

export interface LargeCommunity {
  global_admin: number;
  local_data1: number;
  local_data2: number;
}

export function encodeLargeCommunity(s: string): LargeCommunity {
  const parts = s.split(':');
  if (parts.length !== 3 || parts.some((p) => !/^\d+$/.test(p))) throw new Error(`large community "${s}" is not "GLOBAL:LOCAL1:LOCAL2"`);
  const [g, l1, l2] = parts.map((p) => u32(Number(p), `large community "${s}"`)) as [number, number, number];
  return { global_admin: g, local_data1: l1, local_data2: l2 };
}

export function decodeLargeCommunity(c: LargeCommunity): string {
  return `${c.global_admin}:${c.local_data1}:${c.local_data2}`;
}

/** Stable 32-bit id of a peer subset (FNV-1a over the sorted addresses). */
export function peerGroupId(peers: string[]): number {
  const key = [...new Set(peers)].sort().join(',');
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

export function restrictMark(localAsn: number, peers: string[]): string {
  return `${localAsn}:${RESTRICT_MARK_LOCAL1}:${peerGroupId(peers)}`;
}

export interface PathOptions {
  /** Our ASN, for AS-path prepending and the restriction mark. */
  localAsn: number;
  /** Add GRACEFUL_SHUTDOWN (drain). */
  gracefulShutdown?: boolean;
}

/**
 * The GoBGP Path for one VIP. Next hop 0.0.0.0 / :: lets gobgpd fill in the
 * session's local address per peer (next-hop-self), which is what we want for
 * DSR: traffic for the VIP comes to the edge that announced it.
 */
export function buildPath(vip: DesiredVip, opts: PathOptions): ApiPath {
  const p = parseVipPrefix(vip.prefix);
  const a = vip.attrs;
  const pattrs: AnyMsg[] = [
    { '@type': `${T}OriginAttribute`, origin: 0 },
    { '@type': `${T}NextHopAttribute`, next_hop: p.v6 ? '::' : '0.0.0.0' },
  ];
  if (a.asPathPrepend < 0 || a.asPathPrepend > 10 || !Number.isInteger(a.asPathPrepend)) {
    throw new Error(`${vip.prefix}: asPathPrepend ${a.asPathPrepend} is not 0–10`);
  }
  if (a.asPathPrepend > 0) {
    // gobgpd prepends our ASN once more on eBGP export, so these are the "extra" copies.
    pattrs.push({
      '@type': `${T}AsPathAttribute`,
      segments: [{ type: 'AS_SEQUENCE', numbers: Array<number>(a.asPathPrepend).fill(opts.localAsn) }],
    });
  }
  if (a.med !== null) pattrs.push({ '@type': `${T}MultiExitDiscAttribute`, med: u32(a.med, `${vip.prefix}: med`) });
  if (a.localPref !== null) pattrs.push({ '@type': `${T}LocalPrefAttribute`, local_pref: u32(a.localPref, `${vip.prefix}: localPref`) });
  const comms = [...new Set(a.communities.map(encodeCommunity))];
  if (opts.gracefulShutdown && !comms.includes(GRACEFUL_SHUTDOWN_VALUE)) comms.push(GRACEFUL_SHUTDOWN_VALUE);
  if (comms.length > 0) pattrs.push({ '@type': `${T}CommunitiesAttribute`, communities: comms });
  const large = a.largeCommunities.map(encodeLargeCommunity);
  if (a.peers.length > 0) large.push(encodeLargeCommunity(restrictMark(opts.localAsn, a.peers)));
  if (large.length > 0) pattrs.push({ '@type': `${T}LargeCommunitiesAttribute`, communities: large });
  return {
    nlri: { '@type': `${T}IPAddressPrefix`, prefix: p.address, prefix_len: p.len },
    pattrs,
    family: p.family,
  };
}

/** A canonical, order-independent summary of a path's attributes, for equality checks. */
export interface PathSummary {
  prefix: string;
  nextHop: string;
  communities: string[];
  largeCommunities: string[];
  localPref: number | null;
  med: number | null;
  asPath: number[];
}

export function summarizePath(path: ApiPath): PathSummary {
  const nlri = path.nlri as { prefix?: string; prefix_len?: number };
  const s: PathSummary = {
    prefix: `${nlri.prefix}/${nlri.prefix_len}`,
    nextHop: '',
    communities: [],
    largeCommunities: [],
    localPref: null,
    med: null,
    asPath: [],
  };
  for (const at of path.pattrs) {
    const type = at['@type'].slice(at['@type'].lastIndexOf('.') + 1);
    switch (type) {
      case 'NextHopAttribute':
        s.nextHop = String(at['next_hop']);
        break;
      case 'MpReachNLRIAttribute':
        s.nextHop = String((at['next_hops'] as string[] | undefined)?.[0] ?? '');
        break;
      case 'CommunitiesAttribute':
        s.communities = (at['communities'] as number[]).map(decodeCommunity).sort();
        break;
      case 'LargeCommunitiesAttribute':
        s.largeCommunities = (at['communities'] as LargeCommunity[]).map(decodeLargeCommunity).sort();
        break;
      case 'LocalPrefAttribute':
        s.localPref = Number(at['local_pref']);
        break;
      case 'MultiExitDiscAttribute':
        s.med = Number(at['med']);
        break;
      case 'AsPathAttribute':
        s.asPath = (at['segments'] as { numbers: number[] }[]).flatMap((seg) => seg.numbers.map(Number));
        break;
    }
  }
  return s;
}

export function sameSummary(a: PathSummary, b: PathSummary): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
