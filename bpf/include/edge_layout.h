/* Edge program: the fixed frame layout every rewrite assumes (untagged
 * Ethernet, IPv4 without options), and the L4 sanity check applied before
 * anything is rewritten. */
#ifndef EDGELB_EDGE_LAYOUT_H
#define EDGELB_EDGE_LAYOUT_H

#include <linux/if_ether.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include "parse.h"

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

#endif
