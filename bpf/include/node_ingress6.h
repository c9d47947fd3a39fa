/* Node program, ingress, IPv6: node_ingress.h's paths for the other family
 * (wire format: dsr_option.h, /work/coord-decided IPv6 DSR format).
 *
 *  - Destination Options dispatch: the edge DNATed the packet to the pod and
 *    put a 24-byte Destination Options header carrying VIP:port directly
 *    after the fixed header, on TCP SYNs and every UDP datagram. Accepted
 *    only from a trusted edge neighbour, only when the whole header matches
 *    the layout, only on an unfragmented packet, and (verifyVip) only when
 *    VIP:port names a frontend with the destination among its pods here.
 *    The flow is remembered in node_flows6 and the header is ALWAYS
 *    stripped (Next Header and payload length restored): its option type's
 *    action bits make any receiver that does not know it discard the packet,
 *    so keeping it would only make the pod's stack drop the packet.
 *    Option 0x5e anywhere else in a packet's first Destination Options
 *    header is dropped as a bad option (or untrusted). One in a later
 *    Destination Options header is not searched for: the pod's stack
 *    discards the packet for it anyway.
 *  - IP6IP6 dispatch: as ipip — from a trusted edge (neighbour + outer
 *    source in node_edge_src6) to a local frontend, the pod chosen by
 *    node_tuple_hash6 and pinned in node_fwd6, decapsulated and DNATed.
 *    IP6IP6 to anything else passes untouched (the CNI's tunnels), and so
 *    does IP6IP6 behind an outer extension header or around an inner
 *    fragment or to another of the node's addresses — but not a
 *    stranger's to a frontend (ip6ip6_ext_ours, ip6ip6_inner_ours).
 *  - Neighbor Solicitations/Advertisements may teach an edge (node_trust.h).
 *  - A client FIN/RST on a known flow marks it (node_flow.h).
 * Everything else, including every packet the bounded extension-header
 * walk gives up on, passes untouched: the stack has its own rules for it. */
#ifndef EDGELB_NODE_INGRESS6_H
#define EDGELB_NODE_INGRESS6_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"
#include "parse6.h"
#include "dsr_option.h"
#include "sc_option.h"
#include "node_maps.h"
#include "node_counters.h"
#include "node_verdict.h"
#include "node_parse.h"
#include "node_flow.h"
#include "node_hash.h"
#include "node_rewrite.h"
#include "node_trust.h"

/* Is ip:port one of the frontend's pods on this node? */
static __always_inline int local_backend6(const struct node_svc6_value *sv,
					  const struct pkt_addr6 *ip, __be16 port)
{
	__u32 n = sv->count;

	for (__u32 i = 0; i < NODE_MAX_LOCAL_BACKENDS; i++) {
		if (i >= n)
			break;
		if (sv->be[i].port == port && addr6_eq(&sv->be[i].ip, ip))
			return 1;
	}
	return 0;
}

/* Map keys and new entries of the IPv6 paths, per CPU: on the stack, next
 * to the packets' parsed headers, they would push the program past BPF's
 * 512-byte stack (the IPv4 path's frame, below the IPv6 functions', counts
 * too). One run of the program uses it at a time. */
struct node_scratch6 {
	struct node_fwd6_key fk;
	struct node_flow6_key rk;
	struct node_svc6_key sk;
	__u32 pad;
	struct node_flow6_value nv;
	struct node_fwd6_value nfv;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct node_scratch6);
} node_scratch6 SEC(".maps");

static __always_inline struct node_scratch6 *scratch6(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&node_scratch6, &zero);
}

/* Does the packet start its extension chain with a header carrying our
 * option type (whatever the rest of it says)? */
static __always_inline int dsr6_first(void *data, void *data_end, __u32 l3_off)
{
	struct ipv6hdr *ip6 = data + l3_off;
	struct dsr6_hdr *h = (void *)(ip6 + 1);

	if (l3_off > ETH_HLEN + 4)
		return 0;
	if ((void *)&h->opt_len > data_end)
		return 0;
	return ip6->nexthdr == IPPROTO_DSTOPTS && h->opt_type == DSR6_OPT_TYPE;
}

/* ...with the second chance's 64-byte lengths (sc_option.h): node_sc6's
 * (node_second_chance6.h, a global function defined after this header). */
static __always_inline int dsr6_is_sc(void *data, void *data_end, __u32 l3_off)
{
	struct dsr6_hdr *h = data + l3_off + IPV6_HLEN;

	if (l3_off > ETH_HLEN + 4 || (void *)&h->opt_len + 1 > data_end)
		return 0;
	return h->hdrlen == SC6_HDR_EXT_LEN && h->opt_len == SC6_OPT_DATA_LEN;
}

int node_sc6(struct __sk_buff *skb, __u64 l3_off);
#define NODE_SC6_TUNNEL 0x100 /* node_sc6: an IP6IP6 packet for node_ip6ip6 */

/* A packet whose first extension header carries our option type; rc is
 * how its parse came out. */
static __always_inline enum node_verdict ingress_option6(struct __sk_buff *skb, __u32 l3_off,
							 struct pkt6 *p, int rc,
							 struct node_config *cfg)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct dsr6_hdr *h;
	struct pkt_addr6 vip;
	__u64 now = now_ns(cfg);
	enum node_step step;
	__be16 vport;
	__u8 inner_nh;

	if (data + ETH_HLEN > data_end || !edge_neighbour(data, now))
		return node_drop(NC_DROP_UNTRUSTED);
	if (l3_off > ETH_HLEN + 4)
		return node_drop(NC_DROP_MALFORMED);
	h = data + l3_off + IPV6_HLEN;
	if ((void *)(h + 1) > data_end)
		return node_drop(rc == PARSE_OK ? NC_DROP_BAD_OPTION : NC_DROP_MALFORMED);
	if (h->hdrlen != DSR6_HDR_EXT_LEN || h->opt_len != DSR6_OPT_DATA_LEN ||
	    h->pad_type != DSR6_PADN || h->pad_len != 0)
		return node_drop(NC_DROP_BAD_OPTION);
	/* The header is intact, what follows is not (truncated, a chain the
	 * walk gives up on), or a fragment, or a jumbogram / BIG TCP packet
	 * (payload length 0): the edge never sends one with the header. */
	if (rc != PARSE_OK || (p->frag & PKT6_FRAG_HDR) || p->payload_len < DSR6_HDR_LEN)
		return node_drop(NC_DROP_MALFORMED);
	inner_nh = h->nexthdr;
	vport = h->port;
	addr6_load(&vip, h->addr);

	if (parse_l4_v6(data, data_end, p) != PARSE_OK)
		return node_drop(NC_DROP_MALFORMED);
	if (p->l4_proto == IPPROTO_TCP || p->l4_proto == IPPROTO_UDP) {
		struct node_scratch6 *k = scratch6();
		__u8 syn = p->l4_proto == IPPROTO_TCP && (p->tcp_flags & PKT_TCP_SYN);

		if (!k)
			return node_drop(NC_DROP_REWRITE);
		/* Only a configured frontend may become a reply source, and
		 * only towards one of its pods here (as for IPv4). */
		if (cfg && (cfg->flags & NODE_CFG_VERIFY_VIP)) {
			struct node_svc6_value *sv;

			k->sk.vip = vip;
			k->sk.port = vport;
			k->sk.proto = p->l4_proto;
			k->sk.pad = 0;
			sv = bpf_map_lookup_elem(&node_services6, &k->sk);
			if (!sv)
				return node_drop(NC_DROP_UNKNOWN_VIP);
			if (!local_backend6(sv, &p->daddr, p->dport))
				return node_drop(NC_DROP_WRONG_BACKEND);
		}
		__builtin_memset(&k->rk, 0, sizeof(k->rk));
		k->rk.pod_ip = p->daddr;
		k->rk.client_ip = p->saddr;
		k->rk.pod_port = p->dport;
		k->rk.client_port = p->sport;
		k->rk.proto = p->l4_proto;
		switch (remember_flow6(cfg, &k->rk, &vip, vport, NODE_ORIGIN_OPTION, syn, now, &k->nv)) {
		case FLOW_CONFLICT:
			return node_drop(NC_DROP_VIP_CONFLICT);
		case FLOW_LIMITED:
			return node_drop(NC_DROP_INSERT_LIMIT);
		default:
			break;
		}
		if (p->l4_proto == IPPROTO_TCP && (p->tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST)))
			client_seen6(cfg, &k->rk, p->tcp_flags, now);
		node_count(NC_IN_OPT_FLOW);
	}

	step = strip_dsr6(skb, l3_off, inner_nh);
	if (step == STEP_UNTOUCHED)
		return node_pass(NC_IN_OPT_KEPT);
	if (step != STEP_DONE)
		return node_drop(NC_DROP_REWRITE);
	return node_pass(NC_IN_OPT_STRIPPED);
}

/* An IP6IP6 packet (outer fixed header at l3_off) comes from an edge: a
 * trusted neighbour sent it (at `now`, the packet's now_ns()), with an
 * outer source among the IPv6 edge sources. */
static __always_inline int ip6ip6_from_edge(struct __sk_buff *skb, __u32 l3_off, __u64 now)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct ipv6hdr *ip6 = data + l3_off;
	struct pkt_addr6 src;

	if (l3_off > ETH_HLEN + 4 || (void *)(ip6 + 1) > data_end || data + ETH_HLEN > data_end)
		return 0;
	addr6_load(&src, &ip6->saddr);
	return ipip_neighbour(data, now) && edge_source6(&src);
}

/* Is this IP6IP6 packet, whose outer packet carries an extension header
 * (a Fragment header too) as the edge's never does, one a stranger must not
 * send? Its inner packet (a later fragment has none, and never reassembles
 * without its first) is TCP/UDP to one of our frontends or a pinned flow, or
 * cannot be told: cut before its ports, or behind extension headers of its
 * own. The node passes such a packet on, and the kernel (reassembling it
 * first) decapsulates it on an ip6tnl device all the same: past the trust
 * boundary (ipip_fragment_ours, node_ingress.h, for IPv4). */
static __always_inline int ip6ip6_ext_ours(struct __sk_buff *skb, const struct pkt6 *p)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct node_scratch6 *k;
	struct ipv6hdr *in;
	__u32 off = p->l4_off;
	__be16 *ports;

	if (p->frag & PKT_FRAG_LATER)
		return 0;
	if (off > PARSE6_MAX_L4_OFF)
		return 1;
	in = data + off_bounded(off, 0x3ff);
	if ((void *)(in + 1) > data_end || off + IPV6_HLEN > p->ip_end)
		return 1;
	if (in->version != 6)
		return 0;
	if (in->nexthdr != IPPROTO_TCP && in->nexthdr != IPPROTO_UDP)
		return ipv6_ext_walked(in->nexthdr);
	ports = (void *)(in + 1);
	if ((void *)(ports + 2) > data_end || off + IPV6_HLEN + 4 > p->ip_end)
		return 1;
	k = scratch6();
	if (!k)
		return 1;
	addr6_load(&k->sk.vip, &in->daddr);
	k->sk.port = ports[1];
	k->sk.proto = in->nexthdr;
	k->sk.pad = 0;
	if (bpf_map_lookup_elem(&node_services6, &k->sk))
		return 1;
	__builtin_memset(&k->fk, 0, sizeof(k->fk));
	addr6_load(&k->fk.client_ip, &in->saddr);
	k->fk.vip = k->sk.vip;
	k->fk.client_port = ports[0];
	k->fk.vip_port = ports[1];
	k->fk.proto = in->nexthdr;
	return bpf_map_lookup_elem(&node_fwd6, &k->fk) != 0;
}

/* Is the inner packet of an IP6IP6 packet the node does not decapsulate
 * (`in`, parsed: a fragment — not a later one, which has no ports and never
 * reassembles without its first —, or inside a tunnel to another of the
 * node's addresses) one a stranger must not send? TCP/UDP to one of our
 * frontends or a pinned flow, or cut before its whole L4 header (RFC 1858's
 * tiny fragment). It passes, and the kernel decapsulates it (ip6tnl) and
 * reassembles the datagram to the VIP all the same. */
static __always_inline int ip6ip6_inner_ours(struct __sk_buff *skb, struct pkt6 *in)
{
	struct node_scratch6 *k;

	if (in->l4_proto != IPPROTO_TCP && in->l4_proto != IPPROTO_UDP)
		return 0;
	if (parse_l4_v6(skb_data(skb), skb_data_end(skb), in) != PARSE_OK)
		return 1;
	k = scratch6();
	if (!k)
		return 1;
	k->sk.vip = in->daddr;
	k->sk.port = in->dport;
	k->sk.proto = in->l4_proto;
	k->sk.pad = 0;
	if (bpf_map_lookup_elem(&node_services6, &k->sk))
		return 1;
	__builtin_memset(&k->fk, 0, sizeof(k->fk));
	k->fk.client_ip = in->saddr;
	k->fk.vip = in->daddr;
	k->fk.client_port = in->sport;
	k->fk.vip_port = in->dport;
	k->fk.proto = in->l4_proto;
	return bpf_map_lookup_elem(&node_fwd6, &k->fk) != 0;
}

/* Is a pin's pod no longer one of the frontend's pods here (pinned_pod_gone)? */
static __always_inline int pinned_pod6_gone(const struct node_fwd6_value *fv, const struct node_svc6_key *sk)
{
	struct node_svc6_value *sv = bpf_map_lookup_elem(&node_services6, sk);

	return !sv || !local_backend6(sv, &fv->pod_ip, fv->pod_port);
}

/* A SYN found an IP6IP6 flow's pin: released once that connection is over
 * or its pod is no longer one of the frontend's pods here (pin_released). */
static __always_inline int pin6_released(const struct node_config *cfg,
					 const struct node_fwd6_value *fv,
					 const struct node_svc6_key *sk, const struct pkt6 *in,
					 struct node_flow6_key *rk, __u64 now)
{
	rk->pod_ip = fv->pod_ip;
	rk->client_ip = in->saddr;
	rk->pod_port = fv->pod_port;
	rk->client_port = in->sport;
	rk->proto = in->l4_proto;
	return flow6_ended(cfg, rk, now) || pinned_pod6_gone(fv, sk);
}

/* A UDP flow's pin to a pod that is no longer one of the frontend's pods
 * here is released, asked when the pin is due for its refresh
 * (udp_pin_gone, node_ingress.h). */
static __always_inline int udp_pin6_gone(const struct node_fwd6_value *fv,
					 const struct node_svc6_key *sk, __u64 now)
{
	return sk->proto == IPPROTO_UDP && pin_due(fv->last_seen_ns, now) && pinned_pod6_gone(fv, sk);
}

/* With --node-ip naming an IPv6 address, IP6IP6 is ours only when its
 * outer destination is that address (as IPIP's is checked against the IPv4
 * one): a tunnel to another of the node's addresses is someone else's. */
static __always_inline int ip6ip6_to_other_address(const struct ipv6hdr *outer)
{
	__u32 zero = 0;
	struct node_config6 *c6 = bpf_map_lookup_elem(&node_config6, &zero);
	struct pkt_addr6 dst;

	if (!c6 || !(c6->flags & NODE_CFG6_CHECK_OUTER_DST))
		return 0;
	addr6_load(&dst, &outer->daddr);
	return !addr6_eq(&dst, &c6->node_ip6);
}

/* node_ingress6's answer for IP6IP6: node_ip6ip6 decides (not a verdict). */
#define NODE_V6_TUNNEL 2
/* node_ingress6's answer for a second-chance header: node_sc6 decides. */
#define NODE_V6_SC 4
/* node_ip6ip6's answer for an ICMPv6 inside: node_ip6ip6_icmp decides. */
#define NODE_V6_TUNNEL_ICMP 3

/* IP6IP6 whose outer fixed header (no extension headers: node_ingress6
 * checked) is at l3_off. A global function of its own: with both packets'
 * headers in one frame the stack would exceed BPF's 512 bytes. Returns an
 * enum node_verdict. */
__attribute__((noinline)) int node_ip6ip6(struct __sk_buff *skb, __u64 l3_off)
{
	struct node_config *cfg = get_config();
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct ipv6hdr *outer;

	l3_off = l3_bounded(l3_off);
	__u32 outer_end;
	struct node_fwd6_value *fv;
	struct node_scratch6 *k;
	struct pkt_addr6 pod_ip;
	struct pkt6 in = {};
	__be16 pod_port;
	__u32 in_off = l3_off + IPV6_HLEN;
	__u64 now;
	int new_flow = 0, other;
	__u8 syn;

	if (l3_off > ETH_HLEN + 4)
		goto not_ours;
	outer = data + l3_off;
	if ((void *)(outer + 1) > data_end || outer->nexthdr != IPPROTO_IPV6)
		goto not_ours;
	other = ip6ip6_to_other_address(outer);
	outer_end = bpf_ntohs(outer->payload_len);
	outer_end = outer_end ? l3_off + IPV6_HLEN + outer_end : skb->len; /* 0: jumbo */
	if (parse_skb6_at(skb, in_off, &in) != PARSE_OK)
		goto not_ours;
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	/* The inner packet must lie within the outer one. */
	if (in.ip_end > outer_end)
		goto not_ours;
	if (in.frag || other) {
		/* A fragment inside (not ours to reassemble), or a tunnel to
		 * another of the node's addresses (someone else's): passed
		 * untouched — but only an edge may send one to a frontend
		 * (ip6ip6_inner_ours). */
		if (!(in.frag & PKT_FRAG_LATER) && ip6ip6_inner_ours(skb, &in) &&
		    !ip6ip6_from_edge(skb, l3_off, now_ns(cfg)))
			return node_drop(NC_DROP_UNTRUSTED);
		goto not_ours;
	}
	if (in.l4_proto == IPPROTO_ICMPV6 && in.n_ext == 0)
		return NODE_V6_TUNNEL_ICMP;
	if (in.l4_proto != IPPROTO_TCP && in.l4_proto != IPPROTO_UDP)
		goto not_ours;
	if (parse_l4_v6(data, data_end, &in) != PARSE_OK)
		goto not_ours;
	k = scratch6();
	if (!k)
		goto not_ours;

	k->sk.vip = in.daddr;
	k->sk.port = in.dport;
	k->sk.proto = in.l4_proto;
	k->sk.pad = 0;
	__builtin_memset(&k->fk, 0, sizeof(k->fk));
	k->fk.client_ip = in.saddr;
	k->fk.vip = in.daddr;
	k->fk.client_port = in.sport;
	k->fk.vip_port = in.dport;
	k->fk.proto = in.l4_proto;
	__builtin_memset(&k->rk, 0, sizeof(k->rk));
	syn = in.l4_proto == IPPROTO_TCP && (in.tcp_flags & PKT_TCP_SYN);

	now = now_ns(cfg);
	fv = bpf_map_lookup_elem(&node_fwd6, &k->fk);
	if (fv && !ip6ip6_from_edge(skb, l3_off, now))
		return node_drop(NC_DROP_UNTRUSTED);
	if (fv && !is_expired(now, fv->last_seen_ns, flow_timeout(cfg, in.l4_proto, 0)) &&
	    !(syn && pin6_released(cfg, fv, &k->sk, &in, &k->rk, now)) &&
	    !udp_pin6_gone(fv, &k->sk, now)) {
		pod_ip = fv->pod_ip;
		pod_port = fv->pod_port;
		touch(&fv->last_seen_ns, now);
	} else {
		struct node_svc6_value *sv = bpf_map_lookup_elem(&node_services6, &k->sk);
		__u32 n, idx;

		if (!sv)
			goto not_ours;
		if (!fv && !ip6ip6_from_edge(skb, l3_off, now))
			return node_drop(NC_DROP_UNTRUSTED);
		n = sv->pick && sv->pick < sv->count ? sv->pick : sv->count;
		if (n == 0 || n > NODE_MAX_LOCAL_BACKENDS)
			return node_drop(NC_DROP_NO_BACKEND);
		idx = node_tuple_hash6(&in.saddr, &in.daddr, in.sport, in.dport, in.l4_proto) % n;
		asm volatile("" : "+r"(idx));
		idx &= NODE_MAX_LOCAL_BACKENDS - 1;
		pod_ip = sv->be[idx].ip;
		pod_port = sv->be[idx].port;
		new_flow = 1;
	}

	k->rk.pod_ip = pod_ip;
	k->rk.client_ip = in.saddr;
	k->rk.pod_port = pod_port;
	k->rk.client_port = in.sport;
	k->rk.proto = in.l4_proto;
	switch (remember_flow6(cfg, &k->rk, &in.daddr, in.dport, NODE_ORIGIN_IPIP, syn, now, &k->nv)) {
	case FLOW_CONFLICT:
		return node_drop(NC_DROP_VIP_CONFLICT);
	case FLOW_LIMITED:
		return node_drop(NC_DROP_INSERT_LIMIT);
	default:
		break;
	}
	if (new_flow) {
		__builtin_memset(&k->nfv, 0, sizeof(k->nfv));
		k->nfv.pod_ip = pod_ip;
		k->nfv.pod_port = pod_port;
		k->nfv.last_seen_ns = now;
		bpf_map_update_elem(&node_fwd6, &k->fk, &k->nfv, BPF_ANY);
	}
	if (in.l4_proto == IPPROTO_TCP && (in.tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST)))
		client_seen6(cfg, &k->rk, in.tcp_flags, now);

	/* Decapsulate: remove the outer fixed header between L2 and the inner
	 * one (both IPv6: skb->protocol stands), then DNAT VIP:vp → pod:pp. */
	{
		__u32 l4_rel = in.l4_off - in.l3_off;
		__u8 proto = in.l4_proto;

		if (bpf_skb_adjust_room(skb, -(__s32)IPV6_HLEN, BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_FIXED_GSO))
			return node_drop(NC_DROP_DECAP);
		if (l3_off > ETH_HLEN + 4 || l4_rel > PARSE6_MAX_L4_OFF)
			return node_drop(NC_DROP_DECAP);
		if (rewrite6_l3l4(skb, l3_off, l3_off + l4_rel, proto, REWRITE_DST, &pod_ip,
				  pod_port, 1) != STEP_DONE)
			return node_drop(NC_DROP_REWRITE);
	}
	if (new_flow)
		node_count(NC_IN_IPIP_NEW_FLOW);
	return node_pass(NC_IN_IPIP_DNAT);

not_ours:
	return node_pass(NC_IN_IPIP_NOT_OURS);
}

/* An ICMPv6 error inside IP6IP6 (whose outer header node_ip6ip6 checked:
 * no extension header, the inner packet within the outer one, the node
 * address), about one of our flows: a router on the client's path could not
 * take a reply, whose source is the VIP, so the error went to the VIP and
 * the edge forwarded it here like the flow's packets (quoting VIP:vp →
 * client:cp). Delivered as the pod's stack expects — destination and
 * quoted source become pod:pp — so path-MTU discovery works through DSR
 * (ingress_ipip_icmp's rules for IPv4: the pod from the flow's pin; a quote
 * that already names one of our pods' flows is only decapsulated). A global
 * function of its own, called after node_ip6ip6 returned: its headers and
 * the quote's would not fit that function's frame. Returns an enum
 * node_verdict. */
__attribute__((noinline)) int node_ip6ip6_icmp(struct __sk_buff *skb, __u64 l3_off)
{
	struct node_fwd6_value *fv;
	struct pkt_addr6 pod_ip, vip;
	struct pkt6_inner q;
	struct pkt6 in = {};
	__be16 pod_port, vport;
	__u32 outer_end;
	void *data, *data_end;
	struct ipv6hdr *outer;

	l3_off = l3_bounded(l3_off);
	if (l3_off > ETH_HLEN + 4)
		goto not_ours;
	if (parse_skb6_at(skb, l3_off + IPV6_HLEN, &in) != PARSE_OK)
		goto not_ours;
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	outer = data + l3_off;
	if ((void *)(outer + 1) > data_end)
		goto not_ours;
	outer_end = bpf_ntohs(outer->payload_len);
	outer_end = outer_end ? l3_off + IPV6_HLEN + outer_end : skb->len;
	if (in.ip_end > outer_end || in.frag || in.n_ext != 0 || in.l4_proto != IPPROTO_ICMPV6)
		goto not_ours;
	if (parse_l4_v6(data, data_end, &in) != PARSE_OK || in.icmp_type == 0 ||
	    !icmp6_is_error(in.icmp_type))
		goto not_ours;
	/* The quoted fixed header and 8 upper-layer bytes lie within the error. */
	if (in.ip_end < (__u32)in.l4_off + sizeof(struct pkt_icmp6hdr) + IPV6_HLEN + 8)
		goto not_ours;
	if (parse_icmp6_inner(data, data_end, &in, &q) != PARSE_OK)
		goto not_ours;
	if ((q.l4_proto != IPPROTO_TCP && q.l4_proto != IPPROTO_UDP) || q.payload_len < 8 ||
	    !addr6_eq(&q.saddr, &in.daddr) || (q.sport == 0 && q.dport == 0))
		goto not_ours;

	struct node_scratch6 *k = scratch6();

	if (!k)
		goto not_ours;
	__builtin_memset(&k->fk, 0, sizeof(k->fk));
	k->fk.client_ip = q.daddr;
	k->fk.vip = q.saddr;
	k->fk.client_port = q.dport;
	k->fk.vip_port = q.sport;
	k->fk.proto = q.l4_proto;
	vip = q.saddr;
	vport = q.sport;
	fv = bpf_map_lookup_elem(&node_fwd6, &k->fk);
	if (fv) {
		pod_ip = fv->pod_ip;
		pod_port = fv->pod_port;
	} else {
		__builtin_memset(&k->rk, 0, sizeof(k->rk));
		k->rk.pod_ip = q.saddr;
		k->rk.client_ip = q.daddr;
		k->rk.pod_port = q.sport;
		k->rk.client_port = q.dport;
		k->rk.proto = q.l4_proto;
		if (!bpf_map_lookup_elem(&node_flows6, &k->rk))
			goto not_ours;
		pod_ip = vip;
		pod_port = vport;
	}

	if (!ip6ip6_from_edge(skb, l3_off, now_ns(get_config())))
		return node_drop(NC_DROP_UNTRUSTED);
	if (bpf_skb_adjust_room(skb, -(__s32)IPV6_HLEN, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
		return node_drop(NC_DROP_DECAP);
	if (!(addr6_eq(&pod_ip, &vip) && pod_port == vport) &&
	    readdress_icmp6_error(skb_data(skb), skb_data_end(skb), l3_off, REWRITE_DST, &vip,
				  &pod_ip, vport, pod_port) != STEP_DONE)
		return node_drop(NC_DROP_REWRITE);
	return node_pass(NC_IN_IPIP_ICMP);

not_ours:
	return node_pass(NC_IN_IPIP_NOT_OURS);
}

/* Ingress for an IPv6 frame whose fixed header is at l3_off (tagged: behind
 * a VLAN tag). A BPF global function: verified once, on its own, so the
 * IPv4 path's states and the IPv6 path's do not multiply (and the IPv4
 * path's code is the same as before it). Returns an enum node_verdict. */
__attribute__((noinline)) int node_ingress6(struct __sk_buff *skb, __u64 l3_off, __u64 tagged)
{
	void *data, *data_end;
	struct pkt6 p = {};
	int rc;

	l3_off = l3_bounded(l3_off);
	rc = parse_skb6(skb, l3_off, &p);

	data = skb_data(skb);
	data_end = skb_data_end(skb);
	if (dsr6_first(data, data_end, l3_off)) {
		if (dsr6_is_sc(data, data_end, l3_off))
			return NODE_V6_SC;
		return ingress_option6(skb, l3_off, &p, rc, get_config());
	}
	if (rc != PARSE_OK)
		return node_pass(NC_IN_PASS);
	/* Our option type elsewhere in the first Destination Options header:
	 * not where the edge puts it. */
	if (p.dstopt_off && node_find_opt6(skb, p.dstopt_off, DSR6_OPT_TYPE) > 0) {
		if (data + ETH_HLEN > data_end || !edge_neighbour(data, now_ns(get_config())))
			return node_drop(NC_DROP_UNTRUSTED);
		return node_drop(NC_DROP_BAD_OPTION);
	}
	/* The edge's outer header carries no extension header. */
	if (p.l4_proto == IPPROTO_IPV6 && p.n_ext == 0)
		return NODE_V6_TUNNEL;
	/* IP6IP6 in any other shape is not the edge's: it passes, but not a
	 * stranger's to a frontend (ip6ip6_ext_ours). */
	if (p.l4_proto == IPPROTO_IPV6 && ip6ip6_ext_ours(skb, &p) &&
	    !ip6ip6_from_edge(skb, l3_off, now_ns(get_config())))
		return node_drop(NC_DROP_UNTRUSTED);
	if (p.l4_proto == IPPROTO_ICMPV6) {
		learn_edge_neighbour6(skb, tagged, &p);
	} else if (p.l4_proto == IPPROTO_TCP && !(p.frag & PKT_FRAG_LATER) &&
		   parse_l4_v6(data, data_end, &p) == PARSE_OK &&
		   (p.tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST))) {
		/* A client FIN/RST without our option: the end of a flow we may know. */
		struct node_scratch6 *k = scratch6();
		struct node_config *cfg = get_config();

		if (k) {
			__builtin_memset(&k->rk, 0, sizeof(k->rk));
			k->rk.pod_ip = p.daddr;
			k->rk.client_ip = p.saddr;
			k->rk.pod_port = p.dport;
			k->rk.client_port = p.sport;
			k->rk.proto = IPPROTO_TCP;
			client_seen6_bare(cfg, &k->rk, p.tcp_flags, now_ns(cfg));
		}
	}
	return node_pass(NC_IN_PASS);
}

/* A tc action. */
static __always_inline int node_ingress_v6(struct __sk_buff *skb, const struct pkt *l2)
{
	int v = node_ingress6(skb, l2->l3_off, l2->has_vlan);

	if (v == NODE_V6_SC) {
		/* A hand-over is a redirect: node_sc6 answers with tc actions. */
		v = node_sc6(skb, l2->l3_off);
		if (v != NODE_SC6_TUNNEL)
			return v;
		v = NODE_V6_TUNNEL;
	}
	if (v == NODE_V6_TUNNEL)
		v = node_ip6ip6(skb, l2->l3_off);
	if (v == NODE_V6_TUNNEL_ICMP)
		v = node_ip6ip6_icmp(skb, l2->l3_off);
	return node_tc(v == NODE_DROP ? NODE_DROP : NODE_PASS);
}

#endif
