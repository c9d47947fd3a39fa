// What the edge datapath can serve at all, decided per frontend before any
// id or slot is allocated: addresses of a family it forwards, values its
// map layouts can encode. Also the equality that lets an upsert of an
// unchanged frontend write nothing. Pure.
import type { DesiredService, RejectReason } from '../model/types.js';
import { encodeSrcRange6Key, encodeSrcRangeKey, ipv6Bytes, ipv6FromBytes } from './edge-maps.js';
import { ipFamily, ipv4ToU32, u32ToIpv4 } from '../net/ip.js';
import { protoNumber } from '../net/l4.js';
import { sameList } from '../shared-lists.js';

/** A frontend this datapath does not take, and why. */
export class Rejected extends Error {
  constructor(
    readonly reason: RejectReason,
    message: string,
  ) {
    super(message);
  }
}

/** Field-by-field equality of two desired frontends (the upsert of an unchanged one writes nothing). */
export function sameDesired(a: DesiredService, b: DesiredService): boolean {
  if (a === b) return true;
  if (a.service !== b.service || a.mode !== b.mode || a.dispatch !== b.dispatch || a.affinityTimeoutSeconds !== b.affinityTimeoutSeconds) return false;
  if (a.frontend.vip !== b.frontend.vip || a.frontend.port !== b.frontend.port || a.frontend.protocol !== b.frontend.protocol) return false;
  if (!sameList(a.sourceRanges, b.sourceRanges)) return false;
  if (a.backends.length !== b.backends.length) return false;
  for (let i = 0; i < a.backends.length; i++) {
    const x = a.backends[i]!;
    const y = b.backends[i]!;
    if (x.ip !== y.ip || x.port !== y.port || x.nodeIp !== y.nodeIp || x.nodeName !== y.nodeName || x.weight !== y.weight || x.state !== y.state) return false;
  }
  return true;
}

/** A source range as the maps hold it (network address, prefix length), either family. */
export function normaliseCidr(c: string): string {
  const host = c.split('/')[0] ?? '';
  if (ipFamily(host) === 6) {
    const key = encodeSrcRange6Key(0, c.includes('/') ? c : `${c}/128`);
    return `${ipv6FromBytes(key, 8)}/${key.readUInt32LE(0) - 32}`;
  }
  const key = encodeSrcRangeKey(0, c.includes('/') ? c : `${c}/32`);
  return `${u32ToIpv4(key.readUInt32BE(8))}/${key.readUInt32LE(0) - 32}`;
}

/** What the datapath can serve beyond IPv4 (EdgeDatapathOptions.ipv6: the IPv6 maps sized for use). */
export interface ServeOptions {
  ipv6: boolean;
}

/** Why this datapath cannot serve `d` at all (whatever else it holds), or null. */
export function validateFrontend(d: DesiredService, serve: ServeOptions = { ipv6: false }): { reason: RejectReason; message: string } | null {
  try {
    validate(d, serve);
    return null;
  } catch (e) {
    if (e instanceof Rejected) return { reason: e.reason, message: e.message };
    throw e;
  }
}

/**
 * Throws Rejected naming the first thing this datapath cannot serve. IPv6
 * frontends are served (either hook) when the IPv6 maps are on, in every mode,
 * with every backend, node address and source range of the VIP's family;
 * an IPv6 VIP in front of IPv4 pods (or the reverse) would need a
 * translation the datapath does not do.
 */
export function validate(d: DesiredService, serve: ServeOptions = { ipv6: false }): void {
  const fam = ipFamily(d.frontend.vip);
  if (fam === 6 && !serve.ipv6) throw new Rejected('UnsupportedFamily', `VIP ${d.frontend.vip} is IPv6; this edge's datapath forwards IPv4 only (its IPv6 maps are off)`);
  const want = fam ?? 4;
  const sameFamily = (what: string, value: string) => {
    const f = ipFamily(value.split('/')[0] ?? '');
    if (f !== null && f !== want) throw new Rejected('UnsupportedFamily', `${what} ${value} is IPv${f} under the IPv${want} VIP ${d.frontend.vip}; the datapath does not translate between families`);
  };
  for (const r of d.sourceRanges) sameFamily('source range', r);
  for (const b of d.backends) {
    sameFamily('backend', b.ip);
    sameFamily(`node address of backend ${b.ip}`, b.nodeIp);
  }
  const addr = (value: string, what: string) => {
    if (want === 6) ipv6Bytes(value, what);
    else ipv4ToU32(value, what);
  };
  try {
    addr(d.frontend.vip, 'VIP');
    if (!Number.isInteger(d.frontend.port) || d.frontend.port < 1 || d.frontend.port > 65535) throw new Error(`port ${d.frontend.port} is not 1..65535`);
    protoNumber(d.frontend.protocol);
    if (!['dsr', 'snat', 'hybrid'].includes(d.mode)) throw new Error(`mode '${d.mode}' is not dsr, snat or hybrid`);
    if (!['ip-option', 'ipip', 'auto'].includes(d.dispatch)) throw new Error(`dispatch '${d.dispatch}' is not ip-option, ipip or auto`);
    if (!Number.isInteger(d.affinityTimeoutSeconds) || d.affinityTimeoutSeconds < 0) {
      throw new Error(`affinity timeout ${d.affinityTimeoutSeconds} must be a non-negative integer`);
    }
    for (const b of d.backends) {
      addr(b.ip, 'backend IP');
      if (b.nodeIp === '') throw new Error(`backend ${b.ip} has no node address`);
      addr(b.nodeIp, `node IP of backend ${b.ip}`);
      if (!Number.isInteger(b.port) || b.port < 1 || b.port > 65535) throw new Error(`backend ${b.ip} port ${b.port} is not 1..65535`);
      if (!Number.isInteger(b.weight) || b.weight < 1) throw new Error(`backend ${b.ip}:${b.port} weight ${b.weight} must be an integer ≥ 1`);
    }
    for (const r of d.sourceRanges) normaliseCidr(r);
  } catch (e) {
    throw new Rejected('InvalidFrontend', (e as Error).message);
  }
}
