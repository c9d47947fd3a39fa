/* edgelb node program: tc ingress + egress on a Kubernetes node's
 * fabric-facing interface (the one the edges reach the node through and the
 * one replies leave by).
 *
 * INGRESS (section "tc", program node_ingress)
 *  - ip-option dispatch: the edge already rewrote the destination to the pod
 *    and put the VIP:port in an 8-byte option (bpf/include/dsr_option.h) on
 *    TCP SYNs and every UDP packet. We remember
 *      reply tuple (pod:pp → client:cp, proto) → VIP:vp
 *    in node_flows, then STRIP the option (IHL back, total length and header
 *    checksum fixed) so the pod's stack sees the original packet: no unknown
 *    option reaches netfilter, the pod's socket options or a non-Linux stack,
 *    and nothing about the pod's path MTU changes. The L4 checksum does not
 *    cover IP options, so it stays valid. If stripping is impossible (a VLAN
 *    tag in the packet data, or turned off in node_config) the packet goes
 *    on with the option, which Linux ignores on receive.
 *  - ipip dispatch: the edge sent the untouched client → VIP:vp packet inside
 *    IPv4-in-IPv4 to this node. The edge's Maglev chose the NODE; this node
 *    chooses the pod among its own backends for VIP:vp (node_services, a
 *    deterministic hash of the 5-tuple), pins the choice in node_fwd so the
 *    flow stays on its pod when the local set changes, records the reply
 *    tuple in node_flows, decapsulates and DNATs VIP:vp → pod:pp.
 *    IPIP whose inner destination is no local service is left untouched
 *    (it may belong to the CNI, e.g. Calico's IPIP mode). An ICMP
 *    destination-unreachable about one of our flows (path MTU) is
 *    decapsulated and re-addressed to the flow's pod.
 *  - A client FIN/RST on a known flow marks / deletes it.
 *  Everything else: one parse and TC_ACT_UNSPEC (see NODE_PASS).
 *
 * EGRESS (program node_egress): a pod's reply matching node_flows leaves
 * with source VIP:vp, IP and L4 checksums fixed, and is routed by the node
 * straight to the client. A pod's ICMP destination-unreachable about such a
 * flow is sent as the VIP's (source and quote rewritten). L4 checksums are updated through
 * bpf_l4_csum_replace so that CHECKSUM_PARTIAL (offloaded) and
 * CHECKSUM_COMPLETE skbs stay right.
 *
 * Expiry: TCP RST from either side deletes the flow (the RST itself is still
 * rewritten/forwarded); FIN from both sides marks it CLOSING, after which it
 * lives close_ns past its last packet (so the final ACK and retransmissions
 * are still rewritten). Idle flows (tcp_idle_ns / udp_idle_ns since the last
 * packet) are ignored and deleted when next looked up; the LRU maps bound
 * memory for the ones never seen again.
 */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "parse.h"
#include "csum.h"
#include "dsr_option.h"
#include "murmur3.h"
#include "node_maps.h"

#define NSEC 1000000000ULL
#define DEFAULT_TCP_IDLE_NS (3600ULL * NSEC)
#define DEFAULT_UDP_IDLE_NS (60ULL * NSEC)
#define DEFAULT_CLOSE_NS (10ULL * NSEC)
/* last_seen is rewritten at most this often per flow: a store per packet
 * would bounce the value's cache line between CPUs. */
#define REFRESH_NS (1ULL * NSEC)

/* Every verdict except a drop is TC_ACT_UNSPEC ("no opinion"), so filters
 * after ours on the same hook (a CNI's, say) still see the packet, rewritten
 * or not, and the default action passes it on. */
#define NODE_PASS TC_ACT_UNSPEC

#define TCP_CSUM_OFF 16
#define UDP_CSUM_OFF 6

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&node_counters, &idx);

	if (c)
		*c += 1;
}

static __always_inline struct node_config *get_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&node_config, &zero);
}

static __always_inline __u64 now_ns(const struct node_config *cfg)
{
	if (cfg && cfg->now_ns)
		return cfg->now_ns;
	return bpf_ktime_get_coarse_ns();
}

static __always_inline __u64 flow_timeout(const struct node_config *cfg, __u8 proto, __u8 flags)
{
	__u64 t;

	if (flags & NODE_FLOW_CLOSING) {
		t = cfg ? cfg->close_ns : 0;
		return t ? t : DEFAULT_CLOSE_NS;
	}
	if (proto == IPPROTO_TCP) {
		t = cfg ? cfg->tcp_idle_ns : 0;
		return t ? t : DEFAULT_TCP_IDLE_NS;
	}
	t = cfg ? cfg->udp_idle_ns : 0;
	return t ? t : DEFAULT_UDP_IDLE_NS;
}

static __always_inline int is_expired(__u64 now, __u64 last, __u64 timeout)
{
	return now > last && now - last > timeout;
}

/* skb->data / skb->data_end as packet pointers, loaded fresh each time with
 * an opaque asm load: with 32-bit subregisters (-mcpu=v3) clang otherwise
 * keeps a zero-extended u32 copy of the field around and uses it as the
 * pointer, which the verifier only knows as a scalar. */
static __always_inline void *skb_data(struct __sk_buff *skb)
{
	void *p;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(p) : "r"(skb), "i"(offsetof(struct __sk_buff, data)));
	return p;
}

static __always_inline void *skb_data_end(struct __sk_buff *skb)
{
	void *p;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(p) : "r"(skb), "i"(offsetof(struct __sk_buff, data_end)));
	return p;
}

/* Bytes of L4 header the program may read after the IP header. */
static __always_inline __u32 l4_need(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return 20;
	case IPPROTO_UDP:
	case IPPROTO_ICMP:
		return 8;
	case IPPROTO_IPIP:
		return 60 + 20; /* inner IPv4 header with options + TCP */
	default:
		return 0;
	}
}

/* Pull `need` bytes (or the whole packet, if shorter) into the linear head
 * when they are not there yet. Returns 1 when it tried: packet pointers are
 * then invalid. Lazy on purpose: most skbs already carry their headers in
 * the head, and a pull copies payload (and may reallocate) for nothing. */
static __always_inline int pull_headers(struct __sk_buff *skb, __u32 need)
{
	void *data, *data_end;

	if (need > skb->len)
		need = skb->len;
	/* Bounded for the verifier; our headers never need more. */
	if (need > 14 + 4 + 60 + 60 + 20)
		need = 14 + 4 + 60 + 60 + 20;
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	if (data + need <= data_end)
		return 0;
	/* Even a failed pull invalidates packet pointers: the caller re-parses
	 * either way, and finds out then whether the headers are there. */
	bpf_skb_pull_data(skb, need);
	return 1;
}

/* Ethernet + IPv4 of an skb whose payload may lie outside the linear head
 * (GRO, header split, TSO from a local socket), making sure the IP header
 * and the L4 header that follows are readable. The caller reloads
 * data/data_end afterwards. */
static __always_inline int parse_skb(struct __sk_buff *skb, struct pkt *p)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	int rc;

	rc = parse_eth(data, data_end, p);
	if (rc != PARSE_OK)
		return rc;
	rc = parse_ipv4_len(data, data_end, p, skb->len);
	if (rc == PARSE_TRUNC) {
		if (!pull_headers(skb, p->l3_off + 60))
			return rc;
		data = skb_data(skb);
		data_end = skb_data_end(skb);
		rc = parse_eth(data, data_end, p);
		if (rc != PARSE_OK)
			return rc;
		rc = parse_ipv4_len(data, data_end, p, skb->len);
	}
	if (rc != PARSE_OK)
		return rc;
	if (!(p->frag & PKT_FRAG_LATER) && pull_headers(skb, p->l4_off + l4_need(p->l4_proto))) {
		data = skb_data(skb);
		data_end = skb_data_end(skb);
		rc = parse_eth(data, data_end, p);
		if (rc != PARSE_OK)
			return rc;
		rc = parse_ipv4_len(data, data_end, p, skb->len);
	}
	return rc;
}

/* The local backend for a new ipip flow: murmur3-style mix of the 5-tuple.
 * Words are the packet bytes loaded little-endian; src/datapath/node-maps.ts
 * has the same function (nodeTupleHash) so tests and tools can predict it. */
static __always_inline __u32 node_tuple_hash(__be32 saddr, __be32 daddr, __be16 sport,
					     __be16 dport, __u8 proto)
{
	__u32 h = 0x2c9277b5u ^ proto;

	h = mm3_mix(h, saddr);
	h = mm3_mix(h, daddr);
	h = mm3_mix(h, (__u32)sport | ((__u32)dport << 16));
	return mm3_fmix(h ^ 13); /* 13 = bytes hashed, as murmur3 folds in the length */
}

/* Record (or refresh) the reply tuple of a flow. */
static __always_inline void remember_flow(const struct node_flow_key *k, __be32 vip,
					  __be16 vport, __u8 origin, __u8 syn, __u64 now)
{
	struct node_flow_value *v = bpf_map_lookup_elem(&node_flows, k);

	if (v && v->vip == vip && v->vip_port == vport && !(syn && v->flags)) {
		if (now > v->last_seen_ns && now - v->last_seen_ns > REFRESH_NS)
			v->last_seen_ns = now;
		return;
	}
	/* New flow, a changed mapping, or a SYN reusing a closing tuple. */
	struct node_flow_value nv = {
		.vip = vip,
		.vip_port = vport,
		.flags = 0,
		.origin = origin,
		.last_seen_ns = now,
		.created_ns = now,
	};
	bpf_map_update_elem(&node_flows, k, &nv, BPF_ANY);
}

/* Client FIN/RST on a known flow (seen on ingress after any DNAT, so the
 * packet is client → pod). */
static __always_inline void client_close(const struct node_flow_key *k, __u8 tcp_flags,
					 __u64 now)
{
	struct node_flow_value *v;

	if (!(tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST)))
		return;
	v = bpf_map_lookup_elem(&node_flows, k);
	if (!v)
		return;
	if (tcp_flags & PKT_TCP_RST) {
		bpf_map_delete_elem(&node_flows, k);
		count(NC_IN_RST);
		return;
	}
	count(NC_IN_FIN);
	if (!(v->flags & NODE_FLOW_FIN_CLIENT)) {
		v->flags |= NODE_FLOW_FIN_CLIENT;
		if (v->flags & NODE_FLOW_FIN_POD) {
			v->flags |= NODE_FLOW_CLOSING;
			count(NC_FLOW_CLOSING);
		}
	}
	v->last_seen_ns = now;
}

/* Rewrite one address (+ port) of the IPv4/L4 headers at l3_off/l4_off:
 * which = 0 → source, 1 → destination. Stores through packet pointers first
 * (IP checksum by hand: it is never offloaded), then fixes the L4 checksum
 * with the skb helper, which knows about CHECKSUM_PARTIAL/COMPLETE. Returns 0
 * or a negative error; packet pointers are invalid afterwards. */
static __always_inline int rewrite_l3l4(struct __sk_buff *skb, __u32 l3_off, __u32 l4_off,
					__u8 proto, int which, __be32 new_ip, __be16 new_port)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct iphdr *ip = data + l3_off;
	__be32 old_ip;
	__be16 old_port, *portp;
	__u32 csum_off;
	__u64 mangled = 0;

	if (l3_off > 64 || l4_off > 128)
		return -1;
	if ((void *)(ip + 1) > data_end)
		return -1;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = data + l4_off;

		if ((void *)(th + 1) > data_end)
			return -1;
		portp = which ? &th->dest : &th->source;
		csum_off = l4_off + TCP_CSUM_OFF;
	} else {
		struct udphdr *uh = data + l4_off;

		if ((void *)(uh + 1) > data_end)
			return -1;
		portp = which ? &uh->dest : &uh->source;
		csum_off = l4_off + UDP_CSUM_OFF;
		mangled = BPF_F_MARK_MANGLED_0;
	}
	old_ip = which ? ip->daddr : ip->saddr;
	old_port = *portp;
	if (which)
		ip->daddr = new_ip;
	else
		ip->saddr = new_ip;
	csum_replace4(&ip->check, old_ip, new_ip);
	*portp = new_port;

	if (old_ip != new_ip &&
	    bpf_l4_csum_replace(skb, csum_off, old_ip, new_ip,
				BPF_F_PSEUDO_HDR | mangled | sizeof(new_ip)))
		return -1;
	if (old_port != new_port &&
	    bpf_l4_csum_replace(skb, csum_off, old_port, new_port, mangled | sizeof(new_port)))
		return -1;
	return 0;
}

/* ---------------------------------------------------------------- ingress */

/* Remove our option (8 bytes right after the 20-byte base header). */
static __always_inline int strip_option(struct __sk_buff *skb, __u32 l3_off, __u32 ihl_words,
					__u32 tot_len, __u32 opt_sum)
{
	void *data, *data_end;
	struct iphdr *ip;
	__be16 old_w0, new_w0, old_len, new_len;

	/* ADJ_ROOM_NET removes the bytes after the kernel's 20-byte IPv4 base
	 * header: exactly our option. The L4 checksum does not cover it, so
	 * CHECKSUM_UNNECESSARY stays true (NO_CSUM_RESET). */
	if (bpf_skb_adjust_room(skb, -(__s32)DSR_OPT_LEN, BPF_ADJ_ROOM_NET,
				BPF_F_ADJ_ROOM_NO_CSUM_RESET))
		return -1;
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	if (l3_off > 64)
		return -2;
	ip = data + l3_off;
	if ((void *)(ip + 1) > data_end)
		return -2;
	old_w0 = *(__be16 *)ip; /* version, IHL, TOS */
	ip->ihl = ihl_words - DSR_OPT_LEN / 4;
	new_w0 = *(__be16 *)ip;
	old_len = bpf_htons(tot_len);
	new_len = bpf_htons(tot_len - DSR_OPT_LEN);
	ip->tot_len = new_len;
	/* Incremental (RFC 1624): take the option's words out of the sum and
	 * account for IHL and total length. A header whose checksum was wrong
	 * stays wrong, so the pod's stack still drops a corrupted packet. */
	csum_apply_diff(&ip->check, csum_diff_2(old_w0, new_w0) + csum_diff_2(old_len, new_len) +
					    (__u16)~(__u16)opt_sum);
	/* The header's sum is unchanged by an incremental update, so for a
	 * CHECKSUM_COMPLETE skb only the removed bytes, which the kernel
	 * subtracted, must be added back. A no-op error for other skbs. */
	bpf_csum_update(skb, opt_sum);
	return 0;
}

static __always_inline int ingress_option(struct __sk_buff *skb, struct pkt *p,
					  struct node_config *cfg)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct dsr_opt *opt = (void *)(p->ip + 1);
	__u32 opt_sum;
	__be32 vip;
	__be16 vport;
	int rc;

	if ((void *)(opt + 1) > data_end || p->ihl_bytes < 20 + DSR_OPT_LEN ||
	    opt->len != DSR_OPT_LEN) {
		count(NC_DROP_BAD_OPTION);
		return TC_ACT_SHOT;
	}
	vip = opt->addr;
	vport = opt->port;
	/* One's-complement sum of the option's four 16-bit words. */
	opt_sum = csum_fold_nocpl(csum_word32(((__u32 *)opt)[0]) + csum_word32(((__u32 *)opt)[1]));

	if (parse_l4(data, data_end, p) != PARSE_OK) {
		count(NC_DROP_MALFORMED);
		return TC_ACT_SHOT;
	}
	if (p->frag & PKT_FRAG_LATER) {
		count(NC_IN_OPT_FRAGMENT);
	} else if (p->l4_proto == IPPROTO_TCP || p->l4_proto == IPPROTO_UDP) {
		/* Only a configured frontend may become a reply source: an
		 * option naming anything else (stale, or forged by someone on
		 * the fabric) would make the pod answer from an arbitrary
		 * address. */
		if (cfg && (cfg->flags & NODE_CFG_VERIFY_VIP)) {
			struct node_svc_key sk = {
				.vip = vip,
				.port = vport,
				.proto = p->l4_proto,
			};

			if (!bpf_map_lookup_elem(&node_services, &sk)) {
				count(NC_DROP_UNKNOWN_VIP);
				return TC_ACT_SHOT;
			}
		}
		struct node_flow_key k = {
			.pod_ip = p->daddr,
			.client_ip = p->saddr,
			.pod_port = p->dport,
			.client_port = p->sport,
			.proto = p->l4_proto,
		};
		__u64 now = now_ns(cfg);
		__u8 syn = p->l4_proto == IPPROTO_TCP && (p->tcp_flags & PKT_TCP_SYN);

		remember_flow(&k, vip, vport, NODE_ORIGIN_OPTION, syn, now);
		if (p->l4_proto == IPPROTO_TCP)
			client_close(&k, p->tcp_flags, now);
		count(NC_IN_OPT_FLOW);
	}

	if (!cfg || !(cfg->flags & NODE_CFG_STRIP_OPTION)) {
		count(NC_IN_OPT_KEPT);
		return NODE_PASS;
	}
	rc = strip_option(skb, p->l3_off, p->ihl_bytes / 4, p->ip_len, opt_sum);
	if (rc == -1) {
		count(NC_IN_OPT_KEPT);
		return NODE_PASS;
	}
	if (rc) {
		count(NC_DROP_REWRITE);
		return TC_ACT_SHOT;
	}
	count(NC_IN_OPT_STRIPPED);
	return NODE_PASS;
}

/* An ICMP destination-unreachable inside ipip, about one of our flows (a
 * router on the client's path could not take a reply, whose source is the
 * VIP, so the error went to the VIP and the edge forwarded it here like the
 * flow's packets: inner packet untouched, quoting VIP:vp → client:cp).
 * Deliver it as the pod's stack expects — destination and quoted source
 * become pod:pp, with the inner IP, quoted IP and ICMP checksums updated —
 * so path-MTU discovery works through DSR. A quote that already names one
 * of our pods' flows is only decapsulated. The quoted L4 checksum is left
 * alone (receivers do not verify a quote's).
 * Returns 0 (delivered), -1 (not ours), -2 (decap failed), -3 (rewrite). */
static __always_inline int ingress_ipip_icmp(struct __sk_buff *skb, const struct pkt *outer,
					     struct pkt *in)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct node_fwd_value *fv;
	struct pkt_inner q;
	struct iphdr *ip, *qip;
	struct pkt_icmphdr *ih;
	__be16 *qports, old_qcheck, pod_port, vport;
	__be32 pod_ip, vip;
	__u32 l3_off = outer->l3_off;

	if (in->ihl_bytes != 20 || parse_l4(data, data_end, in) != PARSE_OK ||
	    in->icmp_type != ICMP_DEST_UNREACH)
		return -1;
	/* The quoted header and the 8 L4 bytes RFC 792 guarantees must lie
	 * within the inner packet (parse_icmp_inner only checks the window). */
	if (in->ip_len < 20 + sizeof(struct pkt_icmphdr) + 20 + 8)
		return -1;
	if (parse_icmp_inner(data, data_end, in, &q) != PARSE_OK)
		return -1;
	if (q.ihl_bytes != 20 || (q.l4_proto != IPPROTO_TCP && q.l4_proto != IPPROTO_UDP) ||
	    q.saddr != in->daddr || (q.sport == 0 && q.dport == 0))
		return -1;
	/* A quoted TCP/UDP packet shorter than its own headers was never sent. */
	if (bpf_ntohs(q.ip->tot_len) < 20 + 8)
		return -1;

	struct node_fwd_key fk = {
		.client_ip = q.daddr,
		.vip = q.saddr,
		.client_port = q.dport,
		.vip_port = q.sport,
		.proto = q.l4_proto,
	};
	vip = q.saddr;
	vport = q.sport;
	fv = bpf_map_lookup_elem(&node_fwd, &fk);
	if (fv) {
		pod_ip = fv->pod_ip;
		pod_port = fv->pod_port;
	} else {
		struct node_flow_key rk = {
			.pod_ip = q.saddr,
			.client_ip = q.daddr,
			.pod_port = q.sport,
			.client_port = q.dport,
			.proto = q.l4_proto,
		};

		if (!bpf_map_lookup_elem(&node_flows, &rk))
			return -1;
		pod_ip = vip;
		pod_port = vport;
	}

	if (bpf_skb_adjust_room(skb, -(__s32)outer->ihl_bytes, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_FIXED_GSO))
		return -2;
	if (pod_ip == vip && pod_port == vport)
		return 0;
	/* Every change below sits under a checksum that is updated with it,
	 * so a CHECKSUM_COMPLETE sum stays right without helpers. */
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	if (l3_off > 18)
		return -3;
	ip = data + l3_off;
	ih = (void *)(ip + 1);
	qip = (void *)(ih + 1);
	qports = (void *)(qip + 1);
	if ((void *)(qports + 2) > data_end)
		return -3;
	ip->daddr = pod_ip;
	csum_replace4(&ip->check, vip, pod_ip);
	old_qcheck = qip->check;
	qip->saddr = pod_ip;
	csum_replace4(&qip->check, vip, pod_ip);
	qports[0] = pod_port;
	csum_apply_diff(&ih->checksum, csum_diff_4(vip, pod_ip) + csum_diff_2(vport, pod_port) +
					       csum_diff_2(old_qcheck, qip->check));
	return 0;
}

static __always_inline int ingress_ipip(struct __sk_buff *skb, struct pkt *outer,
					struct node_config *cfg)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct node_fwd_value *fv;
	struct node_flow_key rk = {};
	struct pkt in;
	__be32 pod_ip;
	__be16 pod_port;
	__u64 now;
	int new_flow = 0;

	if (outer->frag) /* a fragmented tunnel packet: not ours to reassemble */
		goto not_ours;
	if (cfg && (cfg->flags & NODE_CFG_CHECK_OUTER_DST) && outer->daddr != cfg->node_ip)
		goto not_ours;

	in.l3_off = outer->l4_off;
	if (in.l3_off > 14 + 4 + 60)
		goto not_ours;
	if (parse_ipv4_len(data, data_end, &in, skb->len) != PARSE_OK)
		goto not_ours;
	/* The inner packet must lie within the outer one, not in the
	 * frame's trailing bytes. */
	if (in.ip_len > outer->ip_len - outer->ihl_bytes)
		goto not_ours;
	if (in.frag & PKT_FRAG_LATER)
		goto not_ours;
	if (in.l4_proto == IPPROTO_ICMP) {
		int rc = ingress_ipip_icmp(skb, outer, &in);

		if (rc == -1)
			goto not_ours;
		if (rc == -2) {
			count(NC_DROP_DECAP);
			return TC_ACT_SHOT;
		}
		if (rc) {
			count(NC_DROP_REWRITE);
			return TC_ACT_SHOT;
		}
		count(NC_IN_IPIP_ICMP);
		return NODE_PASS;
	}
	if (in.l4_proto != IPPROTO_TCP && in.l4_proto != IPPROTO_UDP)
		goto not_ours;

	struct node_svc_key sk = {
		.vip = in.daddr,
		.proto = in.l4_proto,
	};
	struct node_fwd_key fk = {
		.client_ip = in.saddr,
		.vip = in.daddr,
		.proto = in.l4_proto,
	};
	if (parse_l4(data, data_end, &in) != PARSE_OK) {
		/* Only ours if it is addressed to a local service; the port
		 * is unreadable, so ask about the VIP with any port: cheaper
		 * to just pass it untouched. */
		goto not_ours;
	}
	sk.port = in.dport;
	fk.client_port = in.sport;
	fk.vip_port = in.dport;

	now = now_ns(cfg);
	fv = bpf_map_lookup_elem(&node_fwd, &fk);
	if (fv && !is_expired(now, fv->last_seen_ns, flow_timeout(cfg, in.l4_proto, 0))) {
		pod_ip = fv->pod_ip;
		pod_port = fv->pod_port;
		if (now > fv->last_seen_ns && now - fv->last_seen_ns > REFRESH_NS)
			fv->last_seen_ns = now;
	} else {
		struct node_svc_value *sv = bpf_map_lookup_elem(&node_services, &sk);
		__u32 n, idx;

		if (!sv)
			goto not_ours;
		n = sv->count;
		if (n == 0 || n > NODE_MAX_LOCAL_BACKENDS) {
			count(NC_DROP_NO_BACKEND);
			return TC_ACT_SHOT;
		}
		idx = node_tuple_hash(in.saddr, in.daddr, in.sport, in.dport, in.l4_proto) % n;
		/* Keep clang from dropping the mask the verifier needs. */
		asm volatile("" : "+r"(idx));
		idx &= NODE_MAX_LOCAL_BACKENDS - 1;
		pod_ip = sv->be[idx].ip;
		pod_port = sv->be[idx].port;

		struct node_fwd_value nfv = {
			.pod_ip = pod_ip,
			.pod_port = pod_port,
			.last_seen_ns = now,
		};
		bpf_map_update_elem(&node_fwd, &fk, &nfv, BPF_ANY);
		new_flow = 1;
	}

	rk.pod_ip = pod_ip;
	rk.client_ip = in.saddr;
	rk.pod_port = pod_port;
	rk.client_port = in.sport;
	rk.proto = in.l4_proto;
	{
		__u8 syn = in.l4_proto == IPPROTO_TCP && (in.tcp_flags & PKT_TCP_SYN);

		remember_flow(&rk, in.daddr, in.dport, NODE_ORIGIN_IPIP, syn || new_flow, now);
	}
	if (in.l4_proto == IPPROTO_TCP && (in.tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST))) {
		client_close(&rk, in.tcp_flags, now);
		if (in.tcp_flags & PKT_TCP_RST)
			bpf_map_delete_elem(&node_fwd, &fk);
	}

	/* Decapsulate: remove the outer IPv4 header between L2 and the inner
	 * header. Inner and outer are both IPv4, so skb->protocol stands. */
	{
		__u32 l3_off = outer->l3_off;
		__u32 inner_ihl = in.ihl_bytes;
		__u8 proto = in.l4_proto;

		if (bpf_skb_adjust_room(skb, -(__s32)outer->ihl_bytes, BPF_ADJ_ROOM_MAC,
					BPF_F_ADJ_ROOM_FIXED_GSO)) {
			count(NC_DROP_DECAP);
			return TC_ACT_SHOT;
		}
		if (l3_off > 18 || inner_ihl > 60) {
			count(NC_DROP_DECAP);
			return TC_ACT_SHOT;
		}
		if (rewrite_l3l4(skb, l3_off, l3_off + inner_ihl, proto, 1, pod_ip, pod_port)) {
			count(NC_DROP_REWRITE);
			return TC_ACT_SHOT;
		}
	}
	count(NC_IN_IPIP_DNAT);
	if (new_flow)
		count(NC_IN_IPIP_NEW_FLOW);
	return NODE_PASS;

not_ours:
	count(NC_IN_IPIP_NOT_OURS);
	return NODE_PASS;
}

SEC("tc")
int node_ingress(struct __sk_buff *skb)
{
	void *data, *data_end;
	struct node_config *cfg;
	struct pkt p;

	if (parse_skb(skb, &p) != PARSE_OK)
		goto pass;
	data = skb_data(skb);
	data_end = skb_data_end(skb);

	if (p.ihl_bytes > 20) {
		__u8 *otype = (void *)(p.ip + 1);

		/* ihl_bytes > 20 and the header is within the window, so
		 * the first option byte is readable; checked for the verifier. */
		if ((void *)(otype + 1) <= data_end && *otype == DSR_OPT_TYPE) {
			cfg = get_config();
			return ingress_option(skb, &p, cfg);
		}
	}
	if (p.l4_proto == IPPROTO_IPIP) {
		cfg = get_config();
		return ingress_ipip(skb, &p, cfg);
	}
	if (p.l4_proto == IPPROTO_TCP && !(p.frag & PKT_FRAG_LATER)) {
		if (parse_l4(data, data_end, &p) == PARSE_OK &&
		    (p.tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST))) {
			struct node_flow_key k = {
				.pod_ip = p.daddr,
				.client_ip = p.saddr,
				.pod_port = p.dport,
				.client_port = p.sport,
				.proto = IPPROTO_TCP,
			};

			cfg = get_config();
			client_close(&k, p.tcp_flags, now_ns(cfg));
		}
	}
pass:
	count(NC_IN_PASS);
	return NODE_PASS;
}

/* ----------------------------------------------------------------- egress */

/* A pod's ICMP destination-unreachable about a client flow of ours (say,
 * UDP port unreachable): it quotes client:cp → pod:pp and comes from the
 * pod's address, which the client never talked to and the fabric may filter
 * as spoofed. Send it as the VIP's: outer source and quoted destination
 * become VIP:vp, with the IP, quoted IP and ICMP checksums updated (the
 * kernel computes ICMP checksums in software, so no offload state applies).
 * The quoted L4 checksum is left alone (receivers do not verify a quote's).
 * Returns 1 when rewritten, 0 when not ours. */
static __always_inline int egress_icmp(struct __sk_buff *skb, struct pkt *p, struct node_config *cfg)
{
	void *data = skb_data(skb);
	void *data_end = skb_data_end(skb);
	struct node_flow_value *v;
	struct pkt_inner q;
	struct iphdr *ip, *qip;
	struct pkt_icmphdr *ih;
	__be16 *qports, old_qcheck, pport, vport;
	__be32 pod, vip;

	if (p->ihl_bytes != 20 || parse_l4(data, data_end, p) != PARSE_OK ||
	    p->icmp_type != ICMP_DEST_UNREACH)
		return 0;
	if (p->ip_len < 20 + sizeof(struct pkt_icmphdr) + 20 + 8)
		return 0;
	if (parse_icmp_inner(data, data_end, p, &q) != PARSE_OK)
		return 0;
	if (q.ihl_bytes != 20 || (q.l4_proto != IPPROTO_TCP && q.l4_proto != IPPROTO_UDP) ||
	    q.daddr != p->saddr || q.saddr != p->daddr || bpf_ntohs(q.ip->tot_len) < 20 + 8)
		return 0;

	struct node_flow_key k = {
		.pod_ip = q.daddr,
		.client_ip = q.saddr,
		.pod_port = q.dport,
		.client_port = q.sport,
		.proto = q.l4_proto,
	};
	v = bpf_map_lookup_elem(&node_flows, &k);
	if (!v || is_expired(now_ns(cfg), v->last_seen_ns, flow_timeout(cfg, q.l4_proto, v->flags)))
		return 0;
	pod = q.daddr;
	pport = q.dport;
	vip = v->vip;
	vport = v->vip_port;

	if (p->l3_off > 18)
		return 0;
	ip = data + p->l3_off;
	ih = (void *)(ip + 1);
	qip = (void *)(ih + 1);
	qports = (void *)(qip + 1);
	if ((void *)(qports + 2) > data_end)
		return 0;
	ip->saddr = vip;
	csum_replace4(&ip->check, pod, vip);
	old_qcheck = qip->check;
	qip->daddr = vip;
	csum_replace4(&qip->check, pod, vip);
	qports[1] = vport;
	csum_apply_diff(&ih->checksum, csum_diff_4(pod, vip) + csum_diff_2(pport, vport) +
					       csum_diff_2(old_qcheck, qip->check));
	return 1;
}

SEC("tc")
int node_egress(struct __sk_buff *skb)
{
	void *data, *data_end;
	struct node_flow_value *v;
	struct node_config *cfg;
	struct pkt p;
	__be32 vip;
	__be16 vport;
	__u64 now;
	__u8 proto;

	if (parse_skb(skb, &p) != PARSE_OK)
		goto pass;
	if (p.frag & PKT_FRAG_LATER)
		goto pass;
	if (p.l4_proto == IPPROTO_ICMP) {
		if (egress_icmp(skb, &p, get_config())) {
			count(NC_EG_ICMP);
			return NODE_PASS;
		}
		goto pass;
	}
	if (p.l4_proto != IPPROTO_TCP && p.l4_proto != IPPROTO_UDP)
		goto pass;
	data = skb_data(skb);
	data_end = skb_data_end(skb);
	if (parse_l4(data, data_end, &p) != PARSE_OK)
		goto pass;

	struct node_flow_key k = {
		.pod_ip = p.saddr,
		.client_ip = p.daddr,
		.pod_port = p.sport,
		.client_port = p.dport,
		.proto = p.l4_proto,
	};
	v = bpf_map_lookup_elem(&node_flows, &k);
	if (!v)
		goto pass;

	proto = p.l4_proto;
	cfg = get_config();
	now = now_ns(cfg);
	if (is_expired(now, v->last_seen_ns, flow_timeout(cfg, proto, v->flags))) {
		bpf_map_delete_elem(&node_flows, &k);
		count(NC_FLOW_EXPIRED);
		goto pass;
	}
	vip = v->vip;
	vport = v->vip_port;

	if (proto == IPPROTO_TCP && (p.tcp_flags & (PKT_TCP_FIN | PKT_TCP_RST))) {
		if (p.tcp_flags & PKT_TCP_RST) {
			bpf_map_delete_elem(&node_flows, &k);
			count(NC_EG_RST);
		} else {
			count(NC_EG_FIN);
			if (!(v->flags & NODE_FLOW_FIN_POD)) {
				v->flags |= NODE_FLOW_FIN_POD;
				if (v->flags & NODE_FLOW_FIN_CLIENT) {
					v->flags |= NODE_FLOW_CLOSING;
					count(NC_FLOW_CLOSING);
				}
			}
			v->last_seen_ns = now;
		}
	} else if (now > v->last_seen_ns && now - v->last_seen_ns > REFRESH_NS) {
		v->last_seen_ns = now;
	}

	if (rewrite_l3l4(skb, p.l3_off, p.l4_off, proto, 0, vip, vport)) {
		count(NC_DROP_REWRITE);
		return TC_ACT_SHOT;
	}
	count(NC_EG_REWRITE);
	return NODE_PASS;

pass:
	count(NC_EG_PASS);
	return NODE_PASS;
}

char _license[] SEC("license") = "GPL";
