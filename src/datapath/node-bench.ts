// Benchmark hook for the node program's hot path: a pod's reply rewritten
// by node_egress (flow lookup, source VIP:port, IP + L4 checksums). The flow
// is learnt the way the datapath learns it — a DSR-option SYN through
// node_ingress — so the measured packet takes the production path.
//
//   const b = prepareNodeReplyBench();
//   const r = b.program.testRunLoop(b.frame, 100_000);   // every call sees the original frame
//   ... r.nsPerCall; compare with bpf/out/tc_pass.o measured the same way
//   b.close();
//
// or measureNodeReply({ count, rounds }) for medians net of the tc floor.
import { BpfObject, type BpfProgram } from './loader.js';
import { bpfObjectPath } from '../assets.js';
import { NodeDatapath } from './node-datapath.js';
import type { DesiredService } from '../model/types.js';

export const BENCH_CLIENT = '198.51.100.7';
export const BENCH_VIP = '203.0.113.10';
export const BENCH_POD = '10.244.1.5';
/** The edge the bench's option frames come from (their Ethernet source is its MAC). */
export const BENCH_EDGE = '192.0.2.1';
const BENCH_EDGE_MAC = '02:00:00:00:00:0a';

export interface NodeReplyBench {
  /** node_egress; expect TC_ACT_UNSPEC (0xffffffff) and a rewritten frame. */
  program: BpfProgram;
  /** A pod → client TCP ACK with 64 bytes of payload matching the learnt flow. */
  frame: Buffer;
  dp: NodeDatapath;
  close(): void;
}

function ip(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}

function sum16(b: Buffer, init = 0): number {
  let s = init;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length & 1) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** Ethernet + IPv4 (optional options) + TCP with correct checksums. */
function tcpFrame(src: string, dst: string, sport: number, dport: number, flags: number, payload: number, ipOptions = Buffer.alloc(0)): Buffer {
  const ihl = 20 + ipOptions.length;
  const tcp = Buffer.alloc(20 + payload, 0x61);
  tcp.writeUInt16BE(sport, 0);
  tcp.writeUInt16BE(dport, 2);
  tcp.writeUInt32BE(1, 4);
  tcp.writeUInt32BE(1, 8);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  tcp.writeUInt16BE(65535, 14);
  tcp.writeUInt16BE(0, 16);
  tcp.writeUInt16BE(0, 18);
  const pseudo = Buffer.concat([ip(src), ip(dst), Buffer.from([0, 6, tcp.length >> 8, tcp.length & 255])]);
  tcp.writeUInt16BE(~sum16(tcp, sum16(pseudo)) & 0xffff, 16);
  const iph = Buffer.alloc(ihl);
  iph[0] = 0x40 | (ihl / 4);
  iph.writeUInt16BE(ihl + tcp.length, 2);
  iph[8] = 64;
  iph[9] = 6;
  ip(src).copy(iph, 12);
  ip(dst).copy(iph, 16);
  ipOptions.copy(iph, 20);
  iph.writeUInt16BE(~sum16(iph) & 0xffff, 10);
  const eth = Buffer.from('02000000000b02000000000a0800', 'hex');
  return Buffer.concat([eth, iph, tcp]);
}

export function prepareNodeReplyBench(opts: { objectPath?: string } = {}): NodeReplyBench {
  const dp = NodeDatapath.open({ maxFlows: 4096, edgeSources: [BENCH_EDGE], ...(opts.objectPath ? { objectPath: opts.objectPath } : {}) });
  try {
    dp.trustEdgeNeighbour(BENCH_EDGE, BENCH_EDGE_MAC);
    const svc: DesiredService = {
      service: 'bench/svc',
      frontend: { vip: BENCH_VIP, port: 80, protocol: 'TCP' },
      mode: 'dsr',
      dispatch: 'ip-option',
      sourceRanges: [],
      affinityTimeoutSeconds: 0,
      backends: [{ ip: BENCH_POD, port: 8080, nodeIp: '192.0.2.21', nodeName: 'bench', weight: 1, state: 'active' }],
    };
    dp.applyServices([svc], { name: 'bench' });
    const opt = Buffer.concat([Buffer.from([0x9e, 8, 0, 80]), ip(BENCH_VIP)]);
    dp.ingress.testRun({ data: tcpFrame(BENCH_CLIENT, BENCH_POD, 40000, 8080, 0x02, 0, opt) });
    const frame = tcpFrame(BENCH_POD, BENCH_CLIENT, 8080, 40000, 0x10, 64);
    const probe = dp.egress.testRun({ data: frame });
    if (!probe.dataOut.subarray(26, 30).equals(ip(BENCH_VIP))) throw new Error('node bench: the egress program did not rewrite the reply to the VIP');
    return { program: dp.egress, frame, dp, close: () => dp.close() };
  } catch (e) {
    dp.close();
    throw e;
  }
}

export interface NodeReplyMeasurement {
  /** Median ns per test-run call of node_egress on the reply. */
  replyNs: number;
  /** Same for bpf/out/tc_pass.o (the skb test-run floor). */
  floorNs: number;
  netNs: number;
  /** Median ns per call of node_egress on a packet of no flow (the pass path). */
  passNs: number;
  /** The kernel's own per-call durations (less syscall noise), same order. */
  kernel: { replyNs: number; floorNs: number; netNs: number; passNs: number };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

/** count × (repeat = 1) calls per round, `rounds` rounds, medians. */
export function measureNodeReply(opts: { count?: number; rounds?: number } = {}): NodeReplyMeasurement {
  const count = opts.count ?? 100_000;
  const rounds = opts.rounds ?? 5;
  const b = prepareNodeReplyBench();
  const floorObj = BpfObject.load(bpfObjectPath('tc_pass'));
  try {
    const floor = floorObj.programs()[0]!.name;
    const floorProg = floorObj.program(floor);
    const other = tcpFrame(BENCH_POD, '198.51.100.99', 8080, 40000, 0x10, 64);
    const r: number[] = [];
    const f: number[] = [];
    const p: number[] = [];
    const kr: number[] = [];
    const kf: number[] = [];
    const kp: number[] = [];
    b.program.testRunLoop(b.frame, 1000);
    floorProg.testRunLoop(other, 1000);
    for (let i = 0; i < rounds; i++) {
      const fl = floorProg.testRunLoop(other, count);
      const re = b.program.testRunLoop(b.frame, count);
      const pa = b.program.testRunLoop(other, count);
      f.push(fl.nsPerCall);
      r.push(re.nsPerCall);
      p.push(pa.nsPerCall);
      kf.push(fl.kernelNsPerCall);
      kr.push(re.kernelNsPerCall);
      kp.push(pa.kernelNsPerCall);
    }
    const replyNs = median(r);
    const floorNs = median(f);
    const k = { replyNs: median(kr), floorNs: median(kf), passNs: median(kp) };
    return { replyNs, floorNs, netNs: replyNs - floorNs, passNs: median(p), kernel: { ...k, netNs: k.replyNs - k.floorNs } };
  } finally {
    floorObj.close();
    b.close();
  }
}

// ---------------------------------------------------------------- IPv6

export const BENCH_CLIENT6 = '2001:db8:c::7';
export const BENCH_VIP6 = '2001:db8:f::10';
export const BENCH_POD6 = 'fd00:10:244:1::5';
export const BENCH_EDGE6 = '2001:db8:e::1';

function ip6(a: string): Buffer {
  const [head = '', tail] = a.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const g = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  g.forEach((x, i) => b.writeUInt16BE(parseInt(x, 16), i * 2));
  return b;
}

/** Ethernet + IPv6 [+ the Destination Options DSR header naming vip:port] + TCP with a correct checksum. */
export function tcp6Frame(src: string, dst: string, sport: number, dport: number, flags: number, payload: number, dsr?: { vip: string; port: number }): Buffer {
  const tcp = Buffer.alloc(20 + payload, 0x61);
  tcp.writeUInt16BE(sport, 0);
  tcp.writeUInt16BE(dport, 2);
  tcp.writeUInt32BE(1, 4);
  tcp.writeUInt32BE(1, 8);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  tcp.writeUInt16BE(65535, 14);
  const pseudo = Buffer.concat([ip6(src), ip6(dst), Buffer.from([0, 0, tcp.length >> 8, tcp.length & 255, 0, 0, 0, 6])]);
  tcp.writeUInt16BE(~sum16(tcp, sum16(pseudo)) & 0xffff, 16);
  let ext = Buffer.alloc(0);
  if (dsr) {
    ext = Buffer.alloc(24);
    ext[0] = 6;
    ext[1] = 2;
    ext[2] = 0x5e;
    ext[3] = 18;
    ext.writeUInt16BE(dsr.port, 4);
    ip6(dsr.vip).copy(ext, 6);
    ext[22] = 1;
  }
  const iph = Buffer.alloc(40);
  iph.writeUInt32BE(0x60000000, 0);
  iph.writeUInt16BE(ext.length + tcp.length, 4);
  iph[6] = dsr ? 60 : 6;
  iph[7] = 64;
  ip6(src).copy(iph, 8);
  ip6(dst).copy(iph, 24);
  const eth = Buffer.from('02000000000b02000000000a86dd', 'hex');
  return Buffer.concat([eth, iph, ext, tcp]);
}

/** The IPv6 bench service (VIP6:80 → POD6:8080 on node "bench"), ip-option dispatch. */
export function benchService6(): DesiredService {
  return {
    service: 'bench/svc6',
    frontend: { vip: BENCH_VIP6, port: 80, protocol: 'TCP' },
    mode: 'dsr',
    dispatch: 'ip-option',
    sourceRanges: [],
    affinityTimeoutSeconds: 0,
    backends: [{ ip: BENCH_POD6, port: 8080, nodeIp: '192.0.2.21', nodeName: 'bench', weight: 1, state: 'active' }],
  };
}

/**
 * The IPv6 twin of the node rows, on a node datapath that already serves
 * `services` (kept) and trusts `edgeMac`: the edge's header SYN of a known
 * flow (trust, VIP and backend checks, refresh, strip) and the pod's reply.
 * Throws when the program does not learn the flow or rewrite the reply.
 */
export function prepareNode6Frames(dp: NodeDatapath, services: readonly DesiredService[], edgeMac: string): { option: Buffer; reply: Buffer } {
  dp.setEdgeSources([...dp.edgeSources(), BENCH_EDGE6]);
  dp.trustEdgeNeighbour(BENCH_EDGE6, edgeMac);
  dp.applyServices([...services, benchService6()]);
  const option = tcp6Frame(BENCH_CLIENT6, BENCH_POD6, 40000, 8080, 0x02, 0, { vip: BENCH_VIP6, port: 80 });
  Buffer.from(edgeMac.split(':').map((x) => parseInt(x, 16))).copy(option, 6);
  dp.ingress.testRun({ data: option });
  const reply = tcp6Frame(BENCH_POD6, BENCH_CLIENT6, 8080, 40000, 0x10, 64);
  const probe = dp.egress.testRun({ data: reply });
  if (!probe.dataOut.subarray(22, 38).equals(ip6(BENCH_VIP6))) throw new Error('node bench: the egress program did not rewrite the IPv6 reply to the VIP');
  return { option, reply };
}
