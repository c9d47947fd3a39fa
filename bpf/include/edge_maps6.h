/* Edge program: the IPv6 maps. src/datapath/edge-maps.ts encodes the same
 * structs byte for byte — change both together.
 *
 * IPv6 frontends share everything that is not an address with IPv4 ones:
 * the service value (struct edge_svc: id, Maglev region, affinity, flags),
 * edge_ring (a v6 service owns a region of it exactly like a v4 one, so
 * Maglev picks the same way for either family), the backend id space
 * (a backend id indexes edge_backends for an IPv4 backend and
 * edge_backends6 for an IPv6 one; the planner never gives one id to both),
 * the per-service and per-backend counters and the connection-table value.
 * Only keys and addresses differ:
 *   edge_services6   64 Ki        {vip6, port, proto} → struct edge_svc
 *   edge_backends6   256 Ki × 40  backend id → pod6 / node6 / flags
 *   edge_ct6         256 Ki LRU   5-tuple6 → struct edge_ct_val
 *   edge_affinity6   32 Ki LRU    {service, client6} → backend, last use
 *   edge_src_ranges6 LPM          {service, prefix6} → 1
 *   edge_config6     1            the edge's own IPv6 address
 *   edge_snat_rev6   64 Ki LRU    SNAT reverse translations (edge_snat6.h):
 *                                 a quarter of the IPv4 map, ≈ 9 MB (snat
 *                                 is the comparison mode); beyond 64 Ki live
 *                                 flows the least recently used lose their
 *                                 entry until their client's next packet
 *                                 takes the port back
 * The flow tables share one budget with the IPv4 ones: with IPv6 served,
 * user space loads edge_ct, edge_affinity and edge_snat_rev at three
 * quarters of their size and edge_sc_flows at half (EdgeDatapath,
 * FLOW_BUDGET_SHARE), so an edge holds 1 Mi flows of either family in
 * about the map memory of an IPv4-only edge.
 */
#ifndef EDGELB_EDGE_MAPS6_H
#define EDGELB_EDGE_MAPS6_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "edge_maps.h"
#include "parse6.h"

#define EDGE_CT6_ENTRIES (1 << 18)
#define EDGE_AFFINITY6_ENTRIES (1 << 15)
#define EDGE_SNAT6_ENTRIES (1 << 16)

/* Service key; port and proto are 0 in the per-VIP marker entry (fragments,
 * extension headers and VLAN tags to a VIP, forged sources). */
struct edge_svc6_key {
	struct pkt_addr6 vip;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct edge_backend6 {
	struct pkt_addr6 ip;      /* pod */
	struct pkt_addr6 node_ip; /* node hosting the pod: FIB target and IP6IP6 destination */
	__be16 port;              /* pod port */
	__u8 flags;               /* BE_F_* (BE_F_IPIP: IPv6-in-IPv6) */
	__u8 pad;
	__u32 svc_id;             /* owner */
};

/* Forward 5-tuple as received from the client. */
struct edge_ct6_key {
	struct pkt_addr6 saddr;
	struct pkt_addr6 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct edge_aff6_key {
	__u32 svc_id;
	struct pkt_addr6 client;
};

/* LPM key: prefixlen counts the 32 bits of svc_id plus the CIDR length. */
struct edge_src6_key {
	__u32 prefixlen;
	__u32 svc_id;
	struct pkt_addr6 addr;
};

struct edge_config6 {
	struct pkt_addr6 addr; /* IP6IP6 outer source, SNAT source, Time Exceeded source; :: = none */
};

/* SNAT reverse key: the backend's reply as it arrives at the edge
 * (edge_snat_key's fields, IPv6 backend address). */
struct edge_snat6_key {
	struct pkt_addr6 backend_ip;
	__be16 backend_port;
	__be16 edge_port;
	__u8 proto;
	__u8 pad[3];
};

struct edge_snat6_val {
	struct pkt_addr6 client_ip;
	struct pkt_addr6 vip;
	__be16 client_port;
	__be16 vport;
	__u32 svc_id;
	struct edge_snat_life life;
	__u32 ifindex; /* the uplink the flow came in on: its replies must too */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EDGE_MAX_SERVICES);
	__type(key, struct edge_svc6_key);
	__type(value, struct edge_svc);
} edge_services6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EDGE_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct edge_backend6);
} edge_backends6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EDGE_CT6_ENTRIES);
	__type(key, struct edge_ct6_key);
	__type(value, struct edge_ct_val);
} edge_ct6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EDGE_AFFINITY6_ENTRIES);
	__type(key, struct edge_aff6_key);
	__type(value, struct edge_aff_val);
} edge_affinity6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, EDGE_SRC_RANGE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct edge_src6_key);
	__type(value, __u8);
} edge_src_ranges6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct edge_config6);
} edge_config6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EDGE_SNAT6_ENTRIES);
	__type(key, struct edge_snat6_key);
	__type(value, struct edge_snat6_val);
} edge_snat_rev6 SEC(".maps");

#endif
