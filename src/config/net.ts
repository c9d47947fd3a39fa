// Address helpers for config validation. Strict on purpose: an operator
// typo such as "10.0.0.01" or "10.0.0.0/33" must be an error, not a guess.
import { isIPv4, isIPv6 } from 'node:net';

export function isIpv4(s: unknown): s is string {
  return typeof s === 'string' && isIPv4(s) && !/(^|\.)0\d/.test(s);
}

export function isIp(s: unknown): s is string {
  return isIpv4(s) || (typeof s === 'string' && isIPv6(s));
}

export interface Cidr {
  family: 4 | 6;
  /** Network address as a bigint, host bits cleared. */
  base: bigint;
  prefix: number;
}

export function ipToBigInt(ip: string): bigint {
  if (isIPv4(ip)) {
    return ip.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
  }
  const [head = '', tail] = ip.split('::');
  const expand = (part: string): string[] => (part === '' ? [] : part.split(':'));
  let groups = expand(head);
  if (tail !== undefined) {
    const t = expand(tail);
    // An embedded IPv4 tail ("::ffff:1.2.3.4") counts as two groups.
    const last = t[t.length - 1];
    if (last !== undefined && last.includes('.')) {
      const v4 = ipToBigInt(last);
      t.splice(t.length - 1, 1, ((v4 >> 16n) & 0xffffn).toString(16), (v4 & 0xffffn).toString(16));
    }
    groups = [...groups, ...Array<string>(8 - groups.length - t.length).fill('0'), ...t];
  }
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** Parses "a.b.c.d/n" or "v6/n"; returns a reason string when invalid. */
export function parseCidr(s: unknown): Cidr | string {
  if (typeof s !== 'string') return 'must be a CIDR string such as 192.0.2.0/24';
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return 'must be a CIDR such as 192.0.2.0/24 (address/prefix-length)';
  const [, addr = '', len = ''] = m;
  const prefix = Number(len);
  let family: 4 | 6;
  if (isIpv4(addr)) family = 4;
  else if (isIPv6(addr)) family = 6;
  else return `"${addr}" is not an IP address`;
  const bits = family === 4 ? 32 : 128;
  if (prefix > bits) return `prefix length ${prefix} exceeds ${bits}`;
  const value = ipToBigInt(addr);
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  if ((value & hostMask) !== 0n) return `host bits are set (did you mean ${bigIntToIp(value & ~hostMask, family)}/${prefix}?)`;
  return { family, base: value, prefix };
}

export function bigIntToIp(v: bigint, family: 4 | 6): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => ((v >> s) & 0xffn).toString()).join('.');
  }
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((v >> BigInt(i * 16)) & 0xffffn).toString(16));
  // Compress the longest run of zero groups, as RFC 5952 asks.
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const bits = a.family === 4 ? 32 : 128;
  const p = Math.min(a.prefix, b.prefix);
  const shift = BigInt(bits - p);
  return a.base >> shift === b.base >> shift;
}
