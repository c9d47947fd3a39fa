/* edgelb edge program: XDP on the uplink (section "xdp", program edge_xdp)
 * and the same logic for tc ingress where XDP is unavailable (section
 * "tc", program edge_tc).
 *
 * Per packet:
 *   parse Ethernet/IPv4/L4 (parse.h) → look up {daddr, dport, proto} in
 *   edge_services. A miss is the fast path: the packet passes after that
 *   single hash lookup, except when it is addressed to the edge's own
 *   address in the SNAT port range (a backend's SNAT reply).
 *   A hit picks the backend — the connection table for packets of known
 *   flows (a SYN skips it: it starts a new flow; the flow is inserted with
 *   its first non-SYN packet, see edge_process), otherwise session
 *   affinity (read here; written when a flow is confirmed, never by a
 *   SYN: edge_aff_remember) or Maglev over the service's region of
 *   edge_ring — and
 *   dispatches: ip-option (DNAT + 8-byte option on SYN/UDP), IPIP, or SNAT.
 *
 * IPv6: edge_ip6.h, in the programs edge_xdp6 / edge_tc6, entered from
 * edge_xdp / edge_tc by a tail call chosen by EtherType (after one VLAN
 * tag) before IPv4 parsing.
 *
 * Defined behaviour for packets we cannot forward faithfully (never a
 * mis-forward):
 *   - IPv4 fragments (MF set or offset != 0) addressed to a VIP are dropped
 *     (counter DROP_FRAGMENT), whatever follows their IPv4 header (a first
 *     fragment too short for its L4 header too): a non-first fragment carries no ports, so it
 *     cannot be matched to a service or flow, and the first fragment is
 *     useless without the rest. Fragments to other addresses pass. VIP
 *     recognition uses a per-VIP marker entry {vip, 0, 0}; only fragments
 *     pay that lookup.
 *   - Packets to a service that already carry IPv4 options (IHL > 5) are
 *     dropped (DROP_IP_OPTIONS): there is no room to add ours, and a client
 *     must never be able to hand the node a forged DSR option.
 *   - Packets to a service in a frame sent to a link-layer broadcast or
 *     multicast address, or from one, are dropped (DROP_L2_GROUP): the
 *     edge forwards and answers only frames addressed to it, as Linux does
 *     (edge_l2_group); ICMP errors and SNAT replies in such frames pass to
 *     the stack untouched.
 *   - VLAN-tagged packets to a service are dropped (DROP_VLAN); the uplink
 *     is expected to be untagged (attach to the VLAN device instead). On tc
 *     the kernel has moved the tag out of the frame (skb->vlan_present).
 *   - Truncated headers (shorter than the IP total length says) pass to the
 *     stack untouched (nothing was matched; the stack discards them). A
 *     complete packet to a service whose TCP data offset or UDP length
 *     contradicts the IP length is dropped (DROP_MALFORMED).
 *   - Non-SYN TCP with no connection-table entry is treated as a new flow
 *     (Maglev, and remembered), so flows survive an edge restart or ECMP
 *     moving them to another edge as long as the backend set is unchanged.
 *   - A conntrack entry whose backend was removed (slot freed or reused by
 *     another service) is ignored and the flow is re-balanced (EV_CT_STALE).
 *   - A new flow (or an ICMP error) whose source is a VIP or the edge's own
 *     address is dropped (DROP_BAD_SOURCE): a forgery, or a loop; so is one
 *     from a martian source (0/8, 127/8, multicast, broadcast, link-local
 *     169.254/16; IPv6 ::, ::1, ff00::/8, link-local fe80::/10, v4-mapped
 *     ::ffff:0:0/96), which no pod could answer and no ICMP may go to; so
 *     is an ICMP error about a reply to such an address (no such flow).
 *   - The edge is a routing hop: forwarded packets leave with TTL − 1, and
 *     a client's packet that arrives with TTL ≤ 1 is answered with ICMP
 *     time-exceeded from the edge's address (traceroute shows the edge).
 *   - Too big after adding the option (8) / IPIP header (20): with DF an
 *     ICMP fragmentation-needed (MTU − overhead) goes back to the client;
 *     without DF the rewritten packet goes to the stack, which fragments it.
 *   - The ICMP errors the edge builds (time-exceeded, fragmentation-needed;
 *     IPv6 too) are rate-limited per CPU and kind, 1000/s with a burst of 50, as
 *     Linux limits its own (edge_icmp_limit.h): a packet that would have
 *     been answered over the limit is dropped (DROP_ICMP_RATE), so a forged
 *     source cannot make the edge reflect errors at a victim one for one.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "parse.h"
#include "csum.h"
#include "edge_maps.h"
#include "edge_counters.h"
#include "edge_hash.h"
#include "edge_select.h"
#include "edge_xmit.h"
#include "edge_icmp.h"
#include "edge_dsr.h"
#include "edge_snat.h"
#include "edge_snat_frag.h"
#include "edge_steer.h"
#include "edge_conn.h"
#include "edge_second_chance.h"
#include "edge_ip6.h"

/* May a SYN on the tuple of a connection-table entry whose backend is
 * terminating start a new connection there (see the SYN rule in
 * edge_process)? DSR: by the entry's marks (edge_conn.h); SNAT: by its
 * port's record, which the edge keeps from both sides (edge_snat_reusable). */
static __always_inline int edge_ct_reusable(const struct edge_config *cfg, const struct edge_svc *svc,
					    const struct edge_ct_key *ck, const struct edge_ct_val *cv,
					    const struct edge_backend *be)
{
	if (svc->flags & SVC_F_SNAT)
		return edge_snat_reusable(cfg, ck, be, cv->snat_port);
	return edge_conn_reusable(cfg, cv);
}

static __always_inline int edge_fragment(void *ctx, const int xdp, const struct pkt *p, __u32 *ifindex)
{
	struct edge_svc_key k = { .vip = p->daddr };
	struct edge_config *cfg;
	__u32 zero = 0;

	if (bpf_map_lookup_elem(&edge_services, &k)) {
		edge_count(DROP_FRAGMENT);
		return ACT_DROP;
	}
	/* To the edge address: perhaps a SNAT flow's reply, fragmented. */
	cfg = bpf_map_lookup_elem(&edge_config, &zero);
	if (cfg && p->daddr == cfg->addr)
		return edge_snat_fragment(ctx, xdp, cfg, p, ifindex);
	return ACT_PASS;
}

static __always_inline int edge_process(void *ctx, const int xdp, __u32 *ifindex)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct edge_svc_key sk = {};
	struct edge_ct_key ck = {};
	struct edge_config *cfg;
	struct edge_svc *svc;
	struct edge_backend *be = 0, *sc_be = 0;
	struct edge_ct_val *cv = 0;
	struct pkt p;
	__u32 zero = 0, be_id = 0, hash, svc_id, pkt_len;
	__be16 snat_have = 0;
	int syn, new_flow = 0;

	/* An skb's payload may lie outside its linear head (GRO, TSO from a
	 * local sender): the packet is skb->len long, only the headers need
	 * to be in the window (edge_tc pulled them in). */
	pkt_len = xdp ? (__u32)((long)end - (long)data) : ((struct __sk_buff *)ctx)->len;
	if (parse_eth(data, end, &p) != PARSE_OK || parse_ipv4_len(data, end, &p, pkt_len) != PARSE_OK)
		return ACT_PASS;
	/* Fragments before the L4 header: a first fragment too short for it
	 * (RFC 1858's tiny fragment) is still a fragment to the VIP. */
	if (p.frag)
		return edge_fragment(ctx, xdp, &p, ifindex);
	if (parse_l4(data, end, &p) != PARSE_OK)
		return ACT_PASS;
	if (p.l4_proto == IPPROTO_ICMP)
		return edge_icmp_steer(ctx, xdp, &p, ifindex);
	if (p.l4_proto != IPPROTO_TCP && p.l4_proto != IPPROTO_UDP)
		return ACT_PASS;

	sk.vip = p.daddr;
	sk.port = p.dport;
	sk.proto = p.l4_proto;
	svc = bpf_map_lookup_elem(&edge_services, &sk);
	if (!svc) {
		cfg = bpf_map_lookup_elem(&edge_config, &zero);
		if (cfg && p.daddr == cfg->addr)
			return edge_snat_reverse(ctx, xdp, cfg, &p, ifindex);
		return ACT_PASS;
	}
	/* Tagged (edge_tagged), in two steps: as one condition clang lays
	 * out edge_xdp differently, one instruction longer. */
	if (p.has_vlan) {
		edge_count(DROP_VLAN);
		return ACT_DROP;
	}
	if (!xdp && edge_tagged(ctx, xdp, &p)) {
		edge_count(DROP_VLAN);
		return ACT_DROP;
	}
	if (edge_l2_group(data, end)) {
		edge_count(DROP_L2_GROUP);
		return ACT_DROP;
	}
	if (p.ihl_bytes != 20) {
		edge_count(DROP_IP_OPTIONS);
		return ACT_DROP;
	}
	if (!edge_l4_sane(data, end, &p)) {
		edge_count(DROP_MALFORMED);
		return ACT_DROP;
	}
	cfg = bpf_map_lookup_elem(&edge_config, &zero);
	if (!cfg)
		return ACT_PASS;
	if (edge_other_host(cfg, data, end))
		return ACT_PASS;
	svc_id = svc->id;
	if ((svc->flags & SVC_F_SRC_RANGES) && !edge_src_allowed(svc, p.saddr)) {
		edge_count(DROP_SRC_RANGE);
		return ACT_DROP;
	}

	ck.saddr = p.saddr;
	ck.daddr = p.daddr;
	ck.sport = p.sport;
	ck.dport = p.dport;
	ck.proto = p.l4_proto;
	syn = p.l4_proto == IPPROTO_TCP &&
	      (p.tcp_flags & (PKT_TCP_SYN | PKT_TCP_ACK)) == PKT_TCP_SYN;
	cv = bpf_map_lookup_elem(&edge_ct, &ck);
	if (cv && syn) {
		/* A SYN with the 5-tuple of a known flow (edge_conn.h): while
		 * that backend takes connections, or its connection lives, the
		 * SYN goes there too — a live tuple is never re-routed, and the
		 * handshake's ACK will follow the entry anyway. Otherwise it is
		 * a reused port: the entry goes, and the SYN is balanced (its
		 * ACK then pins the backend Maglev gives it). */
		be = edge_backend_for(cv->backend_id, svc_id);
		if (be && ((be->flags & BE_F_ACTIVE) || !edge_ct_reusable(cfg, svc, &ck, cv, be))) {
			be_id = cv->backend_id;
			snat_have = cv->snat_port;
			if (edge_conn_over(cfg, cv))
				cv->flags = 0; /* a new connection on the same backend */
		} else {
			be = 0;
			bpf_map_delete_elem(&edge_ct, &ck);
		}
	} else if (cv) {
		be_id = cv->backend_id;
		snat_have = cv->snat_port;
		be = edge_backend_for(be_id, svc_id);
		if (!be) {
			edge_count(EV_CT_STALE);
			snat_have = 0;
		} else if (p.l4_proto == IPPROTO_TCP &&
			   (cv->flags | (p.tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST))) &&
			   !(svc->flags & SVC_F_SNAT)) {
			/* A SNAT flow's FIN/RST counts in its port's record,
			 * as its receiver takes it (edge_snat_reusable). */
			edge_conn_seen(cfg, cv, p.tcp_flags);
		}
	}
	hash = edge_flow_hash(ck.saddr, ck.daddr, ck.sport, ck.dport, ck.proto);
	if (!be) {
		/* A new flow from a VIP or from the edge itself is a forgery (or
		 * a loop): its replies would go to ourselves. Known flows passed
		 * this check when they were new. */
		if (edge_bad_source(cfg, p.saddr)) {
			edge_count(DROP_BAD_SOURCE);
			return ACT_DROP;
		}
		be = edge_pick_new(cfg, svc, p.saddr, hash, &be_id);
		if (!be) {
			edge_count(DROP_NO_BACKEND);
			return ACT_DROP;
		}
		new_flow = 1;
		/* After a backend change: maybe a connection made under the
		 * previous table (edge_second_chance.h). */
		if (p.l4_proto == IPPROTO_TCP && !(svc->flags & SVC_F_SNAT)) {
			if (syn)
				edge_sc_syn4(cfg, svc, &ck, &be, &be_id);
			else
				sc_be = edge_second_chance(cfg, svc, &ck, hash, p.tcp_flags, &be, &be_id);
		}
	}

	edge_count_pb(&edge_svc_stats, svc_id, pkt_len);
	edge_count_pb(&edge_be_stats, be_id, pkt_len);

	/* A routing hop: TTL down by one, or time-exceeded to the client. */
	switch (edge_hop(ctx, xdp, cfg, 1)) {
	case -1:
		return ACT_TX;
	case -2:
		return ACT_DROP;
	default:
		break;
	}

	if (svc->flags & SVC_F_SNAT)
		return edge_xmit_snat(ctx, xdp, cfg, &p, &ck, be, be_id, svc, snat_have, new_flow && !syn,
				      hash, ifindex);

	/* A flow enters the connection table with its first non-SYN packet
	 * (the handshake's ACK, or a UDP packet), not with its SYN: the SYN is
	 * steered by Maglev, which is deterministic, so the ACK one RTT later
	 * picks the same backend and pins it. SYNs thus cost no insert (the
	 * insert is most of a SYN's cost) and spoofed SYN floods never reach
	 * the table. The price: a backend-set change inside the handshake's RTT
	 * can move that one half-open connection, as it can for any flow
	 * without state (edge restart, ECMP moving the flow to this edge). */
	if (sc_be)
		return edge_sc_xmit(ctx, xdp, cfg, &p, be, sc_be, hash, ifindex);
	if (new_flow && !syn) {
		if (edge_may_insert(cfg, EDGE_INSERT_V4)) {
			struct edge_ct_val nv = { .backend_id = be_id };

			bpf_map_update_elem(&edge_ct, &ck, &nv, BPF_ANY);
			/* The flow is confirmed: now, not on its SYN, its
			 * client's affinity entry (edge_aff_remember). */
			if (svc->affinity_timeout)
				edge_aff_remember(cfg, svc_id, p.saddr, be_id);
		} else {
			edge_count(EV_CT_INSERT_SKIPPED);
		}
	}
	if (be->flags & BE_F_IPIP)
		return edge_xmit_ipip(ctx, xdp, cfg, &p, be->node_ip, hash, ifindex);
	return edge_xmit_option(ctx, xdp, cfg, &p, be, syn || p.l4_proto == IPPROTO_UDP, ifindex);
}

/* IPv6 frames continue in edge_xdp6 / edge_tc6 by a tail call: the IPv4
 * pipeline stays inlined here as it was, and each program has the
 * verifier's whole 512-byte stack (one pipeline nested in the other would
 * not fit). The index is a constant, so the JIT makes the tail call a
 * direct jump. User space installs the hook's IPv6 program in slot
 * EDGE_PROG_IPV6 when it loads the object (EdgeDatapath); without it IPv6
 * passes to the stack.
 *
 * One array per hook: the kernel ties a program array to the type of the
 * first program that uses it (an XDP program cannot tail-call a tc one,
 * nor share its array), and the agent loads one hook or the other. */
#define EDGE_PROG_IPV6 0

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} edge_progs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} edge_progs_tc SEC(".maps");

SEC("xdp")
int edge_xdp(struct xdp_md *ctx)
{
	__u32 ifindex = 0;
	int act;

	if (edge_frame_ipv6(ctx, 1)) {
		/* Here, not in the IPv6 program: there it overflows the stack. */
		if (edge_frame_other_host(ctx, 1))
			return XDP_PASS;
		bpf_tail_call(ctx, &edge_progs, EDGE_PROG_IPV6);
		return XDP_PASS;
	}
	act = edge_process(ctx, 1, &ifindex);
	return edge_verdict(ctx, 1, act, ifindex);
}

SEC("xdp")
int edge_xdp6(struct xdp_md *ctx)
{
	__u32 ifindex = 0;
	int act = edge_process6(ctx, 1, &ifindex);

	return edge_verdict(ctx, 1, act, ifindex);
}

/* Headers the program reads through direct packet access: Ethernet, IPv4
 * with options, TCP, plus an ICMP error's quote. */
#define EDGE_TC_PULL (ETH_HLEN + 60 + 8 + 20 + 8)
/* The same for IPv6: Ethernet (+ a tag), the fixed header, TCP; an ICMPv6
 * error's header, its quoted fixed header and ports. (A chain of extension
 * headers to a VIP is pulled further by edge6_ext.) */
#define EDGE_TC6_PULL (ETH_HLEN + IPV6_HLEN + 8 + IPV6_HLEN + 8)

/* An skb's linear part may end before the headers (XDP frames are always
 * linear): pull what the parser needs, when it is there. */
static __always_inline void edge_tc_pull(struct __sk_buff *ctx, const __u32 need)
{
	if ((long)ctx->data_end - (long)ctx->data < need && ctx->len > (long)ctx->data_end - (long)ctx->data)
		bpf_skb_pull_data(ctx, ctx->len < need ? ctx->len : need);
}

SEC("tc")
int edge_tc(struct __sk_buff *ctx)
{
	__u32 ifindex = 0;
	int act;

	edge_tc_pull(ctx, EDGE_TC_PULL);
	if (edge_frame_ipv6(ctx, 0)) {
		if (edge_frame_other_host(ctx, 0))
			return TC_ACT_OK;
		bpf_tail_call(ctx, &edge_progs_tc, EDGE_PROG_IPV6);
		return TC_ACT_OK;
	}
	act = edge_process(ctx, 0, &ifindex);

	return edge_verdict(ctx, 0, act, ifindex);
}

SEC("tc")
int edge_tc6(struct __sk_buff *ctx)
{
	__u32 ifindex = 0;
	int act;

	edge_tc_pull(ctx, EDGE_TC6_PULL);
	act = edge_process6(ctx, 0, &ifindex);
	return edge_verdict(ctx, 0, act, ifindex);
}

char LICENSE[] SEC("license") = "GPL";
