// IPv4/IPv6 addresses as bigints, so one code path serves both families.
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

export interface Cidr {
  family: Family;
  /** First address (network bits only). */
  base: bigint;
  prefix: number;
  /** Number of addresses in the block. */
  size: bigint;
  /** Canonical text, e.g. "10.0.0.0/24", "2001:db8::/64". */
  text: string;
}

export function ipFamily(ip: string): Family | null {
  if (isIPv4(ip)) return 4;
  if (isIPv6(ip)) return 6;
  return null;
}

/** Parses an IPv4 or IPv6 address; throws naming the bad input. */
export function ipToBigInt(ip: string): { family: Family; value: bigint } {
  if (isIPv4(ip)) {
    let v = 0n;
    for (const part of ip.split('.')) v = (v << 8n) | BigInt(Number(part));
    return { family: 4, value: v };
  }
  if (isIPv6(ip)) return { family: 6, value: parseV6(ip) };
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

export function bigIntToIp(value: bigint, family: Family): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => ((value >> s) & 0xffn).toString()).join('.');
  }
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

/** Canonical text of an address (lower-case, compressed IPv6), or null if invalid. */
export function canonicalIp(ip: string): string | null {
  const fam = ipFamily(ip);
  if (fam === null) return null;
  return bigIntToIp(ipToBigInt(ip).value, fam);
}

/**
 * Parses "ADDR/PREFIX" (a bare address means a host route). Host bits are
 * cleared: "10.0.0.7/24" is 10.0.0.0/24, as the kernel reads it.
 */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text.trim() : text.slice(0, slash).trim();
  const { family, value } = ipToBigInt(addr);
  const bits = family === 4 ? 32 : 128;
  const prefixText = slash < 0 ? String(bits) : text.slice(slash + 1).trim();
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) {
    throw new Error(`bad prefix length in CIDR ${JSON.stringify(text)}`);
  }
  const prefix = Number(prefixText);
  const hostBits = BigInt(bits - prefix);
  const base = (value >> hostBits) << hostBits;
  return { family, base, prefix, size: 1n << hostBits, text: `${bigIntToIp(base, family)}/${prefix}` };
}

export function cidrContains(c: Cidr, family: Family, value: bigint): boolean {
  return c.family === family && value >= c.base && value < c.base + c.size;
}
