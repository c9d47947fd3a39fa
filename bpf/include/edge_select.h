/* Edge program: backend choice — connection table, session affinity,
 * Maglev — and the new-entry limiter that protects the connection table
 * from SYN floods. */
#ifndef EDGELB_EDGE_SELECT_H
#define EDGELB_EDGE_SELECT_H

#include "edge_maps.h"
#include "edge_counters.h"
#include "edge_hash.h"
#include "edge_conn.h"

struct edge_insert_window {
	__u64 window; /* coarse ns >> 30 (≈ 1.07 s) */
	__u64 count;
};

/* One window per family: EDGE_INSERT_V4 (edge_ct, edge_sc_flows, edge_affinity)
 * and EDGE_INSERT_V6 (the *6 tables). */
#define EDGE_INSERT_V4 0
#define EDGE_INSERT_V6 1

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct edge_insert_window);
} edge_insert_limit SEC(".maps");

/* May this CPU add one more entry to a family's flow tables in the current
 * window? Under a flood of new flows (spoofed ACKs or UDP; SYNs insert
 * nothing) new entries stop after the family's limit per CPU per window;
 * the flows keep working (Maglev gives the same backend as long as the
 * backend set is stable), they only lose protection against backend-set
 * changes. Each family counts apart, IPv6 against ct6_insert_limit — user
 * space scales it to edge_ct6's share of the flow tables, so a flood at the
 * limit rewrites the smaller table no faster than edge_ct; with one budget
 * for both, it rewrote edge_ct6 three times faster, and a flood of one
 * family used up the other's inserts. The clock is the test clock when set
 * (edge_now_ns): a test's flood stays in one window. */
static __always_inline int edge_may_insert(const struct edge_config *cfg, const __u32 family)
{
	__u32 limit = family == EDGE_INSERT_V6 ? cfg->ct6_insert_limit : cfg->ct_insert_limit;
	struct edge_insert_window *w;
	__u64 now;

	if (limit == 0)
		return 1;
	w = bpf_map_lookup_elem(&edge_insert_limit, &family);
	if (!w)
		return 1;
	now = edge_now_ns(cfg) >> 30;
	if (w->window != now) {
		w->window = now;
		w->count = 0;
	}
	if (w->count >= limit)
		return 0;
	w->count++;
	return 1;
}

/* loadBalancerSourceRanges: is saddr inside one of the service's CIDRs? */
static __always_inline int edge_src_allowed(const struct edge_svc *svc, __be32 saddr)
{
	struct edge_src_key k = { .prefixlen = 64, .svc_id = svc->id, .addr = saddr };

	return bpf_map_lookup_elem(&edge_src_ranges, &k) != 0;
}

/* A source no single host sends from — "this network" 0/8, loopback
 * 127/8, multicast 224/4, limited broadcast — the sources Linux itself
 * treats as martian: a pod's kernel would drop a flow from one, and an ICMP
 * error must not be sent to one (RFC 1812 4.3.2.7); and link-local
 * 169.254/16, which no router forwards (RFC 3927 2.7): a pod's reply to
 * one stays on its node's link — where 169.254.169.254 is a cloud's
 * metadata service. */
static __always_inline int edge_martian(__be32 saddr)
{
	__u32 a = bpf_ntohl(saddr), top = a >> 24;

	return top == 0 || top == 127 || (top & 0xf0) == 0xe0 || a == 0xffffffff ||
	       (a >> 16) == 0xa9fe;
}

/* Is saddr one of ours (the edge's address or any VIP: its marker entry),
 * or a martian? */
static __always_inline int edge_bad_source(const struct edge_config *cfg, __be32 saddr)
{
	struct edge_svc_key k = { .vip = saddr };

	return saddr == cfg->addr || edge_martian(saddr) ||
	       bpf_map_lookup_elem(&edge_services, &k) != 0;
}

static __always_inline struct edge_backend *edge_backend_get(__u32 id)
{
	return bpf_map_lookup_elem(&edge_backends, &id);
}

/* A backend id from the connection table or the affinity map is trusted
 * only if the slot is still in use by the same service. */
static __always_inline struct edge_backend *edge_backend_for(__u32 id, __u32 svc_id)
{
	struct edge_backend *be = edge_backend_get(id);

	if (!be || !(be->flags & BE_F_VALID) || be->svc_id != svc_id)
		return 0;
	return be;
}

static __always_inline int edge_maglev(const struct edge_svc *svc, __u32 hash, __u32 *id)
{
	struct edge_ring_elem *v;
	__u32 slot, elem;

	if (svc->ring_size == 0)
		return -1;
	/* hash → [0, M) by multiply-shift (Lemire's fastrange) instead of a
	 * division: uniform for a uniform hash, and every edge computes it the
	 * same way. */
	slot = svc->ring_off + (__u32)(((__u64)hash * svc->ring_size) >> 32);
	elem = slot / EDGE_RING_PER_ELEM;
	v = bpf_map_lookup_elem(&edge_ring, &elem);
	if (!v)
		return -1;
	*id = v->id[slot & (EDGE_RING_PER_ELEM - 1)];
	return 0;
}

/* Affinity's clock: seconds of the coarse monotonic clock, or of the test
 * clock when set (edge_now_ns). */
static __always_inline __u32 edge_now_s(const struct edge_config *cfg)
{
	return (__u32)(edge_now_ns(cfg) / 1000000000ull);
}

/* New flow: session affinity first (if configured and fresh), else Maglev
 * over the active backends — for affinity over the client's address alone,
 * so a client without an entry still lands on one backend. Adds no entry:
 * that is written once the flow is confirmed (edge_aff_remember); a fresh
 * one found is only kept fresh. */
static __always_inline struct edge_backend *edge_pick_new(const struct edge_config *cfg,
							  const struct edge_svc *svc,
							  __be32 client, __u32 flow_hash,
							  __u32 *id_out)
{
	struct edge_backend *be;
	__u32 id;

	if (svc->affinity_timeout) {
		struct edge_aff_key ak = { .svc_id = svc->id, .client = client };
		struct edge_aff_val *av = bpf_map_lookup_elem(&edge_affinity, &ak);
		__u32 now = edge_now_s(cfg);

		if (av && now - av->last_seen <= svc->affinity_timeout) {
			be = edge_backend_for(av->backend_id, svc->id);
			if (be && (be->flags & BE_F_ACTIVE)) {
				/* Kept fresh in place (no entry is added): a SYN
				 * near the timeout and its ACK then agree. */
				av->last_seen = now;
				*id_out = av->backend_id;
				edge_count(EV_AFFINITY_HIT);
				return be;
			}
		}
		flow_hash = edge_client_hash(client);
	}
	if (edge_maglev(svc, flow_hash, &id) < 0)
		return 0;
	be = edge_backend_for(id, svc->id);
	if (!be)
		return 0;
	*id_out = id;
	return be;
}

/* Session affinity: the client's entry (re)written when a flow of it is
 * confirmed — by the first non-SYN packet that pins it in the connection
 * table (or, for SNAT TCP, the handshake's completion), within the insert
 * limit — never by a SYN. The affinity table is an LRU: written by SYNs,
 * a flood of SYNs from spoofed sources pushed the real clients' entries
 * out, and the next backend change spread them like strangers. */
static __always_inline void edge_aff_remember(const struct edge_config *cfg, __u32 svc_id, __be32 client,
					      __u32 be_id)
{
	struct edge_aff_key ak = { .svc_id = svc_id, .client = client };
	struct edge_aff_val av = { .backend_id = be_id, .last_seen = edge_now_s(cfg) };

	bpf_map_update_elem(&edge_affinity, &ak, &av, BPF_ANY);
}

#endif
