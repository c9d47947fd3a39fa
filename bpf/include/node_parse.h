/* Node program: reading an skb's headers. tc hands the program an skb
 * whose linear head may end before the IP or L4 header (GRO, header split,
 * TSO from a local socket): parse_skb() pulls exactly what the program
 * reads, lazily, and parses Ethernet + IPv4 with skb->len as the packet's
 * length (parse.h's *_len variants). parse_skb6() does the same for IPv6,
 * whose extension-header chain may reach further into the packet. */
#ifndef EDGELB_NODE_PARSE_H
#define EDGELB_NODE_PARSE_H

#include <stddef.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "parse.h"
#include "parse6.h"

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
		return 8;
	case IPPROTO_ICMP:
		/* A destination unreachable's header, the quoted header
		 * (without options: the only quote acted on) and the quoted
		 * ports: what egress_icmp and readdress_icmp_error read. */
		return 8 + 20 + 4;
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

/* IPv6: bytes of upper-layer header the program may read. */
static __always_inline __u32 l4_need6(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 20;
	case IPPROTO_UDP:
		return 8;
	case IPPROTO_ICMPV6:
		/* The larger of: an error's header, quoted fixed header and
		 * quoted ports (8 + 40 + 4, parse_icmp6_inner and
		 * readdress_icmp6_error), and a Neighbor Solicitation/
		 * Advertisement with two options (24 + 16). 40 alone left a
		 * head ending inside the quote unpulled, and the error about a
		 * flow went on unhandled (Packet Too Big lost: an MTU black
		 * hole for the flow). */
		return 8 + 40 + 4;
	case IPPROTO_IPV6:
		return 40 + 20; /* inner fixed header + TCP */
	default:
		return 0;
	}
}

/* The most parse_skb6 ever pulls into the linear head: a chain up to
 * PARSE6_MAX_L4_OFF and the longest l4_need6. */
#define NODE_PULL6_MAX (PARSE6_MAX_L4_OFF + 60)

/* pull_headers for IPv6: the same, up to NODE_PULL6_MAX bytes. */
static __always_inline int pull_headers6(struct __sk_buff *skb, __u32 need)
{
	if (need > skb->len)
		need = skb->len;
	if (need > NODE_PULL6_MAX)
		need = NODE_PULL6_MAX;
	if (skb_data(skb) + need <= skb_data_end(skb))
		return 0;
	bpf_skb_pull_data(skb, need);
	return 1;
}

/* What the extension-header walk found (pkt6's walk fields), as node_walk6
 * hands it back: scalars only. */
struct node_walk6 {
	__u16 l4_off;
	__u16 dstopt_off;
	__u16 frag_hdr_off;
	__u8 l4_proto;
	__u8 frag;
	__u8 n_ext;
	__u8 pad[3];
};

/* parse6.h's ipv6_walk_ext as a BPF global function: the verifier checks
 * it once, on its own, and the caller goes on with one state whatever the
 * chain held. Inlined, every way the walk can end (header kinds × counts ×
 * fragment bits × offsets) was carried through the rest of the program and
 * verifying node.o took minutes. Returns a parse_rc; *out is filled when
 * PARSE_OK. The caller checks every offset it gets back before using it. */
__attribute__((noinline)) int node_walk6(struct __sk_buff *skb, __u64 l3_off, __u64 ip_end,
					 __u64 nexthdr, struct node_walk6 *out)
{
	struct pkt6 p;
	int rc;

	if (!out)
		return PARSE_UNSUPPORTED;
	if (l3_off > ETH_HLEN + 4 + IPV6_HLEN)
		return PARSE_UNSUPPORTED;
	p.l3_off = l3_off;
	p.ip_end = ip_end;
	p.nexthdr = nexthdr;
	rc = ipv6_walk_ext(skb_data(skb), skb_data_end(skb), &p);
	if (rc != PARSE_OK)
		return rc;
	out->l4_off = p.l4_off;
	out->dstopt_off = p.dstopt_off;
	out->frag_hdr_off = p.frag_hdr_off;
	out->l4_proto = p.l4_proto;
	out->frag = p.frag;
	out->n_ext = p.n_ext;
	return PARSE_OK;
}

/* The IPv6 header at l3_off and its chain (node_walk6) with skb->len as the
 * packet's length, pulling into the linear head what the walk and the
 * upper-layer header need when the head ends before them. */
static __always_inline int parse_skb6_at(struct __sk_buff *skb, __u32 l3_off, struct pkt6 *p)
{
	struct node_walk6 w = {};
	int rc;

	if (l3_off > ETH_HLEN + 4 + IPV6_HLEN)
		return PARSE_UNSUPPORTED;
	p->l4 = 0;
	p->n_ext = 0;
	p->frag = 0;
	p->dstopt_off = 0;
	p->frag_hdr_off = 0;
	p->l4_proto = 0;
	p->l4_off = 0;
	rc = parse_ipv6_fixed(skb_data(skb), skb_data_end(skb), l3_off, p, skb->len);
	/* No extension header (most packets, a pod's replies among them): the
	 * upper layer follows the fixed header, no walk to call. */
	if (rc == PARSE_OK && !ipv6_ext_walked(p->nexthdr)) {
		w.l4_off = l3_off + IPV6_HLEN;
		w.l4_proto = p->nexthdr;
	} else if (rc == PARSE_OK) {
		rc = node_walk6(skb, l3_off, p->ip_end, p->nexthdr, &w);
	}
	if (rc == PARSE_TRUNC) {
		if (!pull_headers6(skb, NODE_PULL6_MAX))
			return rc;
		rc = parse_ipv6_fixed(skb_data(skb), skb_data_end(skb), l3_off, p, skb->len);
		if (rc == PARSE_OK)
			rc = node_walk6(skb, l3_off, p->ip_end, p->nexthdr, &w);
	}
	if (rc != PARSE_OK)
		return rc;
	p->l4_off = w.l4_off;
	p->dstopt_off = w.dstopt_off;
	p->frag_hdr_off = w.frag_hdr_off;
	p->l4_proto = w.l4_proto;
	p->frag = w.frag;
	p->n_ext = w.n_ext;
	if (!(p->frag & PKT_FRAG_LATER) && pull_headers6(skb, p->l4_off + l4_need6(p->l4_proto)))
		rc = parse_ipv6_fixed(skb_data(skb), skb_data_end(skb), l3_off, p, skb->len);
	return rc;
}

/* An L3 offset handed to a global function (an unknown scalar to the
 * verifier), bounded by a mask the compiler cannot drop: a range check alone
 * was at times compiled onto another copy of the value than the one the
 * packet pointer is computed from. 14 or 18 pass through unchanged. */
static __always_inline __u64 l3_bounded(__u64 l3_off)
{
	asm volatile("" : "+r"(l3_off));
	return l3_off & 0x1f;
}

/* The frame's IPv6 header (Ethernet already parsed). */
static __always_inline int parse_skb6(struct __sk_buff *skb, __u32 l3_off, struct pkt6 *p)
{
	if (l3_off > ETH_HLEN + 4)
		return PARSE_UNSUPPORTED;
	return parse_skb6_at(skb, l3_off, p);
}

/* The first option of `type` among the first NODE_FIND_OPTS options of the
 * Destination Options header at off (every read checked on the register it
 * uses), as a global function for the same reason as node_walk6: its offset
 * from data, 0 when
 * absent, -1 when the options are malformed or too many to walk. Few on
 * purpose: each option doubles the paths the verifier follows, and an
 * option of ours hidden further back needs no finding — its type's action
 * bits make the pod's stack discard the packet (RFC 8200 §4.2). */
#define NODE_FIND_OPTS 4

__attribute__((noinline)) int node_find_opt6(struct __sk_buff *skb, __u64 off, __u64 type)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	__u8 *h;
	__u64 end, o;

	if (off > PARSE6_MAX_L4_OFF)
		return -1;
	h = data + off;
	if ((void *)(h + 2) > data_end)
		return -1;
	end = off + ((__u64)h[1] + 1) * 8;
	o = off + 2;
#pragma clang loop unroll(disable)
	for (int i = 0; i < NODE_FIND_OPTS; i++) {
		__u8 *opt;

		if (o >= end)
			return 0;
		if (o > PARSE6_MAX_L4_OFF + 2048)
			return -1;
		opt = data + o;
		if ((void *)(opt + 2) > data_end)
			return -1;
		if (opt[0] == type)
			return (int)o;
		o += opt[0] == 0 ? 1 : 2 + (__u64)opt[1]; /* Pad1 is a single byte */
	}
	return o >= end ? 0 : -1;
}

#endif
