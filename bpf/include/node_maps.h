/* Maps and their key/value layouts for the node program (bpf/node.c).
 *
 * src/datapath/node-maps.ts encodes/decodes exactly these structs; keep the
 * two in step (sizes and offsets are asserted by the TS tests against the
 * map definitions the kernel reports).
 *
 * All addresses and ports are stored in network byte order, as they appear
 * in packets, so the datapath never swaps bytes.
 */
#ifndef EDGELB_NODE_MAPS_H
#define EDGELB_NODE_MAPS_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "parse6.h"

/* Reply tuple: the key under which the egress program finds a pod's reply.
 * For a client C:cp talking to VIP V:vp served by pod P:pp the key is
 * { pod = P, client = C, pod_port = pp, client_port = cp, proto }. */
struct node_flow_key {
	__be32 pod_ip;
	__be32 client_ip;
	__be16 pod_port;
	__be16 client_port;
	__u8 proto;
	__u8 pad[3];
};

/* node_flow_value.flags */
#define NODE_FLOW_FIN_POD 0x01    /* pod sent FIN (seen at egress) */
#define NODE_FLOW_FIN_CLIENT 0x02 /* client sent FIN (seen at ingress) */
#define NODE_FLOW_CLOSING 0x04    /* both FINs seen: expires after close timeout */
#define NODE_FLOW_RST 0x08        /* a RST was seen and nothing since: expires after rst_ns */

/* node_flow_value.origin: how the flow was learnt */
#define NODE_ORIGIN_OPTION 1
#define NODE_ORIGIN_IPIP 2

struct node_flow_value {
	__be32 vip;
	__be16 vip_port;
	__u8 flags;
	__u8 origin;
	__u64 last_seen_ns; /* CLOCK_MONOTONIC (coarse), or the test clock */
	__u64 created_ns;
};

/* Forward tuple for ipip flows: which local pod the client's flow to VIP:port
 * went to, so later packets follow it even if the local backend set changes.
 * { client = C, vip = V, client_port = cp, vip_port = vp, proto } */
struct node_fwd_key {
	__be32 client_ip;
	__be32 vip;
	__be16 client_port;
	__be16 vip_port;
	__u8 proto;
	__u8 pad[3];
};

struct node_fwd_value {
	__be32 pod_ip;
	__be16 pod_port;
	__u16 pad;
	__u64 last_seen_ns;
};

/* DSR frontends: VIP:port/proto → this node's pods for it. Every DSR
 * frontend has an entry, with count 0 when no pod of it runs here: the
 * option path checks the VIP against it, the ipip path picks a pod from it. */
struct node_svc_key {
	__be32 vip;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

#define NODE_MAX_LOCAL_BACKENDS 32

struct node_backend {
	__be32 ip;
	__be16 port;
	__u16 pad;
};

/* be[0..count) are every pod of the frontend on this node that an edge may
 * send to — ready ones first, then terminating ones (an edge keeps their
 * flows, and a SYN it pinned before they turned terminating is still on its
 * way): an option naming any of them is accepted. New ipip flows pick among
 * the first `pick` only (0 = all count, as written before `pick` existed). */
struct node_svc_value {
	__u32 count; /* 0..NODE_MAX_LOCAL_BACKENDS; 0 = drop (no local pod) */
	__u32 pick;  /* 0..count */
	struct node_backend be[NODE_MAX_LOCAL_BACKENDS];
};

/* The edges' addresses (edgelb node run --edge-sources): an LPM trie of
 * CIDRs. prefixlen counts the bits of addr that must match. The value says
 * what the block is: NODE_SRC_EDGE, or NODE_SRC_ROUTER (--edge-routers: a
 * router on this node's link that the edges' IPIP crosses, node_trust.h). */
#define NODE_SRC_EDGE 1
#define NODE_SRC_ROUTER 2

struct node_src_key {
	__u32 prefixlen;
	__be32 addr;
};

/* Link-layer senders trusted as edges. The IPv4 source of an ip-option
 * packet is the client's, so the node tells an edge's packet from a forged
 * one by the Ethernet sender: a neighbour that holds an edge-source
 * address. Learnt from that neighbour's ARP (node_trust.h) or written by the
 * agent from the kernel's neighbour table. */
struct node_mac_key {
	__u8 mac[6];
	__u16 pad;
};

#define NODE_MAC_FROM_ARP 1   /* learnt by the program from an ARP packet */
#define NODE_MAC_FROM_AGENT 2 /* written by the agent (neighbour table) */
#define NODE_MAC_FROM_NDP 3   /* learnt by the program from a Neighbor Solicitation/Advertisement */
/* Flag in `how`: the neighbour holds a NODE_SRC_ROUTER address — trusted as
 * the sender of IPIP, never of an option (node_trust.h). */
#define NODE_MAC_ROUTER 0x100

/* One map for both families (one lookup per option packet). `ip` keeps an
 * IPv4 edge's address; an IPv6 edge's entry has ip 0 (the layout stays the
 * one pinned by earlier versions, so an upgraded agent reuses the map). */
struct node_mac_value {
	__be32 ip;   /* the IPv4 edge-source address the neighbour holds, 0 for IPv6 */
	__u32 how;   /* NODE_MAC_FROM_*, | NODE_MAC_ROUTER */
	__u64 seen_ns;
};

#define NODE_EDGE_SOURCES 256
#define NODE_EDGE_MACS 1024

/* A neighbour is trusted while it was confirmed within this time: by its
 * own ARP / NS / NA, or by the agent copying the kernel's neighbour table
 * (every 30 s). Never by its data packets: whoever came to own a MAC the
 * edge gave up would keep it trusted by sending. */
#define NODE_EDGE_MAC_TTL_NS (600ULL * 1000000000ULL)

/* node_config.flags */
#define NODE_CFG_STRIP_OPTION 0x1 /* remove the DSR option before the pod sees it */
#define NODE_CFG_CHECK_OUTER_DST 0x2 /* ipip: outer dst must equal node_ip */
#define NODE_CFG_VERIFY_VIP 0x4 /* option: VIP:port/proto must be in node_services */

struct node_config {
	__u64 tcp_idle_ns;  /* 0 = default (see node_flow.h) */
	__u64 udp_idle_ns;
	__u64 close_ns;     /* after both FINs */
	__u64 now_ns;       /* test clock: when non-zero, used instead of the kernel's */
	__be32 node_ip;
	__u32 flags;
	__u64 rst_ns;       /* silence after a RST before the flow counts as ended */
	__u32 insert_limit; /* new flows per CPU per ~1.07 s window; 0 = unlimited */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct node_flow_key);
	__type(value, struct node_flow_value);
} node_flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct node_fwd_key);
	__type(value, struct node_fwd_value);
} node_fwd SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct node_svc_key);
	__type(value, struct node_svc_value);
} node_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct node_config);
} node_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NODE_EDGE_SOURCES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct node_src_key);
	__type(value, __u8);
} node_edge_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NODE_EDGE_MACS);
	__type(key, struct node_mac_key);
	__type(value, struct node_mac_value);
} node_edge_macs SEC(".maps");

/* The MAC each edge-source (or router) address was last learnt or written
 * at; an IPv4 address as ::ffff:a.b.c.d. When an edge's MAC changes (NIC
 * replaced, VM re-created), its old MAC's node_edge_macs entry is found
 * here and removed (node_trust.h): keyed by MAC, that map alone cannot
 * tell that a new neighbour replaces an old one. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NODE_EDGE_MACS);
	__type(key, struct pkt_addr6);
	__type(value, struct node_mac_key);
} node_edge_addrs SEC(".maps");

/* A pod's reply too large for its MTU leaves the pod as IP fragments, and
 * only the first carries the ports its flow is found by. Egress remembers,
 * per datagram, the VIP that first fragment left from, so the later ones
 * (same pod, client, IP ID and protocol) leave from it too: rewritten
 * alone, they kept the pod's address and the client could never reassemble
 * the datagram. Entries live for one datagram (NODE_FRAG_NS at most). */
struct node_frag_key {
	__be32 pod_ip;
	__be32 client_ip;
	__be16 id;
	__u8 proto;
	__u8 pad;
};

struct node_frag_value {
	__be32 vip;
	__u32 pad;
	__u64 seen_ns;
};

#define NODE_FRAGS 16384

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NODE_FRAGS);
	__type(key, struct node_frag_key);
	__type(value, struct node_frag_value);
} node_frags SEC(".maps");

/* ---------------------------------------------------------------- IPv6
 *
 * The same maps for IPv6 flows, with 16-byte addresses (struct pkt_addr6:
 * four network-order words), the same bounds and the same meaning. */

struct node_flow6_key {
	struct pkt_addr6 pod_ip;
	struct pkt_addr6 client_ip;
	__be16 pod_port;
	__be16 client_port;
	__u8 proto;
	__u8 pad[3];
};

/* The flow's state is a struct node_flow_value, so node_flow.h's helpers
 * serve both families: its 4-byte vip is 0 here, the VIP is vip6. */
struct node_flow6_value {
	struct node_flow_value st;
	struct pkt_addr6 vip6;
};

struct node_fwd6_key {
	struct pkt_addr6 client_ip;
	struct pkt_addr6 vip;
	__be16 client_port;
	__be16 vip_port;
	__u8 proto;
	__u8 pad[3];
};

struct node_fwd6_value {
	struct pkt_addr6 pod_ip;
	__be16 pod_port;
	__u16 pad;
	__u32 pad2;
	__u64 last_seen_ns;
};

struct node_svc6_key {
	struct pkt_addr6 vip;
	__be16 port;
	__u8 proto;
	__u8 pad;
};

struct node_backend6 {
	struct pkt_addr6 ip;
	__be16 port;
	__u16 pad;
};

/* As node_svc_value: be[0..count) may be named by an option, new IP6IP6
 * flows pick among the first `pick` (0 = all count). */
struct node_svc6_value {
	__u32 count; /* 0..NODE_MAX_LOCAL_BACKENDS; 0 = drop (no local pod) */
	__u32 pick;  /* 0..count */
	struct node_backend6 be[NODE_MAX_LOCAL_BACKENDS];
};

struct node_src6_key {
	__u32 prefixlen;
	struct pkt_addr6 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct node_flow6_key);
	__type(value, struct node_flow6_value);
} node_flows6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 131072);
	__type(key, struct node_fwd6_key);
	__type(value, struct node_fwd6_value);
} node_fwd6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct node_svc6_key);
	__type(value, struct node_svc6_value);
} node_services6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NODE_EDGE_SOURCES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct node_src6_key);
	__type(value, __u8);
} node_edge_src6 SEC(".maps");

/* node_frags for IPv6 fragments (the Fragment header's 32-bit ID). */
struct node_frag6_key {
	struct pkt_addr6 pod_ip;
	struct pkt_addr6 client_ip;
	__be32 id;
	__u8 proto;
	__u8 pad[3];
};

struct node_frag6_value {
	struct pkt_addr6 vip;
	__u64 seen_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NODE_FRAGS);
	__type(key, struct node_frag6_key);
	__type(value, struct node_frag6_value);
} node_frags6 SEC(".maps");

/* IPv6 settings. A map of their own: node_config is pinned, and a pinned
 * map is reused only with the layout it was created with, so a node_config
 * grown by 16 bytes would fail to load over an earlier agent's maps. */
#define NODE_CFG6_CHECK_OUTER_DST 0x1 /* IP6IP6: outer dst must equal node_ip6 */

struct node_config6 {
	struct pkt_addr6 node_ip6; /* this node's IPv6 address (--node-ip) */
	__u32 flags;               /* NODE_CFG6_* */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct node_config6);
} node_config6 SEC(".maps");

#endif
