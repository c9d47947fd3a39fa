/* Edge program: ICMP — answering "fragmentation needed" for packets that
 * would exceed the MTU once the DSR option / IPIP header is added, the
 * routing hop (TTL decrement, time-exceeded), and the shared error builder
 * (steering of ICMP errors about a VIP flow: edge_steer.h). Every error the
 * edge builds first takes a token from its kind's bucket (edge_icmp_limit.h). */
#ifndef EDGELB_EDGE_ICMP_H
#define EDGELB_EDGE_ICMP_H

#include <linux/ip.h>
#include "csum.h"
#include "parse.h"
#include "edge_xmit.h"
#include "edge_layout.h"
#include "edge_icmp_limit.h"

/* Frame of the answer: Ethernet, IPv4 (20), ICMP (8), quoted IPv4 header
 * (20) and the first 8 bytes of its payload. */
#define EDGE_ICMP_QUOTE 28
#define EDGE_ICMP_FRAME (ETH_HLEN + 20 + 8 + EDGE_ICMP_QUOTE)

/* tc only: a TCP segment or UDP datagram from a sender on this host (over
 * a veth) arrives with its checksum still pending (CHECKSUM_PARTIAL: the
 * sender's stack left the sum to "the device", which stores it at
 * csum_start + csum_offset, the L4 checksum field). The kernel keeps that
 * state through our rewrite and refuses to cut the skb before the end of
 * that field (bpf_skb_change_tail's minimum length), so a TCP segment's
 * 8-byte quote cannot be made: its quote holds the whole 20-byte TCP
 * header instead (RFC 1812 4.3.2.3 asks for as much of the datagram as
 * fits in 576 bytes). */
#define EDGE_ICMP_QUOTE_PENDING (20 + 20)
#define EDGE_ICMP_FRAME_PENDING (ETH_HLEN + 20 + 8 + EDGE_ICMP_QUOTE_PENDING)

/* The answer built from such a packet still carries the pending state:
 * a device without checksum offload (skb_checksum_help) or a NIC completes
 * it on the way out by summing from the quoted L4 header to the end and
 * storing ~sum into the quoted L4 checksum field — after the ICMP checksum
 * was computed, which would then be wrong — while a veth hands it on
 * uncompleted. Setting that field to the value the completion would store
 * makes completing it change nothing: with s the one's-complement sum of
 * the quoted L4 bytes (`words` 16-bit words) without the field, the field
 * v must satisfy v = ~(s + v), i.e. 2v = -s in one's-complement (mod
 * 0xffff) arithmetic, v = -s * 2^-1 with 2^-1 = 0x8000; the kernel never
 * stores 0 (it stores 0xffff instead), so neither do we (edge_csum_settled:
 * v from s, the sum without the field). A quoted L4
 * checksum has no use to the client (it cannot check a truncated
 * datagram); the ports and TCP sequence number stay as they were.
 * A UDP datagram's pending checksum does not stop the 8-byte cut (its
 * field is the quote's last two bytes), so tc cannot tell whether it is
 * pending: in tc a quoted UDP checksum is always settled this way. */
static __always_inline __u16 edge_csum_settled(__u32 s)
{
	__u32 n = (__u16)~csum_fold_nocpl(s); /* -s */

	n = (n & 1) ? (n + 0xffff) >> 1 : n >> 1;
	return (n == 0 || n == 0xffff) ? 0xffff : (__u16)n;
}

static __always_inline void edge_icmp_settle_pending(__u16 *l4, const int words, const int field)
{
	__u32 s = 0;

#pragma unroll
	for (int i = 0; i < words; i++)
		if (i != field)
			s += l4[i];
	l4[field] = edge_csum_settled(s);
}

/* Turn the frame (untagged, IHL 5, at least 14 + 28 bytes) into an ICMP
 * error of `type`/`code` (for fragmentation-needed, RFC 1191, advertising
 * next-hop MTU `mtu`) about it, from `saddr` (0: the address the client
 * sent to), back out of the ingress interface with the MAC addresses
 * swapped. */
static __always_inline int edge_icmp_error(void *ctx, const int xdp, __u8 type, __u8 code, __u16 mtu,
					   __be32 from)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct ethhdr *eth = data;
	struct iphdr *ip = data + EDGE_L3_OFF;
	__u8 dmac[ETH_ALEN], smac[ETH_ALEN];
	__be32 saddr, daddr;
	struct pkt_icmphdr *ih;
	__u32 c = 0;
	int pending = 0;

	if (data + ETH_HLEN + EDGE_ICMP_QUOTE > end)
		return -1;
	__builtin_memcpy(dmac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(smac, eth->h_dest, ETH_ALEN);
	saddr = from ? from : ip->daddr;
	daddr = ip->saddr;

	/* 28 new bytes in front of the original IPv4 header: it becomes the
	 * quote, and is cut 8 bytes after its end. */
	if (edge_grow(ctx, xdp, 28, ETH_HLEN, 0) < 0)
		return -1;
	if (edge_trim(ctx, xdp, EDGE_ICMP_FRAME) < 0) {
		/* tc: a TCP segment with a pending checksum (see above). */
		if (xdp || edge_trim(ctx, xdp, EDGE_ICMP_FRAME_PENDING) < 0)
			return -1;
		pending = 1;
	}
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	if (data + EDGE_ICMP_FRAME > end)
		return -1;
	eth = data;
	ip = data + EDGE_L3_OFF;
	ih = data + EDGE_L4_OFF;

	__builtin_memcpy(eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, smac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);

	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0xc0; /* internetwork control, as routers send ICMP errors */
	ip->tot_len = bpf_htons(20 + 8 + (pending ? EDGE_ICMP_QUOTE_PENDING : EDGE_ICMP_QUOTE));
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_ICMP;
	ip->saddr = saddr;
	ip->daddr = daddr;
	ipv4_csum20_set(ip);

	ih->type = type;
	ih->code = code;
	ih->checksum = 0;
	ih->un.frag.unused = 0;
	ih->un.frag.mtu = bpf_htons(mtu);
	/* Quoted header: IPv4 at EDGE_ICMP_FRAME - 28, L4 at EDGE_ICMP_FRAME - 8. */
	if (!xdp && !pending && ((struct iphdr *)(data + EDGE_ICMP_FRAME - 28))->protocol == IPPROTO_UDP)
		edge_icmp_settle_pending(data + EDGE_ICMP_FRAME - 8, 4, 3); /* checksum: bytes 6..7 */
	{
		__u16 *w = (__u16 *)ih;

#pragma unroll
		for (int i = 0; i < (8 + EDGE_ICMP_QUOTE) / 2; i++)
			c += w[i];
	}
	if (pending) {
		__u16 *w = data + EDGE_ICMP_FRAME;

		if (data + EDGE_ICMP_FRAME_PENDING > end)
			return -1;
		edge_icmp_settle_pending(data + EDGE_ICMP_FRAME - 8, 10, 8); /* TCP checksum: bytes 16..17 */
#pragma unroll
		for (int i = 0; i < (EDGE_ICMP_FRAME_PENDING - EDGE_ICMP_FRAME) / 2; i++)
			c += w[i];
	}
	ih->checksum = csum_fold(c);
	return 0;
}

static __always_inline int edge_icmp_too_big(void *ctx, const int xdp, __u16 mtu)
{
	if (edge_icmp_error(ctx, xdp, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, mtu, 0) < 0)
		return -1;
	edge_count(EV_ICMP_TOO_BIG_SENT);
	return 0;
}

/* The edge is a routing hop: the packet it forwards (dispatched to a
 * backend, a SNAT reply to its client, a steered ICMP error) leaves with
 * its TTL one lower, so traceroute shows the edge as a hop and a routing
 * loop through it ends. One that arrives with TTL ≤ 1 is not forwarded: a
 * client's packet is answered with ICMP time-exceeded from the edge's
 * address (`answer`) while the rate limit allows (else dropped as
 * DROP_ICMP_RATE), anything else (an ICMP error: no error about an error)
 * is dropped. Returns 0 (decremented), -1 (answered: ACT_TX), -2 (drop).
 * Untagged, IHL-5 frames only (the callers verified both). */
static __always_inline int edge_hop(void *ctx, const int xdp, const struct edge_config *cfg, int answer)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct iphdr *ip = data + EDGE_L3_OFF;
	__be16 old, new;

	if ((void *)(ip + 1) > end)
		return -2;
	if (ip->ttl <= 1) {
		if (answer && !edge_icmp_allow(cfg, EDGE_ICMP_TIME_EXCEEDED)) {
			edge_count(DROP_ICMP_RATE);
			return -2;
		}
		if (answer && edge_icmp_error(ctx, xdp, ICMP_TIME_EXCEEDED, 0, 0, cfg->addr) == 0) {
			edge_count(EV_TTL_EXCEEDED);
			return -1;
		}
		edge_count(DROP_TTL);
		return -2;
	}
	old = *(__be16 *)&ip->ttl; /* TTL and protocol: one 16-bit word */
	ip->ttl--;
	new = *(__be16 *)&ip->ttl;
	csum_replace2(&ip->check, old, new);
	return 0;
}

/* Decision for a packet that would grow by `overhead`: 0 = fits, 1 = too
 * big without DF (forward, but let the stack fragment it), -1 = answered
 * with an ICMP (return ACT_TX), -2 = not answered (drop): the rate limit
 * (DROP_ICMP_RATE) or the ICMP could not be built. */
static __always_inline int edge_mtu_check(void *ctx, const int xdp, const struct edge_config *cfg,
					  __u16 ip_len, __be16 frag_off, __u16 overhead)
{
	/* A GRO'd skb (tc) is many segments; they leave as segments of the
	 * size they came in with (encapsulation shrinks gso_size by the outer
	 * header: bpf_skb_adjust_room without BPF_F_ADJ_ROOM_FIXED_GSO). */
	if (!xdp && ((struct __sk_buff *)ctx)->gso_size)
		return 0;
	if ((__u32)ip_len + overhead <= cfg->mtu)
		return 0;
	if (!(frag_off & bpf_htons(0x4000))) {
		edge_count(EV_TOO_BIG_PASS);
		return 1;
	}
	if (!edge_icmp_allow(cfg, EDGE_ICMP_TOO_BIG)) {
		edge_count(DROP_ICMP_RATE);
		return -2;
	}
	if (edge_icmp_too_big(ctx, xdp, cfg->mtu - overhead) < 0) {
		edge_count(DROP_TOO_BIG_ICMP_FAIL);
		return -2;
	}
	return -1;
}

#endif
