/* Edge program: when a connection is over. A packet from outside must not
 * be able to end a live connection, and the edge sees only one side of it
 * (DSR: the replies never come back here), so it ends nothing itself — it
 * remembers the client's FIN or RST in the connection-table entry and
 * decides, when a SYN arrives with the same 5-tuple, whether that SYN is a
 * new connection on a reused port or someone else's SYN on a live one:
 *
 *   - a FIN or RST marks the entry (CT_F_FIN / CT_F_RST) with the time;
 *   - every later packet of the flow moves the mark's time on (the
 *     connection is not silent), and a packet after a RST clears CT_F_RST
 *     (the RST was not its end: the backend ignored a blind one);
 *   - the connection is over once marked and silent for EDGE_CONN_SILENCE
 *     units (≈ 2–3 s).
 *
 * A flow sent with a second chance (edge_second_chance.h) has no entry; its
 * remembered pair carries the same marks, and a SYN forgets the pair only
 * under the same rule (edge_sc_syn).
 *
 * A SYN for a tuple with an entry (edge.c) stays on the entry's backend
 * while it may take connections (a live tuple is never re-routed, and a
 * reused port reaching the same active backend is a working connection);
 * it is balanced afresh when that backend is gone, or terminating and the
 * old connection is over or closed by the client (edge_conn_reusable) — so
 * a client reusing its port after a rolling update reaches an active pod.
 * A SNAT flow keeps no marks here: the edge sees both of its sides, and its
 * port's record judges FIN and RST as their receivers do
 * (edge_snat_reusable), which these marks cannot.
 *
 * Time: coarse nanoseconds >> 30 (≈ 1.07 s units) kept in 8 bits; only
 * marked entries and SYNs that find an entry read the clock. Wrapping
 * (every ≈ 4.6 min) can make an old mark look recent, which only keeps a
 * SYN on its terminating backend a little longer. */
#ifndef EDGELB_EDGE_CONN_H
#define EDGELB_EDGE_CONN_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include "parse.h"
#include "edge_maps.h"

#define EDGE_CONN_SILENCE 3

static __always_inline __u64 edge_now_ns(const struct edge_config *cfg)
{
	if (cfg->now_ns)
		return cfg->now_ns;
	return bpf_ktime_get_coarse_ns();
}

static __always_inline __u8 edge_conn_tick(const struct edge_config *cfg)
{
	return (__u8)(edge_now_ns(cfg) >> 30);
}

/* The marks live in a connection-table entry (edge_ct_val) and, for a flow
 * sent with a second chance, in its remembered pair (edge_sc_pair,
 * edge_second_chance.h): the same two bytes, the same rules. */

/* A client packet of a flow with marks (not a SYN). */
static __always_inline void edge_conn_mark(const struct edge_config *cfg, __u8 *flags, __u8 *mark,
					   __u8 tcp_flags)
{
	if (tcp_flags & PKT_TCP_RST) {
		*flags |= CT_F_RST;
		*mark = edge_conn_tick(cfg);
	} else if (tcp_flags & PKT_TCP_FIN) {
		*flags = (*flags & ~CT_F_RST) | CT_F_FIN;
		*mark = edge_conn_tick(cfg);
	} else if (*flags) {
		*flags &= ~CT_F_RST;
		if (*flags)
			*mark = edge_conn_tick(cfg);
	}
}

static __always_inline int edge_conn_marks_over(const struct edge_config *cfg, __u8 flags, __u8 mark)
{
	if (!flags)
		return 0;
	return (__u8)(edge_conn_tick(cfg) - mark) >= EDGE_CONN_SILENCE;
}

/* A client packet of a flow with an entry (not a SYN). */
static __always_inline void edge_conn_seen(const struct edge_config *cfg, struct edge_ct_val *cv,
					   __u8 tcp_flags)
{
	edge_conn_mark(cfg, &cv->flags, &cv->mark, tcp_flags);
}

static __always_inline int edge_conn_over(const struct edge_config *cfg, const struct edge_ct_val *cv)
{
	return edge_conn_marks_over(cfg, cv->flags, cv->mark);
}

/* A SYN on a tuple whose backend is terminating starts a new connection
 * (balanced afresh, edge.c) once the old one is over — or as soon as the
 * client has sent its FIN: a client sends a SYN on a tuple only after it
 * closed the previous connection on it, and a terminating pod is about to
 * stop listening. Kept there through the silence, a port reused within
 * 2–3 s of its FIN met "connection refused" in a rolling update under load.
 * The price: a forged FIN and SYN with a half-closed connection's tuple can
 * move it off its terminating pod (which ends it a little before the pod
 * would). A RST still needs the silence, so a blind RST moves nothing. */
static __always_inline int edge_conn_reusable(const struct edge_config *cfg, const struct edge_ct_val *cv)
{
	return (cv->flags & CT_F_FIN) || edge_conn_over(cfg, cv);
}

#endif
