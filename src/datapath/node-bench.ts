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
