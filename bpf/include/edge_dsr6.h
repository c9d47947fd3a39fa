/* Edge program, IPv6: dispatch to a backend — DNAT with the 24-byte
 * Destination Options header of dsr_option.h, or IPv6-in-IPv6 to the
 * backend's node — the FIB step for IPv6 next hops, and the ICMPv6 errors
 * the edge answers with (Packet Too Big when the grown packet would not
 * fit, Time Exceeded).
 *
 * Written once for both hooks against `void *ctx` + a constant `xdp`
 * (edge_xmit.h): XDP rewrites the frame by hand, tc through the skb
 * helpers, which keep its checksum state and GSO metadata consistent.
 *
 * All of it expects the layout edge_ip6.h has verified: untagged Ethernet,
 * the fixed 40-byte header directly followed by TCP or UDP (no extension
 * header), the whole L4 header inside the packet. IPv6 has no header
 * checksum: the DNAT changes only the L4 checksum (pseudo-header address
 * and port), the inserted header and the outer header change none. */
#ifndef EDGELB_EDGE_DSR6_H
#define EDGELB_EDGE_DSR6_H

#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "csum.h"
#include "csum6.h"
#include "parse6.h"
#include "dsr_option.h"
#include "edge_maps6.h"
#include "edge_counters.h"
#include "edge_xmit.h"
#include "edge_icmp.h"

#ifndef AF_INET6
#define AF_INET6 10
#endif

#define EDGE6_L3_OFF ETH_HLEN
#define EDGE6_L4_OFF (ETH_HLEN + IPV6_HLEN)
#define EDGE6_MIN_MTU 1280 /* RFC 8200 §5: every IPv6 link carries 1280 */

/* What the pipeline learnt about the packet, for the dispatch functions.
 * `t` is the flow's connection-table key (addresses, ports, protocol as
 * received). */
struct edge6_pkt {
	struct edge_ct6_key t;
	__u16 plen;      /* payload length (the L4 segment: no extension header) */
	__u8 tcp_flags;
	__u8 hop_limit;
};

/* DNAT: destination address and port become the backend's; the L4
 * checksum follows (TCP, UDP: a computed 0 is sent as 0xffff). XDP fixes
 * it by hand (frames from the wire carry a full checksum). tc through
 * bpf_l4_csum_replace, which knows the skb's checksum state: a local
 * sender's or a GRO'd segment is CHECKSUM_PARTIAL (its field holds only
 * the pseudo-header sum, so the port must not move it). skb->csum of a
 * CHECKSUM_COMPLETE skb is left as the helper leaves it: the edge only
 * forwards (a redirect, or the stack's forwarding path), and neither reads
 * it (csum6.h's note is about packets delivered locally). */
static __always_inline int edge6_dnat(void *ctx, const int xdp, const struct edge6_pkt *p,
				      const struct edge_backend6 *be)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct ipv6hdr *ip6 = data + EDGE6_L3_OFF;
	__be16 *ports = data + EDGE6_L4_OFF;
	__u32 diff;

	if (data + EDGE6_L4_OFF + sizeof(struct udphdr) > end)
		return -1;
	if (!xdp) {
		__u32 csum_off = EDGE6_L4_OFF + (p->t.proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
									  : offsetof(struct udphdr, check));
		__u64 mangled = p->t.proto == IPPROTO_TCP ? 0 : BPF_F_MARK_MANGLED_0;

		ports[1] = be->port;
		__builtin_memcpy(&ip6->daddr, &be->ip, sizeof(be->ip));
		if (bpf_l4_csum_replace(ctx, csum_off, 0, csum_diff_addr6(&p->t.daddr, &be->ip),
					BPF_F_PSEUDO_HDR | mangled))
			return -1;
		if (p->t.dport != be->port &&
		    bpf_l4_csum_replace(ctx, csum_off, p->t.dport, be->port, mangled | sizeof(be->port)))
			return -1;
		return 0;
	}
	diff = csum_diff_addr6(&p->t.daddr, &be->ip) + csum_diff_2(p->t.dport, be->port);
	if (p->t.proto == IPPROTO_TCP) {
		struct tcphdr *th = data + EDGE6_L4_OFF;

		if ((void *)(th + 1) > end)
			return -1;
		csum_apply_diff(&th->check, diff);
	} else {
		struct udphdr *uh = data + EDGE6_L4_OFF;

		udp_csum_apply_diff(&uh->check, diff);
	}
	ports[1] = be->port;
	__builtin_memcpy(&ip6->daddr, &be->ip, sizeof(be->ip));
	return 0;
}

/* FIB results per CPU, as edge_fib_cache (edge_xmit.h) for IPv4. */
struct edge_fib6_slot {
	struct pkt_addr6 dst;
	__u32 in_if;
	__u32 out_if;
	__u8 smac[ETH_ALEN];
	__u8 dmac[ETH_ALEN];
	__u64 expires;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EDGE_FIB_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct edge_fib6_slot);
} edge_fib_cache6 SEC(".maps");

/* A routing hop that answers nothing (a reply, a translated or steered
 * ICMPv6 error, a fragment): out of hops it is dropped, counted DROP_TTL
 * (-1); otherwise its hop limit goes down by one (0). The hop that answers
 * with Time Exceeded is edge_ip6.h's. */
static __always_inline int edge6_hop(struct ipv6hdr *ip6)
{
	if (ip6->hop_limit <= 1) {
		edge_count(DROP_TTL);
		return -1;
	}
	ip6->hop_limit--;
	return 0;
}

/* edge_forward for an IPv6 next hop `dst` (the backend's node, or the
 * client for a Packet Too Big): FIB (cached), MAC rewrite, TX or redirect;
 * the stack gets the rewritten packet when the FIB cannot resolve it. */
static __always_inline int edge6_forward(void *ctx, const int xdp, const struct edge_config *cfg,
					 const struct pkt_addr6 *src, const struct pkt_addr6 *dst,
					 __u16 tot_len, __u32 *ifindex)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct ethhdr *eth = data;
	struct bpf_fib_lookup fib = {};
	struct edge_fib6_slot *slot = 0;
	__u32 in_if = edge_ifindex(ctx, xdp), slot_idx, x;
	__u64 now = 0;

	if ((void *)(eth + 1) > end)
		return ACT_DROP;
	if (cfg->flags & CFG_F_FIB_BYPASS) {
		edge_count(EV_FIB_BYPASS);
		return ACT_PASS;
	}
	if (cfg->flags & CFG_F_GW_MAC) {
		__builtin_memcpy(eth->h_dest, cfg->gw_mac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, cfg->own_mac, ETH_ALEN);
		return ACT_TX;
	}
	x = bpf_ntohl(dst->w[3] ^ dst->w[2] ^ dst->w[1]);
	slot_idx = (x ^ (x >> 8)) & (EDGE_FIB_CACHE_SLOTS - 1);
	if (!(cfg->flags & CFG_F_NO_FIB_CACHE)) {
		slot = bpf_map_lookup_elem(&edge_fib_cache6, &slot_idx);
		now = bpf_ktime_get_coarse_ns();
		if (slot && addr6_eq(&slot->dst, dst) && slot->in_if == in_if && now < slot->expires) {
			__builtin_memcpy(eth->h_dest, slot->dmac, ETH_ALEN);
			__builtin_memcpy(eth->h_source, slot->smac, ETH_ALEN);
			if (slot->out_if == in_if)
				return ACT_TX;
			*ifindex = slot->out_if;
			return ACT_REDIRECT;
		}
	}
	fib.family = AF_INET6;
	__builtin_memcpy(fib.ipv6_src, src, 16);
	__builtin_memcpy(fib.ipv6_dst, dst, 16);
	/* tc: no tot_len, so the kernel checks the skb itself against the
	 * route's MTU — GSO-aware (edge_forward). */
	fib.tot_len = xdp ? tot_len : 0;
	fib.ifindex = in_if;
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS) {
		edge_count(EV_FIB_PASS);
		return ACT_PASS;
	}
	if (slot) {
		slot->dst = *dst;
		slot->in_if = in_if;
		slot->out_if = fib.ifindex;
		__builtin_memcpy(slot->smac, fib.smac, ETH_ALEN);
		__builtin_memcpy(slot->dmac, fib.dmac, ETH_ALEN);
		slot->expires = now + EDGE_FIB_TTL_NS;
	}
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (fib.ifindex == in_if)
		return ACT_TX;
	*ifindex = fib.ifindex;
	return ACT_REDIRECT;
}

/* An ICMPv6 error (RFC 4443) back to the client about the packet in the
 * frame: Packet Too Big (type 2, `word` = the MTU) from the address it sent
 * to (the VIP, as the IPv4 path's fragmentation-needed), or Time Exceeded
 * (type 3, from the edge's own address: traceroute shows the edge). The
 * frame becomes Ethernet (MACs swapped) + IPv6 + ICMPv6 + the first bytes
 * of the client's packet as received — up to EDGE6_QUOTE_MAX, a multiple
 * of 4: its headers, all a sender needs to find the flow. Returns 0 (send:
 * ACT_TX) or -1.
 *
 * tc: the 48 new bytes are opened behind Ethernet (edge_grow) and the skb
 * cut to the answer (edge_trim). The quote always holds the client's whole
 * L4 header (q ≥ 40 + 20 for TCP, 40 + 8 for UDP), so the kernel's
 * minimum length for a pending checksum never stops the cut; the pending
 * state itself is handled as in edge_icmp.h: the quoted L4 checksum is
 * set to the value a completion would store (edge_csum_settled), for TCP
 * and UDP alike, since tc cannot tell whether the checksum is pending. */
#define EDGE6_QUOTE_MAX 128
#define EDGE6_PTB_FRAME (ETH_HLEN + IPV6_HLEN + 8 + EDGE6_QUOTE_MAX)

static __always_inline int edge6_icmp_error(void *ctx, const int xdp, const struct edge6_pkt *p, __u8 type,
					    __u32 word, const struct pkt_addr6 *from)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6;
	struct pkt_icmp6hdr *ih;
	__u8 dmac[ETH_ALEN], smac[ETH_ALEN];
	__u32 c, l4sum = 0, q = IPV6_HLEN + (__u32)p->plen;
	void *quote;

	if (q > EDGE6_QUOTE_MAX)
		q = EDGE6_QUOTE_MAX;
	q &= ~3u;
	if (data + ETH_HLEN + IPV6_HLEN > end)
		return -1;
	__builtin_memcpy(dmac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(smac, eth->h_dest, ETH_ALEN);
	if (xdp) {
		if (bpf_xdp_adjust_head(ctx, -(IPV6_HLEN + 8)))
			return -1;
		data = edge_data(ctx, xdp);
		end = edge_data_end(ctx, xdp);
		{
			/* The frame's length as a scalar first: folded into one
			 * expression with q, clang emits 32-bit pointer
			 * arithmetic, which the verifier refuses. */
			long cur = (long)end - (long)data;

			asm volatile("" : "+r"(cur));
			if (bpf_xdp_adjust_tail(ctx, (int)((long)(ETH_HLEN + IPV6_HLEN + 8 + q) - cur)))
				return -1;
		}
	} else {
		if (edge_grow(ctx, xdp, IPV6_HLEN + 8, ETH_HLEN, 0) < 0 ||
		    edge_trim(ctx, xdp, ETH_HLEN + IPV6_HLEN + 8 + q) < 0)
			return -1;
	}
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	if (data + ETH_HLEN + IPV6_HLEN + 8 + IPV6_HLEN > end)
		return -1;
	eth = data;
	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IPV6);
	ip6 = data + ETH_HLEN;
	*(__be32 *)ip6 = bpf_htonl(0x60000000);
	ip6->payload_len = bpf_htons(8 + q);
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = 64;
	__builtin_memcpy(&ip6->saddr, from, 16);
	__builtin_memcpy(&ip6->daddr, &p->t.saddr, 16);
	ih = (void *)(ip6 + 1);
	ih->type = type;
	ih->code = 0;
	ih->checksum = 0;
	ih->un.word = bpf_htonl(word);
	quote = (void *)(ih + 1);
	/* The quote as the client sent it: the hop limit was already
	 * decremented for forwarding (Packet Too Big comes after the hop). */
	((struct ipv6hdr *)quote)->hop_limit = p->hop_limit;
	c = csum_pseudo_v6(from, &p->t.saddr, IPPROTO_ICMPV6, 8 + q);
	c = csum_add(c, bpf_htons((__u16)type << 8));
	c = csum_add(c, csum_word32(bpf_htonl(word)));
#pragma unroll
	for (int i = 0; i < EDGE6_QUOTE_MAX / 4; i++) {
		__be32 *w = quote + i * 4;

		if ((__u32)i * 4 >= q || (void *)(w + 1) > end)
			break;
		c = csum_add(c, csum_word32(*w));
		/* tc: the sum a completion would make, from the quoted L4
		 * header (quote + 40) to the frame's end (see above). */
		if (!xdp && i >= IPV6_HLEN / 4)
			l4sum = csum_add(l4sum, csum_word32(*w));
	}
	if (!xdp) {
		/* The quoted L4 checksum set to the value a completion
		 * would store; the ICMPv6 sum follows the change. */
		__sum16 *f = quote + IPV6_HLEN + (p->t.proto == IPPROTO_TCP ? offsetof(struct tcphdr, check)
									      : offsetof(struct udphdr, check));
		__u16 v;

		if ((void *)(f + 1) > end)
			return -1;
		v = edge_csum_settled(csum_add(l4sum, (__u16)~*f));
		c = csum_add(c, csum_diff_2(*f, v));
		*f = v;
	}
	ih->checksum = csum_fold(c);
	return 0;
}

/* Decision for a packet that would grow by `overhead`: 0 = fits, -1 =
 * answered with Packet Too Big (ACT_TX), -2 = drop (counted: the MTU left
 * is below IPv6's minimum, the rate limit of edge_icmp_limit.h, or the
 * error could not be built). IPv6 routers never fragment, so there is no
 * "pass to be fragmented" case. */
static __always_inline int edge6_mtu_check(void *ctx, const int xdp, const struct edge_config *cfg,
					   const struct edge6_pkt *p, const __u32 overhead)
{
	__u32 mtu = cfg->mtu;

	/* A GRO'd skb (tc) leaves as segments of the size they came in with,
	 * less the overhead (edge_mtu_check). */
	if (!xdp && ((struct __sk_buff *)ctx)->gso_size)
		return 0;
	if (IPV6_HLEN + (__u32)p->plen + overhead <= mtu)
		return 0;
	if (mtu >= EDGE6_MIN_MTU + overhead && !edge_icmp_allow(cfg, EDGE_ICMP_TOO_BIG)) {
		edge_count(DROP_ICMP_RATE);
		return -2;
	}
	if (mtu < EDGE6_MIN_MTU + overhead || edge6_icmp_error(ctx, xdp, p, ICMP6_PKT_TOOBIG, mtu - overhead, &p->t.daddr) < 0) {
		edge_count(DROP_TOO_BIG_ICMP_FAIL);
		return -2;
	}
	edge_count(EV_ICMP_TOO_BIG_SENT);
	return -1;
}

/* ip-option dispatch: DNAT, and on a TCP SYN / UDP datagram the 24-byte
 * Destination Options header naming VIP:port right behind the fixed
 * header (dsr_option.h). */
static __always_inline int edge6_xmit_option(void *ctx, const int xdp, const struct edge_config *cfg,
					     const struct edge6_pkt *p, const struct edge_backend6 *be,
					     int with_option, __u32 *ifindex)
{
	void *data, *end;
	struct ipv6hdr *ip6;
	struct dsr6_hdr *h;
	int big;

	if (with_option) {
		big = edge6_mtu_check(ctx, xdp, cfg, p, DSR6_HDR_LEN);
		if (big == -1)
			return ACT_TX;
		if (big == -2)
			return ACT_DROP;
	}
	if (edge6_dnat(ctx, xdp, p, be) < 0)
		return ACT_DROP;
	if (with_option) {
		if (edge_grow(ctx, xdp, DSR6_HDR_LEN, EDGE6_L4_OFF, 0) < 0) {
			edge_count(DROP_ADJUST);
			return ACT_DROP;
		}
		data = edge_data(ctx, xdp);
		end = edge_data_end(ctx, xdp);
		if (data + EDGE6_L4_OFF + DSR6_HDR_LEN > end)
			return ACT_DROP;
		ip6 = data + EDGE6_L3_OFF;
		h = data + EDGE6_L4_OFF;
		h->nexthdr = p->t.proto;
		h->hdrlen = DSR6_HDR_EXT_LEN;
		h->opt_type = DSR6_OPT_TYPE;
		h->opt_len = DSR6_OPT_DATA_LEN;
		h->port = p->t.dport;
		__builtin_memcpy(h->addr, &p->t.daddr, 16);
		h->pad_type = DSR6_PADN;
		h->pad_len = 0;
		ip6->nexthdr = IPPROTO_DSTOPTS;
		ip6->payload_len = bpf_htons(p->plen + DSR6_HDR_LEN);
	}
	return edge6_forward(ctx, xdp, cfg, &p->t.saddr, &be->node_ip,
			     IPV6_HLEN + p->plen + (with_option ? DSR6_HDR_LEN : 0), ifindex);
}

/* The outer fixed header of an IP6IP6 packet from the edge: outer_len
 * bytes in all (40, or more with the extension header the caller writes
 * behind it, nexthdr its type) in front of inner_len bytes. Traffic class
 * copied from the inner header's first word vtc, flow label = 20 bits of
 * the flow hash (the node's NIC spreads tunnels by it), hop limit 64. */
static __always_inline void edge6_ip6ip6_outer(struct ipv6hdr *ip6, const int outer_len, __u8 nexthdr,
					       __be32 vtc, __u32 hash, __u16 inner_len,
					       const struct pkt_addr6 *src, const struct pkt_addr6 *dst)
{
	*(__be32 *)ip6 = bpf_htonl(0x60000000 | (bpf_ntohl(vtc) & 0x0ff00000) | (hash & 0xfffff));
	ip6->payload_len = bpf_htons(outer_len - IPV6_HLEN + inner_len);
	ip6->nexthdr = nexthdr;
	ip6->hop_limit = 64;
	__builtin_memcpy(&ip6->saddr, src, 16);
	__builtin_memcpy(&ip6->daddr, dst, 16);
}

/* An IP6IP6 dispatch's encapsulation: room for outer_len bytes (the outer
 * fixed header, and any extension header the caller writes behind it,
 * nexthdr its type) in front of the client's packet, and the fixed header
 * filled from the edge's IPv6 address to the backend's node (*outer, all
 * outer_len bytes within the packet). Returns 0, or the verdict: Packet
 * Too Big sent (ACT_TX), or a drop. */
static __always_inline int edge6_ip6ip6_encap(void *ctx, const int xdp, const struct edge_config *cfg,
					      const struct edge_config6 *cfg6, const struct edge6_pkt *p,
					      const struct edge_backend6 *be, const int outer_len, __u8 nexthdr,
					      __u32 hash, struct ipv6hdr **outer)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct ipv6hdr *ip6 = data + EDGE6_L3_OFF;
	__be32 vtc;
	int big;

	if ((void *)(ip6 + 1) > end)
		return ACT_DROP;
	vtc = *(__be32 *)ip6;
	big = edge6_mtu_check(ctx, xdp, cfg, p, outer_len);
	if (big == -1)
		return ACT_TX;
	if (big == -2)
		return ACT_DROP;
	if (edge_grow(ctx, xdp, outer_len, ETH_HLEN, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6) < 0) {
		edge_count(DROP_ADJUST);
		return ACT_DROP;
	}
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	ip6 = data + EDGE6_L3_OFF;
	if ((void *)ip6 + outer_len > end)
		return ACT_DROP;
	edge6_ip6ip6_outer(ip6, outer_len, nexthdr, vtc, hash, IPV6_HLEN + p->plen, &cfg6->addr, &be->node_ip);
	*outer = ip6;
	return 0;
}

/* ipip dispatch: the client's packet untouched (but for its hop limit)
 * inside an outer IPv6 header to the backend's node (edge6_ip6ip6_encap). */
static __always_inline int edge6_xmit_ip6ip6(void *ctx, const int xdp, const struct edge_config *cfg,
					     const struct edge_config6 *cfg6, const struct edge6_pkt *p,
					     const struct edge_backend6 *be, __u32 hash, __u32 *ifindex)
{
	struct ipv6hdr *ip6;
	int act;

	act = edge6_ip6ip6_encap(ctx, xdp, cfg, cfg6, p, be, IPV6_HLEN, IPPROTO_IPV6, hash, &ip6);
	if (act)
		return act;
	return edge6_forward(ctx, xdp, cfg, &cfg6->addr, &be->node_ip, IPV6_HLEN + IPV6_HLEN + p->plen, ifindex);
}

#endif
