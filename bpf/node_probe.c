// SPDX-License-Identifier: GPL-2.0
/* Path probe responder helper, tc ingress on a Kubernetes node, attached in
 * front of the node program (lower priority number runs first).
 *
 * The edge's `dispatch: auto` asks "does the fabric carry our IPv4 option to
 * this node?" with a UDP datagram to NODE:probe_port whose header carries
 * the DSR option with VIP 0.0.0.0:0 (the probe marker) and whose payload is
 * "ELBPROBE" | nonce(8) | flag(1). When the option arrived intact this
 * program sets the flag to 1, turns the option into eight NOPs (so neither
 * the node program nor the stack treats it as a flow) and zeroes the UDP
 * checksum (allowed for IPv4; the payload changed). Userspace on the node
 * echoes the datagram back. Everything else continues to the next filter
 * untouched (TC_ACT_UNSPEC).
 *
 * IPv6 (the IPv6 marker, /work/coord wire format): the 24-byte Destination
 * Options DSR header directly after the fixed header, VIP :: and port 0.
 * When it arrived intact the flag is set and the option's action bits are
 * cleared (0x5e → 0x1e, "skip if unknown"): the header stays, so no length
 * changes, and the stack, which would discard the packet for 0x5e, skips
 * the option; the node program does not take 0x1e for ours. The UDP checksum, mandatory over
 * IPv6, is updated for the flag (the upper-layer checksum does not cover
 * extension headers).
 */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include "parse.h"
#include "csum.h"
#include "parse6.h"
#include "dsr_option.h"

#define PROBE_PAYLOAD_LEN 17

/* Set by the loader before load (.rodata). */
const volatile __u16 probe_port = 4790;

/* [0] probes marked, [1] probe-port datagrams without our option. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} node_probe_stats SEC(".maps");

static __always_inline void bump(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&node_probe_stats, &i);

	if (v)
		*v += 1;
}

/* The IPv6 probe marker (fixed header at l3_off): see the header comment. */
static __always_inline int probe6(struct __sk_buff *skb, __u32 l3_off)
{
	/* fixed header + our 24-byte header + UDP + payload */
	__u32 need = l3_off + IPV6_HLEN + DSR6_HDR_LEN + sizeof(struct udphdr) + PROBE_PAYLOAD_LEN;

	if (l3_off > ETH_HLEN + 4)
		return TC_ACT_UNSPEC;
	if (need > skb->len)
		need = skb->len; /* a probe without the header is shorter */
	if (bpf_skb_pull_data(skb, need))
		return TC_ACT_UNSPEC;

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + l3_off;
	struct dsr6_hdr *h = (void *)(ip6 + 1);
	struct udphdr *uh;
	__u32 plen;
	__u8 marked;

	if ((void *)(ip6 + 1) > data_end || ip6->version != 6)
		return TC_ACT_UNSPEC;
	plen = bpf_ntohs(ip6->payload_len);
	if (l3_off + IPV6_HLEN + plen > skb->len)
		return TC_ACT_UNSPEC;
	if (ip6->nexthdr == IPPROTO_DSTOPTS) {
		if ((void *)(h + 1) > data_end || h->nexthdr != IPPROTO_UDP)
			return TC_ACT_UNSPEC;
		uh = (void *)(h + 1);
		plen -= plen >= DSR6_HDR_LEN ? DSR6_HDR_LEN : plen;
		marked = 1;
	} else if (ip6->nexthdr == IPPROTO_UDP) {
		uh = (void *)(ip6 + 1);
		marked = 0;
	} else {
		return TC_ACT_UNSPEC;
	}

	__u8 *payload = (void *)(uh + 1);

	if ((void *)(payload + PROBE_PAYLOAD_LEN) > data_end || uh->dest != bpf_htons(probe_port) ||
	    plen < sizeof(*uh) + PROBE_PAYLOAD_LEN)
		return TC_ACT_UNSPEC;
	__u64 magic;

	__builtin_memcpy(&magic, payload, sizeof(magic));
	if (magic != 0x45424f5250424c45ULL)
		return TC_ACT_UNSPEC;
	/* Exactly the marker: any other header (a real VIP, other lengths,
	 * other padding) is not ours to touch. */
	if (!marked || h->hdrlen != DSR6_HDR_EXT_LEN || h->opt_type != DSR6_OPT_TYPE ||
	    h->opt_len != DSR6_OPT_DATA_LEN || h->port != 0 || h->pad_type != DSR6_PADN ||
	    h->pad_len != 0) {
		bump(1);
		return TC_ACT_UNSPEC;
	}
	__u64 a0, a1;

	__builtin_memcpy(&a0, h->addr, 8);
	__builtin_memcpy(&a1, h->addr + 8, 8);
	if (a0 | a1) {
		bump(1);
		return TC_ACT_UNSPEC;
	}

	/* Our option's action bits cleared: type 0x1e (the same experimental
	 * number, act 00) is one a receiver that does not know it skips. Not
	 * padding: Linux refuses a PadN longer than 7 bytes (RFC 4942
	 * 2.1.9.5). A CHECKSUM_COMPLETE skb's sum takes the byte's difference
	 * (an ignored error for other skbs). */
	__be16 old_opt = *(__be16 *)&h->opt_type;

	h->opt_type = DSR6_OPT_TYPE & 0x3f;
	bpf_csum_update(skb, csum_diff_2(old_opt, *(__be16 *)&h->opt_type));

	/* The flag is the 25th byte of the datagram: the high half of a
	 * checksum word whose low half is the sum's zero padding. */
	__u32 csum_off = l3_off + IPV6_HLEN + DSR6_HDR_LEN + offsetof(struct udphdr, check);
	__u8 old_flag = payload[PROBE_PAYLOAD_LEN - 1];

	payload[PROBE_PAYLOAD_LEN - 1] = 1;
	if (bpf_l4_csum_replace(skb, csum_off, bpf_htons((__u16)old_flag << 8), bpf_htons(1 << 8),
				BPF_F_MARK_MANGLED_0 | 2))
		return TC_ACT_UNSPEC;
	bump(0);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int node_probe(struct __sk_buff *skb)
{
	struct pkt l2;

	l2.l3_proto = 0; /* parse_eth leaves it unset for a QinQ frame */
	if (parse_eth((void *)(long)skb->data, (void *)(long)skb->data_end, &l2) == PARSE_UNSUPPORTED &&
	    l2.l3_proto == bpf_htons(ETH_P_IPV6))
		return probe6(skb, l2.l3_off);

	/* Ethernet + IPv4 with our option + UDP + payload. */
	__u32 need = ETH_HLEN + 28 + sizeof(struct udphdr) + PROBE_PAYLOAD_LEN;

	if (skb->len < need)
		return TC_ACT_UNSPEC;
	if (bpf_skb_pull_data(skb, need))
		return TC_ACT_UNSPEC;

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct pkt p;

	if (parse_packet(data, data_end, &p) != PARSE_OK || p.l4_proto != IPPROTO_UDP ||
	    p.dport != bpf_htons(probe_port) || (p.frag & (PKT_FRAG_LATER | PKT_FRAG_MORE)))
		return TC_ACT_UNSPEC;

	struct udphdr *uh = p.l4;
	__u8 *payload = (void *)(uh + 1);

	if ((void *)(payload + PROBE_PAYLOAD_LEN) > data_end)
		return TC_ACT_UNSPEC;
	/* "ELBPROBE" as a little-endian u64 (clang does not inline memcmp
	 * for BPF). */
	__u64 magic;

	__builtin_memcpy(&magic, payload, sizeof(magic));
	if (magic != 0x45424f5250424c45ULL)
		return TC_ACT_UNSPEC;

	struct dsr_opt *opt = (void *)(p.ip + 1);

	if (p.ihl_bytes != 20 + DSR_OPT_LEN || (void *)(opt + 1) > data_end ||
	    opt->type != DSR_OPT_TYPE || opt->len != DSR_OPT_LEN || opt->addr != 0 || opt->port != 0) {
		bump(1);
		return TC_ACT_UNSPEC;
	}

	/* Option → NOPs, with the header checksum updated for both words. */
	__be32 *w = (__be32 *)opt;
	__be32 old0 = w[0], old1 = w[1];
	__be32 nop = bpf_htonl(0x01010101);

	w[0] = nop;
	w[1] = nop;
	csum_replace4(&p.ip->check, old0, nop);
	csum_replace4(&p.ip->check, old1, nop);

	payload[PROBE_PAYLOAD_LEN - 1] = 1;
	uh->check = 0;
	bump(0);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
