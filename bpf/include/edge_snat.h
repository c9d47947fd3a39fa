/* Edge program: SNAT (mode snat, and UDP of mode hybrid), IPv4; the port
 * search, flow lifetime and reclaim (snat_probe, snat_seen, snat_over) serve
 * IPv6 too (edge_snat6.h). The client's
 * packet leaves with source = edge address : allocated port and destination
 * = backend; the backend's reply comes back to the edge and is rewritten to
 * VIP:port → client.
 *
 * The connection table remembers the allocated port per client flow; the
 * reverse map (edge_snat_rev) is keyed by what the reply carries
 * {backend ip, backend port, edge port, proto}, so one edge port can serve
 * flows to different backends. Ports come from [snat_port_min,
 * snat_port_max] (keep that range out of the edge's own ephemeral range),
 * probed at eight hash-derived positions; the first free one wins (inserted
 * with BPF_NOEXIST, so two CPUs cannot take the same one), or the first
 * whose flow is over (below).
 *
 * Ports come back when their flow is over: both FINs seen (one from each
 * side, each in its receiver's window: snat_fin_ok) or an acceptable RST,
 * and then SNAT_HOLD_CLOSED / SNAT_HOLD_RST units
 * without a packet (the backend may hold TIME_WAIT for the old edge:port
 * tuple, and a reused port must not land in it), or no packet for the idle
 * time (TCP SNAT_IDLE_TCP, UDP SNAT_IDLE_UDP; a TCP flow whose handshake
 * never completed — a forged SYN — SNAT_IDLE_HALF_OPEN). The edge sees both sides of
 * a SNAT flow, so it judges a RST as its receiver does (snat_rst_ok): a
 * blind RST with a client's tuple would otherwise free an idle keep-alive
 * connection's port, and the backend's next segment on it would go to the
 * client that got the port next. A port is taken over lazily, by the
 * allocation that finds it so; the reverse map's LRU still bounds memory.
 * Two CPUs reclaiming the same port in the same instant can both win; the
 * loser's next packet finds the port gone and allocates another (the same
 * as after an LRU eviction). A reply is translated only when it arrives
 * on the interface its flow came in on (the uplink the program serves).
 * SNAT flows are always remembered (ignoring the
 * insert limit): forgetting one would give
 * the next packet a different source port. */
#ifndef EDGELB_EDGE_SNAT_H
#define EDGELB_EDGE_SNAT_H

#include <stddef.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "csum.h"
#include "edge_xmit.h"
#include "edge_icmp.h"
#include "edge_conn.h"
#include "edge_select.h"

/* Units of edge clock >> 30 (≈ 1.07 s). */
#define SNAT_HOLD_CLOSED 56 /* ≈ 60 s: a Linux TIME_WAIT */
#define SNAT_HOLD_RST 3
#define SNAT_IDLE_HALF_OPEN 56 /* ≈ 60 s: Linux conntrack's SYN_RECV timeout */
#define SNAT_IDLE_TCP 3353 /* ≈ 1 h */
#define SNAT_IDLE_UDP 56   /* ≈ 60 s */
#define SNAT_PROBES 8

static __always_inline __u32 snat_now(const struct edge_config *cfg)
{
	return (__u32)(edge_now_ns(cfg) >> 30);
}

/* May this port's entry be given to another flow? */
static __always_inline int snat_over(const struct edge_snat_life *l, __u8 proto, __u32 now)
{
	__u32 quiet = now - l->last;

	if (l->flags & SNAT_F_RST)
		return quiet >= SNAT_HOLD_RST;
	if ((l->flags & (SNAT_F_FIN_CLIENT | SNAT_F_FIN_BACKEND)) ==
	    (SNAT_F_FIN_CLIENT | SNAT_F_FIN_BACKEND))
		return quiet >= SNAT_HOLD_CLOSED;
	/* A TCP flow whose two sides never acknowledged each other — a SYN
	 * from a forged source: the backend's SYN-ACK goes to an address that
	 * never answers — is no connection to keep for the idle hour: held
	 * that long, a few thousand forged SYNs an hour per backend (eight
	 * probes over 12 768 ports: the first refusals from ≈ 5 000) kept
	 * that backend's new clients out. */
	if (proto == IPPROTO_TCP && !(l->flags & SNAT_F_ESTABLISHED))
		return quiet >= SNAT_IDLE_HALF_OPEN;
	return quiet >= (proto == IPPROTO_TCP ? SNAT_IDLE_TCP : SNAT_IDLE_UDP);
}

/* What a TCP segment says about its connection's sequence space (host
 * order); all zero for UDP. */
struct snat_seg {
	__u32 seq;
	__u32 ack;
	__u32 next;  /* seq + the sequence space the segment takes: payload, SYN, FIN */
	__u8 flags;  /* PKT_TCP_* */
};

/* Read it from the TCP header at data + off, `l4_len` bytes of segment
 * (the caller has checked the data offset against it). */
static __always_inline void snat_seg_read(struct snat_seg *s, void *data, void *end, const __u32 off,
					  __u32 l4_len, __u8 proto, __u8 tcp_flags)
{
	struct tcphdr *th = data + off;

	s->flags = tcp_flags;
	if (proto != IPPROTO_TCP || (void *)(th + 1) > end)
		return;
	s->seq = bpf_ntohl(th->seq);
	s->ack = bpf_ntohl(th->ack_seq);
	s->next = s->seq + l4_len - (__u32)th->doff * 4 + !!(tcp_flags & PKT_TCP_SYN) +
		  !!(tcp_flags & PKT_TCP_FIN);
}

static __always_inline __u32 snat_seq_backend(const struct edge_snat_life *l)
{
	return l->seq_backend[0] | (__u32)l->seq_backend[1] << 8 | (__u32)l->seq_backend[2] << 16;
}

static __always_inline void snat_set_seq_backend(struct edge_snat_life *l, __u32 seq)
{
	l->seq_backend[0] = (__u8)seq;
	l->seq_backend[1] = (__u8)(seq >> 8);
	l->seq_backend[2] = (__u8)(seq >> 16);
}

/* May this RST end the flow? As its receiver judges it (RFC 5961 §3.2):
 * only with exactly the sequence number the receiver expects next. A blind
 * RST from someone else (any number: the receiver discards it, or answers
 * with a challenge ACK, and the connection lives on) must not free the
 * flow's port, or the backend's next segment on that connection would
 * reach whichever client gets the port after the hold. Until the receiver
 * has acknowledged anything (a half-open flow: no backend answer yet, or —
 * for a backend RST — no client ACK yet, e.g. a refused connection) any
 * RST counts: ending it cuts no established connection. (So does a flow's
 * entry made anew by a non-SYN — after an LRU eviction or a pinned map
 * replaced at an upgrade — until the backend's next segment: the edge
 * cannot know the numbers before it.) Client RSTs are
 * checked on 32 bits; backend RSTs on 24 (a forger from the backend's side
 * needs ≈ 2^24 tries per flow), which keeps the value size. */
static __always_inline int snat_rst_ok(const struct edge_snat_life *l, const struct snat_seg *s,
				       const int backend)
{
	if (backend)
		return !(l->flags & SNAT_F_SEQ_BACKEND) || (s->seq & 0xffffff) == snat_seq_backend(l);
	return !(l->flags & SNAT_F_SEQ_CLIENT) || s->seq == l->seq_client;
}

/* How far a FIN's numbers may lie from what the edge expects (below). */
#define SNAT_FIN_SEQ_CLIENT_WIN (1u << 15)  /* either way: 2^-16 of the 32-bit space */
#define SNAT_FIN_SEQ_BACKEND_WIN (1u << 11) /* on 24 bits: 2^-12 of the space */
#define SNAT_FIN_ACK_BEHIND (1u << 20)      /* the receiver's data still in flight to it */
#define SNAT_FIN_ACK_AHEAD (1u << 11)

/* Is `got` within [want - behind, want + ahead]? On the low 32 - shift
 * bits (shift 8: the 24 bits kept of a backend number). */
static __always_inline int snat_near(__u32 got, __u32 want, __u32 behind, __u32 ahead, const int shift)
{
	__s32 d = (__s32)((got - want) << shift) >> shift;

	return d >= -(__s32)behind && d <= (__s32)ahead;
}

/* May this FIN count towards the flow's end? Both FINs and a quiet close
 * hold free the port, so a blind FIN pair with a live keep-alive
 * connection's tuple would hand it — and the backend's next segment on it —
 * to another client. A receiver takes a FIN only with the ACK bit
 * (synchronized states) and in its window, so once the edge knows the
 * numbers it asks the same, of what it tracks for RSTs (snat_track): the
 * sequence number near what the receiver expects next (a FIN overtaking,
 * or following, data the edge did not see stays inside), and the
 * acknowledgement not beyond what the receiver has sent, nor further back
 * than data in flight to it. A blind forger hits both on ≈ 2^-20 (client
 * FIN) or 2^-24 (backend FIN) of its tries. Numbers not known yet (a
 * half-open flow, an entry made anew mid-flow) are not asked, as for RSTs.
 * A real FIN outside the windows only leaves the port held to the idle
 * end. */
static __always_inline int snat_fin_ok(const struct edge_snat_life *l, const struct snat_seg *s,
				       const int backend)
{
	__u8 known = l->flags & (SNAT_F_SEQ_CLIENT | SNAT_F_SEQ_BACKEND);
	int seq_ok, ack_ok;

	if (!known)
		return 1;
	if (!(s->flags & PKT_TCP_ACK))
		return 0;
	if (backend) {
		seq_ok = !(known & SNAT_F_SEQ_BACKEND) ||
			 snat_near(s->seq, snat_seq_backend(l), SNAT_FIN_SEQ_BACKEND_WIN, SNAT_FIN_SEQ_BACKEND_WIN, 8);
		ack_ok = !(known & SNAT_F_SEQ_CLIENT) ||
			 snat_near(s->ack, l->seq_client, SNAT_FIN_ACK_BEHIND, SNAT_FIN_ACK_AHEAD, 0);
	} else {
		seq_ok = !(known & SNAT_F_SEQ_CLIENT) ||
			 snat_near(s->seq, l->seq_client, SNAT_FIN_SEQ_CLIENT_WIN, SNAT_FIN_SEQ_CLIENT_WIN, 0);
		ack_ok = !(known & SNAT_F_SEQ_BACKEND) ||
			 snat_near(s->ack, snat_seq_backend(l), SNAT_FIN_ACK_BEHIND, SNAT_FIN_ACK_AHEAD, 8);
	}
	return seq_ok && ack_ok;
}

/* Once each side has acknowledged the other (both sequence numbers known
 * at once) the flow is a connection, for good: a client's SYN clears
 * SNAT_F_SEQ_BACKEND (a new connection may follow), and a blind SYN with a
 * live connection's tuple must not shorten its idle time to a half-open
 * flow's (snat_over). Before that the client's side counts only with an
 * ACK of the backend's SYN-ACK (snat_track). */
static __always_inline __u8 snat_established(__u8 flags)
{
	if ((flags & (SNAT_F_SEQ_CLIENT | SNAT_F_SEQ_BACKEND)) == (SNAT_F_SEQ_CLIENT | SNAT_F_SEQ_BACKEND))
		flags |= SNAT_F_ESTABLISHED;
	return flags;
}

/* How far past the backend's ISN + 1 the client's first ACK may acknowledge:
 * what the backend may send before it (TCP Fast Open data), at most the
 * SYN's window, which is never scaled (RFC 7323 §2.2). */
#define SNAT_SYNACK_ACK_AHEAD 0xffffu

/* Learn, from a segment that is not a RST, what the next RST of each side
 * must carry: the other side's RCV.NXT is the ACK number this segment
 * carries (a SYN-ACK sets it, later ACKs only move it forward, so a late
 * duplicate does not move it back); this side's own in-order data moves
 * it too (a client that sends and resets before the backend acknowledged
 * carries the sequence number after its data) — only from the value the
 * edge already holds, so a blind forger cannot move it. A client's SYN
 * starts a new connection on the tuple: the backend's sequence is unknown
 * until the client acknowledges it, and the FINs of the connection before
 * it are forgotten. Trust: the client's side is checked
 * against the backend's ACKs (as trustworthy as the backend network, whose
 * replies the edge already delivers), the backend's side against the
 * client's ACKs; forging both sides of a flow is beyond this check.
 *
 * The handshake: a flow that is no connection yet keeps the backend's
 * SYN-ACK's ISN + 1 (SNAT_F_SYNACK), and a client ACK teaches the backend's
 * side — and so makes the flow a connection, held for the idle hour — only
 * if it acknowledges that SYN-ACK (within SNAT_SYNACK_ACK_AHEAD); another
 * the backend refuses too. Any client ACK counted: a spoofed SYN and one
 * blind ACK with its tuple (with a wrong checksum the backend drops it
 * without a RST; the edge does not check) held a port for the idle hour,
 * not the half-open minute — two forged packets per port an hour kept a
 * backend's new clients out. A blind ACK before the SYN-ACK counts for
 * nothing either: the SYN-ACK replaces what it taught. A client SYN keeps
 * the SYN-ACK's number (a retransmitted SYN gets the same SYN-ACK; a new
 * one's replaces it): cleared, a SYN and a blind ACK after it made the flow
 * a connection again. An established flow is not touched: a forged SYN-ACK
 * cannot unlearn its numbers. */
static __always_inline __u8 snat_track(struct edge_snat_life *l, const struct snat_seg *s,
				       const int backend, __u8 flags)
{
	if (backend) {
		if ((s->flags & (PKT_TCP_SYN | PKT_TCP_ACK)) == (PKT_TCP_SYN | PKT_TCP_ACK) &&
		    !(flags & SNAT_F_ESTABLISHED) &&
		    (!(flags & SNAT_F_SEQ_BACKEND) || (s->next & 0xffffff) != snat_seq_backend(l))) {
			snat_set_seq_backend(l, s->next);
			flags = (flags & ~SNAT_F_SEQ_BACKEND) | SNAT_F_SYNACK;
		}
		if ((s->flags & PKT_TCP_ACK) &&
		    (!(flags & SNAT_F_SEQ_CLIENT) || (s->flags & PKT_TCP_SYN) ||
		     (__s32)(s->ack - l->seq_client) > 0)) {
			l->seq_client = s->ack;
			flags |= SNAT_F_SEQ_CLIENT;
		}
		if ((flags & SNAT_F_SEQ_BACKEND) && (s->seq & 0xffffff) == snat_seq_backend(l))
			snat_set_seq_backend(l, s->next);
		return snat_established(flags);
	}
	if ((s->flags & (PKT_TCP_SYN | PKT_TCP_ACK)) == PKT_TCP_SYN) {
		/* A new connection on the tuple: the old one's FINs are not
		 * its end. Kept, a client reusing its port after a close (no
		 * TIME_WAIT on its side when the backend closed first) had a
		 * live connection whose port went to the next client once it
		 * idled past SNAT_HOLD_CLOSED — with the backend's next segment. */
		flags &= ~(SNAT_F_SEQ_BACKEND | SNAT_F_FIN_CLIENT | SNAT_F_FIN_BACKEND);
	} else if (flags & SNAT_F_SYNACK) {
		/* The handshake's ACK (above): it must acknowledge the SYN-ACK. */
		if ((s->flags & PKT_TCP_ACK) &&
		    snat_near(s->ack, snat_seq_backend(l), 0, SNAT_SYNACK_ACK_AHEAD, 8)) {
			snat_set_seq_backend(l, s->ack);
			flags = (flags & ~SNAT_F_SYNACK) | SNAT_F_SEQ_BACKEND;
		}
	} else if ((s->flags & PKT_TCP_ACK) &&
		   (!(flags & SNAT_F_SEQ_BACKEND) || (__s32)((s->ack - snat_seq_backend(l)) << 8) > 0)) {
		snat_set_seq_backend(l, s->ack);
		flags |= SNAT_F_SEQ_BACKEND;
	}
	if ((flags & SNAT_F_SEQ_CLIENT) && s->seq == l->seq_client)
		l->seq_client = s->next;
	return snat_established(flags);
}

/* A packet of the flow, from the client (backend = 0) or the backend:
 * FIN/RST move it towards its end, anything else proves it alive. A RST
 * or FIN its receiver would not accept (snat_rst_ok, snat_fin_ok) is as if
 * it never came. */
static __always_inline void snat_seen(struct edge_snat_life *l, __u8 proto, const struct snat_seg *s,
				      const int backend, __u32 now)
{
	__u8 flags = l->flags;

	if (proto == IPPROTO_TCP && (s->flags & PKT_TCP_RST)) {
		if (!snat_rst_ok(l, s, backend)) {
			edge_count(EV_SNAT_RST_IGNORED);
			return;
		}
		flags |= SNAT_F_RST;
	} else if (proto == IPPROTO_TCP) {
		/* Judged on the numbers before this segment moves them. */
		if ((s->flags & PKT_TCP_FIN) && !snat_fin_ok(l, s, backend)) {
			edge_count(EV_SNAT_FIN_IGNORED);
			return;
		}
		flags = snat_track(l, s, backend, flags) & ~SNAT_F_RST;
		if (s->flags & PKT_TCP_FIN)
			flags |= backend ? SNAT_F_FIN_BACKEND : SNAT_F_FIN_CLIENT;
	} else {
		flags &= ~SNAT_F_RST;
	}
	if (flags != l->flags)
		l->flags = flags;
	if (l->last != now)
		l->last = now;
}

/* A client packet of a flow that has its port: snat_seen, and whether it
 * completed the handshake (each side has now acknowledged the other) —
 * the point a SNAT TCP flow is confirmed (session affinity). */
static __always_inline int snat_client_seen(struct edge_snat_life *l, __u8 proto, const struct snat_seg *s,
					    __u32 now)
{
	__u8 was = l->flags;

	snat_seen(l, proto, s, 0, now);
	return !(was & SNAT_F_ESTABLISHED) && (l->flags & SNAT_F_ESTABLISHED);
}

/* After a SNAT flow's client packet: is the client's affinity entry to be
 * written — this packet confirmed the flow, the service has affinity, and
 * the insert limit allows (edge_aff_remember)? */
static __always_inline int snat_aff_remember(const struct edge_config *cfg, const struct edge_svc *svc, int confirmed,
					     const __u32 family)
{
	if (!confirmed || !svc->affinity_timeout)
		return 0;
	if (edge_may_insert(cfg, family))
		return 1;
	edge_count(EV_CT_INSERT_SKIPPED);
	return 0;
}

/* The port search both families share: up to SNAT_PROBES hash-derived
 * ports of the range, each taken if free (BPF_NOEXIST: two CPUs cannot take
 * the same one) or if its flow is over. `map` is the family's reverse map,
 * `k` its key with the edge port at *kport, `v` the new flow's value, and
 * `life_off` where a value keeps its struct edge_snat_life. Returns the
 * port (network order), 0 when all probes failed. */
static __always_inline __be16 snat_probe(void *map, void *k, __be16 *kport, const void *v,
					 const int life_off, const struct edge_config *cfg, __u8 proto,
					 __u32 now, __u32 hash)
{
	__u32 lo = cfg->snat_port_min, hi = cfg->snat_port_max, range;
	void *cur;

	if (lo == 0 || hi < lo)
		return 0;
	range = hi - lo + 1;
#pragma unroll
	for (int i = 0; i < SNAT_PROBES; i++) {
		__u32 port = lo + (hash + (__u32)i * 0x9e3779b1u) % range;

		*kport = bpf_htons((__u16)port);
		if (bpf_map_update_elem(map, k, v, BPF_NOEXIST) == 0)
			return *kport;
		cur = bpf_map_lookup_elem(map, k);
		if (cur && snat_over(cur + life_off, proto, now) &&
		    bpf_map_update_elem(map, k, v, BPF_EXIST) == 0) {
			edge_count(EV_SNAT_RECLAIMED);
			return *kport;
		}
	}
	return 0;
}

/* Find (or re-establish) the edge port for this flow; *confirmed set when
 * this packet completed the flow's handshake. */
static __always_inline __be16 edge_snat_port(const struct edge_config *cfg, const struct pkt *p,
					     const struct snat_seg *seg, const struct edge_backend *be,
					     __u32 svc_id, __be16 have, __u32 hash, __u32 ifindex, int *confirmed)
{
	struct edge_snat_key k = {
		.backend_ip = be->ip, .backend_port = be->port, .proto = p->l4_proto,
	};
	__u32 now = snat_now(cfg);
	struct edge_snat_val v = {
		.client_ip = p->saddr, .vip = p->daddr, .client_port = p->sport,
		.vport = p->dport, .svc_id = svc_id, .life = { .last = now }, .ifindex = ifindex,
	};
	struct edge_snat_val *cur;

	if (have) {
		k.edge_port = have;
		cur = bpf_map_lookup_elem(&edge_snat_rev, &k);
		if (cur && cur->client_ip == v.client_ip && cur->client_port == v.client_port &&
		    cur->vip == v.vip && cur->vport == v.vport) {
			*confirmed |= snat_client_seen(&cur->life, p->l4_proto, seg, now);
			return have;
		}
		/* Evicted (or taken over): try to take it back, else allocate. */
		if (!cur && bpf_map_update_elem(&edge_snat_rev, &k, &v, BPF_NOEXIST) == 0)
			return have;
	}
	return snat_probe(&edge_snat_rev, &k, &k.edge_port, &v, offsetof(struct edge_snat_val, life), cfg,
			  p->l4_proto, now, hash);
}

/* May a SYN that finds a SNAT flow's connection-table entry on a terminating
 * backend start a new connection (edge.c's rule, edge_conn_reusable)? Asked
 * of the port's own record, which takes a FIN or RST only as its receiver
 * would (snat_seen): the client closed its side, or the flow is over
 * (snat_over: an accepted RST and silence, both FINs and the hold, idle).
 * The entry's own marks (edge_conn.h) take any FIN or RST — the edge cannot
 * judge them for DSR — so a SNAT flow's are not kept: with them a blind FIN
 * (or a blind RST on an idle connection) and a SYN moved a live connection
 * off its terminating backend, its next segment to a backend that resets
 * it, though snat_seen had ignored both. A port whose record is another
 * flow's now was given up by this one (reclaimed only once over); one whose
 * record is gone (LRU) may still be taken back by its flow: kept. */
static __always_inline int snat_life_reusable(const struct edge_snat_life *l, __u8 proto, __u32 now)
{
	return (l->flags & SNAT_F_FIN_CLIENT) || snat_over(l, proto, now);
}

static __always_inline int edge_snat_reusable(const struct edge_config *cfg, const struct edge_ct_key *ck,
					      const struct edge_backend *be, __be16 port)
{
	struct edge_snat_key k = {
		.backend_ip = be->ip, .backend_port = be->port, .edge_port = port, .proto = ck->proto,
	};
	struct edge_snat_val *v = bpf_map_lookup_elem(&edge_snat_rev, &k);

	if (!v)
		return 0;
	if (v->client_ip != ck->saddr || v->client_port != ck->sport || v->vip != ck->daddr ||
	    v->vport != ck->dport)
		return 1;
	return snat_life_reusable(&v->life, ck->proto, snat_now(cfg));
}

/* The port a SNAT flow got, kept in its connection-table entry (`ct`:
 * edge_ct or edge_ct6, `key` the flow's) when it is not the one the entry
 * holds (`have`). 0, counted, when no port was free. */
static __always_inline int edge_snat_keep_port(void *ct, const void *key, __u32 be_id, __be16 port, __be16 have)
{
	if (!port) {
		edge_count(DROP_SNAT_PORTS);
		return 0;
	}
	if (port != have) {
		struct edge_ct_val cv = { .backend_id = be_id, .snat_port = port };

		bpf_map_update_elem(ct, key, &cv, BPF_ANY);
	}
	return 1;
}

/* `confirmed`: the packet confirms a new flow by itself (a first non-SYN);
 * a TCP flow is also confirmed by the client's packet that completes its
 * handshake. */
static __always_inline int edge_xmit_snat(void *ctx, const int xdp, const struct edge_config *cfg,
					  const struct pkt *p, const struct edge_ct_key *ck,
					  const struct edge_backend *be, __u32 be_id, const struct edge_svc *svc,
					  __be16 have, int confirmed, __u32 hash, __u32 *ifindex)
{
	struct snat_seg seg = {};
	__be16 port;

	snat_seg_read(&seg, edge_data(ctx, xdp), edge_data_end(ctx, xdp), EDGE_L4_OFF,
		      p->ip_len - p->ihl_bytes, p->l4_proto, p->tcp_flags);
	port = edge_snat_port(cfg, p, &seg, be, svc->id, have, hash, edge_ifindex(ctx, xdp), &confirmed);
	if (!edge_snat_keep_port(&edge_ct, ck, be_id, port, have))
		return ACT_DROP;
	if (snat_aff_remember(cfg, svc, confirmed, EDGE_INSERT_V4))
		edge_aff_remember(cfg, svc->id, p->saddr, be_id);
	if (edge_rewrite(ctx, xdp, p->l4_proto, EDGE_RW_BOTH, cfg->addr, port, be->ip, be->port) < 0)
		return ACT_DROP;
	return edge_forward(ctx, xdp, cfg, cfg->addr, be->node_ip, p->ip_len, ifindex);
}

/* A packet to the edge address: a backend's SNAT reply, or the edge's own
 * traffic (passed untouched). */
static __always_inline int edge_snat_reverse(void *ctx, const int xdp, const struct edge_config *cfg,
					     const struct pkt *p, __u32 *ifindex)
{
	struct edge_snat_key k = {
		.backend_ip = p->saddr, .backend_port = p->sport, .edge_port = p->dport,
		.proto = p->l4_proto,
	};
	struct edge_snat_val *v;
	struct snat_seg seg = {};
	__u16 port = bpf_ntohs(p->dport);
	__be32 client, vip;
	__be16 cport, vport;
	void *data, *end;

	ctx = edge_ctx_fresh(ctx);
	if (port < cfg->snat_port_min || port > cfg->snat_port_max)
		return ACT_PASS;
	if (edge_tagged(ctx, xdp, p) || p->ihl_bytes != 20 ||
	    edge_l2_group(edge_data(ctx, xdp), edge_data_end(ctx, xdp)))
		return ACT_PASS;
	v = bpf_map_lookup_elem(&edge_snat_rev, &k);
	if (!v)
		return ACT_PASS;
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	if (!edge_l4_sane(data, end, p)) {
		edge_count(DROP_MALFORMED);
		return ACT_DROP;
	}
	/* Only where the flow came in (the uplink): a "reply" arriving on
	 * another interface is not the backend's. */
	if (v->ifindex && v->ifindex != edge_ifindex(ctx, xdp)) {
		edge_count(DROP_SNAT_IFACE);
		return ACT_DROP;
	}
	snat_seg_read(&seg, data, end, EDGE_L4_OFF, p->ip_len - p->ihl_bytes, p->l4_proto, p->tcp_flags);
	snat_seen(&v->life, p->l4_proto, &seg, 1, snat_now(cfg));
	if (edge_hop(ctx, xdp, cfg, 0) < 0)
		return ACT_DROP;
	client = v->client_ip;
	vip = v->vip;
	cport = v->client_port;
	vport = v->vport;
	edge_count_pb(&edge_svc_stats, v->svc_id, p->ip_len + ETH_HLEN);
	if (edge_rewrite(ctx, xdp, p->l4_proto, EDGE_RW_BOTH, vip, vport, client, cport) < 0)
		return ACT_DROP;
	edge_count(EV_SNAT_REVERSE);
	return edge_forward(ctx, xdp, cfg, vip, client, p->ip_len, ifindex);
}

#endif
