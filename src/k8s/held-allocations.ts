// Addresses an allocating edge gave out but never wrote down. Status writes
// trail the datapath (at 2 000 new Services, hundreds are programmed and
// announced before their address reaches status), so an edge killed outright
// (SIGKILL, a crash: no stop, no status flush) leaves frontends in its pinned
// maps — adopted by the next agent, still announced — for Services whose
// status names no address. Restoring allocations from status alone, the
// allocator would hand those Services fresh addresses (lowest free first:
// often one a Service deleted meanwhile held), and the adopted VIPs would be
// withdrawn. Here such Services are matched to the adopted frontends no
// status claims, by what the maps kept of them — the ports and the backends'
// addresses — and an address is restored only where the match is one to one
// (per family); anything ambiguous is allocated as before.
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { canonicalIp, ipFamily } from '../net/ip.js';
import { serviceKey } from '../model/service.js';

/** A frontend the sink adopted (pinned maps) that no Service has claimed since. */
export interface HeldFrontend {
  vip: string;
  port: number;
  protocol: string;
  /** Backend (pod) addresses. */
  backends: readonly string[];
}

/** What of an unwritten Service the maps would show: its "port/PROTO"s and its backends' addresses. */
export interface UnwrittenService {
  key: string;
  ports: readonly string[];
  backends: readonly string[];
}

const signature = (ports: Iterable<string>, backends: Iterable<string>): string =>
  `${[...new Set(ports)].sort().join(',')}|${[...new Set(backends)].sort().join(',')}`;

/** Service key → the held address of each family that is its and nobody else's. */
export function heldAddresses(services: readonly UnwrittenService[], held: readonly HeldFrontend[], claimed: ReadonlySet<string>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const family of [4, 6] as const) {
    const byVip = new Map<string, { ports: string[]; backends: string[] }>();
    for (const f of held) {
      const vip = canonicalIp(f.vip);
      if (vip === null || ipFamily(vip) !== family || claimed.has(vip)) continue;
      let v = byVip.get(vip);
      if (!v) byVip.set(vip, (v = { ports: [], backends: [] }));
      v.ports.push(`${f.port}/${f.protocol}`);
      for (const b of f.backends) v.backends.push(canonicalIp(b) ?? b);
    }
    const vipsBySig = new Map<string, string[]>();
    for (const [vip, v] of byVip) {
      if (v.backends.length === 0) continue;
      const sig = signature(v.ports, v.backends);
      vipsBySig.set(sig, [...(vipsBySig.get(sig) ?? []), vip]);
    }
    const servicesBySig = new Map<string, string[]>();
    for (const s of services) {
      const backends = s.backends.map((b) => canonicalIp(b)).filter((b): b is string => b !== null && ipFamily(b) === family);
      if (backends.length === 0 || s.ports.length === 0) continue;
      const sig = signature(s.ports, backends);
      servicesBySig.set(sig, [...(servicesBySig.get(sig) ?? []), s.key]);
    }
    for (const [sig, keys] of servicesBySig) {
      const vips = vipsBySig.get(sig);
      if (keys.length !== 1 || vips?.length !== 1) continue;
      out.set(keys[0]!, [...(out.get(keys[0]!) ?? []), vips[0]!]);
    }
  }
  return out;
}

/**
 * A Service as the maps would show it: its TCP/UDP ports, and the addresses
 * of its endpoints the datapath keeps (ready, or serving while terminating).
 */
export function unwrittenService(svc: V1Service, slices: readonly V1EndpointSlice[]): UnwrittenService {
  const ports = (svc.spec?.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP' || p.protocol === 'UDP').map((p) => `${p.port}/${p.protocol ?? 'TCP'}`);
  const backends: string[] = [];
  for (const s of slices) {
    for (const e of s.endpoints ?? []) {
      const c = e.conditions ?? {};
      if (c.ready !== false || (c.serving === true && c.terminating === true)) backends.push(...(e.addresses ?? []).slice(0, 1));
    }
  }
  return { key: serviceKey(svc), ports, backends };
}
