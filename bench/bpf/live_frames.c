/* Live-traffic harness for BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES
 * (bench:datapath's Mpps rows). Not shipped.
 *
 * In live-frame mode the kernel runs an XDP program on frames from a page
 * pool and really transmits what it returns XDP_TX / XDP_REDIRECT for. The
 * pool recycles pages, and the kernel resets only the frame's pointers, not
 * its bytes (Documentation/bpf/bpf_prog_run.rst): a program that rewrites
 * the packet (DNAT, an inserted option, an IPIP header) would see its own
 * output again on a recycled page. So the measured program is entered
 * through live_restore, which first writes the pristine frame back from
 * live_template, optionally gives it a new source address and port (a SYN
 * flood of fresh tuples), and then tail-calls the program under test in
 * live_target. The same harness in front of live_tx (a bare XDP_TX) is the
 * floor of the live rows; in front of live_pass, it feeds the kernel's own
 * forwarding path (the IPVS / nftables alternatives).
 *
 * live_sink runs on the receiving veth: XDP frames sent into a veth only
 * arrive when its peer runs XDP (NAPI), and it counts what arrived, so the
 * benchmark can check that every generated frame was really transmitted.
 * It also serves the AF_PACKET method (bench/lib/afpacket.ts), where the
 * program under test is attached to the other veth of the pair.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "fresh_tuple.h"

#define LIVE_MAX_FRAME 256

struct live_frame {
	__u32 len;   /* bytes of data[] that make the frame */
	__u32 fresh; /* 1: a new source address and port for every frame */
	__u8 data[LIVE_MAX_FRAME];
};

enum live_counter {
	LIVE_RESTORED = 0, /* frames the harness prepared */
	LIVE_NO_TARGET,    /* tail call failed: nothing measured */
	LIVE_SUNK,         /* frames that arrived on the receiving veth */
	LIVE_IGNORED,      /* multicast frames that arrived there (not counted as sunk) */
	LIVE_COUNTERS,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct live_frame);
} live_template SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LIVE_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} live_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} live_target SEC(".maps");

static __always_inline __u64 bump(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&live_counters, &idx);

	if (!c)
		return 0;
	return (*c)++;
}

/* A new flow per frame: the low 16 bits of the source address and the
 * source port come from a per-CPU sequence and the CPU number (2^16
 * addresses × 2^10 ports per CPU before a tuple repeats, no two CPUs alike).
 * Both checksums are patched incrementally from the template's words, which
 * are in data[] already. */
static __always_inline void freshen(__u8 *d, void *end, __u64 seq, __u32 cpu)
{
	__u16 *ip_csum = (void *)(d + FRESH_OFF_IP_CSUM);
	__u16 *saddr_lo = (void *)(d + FRESH_OFF_SADDR_LO);
	__u16 *sport = (void *)(d + FRESH_OFF_SPORT);
	__u16 *tcp_csum = (void *)(d + FRESH_OFF_TCP_CSUM);
	__u16 new_lo, new_port, old_lo, old_port;

	if ((void *)(d + FRESH_MIN_LEN) > end)
		return;
	new_lo = __builtin_bswap16((__u16)seq);
	new_port = __builtin_bswap16((__u16)(1024 + (((seq >> 16) & 0x3ff) | ((cpu & 0x1f) << 10))));
	old_lo = *saddr_lo;
	old_port = *sport;
	*saddr_lo = new_lo;
	*sport = new_port;
	*ip_csum = fresh_csum_replace16(*ip_csum, old_lo, new_lo);
	*tcp_csum = fresh_csum_replace16(fresh_csum_replace16(*tcp_csum, old_lo, new_lo), old_port, new_port);
}

SEC("xdp")
int live_restore(struct xdp_md *ctx)
{
	__u32 zero = 0, len;
	struct live_frame *t = bpf_map_lookup_elem(&live_template, &zero);
	__u64 seq;

	if (!t)
		return XDP_ABORTED;
	len = t->len;
	if (len < 14 || len > LIVE_MAX_FRAME)
		return XDP_ABORTED;
	if (bpf_xdp_store_bytes(ctx, 0, t->data, len))
		return XDP_ABORTED;
	seq = bump(LIVE_RESTORED);
	if (t->fresh)
		freshen((void *)(long)ctx->data, (void *)(long)ctx->data_end, seq, bpf_get_smp_processor_id());
	bpf_tail_call(ctx, &live_target, 0);
	bump(LIVE_NO_TARGET);
	return XDP_ABORTED;
}

SEC("xdp")
int live_tx(struct xdp_md *ctx)
{
	return XDP_TX;
}

/* The kernel's own path as the target: the frame goes up the stack of the
 * ingress device (live mode builds an skb and calls netif_receive_skb), where
 * nftables / IPVS / routing forward it like any received packet. */
SEC("xdp")
int live_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* Counts unicast frames only: what the measured programs send is always
 * unicast (to a node's or a neighbour's MAC), while the rig's own stack
 * sends multicast now and then — up0's IPv6 MLD reports, which each XDP
 * attach on a veth set off again, counted as ~1 extra frame per AF_PACKET
 * run before this. */
SEC("xdp")
int live_sink(struct xdp_md *ctx)
{
	__u8 *d = (void *)(long)ctx->data;

	if ((void *)(d + 1) <= (void *)(long)ctx->data_end && (d[0] & 1))
		bump(LIVE_IGNORED);
	else
		bump(LIVE_SUNK);
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
