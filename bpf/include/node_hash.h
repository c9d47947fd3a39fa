/* Node program: the local backend for a new ipip flow, a murmur3-style mix
 * of the 5-tuple. Words are the packet bytes loaded little-endian;
 * src/datapath/node-maps.ts has the same function (nodeTupleHash) so tests
 * and tools can predict it. */
#ifndef EDGELB_NODE_HASH_H
#define EDGELB_NODE_HASH_H

#include <linux/types.h>
#include "murmur3.h"
#include "parse6.h"

static __always_inline __u32 node_tuple_hash(__be32 saddr, __be32 daddr, __be16 sport,
					     __be16 dport, __u8 proto)
{
	__u32 h = 0x2c9277b5u ^ proto;

	h = mm3_mix(h, saddr);
	h = mm3_mix(h, daddr);
	h = mm3_mix(h, (__u32)sport | ((__u32)dport << 16));
	return mm3_fmix(h ^ 13); /* 13 = bytes hashed, as murmur3 folds in the length */
}

/* The same for IPv6: every word of both addresses, then the ports
 * (nodeTupleHash6 in node-maps.ts). */
static __always_inline __u32 node_tuple_hash6(const struct pkt_addr6 *saddr,
					      const struct pkt_addr6 *daddr, __be16 sport,
					      __be16 dport, __u8 proto)
{
	__u32 h = 0x2c9277b5u ^ proto;

	h = mm3_mix(h, saddr->w[0]);
	h = mm3_mix(h, saddr->w[1]);
	h = mm3_mix(h, saddr->w[2]);
	h = mm3_mix(h, saddr->w[3]);
	h = mm3_mix(h, daddr->w[0]);
	h = mm3_mix(h, daddr->w[1]);
	h = mm3_mix(h, daddr->w[2]);
	h = mm3_mix(h, daddr->w[3]);
	h = mm3_mix(h, (__u32)sport | ((__u32)dport << 16));
	return mm3_fmix(h ^ 37); /* 37 = bytes hashed */
}

#endif
