/* Edge program, IPv6: fragments of a SNAT flow's reply — edge_snat_frag.h
 * for the other family.
 *
 * A backend's reply bigger than its path to the edge allows (a large DNS
 * answer over UDP SNAT) leaves the backend's kernel as IPv6 fragments to
 * the edge's IPv6 address: a Fragment header (RFC 8200 §4.5) right behind
 * the fixed header, the first fragment carrying the TCP/UDP header. Each
 * fragment is rewritten as the whole reply would be — from the VIP, to the
 * client, hop limit − 1 — and forwarded for the client to reassemble; the
 * Fragment header (next header, offset, M flag, identification) stays as it
 * came, and so does every byte behind it but the first fragment's ports and
 * L4 checksum.
 *
 * The first fragment (offset 0, M set) is matched to its flow in
 * edge_snat_rev6 by its ports as any reply is (port range, interface). Its
 * L4 checksum covers the whole datagram and the pseudo-header (source,
 * final destination, upper-layer length, protocol), the only parts that
 * change are the addresses and ports in this fragment: it moves by their
 * difference alone, as for an unfragmented reply (the upper-layer length,
 * in the UDP header or the pseudo-header, is the datagram's and does not
 * change). Then (backend, fragment id, protocol) → (client, VIP, interface)
 * is remembered in edge_snat_frags6 for 2 s (EDGE_SNAT_FRAG_NS) for the
 * later fragments, which carry no ports and get the same addresses.
 *
 * Why a map of its own rather than family-keyed entries in edge_snat_frags:
 * an IPv6 key and value (24 + 48 bytes) would make every IPv4 entry that
 * size too, and IPv4's map is charged whether IPv6 is served or not; this
 * one is a handful of entries when IPv6 is off (edge-datapath.ts's
 * IPV6_OFF_SIZES), like the other IPv6 maps, and an IPv6 burst cannot
 * evict IPv4's datagrams. The key has no destination: only fragments to
 * the edge's own IPv6 address are looked up, so it would be the same in
 * every key (16 bytes of key and of this program's tight stack for
 * nothing); the protocol is there as in IPv4's key (every fragment of a
 * datagram names the same one).
 *
 * Defined behaviour (never a mis-forward; what is not ours passes to the
 * stack untouched, as before) — IPv4's too, and its checks of a first and a
 * later fragment are shared (edge_frag_first_sane, edge_frag_overlaps_l4 in
 * edge_snat_frag.h):
 *   - A later fragment with no entry (it came before its first, or its
 *     first was no flow's), an expired one, or an ambiguous one passes.
 *   - A first fragment whose ports name no flow passes, also one too short
 *     to carry them (tiny). One that names a flow but does not carry the
 *     whole TCP/UDP header (RFC 7112 wants the whole header chain in the
 *     first fragment; RFC 1858's tiny fragments), whose UDP length does not
 *     reach past it, whose length is not a multiple of 8 (RFC 8200), or
 *     whose UDP checksum is 0 (invalid over IPv6) is DROP_MALFORMED.
 *   - A fragment id reused while its entry lives, by a first fragment of a
 *     flow with another client, VIP or interface: that first is the named
 *     flow's and is translated, but the later fragments could be either
 *     datagram's — the entry is marked ambiguous and they pass, until 2 s
 *     after the last first fragment with that id. A repeated first of the
 *     same client and VIP (the same addresses for the later fragments)
 *     just refreshes the entry.
 *   - A later fragment whose offset lies within a TCP header's fixed 20
 *     bytes overlaps the ports and checksum the first fragment's
 *     translation wrote (RFC 5722: overlaps are never legitimate, and the
 *     client would discard the datagram anyway): DROP_MALFORMED. A later
 *     fragment on another interface than its first: DROP_SNAT_IFACE, as a
 *     reply would be.
 *   - An atomic fragment (offset 0, M clear: a whole datagram, RFC 6946)
 *     is matched and translated as an unfragmented reply would be, Fragment
 *     header kept, and remembered nowhere: it shares no state with
 *     fragments of the same id.
 *   - Fragment headers behind other extension headers are not looked at
 *     (they pass, as before); a backend's kernel puts it first.
 *   - Hop limit ≤ 1: DROP_TTL, as for a reply. A fragment does not refresh
 *     its flow. Counted as snat_fragment (both families).
 */
#ifndef EDGELB_EDGE_SNAT_FRAG6_H
#define EDGELB_EDGE_SNAT_FRAG6_H

#include <linux/bpf.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "csum6.h"
#include "parse6.h"
#include "edge_maps6.h"
#include "edge_counters.h"
#include "edge_conn.h"
#include "edge_xmit.h"
#include "edge_dsr6.h"
#include "edge_snat6.h"
#include "edge_snat_frag.h"

/* The TCP/UDP header of a first fragment: behind the Fragment header. */
#define EDGE6_FRAG_L4_OFF (EDGE6_L4_OFF + 8)

struct edge_snat_frag6_key {
	struct pkt_addr6 backend_ip;
	__be32 id;
	__u8 proto;
	__u8 pad[3];
};

struct edge_snat_frag6_val {
	struct pkt_addr6 client_ip;
	struct pkt_addr6 vip;
	__u64 seen_ns;
	__u32 ifindex; /* where the first fragment came in: the later ones must too */
	__u32 flags;   /* EDGE_SNAT_FRAG_F_AMBIGUOUS */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EDGE_SNAT_FRAG_ENTRIES);
	__type(key, struct edge_snat_frag6_key);
	__type(value, struct edge_snat_frag6_val);
} edge_snat_frags6 SEC(".maps");

/* This path's keys and value (96 bytes), in a per-CPU slot instead of on
 * the stack: edge_xdp6 / edge_tc6 already use 504 of the verifier's 512
 * bytes (edge_process6's pipeline), and clang does not lay this branch's
 * locals over the pipeline's — on the stack, the object does not build. A
 * program runs to completion on its CPU (softirq: no other edge program
 * runs there meanwhile) and the slot is filled afresh for each fragment,
 * so it carries nothing from one packet to the next. */
struct edge_frag6_scratch {
	struct edge_snat_frag6_key fk;
	struct edge_snat_frag6_val nv;
	struct edge_snat6_key k;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct edge_frag6_scratch);
} edge_frag6_scratch SEC(".maps");

/* Remember a first fragment's addresses for its later fragments, or mark
 * its id ambiguous (see the header comment). */
static __always_inline void edge6_frag_remember(const struct edge_snat_frag6_key *fk,
						const struct edge_snat_frag6_val *nv)
{
	struct edge_snat_frag6_val *fv = bpf_map_lookup_elem(&edge_snat_frags6, fk);

	if (fv && nv->seen_ns - fv->seen_ns <= EDGE_SNAT_FRAG_NS &&
	    ((fv->flags & EDGE_SNAT_FRAG_F_AMBIGUOUS) || fv->ifindex != nv->ifindex ||
	     !addr6_eq(&fv->client_ip, &nv->client_ip) || !addr6_eq(&fv->vip, &nv->vip))) {
		fv->flags = EDGE_SNAT_FRAG_F_AMBIGUOUS;
		fv->seen_ns = nv->seen_ns;
		return;
	}
	bpf_map_update_elem(&edge_snat_frags6, fk, nv, BPF_ANY);
}

/* A packet whose Fragment header directly follows the fixed header, `plen`
 * its payload length (the whole packet lies in the frame), not to a VIP
 * (edge6_ext): a SNAT reply's fragment when it is addressed to the edge's
 * IPv6 address; anything else passes untouched. */
static __always_inline int edge6_snat_fragment(void *ctx, const int xdp, __u32 plen, __u32 *ifindex)
{
	struct edge_frag6_scratch *sc;
	struct edge_config *cfg;
	struct edge_config6 *cfg6;
	struct pkt_frag6 *fh;
	struct ipv6hdr *ip6;
	void *data, *end;
	__u32 zero = 0, in_if;
	__u16 fo;

	ctx = edge6_ctx_fresh(ctx);
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	ip6 = data + EDGE6_L3_OFF;
	fh = data + EDGE6_L4_OFF;
	if ((void *)(fh + 1) > end || plen < sizeof(*fh) ||
	    (fh->nexthdr != IPPROTO_TCP && fh->nexthdr != IPPROTO_UDP))
		return ACT_PASS;
	cfg6 = bpf_map_lookup_elem(&edge_config6, &zero);
	if (!cfg6)
		return ACT_PASS;
	if (!edge6_to_edge_addr(ip6, cfg6))
		return ACT_PASS;
	cfg = bpf_map_lookup_elem(&edge_config, &zero);
	sc = bpf_map_lookup_elem(&edge_frag6_scratch, &zero);
	if (!cfg || !sc || edge_l2_group(data, end))
		return ACT_PASS;
	__builtin_memset(sc, 0, sizeof(*sc));
	addr6_load(&sc->fk.backend_ip, &ip6->saddr);
	sc->fk.id = fh->id;
	sc->fk.proto = fh->nexthdr;
	fo = bpf_ntohs(fh->frag_off);
	in_if = edge_ifindex(ctx, xdp);
	sc->nv.seen_ns = edge_now_ns(cfg);
	sc->nv.ifindex = in_if;

	if (!(fo & 0xfff8)) {
		/* The first fragment, or an atomic one: matched by its ports. */
		struct edge_snat6_val *v;
		__be16 *ports = data + EDGE6_FRAG_L4_OFF;
		__be16 cport, vport;
		__u16 port;

		if ((void *)(ports + 2) > end || plen < sizeof(*fh) + 4)
			return ACT_PASS;
		port = bpf_ntohs(ports[1]);
		if (port < cfg->snat_port_min || port > cfg->snat_port_max)
			return ACT_PASS;
		sc->k.backend_ip = sc->fk.backend_ip;
		sc->k.backend_port = ports[0];
		sc->k.edge_port = ports[1];
		sc->k.proto = sc->fk.proto;
		v = bpf_map_lookup_elem(&edge_snat_rev6, &sc->k);
		if (!v)
			return ACT_PASS;
		if (!edge_frag_first_sane(data + EDGE6_FRAG_L4_OFF, end, sc->fk.proto, plen - sizeof(*fh), fo & 1, 1)) {
			edge_count(DROP_MALFORMED);
			return ACT_DROP;
		}
		if (v->ifindex && v->ifindex != in_if) {
			edge_count(DROP_SNAT_IFACE);
			return ACT_DROP;
		}
		if (edge6_hop(ip6) < 0)
			return ACT_DROP;
		sc->nv.client_ip = v->client_ip;
		sc->nv.vip = v->vip;
		cport = v->client_port;
		vport = v->vport;
		if (fo & 1)
			edge6_frag_remember(&sc->fk, &sc->nv);
		if (edge6_rewrite_at(ctx, xdp, sc->fk.proto, EDGE6_FRAG_L4_OFF, &sc->nv.vip, vport, &sc->nv.client_ip,
				     cport) < 0)
			return ACT_DROP;
	} else {
		/* A later fragment: the addresses its first one got. */
		struct edge_snat_frag6_val *fv = bpf_map_lookup_elem(&edge_snat_frags6, &sc->fk);
		__u32 adiff;

		if (!fv || sc->nv.seen_ns - fv->seen_ns > EDGE_SNAT_FRAG_NS || (fv->flags & EDGE_SNAT_FRAG_F_AMBIGUOUS))
			return ACT_PASS;
		if (fv->ifindex != in_if) {
			edge_count(DROP_SNAT_IFACE);
			return ACT_DROP;
		}
		/* Within the TCP header's first 20 bytes (offsets 8 and 16). */
		if (edge_frag_overlaps_l4(sc->fk.proto, fo & 0xfff8)) {
			edge_count(DROP_MALFORMED);
			return ACT_DROP;
		}
		if (edge6_hop(ip6) < 0)
			return ACT_DROP;
		sc->nv.client_ip = fv->client_ip;
		sc->nv.vip = fv->vip;
		/* No checksum covers them here; on tc skb->csum of a
		 * CHECKSUM_COMPLETE skb does (csum6_rewrite_note). */
		adiff = csum_diff_addr6((const struct pkt_addr6 *)&ip6->saddr, &sc->nv.vip) +
			csum_diff_addr6((const struct pkt_addr6 *)&ip6->daddr, &sc->nv.client_ip);
		__builtin_memcpy(&ip6->saddr, &sc->nv.vip, 16);
		__builtin_memcpy(&ip6->daddr, &sc->nv.client_ip, 16);
		if (!xdp)
			bpf_csum_update(ctx, adiff); /* -ENOTSUPP unless CHECKSUM_COMPLETE: nothing to do then */
	}
	edge_count(EV_SNAT_FRAGMENT);
	return edge6_forward(ctx, xdp, cfg, &sc->nv.vip, &sc->nv.client_ip, IPV6_HLEN + plen, ifindex);
}

#endif
