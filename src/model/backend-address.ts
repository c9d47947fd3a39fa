// Which endpoint and node addresses an edge must not forward to. An address
// inside a VIP pool sends the client's packet to a VIP: the routers hand it
// back to the edges, which send it there again until its TTL runs out (a
// hand-made EndpointSlice can name any address, and each node's kubelet
// writes its own Node's addresses). An edge's own address is no better:
// edges are not nodes and hold no pod, so the packet goes back into an
// edge's XDP program (this edge's own, or another's) instead of to a pod.
// Multicast, broadcast, "this network", the reserved block, loopback and
// link-local reach no pod and no node. (The API server already refuses
// loopback, link-local and unspecified endpoint addresses, but not such
// Node addresses.)
import type { PoolConfig } from '../config/types.js';
import { poolBlockHolding } from '../config/pool-holding.js';
import { cidrContains } from '../net/cidr.js';
import { UNREACHABLE_BLOCKS } from '../net/special-blocks.js';
import { ipToBigInt } from '../net/ip.js';

/** What an address is checked against: the VIP pools and the edges' own addresses (canonical → edge name). */
export interface RefusedAddresses {
  pools: readonly PoolConfig[];
  edgeAddresses?: ReadonlyMap<string, string> | undefined;
}

/** Why no packet may be sent to `ip` ("lies in VIP pool …" / "is multicast, not <noun>"), or null. `ip` is canonical. */
function refusal(ip: string, refused: RefusedAddresses, noun: string): string | null {
  const { family, value } = ipToBigInt(ip);
  const pool = poolBlockHolding(refused.pools, family, value);
  if (pool) return `lies in VIP pool ${pool.name} (${pool.cidr}): packets sent there would come back to the edges`;
  const edge = refused.edgeAddresses?.get(ip);
  if (edge !== undefined) return `is the address of edge ${edge}: packets sent there would come back to the edges`;
  for (const n of UNREACHABLE_BLOCKS) {
    if (cidrContains(n.cidr, family, value)) return `is ${n.what}, not ${noun}`;
  }
  return null;
}

/** Why an edge must not send to this endpoint address (a sentence), or null. `ip` is canonical. */
export function refusedBackendAddress(ip: string, refused: RefusedAddresses): string | null {
  const r = refusal(ip, refused, "a pod's address");
  return r === null ? null : `it ${r}`;
}

/** Why an edge must not use this node address as a next hop (a sentence), or null. `ip` is canonical. */
export function refusedNodeAddress(ip: string, nodeName: string, refused: RefusedAddresses): string | null {
  const r = refusal(ip, refused, "a node's address");
  return r === null ? null : `the address ${ip} of its node ${nodeName} ${r}`;
}
