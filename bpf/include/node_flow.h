/* Node program: flow memory — what the node remembers about a DSR flow and
 * for how long.
 *
 * node_flows maps a flow's reply tuple (pod:pp → client:cp) to the VIP:vp
 * its replies must come from; node_fwd pins an ipip flow's forward tuple
 * to the local pod chosen for it. Times come from node_config's test clock
 * when set, else the coarse monotonic clock.
 *
 * Expiry: TCP RST from either side deletes the flow; FIN from both sides
 * marks it CLOSING, after which it lives close_ns past its last packet (so
 * the final ACK and retransmissions are still rewritten). Idle flows
 * (tcp_idle_ns / udp_idle_ns since the last packet) are ignored and deleted
 * when next looked up; the LRU maps bound memory for the ones never seen
 * again. */
#ifndef EDGELB_NODE_FLOW_H
#define EDGELB_NODE_FLOW_H

#include <linux/types.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "parse.h"
#include "node_maps.h"
#include "node_counters.h"

#define NSEC 1000000000ULL
#define DEFAULT_TCP_IDLE_NS (3600ULL * NSEC)
#define DEFAULT_UDP_IDLE_NS (60ULL * NSEC)
#define DEFAULT_CLOSE_NS (10ULL * NSEC)
/* last_seen is rewritten at most this often per flow: a store per packet
 * would bounce the value's cache line between CPUs. */
#define REFRESH_NS (1ULL * NSEC)

static __always_inline struct node_config *get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&node_config, &zero);
}

static __always_inline __u64 now_ns(const struct node_config *cfg)
{
	if (cfg && cfg->now_ns)
		return cfg->now_ns;
	return bpf_ktime_get_coarse_ns();
}

static __always_inline __u64 flow_timeout(const struct node_config *cfg, __u8 proto, __u8 flags)
{
	__u64 t;

	if (flags & NODE_FLOW_CLOSING) {
		t = cfg ? cfg->close_ns : 0;
		return t ? t : DEFAULT_CLOSE_NS;
	}
	if (proto == IPPROTO_TCP) {
		t = cfg ? cfg->tcp_idle_ns : 0;
		return t ? t : DEFAULT_TCP_IDLE_NS;
	}
	t = cfg ? cfg->udp_idle_ns : 0;
	return t ? t : DEFAULT_UDP_IDLE_NS;
}

static __always_inline int is_expired(__u64 now, __u64 last, __u64 timeout)
{
	return now > last && now - last > timeout;
}

/* Move last_seen forward, at most once per REFRESH_NS. */
static __always_inline void touch(__u64 *last_seen, __u64 now)
{
	if (now > *last_seen && now - *last_seen > REFRESH_NS)
		*last_seen = now;
}

enum flow_memo {
	FLOW_NEW = 0,  /* recorded afresh */
	FLOW_KNOWN,    /* the same mapping was there: refreshed */
	FLOW_CONFLICT, /* a live flow maps the tuple to another VIP: left alone */
};

/* Record (or refresh) the reply tuple of a flow. A live entry is never
 * re-pointed at another VIP by a packet that is not a SYN: only a new
 * connection may change what the tuple's replies are sent as. */
static __always_inline enum flow_memo remember_flow(const struct node_config *cfg,
						    const struct node_flow_key *k, __be32 vip,
						    __be16 vport, __u8 origin, __u8 syn, __u64 now)
{
	struct node_flow_value *v = bpf_map_lookup_elem(&node_flows, k);

	if (v) {
		int same = v->vip == vip && v->vip_port == vport;

		if (same && !(syn && v->flags)) {
			touch(&v->last_seen_ns, now);
			return FLOW_KNOWN;
		}
		if (!same && !syn &&
		    !is_expired(now, v->last_seen_ns, flow_timeout(cfg, k->proto, v->flags)))
			return FLOW_CONFLICT;
	}
	/* New flow, a SYN for another mapping, or a SYN reusing a closing tuple. */
	struct node_flow_value nv = {
		.vip = vip,
		.vip_port = vport,
		.flags = 0,
		.origin = origin,
		.last_seen_ns = now,
		.created_ns = now,
	};
	bpf_map_update_elem(&node_flows, k, &nv, BPF_ANY);
	return FLOW_NEW;
}

/* Client FIN/RST on a known flow (seen on ingress after any DNAT, so the
 * packet is client → pod). */
static __always_inline void client_close(const struct node_flow_key *k, __u8 tcp_flags,
					 __u64 now)
{
	struct node_flow_value *v;

	if (!(tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST)))
		return;
	v = bpf_map_lookup_elem(&node_flows, k);
	if (!v)
		return;
	if (tcp_flags & PKT_TCP_RST) {
		bpf_map_delete_elem(&node_flows, k);
		node_count(NC_IN_RST);
		return;
	}
	node_count(NC_IN_FIN);
	if (!(v->flags & NODE_FLOW_FIN_CLIENT)) {
		v->flags |= NODE_FLOW_FIN_CLIENT;
		if (v->flags & NODE_FLOW_FIN_POD) {
			v->flags |= NODE_FLOW_CLOSING;
			node_count(NC_FLOW_CLOSING);
		}
	}
	v->last_seen_ns = now;
}

/* A pod's reply on flow v (key k, seen on egress): FIN/RST move it towards
 * its end, anything else refreshes it. */
static __always_inline void pod_seen(const struct node_flow_key *k, struct node_flow_value *v,
				     __u8 proto, __u8 tcp_flags, __u64 now)
{
	if (proto != IPPROTO_TCP || !(tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST))) {
		touch(&v->last_seen_ns, now);
		return;
	}
	if (tcp_flags & PKT_TCP_RST) {
		bpf_map_delete_elem(&node_flows, k);
		node_count(NC_EG_RST);
		return;
	}
	node_count(NC_EG_FIN);
	if (!(v->flags & NODE_FLOW_FIN_POD)) {
		v->flags |= NODE_FLOW_FIN_POD;
		if (v->flags & NODE_FLOW_FIN_CLIENT) {
			v->flags |= NODE_FLOW_CLOSING;
			node_count(NC_FLOW_CLOSING);
		}
	}
	v->last_seen_ns = now;
}

#endif
