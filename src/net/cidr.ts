// CIDR blocks of either family, parsed by one rule with two choices the
// callers make explicitly: whether a bare address means a host route, and
// whether host bits are refused (an operator's "10.0.0.5/24" is a typo, and
// the config says so, suggesting the network) or cleared (a Kubernetes
// source range is read the way the kernel reads a route).
import { bigIntToIp, familyBits, ipToBigInt, isIp, type Family } from './ip.js';

export interface Cidr {
  family: Family;
  /** First address (network bits only). */
  base: bigint;
  prefix: number;
  /** Number of addresses in the block. */
  size: bigint;
  /** base + size, kept: cidrContains runs per endpoint and node address, and BigInt arithmetic allocates. */
  end: bigint;
  /** Canonical text, e.g. "10.0.0.0/24", "2001:db8::/64". */
  text: string;
}

export interface CidrRules {
  /** A bare address is a host route (/32, /128). Default: refused. */
  bareAddress?: boolean;
  /** Clear host bits ("10.0.0.7/24" is 10.0.0.0/24). Default: refused, naming the network. */
  clearHostBits?: boolean;
}

/** Parses "ADDR/PREFIX"; returns why it is not a CIDR when it is not one. */
export function checkCidr(s: unknown, rules: CidrRules = {}): Cidr | string {
  if (typeof s !== 'string') return 'must be a CIDR string such as 192.0.2.0/24';
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(s);
  if (!m || (m[2] === undefined && !rules.bareAddress)) return 'must be a CIDR such as 192.0.2.0/24 (address/prefix-length)';
  const [, addr = '', len] = m;
  if (!isIp(addr)) return `"${addr}" is not an IP address`;
  const { family, value } = ipToBigInt(addr);
  const bits = familyBits(family);
  const prefix = len === undefined ? bits : Number(len);
  if (prefix > bits) return `prefix length ${prefix} exceeds ${bits}`;
  const hostBits = BigInt(bits - prefix);
  const base = (value >> hostBits) << hostBits;
  if (base !== value && !rules.clearHostBits) return `host bits are set (did you mean ${bigIntToIp(base, family)}/${prefix}?)`;
  const size = 1n << hostBits;
  return { family, base, prefix, size, end: base + size, text: `${bigIntToIp(base, family)}/${prefix}` };
}

/** checkCidr(), throwing `CIDR "TEXT": reason` when it is not one. */
export function parseCidr(text: string, rules: CidrRules = {}): Cidr {
  const c = checkCidr(text, rules);
  if (typeof c === 'string') throw new Error(`CIDR ${JSON.stringify(text)}: ${c}`);
  return c;
}

export function cidrContains(c: Cidr, family: Family, value: bigint): boolean {
  return c.family === family && value >= c.base && value < c.end;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const shift = BigInt(familyBits(a.family) - Math.min(a.prefix, b.prefix));
  return a.base >> shift === b.base >> shift;
}
