// Which endpoint addresses an edge must not forward to. An address inside a
// VIP pool sends the client's packet to a VIP: the routers hand it back to
// the edges, which send it there again until its TTL runs out (a hand-made
// EndpointSlice can name any address). Multicast, broadcast, "this network"
// and the reserved block reach no pod. (The API server already refuses
// loopback, link-local and unspecified endpoint addresses.)
import type { PoolConfig } from '../config/types.js';
import { cidrContains, parseCidr, type Cidr } from '../net/cidr.js';
import { ipToBigInt } from '../net/ip.js';

const NOWHERE: readonly { cidr: Cidr; what: string }[] = [
  { cidr: parseCidr('0.0.0.0/8'), what: '"this network" (0.0.0.0/8)' },
  { cidr: parseCidr('224.0.0.0/4'), what: 'multicast' },
  { cidr: parseCidr('240.0.0.0/4'), what: 'reserved or broadcast (240.0.0.0/4)' },
  { cidr: parseCidr('ff00::/8'), what: 'multicast' },
  { cidr: parseCidr('::/128'), what: 'unspecified' },
];

interface PoolBlock {
  pool: string;
  cidr: Cidr;
}

// Parsed once per config (the pools array of one config is not mutated).
const parsed = new WeakMap<readonly PoolConfig[], PoolBlock[]>();

function poolBlocks(pools: readonly PoolConfig[]): PoolBlock[] {
  let b = parsed.get(pools);
  if (!b) {
    b = pools.flatMap((p) => p.cidrs.map((c) => ({ pool: p.name, cidr: parseCidr(c) })));
    parsed.set(pools, b);
  }
  return b;
}

/** Why an edge must not send to this endpoint address (a sentence), or null. `ip` is canonical. */
export function refusedBackendAddress(ip: string, pools: readonly PoolConfig[]): string | null {
  const { family, value } = ipToBigInt(ip);
  for (const b of poolBlocks(pools)) {
    if (cidrContains(b.cidr, family, value)) return `it lies in VIP pool ${b.pool} (${b.cidr.text}): packets sent there would come back to the edges`;
  }
  for (const n of NOWHERE) {
    if (cidrContains(n.cidr, family, value)) return `it is ${n.what}, not a pod's address`;
  }
  return null;
}
