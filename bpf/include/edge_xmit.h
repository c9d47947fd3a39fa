/* Edge program: the XDP/tc abstraction. The logic in edge.c is written once
 * against `void *ctx` plus a compile-time constant `xdp`; every function is
 * __always_inline, so each program section gets its own specialised copy
 * with the other hook's branches folded away. */
#ifndef EDGELB_EDGE_XMIT_H
#define EDGELB_EDGE_XMIT_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "edge_maps.h"
#include "edge_counters.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* Hook-independent verdicts; edge_verdict() maps them. */
enum edge_act {
	ACT_PASS = 0,
	ACT_DROP,
	ACT_TX,       /* back out of the ingress interface */
	ACT_REDIRECT, /* out of *ifindex */
};

static __always_inline void *edge_data(void *ctx, const int xdp)
{
	if (xdp)
		return (void *)(long)((struct xdp_md *)ctx)->data;
	return (void *)(long)((struct __sk_buff *)ctx)->data;
}

static __always_inline void *edge_data_end(void *ctx, const int xdp)
{
	if (xdp)
		return (void *)(long)((struct xdp_md *)ctx)->data_end;
	return (void *)(long)((struct __sk_buff *)ctx)->data_end;
}

/* Was the frame sent to a link-layer group address (broadcast, multicast),
 * or from one (no sender has one: IEEE 802 source addresses are
 * individual)? Such a frame is not the edge's to forward or answer: Linux
 * forwards and answers only frames addressed to it (ip_forward and
 * ip6_forward drop pkt_type != PACKET_HOST, icmp_send does not answer
 * them). Served, one forged broadcast reached a pod once per edge on the
 * segment, each edge remembering the flow, and an ICMP error went out from
 * the group address (the error swaps the frame's MACs) or to it. */
static __always_inline int edge_l2_group(const void *data, const void *end)
{
	const struct ethhdr *eth = data;

	if ((const void *)(eth + 1) > end)
		return 1;
	return (eth->h_dest[0] | eth->h_source[0]) & 1;
}

/* Was the frame addressed to another host's unicast MAC? A NIC passes such
 * frames up only while it is promiscuous (tcpdump, a bridge) — a switch
 * floods a unicast frame whose destination it has not learnt, and this
 * edge then sees what another edge is to serve. The kernel drops them
 * (PACKET_OTHERHOST); forwarded, each such packet reached its pod twice.
 * Checked against edge_config.own_mac, the uplink's, when CFG_F_DST_MAC
 * says so: such a frame is counted here (EV_OTHER_HOST) and left to the
 * stack by the caller. Group addresses are edge_l2_group's. */
static __always_inline int edge_other_host(const struct edge_config *cfg, const void *data, const void *end)
{
	const struct ethhdr *eth = data;
	const __u8 *m = cfg->own_mac;

	if (!(cfg->flags & CFG_F_DST_MAC) || (const void *)(eth + 1) > end || (eth->h_dest[0] & 1))
		return 0;
	if (((eth->h_dest[0] ^ m[0]) | (eth->h_dest[1] ^ m[1]) | (eth->h_dest[2] ^ m[2]) |
	     (eth->h_dest[3] ^ m[3]) | (eth->h_dest[4] ^ m[4]) | (eth->h_dest[5] ^ m[5])) == 0)
		return 0;
	edge_count(EV_OTHER_HOST);
	return 1;
}

/* The same for an IPv6 frame, before the IPv6 program. (IPv4 frames are
 * checked once they are known to be for a service, so the pass path pays
 * nothing.) */
static __always_inline int edge_frame_other_host(void *ctx, const int xdp)
{
	struct edge_config *cfg;
	__u32 zero = 0;

	cfg = bpf_map_lookup_elem(&edge_config, &zero);
	return cfg && edge_other_host(cfg, edge_data(ctx, xdp), edge_data_end(ctx, xdp));
}

/* tc: clang may keep &skb->data_end computed once in the caller and spill
 * it; the verifier refuses a load through such a modified context pointer
 * ("dereference of modified ctx ptr"). A context pointer laundered before
 * such a read is read afresh (as edge6_ctx_fresh, edge_snat6.h). Needed in
 * edge_snat_reverse and edge_process6's hop since the ICMP rate limit
 * changed clang's register allocation there. */
static __always_inline void *edge_ctx_fresh(void *ctx)
{
	asm volatile("" : "+r"(ctx));
	return ctx;
}

static __always_inline __u32 edge_ifindex(void *ctx, const int xdp)
{
	if (xdp)
		return ((struct xdp_md *)ctx)->ingress_ifindex;
	return ((struct __sk_buff *)ctx)->ifindex;
}

/* Open n bytes of room after the first `keep` bytes of the frame (keep is
 * 14 = after Ethernet, or 34 = after Ethernet + a 20-byte IPv4 header).
 * XDP grows the head and slides the kept headers down; tc asks the kernel
 * (bpf_skb_adjust_room keeps skb metadata such as GSO consistent).
 * Invalidates every packet pointer. n and keep must be constants. */
static __always_inline int edge_grow(void *ctx, const int xdp, const int n, const int keep,
				     __u64 tc_flags)
{
	if (xdp) {
		void *data, *end;
		__u16 *d, *s;

		if (bpf_xdp_adjust_head(ctx, -n))
			return -1;
		data = edge_data(ctx, xdp);
		end = edge_data_end(ctx, xdp);
		if (data + n + keep > end)
			return -1;
		/* Forward copy is safe: every write lands below the next read
		 * (n ≥ 8, so an 8-byte chunk never overlaps one not yet read). */
		{
			__u64 *d8 = data, *s8 = data + n;

#pragma unroll
			for (int i = 0; i < keep / 8; i++)
				d8[i] = s8[i];
		}
		d = data + (keep & ~7);
		s = data + n + (keep & ~7);
#pragma unroll
		for (int i = 0; i < (keep & 7) / 2; i++)
			d[i] = s[i];
		return 0;
	}
	if (keep == ETH_HLEN)
		return bpf_skb_adjust_room(ctx, n, BPF_ADJ_ROOM_MAC, tc_flags) ? -1 : 0;
	/* keep = ETH_HLEN + 20: room between the IPv4 base header and L4. */
	return bpf_skb_adjust_room(ctx, n, BPF_ADJ_ROOM_NET, tc_flags) ? -1 : 0;
}

/* Cut the frame to `len` bytes. */
static __always_inline int edge_trim(void *ctx, const int xdp, __u32 len)
{
	if (xdp) {
		long cur = (long)edge_data_end(ctx, xdp) - (long)edge_data(ctx, xdp);

		return bpf_xdp_adjust_tail(ctx, (int)((long)len - cur)) ? -1 : 0;
	}
	if (bpf_skb_change_tail(ctx, len, 0))
		return -1;
	/* What is left may still lie partly outside the linear head. */
	return bpf_skb_pull_data(ctx, len) ? -1 : 0;
}

/* FIB results cached per CPU for up to EDGE_FIB_TTL_NS, direct-mapped by
 * destination: a hit costs an inlined array lookup and a coarse clock read
 * instead of bpf_fib_lookup (≈ 70 ns here). The cache key is (destination,
 * ingress interface); source-dependent policy routing is not consulted per
 * packet, and a neighbour or route change takes effect within the TTL. */
#define EDGE_FIB_CACHE_SLOTS 256
#define EDGE_FIB_TTL_NS 1000000000ull

struct edge_fib_slot {
	__be32 dst;
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
	__type(value, struct edge_fib_slot);
} edge_fib_cache SEC(".maps");

/* Send the (already rewritten) frame towards `dst` (the backend's node, or
 * a client): FIB lookup, MAC rewrite, TX or redirect. Failure to resolve
 * is not a drop — the stack gets the rewritten packet and routes it (or
 * resolves the neighbour) itself. */
static __always_inline int edge_forward(void *ctx, const int xdp, const struct edge_config *cfg,
					__be32 src, __be32 dst, __u16 tot_len, __u32 *ifindex)
{
	struct bpf_fib_lookup fib = {};
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct ethhdr *eth = data;
	__u32 in_if = edge_ifindex(ctx, xdp);
	long rc;

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
	{
		__u32 slot_idx = (bpf_ntohl(dst) ^ (bpf_ntohl(dst) >> 8)) & (EDGE_FIB_CACHE_SLOTS - 1);
		struct edge_fib_slot *slot = 0;
		__u64 now = 0;

		if (!(cfg->flags & CFG_F_NO_FIB_CACHE)) {
			slot = bpf_map_lookup_elem(&edge_fib_cache, &slot_idx);
			now = bpf_ktime_get_coarse_ns();
			if (slot && slot->dst == dst && slot->in_if == in_if && now < slot->expires) {
				__builtin_memcpy(eth->h_dest, slot->dmac, ETH_ALEN);
				__builtin_memcpy(eth->h_source, slot->smac, ETH_ALEN);
				if (slot->out_if == in_if)
					return ACT_TX;
				*ifindex = slot->out_if;
				return ACT_REDIRECT;
			}
		}
		fib.family = AF_INET;
		fib.ipv4_src = src;
		fib.ipv4_dst = dst;
		/* tc: no tot_len, so the kernel checks the skb itself against
		 * the route's MTU — GSO-aware (a GRO'd skb leaves as segments). */
		fib.tot_len = xdp ? tot_len : 0;
		fib.ifindex = in_if;
		rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
		if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
			edge_count(EV_FIB_PASS);
			return ACT_PASS;
		}
		if (slot) {
			slot->dst = dst;
			slot->in_if = in_if;
			slot->out_if = fib.ifindex;
			__builtin_memcpy(slot->smac, fib.smac, ETH_ALEN);
			__builtin_memcpy(slot->dmac, fib.dmac, ETH_ALEN);
			slot->expires = now + EDGE_FIB_TTL_NS;
		}
	}
	/* bpf_fib_lookup does not touch the packet: pointers are still valid. */
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (fib.ifindex == in_if)
		return ACT_TX;
	*ifindex = fib.ifindex;
	return ACT_REDIRECT;
}

static __always_inline int edge_verdict(void *ctx, const int xdp, int act, __u32 ifindex)
{
	if (xdp) {
		switch (act) {
		case ACT_DROP:
			return XDP_DROP;
		case ACT_TX:
			return XDP_TX;
		case ACT_REDIRECT:
			return bpf_redirect(ifindex, 0);
		default:
			return XDP_PASS;
		}
	}
	switch (act) {
	case ACT_DROP:
		return TC_ACT_SHOT;
	case ACT_TX:
		return bpf_redirect(((struct __sk_buff *)ctx)->ifindex, 0);
	case ACT_REDIRECT:
		return bpf_redirect(ifindex, 0);
	default:
		return TC_ACT_OK;
	}
}

#endif
