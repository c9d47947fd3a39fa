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
 *   node_counters.h per-CPU counters, one per action and drop reason
 *   node_maps.h     map layouts shared with src/datapath/node-maps.ts
 *
 * Both programs parse once, then hand an IPv4 packet to its path; an IPv6
 * path would sit beside node_*_v4 with the same verdicts.
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

SEC("tc")
int node_ingress(struct __sk_buff *skb)
{
	struct pkt p;
	int rc = parse_skb(skb, &p);

	if (rc == PARSE_NOT_IP)
		return node_tc(node_ingress_other(skb, &p));
	if (rc != PARSE_OK)
		return node_tc(node_pass(NC_IN_PASS));
	return node_tc(node_ingress_v4(skb, &p));
}

SEC("tc")
int node_egress(struct __sk_buff *skb)
{
	struct pkt p;

	if (parse_skb(skb, &p) != PARSE_OK)
		return node_tc(node_pass(NC_EG_PASS));
	return node_tc(node_egress_v4(skb, &p));
}

char _license[] SEC("license") = "GPL";
