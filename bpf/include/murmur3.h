/* murmur3 (32-bit) building blocks shared by the edge's flow hash and the
 * node's local-pod choice. Pure integer code: inlined, verifier-friendly. */
#ifndef EDGELB_MURMUR3_H
#define EDGELB_MURMUR3_H

#include <linux/types.h>

static __always_inline __u32 mm3_rotl(__u32 x, __u32 r)
{
	return (x << r) | (x >> (32 - r));
}

/* Mix one 32-bit word into the running hash. */
static __always_inline __u32 mm3_mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51u;
	k = mm3_rotl(k, 15);
	k *= 0x1b873593u;
	h ^= k;
	h = mm3_rotl(h, 13);
	return h * 5 + 0xe6546b64u;
}

/* Final avalanche (fmix32). */
static __always_inline __u32 mm3_fmix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6bu;
	h ^= h >> 13;
	h *= 0xc2b2ae35u;
	h ^= h >> 16;
	return h;
}

#endif
