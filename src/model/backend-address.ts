// Which endpoint and node addresses an edge must not forward to. An address
// inside a VIP pool sends the client's packet to a VIP: the routers hand it
// back to the edges, which send it there again until its TTL runs out (a
// hand-made EndpointSlice can name any address, and each node's kubelet
// writes its own Node's addresses). Multicast, broadcast, "this network",
// the reserved block and loopback reach no pod and no node. (The API server
// already refuses loopback, link-local and unspecified endpoint addresses,
// but not such Node addresses.)
import type { PoolConfig } from '../config/types.js';
import { cidrContains, parseCidr, type Cidr } from '../net/cidr.js';
import { NOWHERE_BLOCKS } from '../net/special-blocks.js';
import { ipToBigInt } from '../net/ip.js';


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

/** Why no packet may be sent to `ip` ("lies in VIP pool …" / "is multicast, not <noun>"), or null. `ip` is canonical. */
function refusal(ip: string, pools: readonly PoolConfig[], noun: string): string | null {
  const { family, value } = ipToBigInt(ip);
  for (const b of poolBlocks(pools)) {
    if (cidrContains(b.cidr, family, value)) return `lies in VIP pool ${b.pool} (${b.cidr.text}): packets sent there would come back to the edges`;
  }
  for (const n of NOWHERE_BLOCKS) {
    if (cidrContains(n.cidr, family, value)) return `is ${n.what}, not ${noun}`;
  }
  return null;
}

/** Why an edge must not send to this endpoint address (a sentence), or null. `ip` is canonical. */
export function refusedBackendAddress(ip: string, pools: readonly PoolConfig[]): string | null {
  const r = refusal(ip, pools, "a pod's address");
  return r === null ? null : `it ${r}`;
}

/** Why an edge must not use this node address as a next hop (a sentence), or null. */
export function refusedNodeAddress(ip: string, nodeName: string, pools: readonly PoolConfig[]): string | null {
  const r = refusal(ip, pools, "a node's address");
  return r === null ? null : `the address ${ip} of its node ${nodeName} ${r}`;
}
