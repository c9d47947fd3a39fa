/* Edge program: per-CPU counters. The enum order is mirrored by
 * EDGE_STAT_NAMES in src/datapath/edge-maps.ts. */
#ifndef EDGELB_EDGE_COUNTERS_H
#define EDGELB_EDGE_COUNTERS_H

#include "edge_maps.h"

enum edge_stat {
	/* drops */
	DROP_NO_BACKEND = 0,  /* service without an active backend */
	DROP_SRC_RANGE,       /* source not in loadBalancerSourceRanges */
	DROP_FRAGMENT,        /* IPv4 fragment, or IPv6 packet with a Fragment header, to a VIP */
	DROP_IP_OPTIONS,      /* packet to a service already carries IP options (IPv6: extension headers) */
	DROP_VLAN,            /* VLAN-tagged packet to a service */
	DROP_ADJUST,          /* head/tail adjustment failed */
	DROP_SNAT_PORTS,      /* no free SNAT port after a few probes */
	DROP_TOO_BIG_ICMP_FAIL, /* too big with DF but the ICMP could not be built */
	DROP_MALFORMED,       /* to a service, but TCP/UDP lengths contradict the IP length */
	/* events (not drops) */
	EV_FIB_PASS,          /* FIB lookup failed: rewritten packet passed to the stack */
	EV_FIB_BYPASS,        /* CFG_F_FIB_BYPASS: rewritten packet passed to the stack */
	EV_CT_INSERT_SKIPPED, /* new flow not remembered (insert limit, e.g. SYN flood) */
	EV_ICMP_TOO_BIG_SENT, /* fragmentation-needed answered to a client */
	EV_TOO_BIG_PASS,      /* too big without DF: passed to the stack to fragment */
	EV_ICMP_STEERED,      /* ICMP error for a VIP flow sent to its backend */
	EV_ICMP_NOT_STEERED,  /* ICMP error for a VIP flow passed (no flow on this edge) */
	EV_SNAT_REVERSE,      /* backend reply translated back to VIP → client */
	EV_CT_STALE,          /* conntrack entry pointed at a removed backend */
	EV_AFFINITY_HIT,      /* new flow kept on the client's previous backend */
	EV_SNAT_RECLAIMED,    /* a SNAT port of a flow that was over given to a new one */
	DROP_SNAT_IFACE,      /* a SNAT reply that arrived on another interface than its flow */
	DROP_BAD_SOURCE,      /* a new flow or ICMP error from a VIP, the edge's own address or a martian;
			       * a port/protocol unreachable from another host than the quoted
			       * packet's destination (a SNAT backend, a VIP flow's client) */
	DROP_TTL,             /* TTL ran out here and no time-exceeded was sent */
	EV_TTL_EXCEEDED,      /* TTL ran out here: ICMP time-exceeded sent to the client */
	DROP_UNSUPPORTED6,    /* IPv6 to a service the IPv6 path cannot serve: IP6IP6 or
			       * SNAT without an edge IPv6 address */
	EV_SNAT_RST_IGNORED,  /* a RST on a SNAT flow without the sequence number its receiver
			       * expects (blind, or stale): not the flow's end (edge_snat.h) */
	DROP_ICMP_RATE,       /* would have been answered with an ICMP/ICMPv6 error (time-exceeded,
			       * fragmentation-needed, Packet Too Big), but this CPU's bucket was
			       * empty (edge_icmp_limit.h): a flood's reflection stops here */
	EV_SNAT_FIN_IGNORED,  /* a FIN on a SNAT flow without the ACK bit or outside the window of
			       * the numbers its receiver expects: not towards the flow's end */
	DROP_L2_GROUP,        /* to a service in a frame sent to a link-layer broadcast/multicast
			       * address, or from one (edge_l2_group) */
	EV_SNAT_ICMP,         /* an ICMP error about a SNAT flow translated for the other leg's
			       * receiver, the client or the backend (edge_snat_icmp.h) */
	EV_SNAT_FRAGMENT,     /* a fragment of a SNAT flow's reply forwarded to its client, either
			       * family (edge_snat_frag.h, edge_snat_frag6.h) */
	EV_OTHER_HOST,        /* a frame addressed to another host's unicast MAC, seen while the
			       * uplink is promiscuous — IPv4 to a service (or an ICMP error about
			       * one), any IPv6 frame: left to the stack, which drops it
			       * (edge_other_host) */
	EDGE_STAT_MAX,
};

struct edge_pb {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EDGE_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} edge_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EDGE_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct edge_pb);
} edge_svc_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EDGE_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct edge_pb);
} edge_be_stats SEC(".maps");

static __always_inline void edge_count(__u32 stat)
{
	__u64 *c = bpf_map_lookup_elem(&edge_stats, &stat);

	if (c)
		*c += 1;
}

static __always_inline void edge_count_pb(void *map, __u32 idx, __u64 bytes)
{
	struct edge_pb *pb = bpf_map_lookup_elem(map, &idx);

	if (pb) {
		pb->packets += 1;
		pb->bytes += bytes;
	}
}

#endif
