/* Edge program, IPv6: the whole per-packet pipeline for an IPv6 frame —
 * edge.c's IPv4 pipeline over the IPv6 maps (edge_maps6.h), with the same
 * verdicts, counters, connection-table rules and Maglev regions.
 *
 * Like the IPv4 pipeline it is written once for both hooks (`void *ctx` +
 * a constant `xdp`, edge_xmit.h) and runs as its own program per hook:
 * edge_xdp6 and edge_tc6 (edge.c), which edge_xdp and edge_tc tail-call
 * for IPv6 frames (edge_frame_ipv6): the IPv4 pipeline stays inlined in
 * edge_xdp / edge_tc as it was, and each program has the verifier's whole
 * 512-byte stack.
 *
 * Per packet:
 *   Ethernet → fixed IPv6 header → TCP | UDP directly behind it → look up
 *   {daddr, dport, proto} in edge_services6. A miss passes (the fast path).
 *   A hit: connection table (edge_ct6), else affinity / Maglev over the
 *   service's region of edge_ring; hop limit − 1; dispatch by the
 *   Destination Options header (SYN, UDP) + DNAT, or IPv6-in-IPv6, or
 *   SNAT (edge_snat6.h). A miss addressed to the edge's own IPv6 address
 *   may be a backend's reply to a SNAT flow (edge6_snat_reverse).
 *
 * Defined behaviour for what it cannot forward faithfully (never a
 * mis-forward; "VIP" = the marker entry {vip, 0, 0} exists):
 *   - A packet with any extension header whose destination is a VIP is
 *     dropped: with a Fragment header anywhere in the chain as
 *     DROP_FRAGMENT (a fragment cannot be matched to a flow), otherwise as
 *     DROP_IP_OPTIONS — there is no room to insert ours first, and a client
 *     must never hand the node a forged DSR header. The same packets to
 *     other addresses pass untouched, but for the fragments of a backend's
 *     reply to a SNAT flow (edge_snat_frag6.h).
 *   - To a service in a frame sent to (or from) a link-layer group address:
 *     DROP_L2_GROUP (edge_l2_group); ICMPv6 errors and SNAT replies in such
 *     frames pass untouched.
 *   - VLAN-tagged IPv6 to a VIP: DROP_VLAN (on tc also a tag the kernel
 *     took out of the frame: skb->vlan_present). Other tagged IPv6 passes.
 *   - Truncated headers (shorter than the payload length says) pass to the
 *     stack untouched; a complete packet to a service whose TCP data offset
 *     or UDP length contradicts its payload length, or a UDP datagram with
 *     checksum 0 (invalid over IPv6, RFC 8200 §8.1), is DROP_MALFORMED.
 *   - A hop limit ≤ 1 on arrival: ICMPv6 Time Exceeded from the edge's IPv6
 *     address (EV_TTL_EXCEEDED; DROP_TTL when it has none or the error
 *     cannot be built), as traceroute expects of a routing hop.
 *   - Too big after the +24 / +40: ICMPv6 Packet Too Big with MTU −
 *     overhead to the client; below 1280 it cannot be announced, and the
 *     packet is dropped as DROP_TOO_BIG_ICMP_FAIL.
 *   - Both errors are rate-limited with the IPv4 ones, in per-CPU buckets
 *     by kind (edge_icmp_limit.h); over the limit the packet is dropped
 *     unanswered (DROP_ICMP_RATE).
 *   - IP6IP6 or SNAT without an edge IPv6 address: DROP_UNSUPPORTED6
 *     (user space refuses IPv6 without one; this is the datapath's own
 *     guard).
 *   - ICMPv6 errors about a VIP flow (Packet Too Big, Destination
 *     Unreachable) are steered to the flow's backend (edge_steer6.h); all
 *     other ICMPv6 (NDP, echo) passes to the stack.
 *   - A TCP non-SYN without an entry after the service's backends changed:
 *     the second chance (edge_second_chance6.h), as for IPv4 — not for SNAT
 *     flows (their backend knows the edge's port, not the client's tuple).
 */
#ifndef EDGELB_EDGE_IP6_H
#define EDGELB_EDGE_IP6_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"
#include "parse6.h"
#include "edge_maps.h"
#include "edge_maps6.h"
#include "edge_counters.h"
#include "edge_hash.h"
#include "edge_select.h"
#include "edge_select6.h"
#include "edge_conn.h"
#include "edge_xmit.h"
#include "edge_dsr6.h"
#include "edge_steer6.h"
#include "edge_second_chance6.h"
#include "edge_snat6.h"
#include "edge_snat_frag6.h"

/* Is this IPv6 address a VIP (marker entry)? */
static __always_inline int edge6_is_vip(const void *daddr)
{
	struct edge_svc6_key k = {};

	__builtin_memcpy(&k.vip, daddr, 16);
	return bpf_map_lookup_elem(&edge_services6, &k) != 0;
}

/* A packet whose fixed header is followed by an extension header: only
 * whether it goes to a VIP matters, and then whether a Fragment header is
 * in the chain. A walk of its own rather than parse6.h's: no struct pkt6
 * on the stack (this runs in edge_xdp's call chain, which the verifier
 * limits to 512 bytes in all), and nothing but the next-header bytes is
 * read. A chain the walk cannot finish (truncated, longer than 8 headers
 * or than PARSE6_MAX_L4_OFF) counts as options: it has no business at a VIP
 * either. `ip6` is not valid after the call's pull (tc). */
#define EDGE6_EXT_PULL (PARSE6_MAX_L4_OFF + 8)

static __always_inline int edge6_ext(void *ctx, const int xdp, void *data, void *end, struct ipv6hdr *ip6,
				     __u32 plen, __u32 *ifindex)
{
	__u32 off = EDGE6_L4_OFF;
	__u8 nh = ip6->nexthdr;

	if (!edge6_is_vip(&ip6->daddr)) {
		/* To the edge's address: perhaps a SNAT flow's reply, fragmented. */
		if (nh == IPPROTO_FRAGMENT)
			return edge6_snat_fragment(ctx, xdp, plen, ifindex);
		return ACT_PASS;
	}
	if (!xdp) {
		/* The walk may read beyond what edge_tc6 pulled: pull up to
		 * its limit (only packets with extension headers to a VIP pay). */
		__u32 len = ((struct __sk_buff *)ctx)->len;

		bpf_skb_pull_data(ctx, len < EDGE6_EXT_PULL ? len : EDGE6_EXT_PULL);
		data = edge_data(ctx, xdp);
		end = edge_data_end(ctx, xdp);
	}
#pragma clang loop unroll(disable)
	for (int i = 0; i < PARSE6_MAX_EXT; i++) {
		struct pkt_ext6 *h;
		__u32 hlen;

		if (nh == IPPROTO_FRAGMENT) {
			edge_count(DROP_FRAGMENT);
			return ACT_DROP;
		}
		if (!ipv6_ext_walked(nh) || off > PARSE6_MAX_L4_OFF)
			break;
		h = data + off_bounded(off, 0x3ff);
		if ((void *)(h + 1) > end)
			break;
		hlen = nh == IPPROTO_AH ? ((__u32)h->hdrlen + 2) * 4 : ((__u32)h->hdrlen + 1) * 8;
		nh = h->nexthdr;
		off += hlen;
	}
	edge_count(DROP_IP_OPTIONS);
	return ACT_DROP;
}

/* Does edge_process6 take this frame: IPv6, untagged or behind one tag? */
static __always_inline int edge_frame_ipv6(void *ctx, const int xdp)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return 1;
	if (eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD)) {
		__be16 *inner = data + ETH_HLEN + 2;

		return (void *)(inner + 1) <= end && *inner == bpf_htons(ETH_P_IPV6);
	}
	return 0;
}

static __always_inline int edge_process6(void *ctx, const int xdp, __u32 *ifindex)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6;
	struct edge_svc6_key sk = {};
	struct edge6_pkt p = {};
	struct edge_config *cfg;
	struct edge_config6 *cfg6;
	struct edge_svc *svc;
	struct edge_backend6 *be = 0, *sc_be = 0;
	struct edge_ct_val *cv;
	__u32 zero = 0, be_id = 0, hash, svc_id, pkt_len, plen;
	__be16 snat_have = 0;
	int syn, new_flow = 0, snat;

	if ((void *)(eth + 1) > end)
		return ACT_PASS;
	/* tc: the skb's payload may lie outside its linear head; only the
	 * headers need to be in the window (edge_tc6 pulled them in). */
	pkt_len = xdp ? (__u32)((long)end - (long)data) : ((struct __sk_buff *)ctx)->len;
	if (eth->h_proto == bpf_htons(ETH_P_8021Q) || eth->h_proto == bpf_htons(ETH_P_8021AD)) {
		/* One tag, IPv6 inside, to a VIP: not ours to forward. */
		__be16 *inner = data + ETH_HLEN + 2;

		ip6 = data + ETH_HLEN + 4;
		if ((void *)(ip6 + 1) > end || *inner != bpf_htons(ETH_P_IPV6) || ip6->version != 6)
			return ACT_PASS;
		if (!edge6_is_vip(&ip6->daddr))
			return ACT_PASS;
		edge_count(DROP_VLAN);
		return ACT_DROP;
	}
	if (eth->h_proto != bpf_htons(ETH_P_IPV6))
		return ACT_PASS;
	ip6 = data + EDGE6_L3_OFF;
	if ((void *)(ip6 + 1) > end || ip6->version != 6)
		return ACT_PASS;
	if (!xdp && ((struct __sk_buff *)ctx)->vlan_present) {
		/* tc: the kernel moved the tag out of the frame (skb->vlan_tci)
		 * before tc ingress runs — the same rule. */
		if (!edge6_is_vip(&ip6->daddr))
			return ACT_PASS;
		edge_count(DROP_VLAN);
		return ACT_DROP;
	}
	plen = bpf_ntohs(ip6->payload_len);
	if (EDGE6_L4_OFF + plen > pkt_len)
		return ACT_PASS; /* truncated: nothing matched, the stack discards it */
	p.t.proto = ip6->nexthdr;
	if (p.t.proto == IPPROTO_TCP) {
		struct tcphdr *th = data + EDGE6_L4_OFF;

		if ((void *)(th + 1) > end || plen < sizeof(*th))
			return ACT_PASS;
		p.t.sport = th->source;
		p.t.dport = th->dest;
		p.tcp_flags = ((__u8 *)th)[13];
	} else if (p.t.proto == IPPROTO_UDP) {
		struct udphdr *uh = data + EDGE6_L4_OFF;

		if ((void *)(uh + 1) > end || plen < sizeof(*uh))
			return ACT_PASS;
		p.t.sport = uh->source;
		p.t.dport = uh->dest;
	} else if (p.t.proto == IPPROTO_ICMPV6) {
		return edge6_icmp_steer(ctx, xdp, plen, ifindex);
	} else if (ipv6_ext_walked(p.t.proto)) {
		return edge6_ext(ctx, xdp, data, end, ip6, plen, ifindex);
	} else {
		return ACT_PASS;
	}
	addr6_load(&sk.vip, &ip6->daddr);
	sk.port = p.t.dport;
	sk.proto = p.t.proto;
	svc = bpf_map_lookup_elem(&edge_services6, &sk);
	if (!svc)
		return edge6_snat_reverse(ctx, xdp, &p, plen, ifindex);

	/* A packet to a service. */
	if (edge_l2_group(data, end)) {
		edge_count(DROP_L2_GROUP);
		return ACT_DROP;
	}
	if (!edge6_l4_sane(data, end, p.t.proto, plen)) {
		edge_count(DROP_MALFORMED);
		return ACT_DROP;
	}
	cfg = bpf_map_lookup_elem(&edge_config, &zero);
	cfg6 = bpf_map_lookup_elem(&edge_config6, &zero);
	if (!cfg || !cfg6)
		return ACT_PASS;
	svc_id = svc->id;
	snat = svc->flags & SVC_F_SNAT;
	addr6_load(&p.t.saddr, &ip6->saddr);
	p.t.daddr = sk.vip;
	p.plen = plen;
	p.hop_limit = ip6->hop_limit;
	if ((svc->flags & SVC_F_SRC_RANGES) && !edge_src_allowed6(svc, &p.t.saddr)) {
		edge_count(DROP_SRC_RANGE);
		return ACT_DROP;
	}

	syn = p.t.proto == IPPROTO_TCP && (p.tcp_flags & (PKT_TCP_SYN | PKT_TCP_ACK)) == PKT_TCP_SYN;
	cv = bpf_map_lookup_elem(&edge_ct6, &p.t);
	if (cv && syn) {
		/* A SYN on a known tuple: edge.c's rule. */
		be = edge_backend6_for(cv->backend_id, svc_id);
		if (be && ((be->flags & BE_F_ACTIVE) ||
			   !(snat ? edge6_snat_reusable(cfg, &p.t, be, cv->snat_port) : edge_conn_reusable(cfg, cv)))) {
			be_id = cv->backend_id;
			snat_have = cv->snat_port;
			if (edge_conn_over(cfg, cv))
				cv->flags = 0;
		} else {
			be = 0;
			bpf_map_delete_elem(&edge_ct6, &p.t);
		}
	} else if (cv) {
		be_id = cv->backend_id;
		snat_have = cv->snat_port;
		be = edge_backend6_for(be_id, svc_id);
		if (!be)
			edge_count(EV_CT_STALE);
		else if (p.t.proto == IPPROTO_TCP &&
			 (cv->flags | (p.tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST))) && !snat)
			edge_conn_seen(cfg, cv, p.tcp_flags); /* SNAT: edge6_snat_reusable */
	}
	hash = edge_flow_hash6(p.t.saddr.w, p.t.daddr.w, p.t.sport, p.t.dport, p.t.proto);
	if (!be) {
		if (edge_bad_source6(cfg6, &p.t.saddr)) {
			edge_count(DROP_BAD_SOURCE);
			return ACT_DROP;
		}
		be = edge_pick_new6(cfg, svc, &p.t.saddr, hash, &be_id);
		if (!be) {
			edge_count(DROP_NO_BACKEND);
			return ACT_DROP;
		}
		new_flow = 1;
		/* After a backend change (edge_second_chance6.h); not for
		 * SNAT flows (their backend knows the edge's port). */
		if (p.t.proto == IPPROTO_TCP && !snat) {
			if (syn)
				edge_sc_syn6(cfg, svc, &p.t, &be, &be_id);
			else
				sc_be = edge_second_chance6(cfg, svc, &p.t, hash, p.tcp_flags, &be, &be_id);
		}
	}
	if (((be->flags & BE_F_IPIP) || snat) && addr6_is_zero(&cfg6->addr)) {
		edge_count(DROP_UNSUPPORTED6);
		return ACT_DROP;
	}

	edge_count_pb(&edge_svc_stats, svc_id, pkt_len);
	edge_count_pb(&edge_be_stats, be_id, pkt_len);

	/* A routing hop. */
	ctx = edge_ctx_fresh(ctx);
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	ip6 = data + EDGE6_L3_OFF;
	if ((void *)(ip6 + 1) > end)
		return ACT_DROP;
	if (ip6->hop_limit <= 1) {
		/* Time Exceeded from the edge's own address (none: dropped),
		 * within the rate limit (edge_icmp_limit.h). */
		if (!addr6_is_zero(&cfg6->addr) && !edge_icmp_allow(cfg, EDGE_ICMP_TIME_EXCEEDED)) {
			edge_count(DROP_ICMP_RATE);
			return ACT_DROP;
		}
		if (!addr6_is_zero(&cfg6->addr) &&
		    edge6_icmp_error(ctx, xdp, &p, ICMP6_TIME_EXCEED, 0, &cfg6->addr) == 0) {
			edge_count(EV_TTL_EXCEEDED);
			return ACT_TX;
		}
		edge_count(DROP_TTL);
		return ACT_DROP;
	}
	ip6->hop_limit--;

	if (snat)
		return edge6_xmit_snat(ctx, xdp, cfg, cfg6, &p, be, be_id, svc,
				       new_flow ? 0 : snat_have, new_flow && !syn, hash, ifindex);
	if (sc_be)
		return edge6_sc_xmit(ctx, xdp, cfg, cfg6, &p, be, sc_be, hash, ifindex);
	/* Inserted with the flow's first non-SYN packet (edge.c). */
	if (new_flow && !syn) {
		if (edge_may_insert(cfg, EDGE_INSERT_V6)) {
			struct edge_ct_val nv = { .backend_id = be_id };

			bpf_map_update_elem(&edge_ct6, &p.t, &nv, BPF_ANY);
			if (svc->affinity_timeout) /* confirmed (edge.c) */
				edge_aff6_remember(cfg, svc_id, &p.t.saddr, be_id);
		} else {
			edge_count(EV_CT_INSERT_SKIPPED);
		}
	}
	if (be->flags & BE_F_IPIP)
		return edge6_xmit_ip6ip6(ctx, xdp, cfg, cfg6, &p, be, hash, ifindex);
	return edge6_xmit_option(ctx, xdp, cfg, &p, be, syn || p.t.proto == IPPROTO_UDP, ifindex);
}

#endif
