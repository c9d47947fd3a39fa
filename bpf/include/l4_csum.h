/* Where a TCP or UDP header's fields sit for a rewrite of its ports and the
 * checksum that covers them: every address/port rewrite, edge and node,
 * IPv4 and IPv6, finds them the same way. */
#ifndef EDGELB_L4_CSUM_H
#define EDGELB_L4_CSUM_H

#include <stddef.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>

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

#endif
