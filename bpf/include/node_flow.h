/* Node program: flow memory — what the node remembers about a DSR flow and
 * for how long.
 *
 * node_flows maps a flow's reply tuple (pod:pp → client:cp) to the VIP:vp
 * its replies must come from; node_fwd pins an ipip flow's forward tuple
 * to the local pod chosen for it. Times come from node_config's test clock
 * when set, else the coarse monotonic clock.
 *
 * How a flow ends — never at once, because a packet from outside must not
 * be able to end a live connection (a blind RST or FIN carries the flow's
 * addresses but not its sequence numbers; the pod's stack ignores it, and so
 * must we):
 *   - FIN from both sides marks it CLOSING; it then lives close_ns past its
 *     last packet (the final ACK and retransmissions are still rewritten).
 *     A FIN from one side only marks that side.
 *   - A RST from either side marks it RST; after rst_ns of silence the
 *     connection counts as ended. Any other packet of the flow before that
 *     clears the mark: the connection is alive, the RST was not its end.
 *     The entry itself stays (replies are still rewritten) until it idles
 *     out: a blind RST that the pod ignored must not make the next reply of
 *     an idle keep-alive connection leave with the pod's address.
 *   - Idle flows expire after tcp_idle_ns / udp_idle_ns without a packet;
 *     an expired entry is ignored and deleted when next looked up, and the
 *     LRU maps bound memory for the ones never seen again.
 * A SYN may point a tuple at another VIP (or an ipip flow at another pod)
 * only once its connection has ended (flow_ended); while it lives, the SYN
 * is refused (remember_flow). A UDP datagram naming another VIP takes the
 * tuple over once the old flow has been quiet for rst_ns (udp_quiet).
 *
 * IPv6 flows live in their own maps (node_flows6, node_fwd6: 16-byte
 * addresses) with the same rules: their values embed a node_flow_value, so
 * everything that decides about a flow's state is written once. */
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
#define DEFAULT_RST_NS (2ULL * NSEC)
/* Fragments of a pod's reply (node_maps.h, node_frags): how long after the
 * first fragment the rest of its datagram is still sent from the VIP. A
 * sender emits a datagram's fragments back to back; the bound keeps an IP
 * ID used again later from inheriting a VIP. */
#define NODE_FRAG_NS (2ULL * NSEC)
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

/* Is last_seen due for its refresh (touch would move it)? What is worth
 * asking about a flow, but not for every packet, is asked then. */
static __always_inline int pin_due(__u64 last_seen, __u64 now)
{
	return now > last_seen && now - last_seen > REFRESH_NS;
}

static __always_inline __u64 rst_silence(const struct node_config *cfg)
{
	__u64 t = cfg ? cfg->rst_ns : 0;

	return t ? t : DEFAULT_RST_NS;
}

/* Has this flow's connection ended? Both FINs, a RST and silence since, or
 * idle past its timeout. */
static __always_inline int flow_over(const struct node_config *cfg, const struct node_flow_value *v,
				     __u8 proto, __u64 now)
{
	if (v->flags & NODE_FLOW_CLOSING)
		return 1;
	if ((v->flags & NODE_FLOW_RST) && is_expired(now, v->last_seen_ns, rst_silence(cfg)))
		return 1;
	return is_expired(now, v->last_seen_ns, flow_timeout(cfg, proto, v->flags));
}

/* A packet of the flow that is no RST: proof it lives. Clears a RST mark
 * (that RST was not the connection's end) and refreshes last_seen. */
static __always_inline void flow_seen(struct node_flow_value *v, __u64 now)
{
	if (v->flags & NODE_FLOW_RST) {
		v->flags &= ~NODE_FLOW_RST;
		v->last_seen_ns = now;
		return;
	}
	touch(&v->last_seen_ns, now);
}

/* A RST on the flow: marked, and ended after rst_ns unless traffic follows. */
static __always_inline void flow_rst(struct node_flow_value *v, __u64 now)
{
	v->flags |= NODE_FLOW_RST;
	v->last_seen_ns = now;
}

/* Has a UDP flow been quiet for rst_ns, so that a datagram naming another
 * VIP may take its tuple over (flow_admit)? last_seen trails the flow's last
 * datagram by up to REFRESH_NS (touch moves it at most once a second), so
 * the silence it shows may be a second longer than the real one: counted
 * from last_seen, a flow whose last datagram was 1.5 s ago looked 2.5 s
 * quiet and lost its tuple. The real silence is at least now − last_seen −
 * REFRESH_NS; that must exceed rst_ns. */
static __always_inline int udp_quiet(const struct node_config *cfg, const struct node_flow_value *v,
				     __u64 now)
{
	return is_expired(now, v->last_seen_ns, rst_silence(cfg) + REFRESH_NS);
}

struct node_insert_window {
	__u64 window; /* now_ns >> 30 (≈ 1.07 s) */
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct node_insert_window);
} node_insert_limit SEC(".maps");

/* May this CPU add one more flow in the current window? A flood of new
 * flows (spoofed SYNs or UDP through the edge) would otherwise evict the
 * established ones from the LRU flow map; beyond insert_limit per CPU per
 * window new flows are refused (their packets dropped: remembered or not,
 * the pod's reply could not be sent as the VIP) while known flows go on. */
static __always_inline int node_may_insert(const struct node_config *cfg, __u64 now)
{
	struct node_insert_window *w;
	__u32 zero = 0, limit = cfg ? cfg->insert_limit : 0;

	if (limit == 0)
		return 1;
	w = bpf_map_lookup_elem(&node_insert_limit, &zero);
	if (!w)
		return 1;
	if (w->window != now >> 30) {
		w->window = now >> 30;
		w->count = 0;
	}
	if (w->count >= limit)
		return 0;
	w->count++;
	return 1;
}

enum flow_memo {
	FLOW_NEW = 0,  /* recorded afresh */
	FLOW_KNOWN,    /* the same mapping was there: refreshed */
	FLOW_CONFLICT, /* a live flow maps the tuple to another VIP: left alone */
	FLOW_LIMITED,  /* a new flow over the insert limit: not recorded */
};

/* Whether a packet naming VIP:vport (same: the entry v already maps the
 * tuple there) may record its flow. v is the tuple's entry or NULL.
 * FLOW_KNOWN: v was refreshed; FLOW_NEW: the caller writes a fresh entry.
 * A live entry is never re-pointed at another VIP by a packet that is not
 * a SYN: only a new connection may change what the tuple's replies are
 * sent as. Shared by both families' remember_flow*. */
static __always_inline enum flow_memo flow_admit(const struct node_config *cfg,
						 struct node_flow_value *v, int same, __u8 proto,
						 __u8 syn, __u64 now)
{
	if (v) {
		int expired = is_expired(now, v->last_seen_ns, flow_timeout(cfg, proto, v->flags));

		/* A SYN on a tuple whose connection is over starts afresh. */
		if (syn && flow_over(cfg, v, proto, now))
			return FLOW_NEW;
		if (same && !expired) {
			flow_seen(v, now);
			return FLOW_KNOWN;
		}
		/* Another VIP for a live flow: only a new connection may take
		 * the tuple over — a SYN once the old connection is over (above);
		 * for UDP, which has no handshake, a datagram once the old flow
		 * has been quiet for rst_ns (a client reusing its port for
		 * another frontend of the same pod). */
		if (!same && !expired) {
			if (proto == IPPROTO_UDP && udp_quiet(cfg, v, now))
				return FLOW_NEW;
			return FLOW_CONFLICT;
		}
		return FLOW_NEW; /* expired: starts afresh */
	}
	/* Only a new key can evict another flow from the LRU map. */
	if (!node_may_insert(cfg, now))
		return FLOW_LIMITED;
	return FLOW_NEW;
}

/* A fresh flow's state (for IPv6 flows, vip is 0: node_flow6_value). */
static __always_inline void flow_fresh(struct node_flow_value *nv, __be32 vip, __be16 vport,
				       __u8 origin, __u64 now)
{
	nv->vip = vip;
	nv->vip_port = vport;
	nv->flags = 0;
	nv->origin = origin;
	nv->last_seen_ns = now;
	nv->created_ns = now;
}

/* Record (or refresh) the reply tuple of an IPv4 flow (flow_admit). */
static __always_inline enum flow_memo remember_flow(const struct node_config *cfg,
						    const struct node_flow_key *k, __be32 vip,
						    __be16 vport, __u8 origin, __u8 syn, __u64 now)
{
	struct node_flow_value *v = bpf_map_lookup_elem(&node_flows, k);
	int same = v && v->vip == vip && v->vip_port == vport;
	enum flow_memo m = flow_admit(cfg, v, same, k->proto, syn, now);

	if (m == FLOW_NEW) {
		/* New flow, an expired one, or a SYN reusing an ended
		 * connection's tuple. */
		struct node_flow_value nv;

		flow_fresh(&nv, vip, vport, origin, now);
		bpf_map_update_elem(&node_flows, k, &nv, BPF_ANY);
	}
	return m;
}

/* The same for an IPv6 flow; *nv is room for the new entry (the IPv6
 * paths keep it off their stack: node_ingress6.h). */
static __always_inline enum flow_memo remember_flow6(const struct node_config *cfg,
						     const struct node_flow6_key *k,
						     const struct pkt_addr6 *vip, __be16 vport,
						     __u8 origin, __u8 syn, __u64 now,
						     struct node_flow6_value *nv)
{
	struct node_flow6_value *v = bpf_map_lookup_elem(&node_flows6, k);
	int same = v && addr6_eq(&v->vip6, vip) && v->st.vip_port == vport;
	enum flow_memo m = flow_admit(cfg, v ? &v->st : 0, same, k->proto, syn, now);

	if (m == FLOW_NEW) {
		flow_fresh(&nv->st, 0, vport, origin, now);
		nv->vip6 = *vip;
		bpf_map_update_elem(&node_flows6, k, nv, BPF_ANY);
	}
	return m;
}

/* FIN from one side: marked; CLOSING once both sides sent theirs. */
static __always_inline void flow_fin(struct node_flow_value *v, __u8 side, __u8 other, __u64 now)
{
	if (!(v->flags & side)) {
		v->flags |= side;
		if (v->flags & other) {
			v->flags |= NODE_FLOW_CLOSING;
			node_count(NC_FLOW_CLOSING);
		}
	}
	v->flags &= ~NODE_FLOW_RST;
	v->last_seen_ns = now;
}

/* A client's TCP segment on a known flow's entry v (seen on ingress after
 * any DNAT, so the packet is client → pod), with or without our option. */
static __always_inline void client_event(const struct node_config *cfg, struct node_flow_value *v,
					 __u8 proto, __u8 tcp_flags, __u64 now)
{
	if (!v || is_expired(now, v->last_seen_ns, flow_timeout(cfg, proto, v->flags)))
		return;
	if (tcp_flags & PKT_TCP_RST) {
		flow_rst(v, now);
		node_count(NC_IN_RST);
	} else if (tcp_flags & PKT_TCP_FIN) {
		flow_fin(v, NODE_FLOW_FIN_CLIENT, NODE_FLOW_FIN_POD, now);
		node_count(NC_IN_FIN);
	} else {
		flow_seen(v, now);
	}
}

static __always_inline void client_seen(const struct node_config *cfg, const struct node_flow_key *k,
					__u8 tcp_flags, __u64 now)
{
	client_event(cfg, bpf_map_lookup_elem(&node_flows, k), k->proto, tcp_flags, now);
}

static __always_inline void client_seen6(const struct node_config *cfg,
					 const struct node_flow6_key *k, __u8 tcp_flags, __u64 now)
{
	struct node_flow6_value *v = bpf_map_lookup_elem(&node_flows6, k);

	if (v)
		client_event(cfg, &v->st, k->proto, tcp_flags, now);
}

/* A client's FIN/RST that came bare: without our option, outside any
 * tunnel. An ip-option flow's later segments come so (from the edge, or
 * handed over by another node: node_second_chance.h); an ipip flow's never
 * do — its client's segments arrive inside IPIP from an edge — so a bare
 * one is someone else's, and leaves the flow alone: taken as the client's
 * FIN, it let the pod's half-close make the flow CLOSING, and its replies
 * left from the pod's own address after the close timeout. */
static __always_inline int bare_segment_may_end(const struct node_flow_value *v)
{
	return v && v->origin != NODE_ORIGIN_IPIP;
}

static __always_inline void client_seen_bare(const struct node_config *cfg,
					     const struct node_flow_key *k, __u8 tcp_flags,
					     __u64 now)
{
	struct node_flow_value *v = bpf_map_lookup_elem(&node_flows, k);

	if (bare_segment_may_end(v))
		client_event(cfg, v, k->proto, tcp_flags, now);
}

static __always_inline void client_seen6_bare(const struct node_config *cfg,
					      const struct node_flow6_key *k, __u8 tcp_flags,
					      __u64 now)
{
	struct node_flow6_value *v = bpf_map_lookup_elem(&node_flows6, k);

	if (v && bare_segment_may_end(&v->st))
		client_event(cfg, &v->st, k->proto, tcp_flags, now);
}

/* A pod's reply on flow v (seen on egress): FIN/RST move it towards its
 * end, anything else refreshes it. */
static __always_inline void pod_seen(struct node_flow_value *v, __u8 proto, __u8 tcp_flags,
				     __u64 now)
{
	if (proto != IPPROTO_TCP || !(tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST))) {
		flow_seen(v, now);
	} else if (tcp_flags & PKT_TCP_RST) {
		flow_rst(v, now);
		node_count(NC_EG_RST);
	} else {
		flow_fin(v, NODE_FLOW_FIN_POD, NODE_FLOW_FIN_CLIENT, now);
		node_count(NC_EG_FIN);
	}
}

/* Is the connection of the flow at k over (or is there none)? For a SYN
 * that finds an ipip forward pin: only then may it go to another pod. */
static __always_inline int flow_ended(const struct node_config *cfg, const struct node_flow_key *k,
				      __u64 now)
{
	struct node_flow_value *v = bpf_map_lookup_elem(&node_flows, k);

	return !v || flow_over(cfg, v, k->proto, now);
}

static __always_inline int flow6_ended(const struct node_config *cfg,
				       const struct node_flow6_key *k, __u64 now)
{
	struct node_flow6_value *v = bpf_map_lookup_elem(&node_flows6, k);

	return !v || flow_over(cfg, &v->st, k->proto, now);
}

#endif
