/* Edge program: the coarse clock. Every reader of time in the edge (FIB
 * cache expiry, the insert limiter's window, connection-end marks, SNAT
 * and affinity ages) needs tick resolution at best, which is what
 * bpf_ktime_get_coarse_ns gives — through a helper call per packet.
 * bpf_jiffies64 is the same tick counter and the verifier inlines it (one
 * load), so with the kernel's HZ known the clock costs no call: jiffies
 * since boot × ns per jiffy, the coarse clock's origin and resolution
 * within a tick (values in pinned maps stay comparable with a build that
 * used the helper). HZ comes from user space (edge_config.hz, read from
 * the kernel's config by src/datapath/kernel-hz.ts), not from libbpf's
 * .kconfig: a missing kernel config must not keep the program from
 * loading. hz 0 (unknown, or an HZ not listed here) uses the helper. */
#ifndef EDGELB_EDGE_TIME_H
#define EDGELB_EDGE_TIME_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include "edge_maps.h"

/* Jiffies since boot: they start 300 s before wrapping 32 bits (INITIAL_JIFFIES). */
#define EDGE_JIFFIES_SINCE_BOOT(hz) (bpf_jiffies64() - (__u64)(__u32)(-300 * (hz)))

static __always_inline __u64 edge_coarse_ns(const struct edge_config *cfg)
{
	switch (cfg->hz) {
	case 1000:
		return EDGE_JIFFIES_SINCE_BOOT(1000) * 1000000ull;
	case 250:
		return EDGE_JIFFIES_SINCE_BOOT(250) * 4000000ull;
	case 100:
		return EDGE_JIFFIES_SINCE_BOOT(100) * 10000000ull;
	default:
		return bpf_ktime_get_coarse_ns();
	}
}

#endif
