// What the edges (and nodes) run instead of edgelb in `bench:e2e`, as data:
// the commands and nftables rulesets that set each alternative up in the
// lab's namespaces and take it down again. Pure (the lab's addresses and MACs
// in, steps out) so the generated configuration is golden-tested; the
// benchmark applies the steps.
//
//   ipvs   Linux IPVS in direct-routing mode, set up with ipvsadm the way a
//          kube-proxy-IPVS + BGP cluster does DSR: the VIP on the director's
//          lo, real servers = the nodes (weight = their pods); each node has
//          the VIP on lo with arp_ignore/arp_announce, and DNATs it to its own
//          pods (the kube-proxy part), whose replies leave from the VIP
//          straight to the client.
//   nftdsr The same DSR arrangement with the edges' half done by nftables in
//          the netdev ingress hook (rewrite the destination MAC to a node's by
//          a hash of the flow, `fwd` back out): the stateless DSR of nftlb.
//          Runs on kernels without IPVS.
//   snat   Plain SNAT forwarding through the edge: nftables DNAT to a pod by a
//          hash of the flow, masquerade to the edge's address; replies come
//          back through the edge.
//
// Every variant serves the same VIP and ports as the edgelb services (DR
// cannot change ports, so the service port is the pods' port).

export type KernelVariant = 'ipvs' | 'nftdsr' | 'snat';

export interface E2eEdge {
  name: string;
  ns: string;
  uplink: string;
  address: string;
  mac: string;
}

export interface E2eNode {
  name: string;
  ns: string;
  ifname: string;
  address: string;
  mac: string;
  pods: string[];
}

export interface E2eTopology {
  vip: string;
  tcpPort: number;
  udpPort: number;
  edges: E2eEdge[];
  nodes: E2eNode[];
}

export interface Step {
  ns: string;
  argv: string[];
  /** stdin (an nftables ruleset for `nft -f -`). */
  input?: string;
  /** Teardown steps may find their object already gone. */
  mayFail?: boolean;
}

export interface VariantPlan {
  variant: KernelVariant;
  describe: string;
  /** Probe run on the first edge: the variant is unavailable when it fails. */
  probe: Step | null;
  setup: Step[];
  teardown: Step[];
}

/** Absolute: the project's node_modules/.bin has an unrelated `nft` first on PATH. */
export const NFT = '/usr/sbin/nft';
export const IPVSADM = '/usr/sbin/ipvsadm';

const TABLE_DSR = 'elb_bench_dsr';
const TABLE_DNAT = 'elb_bench_dnat';
const TABLE_SNAT = 'elb_bench_snat';

/** `jhash <flow> mod N map { 0 : a, 1 : b, … }`: a per-flow choice among `targets`. */
function hashMap(l4: 'tcp' | 'udp', targets: string[]): string {
  const entries = targets.map((x, i) => `${i} : ${x}`).join(', ');
  return `jhash ip saddr . ${l4} sport . ip daddr . ${l4} dport mod ${targets.length} map { ${entries} }`;
}

function nftApply(ns: string, ruleset: string): Step {
  return { ns, argv: [NFT, '-f', '-'], input: ruleset };
}

function nftDelete(ns: string, family: string, table: string): Step {
  return { ns, argv: [NFT, 'delete', 'table', family, table], mayFail: true };
}

/** The node half of both DSR variants: the VIP on lo (never answered by ARP), DNAT to the node's pods. */
function nodeDsr(t: E2eTopology, n: E2eNode): { setup: Step[]; teardown: Step[] } {
  const ruleset = [
    `table ip ${TABLE_DNAT} {`,
    '\tchain prerouting {',
    '\t\ttype nat hook prerouting priority dstnat; policy accept;',
    `\t\tip daddr ${t.vip} tcp dport ${t.tcpPort} dnat to ${hashMap('tcp', n.pods)}`,
    `\t\tip daddr ${t.vip} udp dport ${t.udpPort} dnat to ${hashMap('udp', n.pods)}`,
    '\t}',
    '}',
    '',
  ].join('\n');
  const arp = (v: string): Step[] =>
    ['all', n.ifname].flatMap((dev) => [
      { ns: n.ns, argv: ['sysctl', '-qw', `net.ipv4.conf.${dev}.arp_ignore=${v === 'on' ? 1 : 0}`] },
      { ns: n.ns, argv: ['sysctl', '-qw', `net.ipv4.conf.${dev}.arp_announce=${v === 'on' ? 2 : 0}`] },
    ]);
  return {
    setup: [...arp('on'), { ns: n.ns, argv: ['ip', 'addr', 'add', `${t.vip}/32`, 'dev', 'lo'] }, nftApply(n.ns, ruleset)],
    // The lab never sets arp_ignore/arp_announce, so 0 (the kernel default) is what was there.
    teardown: [nftDelete(n.ns, 'ip', TABLE_DNAT), { ns: n.ns, argv: ['ip', 'addr', 'del', `${t.vip}/32`, 'dev', 'lo'], mayFail: true }, ...arp('off')],
  };
}

function ipvs(t: E2eTopology): VariantPlan {
  const setup: Step[] = [];
  const teardown: Step[] = [];
  for (const e of t.edges) {
    setup.push({ ns: e.ns, argv: ['ip', 'addr', 'add', `${t.vip}/32`, 'dev', 'lo'] });
    for (const [flag, port] of [['-t', t.tcpPort], ['-u', t.udpPort]] as const) {
      const svc = `${t.vip}:${port}`;
      // mh: Maglev hashing over the 5-tuple (mh-port), like edgelb's choice.
      setup.push({ ns: e.ns, argv: [IPVSADM, '-A', flag, svc, '-s', 'mh', '-b', 'mh-port'] });
      for (const n of t.nodes) setup.push({ ns: e.ns, argv: [IPVSADM, '-a', flag, svc, '-r', `${n.address}:${port}`, '-g', '-w', String(n.pods.length)] });
      teardown.push({ ns: e.ns, argv: [IPVSADM, '-D', flag, svc], mayFail: true });
    }
    teardown.push({ ns: e.ns, argv: ['ip', 'addr', 'del', `${t.vip}/32`, 'dev', 'lo'], mayFail: true });
  }
  for (const n of t.nodes) {
    const d = nodeDsr(t, n);
    setup.push(...d.setup);
    teardown.push(...d.teardown);
  }
  return {
    variant: 'ipvs',
    describe: 'IPVS direct routing (ipvsadm, mh scheduler) to the nodes; VIP on the nodes\' lo, arp_ignore; node DNAT to its pods',
    probe: { ns: t.edges[0]!.ns, argv: [IPVSADM, '-Ln'] },
    setup,
    teardown,
  };
}

function nftdsr(t: E2eTopology): VariantPlan {
  const setup: Step[] = [];
  const teardown: Step[] = [];
  for (const e of t.edges) {
    // Weighted like IPVS: a node appears once per pod it runs.
    const macs = t.nodes.flatMap((n) => n.pods.map(() => n.mac));
    const rule = (l4: 'tcp' | 'udp', port: number): string =>
      `\t\tip daddr ${t.vip} ${l4} dport ${port} ether saddr set ${e.mac} ether daddr set ${hashMap(l4, macs)} fwd to "${e.uplink}"`;
    const ruleset = [
      `table netdev ${TABLE_DSR} {`,
      '\tchain ingress {',
      `\t\ttype filter hook ingress device "${e.uplink}" priority 0; policy accept;`,
      rule('tcp', t.tcpPort),
      rule('udp', t.udpPort),
      '\t}',
      '}',
      '',
    ].join('\n');
    setup.push(nftApply(e.ns, ruleset));
    teardown.push(nftDelete(e.ns, 'netdev', TABLE_DSR));
  }
  for (const n of t.nodes) {
    const d = nodeDsr(t, n);
    setup.push(...d.setup);
    teardown.push(...d.teardown);
  }
  return {
    variant: 'nftdsr',
    describe: 'stateless DSR in nftables netdev ingress (dest MAC of a node by flow hash, fwd; nftlb-style); node DNAT to its pods',
    probe: null,
    setup,
    teardown,
  };
}

function snat(t: E2eTopology): VariantPlan {
  const pods = t.nodes.flatMap((n) => n.pods);
  const setup: Step[] = [];
  const teardown: Step[] = [];
  for (const e of t.edges) {
    const ruleset = [
      `table ip ${TABLE_SNAT} {`,
      '\tchain prerouting {',
      '\t\ttype nat hook prerouting priority dstnat; policy accept;',
      `\t\tip daddr ${t.vip} tcp dport ${t.tcpPort} dnat to ${hashMap('tcp', pods)}`,
      `\t\tip daddr ${t.vip} udp dport ${t.udpPort} dnat to ${hashMap('udp', pods)}`,
      '\t}',
      '\tchain postrouting {',
      '\t\ttype nat hook postrouting priority srcnat; policy accept;',
      `\t\tct status dnat ip daddr { ${pods.join(', ')} } masquerade`,
      '\t}',
      '}',
      '',
    ].join('\n');
    setup.push(nftApply(e.ns, ruleset));
    teardown.push(nftDelete(e.ns, 'ip', TABLE_SNAT));
  }
  return {
    variant: 'snat',
    describe: 'SNAT through the edge: nftables DNAT to a pod by flow hash + masquerade (conntrack); replies return via the edge',
    probe: null,
    setup,
    teardown,
  };
}

export function kernelVariant(v: KernelVariant, t: E2eTopology): VariantPlan {
  if (t.edges.length === 0 || t.nodes.length === 0 || t.nodes.some((n) => n.pods.length === 0)) throw new Error('e2e topology: need edges and nodes with pods');
  switch (v) {
    case 'ipvs':
      return ipvs(t);
    case 'nftdsr':
      return nftdsr(t);
    case 'snat':
      return snat(t);
  }
}
