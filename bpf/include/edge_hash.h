/* Edge program: flow hash. Every edge must hash a flow the same way (ECMP
 * may move a flow between edges and Maglev must then pick the same
 * backend), so the seed is a constant, not per-boot random. */
#ifndef EDGELB_EDGE_HASH_H
#define EDGELB_EDGE_HASH_H

#include <linux/types.h>

#define EDGE_HASH_SEED 0x2f6b5a13u

static __always_inline __u32 edge_rotl(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

/* murmur3-style mixing of up to three words plus fmix32 finalisation. */
static __always_inline __u32 edge_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51u;
	k = edge_rotl(k, 15);
	k *= 0x1b873593u;
	h ^= k;
	h = edge_rotl(h, 13);
	return h * 5 + 0xe6546b64u;
}

static __always_inline __u32 edge_fmix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 edge_flow_hash(__be32 saddr, __be32 daddr, __be16 sport,
					    __be16 dport, __u8 proto)
{
	__u32 h = EDGE_HASH_SEED ^ proto;

	h = edge_mix(h, saddr);
	h = edge_mix(h, daddr);
	h = edge_mix(h, ((__u32)sport << 16) | dport);
	return edge_fmix(h);
}

/* Session affinity: the client address alone, so every connection of a
 * client maps to the same Maglev slot on every edge. */
static __always_inline __u32 edge_client_hash(__be32 saddr)
{
	return edge_fmix(edge_mix(EDGE_HASH_SEED, saddr));
}

#endif
