/* Where a TCP or UDP header's fields sit for a rewrite of its ports and the
 * checksum that covers them: every address/port rewrite, edge and node,
 * IPv4 and IPv6, finds them the same way; and the by-hand update of that
 * checksum, for XDP. */
#ifndef EDGELB_L4_CSUM_H
#define EDGELB_L4_CSUM_H

#include <stddef.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "csum.h"

/* The TCP header at data + l4_off, or the UDP header for any other proto
 * (both begin with the source and destination ports): -1 when it is cut
 * short at end. Else *check is its checksum field, *csum_off that field's
 * offset (bpf_l4_csum_replace's), *mangled the flag UDP needs there:
 * BPF_F_MARK_MANGLED_0, as a UDP checksum of 0 means "none" and must stay
 * 0. */
static __always_inline int l4_csum_fields(void *data, void *end, __u32 l4_off, __u8 proto,
					  __sum16 **check, __u32 *csum_off, __u64 *mangled)
{
	*mangled = 0;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4_off;

		if ((void *)(th + 1) > end)
			return -1;
		*check = &th->check;
		*csum_off = l4_off + offsetof(struct tcphdr, check);
	} else {
		struct udphdr *uh = data + l4_off;

		if ((void *)(uh + 1) > end)
			return -1;
		*check = &uh->check;
		*csum_off = l4_off + offsetof(struct udphdr, check);
		*mangled = BPF_F_MARK_MANGLED_0;
	}
	return 0;
}

/* XDP (no skb checksum helpers; frames from the wire carry a full
 * checksum): the L4 checksum moved by hand for the addresses' difference
 * adiff and both ports' changes. A UDP checksum of 0 ("none") stays 0. */
static __always_inline void l4_csum_rewrite_xdp(__sum16 *check, __u8 proto, __u32 adiff, __be16 old_sport,
						__be16 sport, __be16 old_dport, __be16 dport)
{
	__u32 diff = adiff + csum_diff_2(old_sport, sport) + csum_diff_2(old_dport, dport);

	if (proto == IPPROTO_TCP)
		csum_apply_diff(check, diff);
	else
		udp_csum_apply_diff(check, diff);
}

#endif
