// Which VIP pool block holds an address. The config check refuses pools that
// hold the addresses the config names (src/config/load.ts); an edge that
// leaves node.address / node.address6 empty uses its uplink's, known only at
// run time, and asks this.
import type { PoolConfig } from './types.js';
import { checkCidr, cidrContains } from '../net/cidr.js';
import { ipToBigInt, isIp } from '../net/ip.js';

export interface PoolHit {
  /** Index into config.pools. */
  index: number;
  name: string;
  cidr: string;
}

/** The first pool block holding `address`, or null (also for an address that is none). */
export function poolHolding(pools: readonly PoolConfig[], address: string): PoolHit | null {
  if (!isIp(address)) return null;
  const { family, value } = ipToBigInt(address);
  for (const [index, p] of pools.entries()) {
    for (const text of p.cidrs) {
      const c = checkCidr(text);
      if (typeof c !== 'string' && cidrContains(c, family, value)) return { index, name: p.name, cidr: c.text };
    }
  }
  return null;
}

/** The sentence for an uplink address a pool holds: what, where, why, and what to change. */
export function uplinkAddressInPool(uplink: string, field: 'node.address' | 'node.address6', address: string, hit: PoolHit): string {
  return `pools[${hit.index}] (${hit.name}) ${hit.cidr} holds ${address}, node.uplink ${uplink}'s address (${field} is empty, so the edge uses it): allocated as a VIP, this edge's own address would be announced to the routers and its traffic drawn to the edges; change the pool, or the uplink's address`;
}
