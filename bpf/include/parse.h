/* Bounds-checked packet parsing shared by the XDP (edge) and tc (node)
 * programs.
 *
 * The parsers take the linear packet window [data, data_end) — xdp_md's
 * data/data_end, or __sk_buff's (tc: use the *_len variants with skb->len,
 * since an skb's payload may lie outside the linear head) — and fill a
 * small struct pkt. They never write to
 * the packet. Each stage checks every byte it reads against data_end, so any
 * input, however short or malformed, yields a defined result code.
 *
 * Layout handled:
 *   Ethernet [+ one 802.1Q / 802.1ad tag] → IPv4 (any IHL 5..15, options,
 *   fragments) → TCP | UDP | ICMP.
 *   IPv6 is recognised at L2 (PARSE_UNSUPPORTED for now). To add it: a
 *   parse_ipv6() stage filling the same l4_* fields, addresses in a separate
 *   v6 member, and `family` telling the callers which one is valid.
 *
 * Offsets are kept relative to `data` (not pointers) in addition to the
 * typed pointers, because tc helpers such as bpf_skb_store_bytes,
 * bpf_l3_csum_replace and bpf_skb_adjust_room take offsets and invalidate
 * every packet pointer; after calling one of them, re-derive pointers from
 * the offsets (or re-parse).
 *
 * Usage:
 *   struct pkt p;
 *   int rc = parse_packet(data, data_end, &p);
 *   if (rc != PARSE_OK) ...            // not for us, or malformed
 *   if (p.frag & PKT_FRAG_LATER) ...   // no L4 header in this fragment
 */
#ifndef EDGELB_PARSE_H
#define EDGELB_PARSE_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Our own ICMP header: <linux/icmp.h> drags in glibc's socket headers,
 * which do not build for the BPF target. */
struct pkt_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	union {
		struct {
			__be16 id;
			__be16 sequence;
		} echo;
		__be32 gateway;
		struct {
			__be16 unused;
			__be16 mtu;
		} frag;
	} un;
};

#ifndef ICMP_ECHOREPLY
#define ICMP_ECHOREPLY 0
#endif
#ifndef ICMP_DEST_UNREACH
#define ICMP_DEST_UNREACH 3
#endif
#ifndef ICMP_ECHO
#define ICMP_ECHO 8
#endif
#ifndef ICMP_TIME_EXCEEDED
#define ICMP_TIME_EXCEEDED 11
#endif
#ifndef ICMP_FRAG_NEEDED
#define ICMP_FRAG_NEEDED 4
#endif
#ifndef ICMP_PROT_UNREACH
#define ICMP_PROT_UNREACH 2
#endif
#ifndef ICMP_PORT_UNREACH
#define ICMP_PORT_UNREACH 3
#endif

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif
#ifndef IP_MF
#define IP_MF 0x2000
#endif
#ifndef IP_OFFSET
#define IP_OFFSET 0x1fff
#endif

/* Result codes. Everything except PARSE_OK means "do not touch the L4
 * fields"; callers normally pass PARSE_NOT_IP / PARSE_UNSUPPORTED untouched
 * and count PARSE_TRUNC / PARSE_BAD_* as malformed. */
enum parse_rc {
	PARSE_OK = 0,
	PARSE_NOT_IP = 1,      /* EtherType neither IPv4 nor IPv6 (ARP, LLDP, ...) */
	PARSE_UNSUPPORTED = 2, /* IPv6 (not yet), or a second VLAN tag */
	PARSE_TRUNC = 3,       /* a header ends past data_end / past IP total length */
	PARSE_BAD_IP = 4,      /* version != 4, IHL < 5, total length < IHL */
};

/* pkt.frag bits */
#define PKT_FRAG_MORE 0x1  /* MF set: more fragments follow (first or middle) */
#define PKT_FRAG_LATER 0x2 /* offset != 0: no L4 header in this packet */

/* pkt.family */
#define PKT_AF_INET 4

struct pkt {
	/* L2 */
	struct ethhdr *eth;
	__u16 l3_off;    /* offset of the IP header from data (14 or 18) */
	__be16 l3_proto; /* EtherType after any VLAN tag, network order */
	__u16 vlan_tci;  /* host order; 0 when untagged (check has_vlan) */
	__u8 has_vlan;
	__u8 family;     /* PKT_AF_INET once the IP header parsed */

	/* L3 (IPv4) */
	struct iphdr *ip;
	__be32 saddr, daddr;
	__u16 ip_len;    /* total length from the header, host order */
	__u8 ihl_bytes;  /* header length including options: 20..60 */
	__u8 frag;       /* PKT_FRAG_* */
	__u8 l4_proto;   /* IPPROTO_TCP / UDP / ICMP / IPIP / other */
	__u8 tos;

	/* L4: valid only when parse_l4 returned PARSE_OK */
	__u16 l4_off;    /* offset of the L4 header from data */
	void *l4;
	__be16 sport, dport; /* TCP/UDP ports; ICMP: 0 / echo id in both */
	__u8 tcp_flags;      /* TCP flag byte (FIN=0x01 SYN=0x02 RST=0x04 ACK=0x10) */
	__u8 icmp_type, icmp_code;
};

#define PKT_TCP_FIN 0x01
#define PKT_TCP_SYN 0x02
#define PKT_TCP_RST 0x04
#define PKT_TCP_PSH 0x08
#define PKT_TCP_ACK 0x10

/* L2: Ethernet and at most one VLAN tag. */
static __always_inline int parse_eth(void *data, void *data_end, struct pkt *p)
{
	struct ethhdr *eth = data;
	__u16 off = sizeof(*eth);
	__be16 proto;

	p->eth = eth;
	p->has_vlan = 0;
	p->vlan_tci = 0;
	p->family = 0;
	if ((void *)(eth + 1) > data_end)
		return PARSE_TRUNC;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		/* 802.1Q tag: TCI (2 bytes) then the inner EtherType. */
		__be16 *tag = data + off;

		if ((void *)(tag + 2) > data_end)
			return PARSE_TRUNC;
		p->has_vlan = 1;
		p->vlan_tci = bpf_ntohs(tag[0]);
		proto = tag[1];
		off += 4;
		if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
			return PARSE_UNSUPPORTED; /* QinQ: not ours */
	}
	p->l3_off = off;
	p->l3_proto = proto;
	if (proto == bpf_htons(ETH_P_IP))
		return PARSE_OK;
	if (proto == bpf_htons(ETH_P_IPV6))
		return PARSE_UNSUPPORTED;
	return PARSE_NOT_IP;
}

/* L3: IPv4 header at p->l3_off. Validates version, IHL and total length
 * (trailing Ethernet padding beyond ip_len is allowed). `pkt_len` is the
 * whole packet's length counted from `data`: for XDP (no frags) it is
 * data_end - data; for tc it is skb->len, because an skb's linear window
 * may end long before the packet does (GSO, scatter-gather) while the
 * headers are in it. Only the IP header itself must be in the window.
 * Options are not interpreted: a caller that cares looks at ihl_bytes > 20. */
static __always_inline int parse_ipv4_len(void *data, void *data_end, struct pkt *p,
					  __u32 pkt_len)
{
	struct iphdr *ip = data + p->l3_off;
	__u32 ihl_bytes, tot_len;
	__u16 frag;

	p->ip = ip;
	if ((void *)(ip + 1) > data_end)
		return PARSE_TRUNC;
	if (ip->version != 4)
		return PARSE_BAD_IP;
	ihl_bytes = (__u32)ip->ihl * 4;
	if (ihl_bytes < sizeof(*ip))
		return PARSE_BAD_IP;
	if (data + p->l3_off + ihl_bytes > data_end)
		return PARSE_TRUNC;
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < ihl_bytes)
		return PARSE_BAD_IP;
	if ((__u32)p->l3_off + tot_len > pkt_len)
		return PARSE_TRUNC;

	p->family = PKT_AF_INET;
	p->saddr = ip->saddr;
	p->daddr = ip->daddr;
	p->ip_len = tot_len;
	p->ihl_bytes = ihl_bytes;
	p->l4_proto = ip->protocol;
	p->tos = ip->tos;
	frag = bpf_ntohs(ip->frag_off);
	p->frag = ((frag & IP_MF) ? PKT_FRAG_MORE : 0) |
		  ((frag & IP_OFFSET) ? PKT_FRAG_LATER : 0);
	p->l4_off = p->l3_off + ihl_bytes;
	p->l4 = data + p->l4_off;
	return PARSE_OK;
}

/* parse_ipv4_len for a window that holds the whole packet (XDP without
 * frags; a fully linear skb). */
static __always_inline int parse_ipv4(void *data, void *data_end, struct pkt *p)
{
	return parse_ipv4_len(data, data_end, p, (__u32)(data_end - data));
}

/* L4 header at p->l4_off, for TCP, UDP and ICMP. Other protocols (IPIP, GRE,
 * ...) return PARSE_OK with ports 0 — the caller decides by p->l4_proto.
 * A non-first fragment returns PARSE_OK without touching L4 (ports 0): check
 * PKT_FRAG_LATER before trusting ports. The header must lie within both the
 * window and the IP total length. */
static __always_inline int parse_l4(void *data, void *data_end, struct pkt *p)
{
	void *l4 = data + p->l4_off;
	void *ip_end = data + p->l3_off + p->ip_len;

	p->sport = 0;
	p->dport = 0;
	p->tcp_flags = 0;
	p->icmp_type = 0;
	p->icmp_code = 0;
	if (p->frag & PKT_FRAG_LATER)
		return PARSE_OK;

	if (p->l4_proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		__u32 doff;

		if ((void *)(th + 1) > data_end || (void *)(th + 1) > ip_end)
			return PARSE_TRUNC;
		doff = (__u32)th->doff * 4;
		if (doff < sizeof(*th))
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
	} else if (p->l4_proto == IPPROTO_ICMP) {
		struct pkt_icmphdr *ih = l4;

		if ((void *)(ih + 1) > data_end || (void *)(ih + 1) > ip_end)
			return PARSE_TRUNC;
		p->icmp_type = ih->type;
		p->icmp_code = ih->code;
		if (ih->type == ICMP_ECHO || ih->type == ICMP_ECHOREPLY) {
			p->sport = ih->un.echo.id;
			p->dport = ih->un.echo.id;
		}
	}
	return PARSE_OK;
}

/* All three stages. Returns the first non-OK code. */
static __always_inline int parse_packet(void *data, void *data_end, struct pkt *p)
{
	int rc = parse_eth(data, data_end, p);

	if (rc != PARSE_OK)
		return rc;
	rc = parse_ipv4(data, data_end, p);
	if (rc != PARSE_OK)
		return rc;
	return parse_l4(data, data_end, p);
}

/* parse_packet for a packet of pkt_len bytes of which only [data, data_end)
 * is directly readable (tc: pkt_len = skb->len). The L4 header must be in the
 * window; its payload need not be. */
static __always_inline int parse_packet_len(void *data, void *data_end, struct pkt *p,
					    __u32 pkt_len)
{
	int rc = parse_eth(data, data_end, p);

	if (rc != PARSE_OK)
		return rc;
	rc = parse_ipv4_len(data, data_end, p, pkt_len);
	if (rc != PARSE_OK)
		return rc;
	return parse_l4(data, data_end, p);
}

/* The offending packet quoted inside an ICMP error (dest-unreachable, time
 * exceeded): its IPv4 header and the first 8 bytes of its L4 header, which is
 * all RFC 792 guarantees. Used to steer ICMP errors to the flow they concern. */
struct pkt_inner {
	struct iphdr *ip;
	__u16 ip_off;      /* offset of the quoted IP header from data */
	__be32 saddr, daddr;
	__u8 l4_proto;
	__u8 ihl_bytes;
	__be16 sport, dport; /* 0 unless TCP/UDP and the first fragment */
};

/* Parse the packet quoted by an ICMP error whose outer headers were parsed
 * into *p (p->l4_proto == IPPROTO_ICMP, parse_l4 OK). The quoted packet's own
 * length field is not checked against the window (the quote is truncated by
 * design); only bytes that are read are bounds-checked. */
static __always_inline int parse_icmp_inner(void *data, void *data_end,
					    const struct pkt *p, struct pkt_inner *in)
{
	__u16 off = p->l4_off + sizeof(struct pkt_icmphdr);
	struct iphdr *ip = data + off;
	__u32 ihl_bytes;

	in->ip = ip;
	in->ip_off = off;
	in->sport = 0;
	in->dport = 0;
	if ((void *)(ip + 1) > data_end)
		return PARSE_TRUNC;
	if (ip->version != 4)
		return PARSE_BAD_IP;
	ihl_bytes = (__u32)ip->ihl * 4;
	if (ihl_bytes < sizeof(*ip))
		return PARSE_BAD_IP;
	in->saddr = ip->saddr;
	in->daddr = ip->daddr;
	in->l4_proto = ip->protocol;
	in->ihl_bytes = ihl_bytes;
	if (ip->frag_off & bpf_htons(IP_OFFSET))
		return PARSE_OK;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		__be16 *ports = data + off + ihl_bytes;

		if ((void *)(ports + 2) > data_end)
			return PARSE_TRUNC;
		in->sport = ports[0];
		in->dport = ports[1];
	}
	return PARSE_OK;
}

#endif
