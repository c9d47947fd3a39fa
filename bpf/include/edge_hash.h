/* Edge program: flow hash. Every edge must hash a flow the same way (ECMP
 * may move a flow between edges and Maglev must then pick the same
 * backend), so the seed is a constant, not per-boot random. */
#ifndef EDGELB_EDGE_HASH_H
#define EDGELB_EDGE_HASH_H

#include <linux/types.h>
#include "murmur3.h"

#define EDGE_HASH_SEED 0x2f6b5a13u

static __always_inline __u32 edge_flow_hash(__be32 saddr, __be32 daddr, __be16 sport,
					    __be16 dport, __u8 proto)
{
	__u32 h = EDGE_HASH_SEED ^ proto;

	h = mm3_mix(h, saddr);
	h = mm3_mix(h, daddr);
	h = mm3_mix(h, ((__u32)sport << 16) | dport);
	return mm3_fmix(h);
}

/* Session affinity: the client address alone, so every connection of a
 * client maps to the same Maglev slot on every edge. */
static __always_inline __u32 edge_client_hash(__be32 saddr)
{
	return mm3_fmix(mm3_mix(EDGE_HASH_SEED, saddr));
}

/* The same two hashes over IPv6 addresses (four words each). A flow of
 * either family lands in its service's Maglev region by the same
 * multiply-shift (edge_maglev); only the key material differs. */
static __always_inline __u32 edge_flow_hash6(const __be32 *saddr, const __be32 *daddr,
					     __be16 sport, __be16 dport, __u8 proto)
{
	__u32 h = EDGE_HASH_SEED ^ proto;

#pragma unroll
	for (int i = 0; i < 4; i++)
		h = mm3_mix(h, saddr[i]);
#pragma unroll
	for (int i = 0; i < 4; i++)
		h = mm3_mix(h, daddr[i]);
	h = mm3_mix(h, ((__u32)sport << 16) | dport);
	return mm3_fmix(h);
}

static __always_inline __u32 edge_client_hash6(const __be32 *saddr)
{
	__u32 h = EDGE_HASH_SEED;

#pragma unroll
	for (int i = 0; i < 4; i++)
		h = mm3_mix(h, saddr[i]);
	return mm3_fmix(h);
}

#endif
