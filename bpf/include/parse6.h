/* Bounds-checked IPv6 parsing shared by the XDP (edge) and tc (node)
 * programs — parse.h's counterpart for the other family, with the same
 * result codes (enum parse_rc), fragment bits and TCP flag names.
 *
 * Stages (each reads only bytes it has checked against data_end, never
 * writes to the packet):
 *   parse_eth_ip()      Ethernet [+ one VLAN tag] for either family:
 *                       PARSE_OK with p->l3_proto ETH_P_IP or ETH_P_IPV6
 *                       (parse.h's parse_eth answers PARSE_UNSUPPORTED for
 *                       IPv6; this wrapper does not change it)
 *   parse_ipv6_fixed()  the fixed 40-byte header at l3_off alone (a caller
 *                       that verifies the walk on its own, as a BPF global
 *                       function — the node's node_walk6 — calls
 *                       ipv6_walk_ext itself)
 *   parse_ipv6_len()    the fixed 40-byte header at l3_off, then a bounded
 *                       walk of the extension-header chain up to the
 *                       upper-layer header (l4_proto, l4_off), noting any
 *                       Fragment header and the first Destination Options
 *                       header on the way
 *   parse_l4_v6()       TCP | UDP | ICMPv6 at l4_off: ports, TCP flags,
 *                       ICMPv6 type/code (echo id in both ports)
 *   parse_icmp6_inner() the packet an ICMPv6 error quotes
 *
 * `pkt_len` is the packet's whole length counted from `data`: data_end -
 * data for XDP without frags, skb->len for tc (an skb's linear head may end
 * before the packet does; pull what you read first). Only the headers that
 * are read must lie in the window.
 *
 * The extension-header walk is what an attacker aims at: every header's
 * length is checked against the packet's own length (a header running past
 * it is PARSE_TRUNC), the walk stops after PARSE6_MAX_EXT headers and never
 * reads past PARSE6_MAX_L4_OFF bytes from `data` (PARSE_UNSUPPORTED: a chain
 * that long is not traffic we serve), and each iteration re-checks its
 * offset against a constant, so the verifier sees a small bounded range.
 * Headers walked: Hop-by-Hop (0), Routing (43), Fragment (44), Destination
 * Options (60), Authentication (51). Anything else ends the chain and is
 * the upper-layer protocol (TCP, UDP, ICMPv6, IPv6-in-IPv6 41, ESP 50, No
 * Next Header 59, Mobility 135 ...). After a Fragment header with a non-zero
 * offset the walk stops: what follows is payload, not a header. A second
 * Fragment header is PARSE_UNSUPPORTED: RFC 8200 allows one, no stack sends
 * two, and read as written its offset would make a packet that starts with
 * an atomic fragment pass for a later fragment of some datagram.
 *
 * Usage:
 *   struct pkt l2;  struct pkt6 p;
 *   if (parse_eth_ip(data, data_end, &l2) != PARSE_OK || l2.l3_proto != bpf_htons(ETH_P_IPV6)) ...
 *   rc = parse_ipv6_len(data, data_end, l2.l3_off, &p, pkt_len);
 *   if (rc == PARSE_OK && !(p.frag & PKT_FRAG_LATER)) rc = parse_l4_v6(data, data_end, &p);
 *   if (p.frag & PKT6_FRAG_HDR) ...   // a fragment (even an "atomic" one)
 */
#ifndef EDGELB_PARSE6_H
#define EDGELB_PARSE6_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"

#ifndef IPPROTO_HOPOPTS
#define IPPROTO_HOPOPTS 0
#endif
#ifndef IPPROTO_ROUTING
#define IPPROTO_ROUTING 43
#endif
#ifndef IPPROTO_FRAGMENT
#define IPPROTO_FRAGMENT 44
#endif
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif
#ifndef IPPROTO_NONE
#define IPPROTO_NONE 59
#endif
#ifndef IPPROTO_DSTOPTS
#define IPPROTO_DSTOPTS 60
#endif

/* ICMPv6 types (RFC 4443, RFC 4861). */
#define ICMP6_DEST_UNREACH 1
#define ICMP6_PORT_UNREACH 4 /* Destination Unreachable's code: the host's own answer */
#define ICMP6_PKT_TOOBIG 2
#define ICMP6_TIME_EXCEED 3
#define ICMP6_PARAMPROB 4
#define ICMP6_ECHO_REQUEST 128
#define ICMP6_ECHO_REPLY 129
#define ICMP6_NDP_NS 135
#define ICMP6_NDP_NA 136

#define IPV6_HLEN 40

/* Walk limits (see above). 512 bytes hold any chain a real sender puts in
 * front of TCP/UDP, our own 24-byte Destination Options header, and an
 * IPv6-in-IPv6 packet's inner fixed header. */
#define PARSE6_MAX_EXT 8
#define PARSE6_MAX_L4_OFF 512

/* pkt6.frag: parse.h's PKT_FRAG_MORE / PKT_FRAG_LATER, and: */
#define PKT6_FRAG_HDR 0x4 /* a Fragment header is present (also offset 0, M 0) */

/* An IPv6 address as four network-order words (map keys, comparisons). */
struct pkt_addr6 {
	__be32 w[4];
};

/* Our own ICMPv6 header (4 bytes + the 4-byte type-specific word). */
struct pkt_icmp6hdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		__be32 mtu; /* Packet Too Big */
		__be32 pointer; /* Parameter Problem */
		struct {
			__be16 id;
			__be16 sequence;
		} echo;
		__be32 word;
	} un;
};

/* The common shape of an extension header's first two bytes. */
struct pkt_ext6 {
	__u8 nexthdr;
	__u8 hdrlen;
};

/* The Fragment header (RFC 8200 §4.5). */
struct pkt_frag6 {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-byte units << 3 | M */
	__be32 id;
};

struct pkt6 {
	/* L3 */
	struct ipv6hdr *ip6;
	__u16 l3_off;       /* offset of the fixed header from data */
	__u16 payload_len;  /* from the header, host order */
	__u32 ip_end;       /* offset one past the packet's last byte (see parse_ipv6_len) */
	struct pkt_addr6 saddr, daddr;
	__be32 vtc_flow;    /* first header word as sent: version, traffic class, flow label */
	__u8 nexthdr;       /* the fixed header's Next Header */
	__u8 hop_limit;
	__u8 n_ext;         /* extension headers walked */
	__u8 frag;          /* PKT_FRAG_MORE | PKT_FRAG_LATER | PKT6_FRAG_HDR */
	__u16 dstopt_off;   /* first Destination Options header in the chain, 0 = none */
	__u16 frag_hdr_off; /* the Fragment header, 0 = none */

	/* upper layer: l4_proto/l4_off after parse_ipv6_len; the rest valid
	 * only when parse_l4_v6 returned PARSE_OK */
	__u8 l4_proto;
	__u16 l4_off;
	void *l4;
	__be16 sport, dport; /* TCP/UDP ports; ICMPv6 echo: the id in both */
	__u8 tcp_flags;
	__u8 icmp_type, icmp_code;
};

/* An offset (range-checked by the caller) bounded again by `mask` in a way
 * the compiler cannot fold away: offsets read back from a struct on the
 * stack reach the verifier as unknown 16- or 32-bit values, and a range
 * check compiled onto another copy of them does not bound the one a packet
 * pointer is computed from. */
static __always_inline __u32 off_bounded(__u32 off, __u32 mask)
{
	asm volatile("" : "+r"(off));
	return off & mask;
}

static __always_inline void addr6_load(struct pkt_addr6 *dst, const void *src)
{
	const __be32 *s = src;

	dst->w[0] = s[0];
	dst->w[1] = s[1];
	dst->w[2] = s[2];
	dst->w[3] = s[3];
}

static __always_inline int addr6_eq(const struct pkt_addr6 *a, const struct pkt_addr6 *b)
{
	return ((a->w[0] ^ b->w[0]) | (a->w[1] ^ b->w[1]) | (a->w[2] ^ b->w[2]) |
		(a->w[3] ^ b->w[3])) == 0;
}

static __always_inline int addr6_is_zero(const struct pkt_addr6 *a)
{
	return (a->w[0] | a->w[1] | a->w[2] | a->w[3]) == 0;
}

/* L2 for either family (see the header comment). */
static __always_inline int parse_eth_ip(void *data, void *data_end, struct pkt *p)
{
	int rc;

	p->l3_proto = 0; /* parse_eth leaves it unset for a QinQ frame */
	rc = parse_eth(data, data_end, p);
	if (rc == PARSE_UNSUPPORTED && p->l3_proto == bpf_htons(ETH_P_IPV6))
		return PARSE_OK;
	return rc;
}

/* Is `nh` an extension header the walk steps over? */
static __always_inline int ipv6_ext_walked(__u8 nh)
{
	return nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_FRAGMENT ||
	       nh == IPPROTO_DSTOPTS || nh == IPPROTO_AH;
}

/* The extension-header chain from p->l3_off + 40 (see the header comment). */
static __always_inline int ipv6_walk_ext(void *data, void *data_end, struct pkt6 *p)
{
	__u32 off = (__u32)p->l3_off + IPV6_HLEN;
	__u8 nh = p->nexthdr;

	p->n_ext = 0;
	p->frag = 0;
	p->dstopt_off = 0;
	p->frag_hdr_off = 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < PARSE6_MAX_EXT; i++) {
		struct pkt_ext6 *h;
		__u32 hlen;

		if (!ipv6_ext_walked(nh))
			goto done;
		if (off > PARSE6_MAX_L4_OFF)
			return PARSE_UNSUPPORTED;
		h = data + off;
		if (nh == IPPROTO_FRAGMENT) {
			struct pkt_frag6 *fh = data + off;
			__u16 fo;

			if (p->frag & PKT6_FRAG_HDR)
				return PARSE_UNSUPPORTED;
			if ((void *)(fh + 1) > data_end)
				return PARSE_TRUNC;
			if (off + sizeof(*fh) > p->ip_end)
				return PARSE_TRUNC;
			fo = bpf_ntohs(fh->frag_off);
			p->frag |= PKT6_FRAG_HDR | ((fo & 1) ? PKT_FRAG_MORE : 0) |
				   ((fo & 0xfff8) ? PKT_FRAG_LATER : 0);
			p->frag_hdr_off = off;
			nh = fh->nexthdr;
			off += sizeof(*fh);
			p->n_ext++;
			if (p->frag & PKT_FRAG_LATER)
				goto done; /* payload, not headers, follows */
			continue;
		}
		if ((void *)(h + 1) > data_end)
			return PARSE_TRUNC;
		if (nh == IPPROTO_AH)
			hlen = ((__u32)h->hdrlen + 2) * 4;
		else
			hlen = ((__u32)h->hdrlen + 1) * 8;
		if (off + hlen > p->ip_end)
			return PARSE_TRUNC;
		if (nh == IPPROTO_DSTOPTS && p->dstopt_off == 0)
			p->dstopt_off = off;
		nh = h->nexthdr;
		off += hlen;
		p->n_ext++;
	}
	if (ipv6_ext_walked(nh))
		return PARSE_UNSUPPORTED; /* longer than PARSE6_MAX_EXT */
done:
	if (off > PARSE6_MAX_L4_OFF)
		return PARSE_UNSUPPORTED;
	p->l4_proto = nh;
	p->l4_off = off;
	p->l4 = data + off;
	return PARSE_OK;
}

/* L3: the fixed IPv6 header at l3_off, without the extension-header chain
 * (parse_ipv6_len walks it too; a caller that verifies the walk separately,
 * as a BPF global function, calls ipv6_walk_ext itself). Validates the
 * version and that the payload length fits the packet (trailing Ethernet
 * padding is allowed). A payload length of 0 with bytes behind the header
 * is a jumbogram or a BIG TCP GSO packet (RFC 2675, Linux ≥ 6.3): its
 * length is then the buffer's. */
static __always_inline int parse_ipv6_fixed(void *data, void *data_end, __u32 l3_off,
					    struct pkt6 *p, __u32 pkt_len)
{
	struct ipv6hdr *ip6 = data + l3_off;
	__u32 plen;

	p->ip6 = ip6;
	p->l3_off = l3_off;
	if ((void *)(ip6 + 1) > data_end)
		return PARSE_TRUNC;
	if (ip6->version != 6)
		return PARSE_BAD_IP;
	plen = bpf_ntohs(ip6->payload_len);
	if (plen == 0 && pkt_len > l3_off + IPV6_HLEN)
		plen = pkt_len - l3_off - IPV6_HLEN;
	if (l3_off + IPV6_HLEN + plen > pkt_len)
		return PARSE_TRUNC;
	p->payload_len = bpf_ntohs(ip6->payload_len);
	p->ip_end = l3_off + IPV6_HLEN + plen;
	addr6_load(&p->saddr, &ip6->saddr);
	addr6_load(&p->daddr, &ip6->daddr);
	p->vtc_flow = *(__be32 *)ip6;
	p->nexthdr = ip6->nexthdr;
	p->hop_limit = ip6->hop_limit;
	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	p->icmp_type = 0;
	p->icmp_code = 0;
	return PARSE_OK;
}

/* L3: the fixed IPv6 header at l3_off and its extension-header chain. */
static __always_inline int parse_ipv6_len(void *data, void *data_end, __u32 l3_off,
					  struct pkt6 *p, __u32 pkt_len)
{
	int rc = parse_ipv6_fixed(data, data_end, l3_off, p, pkt_len);

	if (rc != PARSE_OK)
		return rc;
	return ipv6_walk_ext(data, data_end, p);
}

/* parse_ipv6_len for a window that holds the whole packet. */
static __always_inline int parse_ipv6(void *data, void *data_end, __u32 l3_off, struct pkt6 *p)
{
	return parse_ipv6_len(data, data_end, l3_off, p, (__u32)(data_end - data));
}

/* The traffic class of a parsed packet. */
static __always_inline __u8 pkt6_tclass(const struct pkt6 *p)
{
	return (__u8)(bpf_ntohl(p->vtc_flow) >> 20);
}

/* The upper-layer header at p->l4_off for TCP, UDP and ICMPv6; other
 * protocols return PARSE_OK with ports 0. A non-first fragment returns
 * PARSE_OK without reading anything (ports 0). The header must lie within
 * both the window and the packet (ip_end). */
static __always_inline int parse_l4_v6(void *data, void *data_end, struct pkt6 *p)
{
	__u32 l4_off = p->l4_off;
	void *ip_end = data + p->ip_end;
	void *l4;

	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	p->icmp_type = 0;
	p->icmp_code = 0;
	if (p->frag & PKT_FRAG_LATER)
		return PARSE_OK;
	if (l4_off > PARSE6_MAX_L4_OFF)
		return PARSE_UNSUPPORTED;
	l4 = data + off_bounded(l4_off, 0x3ff);

	if (p->l4_proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end || (void *)(th + 1) > ip_end)
			return PARSE_TRUNC;
		if (th->doff < 5)
			return PARSE_TRUNC; /* a TCP header shorter than 20 cannot be */
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
	} else if (p->l4_proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end || (void *)(uh + 1) > ip_end)
			return PARSE_TRUNC;
		p->sport = uh->source;
		p->dport = uh->dest;
	} else if (p->l4_proto == IPPROTO_ICMPV6) {
		struct pkt_icmp6hdr *ih = l4;

		if ((void *)(ih + 1) > data_end || (void *)(ih + 1) > ip_end)
			return PARSE_TRUNC;
		p->icmp_type = ih->type;
		p->icmp_code = ih->code;
		if (ih->type == ICMP6_ECHO_REQUEST || ih->type == ICMP6_ECHO_REPLY) {
			p->sport = ih->un.echo.id;
			p->dport = ih->un.echo.id;
		}
	}
	return PARSE_OK;
}

/* Is this ICMPv6 type an error message (RFC 4443: types 0..127)? */
static __always_inline int icmp6_is_error(__u8 type)
{
	return type < 128;
}

/* The packet quoted by an ICMPv6 error: its fixed header and, when its Next
 * Header is TCP or UDP directly, the ports (the first 4 bytes of its upper
 * layer). A quote with extension headers is reported with l4_proto = the
 * fixed header's Next Header and ports 0: callers that steer errors to a
 * flow only ever need quotes of what they themselves sent, which carry
 * none. */
struct pkt6_inner {
	struct ipv6hdr *ip6;
	__u16 ip_off;      /* offset of the quoted fixed header from data */
	__u16 payload_len; /* the quoted header's own field, host order */
	struct pkt_addr6 saddr, daddr;
	__u8 l4_proto;
	__be16 sport, dport;
};

/* Parse the quote of an ICMPv6 error whose outer headers were parsed into
 * *p (p->l4_proto == IPPROTO_ICMPV6, parse_l4_v6 OK). The quote is cut short
 * by design, so only the bytes read are checked — against the window and
 * the outer packet's end. */
static __always_inline int parse_icmp6_inner(void *data, void *data_end, const struct pkt6 *p,
					     struct pkt6_inner *in)
{
	__u32 off = (__u32)p->l4_off + sizeof(struct pkt_icmp6hdr);
	struct ipv6hdr *ip6;

	in->ip_off = off;
	in->sport = 0;
	in->dport = 0;
	if (off > PARSE6_MAX_L4_OFF)
		return PARSE_UNSUPPORTED;
	ip6 = data + off;
	in->ip6 = ip6;
	if ((void *)(ip6 + 1) > data_end || off + IPV6_HLEN > p->ip_end)
		return PARSE_TRUNC;
	if (ip6->version != 6)
		return PARSE_BAD_IP;
	in->payload_len = bpf_ntohs(ip6->payload_len);
	addr6_load(&in->saddr, &ip6->saddr);
	addr6_load(&in->daddr, &ip6->daddr);
	in->l4_proto = ip6->nexthdr;
	if (ip6->nexthdr == IPPROTO_TCP || ip6->nexthdr == IPPROTO_UDP) {
		__be16 *ports = (void *)(ip6 + 1);

		if ((void *)(ports + 2) > data_end || off + IPV6_HLEN + 4 > p->ip_end)
			return PARSE_TRUNC;
		in->sport = ports[0];
		in->dport = ports[1];
	}
	return PARSE_OK;
}

#endif
