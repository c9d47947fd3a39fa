/* Node program: reading an skb's headers. tc hands the program an skb
 * whose linear head may end before the IP or L4 header (GRO, header split,
 * TSO from a local socket): parse_skb() pulls exactly what the program
 * reads, lazily, and parses Ethernet + IPv4 with skb->len as the packet's
 * length (parse.h's *_len variants). */
#ifndef EDGELB_NODE_PARSE_H
#define EDGELB_NODE_PARSE_H

#include <stddef.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "parse.h"

/* skb->data / skb->data_end as packet pointers, loaded fresh each time with
 * an opaque asm load: with 32-bit subregisters (-mcpu=v3) clang otherwise
 * keeps a zero-extended u32 copy of the field around and uses it as the
 * pointer, which the verifier only knows as a scalar. */
static __always_inline void *skb_data(struct __sk_buff *skb)
{
	void *p;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(p) : "r"(skb), "i"(offsetof(struct __sk_buff, data)));
	return p;
}

static __always_inline void *skb_data_end(struct __sk_buff *skb)
{
	void *p;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(p) : "r"(skb), "i"(offsetof(struct __sk_buff, data_end)));
	return p;
}

/* Bytes of L4 header the program may read after the IP header. */
static __always_inline __u32 l4_need(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 20;
	case IPPROTO_UDP:
	case IPPROTO_ICMP:
		return 8;
	case IPPROTO_IPIP:
		return 60 + 20; /* inner IPv4 header with options + TCP */
	default:
		return 0;
	}
}

/* Pull `need` bytes (or the whole packet, if shorter) into the linear head
 * when they are not there yet. Returns 1 when it tried: packet pointers are
 * then invalid. Lazy on purpose: most skbs already carry their headers in
 * the head, and a pull copies payload (and may reallocate) for nothing. */
static __always_inline int pull_headers(struct __sk_buff *skb, __u32 need)
{
	void *data, *data_end;

	if (need > skb->len)
		need = skb->len;
	/* Bounded for the verifier; our headers never need more. */
	if (need > 14 + 4 + 60 + 60 + 20)
		need = 14 + 4 + 60 + 60 + 20;
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	if (data + need <= data_end)
		return 0;
	/* Even a failed pull invalidates packet pointers: the caller re-parses
	 * either way, and finds out then whether the headers are there. */
	bpf_skb_pull_data(skb, need);
	return 1;
}

/* Ethernet + IPv4 of an skb whose payload may lie outside the linear head,
 * making sure the IP header and the L4 header that follows are readable.
 * The caller reloads data/data_end afterwards. */
static __always_inline int parse_skb(struct __sk_buff *skb, struct pkt *p)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	int rc;

	rc = parse_eth(data, data_end, p);
	if (rc != PARSE_OK)
		return rc;
	rc = parse_ipv4_len(data, data_end, p, skb->len);
	if (rc == PARSE_TRUNC) {
		if (!pull_headers(skb, p->l3_off + 60))
			return rc;
		data = skb_data(skb);
		data_end = skb_data_end(skb);
		rc = parse_eth(data, data_end, p);
		if (rc != PARSE_OK)
			return rc;
		rc = parse_ipv4_len(data, data_end, p, skb->len);
	}
	if (rc != PARSE_OK)
		return rc;
	if (!(p->frag & PKT_FRAG_LATER) && pull_headers(skb, p->l4_off + l4_need(p->l4_proto))) {
		data = skb_data(skb);
		data_end = skb_data_end(skb);
		rc = parse_eth(data, data_end, p);
		if (rc != PARSE_OK)
			return rc;
		rc = parse_ipv4_len(data, data_end, p, skb->len);
	}
	return rc;
}

#endif
