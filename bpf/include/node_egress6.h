/* Node program, egress, IPv6: a pod's reply matching node_flows6 leaves
 * with source VIP:vp, the upper-layer checksum fixed for the address (via
 * the pseudo-header) and the port (reply6_from_vip, node_rewrite.h's
 * rewrite6_l3l4 with the old values from the flow key). A reply
 * with extension headers is rewritten too: the walk found its upper-layer
 * header. A non-first fragment has no ports: it leaves from the VIP its
 * datagram's first fragment left from (node_frags6; as for IPv4), else it
 * passes untouched.
 *
 * Cost: nearly every reply is TCP or UDP straight after the fixed header,
 * headers in the linear head. egress6_direct reads such a reply in place
 * and builds the flow key with five 8-byte stores; everything else takes
 * the general parse (parse_skb6: chain walk, pulls), which reaches the same
 * key for the packets the direct read accepts. The general parse copied
 * both addresses into struct pkt6 and from there into the key in 4-, 2-
 * and 1-byte pieces, and the table's hash then read the key back in 4- and
 * 8-byte words across those pieces: with the walk's bookkeeping, that made
 * an IPv6 reply cost 1.34× an IPv4 one (bench `node_reply6_ns`); a call
 * to a global function and back, for every reply, was another visible
 * share. */
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
#include "l4_csum.h"

/* node_flows6's key, or the same 40 bytes as words for building it. */
union node_flow6_key_words {
	struct node_flow6_key k;
	__u64 q[5];
};

_Static_assert(sizeof(struct node_flow6_key) == 40, "node_flow6_key is five 8-byte words");

/* A reply with TCP (a header of at least 20 bytes, data offset ≥ 5) or UDP
 * directly after the fixed header, all of it in the linear head, payload
 * length non-zero and within the packet: its reply key { pod = source,
 * client = destination, ports, proto } in `kw` and its TCP flags. 0 for
 * anything else (the general parse decides those). */
static __always_inline int egress6_direct(struct __sk_buff *skb, __u32 l3_off,
					  union node_flow6_key_words *kw, __u8 *tcp_flags)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct ipv6hdr *ip6 = data + l3_off;
	__u8 *l4 = (void *)(ip6 + 1);
	__u64 *addrs = (void *)&ip6->saddr;
	__u32 plen;
	__u8 nh;

	if ((void *)(l4 + 8) > data_end)
		return 0;
	if (ip6->version != 6)
		return 0;
	plen = bpf_ntohs(ip6->payload_len);
	nh = ip6->nexthdr;
	if (nh == IPPROTO_TCP) {
		if ((void *)(l4 + 20) > data_end || plen < 20 || (l4[12] >> 4) < 5)
			return 0;
		*tcp_flags = l4[13];
	} else if (nh == IPPROTO_UDP) {
		if (plen < 8)
			return 0;
		*tcp_flags = 0;
	} else {
		return 0;
	}
	if (l3_off + IPV6_HLEN + plen > skb->len)
		return 0;
	kw->q[0] = addrs[0];
	kw->q[1] = addrs[1];
	kw->q[2] = addrs[2];
	kw->q[3] = addrs[3];
	/* source port, destination port (as they sit in the packet), proto, pad */
	kw->q[4] = (__u64)*(__u32 *)l4 | (__u64)nh << 32;
	return 1;
}

/* The reply's source (the flow key's pod_ip:pod_port, as read from this
 * packet) becomes VIP:vp: rewrite6_l3l4 for a reply, with the old address
 * and port taken from the key instead of read back, the new address stored
 * as two 8-byte words. Packet pointers are invalid afterwards. */
static __always_inline enum node_step reply6_from_vip(struct __sk_buff *skb, __u32 l3_off,
						      __u32 l4_off, __u8 proto,
						      const union node_flow6_key_words *kw,
						      const struct pkt_addr6 *vip, __be16 vport)
{
	/* vip: 8-byte aligned (egress6_flow's copy) */
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	const struct pkt_addr6 *old = &kw->k.pod_ip;
	struct ipv6hdr *ip6;
	__be16 *portp;
	__sum16 *check;
	__u32 csum_off, diff;
	__u64 mangled;

	if (l3_off > ETH_HLEN + 4 || l4_off > PARSE6_MAX_L4_OFF)
		return STEP_REWRITE_FAILED;
	l3_off = off_bounded(l3_off, 0x1f);
	l4_off = off_bounded(l4_off, 0x3ff);
	ip6 = data + l3_off;
	if ((void *)(ip6 + 1) > data_end)
		return STEP_REWRITE_FAILED;
	if (l4_csum_fields(data, data_end, l4_off, proto, &check, &csum_off, &mangled) < 0)
		return STEP_REWRITE_FAILED;
	portp = data + l4_off; /* the source port, TCP's or UDP's */
	((__u64 *)&ip6->saddr)[0] = ((const __u64 *)vip)[0];
	((__u64 *)&ip6->saddr)[1] = ((const __u64 *)vip)[1];
	*portp = vport;

	diff = addr6_csum_diff(old, vip);
	if (kw->q[0] != ((const __u64 *)vip)[0] || kw->q[1] != ((const __u64 *)vip)[1]) {
		if (bpf_l4_csum_replace(skb, csum_off, 0, diff, BPF_F_PSEUDO_HDR | mangled))
			return STEP_REWRITE_FAILED;
	}
	if (kw->k.pod_port != vport &&
	    bpf_l4_csum_replace(skb, csum_off, kw->k.pod_port, vport, mangled | sizeof(vport)))
		return STEP_REWRITE_FAILED;
	return STEP_DONE;
}

/* The reply's flow (key in kw, upper layer at l4_off): when it has one,
 * the reply leaves from VIP:vp — and when it is a first fragment (`first`:
 * its datagram's node_frags6 key), so will the datagram's other fragments.
 * Returns an enum node_verdict. */
static __always_inline int egress6_flow(struct __sk_buff *skb, __u32 l3_off, __u32 l4_off,
					union node_flow6_key_words *kw, __u8 tcp_flags,
					const struct node_frag6_key *first)
{
	struct node_flow6_value *v;
	struct node_config *cfg;
	struct pkt_addr6 vip __attribute__((aligned(8))); /* read as two 8-byte words */
	__be16 vport;
	__u64 now;
	__u8 proto;

	v = bpf_map_lookup_elem(&node_flows6, &kw->k);
	if (!v)
		return node_pass(NC_EG_PASS);

	proto = kw->k.proto;
	cfg = get_config();
	now = now_ns(cfg);
	if (is_expired(now, v->st.last_seen_ns, flow_timeout(cfg, proto, v->st.flags))) {
		bpf_map_delete_elem(&node_flows6, &kw->k);
		node_count(NC_FLOW_EXPIRED);
		return node_pass(NC_EG_PASS);
	}
	vip = v->vip6;
	vport = v->st.vip_port;
	pod_seen(&v->st, proto, tcp_flags, now);
	/* A first fragment: the rest of its datagram follows without ports. */
	if (first) {
		struct node_frag6_value fv = { .vip = vip, .seen_ns = now };

		bpf_map_update_elem(&node_frags6, first, &fv, BPF_ANY);
	}

	if (reply6_from_vip(skb, l3_off, l4_off, proto, kw, &vip, vport) != STEP_DONE)
		return node_drop(NC_DROP_REWRITE);
	return node_pass(NC_EG_REWRITE);
}

/* A pod's ICMPv6 error about a client flow of ours (say, UDP port
 * unreachable): it quotes client:cp → pod:pp and comes from the pod's
 * address, which the client never talked to. Sent as the VIP's: source and
 * quoted destination become VIP:vp (egress_icmp's rules for IPv4: the quote
 * must be the client's packet to this pod, TCP or UDP directly behind its
 * fixed header; an error with extension headers is left alone). */
static __always_inline int egress6_icmp(struct __sk_buff *skb, struct pkt6 *p)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct node_flow6_value *v;
	struct node_config *cfg;
	struct pkt6_inner q;

	if (p->n_ext != 0 || parse_l4_v6(data, data_end, p) != PARSE_OK ||
	    !icmp6_is_error(p->icmp_type) || p->icmp_type == 0)
		return STEP_NOT_OURS;
	/* The quoted fixed header and the 8 upper-layer bytes must lie within
	 * the error (parse_icmp6_inner checks only what it reads). */
	if (p->ip_end < (__u32)p->l4_off + sizeof(struct pkt_icmp6hdr) + IPV6_HLEN + 8)
		return STEP_NOT_OURS;
	if (parse_icmp6_inner(data, data_end, p, &q) != PARSE_OK)
		return STEP_NOT_OURS;
	if ((q.l4_proto != IPPROTO_TCP && q.l4_proto != IPPROTO_UDP) || q.payload_len < 8 ||
	    !addr6_eq(&q.daddr, &p->saddr) || !addr6_eq(&q.saddr, &p->daddr))
		return STEP_NOT_OURS;

	union node_flow6_key_words kw;

	kw.k = (struct node_flow6_key){
		.pod_ip = q.daddr,
		.client_ip = q.saddr,
		.pod_port = q.dport,
		.client_port = q.sport,
		.proto = q.l4_proto,
	};
	v = bpf_map_lookup_elem(&node_flows6, &kw.k);
	cfg = get_config();
	if (!v || is_expired(now_ns(cfg), v->st.last_seen_ns, flow_timeout(cfg, q.l4_proto, v->st.flags)))
		return STEP_NOT_OURS;
	struct pkt_addr6 vip = v->vip6;

	return readdress_icmp6_error(skb_data(skb), skb_data_end(skb), p->l3_off, REWRITE_SRC,
				     &q.daddr, &vip, q.dport, v->st.vip_port);
}

/* The Fragment header's identification of a parsed fragment into *fk
 * (node_frags6's key: source as the pod, destination as the client). */
static __always_inline int frag6_key(struct __sk_buff *skb, const struct pkt6 *p,
				     struct node_frag6_key *fk)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct pkt_frag6 *fh;
	__u32 off = p->frag_hdr_off;

	if (off == 0 || off > PARSE6_MAX_L4_OFF)
		return -1;
	fh = data + off_bounded(off, 0x3ff);
	if ((void *)(fh + 1) > data_end)
		return -1;
	__builtin_memset(fk, 0, sizeof(*fk));
	fk->pod_ip = p->saddr;
	fk->client_ip = p->daddr;
	fk->id = fh->id;
	fk->proto = p->l4_proto;
	return 0;
}

/* A later fragment (no ports): sent from the VIP its first fragment left
 * from, if one did (node_frags6). Only the source address changes: IPv6 has
 * no header checksum, and the upper-layer checksum is in the first
 * fragment, which the flow's rewrite fixed for the whole datagram. The
 * datagram's last fragment ends the entry. */
static __always_inline int egress6_frag(struct __sk_buff *skb, __u32 l3_off, const struct pkt6 *p)
{
	struct node_frag6_value *fv;
	struct node_frag6_key fk;
	struct ipv6hdr *ip6;
	__be32 *src;

	if (l3_off > ETH_HLEN + 4 || frag6_key(skb, p, &fk) < 0)
		return node_pass(NC_EG_PASS);
	fv = bpf_map_lookup_elem(&node_frags6, &fk);
	if (!fv || is_expired(now_ns(get_config()), fv->seen_ns, NODE_FRAG_NS))
		return node_pass(NC_EG_PASS);
	ip6 = skb_data(skb) + off_bounded(l3_off, 0x1f);
	if ((void *)(ip6 + 1) > skb_data_end(skb))
		return node_pass(NC_EG_PASS);
	src = (__be32 *)&ip6->saddr;
	src[0] = fv->vip.w[0];
	src[1] = fv->vip.w[1];
	src[2] = fv->vip.w[2];
	src[3] = fv->vip.w[3];
	if (!(p->frag & PKT_FRAG_MORE))
		bpf_map_delete_elem(&node_frags6, &fk);
	return node_pass(NC_EG_FRAG);
}

/* Egress for an IPv6 frame whose fixed header is at l3_off and that
 * egress6_direct did not take: the general parse (extension headers,
 * headers outside the linear head, everything odd). A global function, as
 * node_ingress6: the chain walk's states stay out of node_egress. Returns
 * an enum node_verdict. */
__attribute__((noinline)) int node_egress6(struct __sk_buff *skb, __u64 l3_off)
{
	union node_flow6_key_words kw;
	struct node_frag6_key first;
	struct pkt6 p = {};

	l3_off = l3_bounded(l3_off);
	if (parse_skb6(skb, l3_off, &p) != PARSE_OK)
		goto pass;
	if (p.frag & PKT_FRAG_LATER)
		return egress6_frag(skb, l3_off, &p);
	if (p.l4_proto == IPPROTO_ICMPV6) {
		if (egress6_icmp(skb, &p) == STEP_DONE)
			return node_pass(NC_EG_ICMP);
		goto pass;
	}
	if (p.l4_proto != IPPROTO_TCP && p.l4_proto != IPPROTO_UDP)
		goto pass;
	if (parse_l4_v6(skb_data(skb), skb_data_end(skb), &p) != PARSE_OK)
		goto pass;
	kw.k = (struct node_flow6_key){
		.pod_ip = p.saddr,
		.client_ip = p.daddr,
		.pod_port = p.sport,
		.client_port = p.dport,
		.proto = p.l4_proto,
	};
	if ((p.frag & PKT_FRAG_MORE) && frag6_key(skb, &p, &first) == 0)
		return egress6_flow(skb, l3_off, p.l4_off, &kw, p.tcp_flags, &first);
	return egress6_flow(skb, l3_off, p.l4_off, &kw, p.tcp_flags, 0);

pass:
	return node_pass(NC_EG_PASS);
}

/* The common reply is handled right here, in node_egress's own frame: a
 * call to the global function and back is a visible share of its cost. */
static __always_inline enum node_verdict node_egress_v6(struct __sk_buff *skb, const struct pkt *l2)
{
	union node_flow6_key_words kw;
	__u32 l3_off = l2->l3_off;
	__u8 tcp_flags = 0;
	int v;

	if (l3_off <= ETH_HLEN + 4 && egress6_direct(skb, l3_off, &kw, &tcp_flags))
		v = egress6_flow(skb, l3_off, l3_off + IPV6_HLEN, &kw, tcp_flags, 0);
	else
		v = node_egress6(skb, l2->l3_off);
	return v == NODE_DROP ? NODE_DROP : NODE_PASS;
}

#endif
