/* Node program: per-CPU counters, and the two ways a stage ends — pass or
 * drop — each counted under its reason. The enum order is mirrored by
 * NODE_COUNTER_NAMES in src/datapath/node-maps.ts. */
#ifndef EDGELB_NODE_COUNTERS_H
#define EDGELB_NODE_COUNTERS_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "node_verdict.h"

/* Per-CPU counters (index = enum node_counter). */
enum node_counter {
	/* ingress actions */
	NC_IN_PASS = 0,          /* not ours: left untouched */
	NC_IN_OPT_FLOW = 1,      /* DSR option read, flow recorded/refreshed */
	NC_IN_OPT_STRIPPED = 2,  /* option removed */
	NC_IN_OPT_KEPT = 3,      /* option left in place (strip off, or not possible) */
	NC_IN_IPIP_DNAT = 4,     /* ipip decapsulated and DNATed to a pod */
	NC_IN_IPIP_NEW_FLOW = 5, /* ... of which a new flow (backend chosen) */
	NC_IN_IPIP_NOT_OURS = 6, /* ipip to no local service: passed untouched */
	NC_IN_FIN = 7,           /* client FIN on a known flow */
	NC_IN_RST = 8,           /* client RST: flow deleted */
	/* egress actions */
	NC_EG_PASS = 9,
	NC_EG_REWRITE = 10,      /* reply rewritten to come from VIP:port */
	NC_EG_FIN = 11,
	NC_EG_RST = 12,          /* pod RST: rewritten, flow deleted */
	/* housekeeping */
	NC_FLOW_EXPIRED = 13,    /* idle/closed entry found and deleted lazily */
	NC_FLOW_CLOSING = 14,    /* both FINs seen */
	NC_IN_OPT_FRAGMENT = 15, /* option on a non-first fragment: stripped, not recorded */
	/* drops, by reason */
	NC_DROP_BAD_OPTION = 16, /* our option type with a wrong length / past the header */
	NC_DROP_NO_BACKEND = 17, /* local service with no pods */
	NC_DROP_DECAP = 18,      /* decapsulation failed (e.g. VLAN tag in the data) */
	NC_DROP_REWRITE = 19,    /* a checksum/store helper failed */
	NC_DROP_MALFORMED = 20, /* carries our option / ipip to a local service, but L4 is truncated */
	NC_DROP_UNKNOWN_VIP = 21, /* option names a VIP:port that is no configured service */
	NC_IN_IPIP_ICMP = 22,    /* ICMP error about a flow, decapsulated and sent to its pod */
	NC_EG_ICMP = 23,         /* a pod's ICMP error about a flow, sent as the VIP's */
	NC_DROP_UNTRUSTED = 24,  /* our option / ipip to a frontend, not from an edge */
	NC_EDGE_LEARNT = 25,     /* an edge neighbour learnt from its ARP */
	NC_DROP_WRONG_BACKEND = 26, /* option's frontend has no backend at the destination on this node */
	NC_DROP_VIP_CONFLICT = 27, /* a non-SYN would re-point a live flow at another VIP */
	NC_DROP_INSERT_LIMIT = 28, /* a new flow over the per-CPU insert limit (flood) */
	NC_EG_FRAG = 29,         /* a later fragment of a rewritten reply, sent from its VIP too */
	NC_MAX = 30,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NC_MAX);
	__type(key, __u32);
	__type(value, __u64);
} node_counters SEC(".maps");

static __always_inline void node_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&node_counters, &idx);

	if (c)
		*c += 1;
}

/* Count what happened and let the packet go on. */
static __always_inline enum node_verdict node_pass(enum node_counter what)
{
	node_count(what);
	return NODE_PASS;
}

/* Count why, and drop. */
static __always_inline enum node_verdict node_drop(enum node_counter why)
{
	node_count(why);
	return NODE_DROP;
}

#endif
