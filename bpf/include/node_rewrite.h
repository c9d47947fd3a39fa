/* Node program: rewriting packets in place — one address and port with
 * both checksums, removing the DSR option, and re-addressing an ICMP error
 * together with the packet it quotes; for IPv6, one address and port (the
 * upper-layer checksum only: IPv6 has no header checksum) and removing the
 * Destination Options DSR header. */
#ifndef EDGELB_NODE_REWRITE_H
#define EDGELB_NODE_REWRITE_H

#include <linux/bpf.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"
#include "csum.h"
#include "csum6.h"
#include "l4_csum.h"
#include "parse6.h"
#include "dsr_option.h"
#include "node_parse.h"
#include "node_verdict.h"

/* Which end of a packet a rewrite changes. */
#define REWRITE_SRC 0
#define REWRITE_DST 1

/* Rewrite one address (+ port) of the IPv4/L4 headers at l3_off/l4_off.
 * Stores through packet pointers first (IP checksum by hand: it is never
 * offloaded), then fixes the L4 checksum with the skb helper, which knows
 * about CHECKSUM_PARTIAL/COMPLETE. Packet pointers are invalid afterwards. */
static __always_inline enum node_step rewrite_l3l4(struct __sk_buff *skb, __u32 l3_off,
						   __u32 l4_off, __u8 proto, int which,
						   __be32 new_ip, __be16 new_port)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct iphdr *ip = data + l3_off;
	__be32 old_ip;
	__be16 old_port, *portp;
	__sum16 *check;
	__u32 csum_off;
	__u64 mangled;

	if (l3_off > 64 || l4_off > 128)
		return STEP_REWRITE_FAILED;
	if ((void *)(ip + 1) > data_end)
		return STEP_REWRITE_FAILED;
	if (l4_csum_fields(data, data_end, l4_off, proto, &check, &csum_off, &mangled) < 0)
		return STEP_REWRITE_FAILED;
	portp = (__be16 *)(data + l4_off) + (which == REWRITE_DST); /* source, destination */
	old_ip = which == REWRITE_DST ? ip->daddr : ip->saddr;
	old_port = *portp;
	if (which == REWRITE_DST)
		ip->daddr = new_ip;
	else
		ip->saddr = new_ip;
	csum_replace4(&ip->check, old_ip, new_ip);
	*portp = new_port;

	if (old_ip != new_ip &&
	    bpf_l4_csum_replace(skb, csum_off, old_ip, new_ip,
				BPF_F_PSEUDO_HDR | mangled | sizeof(new_ip)))
		return STEP_REWRITE_FAILED;
	if (old_port != new_port &&
	    bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | sizeof(new_port)))
		return STEP_REWRITE_FAILED;
	return STEP_DONE;
}

/* Remove opt_len bytes of options right after the 20-byte base header
 * (our 8-byte option; second chance's 20-byte one, node_second_chance.h).
 * STEP_UNTOUCHED when the kernel would not shrink the packet (a VLAN tag in
 * the packet data, say): the option is then still there. */
static __always_inline enum node_step strip_ip_option(struct __sk_buff *skb, __u32 l3_off,
						      __u32 ihl_words, __u32 tot_len, __u32 opt_sum,
						      __u32 opt_len)
{
	void *data, *data_end;
	struct iphdr *ip;
	__be16 old_w0, new_w0, old_len, new_len;

	/* ADJ_ROOM_NET removes the bytes after the kernel's 20-byte IPv4 base
	 * header: exactly our option. The L4 checksum does not cover it, so
	 * CHECKSUM_UNNECESSARY stays true (NO_CSUM_RESET). */
	if (bpf_skb_adjust_room(skb, -(__s32)opt_len, BPF_ADJ_ROOM_NET,
				BPF_F_ADJ_ROOM_NO_CSUM_RESET))
		return STEP_UNTOUCHED;
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	if (l3_off > 64)
		return STEP_REWRITE_FAILED;
	ip = data + l3_off;
	if ((void *)(ip + 1) > data_end)
		return STEP_REWRITE_FAILED;
	old_w0 = *(__be16 *)ip; /* version, IHL, TOS */
	ip->ihl = ihl_words - opt_len / 4;
	new_w0 = *(__be16 *)ip;
	old_len = bpf_htons(tot_len);
	new_len = bpf_htons(tot_len - opt_len);
	ip->tot_len = new_len;
	/* Incremental (RFC 1624): take the option's words out of the sum and
	 * account for IHL and total length. A header whose checksum was wrong
	 * stays wrong, so the pod's stack still drops a corrupted packet. */
	csum_apply_diff(&ip->check, csum_diff_2(old_w0, new_w0) + csum_diff_2(old_len, new_len) +
					    (__u16)~(__u16)opt_sum);
	/* The header's sum is unchanged by an incremental update, so for a
	 * CHECKSUM_COMPLETE skb only the removed bytes, which the kernel
	 * subtracted, must be added back. A no-op error for other skbs. */
	bpf_csum_update(skb, opt_sum);
	return STEP_DONE;
}

static __always_inline enum node_step strip_option(struct __sk_buff *skb, __u32 l3_off,
						   __u32 ihl_words, __u32 tot_len, __u32 opt_sum)
{
	return strip_ip_option(skb, l3_off, ihl_words, tot_len, opt_sum, DSR_OPT_LEN);
}

/* Re-address an ICMP error (IHL-5 outer and quoted headers, at l3_off) and
 * the packet it quotes, as one: REWRITE_DST changes the error's destination
 * and the quote's source address and port (the quote is the packet the
 * error's receiver sent), REWRITE_SRC the error's source and the quote's
 * destination. from_ip/from_port must be what the fields hold. The IP,
 * quoted IP and ICMP checksums are updated together, so a
 * CHECKSUM_COMPLETE sum stays right without helpers; the quoted L4
 * checksum is left alone (receivers do not verify a quote's).
 * STEP_NOT_OURS when the headers are not where they must be. */
static __always_inline enum node_step readdress_icmp_error(void *data, void *data_end,
							   __u32 l3_off, int which,
							   __be32 from_ip, __be32 to_ip,
							   __be16 from_port, __be16 to_port)
{
	struct iphdr *ip, *qip;
	struct pkt_icmphdr *ih;
	__be16 *qports, old_qcheck;

	if (l3_off > 18)
		return STEP_NOT_OURS;
	ip = data + l3_off;
	ih = (void *)(ip + 1);
	qip = (void *)(ih + 1);
	qports = (void *)(qip + 1);
	if ((void *)(qports + 2) > data_end)
		return STEP_NOT_OURS;
	if (which == REWRITE_DST)
		ip->daddr = to_ip;
	else
		ip->saddr = to_ip;
	csum_replace4(&ip->check, from_ip, to_ip);
	old_qcheck = qip->check;
	if (which == REWRITE_DST) {
		qip->saddr = to_ip;
		qports[0] = to_port;
	} else {
		qip->daddr = to_ip;
		qports[1] = to_port;
	}
	csum_replace4(&qip->check, from_ip, to_ip);
	csum_apply_diff(&ih->checksum, csum_diff_4(from_ip, to_ip) + csum_diff_2(from_port, to_port) +
					       csum_diff_2(old_qcheck, qip->check));
	return STEP_DONE;
}

/* ---------------------------------------------------------------- IPv6 */

/* csum6.h's csum_diff_addr6 with fewer instructions, for the per-packet
 * rewrites: the eight 32-bit terms (~old, new) summed in 64 bits and folded
 * back to a 32-bit one's-complement sum (2^32 ≡ 1 mod 0xffff, so the carry
 * goes back in; the complement of a 32-bit word ≡ its negation). The same
 * difference modulo 0xffff as csum_diff_addr6's sixteen 16-bit terms, which
 * is all bpf_l4_csum_replace and bpf_csum_update use it for. */
static __always_inline __u32 addr6_csum_diff(const struct pkt_addr6 *from,
					     const struct pkt_addr6 *to)
{
	__u64 s = (__u64)(__u32)~from->w[0] + (__u32)~from->w[1] + (__u32)~from->w[2] +
		  (__u32)~from->w[3] + to->w[0] + to->w[1] + to->w[2] + to->w[3];

	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	return (__u32)s;
}

/* Rewrite one IPv6 address (+ port) at l3_off/l4_off. The address is
 * covered only by the upper-layer checksum (through the pseudo-header),
 * fixed by difference with bpf_l4_csum_replace(BPF_F_PSEUDO_HDR), which
 * handles CHECKSUM_PARTIAL. For a CHECKSUM_COMPLETE skb that helper takes
 * the difference out of skb->csum, right for IPv4 (whose header checksum
 * absorbs the address change) but not for IPv6, where the packet's sum is
 * unchanged (address +d, checksum field -d): bpf_csum_update puts it back
 * (an error, ignored, for any other skb). Only on receive (`rx`): on
 * transmit skb->csum of a CHECKSUM_COMPLETE skb is not used, and the
 * helper call is a visible share of a reply's cost. A UDP checksum of 0
 * (invalid over IPv6) stays 0, so the receiver still drops the datagram.
 * Packet pointers are invalid afterwards. */
static __always_inline enum node_step rewrite6_l3l4(struct __sk_buff *skb, __u32 l3_off,
						    __u32 l4_off, __u8 proto, int which,
						    const struct pkt_addr6 *new_ip, __be16 new_port,
						    int rx)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct ipv6hdr *ip6;
	struct pkt_addr6 old;
	__be32 *addr;
	__be16 old_port, *portp;
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
	portp = (__be16 *)(data + l4_off) + (which == REWRITE_DST); /* source, destination */
	addr = which == REWRITE_DST ? (__be32 *)&ip6->daddr : (__be32 *)&ip6->saddr;
	addr6_load(&old, addr);
	addr[0] = new_ip->w[0];
	addr[1] = new_ip->w[1];
	addr[2] = new_ip->w[2];
	addr[3] = new_ip->w[3];
	old_port = *portp;
	*portp = new_port;

	diff = addr6_csum_diff(&old, new_ip);
	if (!addr6_eq(&old, new_ip)) {
		if (bpf_l4_csum_replace(skb, csum_off, 0, diff, BPF_F_PSEUDO_HDR | mangled))
			return STEP_REWRITE_FAILED;
		if (rx)
			bpf_csum_update(skb, diff);
	}
	if (old_port != new_port &&
	    bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | sizeof(new_port)))
		return STEP_REWRITE_FAILED;
	return STEP_DONE;
}

/* readdress_icmp_error for IPv6: an ICMPv6 error (no extension header;
 * the fixed header at l3_off, the 8-byte ICMPv6 header, the quoted fixed
 * header with TCP/UDP ports right behind it) and the packet it quotes,
 * re-addressed as one. REWRITE_DST: the error's destination and the quote's
 * source address and port; REWRITE_SRC: the error's source and the quote's
 * destination. IPv6 has no header checksum; the ICMPv6 checksum covers the
 * pseudo-header's address and the quote's, so it moves by two address
 * differences and the port's. The packet's total sum is unchanged (every
 * change is matched by the checksum's), so a CHECKSUM_COMPLETE sum stays
 * right. The quoted L4 checksum is left alone, as for IPv4.
 * STEP_NOT_OURS when the headers are not where they must be. */
static __always_inline enum node_step readdress_icmp6_error(void *data, void *data_end,
							    __u32 l3_off, int which,
							    const struct pkt_addr6 *from_ip,
							    const struct pkt_addr6 *to_ip,
							    __be16 from_port, __be16 to_port)
{
	struct ipv6hdr *ip6, *q;
	struct pkt_icmp6hdr *ih;
	__be32 *outer_addr, *quote_addr;
	__be16 *qports;
	__u32 diff;

	if (l3_off > ETH_HLEN + 4)
		return STEP_NOT_OURS;
	ip6 = data + off_bounded(l3_off, 0x1f);
	ih = (void *)(ip6 + 1);
	q = (void *)(ih + 1);
	qports = (void *)(q + 1);
	if ((void *)(qports + 2) > data_end)
		return STEP_NOT_OURS;
	if (which == REWRITE_DST) {
		outer_addr = (__be32 *)&ip6->daddr;
		quote_addr = (__be32 *)&q->saddr;
	} else {
		outer_addr = (__be32 *)&ip6->saddr;
		quote_addr = (__be32 *)&q->daddr;
	}
	for (int i = 0; i < 4; i++) {
		outer_addr[i] = to_ip->w[i];
		quote_addr[i] = to_ip->w[i];
	}
	qports[which == REWRITE_DST ? 0 : 1] = to_port;
	diff = csum_diff_addr6(from_ip, to_ip);
	csum_apply_diff(&ih->checksum, diff + diff + csum_diff_2(from_port, to_port));
	return STEP_DONE;
}

/* Remove our Destination Options header of `len` bytes (24: dsr_option.h;
 * 64: sc_option.h), which sits right after the
 * fixed header (the only place a receiver accepts it): Next Header goes back
 * to `inner_nh`, the payload length shrinks by `len`. No checksum covers the
 * removed bytes or these fields (the pseudo-header's upper-layer length
 * excludes extension headers). For a CHECKSUM_COMPLETE skb the kernel takes
 * the removed bytes out of skb->csum itself; unlike IPv4 (strip_option),
 * no header checksum absorbs the two changed fields, so their difference
 * goes into skb->csum (bpf_csum_update: an ignored error for other skbs).
 * STEP_UNTOUCHED when the kernel would not shrink the packet. */
static __always_inline enum node_step strip_ext6(struct __sk_buff *skb, __u32 l3_off,
						 __u8 inner_nh, const __u32 len)
{
	void *data, *data_end;
	struct ipv6hdr *ip6;
	__be16 old_len, new_len, old_nh, new_nh;

	if (bpf_skb_adjust_room(skb, -(__s32)len, BPF_ADJ_ROOM_NET,
				BPF_F_ADJ_ROOM_NO_CSUM_RESET))
		return STEP_UNTOUCHED;
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	if (l3_off > ETH_HLEN + 4)
		return STEP_REWRITE_FAILED;
	ip6 = data + off_bounded(l3_off, 0x1f);
	if ((void *)(ip6 + 1) > data_end)
		return STEP_REWRITE_FAILED;
	old_len = ip6->payload_len;
	new_len = bpf_htons(bpf_ntohs(old_len) - len);
	old_nh = *(__be16 *)&ip6->nexthdr; /* next header, hop limit */
	ip6->payload_len = new_len;
	ip6->nexthdr = inner_nh;
	new_nh = *(__be16 *)&ip6->nexthdr;
	bpf_csum_update(skb, csum_diff_2(old_len, new_len) + csum_diff_2(old_nh, new_nh));
	return STEP_DONE;
}

static __always_inline enum node_step strip_dsr6(struct __sk_buff *skb, __u32 l3_off,
						 __u8 inner_nh)
{
	return strip_ext6(skb, l3_off, inner_nh, DSR6_HDR_LEN);
}

#endif
