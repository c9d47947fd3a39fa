/* Node program: the trust boundary. Only the edges may hand a pod a flow:
 * a DSR option or an IPIP packet to one of our frontends is acted on only
 * when it comes from an edge, anything else carrying them is dropped and
 * counted (NC_DROP_UNTRUSTED) — never passed on with the option stripped.
 *
 * "From an edge" means:
 *   - its Ethernet sender is a trusted edge neighbour (node_edge_macs). An
 *     ip-option packet keeps the client's IPv4 source, so the link layer is
 *     the only place the edge shows; a forged option sent from beyond a
 *     router arrives with the router's address as sender and is refused.
 *   - for IPIP, also: the outer source lies in node_edge_src.
 * Trusted neighbours are learnt here from their ARP (a request or reply
 * whose sender address is an edge source and whose sender hardware address
 * is the frame's own source), which an edge sends before its first packet
 * to this node, and written by the agent from the neighbour table for edges
 * that were resolved before the program was loaded.
 * A MAC stands for its edge only while the edge confirms it: an edge
 * address announced from a new MAC (NIC replaced, VM re-created) takes its
 * trust away from the old one (node_edge_addrs), and a MAC no ARP, NS, NA
 * or agent write confirmed for NODE_EDGE_MAC_TTL_NS is trusted no more —
 * whoever owns an edge's former MAC must not inherit its trust.
 *
 * What this relies on: the edges are on this node's link (ip-option needs
 * that anyway); a sender on the same link can forge anything, as on any
 * L2 segment. Across a routed hop use ipip and filter spoofed sources at the
 * fabric's edge; the router on this node's link is listed apart
 * (--edge-routers, NODE_SRC_ROUTER): its MAC is trusted as the sender of
 * IPIP only. Everything behind a router reaches the node with the router's
 * MAC, and an option packet keeps its own sender's source address: trusted
 * for options, the router's MAC would let anyone behind it hand pods flows
 * with a forged option. */
#ifndef EDGELB_NODE_TRUST_H
#define EDGELB_NODE_TRUST_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"
#include "node_maps.h"
#include "node_counters.h"
#include "node_parse.h"
#include "node_flow.h"

#ifndef ETH_P_ARP
#define ETH_P_ARP 0x0806
#endif

/* What the edge-source block holding addr is: NODE_SRC_*, 0 for none. */
static __always_inline __u8 source_kind(__be32 addr)
{
	struct node_src_key k = { .prefixlen = 32, .addr = addr };
	__u8 *v = bpf_map_lookup_elem(&node_edge_src, &k);

	return v ? *v : 0;
}

/* Is addr an edge's (an IPIP outer source; not a router's)? */
static __always_inline int edge_source(__be32 addr)
{
	return source_kind(addr) == NODE_SRC_EDGE;
}

/* The frame's sender's entry, while it is confirmed (NODE_EDGE_MAC_TTL_NS).
 * `now` is the caller's now_ns(): the packet's one clock read, shared with
 * its flow update (a ktime call per packet is visible in the cost). */
static __always_inline struct node_mac_value *trusted_mac(const struct ethhdr *eth, __u64 now)
{
	struct node_mac_key k = {};
	struct node_mac_value *v;

	__builtin_memcpy(k.mac, eth->h_source, ETH_ALEN);
	v = bpf_map_lookup_elem(&node_edge_macs, &k);
	if (v && is_expired(now, v->seen_ns, NODE_EDGE_MAC_TTL_NS))
		return 0;
	return v;
}

/* May this frame's sender hand a pod a flow with an option? An edge on
 * this node's link; never a router (see the header comment). */
static __always_inline int edge_neighbour(const struct ethhdr *eth, __u64 now)
{
	struct node_mac_value *v = trusted_mac(eth, now);

	return v && !(v->how & NODE_MAC_ROUTER);
}

/* May this frame's sender bring the edges' IPIP (whose outer source is
 * checked apart)? An edge, or a router the edges' IPIP crosses. */
static __always_inline int ipip_neighbour(const struct ethhdr *eth, __u64 now)
{
	return trusted_mac(eth, now) != 0;
}

/* ARP for IPv4 over Ethernet: fixed 28 bytes after the Ethernet header. */
struct node_arp {
	__be16 htype;
	__be16 ptype;
	__u8 hlen;
	__u8 plen;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__be32 spa;
	__u8 tha[ETH_ALEN];
	__be32 tpa;
} __attribute__((packed));

static __always_inline int same_mac(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
	       a[5] == b[5];
}

/* The edge address `addr` now announces itself from `mac`. The MAC it was
 * at before, if another, is trusted no more when its entry stood for this
 * address (ip4 — an IPv4 address — or 0, an IPv6-only entry); a MAC whose
 * entry stands for another edge address (one NIC, two addresses) keeps it.
 * Called only for an announcement that passed every check, so nothing but
 * an edge address's own ARP / NS / NA moves it. */
static __always_inline void edge_address_at(const struct pkt_addr6 *addr,
					    const struct node_mac_key *mac, __be32 ip4)
{
	struct node_mac_key *was = bpf_map_lookup_elem(&node_edge_addrs, addr);
	struct node_mac_key old;
	struct node_mac_value *ov;

	if (was && same_mac(was->mac, mac->mac))
		return;
	if (was) {
		old = *was;
		ov = bpf_map_lookup_elem(&node_edge_macs, &old);
		if (ov && ov->ip == ip4)
			bpf_map_delete_elem(&node_edge_macs, &old);
	}
	bpf_map_update_elem(&node_edge_addrs, addr, mac, BPF_ANY);
}

/* Learn the sender of an ARP request or reply as an edge neighbour when it
 * claims an edge-source address for its own frame's source MAC; a known
 * one's ARP confirms it (seen_ns). */
static __always_inline void learn_edge_neighbour(struct __sk_buff *skb, const struct pkt *p)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct node_arp *arp;
	struct node_mac_value *cur;
	struct node_mac_key k = {};
	struct pkt_addr6 addr = {};
	__be32 spa;
	__u32 how;
	__u8 kind;
	__u64 now;

	if (p->has_vlan || p->l3_off != ETH_HLEN)
		return;
	pull_headers(skb, ETH_HLEN + sizeof(struct node_arp));
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	eth = data;
	arp = data + ETH_HLEN;
	if ((void *)(arp + 1) > data_end)
		return;
	if (arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) || arp->hlen != ETH_ALEN ||
	    arp->plen != 4 || (arp->op != bpf_htons(1) && arp->op != bpf_htons(2)))
		return;
	/* A unicast sender speaking for itself. */
	if ((arp->sha[0] & 1) || !same_mac(arp->sha, eth->h_source))
		return;
	spa = arp->spa;
	addr.w[2] = bpf_htonl(0xffff); /* ::ffff:spa in node_edge_addrs */
	addr.w[3] = spa;
	kind = source_kind(spa);
	if (kind != NODE_SRC_EDGE && kind != NODE_SRC_ROUTER)
		return;
	how = NODE_MAC_FROM_ARP | (kind == NODE_SRC_ROUTER ? NODE_MAC_ROUTER : 0);
	__builtin_memcpy(k.mac, arp->sha, ETH_ALEN);
	edge_address_at(&addr, &k, spa);
	now = now_ns(get_config());
	cur = bpf_map_lookup_elem(&node_edge_macs, &k);
	if (cur && cur->ip == spa && (cur->how & NODE_MAC_ROUTER) == (how & NODE_MAC_ROUTER)) {
		cur->seen_ns = now;
		return;
	}
	{
		struct node_mac_value v = {
			.ip = spa,
			.how = how,
			.seen_ns = now,
		};

		bpf_map_update_elem(&node_edge_macs, &k, &v, BPF_ANY);
	}
	node_count(NC_EDGE_LEARNT);
}

static __always_inline __u8 source_kind6(const struct pkt_addr6 *addr)
{
	struct node_src6_key k = { .prefixlen = 128, .addr = *addr };
	__u8 *v = bpf_map_lookup_elem(&node_edge_src6, &k);

	return v ? *v : 0;
}

static __always_inline int edge_source6(const struct pkt_addr6 *addr)
{
	return source_kind6(addr) == NODE_SRC_EDGE;
}

/* Neighbor Solicitation / Advertisement (RFC 4861 §4.3, §4.4): the ICMPv6
 * header, 4 bytes (reserved / flags), the target address, then options. */
struct node_nd6 {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 flags;
	struct pkt_addr6 target;
};

#define ND6_OPT_SLLA 1
#define ND6_OPT_TLLA 2
#define ND6_MAX_OPTS 4

/* The link-layer address option of `type` among the first ND6_MAX_OPTS
 * options of an NS/NA (lengths in 8-byte units, 0 is malformed), checked
 * against the frame's own sender. Options must lie within the packet. */
static __always_inline int nd6_lladdr_is(void *data, void *data_end, __u32 off, __u32 end,
					 __u8 type, const __u8 *mac)
{
#pragma clang loop unroll(disable)
	for (int i = 0; i < ND6_MAX_OPTS; i++) {
		__u8 *o;

		if (off + 8 > end || off > NODE_PULL6_MAX)
			return 0;
		o = data + off;
		if ((void *)(o + 8) > data_end)
			return 0;
		if (o[1] == 0)
			return 0;
		if (o[0] == type)
			return o[1] == 1 && same_mac(o + 2, mac);
		off += (__u32)o[1] * 8;
	}
	return 0;
}

/* Learn an edge neighbour from an NS or NA (see the header comment). */
static __always_inline void learn_edge_neighbour6(struct __sk_buff *skb, __u32 tagged,
						  const struct pkt6 *p)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct ethhdr *eth = data;
	struct node_nd6 *nd;
	struct node_mac_value *cur;
	struct node_mac_key k = {};
	__u32 off = p->l4_off;
	__u8 opt, kind;
	__u64 now;

	if (tagged || p->l3_off != ETH_HLEN || p->hop_limit != 255 || p->n_ext != 0)
		return;
	if (off > NODE_PULL6_MAX)
		return;
	nd = data + off_bounded(off, 0x3ff);
	if ((void *)(eth + 1) > data_end || (void *)(nd + 1) > data_end ||
	    off + sizeof(*nd) > p->ip_end || nd->code != 0)
		return;
	if (eth->h_source[0] & 1)
		return;
	if (nd->type == ICMP6_NDP_NS) {
		opt = ND6_OPT_SLLA;
	} else if (nd->type == ICMP6_NDP_NA) {
		if (!addr6_eq(&nd->target, &p->saddr))
			return;
		opt = ND6_OPT_TLLA;
	} else {
		return;
	}
	kind = source_kind6(&p->saddr);
	if (kind != NODE_SRC_EDGE && kind != NODE_SRC_ROUTER)
		return;
	if (!nd6_lladdr_is(data, data_end, off + sizeof(*nd), p->ip_end, opt, eth->h_source))
		return;
	__builtin_memcpy(k.mac, eth->h_source, ETH_ALEN);
	edge_address_at(&p->saddr, &k, 0);
	now = now_ns(get_config());
	/* Already trusted (for either family): one neighbour, one entry,
	 * confirmed. */
	cur = bpf_map_lookup_elem(&node_edge_macs, &k);
	if (cur) {
		cur->seen_ns = now;
		return;
	}
	{
		struct node_mac_value v = {
			.ip = 0,
			.how = NODE_MAC_FROM_NDP | (kind == NODE_SRC_ROUTER ? NODE_MAC_ROUTER : 0),
			.seen_ns = now,
		};

		bpf_map_update_elem(&node_edge_macs, &k, &v, BPF_ANY);
	}
	node_count(NC_EDGE_LEARNT);
}

#endif
