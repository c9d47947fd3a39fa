/* Node program, IPv6: the second chance (docs/second-chance.md) — what
 * node_second_chance.h does for the 20-byte IPv4 option, for the 64-byte
 * Destination Options header of sc_option.h. An edge that had no entry for
 * a TCP segment after its service's backends changed sends it to the new
 * table's pod (here) naming the previous table's pod; this node delivers it
 * if the flow is its pod's (node_flows6 for the header dispatch, node_fwd6
 * for IP6IP6 — written when the pod saw the SYN) and otherwise hands it to
 * the secondary's node.
 *
 * The trust rules are IPv4's:
 *   - acted on only from an edge: its link-layer sender is a trusted edge
 *     neighbour (node_trust.h), and under IP6IP6 its outer source is an
 *     IPv6 edge source as well;
 *   - the secondary must be a backend of the same frontend on the node the
 *     header names (node_sc_backends6, written by the agent);
 *   - a packet is handed at most once: a header-dispatch hand-over carries
 *     no header any more; an IP6IP6 one carries SC_F_HANDED, and a HANDED
 *     packet (accepted with an edge's outer source from any sender: it
 *     comes from the primary's node) is only delivered into a flow this
 *     node already pinned — never handed again, never creating a flow.
 * The header must match sc_option.h's layout in all 64 bytes (lengths,
 * reserved byte, PadN) and be the FIRST extension header; node_ingress6
 * sends every packet whose first extension header is a Destination Options
 * header carrying option 0x5e with the 64-byte lengths here (node_sc6).
 * Verdicts are tc actions (a hand-over is a redirect), or NODE_SC6_TUNNEL:
 * an IP6IP6 packet owned here, its header removed, for node_ip6ip6. */
#ifndef EDGELB_NODE_SECOND_CHANCE6_H
#define EDGELB_NODE_SECOND_CHANCE6_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse6.h"
#include "sc_option.h"
#include "node_maps.h"
#include "node_counters.h"
#include "node_parse.h"
#include "node_flow.h"
#include "node_rewrite.h"
#include "node_trust.h"
#include "node_second_chance.h"
#include "node_ingress6.h"

/* Every backend of this node's IPv6 DSR TCP frontends, cluster-wide, with
 * its node's IPv6 address: node_sc_backends' twin. */
struct node_sc6_be_key {
	struct pkt_addr6 vip;
	__be16 vport;
	__u8 proto;
	__u8 pad;
	struct pkt_addr6 pod_ip;
	__be16 pod_port;
	__u16 pad2;
};

struct node_sc6_be_value {
	struct pkt_addr6 node_ip;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NODE_SC_BACKENDS);
	__type(key, struct node_sc6_be_key);
	__type(value, struct node_sc6_be_value);
} node_sc_backends6 SEC(".maps");

/* The header's fields, read off the packet once. */
struct node_sc6_opt {
	struct pkt_addr6 vip;
	struct pkt_addr6 sec_ip;
	struct pkt_addr6 sec_node;
	__be16 port;
	__be16 sec_port;
	__u8 nexthdr;
	__u8 flags;
};

/* 0, or a drop reason for a header that is cut short (NSC_DROP_MALFORMED)
 * or not sc_option.h's layout in every byte (NC_DROP_BAD_OPTION, as the
 * 24-byte header's). */
#define NODE_SC6_BAD_LAYOUT 1
#define NODE_SC6_TRUNCATED 2

static __always_inline int node_sc6_read(void *data, void *data_end, __u32 l3_off,
					 struct node_sc6_opt *o)
{
	struct sc6_hdr *h;

	if (l3_off > ETH_HLEN + 4)
		return NODE_SC6_TRUNCATED;
	h = data + off_bounded(l3_off, 0x1f) + IPV6_HLEN;
	if ((void *)(h + 1) > data_end)
		return NODE_SC6_TRUNCATED;
	if (h->hdrlen != SC6_HDR_EXT_LEN || h->opt_type != DSR6_OPT_TYPE ||
	    h->opt_len != SC6_OPT_DATA_LEN || h->reserved != 0 || h->pad_type != DSR6_PADN ||
	    h->pad_len != SC6_PADN_LEN || (h->pad[0] | h->pad[1] | h->pad[2] | h->pad[3]) != 0)
		return NODE_SC6_BAD_LAYOUT;
	o->nexthdr = h->nexthdr;
	o->port = h->port;
	addr6_load(&o->vip, h->vip);
	addr6_load(&o->sec_ip, h->sec_ip);
	o->sec_port = h->sec_port;
	o->flags = h->flags;
	addr6_load(&o->sec_node, h->sec_node);
	return 0;
}

/* Is the header's secondary a backend of its frontend, on the node it names? */
static __always_inline int node_sc6_secondary_ok(const struct node_sc6_opt *o)
{
	struct node_sc6_be_key k = {
		.vip = o->vip,
		.vport = o->port,
		.proto = IPPROTO_TCP,
		.pod_ip = o->sec_ip,
		.pod_port = o->sec_port,
	};
	struct node_sc6_be_value *v = bpf_map_lookup_elem(&node_sc_backends6, &k);

	return v && addr6_eq(&v->node_ip, &o->sec_node);
}

/* Does the header name this node (node_config6's address) as the secondary's? */
static __always_inline int node_sc6_is_me(const struct node_sc6_opt *o)
{
	__u32 zero = 0;
	struct node_config6 *c6 = bpf_map_lookup_elem(&node_config6, &zero);

	return c6 && !addr6_is_zero(&c6->node_ip6) && addr6_eq(&c6->node_ip6, &o->sec_node);
}

/* Hop limit − 1 on the fixed header at l3_off; -1 when it would run out. No
 * header checksum: a CHECKSUM_COMPLETE sum gets the difference. */
static __always_inline int node_sc6_hop(struct __sk_buff *skb, __u32 l3_off)
{
	void *data = skb_data(skb), *data_end = skb_data_end(skb);
	struct ipv6hdr *ip6;
	__be16 old, new;

	if (l3_off > ETH_HLEN + 4)
		return -1;
	ip6 = data + off_bounded(l3_off, 0x1f);
	if ((void *)(ip6 + 1) > data_end || ip6->hop_limit <= 1)
		return -1;
	old = *(__be16 *)&ip6->nexthdr;
	ip6->hop_limit--;
	new = *(__be16 *)&ip6->nexthdr;
	bpf_csum_update(skb, csum_diff_2(old, new));
	return 0;
}

/* Header dispatch: the packet is DNATed to one of our pods (the primary),
 * the header right after the fixed one, TCP right after the header. */
static __always_inline int node_sc6_option(struct __sk_buff *skb, __u32 l3_off,
					   const struct node_sc6_opt *o, struct node_config *cfg)
{
	struct node_flow6_value *fv;
	struct node_svc6_value *sv;
	struct node_scratch6 *k;
	void *data, *data_end;
	struct pkt6 p = {};
	__u64 now;
	int rc;

	rc = parse_skb6(skb, l3_off, &p);
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	now = now_ns(cfg);
	if (data + ETH_HLEN > data_end || !edge_neighbour(data, now))
		return node_tc(node_drop(NC_DROP_UNTRUSTED));
	if (o->flags & SC_F_HANDED)
		return node_sc_drop(NSC_DROP_HANDED); /* never sent in this form */
	/* Exactly the edge's shape: fixed header, ours, a TCP non-SYN. A
	 * payload length of 0 (jumbogram) is never sent with it. */
	if (rc != PARSE_OK || p.frag || p.n_ext != 1 || p.l4_proto != IPPROTO_TCP ||
	    p.payload_len < SC6_HDR_LEN || parse_l4_v6(data, data_end, &p) != PARSE_OK ||
	    (p.tcp_flags & PKT_TCP_SYN))
		return node_sc_drop(NSC_DROP_MALFORMED);
	k = scratch6();
	if (!k)
		return node_tc(node_drop(NC_DROP_REWRITE));
	/* As for the 24-byte header: a configured frontend, one of its pods here. */
	k->sk.vip = o->vip;
	k->sk.port = o->port;
	k->sk.proto = IPPROTO_TCP;
	k->sk.pad = 0;
	sv = bpf_map_lookup_elem(&node_services6, &k->sk);
	if (!sv)
		return node_tc(node_drop(NC_DROP_UNKNOWN_VIP));
	if (!local_backend6(sv, &p.daddr, p.dport))
		return node_tc(node_drop(NC_DROP_WRONG_BACKEND));
	__builtin_memset(&k->rk, 0, sizeof(k->rk));
	k->rk.pod_ip = p.daddr;
	k->rk.client_ip = p.saddr;
	k->rk.pod_port = p.dport;
	k->rk.client_port = p.sport;
	k->rk.proto = IPPROTO_TCP;
	fv = bpf_map_lookup_elem(&node_flows6, &k->rk);
	if (fv && addr6_eq(&fv->vip6, &o->vip) && fv->st.vip_port == o->port &&
	    !is_expired(now, fv->st.last_seen_ns, flow_timeout(cfg, IPPROTO_TCP, fv->st.flags))) {
		/* Ours: the pod saw the SYN. Delivered without the header. */
		if (p.tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST))
			client_seen6(cfg, &k->rk, p.tcp_flags, now);
		node_sc_count(NSC_OWNED);
		if (strip_ext6(skb, l3_off, IPPROTO_TCP, SC6_HDR_LEN) != STEP_DONE)
			return node_tc(node_drop(NC_DROP_REWRITE));
		return TC_ACT_UNSPEC;
	}
	if (!node_sc6_secondary_ok(o))
		return node_sc_drop(NSC_DROP_NOT_BACKEND);
	/* Not ours: to the secondary pod as a plain segment (no header, so it
	 * can never be handed again). */
	if (strip_ext6(skb, l3_off, IPPROTO_TCP, SC6_HDR_LEN) != STEP_DONE)
		return node_tc(node_drop(NC_DROP_REWRITE));
	if (rewrite6_l3l4(skb, l3_off, l3_off + IPV6_HLEN, IPPROTO_TCP, REWRITE_DST, &o->sec_ip,
			  o->sec_port, 1) != STEP_DONE)
		return node_tc(node_drop(NC_DROP_REWRITE));
	if (node_sc6_is_me(o)) {
		node_sc_count(NSC_HANDED_LOCAL);
		return TC_ACT_UNSPEC;
	}
	if (node_sc6_hop(skb, l3_off) < 0)
		return node_sc_drop(NSC_DROP_TTL);
	return node_sc_forward(skb, cfg, 1, &p.saddr, &o->sec_node);
}

/* The inner packet of an IP6IP6 packet whose outer fixed header (at l3_off)
 * is followed by ours: a fixed header and TCP right behind it, within the
 * outer packet (as the edge sends it). PARSE_OK or another parse_rc. */
static __always_inline int node_sc6_inner(struct __sk_buff *skb, __u32 l3_off, struct pkt6 *in,
					  struct pkt_addr6 *outer_src)
{
	const __u32 in_rel = IPV6_HLEN + SC6_HDR_LEN;
	void *data, *data_end;
	struct ipv6hdr *outer;
	__u32 outer_end, in_off;
	int rc;

	if (l3_off > ETH_HLEN + 4)
		return PARSE_UNSUPPORTED;
	l3_off = off_bounded(l3_off, 0x1f);
	pull_headers6(skb, l3_off + in_rel + IPV6_HLEN + 20);
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	outer = data + l3_off;
	if ((void *)(outer + 1) > data_end)
		return PARSE_TRUNC;
	addr6_load(outer_src, &outer->saddr);
	outer_end = bpf_ntohs(outer->payload_len);
	if (outer_end < SC6_HDR_LEN + IPV6_HLEN) /* also 0: a jumbogram */
		return PARSE_TRUNC;
	outer_end += l3_off + IPV6_HLEN;
	if (outer_end > skb->len)
		return PARSE_TRUNC;
	in_off = l3_off + in_rel;
	rc = parse_ipv6_fixed(data, data_end, in_off, in, outer_end);
	if (rc != PARSE_OK)
		return rc;
	if (in->nexthdr != IPPROTO_TCP || in->payload_len == 0)
		return PARSE_UNSUPPORTED;
	in->l4_proto = IPPROTO_TCP;
	in->l4_off = in_off + IPV6_HLEN;
	in->frag = 0;
	in->n_ext = 0;
	return parse_l4_v6(data, data_end, in);
}

/* IP6IP6 dispatch: ours sits between the outer fixed header and the inner
 * packet. Returns a tc action, or NODE_SC6_TUNNEL (node_ingress6.h). */
static __always_inline int node_sc6_ip6ip6(struct __sk_buff *skb, __u32 l3_off,
					   const struct node_sc6_opt *o, struct node_config *cfg)
{
	struct node_fwd6_value *fv;
	struct node_scratch6 *k;
	struct pkt_addr6 src;
	struct pkt6 in = {};
	__u64 now;

	if (node_sc6_inner(skb, l3_off, &in, &src) != PARSE_OK || (in.tcp_flags & PKT_TCP_SYN) ||
	    !addr6_eq(&in.daddr, &o->vip) || in.dport != o->port)
		return node_sc_drop(NSC_DROP_MALFORMED);
	k = scratch6();
	if (!k)
		return node_tc(node_drop(NC_DROP_REWRITE));
	__builtin_memset(&k->fk, 0, sizeof(k->fk));
	k->fk.client_ip = in.saddr;
	k->fk.vip = in.daddr;
	k->fk.client_port = in.sport;
	k->fk.vip_port = in.dport;
	k->fk.proto = IPPROTO_TCP;
	now = now_ns(cfg);
	fv = bpf_map_lookup_elem(&node_fwd6, &k->fk);
	if (fv && is_expired(now, fv->last_seen_ns, flow_timeout(cfg, IPPROTO_TCP, 0)))
		fv = 0;

	if (o->flags & SC_F_HANDED) {
		/* From the primary's node (no edge link-layer sender): only into
		 * a flow this node pinned, only with an edge's outer source. */
		struct pkt_addr6 pod_ip;
		__be16 pod_port;

		if (!edge_source6(&src))
			return node_tc(node_drop(NC_DROP_UNTRUSTED));
		if (!fv)
			return node_sc_drop(NSC_DROP_HANDED);
		pod_ip = fv->pod_ip;
		pod_port = fv->pod_port;
		touch(&fv->last_seen_ns, now);
		/* Its FIN/RST counts only from a sender that could have brought
		 * the flow's IP6IP6 itself (as for IPv4: node_second_chance.h). */
		if ((in.tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST)) && ip6ip6_from_edge(skb, l3_off, now)) {
			__builtin_memset(&k->rk, 0, sizeof(k->rk));
			k->rk.pod_ip = pod_ip;
			k->rk.client_ip = in.saddr;
			k->rk.pod_port = pod_port;
			k->rk.client_port = in.sport;
			k->rk.proto = IPPROTO_TCP;
			client_seen6(cfg, &k->rk, in.tcp_flags, now);
		}
		if (bpf_skb_adjust_room(skb, -(__s32)(IPV6_HLEN + SC6_HDR_LEN), BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_FIXED_GSO))
			return node_tc(node_drop(NC_DROP_DECAP));
		if (rewrite6_l3l4(skb, l3_off, l3_off + IPV6_HLEN, IPPROTO_TCP, REWRITE_DST, &pod_ip,
				  pod_port, 1) != STEP_DONE)
			return node_tc(node_drop(NC_DROP_REWRITE));
		node_sc_count(NSC_HANDED_IN);
		return TC_ACT_UNSPEC;
	}

	if (!ip6ip6_from_edge(skb, l3_off, now))
		return node_tc(node_drop(NC_DROP_UNTRUSTED));
	if (fv || node_sc6_is_me(o)) {
		/* Ours (the pin from the SYN), or the secondary is this node
		 * too: the usual IP6IP6 path, once our header is gone. */
		if (fv)
			node_sc_count(NSC_OWNED);
		if (strip_ext6(skb, l3_off, IPPROTO_IPV6, SC6_HDR_LEN) != STEP_DONE)
			return node_tc(node_drop(NC_DROP_REWRITE));
		return NODE_SC6_TUNNEL;
	}
	if (!node_sc6_secondary_ok(o))
		return node_sc_drop(NSC_DROP_NOT_BACKEND);
	/* Not ours: the outer header goes on to the secondary's node, HANDED. */
	{
		void *data = skb_data(skb), *data_end = skb_data_end(skb);
		struct ipv6hdr *ip6;
		struct sc6_hdr *h;
		struct pkt_addr6 old_dst;
		__be16 old_w, new_w;
		__u32 diff;

		if (l3_off > ETH_HLEN + 4)
			return node_sc_drop(NSC_DROP_MALFORMED);
		ip6 = data + off_bounded(l3_off, 0x1f);
		h = (void *)(ip6 + 1);
		if ((void *)(h + 1) > data_end)
			return node_sc_drop(NSC_DROP_MALFORMED);
		if (ip6->hop_limit <= 1)
			return node_sc_drop(NSC_DROP_TTL);
		addr6_load(&old_dst, &ip6->daddr);
		__builtin_memcpy(&ip6->daddr, &o->sec_node, 16);
		diff = addr6_csum_diff(&old_dst, &o->sec_node);
		old_w = *(__be16 *)&h->flags;
		h->flags |= SC_F_HANDED;
		new_w = *(__be16 *)&h->flags;
		diff += csum_diff_2(old_w, new_w);
		old_w = *(__be16 *)&ip6->nexthdr;
		ip6->hop_limit--;
		new_w = *(__be16 *)&ip6->nexthdr;
		diff += csum_diff_2(old_w, new_w);
		/* No header checksum: only a CHECKSUM_COMPLETE sum moves. */
		bpf_csum_update(skb, diff);
	}
	return node_sc_forward(skb, cfg, 1, &src, &o->sec_node);
}

/* A packet whose first extension header is ours with the 64-byte lengths
 * (node_ingress6 looked): a BPF global function, so its frame and states
 * stay out of node_ingress6's. Returns a tc action, or NODE_SC6_TUNNEL. */
__attribute__((noinline)) int node_sc6(struct __sk_buff *skb, __u64 l3_off)
{
	struct node_config *cfg = get_config();
	struct node_sc6_opt o;
	int bad;

	l3_off = l3_bounded(l3_off);
	pull_headers6(skb, l3_off + IPV6_HLEN + SC6_HDR_LEN);
	bad = node_sc6_read(skb_data(skb), skb_data_end(skb), l3_off, &o);
	if (bad == NODE_SC6_TRUNCATED)
		return node_sc_drop(NSC_DROP_MALFORMED);
	if (bad) {
		void *data = skb_data(skb);

		if (data + ETH_HLEN > skb_data_end(skb) || !edge_neighbour(data, now_ns(cfg)))
			return node_tc(node_drop(NC_DROP_UNTRUSTED));
		return node_tc(node_drop(NC_DROP_BAD_OPTION));
	}
	if (o.nexthdr == IPPROTO_IPV6)
		return node_sc6_ip6ip6(skb, l3_off, &o, cfg);
	if (o.nexthdr == IPPROTO_TCP)
		return node_sc6_option(skb, l3_off, &o, cfg);
	return node_sc_drop(NSC_DROP_MALFORMED); /* UDP, or anything an edge never sends it with */
}

#endif
