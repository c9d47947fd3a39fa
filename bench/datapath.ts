// Datapath benchmark (`npm run bench:datapath [-- --baseline REF]`). Not a test.
//
// Method (see ../shared/NOTES.md): every case is a loop of N × (repeat = 1)
// BPF_PROG_TEST_RUN calls done in C (testRunLoop), so a rewriting program
// sees the original packet each time; the measuring process is pinned to one
// CPU (a child under taskset); R rounds, median per case. The floor is
// bpf/out/xdp_pass.o measured the same way in the same rounds; "net" =
// case − floor.
//
// Forwarding cases run inside a scratch network namespace with a route and
// a permanent neighbour for every node address, so the program's FIB
// lookup succeeds and the verdict is XDP_REDIRECT (as in production),
// without any packet actually leaving. The JSON figures are the default
// configuration (FIB lookup with its per-CPU cache); the table adds the
// gateway-MAC mode (no FIB, XDP_TX — what Katran does).
//
// ns/packet is the kernel's own BPF_PROG_TEST_RUN duration of each
// repeat=1 call (median over rounds); the wall time per call, which adds
// the syscall and the N-API crossing (~0.5–1.5 µs, varying by hundreds of
// ns between rounds on this VM), is shown but too noisy to net out.
//
// New flows: a fresh 5-tuple per call (each call timed by the kernel) — the
// SYN (`syn_fresh_ns`, never inserted) and the handshake's first ACK, which
// pins the flow in the connection table (`first_ack_ns`). Those calls are
// made one by one from JS; the per-call controls (`syn_percall_ns`,
// `established_percall_ns`: one tuple, called the same way) show how much of
// their cost is the calling method (cold caches) rather than the new tuple.
//
// Live traffic (bench/lib/live-source.ts): frames really transmitted out of
// a veth whose peer drops them in XDP, all on the one pinned CPU: packets
// per second for an established flow and for a SYN flood of fresh tuples,
// next to the floor (the same generator in front of a bare XDP_TX) and as a
// ratio to it. Two generators, the first the kernel allows (`live_method`):
// "live-frames" (bench/lib/live.ts: BPF_F_TEST_XDP_LIVE_FRAMES, the kernel
// generates the frames and a harness tail-calls the program) or
// "af-packet" (bench/lib/afpacket.ts: a userspace AF_PACKET sender,
// bench/native/afpacket_tx.c, transmits real frames from up1 into the
// program attached natively to up0; for kernels such as 6.18.44-fc-v1300
// that refuse live frames). The AF_PACKET sender dominates its runs (skb
// allocation, two copies and a NAPI poll per frame: the bare-XDP_TX floor
// is a few hundred thousand frames per second where live frames reached
// millions), so its absolute Mpps are the sender's more than the program's
// and are not comparable with live frames'; the program's own cost shows
// in its ratio to the floor. On the same rig, the kernel's alternatives
// (bench/lib/kernel-rig.ts: IPVS direct routing, nftables DSR, nftables SNAT,
// as bench:e2e configures them) get the same frames through XDP_PASS into the
// stack of the uplink, from the same generator (live frames or the
// AF_PACKET sender): their packets per second on one CPU, established and
// under a SYN flood (IPVS where the kernel has it).
//
// --baseline REF (bench/lib/baseline.ts): REF's eBPF objects, built in a
// temporary worktree and configured by REF's own EdgeDatapath, are measured
// in the same process, interleaved with the current ones case by case and
// round by round (the order alternates between rounds). The table gains
// the baseline's figure and "× baseline" (current net / baseline net; for
// Mpps current / baseline, higher is better); the JSON gains a `baseline`
// object with the same fields.
//
// Also: 10 000 services with 100 000 backends (10 per service) are loaded
// into a fresh set of maps; reported are the load time (applyServices,
// Maglev included) and the kernel memory charged for all edge maps (fdinfo
// memlock).
//
// Output: a table, then as the LAST line JSON (medians; ns unless named):
// {"floor_ns","pass_ns","syn_option_ns","established_ns","ipip_established_ns",
//  "pass6_ns","syn_option6_ns","established6_ns","ip6ip6_established_ns" (IPv6 twins; null for a baseline without the IPv6 path),
//  "node_option_ns","node_reply_ns",
//  "node_option6_ns","node_reply6_ns",
//  "syn_fresh_ns","first_ack_ns","syn_percall_ns","established_percall_ns",
//  "mpps_established_1core","mpps_syn_flood_1core","mpps_floor_1core","mpps_syn_one_tuple_1core",
//  "maps_10k_mb","maps_ipv6_mb" (of maps_10k_mb),"load_10k_s", "kernel_mpps":{ipvs|nftdsr|snat:{established,syn_flood}|null},
//  "kernel_unavailable":{variant:reason}, "live_method":"live-frames"|"af-packet"|null (what produced the mpps fields),
//  "live_unavailable":reason|null (neither generator works: mpps fields null), "host":{…}, ["baseline_ref","baseline_commit","baseline":{same fields}]}
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { BpfObject, ifIndex, inNetns } from '../src/datapath/loader.js';
import { native } from '../src/datapath/loader/binding.js';
import { bpfObjectPath, repoRoot } from '../src/assets.js';
import { NodeDatapath } from '../src/datapath/node-datapath.js';
import { prepareNode6Frames } from '../src/datapath/node-bench.js';
import * as currentEdge from '../src/datapath/edge-datapath.js';
import type { DesiredService, Backend } from '../src/model/types.js';
import { buildBaseline, importEdgeDatapath, importNodeDatapath, type BaselineBuild, type EdgeDatapathLike, type EdgeDatapathModule, type NodeDatapathModule } from './lib/baseline.js';
import { LiveHarness } from './lib/live.js';
import { chooseLiveSource, type LiveSample } from './lib/live-source.js';
import { KERNEL_FLOOD_MAX, kernelVariantAvailable, withKernelRig } from './lib/kernel-rig.js';
import type { KernelVariant } from './lib/e2e-variants.js';

const N = Number(process.env.BENCH_N ?? 100_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const LIVE_N = Number(process.env.BENCH_LIVE_N ?? 1_000_000);
const FRESH = Math.min(N, Number(process.env.BENCH_FRESH_N ?? 20_000));
/** Calls per turn when subjects alternate inside a case. */
const CHUNK = Number(process.env.BENCH_CHUNK ?? 5000);
const KERNEL_VARIANTS: KernelVariant[] = ['ipvs', 'nftdsr', 'snat'];
/** Alternating turns per round of the live-frame runs. */
const LIVE_TURNS = 4;
const CHILD_ENV = 'EDGELB_BENCH_CHILD';

interface BaselineInfo {
  ref: string;
  commit: string;
  modulePath: string;
  nodeModulePath: string | null;
  bpfOut: string;
}

function usage(msg: string): never {
  console.error(`bench:datapath: ${msg}\nusage: npm run bench:datapath [-- --baseline REF]`);
  process.exit(2);
}

function parseArgs(argv: string[]): { baseline: string | null } {
  let baseline: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--baseline') {
      const v = argv[++i];
      if (!v) usage('--baseline needs a git revision');
      baseline = v;
    } else if (a.startsWith('--baseline=')) {
      baseline = a.slice('--baseline='.length);
      if (!baseline) usage('--baseline needs a git revision');
    } else {
      usage(`unknown argument '${a}'`);
    }
  }
  return { baseline };
}

// ------------------------------------------------------------ parent: baseline build, pinned child, cleanup

const netnsOf = (pid: number): string => `edgelb-bench-${pid}`;

function listNetns(): string[] {
  try {
    return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter(Boolean);
  } catch {
    return [];
  }
}

function removeNetns(ns: string): void {
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' });
  } catch {
    // already gone
  }
}

/**
 * Builds the baseline (if asked), runs the measurement in a child pinned to
 * the last CPU, and always removes what the child or the build left: the
 * worktree, the child's scratch namespace (a child killed by a signal cannot
 * clean up itself).
 */
async function parent(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  let base: BaselineBuild | null = null;
  let childPid = 0;
  let child: ReturnType<typeof spawn> | null = null;
  const forward = (sig: NodeJS.Signals): void => {
    child?.kill(sig);
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  try {
    if (args.baseline) base = await buildBaseline(args.baseline, { repo: repoRoot(), say: (l) => console.error(l) });
    const info: BaselineInfo | null = base ? { ref: base.ref, commit: base.commit, modulePath: base.modulePath, nodeModulePath: base.nodeModulePath, bpfOut: base.bpfOut } : null;
    const cpu = String(Math.max(0, cpus().length - 1));
    child = spawn('taskset', ['-c', cpu, process.execPath, ...process.execArgv, process.argv[1]!], {
      stdio: 'inherit',
      env: { ...process.env, [CHILD_ENV]: JSON.stringify({ cpu: Number(cpu), baseline: info }) },
    });
    childPid = child.pid ?? 0;
    const code = await new Promise<number>((resolve) => child!.on('exit', (c, s) => resolve(c ?? (s ? 128 : 1))));
    process.exitCode = code;
  } catch (e) {
    console.error((e as Error).message);
    process.exitCode = 1;
  } finally {
    // taskset execs node, so the child's pid is the measuring process's; its
    // namespaces are netnsOf(pid) and netnsOf(pid)-kN (the kernel rigs).
    if (childPid) for (const ns of listNetns()) if (ns === netnsOf(childPid) || ns.startsWith(`${netnsOf(childPid)}-`)) removeNetns(ns);
    base?.remove();
  }
}

// ------------------------------------------------------------ packets (self-contained)

function csum(b: Buffer, init = 0): number {
  let s = init;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length & 1) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

function ip4(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}

function tcpFrame(o: { src: string; dst: string; sport: number; dport: number; flags: number; payload?: number; options?: Buffer }): Buffer {
  const opts = o.options ?? Buffer.alloc(0);
  const ihl = 20 + opts.length;
  const pl = o.payload ?? 0;
  const f = Buffer.alloc(14 + ihl + 20 + pl);
  Buffer.from('020000000002020000000001', 'hex').copy(f, 0);
  f.writeUInt16BE(0x0800, 12);
  const ip = f.subarray(14);
  ip[0] = 0x40 | (ihl / 4);
  ip.writeUInt16BE(ihl + 20 + pl, 2);
  ip.writeUInt16BE(0x4000, 6);
  ip[8] = 64;
  ip[9] = 6;
  ip4(o.src).copy(ip, 12);
  ip4(o.dst).copy(ip, 16);
  opts.copy(ip, 20);
  ip.writeUInt16BE(csum(ip.subarray(0, ihl)), 10);
  const th = ip.subarray(ihl);
  th.writeUInt16BE(o.sport, 0);
  th.writeUInt16BE(o.dport, 2);
  th.writeUInt32BE(1000, 4);
  th[12] = 5 << 4;
  th[13] = o.flags;
  th.writeUInt16BE(65535, 14);
  const ph = Buffer.alloc(12);
  ip4(o.src).copy(ph, 0);
  ip4(o.dst).copy(ph, 4);
  ph[9] = 6;
  ph.writeUInt16BE(20 + pl, 10);
  let s = 0;
  for (let i = 0; i < 12; i += 2) s += ph.readUInt16BE(i);
  th.writeUInt16BE(csum(th, s), 16);
  return f;
}

function ip6(a: string): Buffer {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const g = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  g.forEach((x, i) => b.writeUInt16BE(parseInt(x, 16), i * 2));
  return b;
}

/** The IPv6 twin of tcpFrame: fixed header, TCP, checksum over the IPv6 pseudo-header. */
function tcp6Frame(o: { src: string; dst: string; sport: number; dport: number; flags: number; payload?: number }): Buffer {
  const pl = o.payload ?? 0;
  const f = Buffer.alloc(14 + 40 + 20 + pl);
  Buffer.from('020000000002020000000001', 'hex').copy(f, 0);
  f.writeUInt16BE(0x86dd, 12);
  const ip = f.subarray(14);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(20 + pl, 4);
  ip[6] = 6;
  ip[7] = 64;
  ip6(o.src).copy(ip, 8);
  ip6(o.dst).copy(ip, 24);
  const th = ip.subarray(40);
  th.writeUInt16BE(o.sport, 0);
  th.writeUInt16BE(o.dport, 2);
  th.writeUInt32BE(1000, 4);
  th[12] = 5 << 4;
  th[13] = o.flags;
  th.writeUInt16BE(65535, 14);
  const ph = Buffer.alloc(40);
  ip.copy(ph, 0, 8, 40);
  ph.writeUInt32BE(20 + pl, 32);
  ph[39] = 6;
  let sum = 0;
  for (let i = 0; i < 40; i += 2) sum += ph.readUInt16BE(i);
  th.writeUInt16BE(csum(th, sum), 16);
  return f;
}

// ------------------------------------------------------------ scratch netns

const NS = netnsOf(process.pid);
const NODE_IPS = ['10.0.0.10', '10.0.0.11', '10.0.0.12', '10.0.0.13', '10.0.0.14'];
const NODE_IPS6 = NODE_IPS.map((_, i) => `fd00:10::${(16 + i).toString(16)}`);
const EDGE_IP6 = 'fd00:10::1';

function sh(args: string[]): void {
  execFileSync(args[0]!, args.slice(1), { stdio: 'pipe' });
}

/**
 * up0 (10.0.0.1/24, the "uplink", neighbours permanent) ↔ up1 (the live
 * frames' receiver; the AF_PACKET sender's side). up1 has no IPv6: its
 * stack would otherwise send solicitations into up0's program.
 */
function makeNetns(): void {
  sh(['ip', 'netns', 'add', NS]);
  const x = (a: string[]): void => sh(['ip', 'netns', 'exec', NS, ...a]);
  x(['ip', 'link', 'set', 'lo', 'up']);
  x(['ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1']);
  x(['sysctl', '-qw', 'net.ipv6.conf.up1.disable_ipv6=1']);
  x(['ip', 'addr', 'add', '10.0.0.1/24', 'dev', 'up0']);
  x(['ip', 'link', 'set', 'up0', 'up']);
  x(['ip', 'link', 'set', 'up1', 'up']);
  x(['sysctl', '-qw', 'net.ipv4.conf.all.forwarding=1']);
  x(['sysctl', '-qw', 'net.ipv4.conf.lo.forwarding=1']);
  NODE_IPS.forEach((ip, i) => x(['ip', 'neigh', 'replace', ip, 'lladdr', `02:00:00:00:01:${(16 + i).toString(16)}`, 'dev', 'up0', 'nud', 'permanent']));
  // IPv6: the same nodes at fd00:10::10.., reached over up0 (no DAD: usable at once).
  x(['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  x(['ip', '-6', 'addr', 'add', `${EDGE_IP6}/64`, 'dev', 'up0', 'nodad']);
  NODE_IPS6.forEach((ip, i) => x(['ip', '-6', 'neigh', 'replace', ip, 'lladdr', `02:00:00:00:01:${(16 + i).toString(16)}`, 'dev', 'up0', 'nud', 'permanent']));
}

// ------------------------------------------------------------ services

function backendsFor(svc: number, n: number): Backend[] {
  return Array.from({ length: n }, (_, j) => {
    const k = svc * n + j;
    return {
      ip: `10.${64 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`,
      port: 8080,
      nodeIp: NODE_IPS[k % NODE_IPS.length]!,
      nodeName: `node${k % NODE_IPS.length}`,
      weight: 1,
      state: 'active' as const,
    };
  });
}

function tenK(): DesiredService[] {
  return Array.from({ length: 10_000 }, (_, i) => ({
    service: `bench/s${i}`,
    frontend: { vip: `100.${64 + (i >> 8)}.${i & 255}.1`, port: 80, protocol: 'TCP' as const },
    mode: 'dsr' as const,
    dispatch: 'ip-option' as const,
    sourceRanges: [],
    affinityTimeoutSeconds: 0,
    backends: backendsFor(i, 10),
  }));
}

// ------------------------------------------------------------ measurement helpers

const VIP = '203.0.113.10';
const CLIENT = '198.51.100.7';
const XDP_PASS = 2;
const XDP_TX = 3;
const XDP_REDIRECT = 4;
const GATEWAY = { kind: 'gateway' as const, gatewayMac: '02:00:00:00:01:fe', ownMac: '02:00:00:00:00:02' };

type Mode = 'fib' | 'gateway';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** count × (repeat = 1) runs in C through the current addon (any revision's program, by fd). */
function loop(fd: number, data: Buffer, count: number): { retval: number; mismatches: number; kernelNs: number; wallNs: number } {
  const r = native().testRunLoop(fd, data, count, {});
  return { retval: r.retval, mismatches: r.retvalMismatches, kernelNs: r.kernelNs / r.count, wallNs: r.totalNs / r.count };
}

function runOnce(fd: number, data: Buffer): { retval: number; dataOut: Buffer; duration: number } {
  return native().testRun(fd, { data });
}

/** One revision's edge datapath (and node program) under test. */
interface Subject {
  label: 'current' | 'baseline';
  dp: EdgeDatapathLike;
  xdp: number;
  tc: number;
  loadS: number;
  mapsMb: number;
  /** The node program's ingress (on this revision's SYN output) and egress (on the pod's reply), or why there is none. */
  node: NodeSubject | { note: string };
  /** IPv6 frontends programmed (the current revision; a baseline without the IPv6 path has no rows). */
  v6: boolean;
  /** memlock of the IPv6 maps (sized for use in the current revision: EdgeDatapathOptions.ipv6). */
  ipv6Mb: number;
  close(): void;
}

function configure(dp: EdgeDatapathLike, m: Mode): void {
  dp.reconfigure({ forward: m === 'fib' ? { kind: 'fib' } : GATEWAY, ctInsertLimit: 200000 });
}

const BENCH_SERVICES: DesiredService[] = [
  { service: 'bench/opt', frontend: { vip: VIP, port: 80, protocol: 'TCP' }, mode: 'dsr', dispatch: 'ip-option', sourceRanges: [], affinityTimeoutSeconds: 0, backends: backendsFor(20_000, 10) },
  { service: 'bench/ipip', frontend: { vip: VIP, port: 81, protocol: 'TCP' }, mode: 'dsr', dispatch: 'ipip', sourceRanges: [], affinityTimeoutSeconds: 0, backends: backendsFor(20_001, 10) },
];

/** The IPv6 twins of BENCH_SERVICES (same backend count, ip-option and ipip), programmed by the planner like them. */
const VIP6 = '2001:db8:100::10';
const IPV6_MAPS = ['edge_services6', 'edge_backends6', 'edge_ct6', 'edge_affinity6', 'edge_src_ranges6', 'edge_config6', 'edge_fib_cache6', 'edge_sc_flows6', 'edge_snat_rev6', 'edge_snat_frags6'] as const;
const CLIENT6 = '2001:db8:1::7';
function backends6(n: number): Backend[] {
  return Array.from({ length: n }, (_, j) => ({ ip: `fd00:244::${(j + 1).toString(16)}`, port: 8080, nodeIp: NODE_IPS6[j % NODE_IPS6.length]!, nodeName: `node${j % 5}`, weight: 1, state: 'active' as const }));
}
const BENCH_SERVICES6: DesiredService[] = [
  { service: 'bench/opt6', frontend: { vip: VIP6, port: 80, protocol: 'TCP' }, mode: 'dsr', dispatch: 'ip-option', sourceRanges: [], affinityTimeoutSeconds: 0, backends: backends6(10) },
  { service: 'bench/ipip6', frontend: { vip: VIP6, port: 81, protocol: 'TCP' }, mode: 'dsr', dispatch: 'ipip', sourceRanges: [], affinityTimeoutSeconds: 0, backends: backends6(10) },
];

const SYN = tcpFrame({ src: CLIENT, dst: VIP, sport: 40000, dport: 80, flags: 0x02 });
const ACK = tcpFrame({ src: CLIENT, dst: VIP, sport: 40001, dport: 80, flags: 0x10, payload: 64 });
const OTHER = tcpFrame({ src: CLIENT, dst: '203.0.113.99', sport: 40003, dport: 80, flags: 0x10, payload: 64 });
/**
 * Each repeated-packet case rotates over FRAME_VARIANTS flows (one per
 * chunk of calls): a hash map's cost for one key depends on its bucket's
 * occupancy, which the maps' random seeds change from one map instance (one
 * revision, one run) to the next; several keys average that out.
 */
const FRAME_VARIANTS = 8;
const OTHERS = Array.from({ length: FRAME_VARIANTS }, (_, i) => tcpFrame({ src: CLIENT, dst: `203.0.113.${99 + i}`, sport: 40003, dport: 80, flags: 0x10, payload: 64 }));
const SYNS = Array.from({ length: FRAME_VARIANTS }, (_, i) => tcpFrame({ src: CLIENT, dst: VIP, sport: 40000 + 16 * i, dport: 80, flags: 0x02 }));
const ACKS = Array.from({ length: FRAME_VARIANTS }, (_, i) => tcpFrame({ src: CLIENT, dst: VIP, sport: 41001 + i, dport: 80, flags: 0x10, payload: 64 }));
const IPIP_ACKS = Array.from({ length: FRAME_VARIANTS }, (_, i) => tcpFrame({ src: CLIENT, dst: VIP, sport: 42002 + i, dport: 81, flags: 0x10, payload: 64 }));
const OTHERS6 = Array.from({ length: FRAME_VARIANTS }, (_, i) => tcp6Frame({ src: CLIENT6, dst: `2001:db8:100::${(0x99 + i).toString(16)}`, sport: 40003, dport: 80, flags: 0x10, payload: 64 }));
const SYNS6 = Array.from({ length: FRAME_VARIANTS }, (_, i) => tcp6Frame({ src: CLIENT6, dst: VIP6, sport: 40000 + 16 * i, dport: 80, flags: 0x02 }));
const ACKS6 = Array.from({ length: FRAME_VARIANTS }, (_, i) => tcp6Frame({ src: CLIENT6, dst: VIP6, sport: 41001 + i, dport: 80, flags: 0x10, payload: 64 }));
const IP6IP6_ACKS = Array.from({ length: FRAME_VARIANTS }, (_, i) => tcp6Frame({ src: CLIENT6, dst: VIP6, sport: 42002 + i, dport: 81, flags: 0x10, payload: 64 }));
/** Live frames: a pinned established flow, and the SYN template the harness gives fresh tuples. */
const LIVE_ACK = tcpFrame({ src: '198.18.0.7', dst: VIP, sport: 40004, dport: 80, flags: 0x10, payload: 64 });
const LIVE_SYN = tcpFrame({ src: '198.18.0.0', dst: VIP, sport: 0, dport: 80, flags: 0x02 });

interface NodeSubject {
  ingress: number;
  learned: Buffer;
  ingressRetval: number;
  egress: number;
  reply: Buffer;
  retval: number;
  /** The IPv6 twins (Destination Options header SYN, reply), current revision only, or why there are none. */
  v6: NodeSubject6 | { note: string };
}

interface NodeSubject6 {
  option: Buffer;
  optionRetval: number;
  reply6: Buffer;
  reply6Retval: number;
}

/**
 * The node program next to a revision's edge. The current one is configured
 * as `edgelb node run` configures it (the bench service's pods local, the
 * edge at 10.0.0.1 trusted by its link-layer address): ingress on the edge's
 * own SYN output (trust, VIP and backend checks, flow refresh, option
 * strip), egress on the pod's reply. A baseline is configured the same way
 * by its own NodeDatapath (bench/lib/baseline.ts bundles it); a revision
 * without one has its node.o loaded bare, as the revisions before the trust
 * boundary ran it (one that needs a trusted edge then reports a note
 * instead of figures). The IPv6 rows are the current revision's only.
 */
function openNode(label: Subject['label'], xdp: number, nodeObject: string, nodeMod: NodeDatapathModule | null, closers: Array<() => void>): NodeSubject | { note: string } {
  if (!existsSync(nodeObject)) return { note: `${nodeObject} not built` };
  try {
    const learned = inNetns(NS, () => runOnce(xdp, SYN).dataOut);
    let ingress: number;
    let egress: number;
    let flows: () => number;
    let v6: () => NodeSubject6 | { note: string } = () => ({ note: 'IPv6 rows are measured for the current revision only' });
    if (label === 'current') {
      const node = NodeDatapath.open({ objectPath: nodeObject, maxFlows: 65536, edgeSources: ['10.0.0.1'] });
      closers.push(() => node.close());
      node.applyServices([BENCH_SERVICES[0]!]);
      node.trustEdgeNeighbour('10.0.0.1', [...learned.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':'));
      ingress = node.ingress.fd;
      egress = node.egress.fd;
      flows = () => node.flows().length;
      v6 = () => {
        try {
          const f = prepareNode6Frames(node, [BENCH_SERVICES[0]!], [...learned.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':'));
          return { option: f.option, optionRetval: runOnce(ingress, f.option).retval, reply6: f.reply, reply6Retval: runOnce(egress, f.reply).retval };
        } catch (e) {
          return { note: `IPv6 rows skipped (${(e as Error).message.split('\n')[0]})` };
        }
      };
    } else if (nodeMod) {
      const node = nodeMod.NodeDatapath.open({ objectPath: nodeObject, maxFlows: 65536, edgeSources: ['10.0.0.1'] });
      closers.push(() => node.close());
      node.applyServices([BENCH_SERVICES[0]!]);
      node.trustEdgeNeighbour('10.0.0.1', [...learned.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':'));
      ingress = node.ingress.fd;
      egress = node.egress.fd;
      flows = () => node.flows().length;
    } else {
      const nodeObj = BpfObject.load(nodeObject);
      closers.push(() => nodeObj.close());
      ingress = nodeObj.program('node_ingress').fd;
      egress = nodeObj.program('node_egress').fd;
      flows = () => 1; // a bare object: the egress probe below is the check
    }
    const ingressRetval = runOnce(ingress, learned).retval;
    const podIp = `${learned[30]}.${learned[31]}.${learned[32]}.${learned[33]}`;
    const reply = tcpFrame({ src: podIp, dst: CLIENT, sport: 8080, dport: 40000, flags: 0x12, payload: 64 });
    const probe = runOnce(egress, reply);
    if (!probe.dataOut.subarray(26, 30).equals(ip4(VIP)) || flows() !== 1) return { note: 'node.o did not learn the flow or rewrite the reply to the VIP' };
    return { ingress, learned, ingressRetval, egress, reply, retval: probe.retval, v6: v6() };
  } catch (e) {
    return { note: `node.o unusable (${(e as Error).message.split('\n')[0]})` };
  }
}

function openSubject(label: Subject['label'], mod: EdgeDatapathModule, edgeObject: string, nodeObject: string, nodeMod: NodeDatapathModule | null, big: DesiredService[]): Subject {
  // IPv6 on for the baseline too where its EdgeDatapath serves it (older revisions ignore the option):
  // the IPv6 rows then get their × baseline, and both memory figures count the IPv6 maps.
  const dp = mod.EdgeDatapath.open({ maglevTableSize: 16381, mtu: 1500, address: '10.0.0.1', address6: EDGE_IP6, ipv6: true, objectPath: edgeObject });
  const v6 = label === 'current' || dp.servesIpv6?.() === true;
  const closers: Array<() => void> = [() => dp.close()];
  const close = (): void => closers.reverse().forEach((f) => f());
  try {
    const t0 = process.hrtime.bigint();
    dp.applyServices(big);
    const loadS = Number(process.hrtime.bigint() - t0) / 1e9;
    const mapsMb = dp.memlockBytes() / 2 ** 20;
    const ipv6Mb = v6 ? IPV6_MAPS.reduce((a, n) => a + (dp.map?.(n)?.memlockBytes() ?? 0), 0) / 2 ** 20 : 0;
    dp.applyServices([...big, ...BENCH_SERVICES]);
    if (v6) dp.applyServices([...big, ...BENCH_SERVICES, ...BENCH_SERVICES6]);
    configure(dp, 'fib');
    const xdp = dp.program('xdp').fd;
    const node = openNode(label, xdp, nodeObject, nodeMod, closers);
    return { label, dp, xdp, tc: dp.program('tc').fd, loadS, mapsMb, ipv6Mb, node, v6, close };
  } catch (e) {
    close();
    throw e;
  }
}

interface CaseSpec {
  name: string;
  key: string | null;
  /** The program of a subject this case runs (floor: the shared xdp_pass). */
  prog: (s: Subject) => number | null;
  /** The frame of chunk k (cases rotate over FRAME_VARIANTS frames, see variantsOf). */
  data: (s: Subject, k: number) => Buffer;
  expect: (s: Subject) => number;
  mode: Mode;
  netns: boolean;
}

function caseSpecs(floorFd: number): CaseSpec[] {
  const xdp = (s: Subject): number => s.xdp;
  const xdp6 = (s: Subject): number | null => (s.v6 ? s.xdp : null);
  const c = (name: string, key: string | null, prog: CaseSpec['prog'], data: Buffer[], expect: number, mode: Mode, netns = true): CaseSpec => ({
    name, key, prog, data: (_s, k) => data[k % data.length]!, expect: () => expect, mode, netns,
  });
  return [
    c('floor (xdp_pass.o)', 'floor_ns', () => floorFd, [OTHER], XDP_PASS, 'fib'),
    c('pass (non-VIP)', 'pass_ns', xdp, OTHERS, XDP_PASS, 'fib'),
    c('SYN + option', 'syn_option_ns', xdp, SYNS, XDP_REDIRECT, 'fib'),
    c('established (DNAT)', 'established_ns', xdp, ACKS, XDP_REDIRECT, 'fib'),
    c('IPIP established', 'ipip_established_ns', xdp, IPIP_ACKS, XDP_REDIRECT, 'fib'),
    c('IPv6 pass (non-VIP)', 'pass6_ns', xdp6, OTHERS6, XDP_PASS, 'fib'),
    c('IPv6 SYN + Destination Options header', 'syn_option6_ns', xdp6, SYNS6, XDP_REDIRECT, 'fib'),
    c('IPv6 established (DNAT)', 'established6_ns', xdp6, ACKS6, XDP_REDIRECT, 'fib'),
    c('IP6IP6 established', 'ip6ip6_established_ns', xdp6, IP6IP6_ACKS, XDP_REDIRECT, 'fib'),
    c('gateway MAC: SYN + option', null, xdp, SYNS, XDP_TX, 'gateway'),
    c('gateway MAC: established (DNAT)', null, xdp, ACKS, XDP_TX, 'gateway'),
    c('gateway MAC: IPIP established', null, xdp, IPIP_ACKS, XDP_TX, 'gateway'),
    {
      name: 'node ingress: option SYN, checks + strip',
      key: 'node_option_ns',
      prog: (s) => ('ingress' in s.node ? s.node.ingress : null),
      data: (s) => ('learned' in s.node ? s.node.learned : OTHER),
      expect: (s) => ('ingressRetval' in s.node ? s.node.ingressRetval : 0),
      mode: 'fib',
      netns: false,
    },
    {
      name: 'node reply (tc egress, node.o)',
      key: 'node_reply_ns',
      prog: (s) => ('egress' in s.node ? s.node.egress : null),
      data: (s) => ('reply' in s.node ? s.node.reply : OTHER),
      expect: (s) => ('retval' in s.node ? s.node.retval : 0),
      mode: 'fib',
      netns: false,
    },
    {
      name: 'node ingress: IPv6 header SYN, checks + strip',
      key: 'node_option6_ns',
      prog: (s) => ('ingress' in s.node && 'option' in s.node.v6 ? s.node.ingress : null),
      data: (s) => ('v6' in s.node && 'option' in s.node.v6 ? s.node.v6.option : OTHER),
      expect: (s) => ('v6' in s.node && 'option' in s.node.v6 ? s.node.v6.optionRetval : 0),
      mode: 'fib',
      netns: false,
    },
    {
      name: 'node reply IPv6 (tc egress)',
      key: 'node_reply6_ns',
      prog: (s) => ('egress' in s.node && 'reply6' in s.node.v6 ? s.node.egress : null),
      data: (s) => ('v6' in s.node && 'reply6' in s.node.v6 ? s.node.v6.reply6 : OTHER),
      expect: (s) => ('v6' in s.node && 'reply6' in s.node.v6 ? s.node.v6.reply6Retval : 0),
      mode: 'fib',
      netns: false,
    },
    c('edge tc pass (skb reference)', null, (s) => s.tc, OTHERS, 0, 'fib', false),
  ];
}

interface Row {
  name: string;
  key: string | null;
  /** samples[subject label] */
  samples: Map<string, number[]>;
  wall: Map<string, number[]>;
}

function push(m: Map<string, number[]>, k: string, v: number): void {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
}

function hostInfo(): { cpu: string; kernel: string; cpus: number; loadavg_1m: number } {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^Model name:\s*(.+)$/m.exec(execFileSync('lscpu', { encoding: 'utf8' }));
    if (m) cpu = m[1]!.trim();
  } catch {
    // lscpu missing: keep os.cpus()'s model
  }
  return { cpu, kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), cpus: cpus().length, loadavg_1m: Math.round(loadavg()[0]! * 100) / 100 };
}

// ------------------------------------------------------------ child: the measurement

async function childMain(): Promise<void> {
  const env = JSON.parse(process.env[CHILD_ENV]!) as { cpu: number; baseline: BaselineInfo | null };
  const cleanup: Array<() => void> = [() => removeNetns(NS)];
  process.on('exit', () => cleanup.reverse().forEach((f) => f()));
  removeNetns(NS);
  makeNetns();
  const host = hostInfo();
  const big = tenK();

  const subjects: Subject[] = [];
  let baselineNodeNote: string | null = null;
  const current = openSubject('current', currentEdge as unknown as EdgeDatapathModule, bpfObjectPath('edge'), bpfObjectPath('node'), null, big);
  cleanup.push(() => current.close());
  subjects.push(current);
  if (env.baseline) {
    // REF's loader must use this checkout's addon (the addon is additive).
    process.env.EDGELB_BPF_LOADER ??= join(repoRoot(), 'native', 'bpf-loader-napi', 'build', 'Release', 'bpf_loader.node');
    const mod = await importEdgeDatapath(env.baseline.modulePath, `baseline ${env.baseline.ref}`);
    const nodeMod = env.baseline.nodeModulePath ? await importNodeDatapath(env.baseline.nodeModulePath) : null;
    if (!nodeMod) baselineNodeNote = `baseline ${env.baseline.ref}: no NodeDatapath with open/applyServices/trustEdgeNeighbour, so its node.o is measured unconfigured — its node rows are not comparable`;
    const base = openSubject('baseline', mod, join(env.baseline.bpfOut, 'edge.o'), join(env.baseline.bpfOut, 'node.o'), nodeMod, big);
    cleanup.push(() => base.close());
    subjects.push(base);
  }

  const floorObj = BpfObject.load(bpfObjectPath('xdp_pass'));
  cleanup.push(() => floorObj.close());
  const specs = caseSpecs(floorObj.program('xdp_pass').fd);
  const live = LiveHarness.load();
  // A kernel that refuses live frames (EPERM on 6.18.44-fc-v1300) gets its
  // live rows from the AF_PACKET sender; with neither, the rows print why
  // and the JSON carries null.
  const liveFramesRefused = LiveHarness.unavailable();
  cleanup.push(() => live.close());
  const up0 = inNetns(NS, () => {
    live.attachSink('up1');
    return ifIndex('up0');
  });
  const chosen = chooseLiveSource({ live, liveFramesRefused, ns: NS, up0, cpu: env.cpu });
  const liveSource = 'unavailable' in chosen ? null : chosen;
  const liveUnavailable = 'unavailable' in chosen ? chosen.unavailable : null;
  if (liveSource) cleanup.push(() => liveSource.finish());

  const measure = (s: Subject, c: CaseSpec, count: number, k: number): ReturnType<typeof loop> | null => {
    const fd = c.prog(s);
    if (fd === null) return null;
    configure(s.dp, c.mode);
    const data = c.data(s, k);
    return c.netns ? inNetns(NS, () => loop(fd, data, count)) : loop(fd, data, count);
  };
  // Warm-up: pins the established flows, fills the FIB caches.
  for (const s of subjects) for (const c of specs) for (let k = 0; k < FRAME_VARIANTS; k++) measure(s, c, 200, k);

  const rows: Row[] = specs.map((c) => ({ name: c.name, key: c.key, samples: new Map(), wall: new Map() }));
  const order = (r: number): Subject[] => (r % 2 ? [...subjects].reverse() : subjects);
  // Subjects alternate in chunks inside every case (ABBA…), so load bursts
  // from other work on the machine hit both revisions alike.
  for (let r = 0; r < ROUNDS; r++) {
    specs.forEach((c, i) => {
      const acc = new Map<Subject, { kernel: number; wall: number; n: number }>();
      for (let done = 0, k = r; done < N; done += CHUNK, k++) {
        const n = Math.min(CHUNK, N - done);
        for (const s of order(k)) {
          const res = measure(s, c, n, k);
          if (!res) continue;
          if (res.retval !== c.expect(s) || res.mismatches !== 0) {
            throw new Error(`${s.label}: ${c.name}: verdict ${res.retval} (expected ${c.expect(s)}), ${res.mismatches} mismatches`);
          }
          const a = acc.get(s) ?? { kernel: 0, wall: 0, n: 0 };
          a.kernel += res.kernelNs * n;
          a.wall += res.wallNs * n;
          a.n += n;
          acc.set(s, a);
        }
      }
      for (const [s, a] of acc) {
        // One floor for the run: both subjects' floor samples are the same program.
        const who = c.key === 'floor_ns' ? 'floor' : s.label;
        push(rows[i]!.samples, who, a.kernel / a.n);
        push(rows[i]!.wall, who, a.wall / a.n);
      }
    });
  }

  // New flows, a fresh tuple per call (kernel time of each repeat=1 run).
  // These calls are made one at a time from JS, so each runs with the caches
  // JS and N-API left behind; the per-call controls (the same frame every
  // call, made the same way) separate that from what a fresh tuple costs.
  interface FreshSpec {
    base: Buffer;
    vary: boolean;
  }
  const freshRows: (Row & FreshSpec)[] = [
    { name: 'new flow: SYN + option (fresh tuples)', key: 'syn_fresh_ns', base: SYN, vary: true, samples: new Map(), wall: new Map() },
    { name: 'new flow: first ACK, pins the flow', key: 'first_ack_ns', base: ACK, vary: true, samples: new Map(), wall: new Map() },
    { name: 'per-call control: SYN, one tuple', key: 'syn_percall_ns', base: SYN, vary: false, samples: new Map(), wall: new Map() },
    { name: 'per-call control: established', key: 'established_percall_ns', base: ACK, vary: false, samples: new Map(), wall: new Map() },
  ];
  /** Kernel ns summed over calls [from, from + count) of round r, each a new tuple when `vary`. */
  const fresh = (s: Subject, f: FreshSpec, r: number, from: number, count: number): number => {
    const buf = Buffer.from(f.base);
    let total = 0;
    inNetns(NS, () => {
      for (let i = from; i < from + count; i++) {
        if (f.vary) {
          buf.writeUInt16BE(1024 + ((r * FRESH + i) % 64000), 34); // TCP source port: a new flow
          buf.writeUInt16BE(10 + r, 28); // and a new client per round, so rounds never repeat a tuple
        }
        total += runOnce(s.xdp, buf).duration;
      }
    });
    return total;
  };
  const FRESH_CHUNK = Math.max(1, Math.floor(CHUNK / 5));
  for (let r = 0; r < ROUNDS; r++) {
    for (const row of freshRows) {
      const total = new Map<Subject, number>();
      for (let from = 0, k = r; from < FRESH; from += FRESH_CHUNK, k++) {
        for (const s of order(k)) {
          configure(s.dp, 'fib');
          total.set(s, (total.get(s) ?? 0) + fresh(s, row, r, from, Math.min(FRESH_CHUNK, FRESH - from)));
        }
      }
      for (const [s, t] of total) push(row.samples, s.label, t / FRESH);
    }
  }

  // Live traffic.
  interface LiveRow {
    name: string;
    key: string | null;
    runs: Map<string, LiveSample[]>;
  }
  const liveRows: LiveRow[] = [
    { name: liveSource?.method === 'af-packet' ? 'live floor: sender + XDP_TX' : 'live floor: harness + XDP_TX', key: 'mpps_floor_1core', runs: new Map() },
    { name: 'live: established (DNAT, FIB → redirect)', key: 'mpps_established_1core', runs: new Map() },
    { name: 'live: SYN flood, fresh tuples', key: 'mpps_syn_flood_1core', runs: new Map() },
    { name: 'live control: SYN, one tuple', key: 'mpps_syn_one_tuple_1core', runs: new Map() },
  ];
  const liveRun = (target: number, frame: Buffer, isFresh: boolean, packets: number): LiveSample => liveSource!.run({ fd: target }, frame, isFresh, packets);
  for (const s of subjects) {
    configure(s.dp, 'fib');
    inNetns(NS, () => runOnce(s.xdp, LIVE_ACK)); // pin the live flow
  }
  const liveRounds = liveSource ? ROUNDS : 0;
  // Per round, LIVE_TURNS alternating turns of LIVE_N / LIVE_TURNS frames
  // per case and subject, summed into one run per round.
  const merge = (a: LiveSample | undefined, b: LiveSample): LiveSample => {
    if (!a) return b;
    const packets = a.packets + b.packets;
    const wallNs = a.wallNs + b.wallNs;
    const counted = a.counted + b.counted;
    return {
      packets,
      wallNs,
      counted,
      mpps: (counted / wallNs) * 1000,
      kernelNsPerPacket: a.kernelNsPerPacket === null || b.kernelNsPerPacket === null ? null : (a.kernelNsPerPacket * a.packets + b.kernelNsPerPacket * b.packets) / packets,
      sent: a.sent + b.sent,
      seen: a.seen + b.seen,
      sunk: a.sunk + b.sunk,
    };
  };
  const perTurn = Math.max(1, Math.floor(LIVE_N / LIVE_TURNS));
  for (let r = 0; r < liveRounds; r++) {
    const round = new Map<LiveRow, Map<string, LiveSample>>(liveRows.map((row) => [row, new Map()]));
    const add = (row: LiveRow, who: string, run: LiveSample): void => {
      const m = round.get(row)!;
      m.set(who, merge(m.get(who), run));
    };
    for (let k = 0; k < LIVE_TURNS; k++) {
      add(liveRows[0]!, 'floor', liveRun(liveSource!.floor.fd, LIVE_ACK, false, perTurn));
      for (const s of order(r + k)) {
        configure(s.dp, 'fib');
        add(liveRows[1]!, s.label, liveRun(s.xdp, LIVE_ACK, false, perTurn));
        add(liveRows[2]!, s.label, liveRun(s.xdp, LIVE_SYN, true, perTurn));
        add(liveRows[3]!, s.label, liveRun(s.xdp, LIVE_SYN, false, perTurn));
      }
    }
    for (const [row, m] of round) {
      for (const [who, run] of m) {
        const list = row.runs.get(who) ?? [];
        list.push(run);
        row.runs.set(who, list);
      }
    }
  }
  liveSource?.finish();

  // The kernel's alternatives on the same rig and from the same generator:
  // frames handed to up0's stack (XDP_PASS), forwarded by IPVS / nftables,
  // counted at up1. A fresh namespace per variant and round (conntrack
  // starts empty).
  const kernelUnavailable = new Map<KernelVariant, string>();
  const kernelRuns = new Map<string, LiveSample[]>(); // `${variant}/${kind}`
  for (const v of KERNEL_VARIANTS) {
    const why = (liveSource ? null : liveUnavailable) ?? kernelVariantAvailable(v, NS);
    if (why) kernelUnavailable.set(v, why);
  }
  let rigs = 0;
  for (let r = 0; r < ROUNDS; r++) {
    for (const v of KERNEL_VARIANTS) {
      if (kernelUnavailable.has(v)) continue;
      const rigNs = `${NS}-k${rigs++}`;
      withKernelRig(v, { ns: rigNs, vip: VIP, port: 80 }, live, (up0, addressed) => {
        const src = liveSource!.on(rigNs, up0);
        try {
          for (const [kind, frame, isFresh, packets] of [
            ['established', LIVE_ACK, false, LIVE_N],
            ['syn_flood', LIVE_SYN, true, Math.min(LIVE_N, KERNEL_FLOOD_MAX)],
          ] as const) {
            const res = src.run(src.pass, addressed(frame), isFresh, packets);
            kernelRuns.set(`${v}/${kind}`, [...(kernelRuns.get(`${v}/${kind}`) ?? []), res]);
          }
        } finally {
          src.finish();
        }
      });
    }
  }

  // ---------------------------------------------------------- report
  const floorNs = median(rows[0]!.samples.get('floor')!);
  const med = (row: Row, who: string): number | null => {
    const xs = row.key === 'floor_ns' ? row.samples.get('floor') : row.samples.get(who);
    return xs && xs.length ? median(xs) : null;
  };
  const liveMed = (row: LiveRow, who: string): number | null => {
    const xs = (row.key === 'mpps_floor_1core' ? row.runs.get('floor') : row.runs.get(who))?.map((x) => x.mpps);
    return xs && xs.length ? median(xs) : null;
  };
  const hasBase = subjects.length > 1;
  const fmt = (x: number | null, d = 1): string => (x === null ? '—' : x.toFixed(d));
  const ratio = (a: number | null, b: number | null): string => (a === null || b === null || b <= 0 ? '—' : `${(a / b).toFixed(2)}×`);

  console.log(`edge datapath benchmark: ${N} × repeat=1 per case (testRunLoop), ${ROUNDS} rounds, median; pinned to CPU ${env.cpu}`);
  console.log(`host: ${host.cpu}, kernel ${host.kernel}, ${host.cpus} CPUs, load average ${host.loadavg_1m} at start (shared machine)`);
  if (env.baseline) console.log(`baseline: ${env.baseline.ref} = ${env.baseline.commit.slice(0, 12)}, its own objects and EdgeDatapath, measured interleaved in this process`);
  if (baselineNodeNote) console.log(baselineNodeNote);
  console.log('ns/packet = the kernel-measured BPF_PROG_TEST_RUN duration; "wall" adds the syscall and N-API (too noisy to subtract)');
  console.log('forwarding (default): bpf_fib_lookup with the per-CPU result cache → XDP_REDIRECT; "gateway MAC" rows: fixed next hop, XDP_TX (Katran-style)');
  const head = `${'case'.padEnd(40)} ${'ns/pkt'.padStart(7)} ${'net'.padStart(7)} ${'target'.padStart(7)} ${'wall'.padStart(6)}`;
  console.log(hasBase ? `${head} ${'base net'.padStart(9)} ${'× baseline'.padStart(10)}` : head);
  const targets: Record<string, number> = { pass_ns: 30, syn_option_ns: 110, established_ns: 90 };
  const nsLine = (row: Row, wall: string): void => {
    const m = med(row, 'current');
    if (m === null) return;
    const isFloor = row.key === 'floor_ns';
    const net = isFloor ? null : m - floorNs;
    const tgt = row.key && targets[row.key] !== undefined ? `≤ ${targets[row.key]}` : '';
    let line = `${row.name.padEnd(40)} ${fmt(m).padStart(7)} ${(isFloor ? '—' : fmt(net)).padStart(7)} ${tgt.padStart(7)} ${wall.padStart(6)}`;
    if (hasBase) {
      const b = med(row, 'baseline');
      const bnet = b === null || isFloor ? null : b - floorNs;
      line += ` ${(isFloor ? '—' : fmt(bnet)).padStart(9)} ${(isFloor ? '' : ratio(net, bnet)).padStart(10)}`;
    }
    console.log(line);
  };
  for (const row of rows) {
    const wall = row.wall.get(row.key === 'floor_ns' ? 'floor' : 'current');
    nsLine(row, wall ? median(wall).toFixed(0) : '—');
  }
  for (const row of freshRows) nsLine(row, '—');
  // IPv6 against IPv4, net of the floor, same run (target: within 15 %).
  /** This revision's median for `key` (raw), and net of the floor. */
  const raw = (key: string): number | null => {
    const row = rows.find((r) => r.key === key);
    return row ? med(row, 'current') : null;
  };
  const net = (key: string): number | null => {
    const m = raw(key);
    return m === null ? null : m - floorNs;
  };
  const pairs: Array<[string, string]> = [['pass6_ns', 'pass_ns'], ['syn_option6_ns', 'syn_option_ns'], ['established6_ns', 'established_ns'], ['ip6ip6_established_ns', 'ipip_established_ns']];
  console.log(`IPv6 / IPv4 (net ns, this run; target ≤ 1.15×): ${pairs.map(([a, b]) => `${a} ${ratio(net(a), net(b))}`).join(', ')}`);
  // The node's programs run on tc: "net" subtracts the XDP floor, so the skb
  // test-run overhead (the edge tc pass row) stays in both; raw ratios too.
  const nodePairs: Array<[string, string]> = [['node_option6_ns', 'node_option_ns'], ['node_reply6_ns', 'node_reply_ns']];
  console.log(`node IPv6 / IPv4 (this run; target ≤ 1.15×): ${nodePairs.map(([a, b]) => `${a} ${ratio(net(a), net(b))} net, ${ratio(raw(a), raw(b))} raw`).join('; ')}`);
  if (liveSource?.method === 'af-packet') {
    console.log(`live traffic, method af-packet (live frames refused: ${liveFramesRefused}): a userspace AF_PACKET sender (sendmmsg batches of 64, PACKET_QDISC_BYPASS) pinned to CPU ${env.cpu} transmits real frames from up1 into the program on up0 (native XDP); ${LIVE_N} frames per round in ${LIVE_TURNS} alternating turns`);
    console.log('  Mpps on one CPU = frames back at up1\'s sink / wall time of the sends; "sent" = frames sent over all rounds, "unseen" = of those, frames the program never ran on (lost in the veth), "not back" = frames it ran on that did not reach the sink (the sink counts unicast frames only: up0\'s own IPv6 MLD reports, set off by every XDP attach, are not the run\'s); the sender dominates (an skb, two copies and a NAPI poll per frame): compare "× floor" and "+ns" (wall ns a frame costs over the floor\'s), not absolute Mpps with live frames\'');
  } else if (liveSource) {
    console.log(`live traffic, method live-frames (BPF_F_TEST_XDP_LIVE_FRAMES, ${LIVE_N} per round in ${LIVE_TURNS} alternating turns, batch 64): Mpps on one CPU = frames / wall time of the runs; "sent" = frames generated over all rounds, "not back" = of those, frames that did not reach the peer veth`);
  }
  const liveHead = `${'case'.padEnd(40)} ${'Mpps'.padStart(7)} ${'min–max'.padStart(11)} ${'× floor'.padStart(7)} ${'+ns'.padStart(6)} ${'kern ns'.padStart(7)} ${'sent'.padStart(9)} ${'unseen'.padStart(6)} ${'not back'.padStart(8)}`;
  console.log(hasBase ? `${liveHead} ${'base Mpps'.padStart(9)} ${'× floor'.padStart(7)} ${'× baseline'.padStart(10)}` : liveHead);
  const liveFloor = liveMed(liveRows[0]!, 'floor');
  /**
   * Mpps (median), min–max, × floor, "+ns" (wall ns per frame over the
   * floor's: 1000 / Mpps − 1000 / floor Mpps, what the program adds to a
   * frame's trip on this CPU), kernel ns, and the frame accounting of a
   * row's runs.
   */
  const liveCells = (runs: LiveSample[], m: number | null, floor: number | null): string => {
    const mpps = runs.map((x) => x.mpps);
    const [sent, seen, sunk] = (['sent', 'seen', 'sunk'] as const).map((k) => runs.reduce((a, x) => a + x[k], 0)) as [number, number, number];
    const kern = runs.length && runs.every((x) => x.kernelNsPerPacket !== null) ? median(runs.map((x) => x.kernelNsPerPacket!)) : null;
    return `${fmt(m, 3).padStart(7)} ${`${fmt(Math.min(...mpps), 2)}–${fmt(Math.max(...mpps), 2)}`.padStart(11)} ${(floor === null ? '—' : ratio(m, floor)).padStart(7)} ${(floor === null || m === null || m <= 0 ? '—' : fmt(1000 / m - 1000 / floor, 0)).padStart(6)} ${fmt(kern, 0).padStart(7)} ${String(sent).padStart(9)} ${String(sent - seen).padStart(6)} ${String(seen - sunk).padStart(8)}`;
  };
  for (const row of liveRows) {
    const who = row.key === 'mpps_floor_1core' ? 'floor' : 'current';
    const runs = row.runs.get(who) ?? [];
    if (!liveSource) {
      console.log(`${row.name.padEnd(40)} unavailable: ${liveUnavailable}`);
      continue;
    }
    const m = liveMed(row, who);
    let line = `${row.name.padEnd(40)} ${liveCells(runs, m, who === 'floor' ? null : liveFloor)}`;
    if (hasBase && who !== 'floor') {
      const b = liveMed(row, 'baseline');
      line += ` ${fmt(b, 3).padStart(9)} ${ratio(b, liveFloor).padStart(7)} ${ratio(liveMed(row, 'current'), b).padStart(10)}`;
    }
    console.log(line);
  }
  console.log(`the kernel's alternatives on the same rig, method ${liveSource?.method ?? '—'} (frames handed to up0's stack by XDP_PASS, forwarded by the kernel, counted at up1; one fresh namespace per run; × floor against the live floor above):`);
  const kernelJson: Record<string, { established: number | null; syn_flood: number | null } | null> = {};
  for (const v of KERNEL_VARIANTS) {
    const why = kernelUnavailable.get(v);
    if (why) {
      console.log(`${`kernel ${v}`.padEnd(40)} unavailable: ${why}`);
      kernelJson[v] = null;
      continue;
    }
    const fig: { established: number | null; syn_flood: number | null } = { established: null, syn_flood: null };
    for (const kind of ['established', 'syn_flood'] as const) {
      const runs = kernelRuns.get(`${v}/${kind}`) ?? [];
      const mpps = runs.map((x) => x.mpps);
      const m = mpps.length ? median(mpps) : null;
      fig[kind] = m === null ? null : Math.round(m * 1000) / 1000;
      const name = `kernel ${v}: ${kind === 'established' ? 'established' : 'SYN flood, fresh tuples'}`;
      console.log(`${name.padEnd(40)} ${liveCells(runs, m, liveFloor)}`);
    }
    kernelJson[v] = fig;
  }
  console.log('SYNs never enter the connection table (spoofed floods cannot fill it); a flow is pinned by its first non-SYN packet.');
  for (const s of subjects) {
    const v6 = s.ipv6Mb > 0 ? `, of which ${s.ipv6Mb.toFixed(1)} MB the IPv6 maps (sized for use: ipv6 on; ${(s.mapsMb - s.ipv6Mb).toFixed(1)} MB without)` : '';
    console.log(`${s.label}: 10 000 services / 100 000 backends: load ${s.loadS.toFixed(2)} s (target ≤ 5), maps ${s.mapsMb.toFixed(1)} MB memlock (target ≤ 256)${v6}`);
    if ('note' in s.node) console.log(`${s.label}: ${s.node.note}; node_option_ns / node_reply_ns = null`);
    else if ('note' in s.node.v6) console.log(`${s.label}: ${s.node.v6.note}; node_option6_ns / node_reply6_ns = null`);
  }
  console.log('node reply is a tc program: its figure includes the skb test-run overhead (compare the edge tc pass row), not the XDP floor.');

  const round1 = (x: number | null): number | null => (x === null ? null : Math.round(x * 10) / 10);
  const round3 = (x: number | null): number | null => (x === null ? null : Math.round(x * 1000) / 1000);
  const figures = (who: Subject): Record<string, number | null> => {
    const out: Record<string, number | null> = {};
    for (const row of [...rows, ...freshRows]) if (row.key) out[row.key] = round1(med(row, who.label));
    for (const row of liveRows) if (row.key) out[row.key] = round3(liveMed(row, who.label));
    out.maps_10k_mb = round1(who.mapsMb);
    out.maps_ipv6_mb = round1(who.ipv6Mb);
    out.load_10k_s = round3(who.loadS);
    return out;
  };
  const json: Record<string, unknown> = { ...figures(current), kernel_mpps: kernelJson, kernel_unavailable: Object.fromEntries(kernelUnavailable), live_method: liveSource?.method ?? null, live_unavailable: liveUnavailable, host };
  if (env.baseline && subjects[1]) {
    json.baseline_ref = env.baseline.ref;
    json.baseline_commit = env.baseline.commit;
    json.baseline = figures(subjects[1]);
  }
  console.log(JSON.stringify(json));
}

if (process.env[CHILD_ENV]) {
  childMain().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
} else {
  void parent();
}
