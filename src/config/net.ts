// Address checks for config validation, on top of the IPAM's address
// arithmetic. Strict on purpose: an operator typo such as "10.0.0.01" or
// "10.0.0.0/33" must be an error, and host bits are refused (with the
// network suggested) where the IPAM would silently clear them.
import { isIPv4, isIPv6 } from 'node:net';
import { bigIntToIp, ipToBigInt, type Family } from '../ipam/cidr.js';

export function isIpv4(s: unknown): s is string {
  return typeof s === 'string' && isIPv4(s) && !/(^|\.)0\d/.test(s);
}

export function isIp(s: unknown): s is string {
  return isIpv4(s) || (typeof s === 'string' && isIPv6(s));
}

export interface Cidr {
  family: Family;
  /** Network address as a bigint, host bits cleared. */
  base: bigint;
  prefix: number;
}

/** Parses "a.b.c.d/n" or "v6/n"; returns a reason string when invalid. */
export function parseCidr(s: unknown): Cidr | string {
  if (typeof s !== 'string') return 'must be a CIDR string such as 192.0.2.0/24';
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return 'must be a CIDR such as 192.0.2.0/24 (address/prefix-length)';
  const [, addr = '', len = ''] = m;
  const prefix = Number(len);
  if (!isIpv4(addr) && !isIPv6(addr)) return `"${addr}" is not an IP address`;
  const { family, value } = ipToBigInt(addr);
  const bits = family === 4 ? 32 : 128;
  if (prefix > bits) return `prefix length ${prefix} exceeds ${bits}`;
  const hostMask = (1n << BigInt(bits - prefix)) - 1n;
  if ((value & hostMask) !== 0n) return `host bits are set (did you mean ${bigIntToIp(value & ~hostMask, family)}/${prefix}?)`;
  return { family, base: value, prefix };
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const bits = a.family === 4 ? 32 : 128;
  const p = Math.min(a.prefix, b.prefix);
  const shift = BigInt(bits - p);
  return a.base >> shift === b.base >> shift;
}
