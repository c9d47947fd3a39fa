/* edgelb node program: tc ingress + egress on a Kubernetes node's
 * fabric-facing interface (the one the edges reach the node through and the
 * one replies leave by). Run by `edgelb node run`.
 *
 * One header per concern:
 *   node_parse.h    reading an skb's headers (pulling what is outside the
 *                   linear head)
 *   node_flow.h     flow memory: what is remembered, refreshed, expired
 *   node_rewrite.h  address/port rewrites, option removal, ICMP errors
 *   node_trust.h    the trust boundary: options and IPIP only from edges
 *   node_ingress.h  ip-option and ipip traffic from the edges (section "tc",
 *                   program node_ingress)
 *   node_egress.h   pods' replies sent as the VIP's (program node_egress)
 *   node_verdict.h  the verdicts a stage returns, mapped to tc actions here
 *   node_second_chance.h  packets an edge sent with a secondary backend
 *                   after a backend change: deliver or hand over
 *   node_counters.h per-CPU counters, one per action and drop reason
 *   node_maps.h     map layouts shared with src/datapath/node-maps.ts
 *
 *   node_ingress6.h / node_egress6.h  the same paths for IPv6 (Destination
 *                   Options DSR header, IP6IP6)
 *   node_second_chance6.h  the second chance for IPv6 (the 64-byte header)
 *
 * Both programs parse Ethernet once, then hand an IPv4 or IPv6 packet to
 * its family's path; both paths answer with the same verdicts.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "parse.h"
#include "node_verdict.h"
#include "node_counters.h"
#include "node_parse.h"
#include "node_ingress.h"
#include "node_egress.h"
#include "node_second_chance.h"
#include "node_ingress6.h"
#include "node_egress6.h"
#include "node_second_chance6.h"

/* Everything but IPv6 (the IPv4 path, second chance, ARP) in a frame of its
 * own. BPF's 512-byte stack limit holds for a whole call chain: inlined into
 * node_ingress, this path's frame (376 bytes) sat under every IPv6
 * subprogram's (node_ip6ip6: 224), 608 together, and node.o did not load.
 * It parses the packet itself, so its struct pkt, packet pointers and
 * offsets stay in this frame, with the bounds the verifier proved for them
 * (read back through a pointer from another frame, a u16 offset loses them). */
static __attribute__((noinline)) int node_ingress_ip4(struct __sk_buff *skb)
{
	struct pkt p;
	int rc;

	p.l3_proto = 0; /* parse_eth leaves it unset for a QinQ frame */
	rc = parse_skb(skb, &p);
	if (rc == PARSE_NOT_IP)
		return node_tc(node_ingress_other(skb, &p));
	if (rc != PARSE_OK)
		return node_tc(node_pass(NC_IN_PASS));
	if (node_sc_wants(skb, &p))
		return node_second_chance(skb, &p);
	return node_tc(node_ingress_v4(skb, &p));
}

/* IPv6 is told apart by its EtherType alone, before the IPv4 frame exists:
 * the IPv6 subprograms' frames then stack on this small one. */
SEC("tc")
int node_ingress(struct __sk_buff *skb)
{
	struct pkt l2;

	l2.l3_proto = 0; /* parse_eth leaves it unset for a QinQ frame */
	if (parse_eth(skb_data(skb), skb_data_end(skb), &l2) == PARSE_UNSUPPORTED &&
	    l2.l3_proto == bpf_htons(ETH_P_IPV6))
		return node_ingress_v6(skb, &l2);
	return node_ingress_ip4(skb);
}

SEC("tc")
int node_egress(struct __sk_buff *skb)
{
	struct pkt p;
	int rc;

	p.l3_proto = 0;
	rc = parse_skb(skb, &p);
	if (rc == PARSE_UNSUPPORTED && p.l3_proto == bpf_htons(ETH_P_IPV6))
		return node_tc(node_egress_v6(skb, &p));
	if (rc != PARSE_OK)
		return node_tc(node_pass(NC_EG_PASS));
	return node_tc(node_egress_v4(skb, &p));
}

char _license[] SEC("license") = "GPL";
