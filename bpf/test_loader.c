/* Fixture for test/datapath/loader.test.ts: exercises hash and per-CPU maps,
 * a packet rewrite visible in BPF_PROG_TEST_RUN's output, and a tc program.
 *
 * tl_xdp_swap: swaps the Ethernet source and destination MACs, counts the
 * packet in tl_pcpu[0], and returns tl_verdict[1] when that key is set
 * (XDP_TX otherwise). Frames shorter than an Ethernet header are aborted.
 * tl_tc_count: counts in tl_pcpu[1] and lets the packet through. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} tl_verdict SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} tl_pcpu SEC(".maps");

/* Nothing in the programs uses it; tests size it with maxEntries. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u32);
} tl_lru SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&tl_pcpu, &slot);

	if (c)
		*c += 1;
}

SEC("xdp")
int tl_xdp_swap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	unsigned char tmp[ETH_ALEN];
	__u32 key = 1;
	__u64 *verdict;

	if ((void *)(eth + 1) > end)
		return XDP_ABORTED;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	count(0);
	verdict = bpf_map_lookup_elem(&tl_verdict, &key);
	if (verdict)
		return (int)*verdict;
	return XDP_TX;
}

SEC("tc")
int tl_tc_count(struct __sk_buff *skb)
{
	count(1);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
