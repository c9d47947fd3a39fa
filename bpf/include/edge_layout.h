/* Edge program: the fixed frame layout every rewrite assumes (untagged
 * Ethernet, IPv4 without options), the L4 sanity check applied before
 * anything is rewritten, and the one address/port rewrite every dispatch
 * uses. */
#ifndef EDGELB_EDGE_LAYOUT_H
#define EDGELB_EDGE_LAYOUT_H

#include <stddef.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"
#include "csum.h"
#include "l4_csum.h"

#define EDGE_L3_OFF ETH_HLEN
#define EDGE_L4_OFF (ETH_HLEN + 20)

/* The L4 header must agree with the IP length: a TCP data offset or UDP
 * length that points past the packet would be forwarded as garbage. */
static __always_inline int edge_l4_sane(void *data, void *end, const struct pkt *p)
{
	__u32 l4_len = p->ip_len - p->ihl_bytes;

	if (p->l4_proto == IPPROTO_TCP) {
		struct tcphdr *th = data + EDGE_L4_OFF;

		if ((void *)(th + 1) > end)
			return 0;
		return (__u32)th->doff * 4 <= l4_len;
	}
	{
		struct udphdr *uh = data + EDGE_L4_OFF;
		__u32 ulen;

		if ((void *)(uh + 1) > end)
			return 0;
		ulen = bpf_ntohs(uh->len);
		return ulen >= sizeof(*uh) && ulen <= l4_len;
	}
}

/* Whether the frame came with a VLAN tag: in the frame (parse.h), or on tc
 * also one the kernel moved out of it (skb->vlan_tci) before tc ingress. */
static __always_inline int edge_tagged(void *ctx, const int xdp, const struct pkt *p)
{
	return p->has_vlan || (!xdp && ((struct __sk_buff *)ctx)->vlan_present);
}

#define EDGE_RW_DST 0  /* destination address and port only */
#define EDGE_RW_BOTH 1 /* source and destination */

/* Rewrite the addresses and ports of the TCP/UDP frame (untagged, IHL 5,
 * L4 header verified by the caller) with both checksums. The IPv4 header
 * checksum is updated by hand (it is never offloaded). The L4 checksum: in
 * XDP by hand (frames from the wire carry a full checksum); in tc through
 * bpf_l4_csum_replace, which knows the skb's checksum state — a GRO'd
 * segment is CHECKSUM_PARTIAL (its field holds only the pseudo-header sum,
 * so a port change must not touch it) and a CHECKSUM_COMPLETE skb's sum
 * must follow the pseudo-header change. Packet pointers are invalid
 * afterwards. */
static __always_inline int edge_rewrite(void *ctx, const int xdp, __u8 proto, int which,
					__be32 saddr, __be16 sport, __be32 daddr, __be16 dport)
{
	void *data, *end;
	struct iphdr *ip;
	__be16 *ports, old_sport, old_dport;
	__be32 old_saddr, old_daddr;
	__u32 ipdiff, csum_off;
	__sum16 *check;
	__u64 mangled;

	if (xdp) {
		data = (void *)(long)((struct xdp_md *)ctx)->data;
		end = (void *)(long)((struct xdp_md *)ctx)->data_end;
	} else {
		data = (void *)(long)((struct __sk_buff *)ctx)->data;
		end = (void *)(long)((struct __sk_buff *)ctx)->data_end;
	}
	ip = data + EDGE_L3_OFF;
	ports = data + EDGE_L4_OFF;
	if (l4_csum_fields(data, end, EDGE_L4_OFF, proto, &check, &csum_off, &mangled) < 0)
		return -1;
	old_saddr = ip->saddr;
	old_daddr = ip->daddr;
	old_sport = ports[0];
	old_dport = ports[1];
	if (which == EDGE_RW_DST) {
		saddr = old_saddr;
		sport = old_sport;
	}
	ipdiff = csum_diff_4(old_saddr, saddr) + csum_diff_4(old_daddr, daddr);
	if (xdp)
		l4_csum_rewrite_xdp(check, proto, ipdiff, old_sport, sport, old_dport, dport);
	ports[0] = sport;
	ports[1] = dport;
	csum_apply_diff(&ip->check, ipdiff);
	ip->saddr = saddr;
	ip->daddr = daddr;
	if (xdp)
		return 0;
	{
		struct __sk_buff *skb = ctx;

		if (old_saddr != saddr &&
		    bpf_l4_csum_replace(skb, csum_off, old_saddr, saddr, BPF_F_PSEUDO_HDR | mangled | 4))
			return -1;
		if (old_daddr != daddr &&
		    bpf_l4_csum_replace(skb, csum_off, old_daddr, daddr, BPF_F_PSEUDO_HDR | mangled | 4))
			return -1;
		if (old_sport != sport && bpf_l4_csum_replace(skb, csum_off, old_sport, sport, mangled | 2))
			return -1;
		if (old_dport != dport && bpf_l4_csum_replace(skb, csum_off, old_dport, dport, mangled | 2))
			return -1;
	}
	return 0;
}

#endif
