/* Node program, ingress: what the edges send to this node's pods.
 *
 *  - ip-option dispatch: the edge already rewrote the destination to the pod
 *    and put the VIP:port in an 8-byte option (dsr_option.h) on TCP SYNs
 *    and every UDP packet. We remember
 *      reply tuple (pod:pp → client:cp, proto) → VIP:vp
 *    in node_flows, then STRIP the option (IHL back, total length and header
 *    checksum fixed) so the pod's stack sees the original packet: no unknown
 *    option reaches netfilter, the pod's socket options or a non-Linux stack,
 *    and nothing about the pod's path MTU changes. The L4 checksum does not
 *    cover IP options, so it stays valid. If stripping is impossible (a VLAN
 *    tag in the packet data, or turned off in node_config) the packet goes
 *    on with the option, which Linux ignores on receive.
 *  - ipip dispatch: the edge sent the untouched client → VIP:vp packet inside
 *    IPv4-in-IPv4 to this node. The edge's Maglev chose the NODE; this node
 *    chooses the pod among its own backends for VIP:vp (node_services, a
 *    deterministic hash of the 5-tuple), pins the choice in node_fwd so the
 *    flow stays on its pod when the local set changes (a UDP flow only while
 *    that pod is still listed here: udp_pin_gone), records the reply
 *    tuple in node_flows, decapsulates and DNATs VIP:vp → pod:pp.
 *    IPIP whose inner destination is no local service is left untouched
 *    (it may belong to the CNI, e.g. Calico's IPIP mode), as is a
 *    fragmented one or one to another of the node's addresses — but not
 *    a stranger's to a frontend (ipip_untouched_ours). An ICMP
 *    destination-unreachable about one of our flows (path MTU) is
 *    decapsulated and re-addressed to the flow's pod.
 *  - A client FIN/RST on a known flow marks it (node_flow.h); a bare one
 *    (no option, no tunnel) only an ip-option flow's (client_seen_bare).
 *  Everything else: one parse and NODE_PASS. */
#ifndef EDGELB_NODE_INGRESS_H
#define EDGELB_NODE_INGRESS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"
#include "csum.h"
#include "dsr_option.h"
#include "node_maps.h"
#include "node_counters.h"
#include "node_verdict.h"
#include "node_parse.h"
#include "node_flow.h"
#include "node_hash.h"
#include "node_rewrite.h"
#include "node_trust.h"

/* Is ip:port one of the frontend's pods on this node? */
static __always_inline int local_backend(const struct node_svc_value *sv, __be32 ip, __be16 port)
{
	__u32 n = sv->count;

	for (__u32 i = 0; i < NODE_MAX_LOCAL_BACKENDS; i++) {
		if (i >= n)
			break;
		if (sv->be[i].ip == ip && sv->be[i].port == port)
			return 1;
	}
	return 0;
}

static __always_inline enum node_verdict ingress_option(struct __sk_buff *skb, struct pkt *p,
							struct node_config *cfg)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct dsr_opt *opt = (void *)(p->ip + 1);
	__u64 now = now_ns(cfg);
	enum node_step step;
	__u32 opt_sum;
	__be32 vip;
	__be16 vport;

	if (data + ETH_HLEN > data_end || !edge_neighbour(data, now))
		return node_drop(NC_DROP_UNTRUSTED);
	if ((void *)(opt + 1) > data_end || p->ihl_bytes < 20 + DSR_OPT_LEN ||
	    opt->len != DSR_OPT_LEN)
		return node_drop(NC_DROP_BAD_OPTION);
	vip = opt->addr;
	vport = opt->port;
	/* One's-complement sum of the option's four 16-bit words. */
	opt_sum = csum_fold_nocpl(csum_word32(((__u32 *)opt)[0]) + csum_word32(((__u32 *)opt)[1]));

	if (parse_l4(data, data_end, p) != PARSE_OK)
		return node_drop(NC_DROP_MALFORMED);
	if (p->frag & PKT_FRAG_LATER) {
		node_count(NC_IN_OPT_FRAGMENT);
	} else if (p->l4_proto == IPPROTO_TCP || p->l4_proto == IPPROTO_UDP) {
		/* Only a configured frontend may become a reply source: an
		 * option naming anything else (stale, or forged by someone on
		 * the fabric) would make the pod answer from an arbitrary
		 * address. */
		if (cfg && (cfg->flags & NODE_CFG_VERIFY_VIP)) {
			struct node_svc_key sk = {
				.vip = vip,
				.port = vport,
				.proto = p->l4_proto,
			};
			struct node_svc_value *sv = bpf_map_lookup_elem(&node_services, &sk);

			if (!sv)
				return node_drop(NC_DROP_UNKNOWN_VIP);
			/* ... and only towards one of its pods here: an option
			 * aimed at any other address (another pod, the node, a
			 * host port) is a forgery or a mistake. */
			if (!local_backend(sv, p->daddr, p->dport))
				return node_drop(NC_DROP_WRONG_BACKEND);
		}
		struct node_flow_key k = {
			.pod_ip = p->daddr,
			.client_ip = p->saddr,
			.pod_port = p->dport,
			.client_port = p->sport,
			.proto = p->l4_proto,
		};
		__u8 syn = p->l4_proto == IPPROTO_TCP && (p->tcp_flags & PKT_TCP_SYN);

		switch (remember_flow(cfg, &k, vip, vport, NODE_ORIGIN_OPTION, syn, now)) {
		case FLOW_CONFLICT:
			return node_drop(NC_DROP_VIP_CONFLICT);
		case FLOW_LIMITED:
			return node_drop(NC_DROP_INSERT_LIMIT);
		default:
			break;
		}
		if (p->l4_proto == IPPROTO_TCP && (p->tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST)))
			client_seen(cfg, &k, p->tcp_flags, now);
		node_count(NC_IN_OPT_FLOW);
	}

	if (!cfg || !(cfg->flags & NODE_CFG_STRIP_OPTION))
		return node_pass(NC_IN_OPT_KEPT);
	step = strip_option(skb, p->l3_off, p->ihl_bytes / 4, p->ip_len, opt_sum);
	if (step == STEP_UNTOUCHED)
		return node_pass(NC_IN_OPT_KEPT);
	if (step != STEP_DONE)
		return node_drop(NC_DROP_REWRITE);
	return node_pass(NC_IN_OPT_STRIPPED);
}

/* An IPIP packet comes from an edge: a trusted neighbour sent it (at
 * `now`, the packet's now_ns()), with an outer source among the edge
 * sources. Asked only once the packet turned out to be ours, so the CNI's
 * own tunnels pay nothing. */
static __always_inline int ipip_from_edge(struct __sk_buff *skb, const struct pkt *outer, __u64 now)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);

	if (data + ETH_HLEN > data_end)
		return 0;
	return ipip_neighbour(data, now) && edge_source(outer->saddr);
}

/* An ICMP destination-unreachable inside ipip, about one of our flows (a
 * router on the client's path could not take a reply, whose source is the
 * VIP, so the error went to the VIP and the edge forwarded it here like the
 * flow's packets: inner packet untouched, quoting VIP:vp → client:cp).
 * Deliver it as the pod's stack expects — destination and quoted source
 * become pod:pp — so path-MTU discovery works through DSR. A quote that
 * already names one of our pods' flows is only decapsulated. */
static __always_inline enum node_step ingress_ipip_icmp(struct __sk_buff *skb,
							const struct pkt *outer, struct pkt *in,
							const struct node_config *cfg)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct node_fwd_value *fv;
	struct pkt_inner q;
	__be16 pod_port, vport;
	__be32 pod_ip, vip;
	__u32 l3_off = outer->l3_off;

	if (in->ihl_bytes != 20 || parse_l4(data, data_end, in) != PARSE_OK ||
	    in->icmp_type != ICMP_DEST_UNREACH)
		return STEP_NOT_OURS;
	/* The quoted header and the 8 L4 bytes RFC 792 guarantees must lie
	 * within the inner packet (parse_icmp_inner only checks the window). */
	if (in->ip_len < 20 + sizeof(struct pkt_icmphdr) + 20 + 8)
		return STEP_NOT_OURS;
	if (parse_icmp_inner(data, data_end, in, &q) != PARSE_OK)
		return STEP_NOT_OURS;
	if (q.ihl_bytes != 20 || (q.l4_proto != IPPROTO_TCP && q.l4_proto != IPPROTO_UDP) ||
	    q.saddr != in->daddr || (q.sport == 0 && q.dport == 0))
		return STEP_NOT_OURS;
	/* A quoted TCP/UDP packet shorter than its own headers was never sent. */
	if (bpf_ntohs(q.ip->tot_len) < 20 + 8)
		return STEP_NOT_OURS;

	struct node_fwd_key fk = {
		.client_ip = q.daddr,
		.vip = q.saddr,
		.client_port = q.dport,
		.vip_port = q.sport,
		.proto = q.l4_proto,
	};
	vip = q.saddr;
	vport = q.sport;
	fv = bpf_map_lookup_elem(&node_fwd, &fk);
	if (fv) {
		pod_ip = fv->pod_ip;
		pod_port = fv->pod_port;
	} else {
		struct node_flow_key rk = {
			.pod_ip = q.saddr,
			.client_ip = q.daddr,
			.pod_port = q.sport,
			.client_port = q.dport,
			.proto = q.l4_proto,
		};

		if (!bpf_map_lookup_elem(&node_flows, &rk))
			return STEP_NOT_OURS;
		pod_ip = vip;
		pod_port = vport;
	}

	if (!ipip_from_edge(skb, outer, now_ns(cfg)))
		return STEP_UNTRUSTED;
	if (bpf_skb_adjust_room(skb, -(__s32)outer->ihl_bytes, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO))
		return STEP_DECAP_FAILED;
	if (pod_ip == vip && pod_port == vport)
		return STEP_DONE;
	if (readdress_icmp_error(skb_data(skb), skb_data_end(skb), l3_off, REWRITE_DST, vip, pod_ip,
				 vport, pod_port) != STEP_DONE)
		return STEP_REWRITE_FAILED;
	return STEP_DONE;
}

/* Is a pin's pod no longer one of the frontend's pods here (deleted; a
 * terminating pod is still listed)? */
static __always_inline int pinned_pod_gone(const struct node_fwd_value *fv, const struct node_svc_key *sk)
{
	struct node_svc_value *sv = bpf_map_lookup_elem(&node_services, sk);

	return !sv || !local_backend(sv, fv->pod_ip, fv->pod_port);
}

/* A SYN found an ipip flow's forward pin: it keeps the pinned pod while
 * that connection lives (a SYN with a live tuple never re-routes it). The
 * pin is released — the SYN picks a pod afresh — once the connection is
 * over, or when the pod is no longer one of the frontend's pods here (a
 * client reusing its port after a rolling update must reach a pod). */
static __always_inline int pin_released(const struct node_config *cfg, const struct node_fwd_value *fv,
					const struct node_svc_key *sk, const struct pkt *in, __u64 now)
{
	struct node_flow_key rk = {
		.pod_ip = fv->pod_ip,
		.client_ip = in->saddr,
		.pod_port = fv->pod_port,
		.client_port = in->sport,
		.proto = in->l4_proto,
	};

	return flow_ended(cfg, &rk, now) || pinned_pod_gone(fv, sk);
}

/* A UDP flow's pin to a pod that is no longer one of the frontend's pods
 * here (deleted: a terminating pod is still listed) is released. UDP has no
 * SYN to start over with (pin_released), so a client that kept sending was
 * sent to the gone pod's address — a black hole, or whichever pod got the
 * address next — for as long as it talked. Asked when the pin is due for its
 * refresh (at most once per REFRESH_NS per flow), not for every datagram.
 * TCP keeps its pins: its connections drain, and a SYN starts over. */
static __always_inline int udp_pin_gone(const struct node_fwd_value *fv,
					const struct node_svc_key *sk, __u64 now)
{
	return sk->proto == IPPROTO_UDP && pin_due(fv->last_seen_ns, now) && pinned_pod_gone(fv, sk);
}

/* Is this IPIP packet, which the node does not decapsulate (fragmented:
 * not a datagram it sees whole; or addressed to another of the node's
 * addresses), one a stranger must not send? Its inner packet is TCP/UDP to
 * one of our frontends (or a flow pinned here), or is cut before the inner
 * ports so that nobody can tell (RFC 1858's tiny fragment: no sender makes
 * one). Passed on, the kernel reassembles it, and a CNI's tunnel device
 * (tunl0 takes IPIP from anyone, to any local address) hands the inner
 * packet to the VIP on, past the trust boundary. A later fragment has no
 * inner header; without its first it never reassembles. */
static __always_inline int ipip_untouched_ours(struct __sk_buff *skb, const struct pkt *outer)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	__u32 off = outer->l4_off, end = (__u32)outer->l3_off + outer->ip_len, ihl;
	struct iphdr *in;
	__be16 *ports;

	if (outer->frag & PKT_FRAG_LATER)
		return 0;
	if (off > 14 + 4 + 60)
		return 1;
	in = data + off;
	if ((void *)(in + 1) > data_end || off + sizeof(*in) > end)
		return 1;
	if (in->version != 4 || (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP) ||
	    (in->frag_off & bpf_htons(IP_OFFSET)))
		return 0;
	ihl = (__u32)in->ihl * 4;
	if (ihl < sizeof(*in))
		return 0;
	ports = data + off + ihl;
	if ((void *)(ports + 2) > data_end || off + ihl + 4 > end)
		return 1;
	{
		struct node_svc_key sk = { .vip = in->daddr, .port = ports[1], .proto = in->protocol };
		struct node_fwd_key fk = {
			.client_ip = in->saddr,
			.vip = in->daddr,
			.client_port = ports[0],
			.vip_port = ports[1],
			.proto = in->protocol,
		};

		return bpf_map_lookup_elem(&node_services, &sk) || bpf_map_lookup_elem(&node_fwd, &fk);
	}
}

/* `now`: the packet's now_ns() when the caller read it already (the second
 * chance), else 0 — read here once the packet turns out to be TCP/UDP. */
static __always_inline enum node_verdict ingress_ipip(struct __sk_buff *skb, struct pkt *outer,
						      struct node_config *cfg, __u64 now)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct node_fwd_value *fv;
	struct node_flow_key rk = {};
	struct pkt in;
	__be32 pod_ip;
	__be16 pod_port;
	int new_flow = 0;
	__u8 syn;

	if (outer->frag ||
	    (cfg && (cfg->flags & NODE_CFG_CHECK_OUTER_DST) && outer->daddr != cfg->node_ip)) {
		/* A fragmented tunnel packet (not ours to reassemble), or one
		 * to another of the node's addresses (someone else's): passed
		 * untouched — but only an edge may send one to a frontend
		 * (ipip_untouched_ours). */
		if (ipip_untouched_ours(skb, outer) && !ipip_from_edge(skb, outer, now ? now : now_ns(cfg)))
			return node_drop(NC_DROP_UNTRUSTED);
		goto not_ours;
	}

	in.l3_off = outer->l4_off;
	if (in.l3_off > 14 + 4 + 60)
		goto not_ours;
	if (parse_ipv4_len(data, data_end, &in, skb->len) != PARSE_OK)
		goto not_ours;
	/* The inner packet must lie within the outer one, not in the
	 * frame's trailing bytes. */
	if (in.ip_len > outer->ip_len - outer->ihl_bytes)
		goto not_ours;
	if (in.frag & PKT_FRAG_LATER)
		goto not_ours;
	if (in.l4_proto == IPPROTO_ICMP) {
		switch (ingress_ipip_icmp(skb, outer, &in, cfg)) {
		case STEP_DONE:
			return node_pass(NC_IN_IPIP_ICMP);
		case STEP_DECAP_FAILED:
			return node_drop(NC_DROP_DECAP);
		case STEP_UNTRUSTED:
			return node_drop(NC_DROP_UNTRUSTED);
		case STEP_NOT_OURS:
			goto not_ours;
		default:
			return node_drop(NC_DROP_REWRITE);
		}
	}
	if (in.l4_proto != IPPROTO_TCP && in.l4_proto != IPPROTO_UDP)
		goto not_ours;

	struct node_svc_key sk = {
		.vip = in.daddr,
		.proto = in.l4_proto,
	};
	struct node_fwd_key fk = {
		.client_ip = in.saddr,
		.vip = in.daddr,
		.proto = in.l4_proto,
	};
	if (parse_l4(data, data_end, &in) != PARSE_OK) {
		/* The inner L4 header is cut short: whole, the kernel drops
		 * it, and it passes untouched. The first fragment of a
		 * datagram (RFC 1858's tiny fragment: no sender makes one) it
		 * reassembles, and tunl0 delivers it — only an edge may send
		 * that, wherever it goes (its port may be unreadable). */
		if ((in.frag & PKT_FRAG_MORE) && !ipip_from_edge(skb, outer, now ? now : now_ns(cfg)))
			return node_drop(NC_DROP_UNTRUSTED);
		goto not_ours;
	}
	sk.port = in.dport;
	fk.client_port = in.sport;
	fk.vip_port = in.dport;
	syn = in.l4_proto == IPPROTO_TCP && (in.tcp_flags & PKT_TCP_SYN);

	if (!now)
		now = now_ns(cfg);
	fv = bpf_map_lookup_elem(&node_fwd, &fk);
	if (fv && !ipip_from_edge(skb, outer, now))
		return node_drop(NC_DROP_UNTRUSTED);
	if (fv && !is_expired(now, fv->last_seen_ns, flow_timeout(cfg, in.l4_proto, 0)) &&
	    !(syn && pin_released(cfg, fv, &sk, &in, now)) && !udp_pin_gone(fv, &sk, now)) {
		pod_ip = fv->pod_ip;
		pod_port = fv->pod_port;
		touch(&fv->last_seen_ns, now);
	} else {
		struct node_svc_value *sv = bpf_map_lookup_elem(&node_services, &sk);
		__u32 n, idx;

		if (!sv)
			goto not_ours;
		if (!fv && !ipip_from_edge(skb, outer, now))
			return node_drop(NC_DROP_UNTRUSTED);
		n = sv->pick && sv->pick < sv->count ? sv->pick : sv->count;
		if (n == 0 || n > NODE_MAX_LOCAL_BACKENDS)
			return node_drop(NC_DROP_NO_BACKEND);
		idx = node_tuple_hash(in.saddr, in.daddr, in.sport, in.dport, in.l4_proto) % n;
		/* Keep clang from dropping the mask the verifier needs. */
		asm volatile("" : "+r"(idx));
		idx &= NODE_MAX_LOCAL_BACKENDS - 1;
		pod_ip = sv->be[idx].ip;
		pod_port = sv->be[idx].port;
		new_flow = 1;
	}

	rk.pod_ip = pod_ip;
	rk.client_ip = in.saddr;
	rk.pod_port = pod_port;
	rk.client_port = in.sport;
	rk.proto = in.l4_proto;
	switch (remember_flow(cfg, &rk, in.daddr, in.dport, NODE_ORIGIN_IPIP, syn, now)) {
	case FLOW_CONFLICT:
		return node_drop(NC_DROP_VIP_CONFLICT);
	case FLOW_LIMITED:
		return node_drop(NC_DROP_INSERT_LIMIT);
	default:
		break;
	}
	if (new_flow) {
		struct node_fwd_value nfv = {
			.pod_ip = pod_ip,
			.pod_port = pod_port,
			.last_seen_ns = now,
		};

		bpf_map_update_elem(&node_fwd, &fk, &nfv, BPF_ANY);
	}
	if (in.l4_proto == IPPROTO_TCP && (in.tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST)))
		client_seen(cfg, &rk, in.tcp_flags, now);

	/* Decapsulate: remove the outer IPv4 header between L2 and the inner
	 * header. Inner and outer are both IPv4, so skb->protocol stands. */
	{
		__u32 l3_off = outer->l3_off;
		__u32 inner_ihl = in.ihl_bytes;
		__u8 proto = in.l4_proto;

		if (bpf_skb_adjust_room(skb, -(__s32)outer->ihl_bytes, BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_FIXED_GSO))
			return node_drop(NC_DROP_DECAP);
		if (l3_off > 18 || inner_ihl > 60)
			return node_drop(NC_DROP_DECAP);
		if (rewrite_l3l4(skb, l3_off, l3_off + inner_ihl, proto, REWRITE_DST, pod_ip,
				 pod_port) != STEP_DONE)
			return node_drop(NC_DROP_REWRITE);
	}
	if (new_flow)
		node_count(NC_IN_IPIP_NEW_FLOW);
	return node_pass(NC_IN_IPIP_DNAT);

not_ours:
	return node_pass(NC_IN_IPIP_NOT_OURS);
}

/* A client FIN/RST without our option: the end of a flow we may know. */
static __always_inline void ingress_plain_tcp(struct __sk_buff *skb, struct pkt *p)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);

	if (parse_l4(data, data_end, p) != PARSE_OK || !(p->tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST)))
		return;
	struct node_flow_key k = {
		.pod_ip = p->daddr,
		.client_ip = p->saddr,
		.pod_port = p->dport,
		.client_port = p->sport,
		.proto = IPPROTO_TCP,
	};

	struct node_config *cfg = get_config();

	client_seen_bare(cfg, &k, p->tcp_flags, now_ns(cfg));
}

/* Ingress for a frame that is not IPv4: ARP may teach us an edge. */
static __always_inline enum node_verdict node_ingress_other(struct __sk_buff *skb, const struct pkt *p)
{
	if (p->l3_proto == bpf_htons(ETH_P_ARP))
		learn_edge_neighbour(skb, p);
	return node_pass(NC_IN_PASS);
}

/* Ingress for a parsed IPv4 packet. */
static __always_inline enum node_verdict node_ingress_v4(struct __sk_buff *skb, struct pkt *p)
{
	void *data_end = skb_data_end(skb);

	if (p->ihl_bytes > 20) {
		__u8 *otype = (void *)(p->ip + 1);

		/* ihl_bytes > 20 and the header is within the window, so
		 * the first option byte is readable; checked for the verifier. */
		if ((void *)(otype + 1) <= data_end && *otype == DSR_OPT_TYPE)
			return ingress_option(skb, p, get_config());
	}
	if (p->l4_proto == IPPROTO_IPIP)
		return ingress_ipip(skb, p, get_config(), 0);
	if (p->l4_proto == IPPROTO_TCP && !(p->frag & PKT_FRAG_LATER))
		ingress_plain_tcp(skb, p);
	return node_pass(NC_IN_PASS);
}

#endif
