/* Edge program: the second chance (docs/second-chance.md). After a service's
 * Maglev table changed, a TCP segment that is not a SYN and has no
 * connection-table entry may belong to a connection made under the previous
 * table on another edge. Such a packet goes to the new table's backend (the
 * primary) carrying the previous table's backend (the secondary) in the
 * 20-byte option (sc_option.h); the primary's node hands it to the
 * secondary's node when its pod does not own the connection.
 *
 * Only the miss path comes here: a connection-table hit never does, and a
 * SYN only to find a pair remembered for a connection on its tuple
 * (edge_sc_syn). The decision for a flow is remembered in edge_sc_flows (not
 * in edge_ct, whose entry would name the primary alone), so the flow keeps
 * being sent both ways after the window closed — with the client's FIN/RST
 * marks (edge_conn.h), so that a SYN forgets the pair only once that
 * connection is over: a blind SYN (or RST) from someone else never moves a
 * live connection.
 *
 * The decision is the same for IPv6 flows (edge_second_chance6.h): one
 * function, edge_sc_decide, serves both families, hence edge_select6.h. */
#ifndef EDGELB_EDGE_SECOND_CHANCE_H
#define EDGELB_EDGE_SECOND_CHANCE_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "parse.h"
#include "csum.h"
#include "sc_option.h"
#include "edge_maps.h"
#include "edge_select.h"
#include "edge_select6.h"
#include "edge_conn.h"
#include "edge_dsr.h"

#define EDGE_SC_FLOWS_ENTRIES (1 << 17)

/* A service's previous Maglev table: written by the agent when the table
 * changes (src/datapath/second-chance.ts), read here. */
#define SC_PREV_F_FLOWS 0x1 /* a window was opened since the service got its id:
			     * edge_sc_flows may hold its flows */

struct edge_sc_prev {
	__u32 ring_off;  /* region of edge_ring holding the previous table */
	__u32 ring_size; /* its M; 0 = no previous table (window closed) */
	__u64 until_ns;  /* end of the window (bpf_ktime_get_coarse_ns clock) */
	__u32 flags;     /* SC_PREV_F_* */
	__u32 pad;
};

/* A flow sent with a secondary: the two backend ids at the decision. Its
 * connection lives on one of them, whatever the tables say later; a SYN on
 * the tuple once that connection is over (a new connection on a reused
 * port) forgets the pair. flags / mark: the client's FIN/RST marks, as in
 * edge_ct_val (edge_conn.h). */
struct edge_sc_pair {
	__u32 primary;
	__u32 secondary;
	__u8 flags; /* CT_F_* */
	__u8 mark;  /* when the last packet after a FIN/RST came */
	__u8 pad[2];
};

enum edge_sc_stat {
	SC_SENT = 0,        /* packets sent with a secondary */
	SC_REMEMBERED,      /* flows added to edge_sc_flows */
	SC_NOT_REMEMBERED,  /* ... not added: insert limit (sent with a secondary anyway) */
	SC_SAME_BACKEND,    /* in a window, both tables agree: plain flow */
	SC_SECONDARY_GONE,  /* remembered/old backend no longer a backend: plain flow */
	SC_SYN_KEPT,        /* a SYN on a remembered flow whose connection lives: the pair
			     * stays, the SYN goes to its secondary (edge_sc_syn) */
	SC_STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EDGE_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct edge_sc_prev);
} edge_sc_prev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EDGE_SC_FLOWS_ENTRIES);
	__type(key, struct edge_ct_key);
	__type(value, struct edge_sc_pair);
} edge_sc_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SC_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} edge_sc_stats SEC(".maps");

static __always_inline void edge_sc_count(__u32 stat)
{
	__u64 *c = bpf_map_lookup_elem(&edge_sc_stats, &stat);

	if (c)
		*c += 1;
}

/* A backend id of a remembered pair or of the previous table, trusted as
 * edge_backend_for's; v6 (a constant) picks the family's backends. */
static __always_inline void *edge_sc_backend_for(const int v6, __u32 id, __u32 sid)
{
	if (v6)
		return edge_backend6_for(id, sid);
	return edge_backend_for(id, sid);
}

/* A TCP SYN without an entry. A pair remembered for a connection on its
 * tuple is forgotten only once that connection is over or its client sent a
 * FIN (edge_conn.h's rule for a SYN on a conntrack entry): then the SYN is a
 * new connection on a reused port, which the pair must not steer (it is
 * balanced as any SYN, *be as chosen). Otherwise the tuple's connection lives
 * and the SYN is someone else's (or the client's after it lost its state):
 * the pair stays, and the SYN goes to the pair's secondary (the survivor if
 * one is gone), plainly. Not to the primary nor the current pick: a SYN
 * reaching the primary's node would make it claim the tuple (node_flows,
 * node_fwd), and the live connection's next segment — usually owned by the
 * secondary, the pod of the table it was made under — would be delivered to
 * the primary's pod, which resets it. At the secondary it claims nothing
 * the primary's node would look at (that node checks its own ownership
 * first), and the pod holding the connection answers it with a challenge
 * ACK (RFC 5961 §4). Only services that had a window can have pairs: the
 * others pay one array lookup. */
static __always_inline void edge_sc_syn(const int v6, const struct edge_config *cfg,
					const struct edge_svc *svc, void *flows, const void *ck,
					void **be, __u32 *be_id)
{
	__u32 sid = svc->id, id;
	struct edge_sc_prev *pv = bpf_map_lookup_elem(&edge_sc_prev, &sid);
	struct edge_sc_pair *pair;
	void *to;

	if (!pv || !(pv->flags & SC_PREV_F_FLOWS))
		return;
	pair = bpf_map_lookup_elem(flows, ck);
	if (!pair)
		return;
	if ((pair->flags & CT_F_FIN) || edge_conn_marks_over(cfg, pair->flags, pair->mark)) {
		bpf_map_delete_elem(flows, ck);
		return;
	}
	id = pair->secondary;
	to = edge_sc_backend_for(v6, id, sid);
	if (!to) {
		id = pair->primary;
		to = edge_sc_backend_for(v6, id, sid);
	}
	if (to) {
		*be = to;
		*be_id = id;
	}
	edge_sc_count(SC_SYN_KEPT);
}

/* edge_sc_syn over the IPv4 pairs. */
static __always_inline void edge_sc_syn4(const struct edge_config *cfg, const struct edge_svc *svc,
					 const struct edge_ct_key *ck, struct edge_backend **be, __u32 *be_id)
{
	void *to = *be;

	edge_sc_syn(0, cfg, svc, &edge_sc_flows, ck, &to, be_id);
	*be = to;
}

/* The decision, the same for both families (v6 a constant, as xdp is for
 * the hooks): only the map of pairs (flows, keyed by ck), the client
 * address hashed for affinity (one word, or four for IPv6) and the backend
 * type differ. A TCP non-SYN without an entry; *be / *be_id the backend
 * chosen as for a new flow. Returns the secondary to name (*be then the
 * primary to send to), or 0: a plain flow to *be, pinned in the connection
 * table by the caller. */
static __always_inline void *edge_sc_decide(const int v6, const struct edge_config *cfg,
					    const struct edge_svc *svc, void *flows, const void *ck,
					    const __be32 *client, __u32 hash, __u8 tcp_flags, void **be,
					    __u32 *be_id)
{
	__u32 sid = svc->id, old_id;
	struct edge_sc_prev *pv = bpf_map_lookup_elem(&edge_sc_prev, &sid);
	struct edge_sc_pair *pair;
	void *sec;

	if (!pv || !pv->flags)
		return 0;
	pair = bpf_map_lookup_elem(flows, ck);
	if (pair) {
		/* The connection lives on one of the two remembered backends,
		 * not where the tables point now: after a second change the
		 * current pick may be neither (a rolling update adds pods, then
		 * retires others), and sending there would reset it. A reused
		 * port never gets here: its SYN forgot the pair. The client's
		 * FIN/RST marks it (edge_conn.h) for that SYN's decision. */
		__u32 pri_id = pair->primary, sec_id = pair->secondary;
		void *pri = edge_sc_backend_for(v6, pri_id, sid);

		if (pair->flags | (tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST)))
			edge_conn_mark(cfg, &pair->flags, &pair->mark, tcp_flags);

		sec = edge_sc_backend_for(v6, sec_id, sid);
		if (!pri) {
			/* The primary is gone: the secondary survives. */
			pri = sec;
			pri_id = sec_id;
			sec = 0;
		}
		if (pri) {
			*be = pri;
			*be_id = pri_id;
		}
		if (sec) {
			edge_sc_count(SC_SENT);
			return sec;
		}
		/* One of them is gone, and with it any connection it had: the
		 * flow is the other one's, plainly. */
		edge_sc_count(SC_SECONDARY_GONE);
		bpf_map_delete_elem(flows, ck);
		return 0;
	}
	if (pv->ring_size == 0 || edge_now_ns(cfg) >= pv->until_ns)
		return 0;
	{
		struct edge_svc old = { .id = sid, .ring_off = pv->ring_off, .ring_size = pv->ring_size };
		__u32 h = hash;

		if (svc->affinity_timeout)
			h = v6 ? edge_client_hash6(client) : edge_client_hash(*client);
		if (edge_maglev(&old, h, &old_id) < 0)
			return 0;
	}
	if (old_id == *be_id) {
		edge_sc_count(SC_SAME_BACKEND);
		return 0;
	}
	sec = edge_sc_backend_for(v6, old_id, sid);
	if (!sec) {
		edge_sc_count(SC_SECONDARY_GONE);
		return 0;
	}
	if (edge_may_insert(cfg, v6 ? EDGE_INSERT_V6 : EDGE_INSERT_V4)) {
		struct edge_sc_pair np = { .primary = *be_id, .secondary = old_id };

		if (tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST))
			edge_conn_mark(cfg, &np.flags, &np.mark, tcp_flags);
		bpf_map_update_elem(flows, ck, &np, BPF_ANY);
		edge_sc_count(SC_REMEMBERED);
	} else {
		edge_sc_count(SC_NOT_REMEMBERED);
	}
	edge_sc_count(SC_SENT);
	return sec;
}

/* edge_sc_decide over the IPv4 pairs. */
static __always_inline struct edge_backend *edge_second_chance(const struct edge_config *cfg,
							       const struct edge_svc *svc,
							       const struct edge_ct_key *ck, __u32 hash,
							       __u8 tcp_flags, struct edge_backend **be,
							       __u32 *be_id)
{
	void *pri = *be;
	struct edge_backend *sec = edge_sc_decide(0, cfg, svc, &edge_sc_flows, ck, &ck->saddr, hash,
						  tcp_flags, &pri, be_id);

	*be = pri;
	return sec;
}

static __always_inline void edge_sc_fill(struct sc_opt *o, __be32 vip, __be16 vport,
					 const struct edge_backend *sec)
{
	o->type = DSR_OPT_TYPE;
	o->len = SC_OPT_LEN;
	o->port = vport;
	o->vip = vip;
	o->sec_ip = sec->ip;
	o->sec_port = sec->port;
	o->flags = 0;
	o->pad = 0;
	o->sec_node = sec->node_ip;
}

/* ip-option dispatch: DNAT to the primary pod, then the 20-byte option. */
static __always_inline int edge_sc_xmit_option(void *ctx, const int xdp, const struct edge_config *cfg,
					       const struct pkt *p, const struct edge_backend *be,
					       const struct edge_backend *sec, __u32 *ifindex)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	struct iphdr *ip = data + EDGE_L3_OFF;
	struct sc_opt *opt;
	int big;

	if (data + EDGE_L4_OFF > end)
		return ACT_DROP;
	big = edge_mtu_check(ctx, xdp, cfg, p->ip_len, ip->frag_off, SC_OPT_LEN);
	if (big == -1)
		return ACT_TX;
	if (big == -2)
		return ACT_DROP;
	if (edge_rewrite(ctx, xdp, p->l4_proto, EDGE_RW_DST, 0, 0, be->ip, be->port) < 0)
		return ACT_DROP;
	if (edge_grow(ctx, xdp, SC_OPT_LEN, EDGE_L4_OFF, 0) < 0) {
		edge_count(DROP_ADJUST);
		return ACT_DROP;
	}
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	if (data + EDGE_L4_OFF + SC_OPT_LEN > end)
		return ACT_DROP;
	ip = data + EDGE_L3_OFF;
	opt = data + EDGE_L4_OFF;
	edge_sc_fill(opt, p->daddr, p->dport, sec);
	edge_ip_option_added(ip, p->ip_len, (const __be32 *)opt, SC_OPT_LEN);
	if (big == 1)
		return ACT_PASS;
	return edge_forward(ctx, xdp, cfg, p->saddr, be->node_ip, p->ip_len + SC_OPT_LEN, ifindex);
}

/* ipip dispatch: the outer header carries the option (outer IHL 10). */
static __always_inline int edge_sc_xmit_ipip(void *ctx, const int xdp, const struct edge_config *cfg,
					     const struct pkt *p, const struct edge_backend *be,
					     const struct edge_backend *sec, __u32 hash, __u32 *ifindex)
{
	void *data = edge_data(ctx, xdp), *end = edge_data_end(ctx, xdp);
	const int outer = 20 + SC_OPT_LEN;
	struct iphdr *ip = data + EDGE_L3_OFF;
	__u16 *w;
	__u32 sum = 0;
	__be16 df;
	__u8 tos;
	__be32 src;
	int big;

	if (data + EDGE_L4_OFF > end)
		return ACT_DROP;
	df = ip->frag_off & bpf_htons(IPV4_DF);
	tos = ip->tos;
	big = edge_mtu_check(ctx, xdp, cfg, p->ip_len, ip->frag_off, outer);
	if (big == -1)
		return ACT_TX;
	if (big == -2)
		return ACT_DROP;
	if (edge_grow(ctx, xdp, outer, ETH_HLEN, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4) < 0) {
		edge_count(DROP_ADJUST);
		return ACT_DROP;
	}
	data = edge_data(ctx, xdp);
	end = edge_data_end(ctx, xdp);
	if (data + ETH_HLEN + outer > end)
		return ACT_DROP;
	ip = data + EDGE_L3_OFF;
	src = edge_ipip_src(cfg, hash);
	edge_ipip_outer(ip, outer, tos, df, p->ip_len, src, be->node_ip);
	edge_sc_fill((struct sc_opt *)(ip + 1), p->daddr, p->dport, sec);
	ip->check = 0;
	w = (__u16 *)ip;
#pragma unroll
	for (int i = 0; i < outer / 2; i++)
		sum += w[i];
	ip->check = csum_fold(sum);
	if (big == 1)
		return ACT_PASS;
	return edge_forward(ctx, xdp, cfg, src, be->node_ip, p->ip_len + outer, ifindex);
}

/* The second-chance send is its own subprogram per hook (a packet of the
 * miss path pays one call): inlined, its packet accesses changed how clang
 * laid out the rest of edge_process, and the verifier refused the result. */
struct edge_sc_args {
	const struct edge_config *cfg;
	const struct pkt *p;
	const struct edge_backend *be;
	const struct edge_backend *sec;
	__u32 *ifindex;
	__u32 hash;
};

static __noinline int edge_sc_xmit_xdp(struct xdp_md *ctx, const struct edge_sc_args *a)
{
	if (a->be->flags & BE_F_IPIP)
		return edge_sc_xmit_ipip(ctx, 1, a->cfg, a->p, a->be, a->sec, a->hash, a->ifindex);
	return edge_sc_xmit_option(ctx, 1, a->cfg, a->p, a->be, a->sec, a->ifindex);
}

static __noinline int edge_sc_xmit_tc(struct __sk_buff *ctx, const struct edge_sc_args *a)
{
	if (a->be->flags & BE_F_IPIP)
		return edge_sc_xmit_ipip(ctx, 0, a->cfg, a->p, a->be, a->sec, a->hash, a->ifindex);
	return edge_sc_xmit_option(ctx, 0, a->cfg, a->p, a->be, a->sec, a->ifindex);
}

static __always_inline int edge_sc_xmit(void *ctx, const int xdp, const struct edge_config *cfg,
					const struct pkt *p, const struct edge_backend *be,
					const struct edge_backend *sec, __u32 hash, __u32 *ifindex)
{
	struct edge_sc_args a = { .cfg = cfg, .p = p, .be = be, .sec = sec, .ifindex = ifindex, .hash = hash };

	if (xdp)
		return edge_sc_xmit_xdp(ctx, &a);
	return edge_sc_xmit_tc(ctx, &a);
}

#endif
