/* Node program, egress: a pod's reply matching node_flows leaves with
 * source VIP:vp, IP and L4 checksums fixed, and is routed by the node
 * straight to the client. A pod's ICMP destination-unreachable about such a
 * flow is sent as the VIP's (source and quote rewritten). L4 checksums are
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
		goto pass;
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

	if (rewrite_l3l4(skb, p->l3_off, p->l4_off, proto, REWRITE_SRC, vip, vport) != STEP_DONE)
		return node_drop(NC_DROP_REWRITE);
	return node_pass(NC_EG_REWRITE);

pass:
	return node_pass(NC_EG_PASS);
}

#endif
