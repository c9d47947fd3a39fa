// Which VIP pool block holds an address: an endpoint or node address there
// would send packets back to the edges (src/model/backend-address.ts), and
// an edge that leaves node.address / node.address6 empty uses its uplink's,
// known only at run time (src/agent/datapath-part.ts). The config check
// refuses pools that hold the addresses the config names (src/config/load.ts).
import type { PoolConfig } from './types.js';
import { cidrContains, parseCidr, type Cidr } from '../net/cidr.js';
import { ipToBigInt, isIp, type Family } from '../net/ip.js';

export interface PoolHit {
  /** Index into config.pools. */
  index: number;
  name: string;
  cidr: string;
}

interface PoolBlock {
  index: number;
  name: string;
  cidr: Cidr;
}

// Parsed once per config (the pools array of one config is not mutated).
const parsed = new WeakMap<readonly PoolConfig[], PoolBlock[]>();

function poolBlocks(pools: readonly PoolConfig[]): PoolBlock[] {
  let b = parsed.get(pools);
  if (!b) {
    b = pools.flatMap((p, index) => p.cidrs.map((c) => ({ index, name: p.name, cidr: parseCidr(c) })));
    parsed.set(pools, b);
  }
  return b;
}

/** The first pool block holding the address `value` of `family` (ipToBigInt), or null. */
export function poolBlockHolding(pools: readonly PoolConfig[], family: Family, value: bigint): PoolHit | null {
  const b = poolBlocks(pools).find((x) => cidrContains(x.cidr, family, value));
  return b ? { index: b.index, name: b.name, cidr: b.cidr.text } : null;
}

/** The first pool block holding `address`, or null (also for an address that is none). */
export function poolHolding(pools: readonly PoolConfig[], address: string): PoolHit | null {
  if (!isIp(address)) return null;
  const { family, value } = ipToBigInt(address);
  return poolBlockHolding(pools, family, value);
}

/** The sentence for an uplink address a pool holds: what, where, why, and what to change. */
export function uplinkAddressInPool(uplink: string, field: 'node.address' | 'node.address6', address: string, hit: PoolHit): string {
  return `pools[${hit.index}] (${hit.name}) ${hit.cidr} holds ${address}, node.uplink ${uplink}'s address (${field} is empty, so the edge uses it): allocated as a VIP, this edge's own address would be announced to the routers and its traffic drawn to the edges; change the pool, or the uplink's address`;
}
