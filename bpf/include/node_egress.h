/* Node program, egress: a pod's reply matching node_flows leaves with
 * source VIP:vp, IP and L4 checksums fixed, and is routed by the node
 * straight to the client. A pod's ICMP destination-unreachable about such a
 * flow is sent as the VIP's (source and quote rewritten), and so are the
 * later fragments of a fragmented reply (node_frags). L4 checksums are
 * updated through bpf_l4_csum_replace so that CHECKSUM_PARTIAL (offloaded)
 * and CHECKSUM_COMPLETE skbs stay right. */
#ifndef EDGELB_NODE_EGRESS_H
#define EDGELB_NODE_EGRESS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"
#include "node_maps.h"
#include "node_counters.h"
#include "node_verdict.h"
#include "node_parse.h"
#include "node_flow.h"
#include "node_rewrite.h"

/* A pod's ICMP destination-unreachable about a client flow of ours (say,
 * UDP port unreachable): it quotes client:cp → pod:pp and comes from the
 * pod's address, which the client never talked to and the fabric may filter
 * as spoofed. Send it as the VIP's: outer source and quoted destination
 * become VIP:vp (the kernel computes ICMP checksums in software, so no
 * offload state applies). */
static __always_inline enum node_step egress_icmp(struct __sk_buff *skb, struct pkt *p,
						  struct node_config *cfg)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct node_flow_value *v;
	struct pkt_inner q;

	if (p->ihl_bytes != 20 || parse_l4(data, data_end, p) != PARSE_OK ||
	    p->icmp_type != ICMP_DEST_UNREACH)
		return STEP_NOT_OURS;
	if (p->ip_len < 20 + sizeof(struct pkt_icmphdr) + 20 + 8)
		return STEP_NOT_OURS;
	if (parse_icmp_inner(data, data_end, p, &q) != PARSE_OK)
		return STEP_NOT_OURS;
	if (q.ihl_bytes != 20 || (q.l4_proto != IPPROTO_TCP && q.l4_proto != IPPROTO_UDP) ||
	    q.daddr != p->saddr || q.saddr != p->daddr || bpf_ntohs(q.ip->tot_len) < 20 + 8)
		return STEP_NOT_OURS;

	struct node_flow_key k = {
		.pod_ip = q.daddr,
		.client_ip = q.saddr,
		.pod_port = q.dport,
		.client_port = q.sport,
		.proto = q.l4_proto,
	};
	v = bpf_map_lookup_elem(&node_flows, &k);
	if (!v || is_expired(now_ns(cfg), v->last_seen_ns, flow_timeout(cfg, q.l4_proto, v->flags)))
		return STEP_NOT_OURS;
	return readdress_icmp_error(data, data_end, p->l3_off, REWRITE_SRC, q.daddr, v->vip,
				    q.dport, v->vip_port);
}

/* The first fragment of a reply left from vip: remember it for the rest. */
static __always_inline void frag_first(const struct pkt *p, __be16 id, __be32 vip, __u64 now)
{
	struct node_frag_key fk = {
		.pod_ip = p->saddr,
		.client_ip = p->daddr,
		.id = id,
		.proto = p->l4_proto,
	};
	struct node_frag_value fv = { .vip = vip, .seen_ns = now };

	bpf_map_update_elem(&node_frags, &fk, &fv, BPF_ANY);
}

/* A later fragment (no ports): sent from the VIP its first fragment left
 * from, if one did. Only the source address and the header checksum change:
 * the L4 checksum is in the first fragment, which the flow's rewrite fixed
 * for the whole datagram. The datagram's last fragment ends the entry. */
static __always_inline enum node_verdict egress_frag(struct __sk_buff *skb, const struct pkt *p)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct node_frag_value *fv;
	struct iphdr *ip;
	__u32 l3_off = p->l3_off;
	__be32 vip;

	if (l3_off > 64)
		return node_pass(NC_EG_PASS);
	ip = data + l3_off;
	if ((void *)(ip + 1) > data_end)
		return node_pass(NC_EG_PASS);

	struct node_frag_key fk = {
		.pod_ip = ip->saddr,
		.client_ip = ip->daddr,
		.id = ip->id,
		.proto = ip->protocol,
	};
	fv = bpf_map_lookup_elem(&node_frags, &fk);
	if (!fv || is_expired(now_ns(get_config()), fv->seen_ns, NODE_FRAG_NS))
		return node_pass(NC_EG_PASS);
	vip = fv->vip;
	csum_replace4(&ip->check, ip->saddr, vip);
	ip->saddr = vip;
	if (!(p->frag & PKT_FRAG_MORE))
		bpf_map_delete_elem(&node_frags, &fk);
	return node_pass(NC_EG_FRAG);
}

/* Egress for a parsed IPv4 packet. */
static __always_inline enum node_verdict node_egress_v4(struct __sk_buff *skb, struct pkt *p)
{
	void *data, *data_end;
	struct node_flow_value *v;
	struct node_config *cfg;
	__be32 vip;
	__be16 vport;
	__u64 now;
	__u8 proto;

	if (p->frag & PKT_FRAG_LATER)
		return egress_frag(skb, p);
	if (p->l4_proto == IPPROTO_ICMP) {
		if (egress_icmp(skb, p, get_config()) == STEP_DONE)
			return node_pass(NC_EG_ICMP);
		goto pass;
	}
	if (p->l4_proto != IPPROTO_TCP && p->l4_proto != IPPROTO_UDP)
		goto pass;
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	if (parse_l4(data, data_end, p) != PARSE_OK)
		goto pass;

	struct node_flow_key k = {
		.pod_ip = p->saddr,
		.client_ip = p->daddr,
		.pod_port = p->sport,
		.client_port = p->dport,
		.proto = p->l4_proto,
	};
	v = bpf_map_lookup_elem(&node_flows, &k);
	if (!v)
		goto pass;

	proto = p->l4_proto;
	cfg = get_config();
	now = now_ns(cfg);
	if (is_expired(now, v->last_seen_ns, flow_timeout(cfg, proto, v->flags))) {
		bpf_map_delete_elem(&node_flows, &k);
		node_count(NC_FLOW_EXPIRED);
		goto pass;
	}
	vip = v->vip;
	vport = v->vip_port;
	pod_seen(v, proto, p->tcp_flags, now);
	/* A first fragment: the rest of its datagram follows without ports. */
	if (p->frag & PKT_FRAG_MORE) {
		struct iphdr *ip = p->ip;

		if ((void *)(ip + 1) > data_end)
			goto pass;
		frag_first(p, ip->id, vip, now);
	}

	if (rewrite_l3l4(skb, p->l3_off, p->l4_off, proto, REWRITE_SRC, vip, vport) != STEP_DONE)
		return node_drop(NC_DROP_REWRITE);
	return node_pass(NC_EG_REWRITE);

pass:
	return node_pass(NC_EG_PASS);
}

#endif
