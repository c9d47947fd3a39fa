/* Internet checksum helpers (RFC 1071 / RFC 1624) for XDP and tc programs.
 *
 * Everything here works on plain memory, so it is usable from XDP, where
 * bpf_l3_csum_replace / bpf_l4_csum_replace do not exist. tc programs may use
 * either these or the skb helpers; after writing through a direct packet
 * pointer these are the cheaper choice (no helper call, no skb re-lookup).
 *
 * Conventions
 *  - A "csum" (__u32) is an unfolded 32-bit one's-complement accumulator.
 *    Add 16-bit words (or 32-bit words: the carries are folded back in by
 *    csum_fold) in network byte order straight from memory; one's-complement
 *    addition is byte-order independent (RFC 1071 §2(B)), so no byte
 *    swapping is ever needed as long as every operand is in network order.
 *  - A "__sum16" is the folded, complemented 16-bit value stored in a header.
 *
 * Incremental updates follow RFC 1624 eqn. 3:  HC' = ~(~HC + ~m + m'),
 * which never produces the "-0" pitfall of RFC 1141's eqn. 2.
 *
 * UDP: a checksum field of 0 means "no checksum" (RFC 768). Use the udp_*
 * variants, which leave 0 alone and turn a computed 0 into 0xffff.
 */
#ifndef EDGELB_CSUM_H
#define EDGELB_CSUM_H

#include <linux/types.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>

/* Fold a 32-bit accumulator to 16 bits (end-around carry) and complement:
 * the value to store in a checksum field. Two folds are always enough for a
 * 32-bit input (the first can carry out at most once more). */
static __always_inline __sum16 csum_fold(__u32 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__sum16)~csum;
}

/* Fold without the final complement: a 16-bit one's-complement sum. */
static __always_inline __u16 csum_fold_nocpl(__u32 csum)
{
	csum = (csum & 0xffff) + (csum >> 16);
	csum = (csum & 0xffff) + (csum >> 16);
	return (__u16)csum;
}

/* One's-complement add of two 32-bit accumulators (carry wraps around). */
static __always_inline __u32 csum_add(__u32 a, __u32 b)
{
	__u32 r = a + b;
	return r + (r < b);
}

/* One's-complement subtract: a + ~b. */
static __always_inline __u32 csum_sub(__u32 a, __u32 b)
{
	return csum_add(a, ~b);
}

/* Accumulator term for a 32-bit network-order value (its two 16-bit halves). */
static __always_inline __u32 csum_word32(__be32 v)
{
	return ((__u32)v & 0xffff) + ((__u32)v >> 16);
}

/* Incremental update of a checksum field for a 16-bit field change
 * (RFC 1624 eqn. 3). `from` and `to` are the field's old and new values in
 * network order, exactly as they sit in the packet. */
static __always_inline void csum_replace2(__sum16 *sum, __be16 from, __be16 to)
{
	__u32 c = (__u16)~*sum;

	c += (__u16)~from;
	c += (__u16)to;
	*sum = csum_fold(c);
}

/* Same for a 32-bit field (an IPv4 address): both 16-bit halves change. */
static __always_inline void csum_replace4(__sum16 *sum, __be32 from, __be32 to)
{
	__u32 c = (__u16)~*sum;

	c += csum_word32(~from);
	c += csum_word32(to);
	*sum = csum_fold(c);
}

/* Apply a precomputed difference (sum of ~old + new terms, e.g. from
 * csum_diff_4/csum_diff_2 or bpf_csum_diff) to a checksum field. Lets a
 * program that rewrites several fields touch each checksum once. */
static __always_inline void csum_apply_diff(__sum16 *sum, __u32 diff)
{
	__u32 c = (__u16)~*sum;

	c = csum_add(c, diff);
	*sum = csum_fold(c);
}

/* Difference terms for one field change, to accumulate and csum_apply_diff. */
static __always_inline __u32 csum_diff_4(__be32 from, __be32 to)
{
	return csum_word32(~from) + csum_word32(to);
}

static __always_inline __u32 csum_diff_2(__be16 from, __be16 to)
{
	return (__u32)(__u16)~from + (__u32)(__u16)to;
}

/* UDP variants: 0 = "no checksum" is preserved; a result of 0 is sent as
 * 0xffff (the same value in one's complement) as RFC 768 requires. */
static __always_inline void udp_csum_replace2(__sum16 *sum, __be16 from, __be16 to)
{
	if (*sum == 0)
		return;
	csum_replace2(sum, from, to);
	if (*sum == 0)
		*sum = (__sum16)0xffff;
}

static __always_inline void udp_csum_replace4(__sum16 *sum, __be32 from, __be32 to)
{
	if (*sum == 0)
		return;
	csum_replace4(sum, from, to);
	if (*sum == 0)
		*sum = (__sum16)0xffff;
}

static __always_inline void udp_csum_apply_diff(__sum16 *sum, __u32 diff)
{
	if (*sum == 0)
		return;
	csum_apply_diff(sum, diff);
	if (*sum == 0)
		*sum = (__sum16)0xffff;
}

/* Full checksum of a 20-byte IPv4 header (no options). The check field is
 * included in the sum as it is, so set it to 0 first if computing a fresh
 * one; over a header with a valid checksum the result is 0.
 * The caller must have verified that 20 bytes at `ip` are in bounds. */
static __always_inline __sum16 ipv4_csum20(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 c = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		c += w[i];
	return csum_fold(c);
}

/* Full checksum of an IPv4 header of `ihl` 32-bit words (5..15), options
 * included. Fully unrolled with constant offsets and a bounds check per
 * word, so the verifier accepts a variable ihl. Sets *ok = 1 on success; if
 * ihl is out of range or the header does not fit, returns 0 with *ok = 0. */
static __always_inline __sum16 ipv4_csum(const struct iphdr *ip, __u32 ihl,
					 const void *data_end, int *ok)
{
	const __u32 *w = (const __u32 *)ip;
	__u32 lo = 0, hi = 0;
	int bad = 0;

	*ok = 0;
	if (ihl < 5 || ihl > 15)
		return 0;
	if ((const void *)(w + 5) > data_end)
		return 0;
#pragma unroll
	for (int i = 0; i < 5; i++) {
		lo += w[i] & 0xffff;
		hi += w[i] >> 16;
	}
	/* No early exit inside the loop: clang only unrolls it that way. */
#pragma unroll
	for (int i = 5; i < 15; i++) {
		if (i < (int)ihl) {
			if ((const void *)(w + i + 1) > data_end) {
				bad = 1;
			} else {
				lo += w[i] & 0xffff;
				hi += w[i] >> 16;
			}
		}
	}
	if (bad)
		return 0;
	*ok = 1;
	return csum_fold(lo + hi);
}

/* Recompute and store the checksum of a 20-byte IPv4 header in place. */
static __always_inline void ipv4_csum20_set(struct iphdr *ip)
{
	ip->check = 0;
	ip->check = ipv4_csum20(ip);
}

/* Pseudo-header sum for TCP/UDP over IPv4 (RFC 793 / RFC 768): source,
 * destination, protocol and L4 length (header + payload, host-order arg). */
static __always_inline __u32 csum_pseudo_v4(__be32 saddr, __be32 daddr,
					    __u8 proto, __u16 l4_len)
{
	__u32 c = csum_word32(saddr) + csum_word32(daddr);

	c += bpf_htons((__u16)proto);
	c += bpf_htons(l4_len);
	return c;
}

/* Sum of `len` bytes at `p` (len a multiple of 4, ≤ 512) added to `seed`,
 * via the bpf_csum_diff helper (available to XDP and tc). Use it for ICMP
 * bodies and other bulk data; returns a 32-bit accumulator, or a negative
 * errno (check with `< 0` on the signed result) on bad arguments. */
static __always_inline __s64 csum_bytes(void *p, __u32 len, __u32 seed)
{
	return bpf_csum_diff(0, 0, (__be32 *)p, len, seed);
}

#endif
