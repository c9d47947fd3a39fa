/* Test fixture, not part of the appliance: a minimal stand-in for the edge,
 * attached at tc egress of a client's interface in test/datapath/node-live,
 * so the node program sees both dispatch formats on real skbs (this kernel
 * has no ipip tunnel device, and sockets cannot add our IP option).
 *
 * For packets to the configured VIP:port (TCP/UDP):
 *   mode 1 (ip-option): destination rewritten to the pod, and on TCP SYN and
 *          every UDP packet the DSR option (dsr_option.h) inserted after the
 *          base header;
 *   mode 2 (ipip): the packet, untouched, wrapped in an outer IPv4 header
 *          from `outer_src` to `node_ip`.
 * Everything else passes untouched.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "parse.h"
#include "csum.h"
#include "dsr_option.h"

struct ntc_config {
	__be32 vip;
	__be16 vport;
	__u8 mode;
	__u8 pad;
	__be32 pod;
	__be16 pport;
	__u16 pad2;
	__be32 outer_src;
	__be32 node_ip;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ntc_config);
} ntc_config SEC(".maps");

static __always_inline int dnat(struct __sk_buff *skb, __u32 l3_off, __u32 l4_off, __u8 proto,
				__be32 old_ip, __be32 new_ip, __be16 old_port, __be16 new_port)
{
	__u32 csum_off = l4_off + (proto == IPPROTO_TCP ? 16 : 6);
	__u64 m = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_l4_csum_replace(skb, csum_off, old_ip, new_ip, BPF_F_PSEUDO_HDR | m | 4) ||
	    bpf_l4_csum_replace(skb, csum_off, old_port, new_port, m | 2) ||
	    bpf_l3_csum_replace(skb, l3_off + 10, old_ip, new_ip, 4) ||
	    bpf_skb_store_bytes(skb, l3_off + 16, &new_ip, 4, 0) ||
	    bpf_skb_store_bytes(skb, l4_off + 2, &new_port, 2, 0))
		return -1;
	return 0;
}

SEC("tc")
int ntc_egress(struct __sk_buff *skb)
{
	void *data, *data_end;
	struct ntc_config *c;
	struct pkt p;
	__u32 zero = 0;

	bpf_skb_pull_data(skb, skb->len < 128 ? skb->len : 128);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	c = bpf_map_lookup_elem(&ntc_config, &zero);
	if (!c || !c->mode)
		return TC_ACT_OK;
	if (parse_packet_len(data, data_end, &p, skb->len) != PARSE_OK)
		return TC_ACT_OK;
	if (p.ihl_bytes != 20 || (p.frag & PKT_FRAG_LATER))
		return TC_ACT_OK;
	if ((p.l4_proto != IPPROTO_TCP && p.l4_proto != IPPROTO_UDP) || p.daddr != c->vip ||
	    p.dport != c->vport)
		return TC_ACT_OK;

	if (c->mode == 2) {
		__u32 l3_off = p.l3_off;
		__u16 inner_len = p.ip_len;
		__u8 tos = p.tos;
		struct iphdr *o;

		if (bpf_skb_adjust_room(skb, sizeof(struct iphdr), BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_ENCAP_L3_IPV4))
			return TC_ACT_SHOT;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		if (l3_off > 18)
			return TC_ACT_SHOT;
		o = data + l3_off;
		if ((void *)(o + 1) > data_end)
			return TC_ACT_SHOT;
		o->version = 4;
		o->ihl = 5;
		o->tos = tos;
		o->tot_len = bpf_htons(inner_len + sizeof(struct iphdr));
		o->id = 0;
		o->frag_off = 0;
		o->ttl = 64;
		o->protocol = IPPROTO_IPIP;
		o->saddr = c->outer_src;
		o->daddr = c->node_ip;
		ipv4_csum20_set(o);
		return TC_ACT_OK;
	}

	/* ip-option */
	{
		__u32 l3_off = p.l3_off;
		__u32 l4_off = p.l4_off;
		__u8 proto = p.l4_proto;
		__be32 vip = p.daddr;
		__be16 vport = p.dport;
		__u16 tot = p.ip_len;
		int ok;

		if (proto == IPPROTO_UDP || (p.tcp_flags & PKT_TCP_SYN)) {
			struct dsr_opt opt = {
				.type = DSR_OPT_TYPE,
				.len = DSR_OPT_LEN,
				.port = vport,
				.addr = vip,
			};
			struct iphdr *ip;

			if (bpf_skb_adjust_room(skb, DSR_OPT_LEN, BPF_ADJ_ROOM_NET, 0))
				return TC_ACT_SHOT;
			if (bpf_skb_store_bytes(skb, l3_off + 20, &opt, sizeof(opt), 0))
				return TC_ACT_SHOT;
			data = (void *)(long)skb->data;
			data_end = (void *)(long)skb->data_end;
			if (l3_off > 18)
				return TC_ACT_SHOT;
			ip = data + l3_off;
			if ((void *)(ip + 1) > data_end)
				return TC_ACT_SHOT;
			ip->ihl = 7;
			ip->tot_len = bpf_htons(tot + DSR_OPT_LEN);
			ip->check = 0;
			ip->check = ipv4_csum(ip, 7, data_end, &ok);
			if (!ok)
				return TC_ACT_SHOT;
			l4_off += DSR_OPT_LEN;
		}
		if (dnat(skb, l3_off, l4_off, proto, vip, c->pod, vport, c->pport))
			return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
