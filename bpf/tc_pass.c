/* The benchmark floor for tc programs: returns TC_ACT_OK and nothing else.
 * Benchmarks of the node's tc datapath subtract its cost the way xdp_pass
 * serves the XDP datapath. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int tc_pass(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
