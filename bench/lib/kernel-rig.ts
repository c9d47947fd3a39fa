// The kernel's alternatives to edgelb's XDP program (IPVS direct routing,
// nftables DSR, nftables SNAT — bench/lib/e2e-variants.ts) on the same
// live-frame rig as the XDP program: a scratch namespace whose "uplink" up0
// receives the harness's frames (live_pass hands them to the stack as if
// they arrived on up0) and whose forwarded output leaves up0 into up1, where
// the sink counts it. Per packet, on one CPU, this is what the edge pays in
// each design; the lab (bench:e2e) adds everything around it.
//
// Each run gets a namespace of its own (conntrack starts empty: a SYN flood
// through SNAT creates one entry per frame, up to nf_conntrack_max per
// namespace), removed afterwards.
import { execFileSync } from 'node:child_process';
import { ifIndex, inNetns } from '../../src/datapath/loader.js';
import { kernelVariant, type E2eTopology, type KernelVariant, type Step } from './e2e-variants.js';
import type { LiveHarness } from './live.js';

/** The rig's "nodes": neighbours on up0 with fixed MACs, their pods routed via them. */
const NODES = [
  { address: '10.0.0.10', mac: '02:00:00:00:01:10', pods: ['10.244.1.10', '10.244.1.11'], cidr: '10.244.1.0/24' },
  { address: '10.0.0.11', mac: '02:00:00:00:01:11', pods: ['10.244.2.10', '10.244.2.11'], cidr: '10.244.2.0/24' },
];

/** Kernel runs of a SYN flood stay under nf_conntrack_max (262144 here) per namespace. */
export const KERNEL_FLOOD_MAX = 100_000;

function sh(argv: string[]): string {
  return execFileSync(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], encoding: 'utf8' });
}

function runStep(s: Step): void {
  try {
    execFileSync('ip', ['netns', 'exec', s.ns, ...s.argv], { input: s.input ?? '', stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    if (s.mayFail) return;
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`${s.argv.join(' ')} in ${s.ns}: ${(err.stderr?.toString() ?? err.message).trim()}`, { cause: e });
  }
}

export interface KernelRigOptions {
  /** Unique per run. */
  ns: string;
  vip: string;
  port: number;
}

/** The topology the variant plans are generated for: one edge (the rig), the rig's fake nodes. */
export function rigTopology(o: KernelRigOptions, edgeMac: string): E2eTopology {
  return {
    vip: o.vip,
    tcpPort: o.port,
    udpPort: o.port + 1,
    edges: [{ name: 'rig', ns: o.ns, uplink: 'up0', address: '10.0.0.1', mac: edgeMac }],
    // Only the edge's steps run here: the nodes exist as neighbours, not namespaces.
    nodes: NODES.map((n, i) => ({ name: `node${i + 1}`, ns: `${o.ns}-node${i + 1}`, ifname: 'eth0', address: n.address, mac: n.mac, pods: n.pods })),
  };
}

/** Whether the variant can run on this kernel (its probe), or why not. */
export function kernelVariantAvailable(v: KernelVariant, probeNs: string): string | null {
  const plan = kernelVariant(v, rigTopology({ ns: probeNs, vip: '203.0.113.10', port: 80 }, '02:00:00:00:00:01'));
  if (!plan.probe) return null;
  try {
    runStep(plan.probe);
    return null;
  } catch (e) {
    return (e as Error).message.split('\n').join(' ');
  }
}

/**
 * Builds the rig namespace for `variant`, runs `fn` with the calling thread
 * inside it, and removes it. The harness's sink is attached to up1. `fn` gets
 * up0's ifindex and `addressed(frame)`: the frame with up0's MAC as
 * destination (the stack drops frames for other hosts before IP sees them).
 */
export function withKernelRig<T>(variant: KernelVariant, o: KernelRigOptions, live: LiveHarness, fn: (up0: number, addressed: (frame: Buffer) => Buffer) => T): T {
  sh(['ip', 'netns', 'add', o.ns]);
  try {
    const x = (a: string[]): string => sh(['ip', 'netns', 'exec', o.ns, ...a]);
    // No IPv6 on the rig's links: a veth coming up sends router and
    // neighbour solicitations (the first up to seconds later), which the
    // sink on up1 counted as a forwarded frame (1 of 0 in a CI run).
    x(['sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1']);
    x(['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1']);
    x(['ip', 'link', 'set', 'lo', 'up']);
    x(['ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1']);
    x(['ip', 'addr', 'add', '10.0.0.1/24', 'dev', 'up0']);
    x(['ip', 'link', 'set', 'up0', 'up']);
    x(['ip', 'link', 'set', 'up1', 'up']);
    for (const [k, v] of [
      ['net.ipv4.conf.all.forwarding', '1'],
      ['net.ipv4.conf.all.rp_filter', '0'],
      ['net.ipv4.conf.up0.rp_filter', '0'],
      // Forwarding back out of the receiving interface would send an ICMP redirect per packet.
      ['net.ipv4.conf.all.send_redirects', '0'],
      ['net.ipv4.conf.up0.send_redirects', '0'],
    ]) {
      x(['sysctl', '-qw', `${k}=${v}`]);
    }
    for (const n of NODES) {
      x(['ip', 'neigh', 'replace', n.address, 'lladdr', n.mac, 'dev', 'up0', 'nud', 'permanent']);
      x(['ip', 'route', 'add', n.cidr, 'via', n.address]);
    }
    const mac = (JSON.parse(x(['ip', '-j', 'link', 'show', 'dev', 'up0'])) as { address: string }[])[0]!.address;
    const plan = kernelVariant(variant, rigTopology(o, mac));
    for (const s of plan.setup) if (s.ns === o.ns) runStep(s);
    const macBytes = Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
    const addressed = (frame: Buffer): Buffer => {
      const f = Buffer.from(frame);
      macBytes.copy(f, 0);
      return f;
    };
    return inNetns(o.ns, () => {
      live.attachSink('up1');
      return fn(ifIndex('up0'), addressed);
    });
  } finally {
    try {
      sh(['ip', 'netns', 'del', o.ns]);
    } catch {
      // already gone
    }
  }
}
