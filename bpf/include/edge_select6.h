/* Edge program: backend choice for IPv6 flows — edge_select.h's rules over
 * the IPv6 maps (edge_maps6.h). The Maglev lookup itself is shared
 * (edge_maglev): a v6 service's region of edge_ring is read exactly as a
 * v4 one's. */
#ifndef EDGELB_EDGE_SELECT6_H
#define EDGELB_EDGE_SELECT6_H

#include "edge_maps6.h"
#include "edge_select.h"

static __always_inline int edge_src_allowed6(const struct edge_svc *svc, const struct pkt_addr6 *saddr)
{
	struct edge_src6_key k = { .prefixlen = 32 + 128, .svc_id = svc->id, .addr = *saddr };

	return bpf_map_lookup_elem(&edge_src_ranges6, &k) != 0;
}

/* A source no flow may come from: one no single host sends from —
 * multicast ff00::/8 (RFC 4291 2.7), unspecified ::, loopback ::1 — an
 * ICMPv6 error must not be sent to one (RFC 4443 2.4 (e)); or one that
 * cannot have crossed a router to reach a VIP: link-local fe80::/10 (RFC
 * 4291 2.5.6: a router never forwards it, and a pod's reply to it could
 * go nowhere) and v4-mapped ::ffff:0:0/96, which must not appear on the
 * wire (RFC 4291 2.5.5.2; Linux drops it on receipt). */
static __always_inline int edge_martian6(const struct pkt_addr6 *a)
{
	__u32 top = bpf_ntohl(a->w[0]);

	if ((top >> 24) == 0xff || (top & 0xffc00000) == 0xfe800000)
		return 1;
	if (a->w[0] | a->w[1])
		return 0;
	if (a->w[2] == bpf_htonl(0xffff))
		return 1;
	return !a->w[2] && (a->w[3] == 0 || a->w[3] == bpf_htonl(1));
}

/* Is saddr one of ours (the edge's IPv6 address or any IPv6 VIP), or a
 * martian? */
static __always_inline int edge_bad_source6(const struct edge_config6 *cfg6, const struct pkt_addr6 *saddr)
{
	struct edge_svc6_key k = { .vip = *saddr };

	if (edge_martian6(saddr))
		return 1;
	if (cfg6 && addr6_eq(&cfg6->addr, saddr))
		return 1;
	return bpf_map_lookup_elem(&edge_services6, &k) != 0;
}

/* A backend id is trusted only while its slot holds a backend of the same
 * service (as edge_backend_for). */
static __always_inline struct edge_backend6 *edge_backend6_for(__u32 id, __u32 svc_id)
{
	struct edge_backend6 *be = bpf_map_lookup_elem(&edge_backends6, &id);

	if (!be || !(be->flags & BE_F_VALID) || be->svc_id != svc_id)
		return 0;
	return be;
}

/* New flow: session affinity (if configured and fresh), else Maglev; adds
 * no entry (edge_pick_new). */
static __always_inline struct edge_backend6 *edge_pick_new6(const struct edge_config *cfg,
							    const struct edge_svc *svc,
							    const struct pkt_addr6 *client,
							    __u32 flow_hash, __u32 *id_out)
{
	struct edge_backend6 *be;
	__u32 id;

	if (svc->affinity_timeout) {
		struct edge_aff6_key ak = { .svc_id = svc->id, .client = *client };
		struct edge_aff_val *av = bpf_map_lookup_elem(&edge_affinity6, &ak);
		__u32 now = edge_now_s(cfg);

		if (av && now - av->last_seen <= svc->affinity_timeout) {
			be = edge_backend6_for(av->backend_id, svc->id);
			if (be && (be->flags & BE_F_ACTIVE)) {
				/* Kept fresh in place (no entry is added): a SYN
				 * near the timeout and its ACK then agree. */
				av->last_seen = now;
				*id_out = av->backend_id;
				edge_count(EV_AFFINITY_HIT);
				return be;
			}
		}
		flow_hash = edge_client_hash6(client->w);
	}
	if (edge_maglev(svc, flow_hash, &id) < 0)
		return 0;
	be = edge_backend6_for(id, svc->id);
	if (!be)
		return 0;
	*id_out = id;
	return be;
}

/* The client's affinity entry, written when a flow is confirmed
 * (edge_aff_remember). */
static __always_inline void edge_aff6_remember(const struct edge_config *cfg, __u32 svc_id,
					       const struct pkt_addr6 *client, __u32 be_id)
{
	struct edge_aff6_key ak = { .svc_id = svc_id, .client = *client };
	struct edge_aff_val av = { .backend_id = be_id, .last_seen = edge_now_s(cfg) };

	bpf_map_update_elem(&edge_affinity6, &ak, &av, BPF_ANY);
}

#endif
