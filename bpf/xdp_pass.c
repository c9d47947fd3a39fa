/* The benchmark floor: the cheapest XDP program there is. Benchmarks run it
 * in the same way and the same run as a real datapath program and subtract
 * its cost, leaving what the datapath logic itself costs per packet. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
