/* Edge program, IPv6: SNAT (mode snat, and UDP of mode hybrid) —
 * edge_snat.h for the other family, with its rules and its shared parts
 * (snat_probe, snat_seen, snat_over: port search, flow lifetime, reclaim).
 *
 * The client's packet leaves with source = the edge's IPv6 address
 * (edge_config6.addr) : a port from [snat_port_min, snat_port_max] — the
 * same configured range as IPv4; the families' ports never meet, each has
 * its own address and reverse map — and destination = the backend; the
 * backend's reply comes back to the edge and leaves as VIP:port → client.
 * IPv6 has no header checksum: each rewrite changes only the TCP/UDP
 * checksum, by the difference of both addresses and both ports (the
 * pseudo-header covers the addresses).
 *
 * The connection table (edge_ct6) remembers the flow's port, always (the
 * insert limit does not apply: a forgotten flow would get another source
 * port); edge_snat_rev6 is keyed by what the reply carries {backend ip,
 * backend port, edge port, proto}. Lifetime as IPv4: both FINs (one from
 * each side, each in the window its receiver accepts: snat_fin_ok) or a
 * RST with the sequence number its receiver expects (snat_rst_ok; a blind
 * FIN or RST is ignored), then a hold, or idle — then the
 * port is taken over
 * by the next allocation that finds it so. A reply is translated only when
 * its key names a live flow and it arrives on the interface its flow came
 * in on; anything else addressed to the edge passes untouched.
 *
 * ICMPv6 errors about SNAT flows are not translated, as for IPv4
 * (edge_steer6.h counts the ones about the VIP side as icmp_not_steered).
 *
 * Written for both hooks (`void *ctx`, constant `xdp`) like edge.c's
 * functions; the frame layout is edge_ip6.h's: untagged Ethernet, the fixed
 * IPv6 header directly followed by TCP or UDP. */
#ifndef EDGELB_EDGE_SNAT6_H
#define EDGELB_EDGE_SNAT6_H

#include <stddef.h>
#include <linux/bpf.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "csum.h"
#include "csum6.h"
#include "l4_csum.h"
#include "parse6.h"
#include "edge_maps6.h"
#include "edge_counters.h"
#include "edge_xmit.h"
#include "edge_select6.h"
#include "edge_snat.h"
#include "edge_dsr6.h"

/* tc: clang may keep &skb->data_end computed once in the caller and spill
 * it; the verifier refuses a load through such a modified context pointer.
 * A context pointer laundered at each entry is read afresh. */
static __always_inline void *edge6_ctx_fresh(void *ctx)
{
	asm volatile("" : "+r"(ctx));
	return ctx;
}

/* The TCP data offset / UDP length must agree with the payload length, and
 * a UDP datagram over IPv6 must carry a checksum (RFC 8200 §8.1): checked
 * before anything is rewritten, for a packet to a service (edge_process6)
 * and for a SNAT reply. */
static __always_inline int edge6_l4_sane(void *data, void *end, __u8 proto, __u32 plen)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = data + EDGE6_L4_OFF;

		if ((void *)(th + 1) > end)
			return 0;
		return (__u32)th->doff * 4 >= sizeof(*th) && (__u32)th->doff * 4 <= plen;
	}
	{
		struct udphdr *uh = data + EDGE6_L4_OFF;
		__u32 ulen;

		if ((void *)(uh + 1) > end)
			return 0;
		ulen = bpf_ntohs(uh->len);
		return ulen >= sizeof(*uh) && ulen <= plen && uh->check != 0;
	}
}

/* Is the packet addressed to the edge's own IPv6 address (SNAT replies come
 * there)? Word by word, one branch: on the pass path of every IPv6 packet
 * that is not for a service. No address configured matches nothing. */
static __always_inline int edge6_to_edge_addr(const struct ipv6hdr *ip6, const struct edge_config6 *cfg6)
{
	const __be32 *to = (const __be32 *)&ip6->daddr;

	return (((to[0] ^ cfg6->addr.w[0]) | (to[1] ^ cfg6->addr.w[1]) | (to[2] ^ cfg6->addr.w[2]) |
		 (to[3] ^ cfg6->addr.w[3])) == 0) && !addr6_is_zero(&cfg6->addr);
}

/* Both addresses and ports of the TCP/UDP frame become the given ones, the
 * L4 checksum follows; the TCP/UDP header at l4_off (a constant: right
 * behind the fixed header, or behind a Fragment header for a first fragment,
 * edge_snat_frag6.h). XDP: by hand. tc: through bpf_l4_csum_replace, which
 * knows the skb's checksum state (csum6.h's csum6_rewrite_note: the
 * PSEUDO_HDR form takes the address difference out of a CHECKSUM_COMPLETE
 * skb's sum, where nothing absorbs it in IPv6, so bpf_csum_update puts it
 * back). Packet pointers are invalid afterwards. */
static __always_inline int edge6_rewrite_at(void *ctx, const int xdp, __u8 proto, const __u32 l4_off,
					    const struct pkt_addr6 *saddr, __be16 sport,
					    const struct pkt_addr6 *daddr, __be16 dport)
{
	void *data, *end;
	struct ipv6hdr *ip6;
	__be16 *ports, old_sport, old_dport;
	struct pkt_addr6 old_s, old_d;
	__u32 adiff, csum_off;
	__sum16 *check;
	__u64 mangled;

	ctx = edge6_ctx_fresh(ctx);
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	ip6 = data + EDGE6_L3_OFF;
	ports = data + l4_off;
	if (l4_csum_fields(data, end, l4_off, proto, &check, &csum_off, &mangled) < 0)
		return -1;
	addr6_load(&old_s, &ip6->saddr);
	addr6_load(&old_d, &ip6->daddr);
	old_sport = ports[0];
	old_dport = ports[1];
	adiff = csum_diff_addr6(&old_s, saddr) + csum_diff_addr6(&old_d, daddr);
	if (xdp)
		l4_csum_rewrite_xdp(check, proto, adiff, old_sport, sport, old_dport, dport);
	ports[0] = sport;
	ports[1] = dport;
	__builtin_memcpy(&ip6->saddr, saddr, 16);
	__builtin_memcpy(&ip6->daddr, daddr, 16);
	if (xdp)
		return 0;
	{
		struct __sk_buff *skb = ctx;

		if (bpf_l4_csum_replace(skb, csum_off, 0, adiff, BPF_F_PSEUDO_HDR | mangled))
			return -1;
		bpf_csum_update(skb, adiff); /* -ENOTSUPP unless CHECKSUM_COMPLETE: nothing to do then */
		if (old_sport != sport && bpf_l4_csum_replace(skb, csum_off, old_sport, sport, mangled | 2))
			return -1;
		if (old_dport != dport && bpf_l4_csum_replace(skb, csum_off, old_dport, dport, mangled | 2))
			return -1;
	}
	return 0;
}

static __always_inline int edge6_rewrite(void *ctx, const int xdp, __u8 proto,
					 const struct pkt_addr6 *saddr, __be16 sport,
					 const struct pkt_addr6 *daddr, __be16 dport)
{
	return edge6_rewrite_at(ctx, xdp, proto, EDGE6_L4_OFF, saddr, sport, daddr, dport);
}

/* Find (or re-establish) the edge port for this flow (edge_snat_port). */
static __always_inline __be16 edge6_snat_port(const struct edge_config *cfg, const struct edge6_pkt *p,
					      const struct snat_seg *seg, const struct edge_backend6 *be, __u32 svc_id,
					      __be16 have, __u32 hash, __u32 ifindex, int *confirmed)
{
	struct edge_snat6_key k = {
		.backend_ip = be->ip, .backend_port = be->port, .proto = p->t.proto,
	};
	__u32 now = snat_now(cfg);
	struct edge_snat6_val v = {
		.client_ip = p->t.saddr, .vip = p->t.daddr, .client_port = p->t.sport,
		.vport = p->t.dport, .svc_id = svc_id, .life = { .last = now }, .ifindex = ifindex,
	};
	struct edge_snat6_val *cur;

	if (have) {
		k.edge_port = have;
		cur = bpf_map_lookup_elem(&edge_snat_rev6, &k);
		if (cur && addr6_eq(&cur->client_ip, &v.client_ip) && cur->client_port == v.client_port &&
		    addr6_eq(&cur->vip, &v.vip) && cur->vport == v.vport) {
			*confirmed |= snat_client_seen(&cur->life, p->t.proto, seg, now);
			return have;
		}
		/* Evicted (or taken over): try to take it back, else allocate. */
		if (!cur && bpf_map_update_elem(&edge_snat_rev6, &k, &v, BPF_NOEXIST) == 0)
			return have;
	}
	return snat_probe(&edge_snat_rev6, &k, &k.edge_port, &v, offsetof(struct edge_snat6_val, life),
			  cfg, p->t.proto, now, hash);
}

/* edge_snat_reusable (edge_snat.h) for an IPv6 flow. */
static __always_inline int edge6_snat_reusable(const struct edge_config *cfg, const struct edge_ct6_key *t,
					       const struct edge_backend6 *be, __be16 port)
{
	struct edge_snat6_key k = {
		.backend_ip = be->ip, .backend_port = be->port, .edge_port = port, .proto = t->proto,
	};
	struct edge_snat6_val *v = bpf_map_lookup_elem(&edge_snat_rev6, &k);

	if (!v)
		return 0;
	if (!addr6_eq(&v->client_ip, &t->saddr) || v->client_port != t->sport || !addr6_eq(&v->vip, &t->daddr) ||
	    v->vport != t->dport)
		return 1;
	return snat_life_reusable(&v->life, t->proto, snat_now(cfg));
}

/* The client's packet of a SNAT service (hop limit already decremented):
 * from the edge's address and the flow's port to the backend. `have` is
 * the port the connection table holds for the flow (0: none). The caller
 * has checked that the edge has an IPv6 address. `confirmed`: as for
 * edge_xmit_snat. */
static __always_inline int edge6_xmit_snat(void *ctx, const int xdp, const struct edge_config *cfg,
					   const struct edge_config6 *cfg6, const struct edge6_pkt *p,
					   const struct edge_backend6 *be, __u32 be_id, const struct edge_svc *svc,
					   __be16 have, int confirmed, __u32 hash, __u32 *ifindex)
{
	struct snat_seg seg = {};
	__be16 port;

	ctx = edge6_ctx_fresh(ctx);
	snat_seg_read(&seg, edge_data(ctx, xdp), edge_data_end(ctx, xdp), EDGE6_L4_OFF, p->plen,
		      p->t.proto, p->tcp_flags);
	port = edge6_snat_port(cfg, p, &seg, be, svc->id, have, hash, edge_ifindex(ctx, xdp), &confirmed);
	if (!edge_snat_keep_port(&edge_ct6, &p->t, be_id, port, have))
		return ACT_DROP;
	if (snat_aff_remember(cfg, svc, confirmed, EDGE_INSERT_V6))
		edge_aff6_remember(cfg, svc->id, &p->t.saddr, be_id);
	if (edge6_rewrite(ctx, xdp, p->t.proto, &cfg6->addr, port, &be->ip, be->port) < 0)
		return ACT_DROP;
	return edge6_forward(ctx, xdp, cfg, &cfg6->addr, &be->node_ip, IPV6_HLEN + p->plen, ifindex);
}

/* A TCP/UDP packet that matched no service: a backend's reply to a SNAT
 * flow when it is addressed to the edge's IPv6 address, a port of the SNAT
 * range and the key of a live flow; anything else passes untouched. `p`
 * holds the packet's protocol, ports and TCP flags (not its addresses),
 * `plen` its payload length (the whole packet lies in the frame). */
static __always_inline int edge6_snat_reverse(void *ctx, const int xdp, const struct edge6_pkt *p,
					      __u32 plen, __u32 *ifindex)
{
	void *data, *end;
	struct ipv6hdr *ip6;
	struct edge_snat6_key k = {};
	struct edge_config *cfg;
	struct edge_config6 *cfg6;
	struct edge_snat6_val *v;
	struct snat_seg seg = {};
	struct pkt_addr6 client, vip;
	__u16 port = bpf_ntohs(p->t.dport);
	__be16 cport, vport;
	__u32 zero = 0;

	/* The pass path of every IPv6 packet that is not for a service: one
	 * inlined array lookup and a compare before anything else. */
	ctx = edge6_ctx_fresh(ctx);
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	ip6 = data + EDGE6_L3_OFF;
	if ((void *)(ip6 + 1) > end)
		return ACT_PASS;
	cfg6 = bpf_map_lookup_elem(&edge_config6, &zero);
	if (!cfg6)
		return ACT_PASS;
	if (!edge6_to_edge_addr(ip6, cfg6))
		return ACT_PASS;
	cfg = bpf_map_lookup_elem(&edge_config, &zero);
	if (!cfg || port < cfg->snat_port_min || port > cfg->snat_port_max ||
	    edge_l2_group(data, end))
		return ACT_PASS;
	addr6_load(&k.backend_ip, &ip6->saddr);
	k.backend_port = p->t.sport;
	k.edge_port = p->t.dport;
	k.proto = p->t.proto;
	v = bpf_map_lookup_elem(&edge_snat_rev6, &k);
	if (!v)
		return ACT_PASS;
	if (!edge6_l4_sane(data, end, p->t.proto, plen)) {
		edge_count(DROP_MALFORMED);
		return ACT_DROP;
	}
	/* Only where the flow came in (the uplink): a "reply" arriving on
	 * another interface is not the backend's. */
	if (v->ifindex && v->ifindex != edge_ifindex(ctx, xdp)) {
		edge_count(DROP_SNAT_IFACE);
		return ACT_DROP;
	}
	snat_seg_read(&seg, data, end, EDGE6_L4_OFF, plen, p->t.proto, p->tcp_flags);
	snat_seen(&v->life, p->t.proto, &seg, 1, snat_now(cfg));
	/* A routing hop; a reply out of hops is dropped (no error about it). */
	if (edge6_hop(ip6) < 0)
		return ACT_DROP;
	client = v->client_ip;
	vip = v->vip;
	cport = v->client_port;
	vport = v->vport;
	edge_count_pb(&edge_svc_stats, v->svc_id, ETH_HLEN + IPV6_HLEN + plen);
	if (edge6_rewrite(ctx, xdp, p->t.proto, &vip, vport, &client, cport) < 0)
		return ACT_DROP;
	edge_count(EV_SNAT_REVERSE);
	return edge6_forward(ctx, xdp, cfg, &vip, &client, IPV6_HLEN + plen, ifindex);
}

#endif
