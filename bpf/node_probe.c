// SPDX-License-Identifier: GPL-2.0
/* Path probe responder helper, tc ingress on a Kubernetes node, attached in
 * front of the node program (lower priority number runs first).
 *
 * The edge's `dispatch: auto` asks "does the fabric carry our IPv4 option to
 * this node?" with a UDP datagram to NODE:probe_port whose header carries
 * the DSR option with VIP 0.0.0.0:0 (the probe marker) and whose payload is
 * "ELBPROBE" | nonce(8) | flag(1). When the option arrived intact this
 * program sets the flag to 1, turns the option into eight NOPs (so neither
 * the node program nor the stack treats it as a flow) and zeroes the UDP
 * checksum (allowed for IPv4; the payload changed). Userspace on the node
 * echoes the datagram back. Everything else continues to the next filter
 * untouched (TC_ACT_UNSPEC).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include "parse.h"
#include "csum.h"
#include "dsr_option.h"

#define PROBE_PAYLOAD_LEN 17

/* Set by the loader before load (.rodata). */
const volatile __u16 probe_port = 4790;

/* [0] probes marked, [1] probe-port datagrams without our option. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} node_probe_stats SEC(".maps");

static __always_inline void bump(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&node_probe_stats, &i);

	if (v)
		*v += 1;
}

SEC("tc")
int node_probe(struct __sk_buff *skb)
{
	/* Ethernet + IPv4 with our option + UDP + payload. */
	__u32 need = ETH_HLEN + 28 + sizeof(struct udphdr) + PROBE_PAYLOAD_LEN;

	if (skb->len < need)
		return TC_ACT_UNSPEC;
	if (bpf_skb_pull_data(skb, need))
		return TC_ACT_UNSPEC;

	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct pkt p;

	if (parse_packet(data, data_end, &p) != PARSE_OK || p.l4_proto != IPPROTO_UDP ||
	    p.dport != bpf_htons(probe_port) || (p.frag & (PKT_FRAG_LATER | PKT_FRAG_MORE)))
		return TC_ACT_UNSPEC;

	struct udphdr *uh = p.l4;
	__u8 *payload = (void *)(uh + 1);

	if ((void *)(payload + PROBE_PAYLOAD_LEN) > data_end)
		return TC_ACT_UNSPEC;
	/* "ELBPROBE" as a little-endian u64 (clang does not inline memcmp
	 * for BPF). */
	__u64 magic;

	__builtin_memcpy(&magic, payload, sizeof(magic));
	if (magic != 0x45424f5250424c45ULL)
		return TC_ACT_UNSPEC;

	struct dsr_opt *opt = (void *)(p.ip + 1);

	if (p.ihl_bytes != 20 + DSR_OPT_LEN || (void *)(opt + 1) > data_end ||
	    opt->type != DSR_OPT_TYPE || opt->len != DSR_OPT_LEN || opt->addr != 0 || opt->port != 0) {
		bump(1);
		return TC_ACT_UNSPEC;
	}

	/* Option → NOPs, with the header checksum updated for both words. */
	__be32 *w = (__be32 *)opt;
	__be32 old0 = w[0], old1 = w[1];
	__be32 nop = bpf_htonl(0x01010101);

	w[0] = nop;
	w[1] = nop;
	csum_replace4(&p.ip->check, old0, nop);
	csum_replace4(&p.ip->check, old1, nop);

	payload[PROBE_PAYLOAD_LEN - 1] = 1;
	uh->check = 0;
	bump(0);
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "GPL";
