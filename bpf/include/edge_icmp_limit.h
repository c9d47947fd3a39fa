/* Edge program: the rate limit on the ICMP errors the edge builds itself —
 * time-exceeded (TTL / hop limit ran out here), fragmentation-needed and
 * Packet Too Big (too big for the option or the tunnel). Each answers one
 * packet from anyone, to the packet's source address: unlimited, a sender
 * forging a victim's address makes the edge reflect errors at it one for
 * one, with the edge's address on them (and more bytes than it cost for a
 * small probe: a 40-byte IPv4 packet brings back 56, a 60-byte IPv6 one
 * 108). Linux limits its own errors the
 * same way (net.ipv4.icmp_msgs_per_sec, icmp_msgs_burst: a token bucket).
 *
 * A token bucket per CPU (one-entry BPF_MAP_TYPE_PERCPU_ARRAY: no lock, no
 * atomic; a CPU only ever touches its own). The machine-wide limit is the
 * CPU count times the rate — a flood spread over every receive queue gets
 * at most that many answers a second, a flood from one tuple (one queue)
 * one CPU's worth.
 *
 * Two buckets, one per kind, each shared by both families: time-exceeded,
 * and fragmentation-needed / Packet Too Big. Linux shares its limit between
 * ICMP and ICMPv6 (what the limit protects — the victims, the edge's uplink
 * — does not care about the family), but exempts too-big errors outright so
 * as not to break path MTU discovery. The edge builds those from any
 * spoofed packet just as cheaply, so they are limited too — in a bucket of
 * their own: a flood of TTL-1 probes (traceroute-like, the cheapest
 * reflection) then never starves a real client's path MTU discovery, and a
 * flood of too-big packets never silences traceroute. A sender mixing both
 * gets at most twice one bucket's rate. While a too-big flood keeps its
 * bucket empty, a real client's too-big packet is dropped unanswered and
 * its path MTU discovery waits for a retransmission that finds a token.
 *
 * When the bucket is empty the packet that would have been answered is
 * dropped (DROP_ICMP_RATE): it could not be forwarded anyway (TTL out, or
 * too big with DF). The clock is read only here, on the error path
 * (edge_now_ns: the test clock when set). */
#ifndef EDGELB_EDGE_ICMP_LIMIT_H
#define EDGELB_EDGE_ICMP_LIMIT_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include "edge_maps.h"
#include "edge_conn.h"

/* Linux's defaults (icmp_msgs_per_sec = 1000, icmp_msgs_burst = 50), which
 * hosts live with: traceroute sends 3 probes per hop, path MTU discovery
 * one error per flow and route, far below; per CPU here, not per host. */
#define EDGE_ICMP_RATE 1000 /* errors per second, per CPU */
#define EDGE_ICMP_BURST 50  /* errors at once after a quiet spell, per CPU */
#define EDGE_ICMP_TOKEN_NS (1000000000ULL / EDGE_ICMP_RATE)

struct edge_icmp_bucket {
	__u64 stamp_ns; /* tokens are credited up to this time */
	__u32 tokens;
	__u32 primed;   /* 0: this CPU never answered yet (the bucket is full) */
};

/* edge_icmp_allow's kind: the index of the kind's bucket. */
enum edge_icmp_kind {
	EDGE_ICMP_TIME_EXCEEDED = 0, /* TTL / hop limit ran out here */
	EDGE_ICMP_TOO_BIG = 1,       /* fragmentation-needed, Packet Too Big */
	EDGE_ICMP_KINDS,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, EDGE_ICMP_KINDS);
	__type(key, __u32);
	__type(value, struct edge_icmp_bucket);
} edge_icmp_bucket SEC(".maps");

/* May this CPU send one more ICMP error of `kind` now? Takes a token if so. Tokens are
 * credited in whole ones, and the stamp moves on by exactly what was
 * credited, so the remainder of a token's time is not lost between two
 * errors (the kernel's coarse clock moves in jiffies). */
static __always_inline int edge_icmp_allow(const struct edge_config *cfg, enum edge_icmp_kind kind)
{
	struct edge_icmp_bucket *b;
	__u32 idx = kind;
	__u64 now, n;

	b = bpf_map_lookup_elem(&edge_icmp_bucket, &idx);
	if (!b)
		return 0; /* cannot happen (a constant index); not answering is the safe side */
	now = edge_now_ns(cfg);
	if (!b->primed) {
		b->primed = 1;
		b->tokens = EDGE_ICMP_BURST;
		b->stamp_ns = now;
	} else if (now < b->stamp_ns) {
		/* The clock went back (only the test clock can): count from now. */
		b->stamp_ns = now;
	} else {
		n = (now - b->stamp_ns) / EDGE_ICMP_TOKEN_NS;
		if (n >= EDGE_ICMP_BURST - b->tokens) {
			b->tokens = EDGE_ICMP_BURST;
			b->stamp_ns = now; /* full: time beyond the burst is not saved up */
		} else if (n) {
			b->tokens += n;
			b->stamp_ns += n * EDGE_ICMP_TOKEN_NS;
		}
	}
	if (!b->tokens)
		return 0;
	b->tokens--;
	return 1;
}

#endif
