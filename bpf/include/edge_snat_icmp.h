/* Edge program: ICMP errors about SNAT flows, IPv4.
 *
 * A SNAT flow has two legs and the edge is a NAT between them, so an error
 * from a router on either leg names a packet the receiver never sent in
 * that form; the edge translates it as a NAT must (RFC 5508 §4 for ICMP
 * errors through a NAT), or path MTU discovery breaks on that leg: the
 * client keeps sending full-size segments into a link that drops them.
 *
 *  - Backend leg: a router between edge and backend quotes
 *    edge:port → backend:port and sends the error to the edge address.
 *    The reverse map names the flow; the error becomes one about the
 *    client's own packet — quoting client:port → VIP:port, sent from the
 *    VIP (the address the client talks to) to the client.
 *  - Client leg: a router towards the client quotes the reply
 *    VIP:port → client:port and sends the error to the VIP. The flow's
 *    connection-table entry names its backend and edge port; the error
 *    becomes one about the backend's own reply — quoting
 *    backend:port → edge:port, sent from the edge address to the backend.
 *
 * Nothing is guessed: the flow must be in this edge's tables (a client-leg
 * error ECMP brings to another edge is passed there, as before), the
 * reverse map's entry must still be this flow's, and a backend-leg error
 * must arrive where the flow's packets do (as replies, edge_snat.h). The
 * error does not refresh the flow (a forger cannot keep a port alive with
 * errors), its sender passes the same source checks as any packet to the
 * service (and a backend-leg port or protocol unreachable comes from the
 * backend itself, edge_icmp_sender_ok), and the receiver's stack still checks the quoted TCP sequence
 * number, which the edge does not change. Only destination-unreachable
 * errors (IHL-5 outer and quoted headers, edge_icmp_steer) are translated,
 * one for one: nothing is amplified. */
#ifndef EDGELB_EDGE_SNAT_ICMP_H
#define EDGELB_EDGE_SNAT_ICMP_H

#include "parse.h"
#include "csum.h"
#include "edge_snat.h"

#define EDGE_INNER_OFF (EDGE_L4_OFF + 8)

/* May `from` send a destination-unreachable of `code` about a packet to
 * `dst`? Protocol and port unreachable are the destination host's own
 * answer (RFC 1122 3.2.2.1): only `dst` sends them — about a reply from a
 * VIP the client (edge_icmp_steer), about the backend leg the backend.
 * From anyone else such an error is forged: about the backend leg,
 * translated, it told the flow's client "connection refused" from the VIP
 * — a sweep of the port range from any address on the uplink reached every
 * live UDP client of a backend (a resolver's connected socket fails its
 * next read). What routers send (fragmentation needed, host or network
 * unreachable) may come from anywhere on the path, as path MTU discovery
 * needs. */
static __always_inline int edge_icmp_sender_ok(__u8 code, __be32 from, __be32 dst)
{
	return (code != ICMP_PROT_UNREACH && code != ICMP_PORT_UNREACH) || from == dst;
}

/* Rewrite the error's outer addresses and its quoted packet's addresses and
 * ports. The ICMP checksum follows every quoted word that changed (the
 * quoted header's own checksum included); the quoted L4 checksum is left
 * alone, as receivers do not verify it in a quote. -1: the quote is not in
 * the packet (the caller checked its length; kept for the verifier). */
static __always_inline int edge_icmp_translate(void *ctx, const int xdp, __be32 outer_src, __be32 outer_dst,
					       __be32 q_saddr, __be16 q_sport, __be32 q_daddr, __be16 q_dport)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct pkt_icmphdr *ih;
	struct iphdr *ip, *iip;
	__be16 *ports, old_ic;
	__u32 diff;

	if (data + EDGE_INNER_OFF + 24 > end)
		return -1;
	ip = data + EDGE_L3_OFF;
	ih = data + EDGE_L4_OFF;
	iip = data + EDGE_INNER_OFF;
	ports = data + EDGE_INNER_OFF + 20;

	old_ic = iip->check;
	csum_replace4(&iip->check, iip->saddr, q_saddr);
	csum_replace4(&iip->check, iip->daddr, q_daddr);
	diff = csum_diff_4(iip->saddr, q_saddr) + csum_diff_4(iip->daddr, q_daddr) +
	       csum_diff_2(ports[0], q_sport) + csum_diff_2(ports[1], q_dport) +
	       csum_diff_2(old_ic, iip->check);
	csum_apply_diff(&ih->checksum, diff);
	iip->saddr = q_saddr;
	iip->daddr = q_daddr;
	ports[0] = q_sport;
	ports[1] = q_dport;

	csum_replace4(&ip->check, ip->saddr, outer_src);
	csum_replace4(&ip->check, ip->daddr, outer_dst);
	ip->saddr = outer_src;
	ip->daddr = outer_dst;
	return 0;
}

/* Backend leg: an error sent to the edge address about edge:port →
 * backend:port. Passed untouched unless it names a live SNAT flow. */
static __always_inline int edge_snat_icmp_client(void *ctx, const int xdp, const struct edge_config *cfg,
						 const struct pkt *p, const struct pkt_inner *in, __u32 *ifindex)
{
	struct edge_snat_key k = {
		.backend_ip = in->daddr, .backend_port = in->dport, .edge_port = in->sport,
		.proto = in->l4_proto,
	};
	__u16 port = bpf_ntohs(in->sport);
	struct edge_snat_val *v;
	__be32 client, vip;
	__be16 cport, vport;

	ctx = edge_ctx_fresh(ctx); /* tc: see edge_ctx_fresh */
	if (p->daddr != cfg->addr || port < cfg->snat_port_min || port > cfg->snat_port_max)
		return ACT_PASS;
	v = bpf_map_lookup_elem(&edge_snat_rev, &k);
	if (!v)
		return ACT_PASS;
	if (v->ifindex && v->ifindex != edge_ifindex(ctx, xdp)) {
		edge_count(DROP_SNAT_IFACE);
		return ACT_DROP;
	}
	if (edge_bad_source(cfg, p->saddr) || !edge_icmp_sender_ok(p->icmp_code, p->saddr, in->daddr)) {
		edge_count(DROP_BAD_SOURCE);
		return ACT_DROP;
	}
	client = v->client_ip;
	vip = v->vip;
	cport = v->client_port;
	vport = v->vport;
	if (edge_hop(ctx, xdp, cfg, 0) < 0)
		return ACT_DROP;
	if (edge_icmp_translate(ctx, xdp, vip, client, client, cport, vip, vport) < 0)
		return ACT_PASS;
	edge_count(EV_SNAT_ICMP);
	return edge_forward(ctx, xdp, cfg, vip, client, p->ip_len, ifindex);
}

/* Client leg: an error sent to the VIP about the reply VIP:port →
 * client:port of a SNAT service (the caller checked the service's source
 * ranges and the sender). Passed, counted as not steered, unless this edge
 * holds the flow and its port. */
static __always_inline int edge_snat_icmp_backend(void *ctx, const int xdp, const struct edge_config *cfg,
						  const struct pkt *p, const struct pkt_inner *in,
						  const struct edge_svc *svc, __u32 *ifindex)
{
	struct edge_ct_key ck = {
		.saddr = in->daddr, .daddr = in->saddr, .sport = in->dport, .dport = in->sport,
		.proto = in->l4_proto,
	};
	struct edge_snat_key k = { .proto = in->l4_proto };
	struct edge_backend *be;
	struct edge_snat_val *v;
	struct edge_ct_val *cv;
	__be32 be_ip, node_ip;
	__be16 be_port, edge_port;

	ctx = edge_ctx_fresh(ctx); /* tc: see edge_ctx_fresh */
	cv = bpf_map_lookup_elem(&edge_ct, &ck);
	if (!cv || !cv->snat_port)
		goto unsteered;
	be = edge_backend_for(cv->backend_id, svc->id);
	if (!be)
		goto unsteered;
	be_ip = be->ip;
	be_port = be->port;
	node_ip = be->node_ip;
	edge_port = cv->snat_port;
	k.backend_ip = be_ip;
	k.backend_port = be_port;
	k.edge_port = edge_port;
	/* The port must still be this flow's: after a reclaim it is another
	 * client's, whose connection the error must not reach. */
	v = bpf_map_lookup_elem(&edge_snat_rev, &k);
	if (!v || v->client_ip != ck.saddr || v->client_port != ck.sport || v->vip != ck.daddr ||
	    v->vport != ck.dport)
		goto unsteered;
	if (edge_hop(ctx, xdp, cfg, 0) < 0)
		return ACT_DROP;
	if (edge_icmp_translate(ctx, xdp, cfg->addr, be_ip, be_ip, be_port, cfg->addr, edge_port) < 0)
		return ACT_PASS;
	edge_count(EV_SNAT_ICMP);
	return edge_forward(ctx, xdp, cfg, cfg->addr, node_ip, p->ip_len, ifindex);

unsteered:
	edge_count(EV_ICMP_NOT_STEERED);
	return ACT_PASS;
}

#endif
