/* Edge program: fragments of a SNAT flow's reply, IPv4.
 *
 * A backend's reply bigger than its path to the edge allows — a DNS answer
 * with a large EDNS0 buffer, over UDP SNAT (mode snat, and UDP of mode
 * hybrid) — leaves the backend's kernel as IPv4 fragments addressed to the
 * edge. They went to the edge's own stack, which reassembled them for no
 * socket: the client never got the answer. XDP cannot reassemble, and need
 * not: each fragment is rewritten as the whole reply would be — from the
 * VIP, to the client, TTL − 1 — and forwarded for the client to reassemble.
 *
 * The first fragment (offset 0, MF set) carries the L4 header: it is
 * matched to its flow in edge_snat_rev as any reply is (port range,
 * interface), its ports rewritten and its L4 checksum moved by the
 * difference of the addresses and ports (the checksum covers the whole
 * datagram, the difference does not depend on the rest), and (backend,
 * IP id, protocol) → (client, VIP, interface) is remembered in
 * edge_snat_frags for 2 s (EDGE_SNAT_FRAG_NS) for the later fragments,
 * which carry no ports and get the same addresses. A fragment does not
 * refresh the flow. Counted as snat_fragment.
 *
 * Every packet from outside may be forged; the rules (the same as IPv6's,
 * edge_snat_frag6.h, but where the families differ) — never a mis-forward,
 * and what is not ours passes to the stack untouched, as before:
 *   - A later fragment with no entry (it came before its first, or its
 *     first was no flow's), an expired one, or an ambiguous one passes.
 *   - A first fragment whose ports name no flow passes, also one whose IP
 *     length is too short to carry them (tiny: bytes past the IP length
 *     are Ethernet padding, not ports). One that names a flow but is not a
 *     possible first fragment is DROP_MALFORMED (edge_frag_first_sane).
 *   - A fragment id reused while its entry lives, by a first fragment of a
 *     flow with another client, VIP or interface (an id collision, or a
 *     forged first to steer a flow in progress): that first is the named
 *     flow's and is translated, but the later fragments could be either
 *     datagram's — the entry is marked ambiguous and they pass, until 2 s
 *     after the last first fragment with that id. A repeated first of the
 *     same client, VIP and interface just refreshes the entry.
 *   - A later fragment whose offset lies within a TCP header's fixed 20
 *     bytes (offset 8 or 16) overlaps the ports and checksum the first
 *     fragment's translation wrote (RFC 1858 §3.2: no legitimate sender
 *     does it; the client would reassemble the backend's bytes over the
 *     rewritten ones): DROP_MALFORMED. A later fragment on another
 *     interface than its first: DROP_SNAT_IFACE, as a reply would be.
 *   - TTL ≤ 1: DROP_TTL, as for a reply (edge_hop); a first fragment
 *     dropped so arms nothing.
 *   - An IPv4 "atomic fragment" (offset 0, MF clear) is no fragment: the
 *     unfragmented reply path has it. IP options: not looked at (pass). */
#ifndef EDGELB_EDGE_SNAT_FRAG_H
#define EDGELB_EDGE_SNAT_FRAG_H

#include <linux/tcp.h>
#include <linux/udp.h>
#include "edge_snat.h"

/* A datagram's fragments arrive within milliseconds; an IP id repeats only
 * after 65 536 datagrams from that backend to this edge. */
#define EDGE_SNAT_FRAG_NS (2ULL * 1000 * 1000 * 1000)
#define EDGE_SNAT_FRAG_ENTRIES (1 << 12) /* LRU: 4 096 datagrams in flight; the map memory budget at 10 000 services has no room for more */

/* edge_snat_frag_val.flags, edge_snat_frag6_val.flags: a first fragment of
 * another flow reused the id while the entry lived. */
#define EDGE_SNAT_FRAG_F_AMBIGUOUS 0x1

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
	__u32 ifindex; /* where the first fragment came in: the later ones must too */
	__u32 flags;   /* EDGE_SNAT_FRAG_F_AMBIGUOUS */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EDGE_SNAT_FRAG_ENTRIES);
	__type(key, struct edge_snat_frag_key);
	__type(value, struct edge_snat_frag_val);
} edge_snat_frags SEC(".maps");

/* This path's keys and new entry, in a per-CPU slot instead of on the
 * stack, as edge_snat_frag6.h does for the same reason: edge_xdp / edge_tc
 * with the second chance's subprogram (edge_sc_xmit_*) are at 504 of the
 * verifier's 512 bytes, and the entry's interface and flags (8 bytes more
 * on the stack) would not load. A program runs to completion on its CPU
 * and the slot is filled afresh for each fragment. */
struct edge_frag_scratch {
	struct edge_snat_frag_key fk;
	struct edge_snat_frag_val nv;
	struct edge_snat_key k;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct edge_frag_scratch);
} edge_frag_scratch SEC(".maps");

/* Both families: whether a first fragment (or IPv6's atomic fragment:
 * `more` clear) that names a flow can be one, its TCP/UDP header at l4 and
 * l4_len bytes of the datagram in it:
 *   - it carries the whole TCP/UDP header (RFC 1858's tiny fragment would
 *     put the TCP flags in the next one; RFC 7112 wants the header chain
 *     in the first fragment), TCP options included, with a data offset of
 *     at least 5 words;
 *   - a fragment that more follow carries a multiple of 8 bytes (RFC 791,
 *     RFC 8200: offsets count 8-byte units, so no later fragment could
 *     start where it ends);
 *   - UDP: its length counts the whole datagram, header included — past
 *     this fragment when more follow, within it when none do (an atomic
 *     fragment); and a checksum of 0 is invalid over IPv6 (RFC 8200 §8.1,
 *     `udp_csum_needed`) while over IPv4 it means "none" (RFC 768), which
 *     the rewrite keeps 0. */
static __always_inline int edge_frag_first_sane(void *l4, void *end, __u8 proto, __u32 l4_len, int more,
						int udp_csum_needed)
{
	if (more && (l4_len & 7))
		return 0;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > end)
			return 0;
		return (__u32)th->doff * 4 >= sizeof(*th) && (__u32)th->doff * 4 <= l4_len;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		__u32 ulen;

		if ((void *)(uh + 1) > end)
			return 0;
		ulen = bpf_ntohs(uh->len);
		if ((udp_csum_needed && uh->check == 0) || ulen < sizeof(*uh) || l4_len < sizeof(*uh))
			return 0;
		return more ? ulen > l4_len : ulen <= l4_len;
	}
	return 0;
}

/* Both families: a later fragment at byte `off` (> 0) of its datagram
 * overlaps the TCP header's fixed 20 bytes — the ports and checksum the
 * first fragment's translation rewrote. */
static __always_inline int edge_frag_overlaps_l4(__u8 proto, __u32 off)
{
	return proto == IPPROTO_TCP && off < sizeof(struct tcphdr);
}

/* Remember a first fragment's addresses for its later fragments, or mark
 * its id ambiguous (see the header comment). */
static __always_inline void edge_frag_remember(const struct edge_snat_frag_key *fk,
					       const struct edge_snat_frag_val *nv)
{
	struct edge_snat_frag_val *fv = bpf_map_lookup_elem(&edge_snat_frags, fk);

	if (fv && nv->seen_ns - fv->seen_ns <= EDGE_SNAT_FRAG_NS &&
	    ((fv->flags & EDGE_SNAT_FRAG_F_AMBIGUOUS) || fv->ifindex != nv->ifindex ||
	     fv->client_ip != nv->client_ip || fv->vip != nv->vip)) {
		fv->flags = EDGE_SNAT_FRAG_F_AMBIGUOUS;
		fv->seen_ns = nv->seen_ns;
		return;
	}
	bpf_map_update_elem(&edge_snat_frags, fk, nv, BPF_ANY);
}

/* A fragment sent to the edge address (the caller checked). */
static __always_inline int edge_snat_fragment(void *ctx, const int xdp, const struct edge_config *cfg,
					      const struct pkt *p, __u32 *ifindex)
{
	struct edge_frag_scratch *sc;
	struct iphdr *ip;
	void *data, *end;
	__u32 zero = 0, l4_len = p->ip_len - p->ihl_bytes;

	ctx = edge_ctx_fresh(ctx);
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	ip = data + EDGE_L3_OFF;
	if ((void *)(ip + 1) > end || (p->l4_proto != IPPROTO_TCP && p->l4_proto != IPPROTO_UDP))
		return ACT_PASS;
	if (edge_tagged(ctx, xdp, p) || p->ihl_bytes != 20 || edge_l2_group(data, end))
		return ACT_PASS;
	sc = bpf_map_lookup_elem(&edge_frag_scratch, &zero);
	if (!sc)
		return ACT_PASS;
	__builtin_memset(sc, 0, sizeof(*sc));
	sc->fk.backend_ip = p->saddr;
	sc->fk.id = ip->id;
	sc->fk.proto = p->l4_proto;
	sc->nv.seen_ns = edge_now_ns(cfg);
	sc->nv.ifindex = edge_ifindex(ctx, xdp);
	if (!(p->frag & PKT_FRAG_LATER)) {
		/* The first fragment (MF set: offset 0 without it is no fragment). */
		struct edge_snat_val *v;
		__be16 *ports = data + EDGE_L4_OFF;
		__be16 cport, vport;
		__u16 port;

		if ((void *)(ports + 2) > end || l4_len < 4)
			return ACT_PASS;
		port = bpf_ntohs(ports[1]);
		if (port < cfg->snat_port_min || port > cfg->snat_port_max)
			return ACT_PASS;
		sc->k.backend_ip = p->saddr;
		sc->k.backend_port = ports[0];
		sc->k.edge_port = ports[1];
		sc->k.proto = p->l4_proto;
		v = bpf_map_lookup_elem(&edge_snat_rev, &sc->k);
		if (!v)
			return ACT_PASS;
		if (!edge_frag_first_sane(data + EDGE_L4_OFF, end, p->l4_proto, l4_len, 1, 0)) {
			edge_count(DROP_MALFORMED);
			return ACT_DROP;
		}
		if (v->ifindex && v->ifindex != sc->nv.ifindex) {
			edge_count(DROP_SNAT_IFACE);
			return ACT_DROP;
		}
		sc->nv.client_ip = v->client_ip;
		sc->nv.vip = v->vip;
		cport = v->client_port;
		vport = v->vport;
		/* Out of TTL before it arms its id: dropped, remembered nowhere. */
		if (edge_hop(ctx, xdp, cfg, 0) < 0)
			return ACT_DROP;
		edge_frag_remember(&sc->fk, &sc->nv);
		if (edge_rewrite(ctx, xdp, p->l4_proto, EDGE_RW_BOTH, sc->nv.vip, vport, sc->nv.client_ip, cport) < 0)
			return ACT_DROP;
	} else {
		/* A later fragment: the addresses its first one got. */
		struct edge_snat_frag_val *fv = bpf_map_lookup_elem(&edge_snat_frags, &sc->fk);

		if (!fv || sc->nv.seen_ns - fv->seen_ns > EDGE_SNAT_FRAG_NS ||
		    (fv->flags & EDGE_SNAT_FRAG_F_AMBIGUOUS))
			return ACT_PASS;
		if (fv->ifindex != sc->nv.ifindex) {
			edge_count(DROP_SNAT_IFACE);
			return ACT_DROP;
		}
		if (edge_frag_overlaps_l4(p->l4_proto, (__u32)(bpf_ntohs(ip->frag_off) & IP_OFFSET) * 8)) {
			edge_count(DROP_MALFORMED);
			return ACT_DROP;
		}
		sc->nv.client_ip = fv->client_ip;
		sc->nv.vip = fv->vip;
		if (edge_hop(ctx, xdp, cfg, 0) < 0)
			return ACT_DROP;
		data = edge_data(ctx, xdp);
		end = edge_data_end(ctx, xdp);
		ip = data + EDGE_L3_OFF;
		if ((void *)(ip + 1) > end)
			return ACT_DROP;
		csum_replace4(&ip->check, ip->saddr, sc->nv.vip);
		csum_replace4(&ip->check, ip->daddr, sc->nv.client_ip);
		ip->saddr = sc->nv.vip;
		ip->daddr = sc->nv.client_ip;
	}
	edge_count(EV_SNAT_FRAGMENT);
	return edge_forward(ctx, xdp, cfg, sc->nv.vip, sc->nv.client_ip, p->ip_len, ifindex);
}

#endif
