/* Edge program: steering ICMP errors about a VIP flow to its backend.
 *
 * With DSR the backend's replies leave the node with source VIP, so a
 * router on the client's path that cannot forward them (fragmentation
 * needed, unreachable) sends its ICMP error to the VIP, i.e. to an edge.
 * The quoted packet is the reply, VIP:port → client:port; reversed it is the
 * client flow, which the connection table (or Maglev, for a flow this edge
 * has not seen) maps to the backend. The error is then rewritten to what
 * the backend's own stack expects — outer destination and quoted source
 * become the pod's address and port — and dispatched like the flow's data
 * packets (routed to the node, or IPIP to the node). The quoted L4
 * checksum is left alone (receivers do not verify it in a quote).
 *
 * The error's sender must pass the service's source ranges, as any packet
 * to the service (else it is dropped, DROP_SRC_RANGE). An error whose
 * sender, or whose quoted destination (the client), is the edge, a VIP or
 * a martian is dropped (DROP_BAD_SOURCE): no such flow exists; so is a port
 * or protocol unreachable from anyone but that client. Only
 * destination-unreachable errors with IHL-5 outer and quoted headers are
 * steered; errors about SNAT flows are translated instead (edge_snat_icmp.h),
 * and everything else passes untouched. */
#ifndef EDGELB_EDGE_STEER_H
#define EDGELB_EDGE_STEER_H

#include "parse.h"
#include "csum.h"
#include "edge_select.h"
#include "edge_dsr.h"
#include "edge_snat_icmp.h"

static __always_inline int edge_icmp_steer(void *ctx, const int xdp, const struct pkt *p,
					   __u32 *ifindex)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct pkt_inner in;
	struct edge_svc_key sk = {};
	struct edge_ct_key ck = {};
	struct edge_svc *svc;
	struct edge_ct_val *cv;
	struct edge_backend *be = 0;
	struct edge_config *cfg;
	struct iphdr *ip, *iip;
	struct pkt_icmphdr *ih;
	__be16 *ports;
	__u32 zero = 0, id, diff, hash;
	__be16 old_ic;

	if (p->icmp_type != ICMP_DEST_UNREACH)
		return ACT_PASS;
	if (edge_tagged(ctx, xdp, p) || p->ihl_bytes != 20 ||
	    edge_l2_group(edge_data(ctx, xdp), edge_data_end(ctx, xdp)))
		return ACT_PASS;
	/* The quoted header and the 8 L4 bytes RFC 792 guarantees must lie
	 * within the packet, not in the frame's trailing bytes
	 * (parse_icmp_inner only checks the window), as on the node. */
	if (p->ip_len < 20 + sizeof(struct pkt_icmphdr) + 20 + 8)
		return ACT_PASS;
	if (parse_icmp_inner(data, end, p, &in) != PARSE_OK)
		return ACT_PASS;
	if (in.ihl_bytes != 20 || (in.l4_proto != IPPROTO_TCP && in.l4_proto != IPPROTO_UDP) ||
	    in.saddr != p->daddr || (in.sport == 0 && in.dport == 0))
		return ACT_PASS;
	sk.vip = in.saddr;
	sk.port = in.sport;
	sk.proto = in.l4_proto;
	svc = bpf_map_lookup_elem(&edge_services, &sk);
	cfg = bpf_map_lookup_elem(&edge_config, &zero);
	if (!cfg)
		return ACT_PASS;
	/* Not a VIP: perhaps the edge address, quoting a SNAT flow's packet to its backend. */
	if (!svc)
		return edge_snat_icmp_client(ctx, xdp, cfg, p, &in, ifindex);
	if (edge_other_host(cfg, data, end))
		return ACT_PASS;
	/* Like any packet to the service, an error about it must come from
	 * inside its source ranges: steering it first would let anyone outside
	 * them reach the backends. */
	if ((svc->flags & SVC_F_SRC_RANGES) && !edge_src_allowed(svc, p->saddr)) {
		edge_count(DROP_SRC_RANGE);
		return ACT_DROP;
	}
	/* Nor may it come from, or be about a reply to, the edge, a VIP or a
	 * martian: no flow has such a client (edge_process drops them), so
	 * the error is forged — steered, it made the pod lower its path MTU
	 * towards that address (the edge's: its SNAT replies) for all flows.
	 * A port or protocol unreachable is the client host's own answer
	 * (edge_icmp_sender_ok, as about a SNAT flow's other leg): from
	 * another address it is forged, and steered or translated it told the
	 * pod "connection refused" about any client's flow. */
	if (edge_bad_source(cfg, p->saddr) || edge_bad_source(cfg, in.daddr) ||
	    !edge_icmp_sender_ok(p->icmp_code, p->saddr, in.daddr)) {
		edge_count(DROP_BAD_SOURCE);
		return ACT_DROP;
	}
	if (svc->flags & SVC_F_SNAT)
		return edge_snat_icmp_backend(ctx, xdp, cfg, p, &in, svc, ifindex);
	ck.saddr = in.daddr;
	ck.daddr = in.saddr;
	ck.sport = in.dport;
	ck.dport = in.sport;
	ck.proto = in.l4_proto;
	hash = edge_flow_hash(ck.saddr, ck.daddr, ck.sport, ck.dport, ck.proto);
	cv = bpf_map_lookup_elem(&edge_ct, &ck);
	if (cv)
		be = edge_backend_for(cv->backend_id, svc->id);
	if (!be) {
		if (edge_maglev(svc, svc->affinity_timeout ? edge_client_hash(ck.saddr) : hash, &id) < 0)
			goto unsteered;
		be = edge_backend_for(id, svc->id);
		if (!be)
			goto unsteered;
	}

	/* An error is never answered with another (RFC 1122 3.2.2): one that
	 * would not fit the tunnel is left to the stack, as in edge_steer6.h.
	 * (edge_xmit_ipip would answer it with fragmentation-needed — from the
	 * pod's address, the destination rewritten below.) */
	if ((be->flags & BE_F_IPIP) && (__u32)p->ip_len + 20 > cfg->mtu)
		goto unsteered;
	if (edge_hop(ctx, xdp, cfg, 0) < 0)
		return ACT_DROP;
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	if (data + EDGE_INNER_OFF + 24 > end)
		return ACT_PASS;
	ip = data + EDGE_L3_OFF;
	ih = data + EDGE_L4_OFF;
	iip = data + EDGE_INNER_OFF;
	ports = data + EDGE_INNER_OFF + 20;

	old_ic = iip->check;
	csum_replace4(&iip->check, iip->saddr, be->ip);
	diff = csum_diff_4(iip->saddr, be->ip) + csum_diff_2(ports[0], be->port) +
	       csum_diff_2(old_ic, iip->check);
	csum_apply_diff(&ih->checksum, diff);
	iip->saddr = be->ip;
	ports[0] = be->port;
	csum_replace4(&ip->check, ip->daddr, be->ip);
	ip->daddr = be->ip;
	edge_count(EV_ICMP_STEERED);
	if (be->flags & BE_F_IPIP)
		return edge_xmit_ipip(ctx, xdp, cfg, p, be->node_ip, hash, ifindex);
	return edge_forward(ctx, xdp, cfg, p->saddr, be->node_ip, p->ip_len, ifindex);

unsteered:
	edge_count(EV_ICMP_NOT_STEERED);
	return ACT_PASS;
}

#endif
