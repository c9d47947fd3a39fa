/* Edge program: map layouts. src/datapath/edge-maps.ts encodes the same
 * structs byte for byte — change both together.
 *
 * Sizing (all preallocated except the LPM trie), for 10 000 services with
 * 100 000 backends inside 256 MB:
 *   edge_ring      16 Mi × 4 B  Maglev slots, 16 per 64-byte array element
 *                               (fewer, larger elements: array values are
 *                               8-byte aligned, and a batch update of 10^7
 *                               single slots costs seconds in the kernel); a
 *                               service owns a region of 2^k ≥ 256 slots
 *                               (so elements never straddle services) and
 *                               uses its first M (prime)
 *   edge_backends  256 Ki × 16 B backend id → pod / node / flags
 *   edge_services  64 Ki        {vip, port, proto} → service
 *   edge_ct        1 Mi LRU     5-tuple → backend (connection table)
 *   edge_affinity  128 Ki LRU   {service, client} → backend, last use
 *   edge_snat_rev  256 Ki LRU   SNAT reverse translations
 */
#ifndef EDGELB_EDGE_MAPS_H
#define EDGELB_EDGE_MAPS_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define EDGE_MAX_SERVICES (1 << 16)
#define EDGE_MAX_BACKENDS (1 << 18)
#define EDGE_RING_SLOTS (1 << 24)
#define EDGE_CT_ENTRIES (1 << 20)
#define EDGE_AFFINITY_ENTRIES (1 << 17)
#define EDGE_SNAT_ENTRIES (1 << 18)
#define EDGE_SRC_RANGE_ENTRIES (1 << 16)

/* Service key. port and proto are 0 in the per-VIP marker entry that lets
 * the program recognise fragments addressed to a VIP. */
struct edge_svc_key {
	__be32 vip;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

#define SVC_F_SNAT 0x1       /* rewrite source to the edge (snat, hybrid/UDP) */
#define SVC_F_SRC_RANGES 0x2 /* consult edge_src_ranges */
#define SVC_F_MARKER 0x4     /* VIP marker: no service behind this key */

struct edge_svc {
	__u32 id;               /* index into edge_svc_stats; 0 is never used */
	__u32 ring_off;         /* first slot of the service's region in edge_ring */
	__u32 ring_size;        /* Maglev M (prime); 0 = no active backend */
	__u32 affinity_timeout; /* seconds; 0 = no session affinity */
	__u32 flags;            /* SVC_F_* */
};

#define BE_F_VALID 0x1  /* slot in use */
#define BE_F_ACTIVE 0x2 /* may take new flows (else terminating) */
#define BE_F_IPIP 0x4   /* dispatch by IPIP to node_ip (else ip-option) */

struct edge_backend {
	__be32 ip;      /* pod */
	__be32 node_ip; /* node hosting the pod: FIB target and IPIP destination */
	__be16 port;    /* pod port */
	__u8 flags;     /* BE_F_* */
	__u8 pad;
	__u32 svc_id;   /* owner; a conntrack entry is only trusted if it matches */
};

/* Forward 5-tuple as received from the client. */
struct edge_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* edge_ct_val.flags: how the client's side of the connection went (the
 * edge sees only the client's packets; edge_conn.h). */
#define CT_F_FIN 0x1 /* the client sent a FIN */
#define CT_F_RST 0x2 /* the client sent a RST, and nothing since */

struct edge_ct_val {
	__u32 backend_id;
	__be16 snat_port; /* SNAT flows: the edge port allocated to the flow */
	__u8 flags;       /* CT_F_* */
	__u8 mark;        /* when the last packet after a FIN/RST came (edge_conn.h) */
};

struct edge_aff_key {
	__u32 svc_id;
	__be32 client;
};

struct edge_aff_val {
	__u32 backend_id;
	__u32 last_seen; /* seconds (coarse monotonic clock) */
};

/* LPM key: prefixlen counts the 32 bits of svc_id plus the CIDR length. */
struct edge_src_key {
	__u32 prefixlen;
	__u32 svc_id; /* host order: always fully inside the prefix, so order is moot */
	__be32 addr;
};

/* SNAT reverse key: the backend's reply as it arrives at the edge. */
struct edge_snat_key {
	__be32 backend_ip;
	__be16 backend_port;
	__be16 edge_port;
	__u8 proto;
	__u8 pad[3];
};

/* edge_snat_val.flags: how the SNAT flow went (the edge sees both sides). */
#define SNAT_F_FIN_CLIENT 0x1
#define SNAT_F_FIN_BACKEND 0x2
#define SNAT_F_RST 0x4 /* an acceptable RST from either side, and nothing since */
#define SNAT_F_SEQ_CLIENT 0x8  /* seq_client is known: the backend has acknowledged */
#define SNAT_F_SEQ_BACKEND 0x10 /* seq_backend is known: the client has acknowledged */
#define SNAT_F_ESTABLISHED 0x20 /* each side has acknowledged the other (sticky: a later
				 * SYN on the tuple does not clear it) */
#define SNAT_F_SYNACK 0x40 /* not yet established: seq_backend holds the backend's SYN-ACK's
			    * ISN + 1, which the client's ACK must acknowledge (snat_track) */

/* How a SNAT flow goes (edge_snat.h), the same in both families' values.
 * The sequence numbers let the edge judge a RST as its receiver does
 * (RFC 5961 §3.2): a RST ends the flow only if it carries exactly the
 * receiver's RCV.NXT, which the receiver's own ACKs tell. seq_backend keeps
 * 24 bits so the value stays 32 (IPv6: 56) bytes — the size the hash map
 * rounds the old 28 (52) to: no memory more. */
struct edge_snat_life {
	__u32 last;  /* edge clock >> 30 (≈ 1.07 s units) of the flow's last packet */
	__u8 flags;  /* SNAT_F_* */
	__u8 seq_backend[3]; /* low 24 bits, little-endian: the sequence number a backend RST must carry */
	__u32 seq_client;    /* host order: the sequence number a client RST must carry */
};

struct edge_snat_val {
	__be32 client_ip;
	__be32 vip;
	__be16 client_port;
	__be16 vport;
	__u32 svc_id;
	struct edge_snat_life life;
	__u32 ifindex; /* the uplink the flow came in on: its replies must too */
};

#define CFG_F_FIB_BYPASS 0x1 /* do not FIB-route: rewrite, count, XDP_PASS (tests) */
#define CFG_F_GW_MAC 0x2     /* skip the FIB: send to gw_mac out of the ingress port */
#define CFG_F_NO_FIB_CACHE 0x4 /* call bpf_fib_lookup for every packet */
#define CFG_F_DST_MAC 0x8 /* own_mac is the uplink's: frames to another unicast MAC are the stack's */

struct edge_config {
	__be32 addr;          /* edge address: SNAT source, IPIP outer source */
	__be32 ipip_src_net;  /* IPIP outer sources: this network ... */
	__u32 ipip_src_bits;  /* ... with this many low bits taken from the flow hash; 0 = addr */
	__u32 flags;          /* CFG_F_* */
	__u16 mtu;            /* MTU towards the nodes */
	__u16 snat_port_min;  /* host order, inclusive */
	__u16 snat_port_max;
	__u16 pad;
	__u32 ct_insert_limit; /* new conntrack entries per CPU per ~1 s; 0 = unlimited */
	__u8 gw_mac[6];        /* CFG_F_GW_MAC next hop */
	__u8 own_mac[6];
	__u64 now_ns;          /* test clock: when non-zero, used instead of the kernel's */
	__u32 ct6_insert_limit; /* the same for the IPv6 flow tables (user space scales it to their share) */
	__u32 pad2;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, EDGE_MAX_SERVICES);
	__type(key, struct edge_svc_key);
	__type(value, struct edge_svc);
} edge_services SEC(".maps");

#define EDGE_RING_PER_ELEM 16

/* Slot s lives in element s / 16, word s % 16. */
struct edge_ring_elem {
	__u32 id[EDGE_RING_PER_ELEM];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EDGE_RING_SLOTS / EDGE_RING_PER_ELEM);
	__type(key, __u32);
	__type(value, struct edge_ring_elem);
} edge_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, EDGE_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct edge_backend);
} edge_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EDGE_CT_ENTRIES);
	__type(key, struct edge_ct_key);
	__type(value, struct edge_ct_val);
} edge_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EDGE_AFFINITY_ENTRIES);
	__type(key, struct edge_aff_key);
	__type(value, struct edge_aff_val);
} edge_affinity SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, EDGE_SRC_RANGE_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct edge_src_key);
	__type(value, __u8);
} edge_src_ranges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, EDGE_SNAT_ENTRIES);
	__type(key, struct edge_snat_key);
	__type(value, struct edge_snat_val);
} edge_snat_rev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct edge_config);
} edge_config SEC(".maps");

#endif
