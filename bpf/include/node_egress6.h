/* Node program, egress, IPv6: a pod's reply matching node_flows6 leaves
 * with source VIP:vp, the upper-layer checksum fixed for the address (via
 * the pseudo-header) and the port (node_rewrite.h's rewrite6_l3l4). A reply
 * with extension headers is rewritten too: the walk found its upper-layer
 * header. A non-first fragment has no ports and passes (as for IPv4). */
#ifndef EDGELB_NODE_EGRESS6_H
#define EDGELB_NODE_EGRESS6_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "parse.h"
#include "parse6.h"
#include "node_maps.h"
#include "node_counters.h"
#include "node_verdict.h"
#include "node_parse.h"
#include "node_flow.h"
#include "node_rewrite.h"

/* Egress for an IPv6 frame whose fixed header is at l3_off: a global
 * function, as node_ingress6. Returns an enum node_verdict. */
__attribute__((noinline)) int node_egress6(struct __sk_buff *skb, __u64 l3_off)
{
	struct node_flow6_value *v;
	struct node_config *cfg;
	struct pkt_addr6 vip;
	struct pkt6 p = {};
	__be16 vport;
	__u64 now;
	__u8 proto;

	l3_off = l3_bounded(l3_off);
	if (parse_skb6(skb, l3_off, &p) != PARSE_OK)
		goto pass;
	if (p.frag & PKT_FRAG_LATER)
		goto pass;
	if (p.l4_proto != IPPROTO_TCP && p.l4_proto != IPPROTO_UDP)
		goto pass;
	if (parse_l4_v6(skb_data(skb), skb_data_end(skb), &p) != PARSE_OK)
		goto pass;

	struct node_flow6_key k = {
		.pod_ip = p.saddr,
		.client_ip = p.daddr,
		.pod_port = p.sport,
		.client_port = p.dport,
		.proto = p.l4_proto,
	};
	v = bpf_map_lookup_elem(&node_flows6, &k);
	if (!v)
		goto pass;

	proto = p.l4_proto;
	cfg = get_config();
	now = now_ns(cfg);
	if (is_expired(now, v->st.last_seen_ns, flow_timeout(cfg, proto, v->st.flags))) {
		bpf_map_delete_elem(&node_flows6, &k);
		node_count(NC_FLOW_EXPIRED);
		goto pass;
	}
	vip = v->vip6;
	vport = v->st.vip_port;
	pod_seen(&v->st, proto, p.tcp_flags, now);

	if (rewrite6_l3l4(skb, p.l3_off, p.l4_off, proto, REWRITE_SRC, &vip, vport, 0) != STEP_DONE)
		return node_drop(NC_DROP_REWRITE);
	return node_pass(NC_EG_REWRITE);

pass:
	return node_pass(NC_EG_PASS);
}

static __always_inline enum node_verdict node_egress_v6(struct __sk_buff *skb, const struct pkt *l2)
{
	return node_egress6(skb, l2->l3_off) == NODE_DROP ? NODE_DROP : NODE_PASS;
}

#endif
