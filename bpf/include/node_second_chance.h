/* Node program: the second chance (docs/second-chance.md). An edge that had
 * no entry for a TCP segment after its service's backend set changed sends
 * it to the new table's backend (here) naming the previous table's backend
 * in the 20-byte option (sc_option.h). This node delivers it if the flow is
 * its pod's — the pod saw the SYN: node_flows (ip-option) or node_fwd (ipip)
 * remembers it — and otherwise hands it to the secondary's node.
 *
 * Trust: the option is acted on only from an edge (node_trust.h), and the
 * secondary must be a backend of the same frontend on the node the option
 * names (node_sc_backends, written by the agent). A packet is handed at most
 * once: an ip-option hand-over carries no option any more; an ipip one
 * carries SC_F_HANDED, and a HANDED packet is only delivered into a flow this
 * node already owns, never handed again, never creates a flow.
 *
 * node.c sends every IPv4 packet whose first option is ours with length 20
 * here (node_sc_wants); everything else takes the usual path.
 *
 * A HANDED packet's FIN or RST moves its flow towards its end only when its
 * link-layer sender may bring the edges' IPIP itself (an edge, or a router
 * listed as one: ipip_from_edge). A hand-over comes from a node's MAC, which
 * no node trusts, so an edge's outer source is all that vouches for it — and
 * anyone who can send that address (a pod on another node on this link)
 * could wrap the client's FIN in a forged HANDED header: the pod's own
 * half-close then made the flow CLOSING, and after the close timeout its
 * replies left from the pod's address, as a bare FIN may not make an ipip
 * flow do (bare_segment_may_end, node_flow.h). The packet is still
 * delivered (the pod's stack judges it); a flow whose real FIN came handed
 * only from a node's MAC lives until it idles out, rewriting its replies. */
#ifndef EDGELB_NODE_SECOND_CHANCE_H
#define EDGELB_NODE_SECOND_CHANCE_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"
#include "csum.h"
#include "sc_option.h"
#include "node_maps.h"
#include "node_counters.h"
#include "node_verdict.h"
#include "node_parse.h"
#include "node_flow.h"
#include "node_rewrite.h"
#include "node_trust.h"
#include "node_ingress.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

/* node_config.flags: hand-overs are rewritten and passed to the stack
 * instead of FIB-routed (tests: BPF_PROG_TEST_RUN shows the bytes). */
#define NODE_CFG_SC_FIB_BYPASS 0x80

/* Every backend of this node's DSR frontends, cluster-wide: a secondary
 * must be one of them, on the node it names. */
struct node_sc_be_key {
	__be32 vip;
	__be16 vport;
	__u8 proto;
	__u8 pad;
	__be32 pod_ip;
	__be16 pod_port;
	__u16 pad2;
};

struct node_sc_be_value {
	__be32 node_ip;
};

#define NODE_SC_BACKENDS (1 << 16)

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NODE_SC_BACKENDS);
	__type(key, struct node_sc_be_key);
	__type(value, struct node_sc_be_value);
} node_sc_backends SEC(".maps");

enum node_sc_stat {
	NSC_OWNED = 0,         /* the flow is this node's pod's: delivered */
	NSC_HANDED,            /* handed to the secondary's node */
	NSC_HANDED_LOCAL,      /* the secondary is a pod of this node: re-addressed to it */
	NSC_HANDED_IN,         /* a handed ipip packet delivered into a flow owned here */
	NSC_FIB_BYPASS,        /* NODE_CFG_SC_FIB_BYPASS: a hand-over passed to the stack */
	NSC_DROP_NOT_BACKEND,  /* the secondary is no backend of the frontend on that node */
	NSC_DROP_HANDED,       /* a handed packet this node does not own (or in a form never sent) */
	NSC_DROP_NO_ROUTE,     /* no FIB result towards the secondary's node */
	NSC_DROP_TTL,          /* TTL would run out on the hand-over */
	NSC_DROP_MALFORMED,    /* not a TCP non-SYN segment, a fragment, or truncated */
	NSC_STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NSC_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} node_sc_stats SEC(".maps");

static __always_inline void node_sc_count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&node_sc_stats, &idx);

	if (c)
		*c += 1;
}

static __always_inline int node_sc_drop(__u32 why)
{
	node_sc_count(why);
	return TC_ACT_SHOT;
}

/* Is this IPv4 packet's first option the 20-byte second-chance option? */
static __always_inline int node_sc_wants(struct __sk_buff *skb, const struct pkt *p)
{
	__u8 *o = (void *)(p->ip + 1);

	if (p->ihl_bytes < 20 + SC_OPT_LEN)
		return 0;
	if ((void *)(o + 2) > skb_data_end(skb))
		return 0;
	return o[0] == DSR_OPT_TYPE && o[1] == SC_OPT_LEN;
}

/* Is the option's secondary a backend of its frontend, on the node it names? */
static __always_inline int node_sc_secondary_ok(const struct sc_opt *o, __u8 proto)
{
	struct node_sc_be_key k = {
		.vip = o->vip,
		.vport = o->port,
		.proto = proto,
		.pod_ip = o->sec_ip,
		.pod_port = o->sec_port,
	};
	struct node_sc_be_value *v = bpf_map_lookup_elem(&node_sc_backends, &k);

	return v && v->node_ip == o->sec_node;
}

/* TTL − 1 on the IPv4 header at l3_off; -1 when it would run out. */
static __always_inline int node_sc_hop(struct __sk_buff *skb, __u32 l3_off)
{
	void *data = skb_data(skb), *data_end = skb_data_end(skb);
	struct iphdr *ip;
	__be16 old, new;

	if (l3_off > 64)
		return -1;
	ip = data + l3_off;
	if ((void *)(ip + 1) > data_end || ip->ttl <= 1)
		return -1;
	old = *(__be16 *)&ip->ttl;
	ip->ttl--;
	new = *(__be16 *)&ip->ttl;
	csum_replace2(&ip->check, old, new);
	return 0;
}

/* Send the (rewritten) packet to `node` out of the FIB's interface. Either
 * family (v6 a constant): src and node are 4-byte addresses, or 16-byte for
 * IPv6 (node_second_chance6.h), copied bytewise as they may sit in a packed
 * option; only the FIB and neighbour requests' address fields differ. */
static __always_inline int node_sc_forward(struct __sk_buff *skb, const struct node_config *cfg,
					   const int v6, const void *src, const void *node)
{
	struct bpf_fib_lookup fib = {};
	void *data, *data_end;
	struct ethhdr *eth;
	long rc;

	node_sc_count(NSC_HANDED);
	if (cfg && (cfg->flags & NODE_CFG_SC_FIB_BYPASS)) {
		node_sc_count(NSC_FIB_BYPASS);
		return TC_ACT_UNSPEC;
	}
	if (v6) {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, src, 16);
		__builtin_memcpy(fib.ipv6_dst, node, 16);
	} else {
		fib.family = AF_INET;
		__builtin_memcpy(&fib.ipv4_src, src, 4);
		__builtin_memcpy(&fib.ipv4_dst, node, 4);
	}
	fib.ifindex = skb->ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		/* Nodes rarely talk to each other directly: the neighbour
		 * subsystem resolves the next hop (ARP, NDP) and sends. */
		struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = fib.ipv4_dst };

		if (v6) {
			nh.nh_family = AF_INET6;
			__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, 16);
		}
		return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return node_sc_drop(NSC_DROP_NO_ROUTE);
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return TC_ACT_SHOT;
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	return bpf_redirect(fib.ifindex, 0);
}

/* ip-option dispatch: the packet is DNATed to one of our pods (the primary). */
static __always_inline int node_sc_option(struct __sk_buff *skb, struct pkt *p,
					  struct node_config *cfg)
{
	void *data = skb_data(skb), *data_end = skb_data_end(skb);
	struct sc_opt *o = (void *)(p->ip + 1);
	struct sc_opt opt;
	struct node_flow_value *fv;
	__u64 now = now_ns(cfg);
	__u32 opt_sum = 0;

	if ((void *)(o + 1) > data_end)
		return node_sc_drop(NSC_DROP_MALFORMED);
	opt = *o;
#pragma unroll
	for (int i = 0; i < SC_OPT_LEN / 4; i++)
		opt_sum += csum_word32(((__u32 *)o)[i]);
	opt_sum = csum_fold_nocpl(opt_sum);
	if (data + ETH_HLEN > data_end || !edge_neighbour(data, now))
		return node_tc(node_drop(NC_DROP_UNTRUSTED));
	if (opt.flags & SC_F_HANDED)
		return node_sc_drop(NSC_DROP_HANDED); /* never sent in this form */
	if (p->frag || parse_l4(data, data_end, p) != PARSE_OK || p->l4_proto != IPPROTO_TCP ||
	    (p->tcp_flags & PKT_TCP_SYN))
		return node_sc_drop(NSC_DROP_MALFORMED);
	/* As for the 8-byte option: a configured frontend, one of its pods here. */
	{
		struct node_svc_key sk = { .vip = opt.vip, .port = opt.port, .proto = IPPROTO_TCP };
		struct node_svc_value *sv = bpf_map_lookup_elem(&node_services, &sk);

		if (!sv)
			return node_tc(node_drop(NC_DROP_UNKNOWN_VIP));
		if (!local_backend(sv, p->daddr, p->dport))
			return node_tc(node_drop(NC_DROP_WRONG_BACKEND));
	}
	struct node_flow_key k = {
		.pod_ip = p->daddr,
		.client_ip = p->saddr,
		.pod_port = p->dport,
		.client_port = p->sport,
		.proto = IPPROTO_TCP,
	};
	__u32 l3_off = p->l3_off, ihl_words = p->ihl_bytes / 4, l4_off = p->l4_off - SC_OPT_LEN;

	fv = bpf_map_lookup_elem(&node_flows, &k);
	if (fv && fv->vip == opt.vip && fv->vip_port == opt.port &&
	    !is_expired(now, fv->last_seen_ns, flow_timeout(cfg, IPPROTO_TCP, fv->flags))) {
		/* Ours: the pod saw the SYN. Delivered as the 8-byte option's
		 * packets are, the option gone. */
		if (p->tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST))
			client_seen(cfg, &k, p->tcp_flags, now);
		node_sc_count(NSC_OWNED);
		if (strip_ip_option(skb, l3_off, ihl_words, p->ip_len, opt_sum, SC_OPT_LEN) != STEP_DONE)
			return node_tc(node_drop(NC_DROP_REWRITE));
		return TC_ACT_UNSPEC;
	}
	if (!node_sc_secondary_ok(&opt, IPPROTO_TCP))
		return node_sc_drop(NSC_DROP_NOT_BACKEND);
	/* Not ours: to the secondary pod, as a plain segment (no option, so it
	 * can never be handed again). */
	if (strip_ip_option(skb, l3_off, ihl_words, p->ip_len, opt_sum, SC_OPT_LEN) != STEP_DONE)
		return node_tc(node_drop(NC_DROP_REWRITE));
	if (rewrite_l3l4(skb, l3_off, l4_off, IPPROTO_TCP, REWRITE_DST, opt.sec_ip, opt.sec_port) !=
	    STEP_DONE)
		return node_tc(node_drop(NC_DROP_REWRITE));
	if (cfg && opt.sec_node == cfg->node_ip) {
		node_sc_count(NSC_HANDED_LOCAL);
		return TC_ACT_UNSPEC;
	}
	if (node_sc_hop(skb, l3_off) < 0)
		return node_sc_drop(NSC_DROP_TTL);
	return node_sc_forward(skb, cfg, 0, &p->saddr, (const void *)&opt.sec_node);
}

/* ipip dispatch: the option is in the outer header (p is the outer). */
static __always_inline int node_sc_ipip(struct __sk_buff *skb, struct pkt *p, struct node_config *cfg)
{
	void *data = skb_data(skb), *data_end = skb_data_end(skb);
	struct sc_opt *o = (void *)(p->ip + 1);
	struct node_fwd_value *fv;
	struct sc_opt opt;
	struct pkt in;

	if ((void *)(o + 1) > data_end)
		return node_sc_drop(NSC_DROP_MALFORMED);
	opt = *o;
	if (p->frag)
		return node_sc_drop(NSC_DROP_MALFORMED);
	in.l3_off = p->l4_off;
	if (in.l3_off > 14 + 4 + 60)
		return node_sc_drop(NSC_DROP_MALFORMED);
	if (parse_ipv4_len(data, data_end, &in, skb->len) != PARSE_OK ||
	    in.ip_len > p->ip_len - p->ihl_bytes || in.frag ||
	    parse_l4(data, data_end, &in) != PARSE_OK || in.l4_proto != IPPROTO_TCP ||
	    (in.tcp_flags & PKT_TCP_SYN) || in.daddr != opt.vip || in.dport != opt.port)
		return node_sc_drop(NSC_DROP_MALFORMED);

	struct node_fwd_key fk = {
		.client_ip = in.saddr,
		.vip = in.daddr,
		.client_port = in.sport,
		.vip_port = in.dport,
		.proto = IPPROTO_TCP,
	};
	__u64 now = now_ns(cfg);

	fv = bpf_map_lookup_elem(&node_fwd, &fk);
	if (fv && is_expired(now, fv->last_seen_ns, flow_timeout(cfg, IPPROTO_TCP, 0)))
		fv = 0;

	if (opt.flags & SC_F_HANDED) {
		/* From the primary's node (not an edge link-layer sender): only
		 * into a flow this node owns, and only with an edge's outer
		 * source — what the edge would have sent here itself. */
		__be32 pod_ip;
		__be16 pod_port;
		__u32 l3_off = p->l3_off, inner_ihl = in.ihl_bytes;

		if (!edge_source(p->saddr))
			return node_tc(node_drop(NC_DROP_UNTRUSTED));
		if (!fv)
			return node_sc_drop(NSC_DROP_HANDED);
		pod_ip = fv->pod_ip;
		pod_port = fv->pod_port;
		touch(&fv->last_seen_ns, now);
		{
			struct node_flow_key rk = {
				.pod_ip = pod_ip,
				.client_ip = in.saddr,
				.pod_port = pod_port,
				.client_port = in.sport,
				.proto = IPPROTO_TCP,
			};

			/* Its FIN/RST counts only from a sender that could have
			 * brought the flow's IPIP itself (see the header comment). */
			if ((in.tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST)) && ipip_from_edge(skb, p, now))
				client_seen(cfg, &rk, in.tcp_flags, now);
		}
		if (bpf_skb_adjust_room(skb, -(__s32)p->ihl_bytes, BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_FIXED_GSO))
			return node_tc(node_drop(NC_DROP_DECAP));
		if (l3_off > 18 || inner_ihl > 60)
			return node_tc(node_drop(NC_DROP_DECAP));
		if (rewrite_l3l4(skb, l3_off, l3_off + inner_ihl, IPPROTO_TCP, REWRITE_DST, pod_ip,
				 pod_port) != STEP_DONE)
			return node_tc(node_drop(NC_DROP_REWRITE));
		node_sc_count(NSC_HANDED_IN);
		return TC_ACT_UNSPEC;
	}

	if (!ipip_from_edge(skb, p, now))
		return node_tc(node_drop(NC_DROP_UNTRUSTED));
	if (fv || (cfg && opt.sec_node == cfg->node_ip)) {
		/* Ours (the pin from the SYN), or the secondary is this node
		 * too: the usual ipip path, which reads past the outer option. */
		if (fv)
			node_sc_count(NSC_OWNED);
		return node_tc(ingress_ipip(skb, p, cfg, now));
	}
	if (!node_sc_secondary_ok(&opt, IPPROTO_TCP))
		return node_sc_drop(NSC_DROP_NOT_BACKEND);
	/* Not ours: the outer header goes on to the secondary's node, HANDED. */
	{
		struct iphdr *ip;
		struct sc_opt *wo;
		__be16 old_w, new_w;
		__u32 l3_off = p->l3_off;

		data = skb_data(skb);
		data_end = skb_data_end(skb);
		if (l3_off > 64)
			return node_sc_drop(NSC_DROP_MALFORMED);
		ip = data + l3_off;
		wo = data + l3_off + sizeof(*ip);
		if ((void *)(wo + 1) > data_end)
			return node_sc_drop(NSC_DROP_MALFORMED);
		if (ip->ttl <= 1)
			return node_sc_drop(NSC_DROP_TTL);
		csum_replace4(&ip->check, ip->daddr, opt.sec_node);
		ip->daddr = opt.sec_node;
		old_w = *(__be16 *)&wo->flags;
		wo->flags |= SC_F_HANDED;
		new_w = *(__be16 *)&wo->flags;
		csum_replace2(&ip->check, old_w, new_w);
		old_w = *(__be16 *)&ip->ttl;
		ip->ttl--;
		new_w = *(__be16 *)&ip->ttl;
		csum_replace2(&ip->check, old_w, new_w);
	}
	return node_sc_forward(skb, cfg, 0, &p->saddr, (const void *)&opt.sec_node);
}

static __always_inline int node_second_chance(struct __sk_buff *skb, struct pkt *p)
{
	struct node_config *cfg = get_config();

	if (p->l4_proto == IPPROTO_IPIP)
		return node_sc_ipip(skb, p, cfg);
	return node_sc_option(skb, p, cfg);
}

#endif
