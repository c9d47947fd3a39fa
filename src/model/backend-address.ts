// Which endpoint and node addresses an edge must not forward to. An address
// inside a VIP pool sends the client's packet to a VIP: the routers hand it
// back to the edges, which send it there again until its TTL runs out (a
// hand-made EndpointSlice can name any address, and each node's kubelet
// writes its own Node's addresses). Multicast, broadcast, "this network",
// the reserved block and loopback reach no pod and no node. (The API server
// already refuses loopback, link-local and unspecified endpoint addresses,
// but not such Node addresses.)
import type { PoolConfig } from '../config/types.js';
import { poolBlockHolding } from '../config/pool-holding.js';
import { cidrContains } from '../net/cidr.js';
import { NOWHERE_BLOCKS } from '../net/special-blocks.js';
import { ipToBigInt } from '../net/ip.js';

/** Why no packet may be sent to `ip` ("lies in VIP pool …" / "is multicast, not <noun>"), or null. `ip` is canonical. */
function refusal(ip: string, pools: readonly PoolConfig[], noun: string): string | null {
  const { family, value } = ipToBigInt(ip);
  const pool = poolBlockHolding(pools, family, value);
  if (pool) return `lies in VIP pool ${pool.name} (${pool.cidr}): packets sent there would come back to the edges`;
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
