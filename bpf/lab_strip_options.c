// SPDX-License-Identifier: GPL-2.0
/* Lab fixture, not part of the appliance: a fabric hop that mishandles IPv4
 * options or IPv6 extension headers the way some cloud fabrics and
 * firewalls do. Attached at tc ingress/egress of a fabric interface in the
 * lab/tests:
 *   lab_strip_options: removes every IPv4 option (IHL back to 5, total
 *                       length and header checksum fixed) and forwards
 *   lab_drop_options:  drops every IPv4 packet that carries options
 *   lab_strip_dstopts: removes an IPv6 Destination Options header that
 *                       directly follows the fixed header (where edgelb's
 *                       DSR header sits): next header and payload length
 *                       restored, nothing else changes (extension headers
 *                       are outside every checksum) — and forwards
 *   lab_drop_dstopts:  drops every IPv6 packet whose first extension
 *                       header is Destination Options
 * Packets without them pass untouched.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include "parse.h"
#include "parse6.h"
#include "csum.h"

/* [0] packets stripped/dropped. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lab_opt_stats SEC(".maps");

static __always_inline void bump(void)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&lab_opt_stats, &k);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline int options_len(struct __sk_buff *skb, __u32 *l3_off)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct pkt p;

	if (parse_eth(data, data_end, &p) != PARSE_OK || p.l3_proto != bpf_htons(ETH_P_IP))
		return 0;
	if (parse_ipv4(data, data_end, &p) != PARSE_OK)
		return 0;
	*l3_off = p.l3_off;
	return p.ihl_bytes - 20;
}

SEC("tc")
int lab_drop_options(struct __sk_buff *skb)
{
	__u32 l3_off = 0;

	if (bpf_skb_pull_data(skb, 14 + 60) && bpf_skb_pull_data(skb, skb->len))
		return TC_ACT_OK;
	if (options_len(skb, &l3_off) > 0) {
		bump();
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

SEC("tc")
int lab_strip_options(struct __sk_buff *skb)
{
	__u32 l3_off = 0;
	int olen;

	if (bpf_skb_pull_data(skb, 14 + 60) && bpf_skb_pull_data(skb, skb->len))
		return TC_ACT_OK;
	olen = options_len(skb, &l3_off);
	if (olen <= 0 || olen > 40 || l3_off > 18)
		return TC_ACT_OK;
	/* BPF_ADJ_ROOM_NET shrinks right after the fixed 20-byte base header:
	 * exactly the options. IHL, length and checksum are ours to fix. */
	if (bpf_skb_adjust_room(skb, -olen, BPF_ADJ_ROOM_NET, 0))
		return TC_ACT_SHOT;

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + (l3_off & 0x1f);

	if ((void *)(ip + 1) > data_end)
		return TC_ACT_SHOT;
	ip->ihl = 5;
	ip->tot_len = bpf_htons(bpf_ntohs(ip->tot_len) - olen);
	ipv4_csum20_set(ip);
	bump();
	return TC_ACT_OK;
}

/* The IPv6 fixed header's offset when its next header is Destination
 * Options (the packet pulled far enough to read it and that header's first
 * two bytes), else -1. */
static __always_inline int dstopts_first(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct pkt l2;

	if (parse_eth_ip(data, data_end, &l2) != PARSE_OK || l2.l3_proto != bpf_htons(ETH_P_IPV6) || l2.l3_off > 18)
		return -1;

	struct ipv6hdr *ip6 = data + l2.l3_off;

	if ((void *)(ip6 + 1) + 2 > data_end || ip6->version != 6 || ip6->nexthdr != IPPROTO_DSTOPTS)
		return -1;
	return l2.l3_off;
}

SEC("tc")
int lab_drop_dstopts(struct __sk_buff *skb)
{
	if (bpf_skb_pull_data(skb, 18 + 40 + 2) && bpf_skb_pull_data(skb, skb->len))
		return TC_ACT_OK;
	if (dstopts_first(skb) >= 0) {
		bump();
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

SEC("tc")
int lab_strip_dstopts(struct __sk_buff *skb)
{
	if (bpf_skb_pull_data(skb, 18 + 40 + 2) && bpf_skb_pull_data(skb, skb->len))
		return TC_ACT_OK;

	int off = dstopts_first(skb);

	if (off < 0)
		return TC_ACT_OK;

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + (off & 0x1f);
	__u8 *h = (void *)(ip6 + 1);

	if ((void *)(h + 2) > data_end)
		return TC_ACT_OK;

	__u8 nexthdr = h[0];
	__u32 hlen = ((__u32)h[1] + 1) * 8;
	__u32 plen = bpf_ntohs(ip6->payload_len);

	/* A header longer than the payload says, or than the frame, is not
	 * one to cut. */
	if (hlen > plen || (__u32)off + 40 + hlen > skb->len)
		return TC_ACT_OK;
	/* BPF_ADJ_ROOM_NET shrinks right after the fixed 40-byte header:
	 * exactly this header. Next header and payload length are ours. */
	if (bpf_skb_adjust_room(skb, -(__s32)hlen, BPF_ADJ_ROOM_NET, 0))
		return TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ip6 = data + (off & 0x1f);
	if ((void *)(ip6 + 1) > data_end)
		return TC_ACT_SHOT;
	ip6->nexthdr = nexthdr;
	ip6->payload_len = bpf_htons(plen - hlen);
	bump();
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
