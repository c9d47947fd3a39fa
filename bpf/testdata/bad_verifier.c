/* Deliberately rejected by the verifier (reads packet data without a
 * bounds check) so tests can see the error path and the verifier log.
 * Lives outside bpf/*.c so the main build never compiles it. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int bad_unchecked_read(struct xdp_md *ctx)
{
	unsigned char *data = (unsigned char *)(long)ctx->data;

	return data[12] == 0x08 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
