/* Edge program, IPv6: the second chance (docs/second-chance.md) for IPv6
 * flows — edge_second_chance.h's rules over the IPv6 maps, with the 64-byte
 * Destination Options header of sc_option.h instead of the 20-byte IPv4
 * option.
 *
 * Shared with IPv4: the decision itself (edge_sc_decide, edge_sc_syn),
 * edge_sc_prev (indexed by service id, and IPv6 frontends share the id
 * space and edge_ring), struct edge_sc_pair and edge_sc_stats. IPv6's own:
 * edge_sc_flows6, the decisions for flows sent with a secondary, keyed by
 * the IPv6 5-tuple as edge_ct6.
 *
 * Only the miss path of edge_process6 comes here (TCP, no edge_ct6 entry,
 * DSR service: IPv6 SNAT has no second chance, as IPv4's). Its functions
 * take (void *ctx, const int xdp) like edge.c's. */
#ifndef EDGELB_EDGE_SECOND_CHANCE6_H
#define EDGELB_EDGE_SECOND_CHANCE6_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse6.h"
#include "sc_option.h"
#include "edge_maps6.h"
#include "edge_select6.h"
#include "edge_dsr6.h"
#include "edge_second_chance.h"

/* A quarter of edge_sc_flows' full size, as edge_ct6 is of edge_ct's (the shared flow budget, edge_maps6.h). */
#define EDGE_SC_FLOWS6_ENTRIES (1 << 15)

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EDGE_SC_FLOWS6_ENTRIES);
	__type(key, struct edge_ct6_key);
	__type(value, struct edge_sc_pair);
} edge_sc_flows6 SEC(".maps");

/* edge_sc_decide over the IPv6 pairs. */
static __always_inline struct edge_backend6 *edge_second_chance6(const struct edge_config *cfg,
								 const struct edge_svc *svc,
								 const struct edge_ct6_key *ck, __u32 hash,
								 __u8 tcp_flags, struct edge_backend6 **be,
								 __u32 *be_id)
{
	void *pri = *be;
	struct edge_backend6 *sec = edge_sc_decide(1, cfg, svc, &edge_sc_flows6, ck, ck->saddr.w, hash,
						   tcp_flags, &pri, be_id);

	*be = pri;
	return sec;
}

/* edge_sc_syn over the IPv6 pairs. */
static __always_inline void edge_sc_syn6(const struct edge_config *cfg, const struct edge_svc *svc,
					 const struct edge_ct6_key *ck, struct edge_backend6 **be, __u32 *be_id)
{
	void *to = *be;

	edge_sc_syn(1, cfg, svc, &edge_sc_flows6, ck, &to, be_id);
	*be = to;
}

static __always_inline void edge6_sc_fill(struct sc6_hdr *h, __u8 nexthdr, const struct edge6_pkt *p,
					  const struct edge_backend6 *sec)
{
	h->nexthdr = nexthdr;
	h->hdrlen = SC6_HDR_EXT_LEN;
	h->opt_type = DSR6_OPT_TYPE;
	h->opt_len = SC6_OPT_DATA_LEN;
	h->port = p->t.dport;
	__builtin_memcpy(h->vip, &p->t.daddr, 16);
	__builtin_memcpy(h->sec_ip, &sec->ip, 16);
	h->sec_port = sec->port;
	h->flags = 0;
	h->reserved = 0;
	__builtin_memcpy(h->sec_node, &sec->node_ip, 16);
	h->pad_type = DSR6_PADN;
	h->pad_len = SC6_PADN_LEN;
	__builtin_memset(h->pad, 0, SC6_PADN_LEN);
}

/* ip-option dispatch: DNAT to the primary pod, then the 64-byte header
 * right behind the fixed one. Too big: Packet Too Big with MTU − 64. */
static __always_inline int edge6_sc_xmit_option(void *ctx, const int xdp, const struct edge_config *cfg,
						const struct edge6_pkt *p, const struct edge_backend6 *be,
						const struct edge_backend6 *sec, __u32 *ifindex)
{
	void *data, *end;
	struct ipv6hdr *ip6;
	int big;

	big = edge6_mtu_check(ctx, xdp, cfg, p, SC6_HDR_LEN);
	if (big == -1)
		return ACT_TX;
	if (big == -2)
		return ACT_DROP;
	if (edge6_dnat(ctx, xdp, p, be) < 0)
		return ACT_DROP;
	if (edge_grow(ctx, xdp, SC6_HDR_LEN, EDGE6_L4_OFF, 0) < 0) {
		edge_count(DROP_ADJUST);
		return ACT_DROP;
	}
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	if (data + EDGE6_L4_OFF + SC6_HDR_LEN > end)
		return ACT_DROP;
	ip6 = data + EDGE6_L3_OFF;
	edge6_sc_fill(data + EDGE6_L4_OFF, p->t.proto, p, sec);
	ip6->nexthdr = IPPROTO_DSTOPTS;
	ip6->payload_len = bpf_htons(p->plen + SC6_HDR_LEN);
	return edge6_forward(ctx, xdp, cfg, &p->t.saddr, &be->node_ip, IPV6_HLEN + p->plen + SC6_HDR_LEN,
			     ifindex);
}

/* IPv6-in-IPv6: the outer fixed header (edge6_ip6ip6_encap), then the
 * 64-byte header (next header 41), then the client's packet untouched but
 * for its hop limit. */
static __always_inline int edge6_sc_xmit_ip6ip6(void *ctx, const int xdp, const struct edge_config *cfg,
						const struct edge_config6 *cfg6, const struct edge6_pkt *p,
						const struct edge_backend6 *be, const struct edge_backend6 *sec,
						__u32 hash, __u32 *ifindex)
{
	const int outer = IPV6_HLEN + SC6_HDR_LEN;
	struct ipv6hdr *ip6;
	int act;

	act = edge6_ip6ip6_encap(ctx, xdp, cfg, cfg6, p, be, outer, IPPROTO_DSTOPTS, hash, &ip6);
	if (act)
		return act;
	edge6_sc_fill((void *)(ip6 + 1), IPPROTO_IPV6, p, sec);
	return edge6_forward(ctx, xdp, cfg, &cfg6->addr, &be->node_ip, outer + IPV6_HLEN + p->plen, ifindex);
}

/* Inlined into edge_process6, unlike IPv4's edge_sc_xmit subprogram: a
 * frame of its own under edge_xdp6 exceeded BPF's 512-byte stack (560),
 * and inlined the program verifies. Hook-generic like the dispatch helpers
 * it builds on (edge_dsr6.h): edge_xdp6 and edge_tc6 both reach it. */
static __always_inline int edge6_sc_xmit(void *ctx, const int xdp, const struct edge_config *cfg,
					 const struct edge_config6 *cfg6, const struct edge6_pkt *p,
					 const struct edge_backend6 *be, const struct edge_backend6 *sec,
					 __u32 hash, __u32 *ifindex)
{
	if (be->flags & BE_F_IPIP)
		return edge6_sc_xmit_ip6ip6(ctx, xdp, cfg, cfg6, p, be, sec, hash, ifindex);
	return edge6_sc_xmit_option(ctx, xdp, cfg, p, be, sec, ifindex);
}

#endif
