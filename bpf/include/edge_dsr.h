/* Edge program: DSR dispatch to a backend — DNAT with the 8-byte VIP
 * option (dsr_option.h) or IPv4-in-IPv4 encapsulation to the node.
 *
 * Both expect the fixed layout the caller has verified: untagged Ethernet,
 * IPv4 with IHL 5 (packets with options never reach here), TCP or UDP. */
#ifndef EDGELB_EDGE_DSR_H
#define EDGELB_EDGE_DSR_H

#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "csum.h"
#include "dsr_option.h"
#include "edge_icmp.h"

#define IPV4_DF 0x4000

/* After opt_len bytes of IPv4 option were inserted behind a 20-byte header
 * of a packet ip_len long (and filled): IHL and total length follow, and
 * the header checksum is updated incrementally, never recomputed — a header
 * that arrived with a bad checksum must not leave with a good one. */
static __always_inline void edge_ip_option_added(struct iphdr *ip, __u16 ip_len,
						 const __be32 *opt, const int opt_len)
{
	__be16 old_w0 = *(__be16 *)ip, new_w0;
	__u32 diff;

	ip->ihl = 5 + opt_len / 4;
	new_w0 = *(__be16 *)ip;
	diff = csum_diff_2(old_w0, new_w0) + csum_diff_2(ip->tot_len, bpf_htons(ip_len + opt_len));
#pragma unroll
	for (int i = 0; i < opt_len / 4; i++)
		diff += csum_word32(opt[i]);
	ip->tot_len = bpf_htons(ip_len + opt_len);
	csum_apply_diff(&ip->check, diff);
}

/* The outer header of an IPIP packet from the edge, outer_len bytes (20,
 * or more with an option the caller writes behind it); the caller sets
 * the checksum. TOS and DF are copied from the inner header, TTL 64; the IP ID
 * is 0 with DF (RFC 6864) and random without. */
static __always_inline void edge_ipip_outer(struct iphdr *ip, const int outer_len, __u8 tos, __be16 df,
					    __u16 inner_len, __be32 src, __be32 dst)
{
	ip->version = 4;
	ip->ihl = outer_len / 4;
	ip->tos = tos;
	ip->tot_len = bpf_htons(inner_len + outer_len);
	ip->id = df ? 0 : (__be16)bpf_get_prandom_u32();
	ip->frag_off = df;
	ip->ttl = 64;
	ip->protocol = IPPROTO_IPIP;
	ip->saddr = src;
	ip->daddr = dst;
}

/* ip-option dispatch. with_option: TCP SYN or UDP (the node learns the
 * flow from it); other TCP segments are only DNATed. */
static __always_inline int edge_xmit_option(void *ctx, const int xdp, const struct edge_config *cfg,
					    const struct pkt *p, const struct edge_backend *be,
					    int with_option, __u32 *ifindex)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct iphdr *ip = data + EDGE_L3_OFF;
	__be32 vip = p->daddr;
	__be16 vport = p->dport;
	int big = 0;

	if (data + EDGE_L4_OFF > end)
		return ACT_DROP;
	if (with_option) {
		big = edge_mtu_check(ctx, xdp, cfg, p->ip_len, ip->frag_off, DSR_OPT_LEN);
		if (big == -1)
			return ACT_TX;
		if (big == -2)
			return ACT_DROP;
	}
	/* DNAT; the option added below is not part of the pseudo-header. */
	if (edge_rewrite(ctx, xdp, p->l4_proto, EDGE_RW_DST, 0, 0, be->ip, be->port) < 0)
		return ACT_DROP;
	if (with_option) {
		struct dsr_opt *opt;

		if (edge_grow(ctx, xdp, DSR_OPT_LEN, EDGE_L4_OFF, 0) < 0) {
			edge_count(DROP_ADJUST);
			return ACT_DROP;
		}
		data = edge_data(ctx, xdp);
		end = edge_data_end(ctx, xdp);
		if (data + EDGE_L4_OFF + DSR_OPT_LEN > end)
			return ACT_DROP;
		ip = data + EDGE_L3_OFF;
		opt = data + EDGE_L4_OFF;
		opt->type = DSR_OPT_TYPE;
		opt->len = DSR_OPT_LEN;
		opt->port = vport;
		opt->addr = vip;
		edge_ip_option_added(ip, p->ip_len, (const __be32 *)opt, DSR_OPT_LEN);
	}
	if (big == 1)
		return ACT_PASS;
	return edge_forward(ctx, xdp, cfg, p->saddr, be->node_ip,
			    p->ip_len + (with_option ? DSR_OPT_LEN : 0), ifindex);
}

/* Outer source for IPIP: either the edge address, or an address of a
 * configured block with the low bits from the flow hash. The second lets
 * a node's NIC spread tunnels of different flows over its receive queues
 * (RSS hashes the outer addresses of IPIP); it needs the nodes to accept
 * tunnel packets from that whole block. */
static __always_inline __be32 edge_ipip_src(const struct edge_config *cfg, __u32 hash)
{
	__u32 bits = cfg->ipip_src_bits, mask;

	if (bits == 0 || bits > 16)
		return cfg->addr;
	mask = (1u << bits) - 1;
	return bpf_htonl((bpf_ntohl(cfg->ipip_src_net) & ~mask) | (hash & mask));
}

/* ipip dispatch: the client's packet untouched inside an outer IPv4 header
 * to the backend's node (edge_ipip_outer). */
static __always_inline int edge_xmit_ipip(void *ctx, const int xdp, const struct edge_config *cfg,
					  const struct pkt *p, __be32 node_ip, __u32 hash,
					  __u32 *ifindex)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct iphdr *ip = data + EDGE_L3_OFF;
	__be16 df;
	__u8 tos;
	__be32 src;
	int big;

	if (data + EDGE_L4_OFF > end)
		return ACT_DROP;
	df = ip->frag_off & bpf_htons(IPV4_DF);
	tos = ip->tos;
	big = edge_mtu_check(ctx, xdp, cfg, p->ip_len, ip->frag_off, 20);
	if (big == -1)
		return ACT_TX;
	if (big == -2)
		return ACT_DROP;
	if (edge_grow(ctx, xdp, 20, ETH_HLEN, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4) < 0) {
		edge_count(DROP_ADJUST);
		return ACT_DROP;
	}
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	if (data + EDGE_L4_OFF > end)
		return ACT_DROP;
	ip = data + EDGE_L3_OFF;
	src = edge_ipip_src(cfg, hash);
	edge_ipip_outer(ip, 20, tos, df, p->ip_len, src, node_ip);
	ipv4_csum20_set(ip);
	if (big == 1)
		return ACT_PASS;
	return edge_forward(ctx, xdp, cfg, src, node_ip, p->ip_len + 20, ifindex);
}

#endif
