// IP addresses, IPv4 and IPv6, in every form edgelb uses them: text (as
// operators and the Kubernetes API write them), canonical text (what keys
// and comparisons use), bigints (one arithmetic for both families: IPAM,
// CIDRs) and IPv4 as a 32-bit number (the datapath's map layouts).
//
// One rule for what an address is, everywhere: dotted quads without leading
// zeros ("010.0.0.1" is refused rather than read as decimal or, like
// inet_aton, octal), IPv6 as node:net reads it.
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

/** Address bits of a family: 32 or 128. */
export function familyBits(family: Family): 32 | 128 {
  return family === 4 ? 32 : 128;
}

export function isIpv4(s: unknown): s is string {
  return typeof s === 'string' && isIPv4(s) && !/(^|\.)0\d/.test(s);
}

export function isIpv6(s: unknown): s is string {
  return typeof s === 'string' && isIPv6(s);
}

export function isIp(s: unknown): s is string {
  return isIpv4(s) || isIpv6(s);
}

export function ipFamily(ip: string): Family | null {
  if (isIpv4(ip)) return 4;
  if (isIpv6(ip)) return 6;
  return null;
}

/** Parses an IPv4 or IPv6 address; throws naming the bad input. */
export function ipToBigInt(ip: string): { family: Family; value: bigint } {
  if (isIpv4(ip)) return { family: 4, value: BigInt(ipv4ToU32(ip)) };
  if (isIpv6(ip)) return { family: 6, value: parseV6(ip) };
  throw new Error(`not an IP address: ${JSON.stringify(ip)}`);
}

function parseV6(ip: string): bigint {
  let text = ip.split('%')[0] ?? ip;
  // An embedded dotted quad (::ffff:1.2.3.4) becomes two hex groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const q = tail.split('.').map(Number);
    const hi = (((q[0] ?? 0) << 8) | (q[1] ?? 0)).toString(16);
    const lo = (((q[2] ?? 0) << 8) | (q[3] ?? 0)).toString(16);
    text = `${text.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':');
  const r = rest === undefined ? [] : rest === '' ? [] : rest.split(':');
  const fill = rest === undefined ? 0 : 8 - h.length - r.length;
  const groups = [...h, ...Array<string>(fill).fill('0'), ...r];
  let v = 0n;
  for (const g of groups) v = (v << 16n) | BigInt(parseInt(g, 16));
  return v;
}

/** Canonical text of an address value: dotted quad, or RFC 5952 IPv6 (lower case, longest zero run compressed). */
export function bigIntToIp(value: bigint, family: Family): string {
  if (family === 4) return u32ToIpv4(Number(value & 0xffffffffn));
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((value >> BigInt(i * 16)) & 0xffffn).toString(16));
  // RFC 5952: compress the longest run (≥ 2) of zero groups, leftmost on ties.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`;
}

/**
 * Canonical text of an address (lower-case, compressed IPv6, zone dropped),
 * or null if it is not one: keys compare equal however the address was written.
 */
export function canonicalIp(ip: string): string | null {
  // A valid dotted quad has one spelling already: skip the bigint round trip,
  // which costs microseconds per call (the BGP speaker parses every VIP
  // several times per reconcile; 10 000 VIPs).
  if (isIpv4(ip)) return ip;
  const fam = ipFamily(ip);
  if (fam === null) return null;
  return bigIntToIp(ipToBigInt(ip).value, fam);
}

/**
 * Dotted-quad IPv4 to a 32-bit number (throws naming `what` and the value).
 * A hand-rolled scanner: the datapath runs it for every backend of every
 * service.
 */
export function ipv4ToU32(addr: string, what = 'address'): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < addr.length; i++) {
    const c = addr.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits === 1 && part === 0) return badIpv4(addr, what); // leading zero
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return badIpv4(addr, what);
    } else if (c === 46 && digits > 0 && dots < 3) {
      n = n * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else {
      return badIpv4(addr, what);
    }
  }
  if (dots !== 3 || digits === 0) return badIpv4(addr, what);
  return (n * 256 + part) >>> 0;
}

function badIpv4(addr: string, what: string): never {
  throw new Error(`${what} '${addr}' is not an IPv4 address`);
}

/** A 32-bit number as dotted-quad text. */
export function u32ToIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}
