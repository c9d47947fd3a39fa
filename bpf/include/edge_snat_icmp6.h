/* Edge program, IPv6: ICMPv6 errors about SNAT flows — edge_snat_icmp.h
 * for the other family. IPv6 routers never fragment, so without this a
 * SNAT flow's path-MTU discovery stops at the edge on either leg.
 *
 *  - Backend leg: the error is sent to the edge's IPv6 address and quotes
 *    edge:port → backend:port; it leaves from the VIP to the client, quoting
 *    client:port → VIP:port.
 *  - Client leg: the error is sent to the VIP and quotes the reply
 *    VIP:port → client:port; it leaves from the edge address to the
 *    backend, quoting backend:port → edge:port.
 *
 * Same rules as for IPv4: only a flow this edge holds, whose reverse-map
 * entry is still its own, a backend-leg error only where the flow's packets
 * arrive; no refresh of the flow; one error out per error in. The caller
 * (edge6_icmp_steer) checked the type (Packet Too Big, Destination
 * Unreachable), that TCP/UDP follows the quote's fixed header and that the
 * quote's source is the error's destination; for the client leg also the
 * service's source ranges and the sender. The ICMPv6 checksum follows the
 * outer addresses (pseudo-header) and every quoted word that changed; the
 * quoted L4 checksum is left alone. */
#ifndef EDGELB_EDGE_SNAT_ICMP6_H
#define EDGELB_EDGE_SNAT_ICMP6_H

#include "parse6.h"
#include "csum6.h"
#include "edge_snat6.h"

#define EDGE6_QUOTE_OFF (EDGE6_L4_OFF + 8)

/* Rewrite outer and quoted addresses and the quoted ports; the hop limit
 * goes down by one (the edge is a routing hop). -1: out of hops (dropped,
 * no error about an error), -2: the quote is not in the packet. */
static __always_inline int edge6_icmp_translate(void *ctx, const int xdp, const struct pkt_addr6 *outer_src,
						const struct pkt_addr6 *outer_dst, const struct pkt_addr6 *q_saddr,
						__be16 q_sport, const struct pkt_addr6 *q_daddr, __be16 q_dport)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct ipv6hdr *ip6 = data + EDGE6_L3_OFF;
	struct pkt_icmp6hdr *ih = data + EDGE6_L4_OFF;
	struct ipv6hdr *iip = data + EDGE6_QUOTE_OFF;
	__be16 *ports = data + EDGE6_QUOTE_OFF + IPV6_HLEN;
	struct pkt_addr6 os, od, qs, qd;
	__u32 diff;

	if ((void *)(ports + 2) > end)
		return -2;
	if (edge6_hop(ip6) < 0)
		return -1;
	addr6_load(&os, &ip6->saddr);
	addr6_load(&od, &ip6->daddr);
	addr6_load(&qs, &iip->saddr);
	addr6_load(&qd, &iip->daddr);
	diff = csum_diff_addr6(&os, outer_src) + csum_diff_addr6(&od, outer_dst) +
	       csum_diff_addr6(&qs, q_saddr) + csum_diff_addr6(&qd, q_daddr) +
	       csum_diff_2(ports[0], q_sport) + csum_diff_2(ports[1], q_dport);
	csum_apply_diff(&ih->checksum, diff);
	__builtin_memcpy(&ip6->saddr, outer_src, 16);
	__builtin_memcpy(&ip6->daddr, outer_dst, 16);
	__builtin_memcpy(&iip->saddr, q_saddr, 16);
	__builtin_memcpy(&iip->daddr, q_daddr, 16);
	ports[0] = q_sport;
	ports[1] = q_dport;
	return 0;
}

/* Backend leg: an error sent to the edge's IPv6 address. Passed untouched
 * unless it names a live SNAT flow. */
static __always_inline int edge6_snat_icmp_client(void *ctx, const int xdp, __u32 plen, __u32 *ifindex)
{
	void *data, *end;
	struct ipv6hdr *ip6, *iip;
	struct pkt_icmp6hdr *ih;
	__be16 *ports;
	struct edge_snat6_key k = {};
	struct edge_config *cfg;
	struct edge_config6 *cfg6;
	struct edge_snat6_val *v;
	struct pkt_addr6 to, from, client, vip;
	__be16 cport, vport;
	__u32 zero = 0;
	__u16 port;
	int rc;

	ctx = edge6_ctx_fresh(ctx);
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	ip6 = data + EDGE6_L3_OFF;
	iip = data + EDGE6_QUOTE_OFF;
	ports = data + EDGE6_QUOTE_OFF + IPV6_HLEN;
	if ((void *)(ports + 2) > end)
		return ACT_PASS;
	cfg = bpf_map_lookup_elem(&edge_config, &zero);
	cfg6 = bpf_map_lookup_elem(&edge_config6, &zero);
	if (!cfg || !cfg6 || addr6_is_zero(&cfg6->addr))
		return ACT_PASS;
	addr6_load(&to, &ip6->daddr);
	port = bpf_ntohs(ports[0]);
	if (!addr6_eq(&to, &cfg6->addr) || port < cfg->snat_port_min || port > cfg->snat_port_max)
		return ACT_PASS;
	addr6_load(&k.backend_ip, &iip->daddr);
	k.backend_port = ports[1];
	k.edge_port = ports[0];
	k.proto = iip->nexthdr;
	v = bpf_map_lookup_elem(&edge_snat_rev6, &k);
	if (!v)
		return ACT_PASS;
	if (v->ifindex && v->ifindex != edge_ifindex(ctx, xdp)) {
		edge_count(DROP_SNAT_IFACE);
		return ACT_DROP;
	}
	addr6_load(&from, &ip6->saddr);
	if (edge_bad_source6(cfg6, &from)) {
		edge_count(DROP_BAD_SOURCE);
		return ACT_DROP;
	}
	/* Port unreachable only from the backend itself (edge_icmp_sender_ok). */
	ih = data + EDGE6_L4_OFF;
	if (ih->type == ICMP6_DEST_UNREACH && ih->code == ICMP6_PORT_UNREACH && !addr6_eq(&from, &k.backend_ip)) {
		edge_count(DROP_BAD_SOURCE);
		return ACT_DROP;
	}
	client = v->client_ip;
	vip = v->vip;
	cport = v->client_port;
	vport = v->vport;
	rc = edge6_icmp_translate(ctx, xdp, &vip, &client, &client, cport, &vip, vport);
	if (rc == -1)
		return ACT_DROP;
	if (rc < 0)
		return ACT_PASS;
	edge_count(EV_SNAT_ICMP);
	return edge6_forward(ctx, xdp, cfg, &vip, &client, IPV6_HLEN + plen, ifindex);
}

/* Client leg: an error sent to the VIP about a SNAT service's reply
 * (`client` is the quote's destination, `vip`/`vport`/`cport` its
 * source and ports). Passed, counted as not steered, unless this edge holds
 * the flow and its port. */
static __always_inline int edge6_snat_icmp_backend(void *ctx, const int xdp, const struct edge_config *cfg,
						   const struct edge_config6 *cfg6, const struct edge_svc *svc,
						   const struct edge6_pkt *flow, __u32 plen, __u32 *ifindex)
{
	struct edge_snat6_key k = {};
	struct edge_backend6 *be;
	struct edge_snat6_val *v;
	struct edge_ct_val *cv;
	struct pkt_addr6 be_ip, node_ip, edge_addr;
	__be16 be_port, edge_port;
	int rc;

	ctx = edge6_ctx_fresh(ctx);
	if (addr6_is_zero(&cfg6->addr))
		goto unsteered;
	cv = bpf_map_lookup_elem(&edge_ct6, &flow->t);
	if (!cv || !cv->snat_port)
		goto unsteered;
	be = edge_backend6_for(cv->backend_id, svc->id);
	if (!be)
		goto unsteered;
	be_ip = be->ip;
	node_ip = be->node_ip;
	be_port = be->port;
	edge_port = cv->snat_port;
	edge_addr = cfg6->addr;
	k.backend_ip = be_ip;
	k.backend_port = be_port;
	k.edge_port = edge_port;
	k.proto = flow->t.proto;
	/* The port must still be this flow's (edge_snat_icmp.h). */
	v = bpf_map_lookup_elem(&edge_snat_rev6, &k);
	if (!v || !addr6_eq(&v->client_ip, &flow->t.saddr) || v->client_port != flow->t.sport ||
	    !addr6_eq(&v->vip, &flow->t.daddr) || v->vport != flow->t.dport)
		goto unsteered;
	rc = edge6_icmp_translate(ctx, xdp, &edge_addr, &be_ip, &be_ip, be_port, &edge_addr, edge_port);
	if (rc == -1)
		return ACT_DROP;
	if (rc < 0)
		return ACT_PASS;
	edge_count(EV_SNAT_ICMP);
	return edge6_forward(ctx, xdp, cfg, &edge_addr, &node_ip, IPV6_HLEN + plen, ifindex);

unsteered:
	edge_count(EV_ICMP_NOT_STEERED);
	return ACT_PASS;
}

#endif
