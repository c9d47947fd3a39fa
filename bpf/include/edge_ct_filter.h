/* Edge program: the connection-table filter — which 5-tuples may have an
 * edge_ct entry, so that a SYN of a new tuple need not look.
 *
 * Why: a SYN must look its tuple up (a live tuple is never re-routed, an
 * ended one's entry goes; edge.c), and for a new tuple that lookup is a
 * miss in a random bucket of a 1 Mi-bucket table (16 MiB): a cache and TLB
 * miss that was over half of a fresh SYN's cost. The filter is 2^19 bits
 * per bit set (256 KiB for all four), indexed by the flow hash the program
 * computes anyway: small enough to stay in cache under a SYN flood. A clear bit proves the tuple
 * has no entry; a set bit means "look" (false positives only cost the
 * lookup the SYN always made).
 *
 * Soundness: bits of a live entry are never lost. A generation is two
 * bit sets read together: W, a snapshot user space wrote, and P, the bits
 * the program set since. Every edge_ct insert sets its tuple's bit in P of
 * both generations, after the insert. The program never clears a bit and
 * never writes W; user space (src/datapath/edge-ct-filter.ts) rebuilds the
 * generation not in use — clears its P, walks edge_ct writing W from the
 * entries it finds, then makes it the one in use (edge_config.ct_filter).
 * An entry inserted before the walk began is found by it; one inserted
 * after P was cleared set its own bit in P. Nobody else writes W, so it is
 * written whole, with no race. ct_filter = 0 (a fresh or an older config)
 * turns the filter off: every SYN looks, as before.
 *
 * Layout: key = word * 4 + gen * 2 + (P ? 1 : 0): a word's W and P of
 * both generations share one 32-byte element pair, so a SYN's check and an
 * insert's two updates each touch one cache line.
 *
 * Only SYNs consult it: every other packet of a VIP flow is usually
 * established (a hit), where the filter would be one more access. */
#ifndef EDGELB_EDGE_CT_FILTER_H
#define EDGELB_EDGE_CT_FILTER_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include "edge_maps.h"

/* Word of flow hash h in a bank, and its bit. */
static __always_inline __u32 edge_ct_filter_word(__u32 hash)
{
	return (hash >> 6) & (EDGE_CT_FILTER_WORDS - 1);
}

static __always_inline __u64 edge_ct_filter_bit(__u32 hash)
{
	return 1ull << (hash & 63);
}

static __always_inline __u32 edge_ct_filter_key(__u32 gen, __u32 hash, __u32 p)
{
	return edge_ct_filter_word(hash) * 4 + gen * 2 + p;
}

/* May the tuple with this flow hash have an edge_ct entry? */
static __always_inline int edge_ct_maybe(const struct edge_config *cfg, __u32 hash)
{
	__u32 gen, kw, kp;
	__u64 *w, *p;

	if (cfg->ct_filter != 1 && cfg->ct_filter != 2)
		return 1;
	gen = cfg->ct_filter - 1;
	kw = edge_ct_filter_key(gen, hash, 0);
	kp = kw + 1;
	w = bpf_map_lookup_elem(&edge_ct_filter, &kw);
	p = bpf_map_lookup_elem(&edge_ct_filter, &kp);
	return !w || !p || ((*w | *p) & edge_ct_filter_bit(hash));
}

/* After an edge_ct insert: the tuple may have an entry (P of both generations). */
static __always_inline void edge_ct_filter_add(__u32 hash)
{
	__u64 bit = edge_ct_filter_bit(hash);

#pragma unroll
	for (__u32 gen = 0; gen < 2; gen++) {
		__u32 k = edge_ct_filter_key(gen, hash, 1);
		__u64 *p = bpf_map_lookup_elem(&edge_ct_filter, &k);

		if (p && !(*p & bit))
			__sync_fetch_and_or(p, bit);
	}
}

#endif
