/* Internet checksum helpers for IPv6 (csum.h's conventions: unfolded 32-bit
 * one's-complement accumulators of network-order words, RFC 1624 updates).
 *
 * IPv6 has no header checksum: every checksum that covers an address is an
 * upper-layer one (TCP, UDP, ICMPv6 — ICMPv6 unlike ICMPv4 includes the
 * pseudo-header, RFC 4443 §2.3). Changing an address therefore changes only
 * the upper-layer checksum, by the address's difference; for a tc program
 * also skb->csum of a CHECKSUM_COMPLETE skb, where nothing else absorbs the
 * change (see the comment at csum6_rewrite_note below).
 *
 * UDP over IPv6 must carry a checksum (RFC 8200 §8.1): a computed 0 is sent
 * as 0xffff (csum.h's udp_* variants), and a received 0 is invalid and is
 * left 0 so that the receiver still drops it. */
#ifndef EDGELB_CSUM6_H
#define EDGELB_CSUM6_H

#include <linux/types.h>
#include <bpf/bpf_endian.h>
#include "csum.h"
#include "parse6.h"

/* Difference terms for a 128-bit address change (sum of ~old + new words),
 * for csum_apply_diff / bpf_l4_csum_replace(..., 0, diff, ...). At most
 * 16 × 0xffff: no overflow in 32 bits. */
static __always_inline __u32 csum_diff_addr6(const struct pkt_addr6 *from,
					     const struct pkt_addr6 *to)
{
	return csum_diff_4(from->w[0], to->w[0]) + csum_diff_4(from->w[1], to->w[1]) +
	       csum_diff_4(from->w[2], to->w[2]) + csum_diff_4(from->w[3], to->w[3]);
}

/* Sum of an address's words (accumulator term). */
static __always_inline __u32 csum_addr6(const struct pkt_addr6 *a)
{
	return csum_word32(a->w[0]) + csum_word32(a->w[1]) + csum_word32(a->w[2]) +
	       csum_word32(a->w[3]);
}

/* Pseudo-header sum for an upper-layer checksum over IPv6 (RFC 8200 §8.1):
 * source, destination, upper-layer length (32 bits; excludes extension
 * headers) and next header (the upper-layer protocol, not the fixed
 * header's Next Header when extension headers sit in between). */
static __always_inline __u32 csum_pseudo_v6(const struct pkt_addr6 *saddr,
					    const struct pkt_addr6 *daddr, __u8 proto,
					    __u32 l4_len)
{
	__u32 c = csum_addr6(saddr) + csum_addr6(daddr);

	c += csum_word32(bpf_htonl(l4_len));
	c += bpf_htons((__u16)proto);
	return c;
}

/* csum6_rewrite_note — rewriting an IPv6 address in a tc program:
 * store the new address and port directly, then
 *   bpf_l4_csum_replace(skb, csum_off, 0, addr_diff, BPF_F_PSEUDO_HDR | m)
 *   bpf_l4_csum_replace(skb, csum_off, old_port, new_port, m | 2)
 * and, where the skb may be CHECKSUM_COMPLETE (ingress),
 *   bpf_csum_update(skb, addr_diff)
 * because the PSEUDO_HDR form takes addr_diff out of skb->csum (right for
 * IPv4, whose header checksum absorbs the address change) while in IPv6 the
 * address bytes changed by exactly addr_diff and nothing absorbs them.
 * (A note, not code: the call sites own their helper calls.) */

#endif
