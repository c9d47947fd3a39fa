/* Edge program: fragments of a SNAT flow's reply, IPv4.
 *
 * A backend's reply bigger than its path to the edge allows — a DNS answer
 * with a large EDNS0 buffer, over UDP SNAT (mode snat, and UDP of mode
 * hybrid) — leaves the backend's kernel as IPv4 fragments addressed to the
 * edge. They went to the edge's own stack, which reassembled them for no
 * socket: the client never got the answer. XDP cannot reassemble, and need
 * not: each fragment is rewritten as the whole reply would be — from the
 * VIP, to the client — and forwarded for the client to reassemble.
 *
 * The first fragment carries the L4 header: it is matched to its flow in
 * edge_snat_rev as any reply is (port range, interface), its ports
 * rewritten and its L4 checksum moved by the difference of the addresses
 * and ports (the checksum covers the whole datagram, the difference does
 * not depend on the rest), and (backend, IP id, protocol) → (client, VIP)
 * is remembered in edge_snat_frags for the later fragments, which carry no
 * ports. A later fragment that comes before its first, long after it
 * (EDGE_SNAT_FRAG_NS), or whose first was no flow's, passes to the stack as
 * before. A fragment does not refresh the flow. */
#ifndef EDGELB_EDGE_SNAT_FRAG_H
#define EDGELB_EDGE_SNAT_FRAG_H

#include "edge_snat.h"

/* A datagram's fragments arrive within milliseconds; an IP id repeats only
 * after 65 536 datagrams from that backend to this edge. */
#define EDGE_SNAT_FRAG_NS (2ULL * 1000 * 1000 * 1000)
#define EDGE_SNAT_FRAG_ENTRIES (1 << 12) /* LRU: 4 096 datagrams in flight; the map memory budget at 10 000 services has no room for more */

struct edge_snat_frag_key {
	__be32 backend_ip;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

struct edge_snat_frag_val {
	__be32 client_ip;
	__be32 vip;
	__u64 seen_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EDGE_SNAT_FRAG_ENTRIES);
	__type(key, struct edge_snat_frag_key);
	__type(value, struct edge_snat_frag_val);
} edge_snat_frags SEC(".maps");

/* The first fragment's L4 header lies within it (a TCP header whole, as
 * RFC 1858 wants of any first fragment; a UDP header's length is the
 * datagram's, not this fragment's). */
static __always_inline int edge_first_fragment_sane(void *data, void *end, const struct pkt *p)
{
	__u32 l4_len = p->ip_len - p->ihl_bytes;

	if (p->l4_proto == IPPROTO_TCP) {
		struct tcphdr *th = data + EDGE_L4_OFF;

		if ((void *)(th + 1) > end)
			return 0;
		return th->doff >= 5 && (__u32)th->doff * 4 <= l4_len;
	}
	if (p->l4_proto == IPPROTO_UDP) {
		struct udphdr *uh = data + EDGE_L4_OFF;

		if ((void *)(uh + 1) > end)
			return 0;
		return sizeof(*uh) <= l4_len && bpf_ntohs(uh->len) > l4_len;
	}
	return 0;
}

/* A fragment sent to the edge address (the caller checked). */
static __always_inline int edge_snat_fragment(void *ctx, const int xdp, const struct edge_config *cfg,
					      const struct pkt *p, __u32 *ifindex)
{
	struct edge_snat_frag_key fk = { .backend_ip = p->saddr, .proto = p->l4_proto };
	struct edge_snat_frag_val *fv;
	struct edge_snat_val *v;
	struct iphdr *ip;
	void *data, *end;
	__u64 now;
	__be32 client, vip;

	ctx = edge_ctx_fresh(ctx);
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	ip = data + EDGE_L3_OFF;
	if ((void *)(ip + 1) > end || (p->l4_proto != IPPROTO_TCP && p->l4_proto != IPPROTO_UDP))
		return ACT_PASS;
	if (edge_tagged(ctx, xdp, p) || p->ihl_bytes != 20 || edge_l2_group(data, end))
		return ACT_PASS;
	fk.id = ip->id;
	now = edge_now_ns(cfg);
	if (!(p->frag & PKT_FRAG_LATER)) {
		struct edge_snat_frag_val nv = { .seen_ns = now };
		struct edge_snat_key k = { .proto = p->l4_proto };
		__be16 *ports = data + EDGE_L4_OFF;
		__be16 cport, vport;
		__u16 port;

		if ((void *)(ports + 2) > end)
			return ACT_PASS;
		port = bpf_ntohs(ports[1]);
		if (port < cfg->snat_port_min || port > cfg->snat_port_max)
			return ACT_PASS;
		k.backend_ip = p->saddr;
		k.backend_port = ports[0];
		k.edge_port = ports[1];
		v = bpf_map_lookup_elem(&edge_snat_rev, &k);
		if (!v)
			return ACT_PASS;
		if (!edge_first_fragment_sane(data, end, p)) {
			edge_count(DROP_MALFORMED);
			return ACT_DROP;
		}
		if (v->ifindex && v->ifindex != edge_ifindex(ctx, xdp)) {
			edge_count(DROP_SNAT_IFACE);
			return ACT_DROP;
		}
		client = v->client_ip;
		vip = v->vip;
		cport = v->client_port;
		vport = v->vport;
		nv.client_ip = client;
		nv.vip = vip;
		bpf_map_update_elem(&edge_snat_frags, &fk, &nv, BPF_ANY);
		if (edge_hop(ctx, xdp, cfg, 0) < 0)
			return ACT_DROP;
		if (edge_rewrite(ctx, xdp, p->l4_proto, EDGE_RW_BOTH, vip, vport, client, cport) < 0)
			return ACT_DROP;
	} else {
		fv = bpf_map_lookup_elem(&edge_snat_frags, &fk);
		if (!fv || now - fv->seen_ns > EDGE_SNAT_FRAG_NS)
			return ACT_PASS;
		client = fv->client_ip;
		vip = fv->vip;
		if (edge_hop(ctx, xdp, cfg, 0) < 0)
			return ACT_DROP;
		data = edge_data(ctx, xdp);
		end = edge_data_end(ctx, xdp);
		ip = data + EDGE_L3_OFF;
		if ((void *)(ip + 1) > end)
			return ACT_DROP;
		csum_replace4(&ip->check, ip->saddr, vip);
		csum_replace4(&ip->check, ip->daddr, client);
		ip->saddr = vip;
		ip->daddr = client;
	}
	edge_count(EV_SNAT_FRAGMENT);
	return edge_forward(ctx, xdp, cfg, vip, client, p->ip_len, ifindex);
}

#endif
