// Whether an edge serves IPv6 frontends — read by the datapath (which IPv6
// maps and programs it loads) and by the appliance's kernel settings (IPv6
// forwarding on the uplink), which must agree.
import type { EdgelbConfig } from './types.js';

/** datapath.ipv6, where auto means a pool has an IPv6 CIDR (on either hook: XDP, or the tc fallback). */
export function servesIpv6(config: EdgelbConfig): boolean {
  const d = config.datapath;
  if (d.ipv6 === 'off') return false;
  return d.ipv6 === 'on' || config.pools.some((p) => p.cidrs.some((c) => c.includes(':')));
}
