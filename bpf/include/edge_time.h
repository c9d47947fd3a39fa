/* Edge program: the coarse clock. Every reader of time in the edge (FIB
 * cache expiry, the insert limiter's window, connection-end marks, SNAT
 * and affinity ages) needs tick resolution at best, which is what
 * bpf_ktime_get_coarse_ns gives — through a helper call per packet.
 * bpf_jiffies64 is the same tick counter and the verifier inlines it (one
 * load), so with the kernel's CONFIG_HZ known at load time (libbpf's
 * .kconfig) the clock costs no call: jiffies since boot × ns per jiffy,
 * the same origin and resolution as the coarse clock within a tick (so
 * values in pinned maps stay comparable with a build that used it).
 * Without CONFIG_HZ (no kernel config to read, or an unusual HZ) the
 * program falls back to the helper. */
#ifndef EDGELB_EDGE_TIME_H
#define EDGELB_EDGE_TIME_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>

extern unsigned int CONFIG_HZ __kconfig __weak;

/* INITIAL_JIFFIES: jiffies start 300 s before wrapping 32 bits. */
static __always_inline __u64 edge_jiffies_since_boot(__u32 hz)
{
	return bpf_jiffies64() - (__u64)(__u32)(-300 * (int)hz);
}

static __always_inline __u64 edge_coarse_ns(void)
{
	switch (CONFIG_HZ) {
	case 1000:
		return edge_jiffies_since_boot(1000) * 1000000ull;
	case 250:
		return edge_jiffies_since_boot(250) * 4000000ull;
	case 100:
		return edge_jiffies_since_boot(100) * 10000000ull;
	default:
		return bpf_ktime_get_coarse_ns();
	}
}

#endif
