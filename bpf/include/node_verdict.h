/* Node program: what a stage decides, written once for the tc hook.
 *
 * enum node_verdict is the program's answer for the packet; node_tc()
 * turns it into a tc action. Every verdict but a drop is TC_ACT_UNSPEC
 * ("no opinion"), so filters after ours on the same hook (a CNI's, say)
 * still see the packet, rewritten or not, and the default action passes
 * it on.
 *
 * enum node_step is how a rewriting helper came out: the caller decides
 * what a failure means (keep the packet as it is, or drop one that was
 * left half-rewritten). */
#ifndef EDGELB_NODE_VERDICT_H
#define EDGELB_NODE_VERDICT_H

#include <linux/pkt_cls.h>

enum node_verdict {
	NODE_PASS = 0, /* on to the next filter / the stack */
	NODE_DROP,     /* TC_ACT_SHOT */
};

enum node_step {
	STEP_DONE = 0,  /* the packet was rewritten */
	STEP_NOT_OURS,  /* nothing to do here: the packet is untouched */
	STEP_UNTRUSTED, /* ours, but not from an edge (node_trust.h): untouched */
	STEP_UNTOUCHED, /* could not start (e.g. the kernel refused): untouched */
	STEP_DECAP_FAILED,   /* failed while removing a header: packet unusable */
	STEP_REWRITE_FAILED, /* failed part-way through a rewrite: packet unusable */
};

static __always_inline int node_tc(enum node_verdict v)
{
	return v == NODE_DROP ? TC_ACT_SHOT : TC_ACT_UNSPEC;
}

#endif
