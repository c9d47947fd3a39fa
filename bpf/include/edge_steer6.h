/* Edge program, IPv6: steering ICMPv6 errors about a VIP flow to its
 * backend — edge_steer.h for the other family.
 *
 * With DSR the pod's replies reach the client with source VIP; a router on
 * that path that cannot forward one (Packet Too Big above all: IPv6 routers
 * never fragment, so path-MTU discovery depends on it) sends its error to
 * the VIP, i.e. to an edge. The quoted packet is the reply, VIP:port →
 * client:port; reversed it is the client's flow, which edge_ct6 (or Maglev,
 * for a flow this edge has not seen) maps to the backend. The error is
 * rewritten to what the pod's own stack expects — outer destination and
 * quoted source become the pod's address and port, the ICMPv6 checksum
 * (pseudo-header included) follows — and dispatched like the flow's data
 * packets: routed to the node, or IPv6-in-IPv6. The quoted L4 checksum is
 * left alone (nobody verifies a quote's).
 *
 * Steered: Packet Too Big and Destination Unreachable whose quote is
 * TCP/UDP directly behind its fixed header, from the VIP the error is
 * addressed to (errors about SNAT flows are translated instead:
 * edge_snat_icmp6.h). The sender must pass the service's source ranges, and
 * neither it nor the quote's destination (the client) may be a VIP, the
 * edge or a martian; a port unreachable must come from that client.
 * Everything else passes to the stack untouched. */
#ifndef EDGELB_EDGE_STEER6_H
#define EDGELB_EDGE_STEER6_H

#include "parse6.h"
#include "csum6.h"
#include "edge_select6.h"
#include "edge_dsr6.h"
#include "edge_snat_icmp6.h"

static __always_inline int edge6_icmp_steer(void *ctx, const int xdp, __u32 plen, __u32 *ifindex)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct ipv6hdr *ip6 = data + EDGE6_L3_OFF;
	struct pkt_icmp6hdr *ih = data + EDGE6_L4_OFF;
	struct ipv6hdr *iip = data + EDGE6_QUOTE_OFF;
	__be16 *ports = data + EDGE6_QUOTE_OFF + IPV6_HLEN;
	struct edge_svc6_key sk = {};
	struct edge6_pkt p = {};
	struct edge_config *cfg;
	struct edge_config6 *cfg6;
	struct edge_svc *svc;
	struct edge_ct_val *cv;
	struct edge_backend6 *be = 0;
	struct pkt_addr6 from;
	__u32 zero = 0, id, hash, diff;

	if ((void *)(ports + 2) > end || 8 + IPV6_HLEN + 4 > plen)
		return ACT_PASS;
	if (ih->type != ICMP6_PKT_TOOBIG && ih->type != ICMP6_DEST_UNREACH)
		return ACT_PASS;
	if (edge_l2_group(data, end))
		return ACT_PASS; /* not addressed to the edge (edge_l2_group) */
	if (iip->nexthdr != IPPROTO_TCP && iip->nexthdr != IPPROTO_UDP)
		return ACT_PASS;
	addr6_load(&sk.vip, &iip->saddr);
	addr6_load(&p.t.daddr, &ip6->daddr);
	if (!addr6_eq(&sk.vip, &p.t.daddr))
		return ACT_PASS;
	sk.port = ports[0];
	sk.proto = iip->nexthdr;
	svc = bpf_map_lookup_elem(&edge_services6, &sk);
	/* Not a VIP: perhaps the edge address, quoting a SNAT flow's packet to its backend. */
	if (!svc)
		return edge6_snat_icmp_client(ctx, xdp, plen, ifindex);
	cfg = bpf_map_lookup_elem(&edge_config, &zero);
	cfg6 = bpf_map_lookup_elem(&edge_config6, &zero);
	if (!cfg || !cfg6)
		return ACT_PASS;
	addr6_load(&from, &ip6->saddr);
	if ((svc->flags & SVC_F_SRC_RANGES) && !edge_src_allowed6(svc, &from)) {
		edge_count(DROP_SRC_RANGE);
		return ACT_DROP;
	}
	/* The client's flow: the quote reversed. Neither the error's sender
	 * nor that client may be the edge, a VIP or a martian (edge_steer.h),
	 * and a port unreachable comes from that client itself (its host's own
	 * answer, edge_steer.h). */
	addr6_load(&p.t.saddr, &iip->daddr);
	if (edge_bad_source6(cfg6, &from) || edge_bad_source6(cfg6, &p.t.saddr) ||
	    (ih->type == ICMP6_DEST_UNREACH && ih->code == ICMP6_PORT_UNREACH && !addr6_eq(&from, &p.t.saddr))) {
		edge_count(DROP_BAD_SOURCE);
		return ACT_DROP;
	}
	p.t.sport = ports[1];
	p.t.dport = ports[0];
	p.t.proto = sk.proto;
	if (svc->flags & SVC_F_SNAT)
		return edge6_snat_icmp_backend(ctx, xdp, cfg, cfg6, svc, &p, plen, ifindex);
	hash = edge_flow_hash6(p.t.saddr.w, p.t.daddr.w, p.t.sport, p.t.dport, p.t.proto);
	cv = bpf_map_lookup_elem(&edge_ct6, &p.t);
	if (cv)
		be = edge_backend6_for(cv->backend_id, svc->id);
	if (!be) {
		if (edge_maglev(svc, svc->affinity_timeout ? edge_client_hash6(p.t.saddr.w) : hash, &id) < 0)
			goto unsteered;
		be = edge_backend6_for(id, svc->id);
		if (!be)
			goto unsteered;
	}
	if ((be->flags & BE_F_IPIP) && addr6_is_zero(&cfg6->addr))
		goto unsteered;
	/* An error is never answered with another: one that would not fit
	 * the tunnel is left to the stack. */
	if ((be->flags & BE_F_IPIP) && IPV6_HLEN + IPV6_HLEN + plen > cfg->mtu)
		goto unsteered;
	if (edge6_hop(ip6) < 0)
		return ACT_DROP;
	diff = csum_diff_addr6(&p.t.daddr, &be->ip) + csum_diff_addr6(&sk.vip, &be->ip) +
	       csum_diff_2(ports[0], be->port);
	csum_apply_diff(&ih->checksum, diff);
	__builtin_memcpy(&ip6->daddr, &be->ip, 16);
	__builtin_memcpy(&iip->saddr, &be->ip, 16);
	ports[0] = be->port;
	edge_count(EV_ICMP_STEERED);
	p.plen = plen;
	if (be->flags & BE_F_IPIP)
		return edge6_xmit_ip6ip6(ctx, xdp, cfg, cfg6, &p, be, hash, ifindex);
	return edge6_forward(ctx, xdp, cfg, &from, &be->node_ip, IPV6_HLEN + plen, ifindex);

unsteered:
	edge_count(EV_ICMP_NOT_STEERED);
	return ACT_PASS;
}

#endif
