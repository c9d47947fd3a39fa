// Live-traffic throughput without BPF_F_TEST_XDP_LIVE_FRAMES: real frames
// from a userspace sender (bench/native/afpacket_tx.c: AF_PACKET,
// PACKET_QDISC_BYPASS, sendmmsg batches) over a veth pair into the program
// under test.
//
// The rig is a namespace with a veth pair: the program under test runs in
// native XDP mode on `rx` (the receiving veth); the sender transmits out of
// `tx`, whose XDP sink (live_sink in bench/bpf/live_frames.c, attached by
// LiveHarness.attachSink) drops and counts what the program sent back with
// XDP_TX or XDP_REDIRECT — so a run also proves its frames were handled.
//
// Everything runs on the sender's one pinned CPU: a veth transmit schedules
// the peer's NAPI on the transmitting CPU, and the softirq runs when the
// sender's send re-enables bottom halves, so the program under test, its
// transmit and the sink's drop all run inside the sender's send call.
// Mpps = frames counted at the sink / wall time of the send.
//
// The sender dominates: per frame the kernel allocates an skb, copies the
// frame from user space, copies it again into a page with XDP headroom on
// the veth (an AF_PACKET skb has too little), and polls NAPI for that one
// frame — a perf profile of the bare XDP_TX floor on 6.18.44-fc-v1300 puts
// live_tx and live_sink together under 1 % of the CPU. The program's own
// cost therefore shows as its rate relative to the floor (the same rig in
// front of a bare XDP_TX, live_tx) in the same run, not as an absolute
// figure comparable with live frames'.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { detachXdp, ifIndex, inNetns } from '../../src/datapath/loader.js';
import { native } from '../../src/datapath/loader/binding.js';
import { XDP_FLAGS_DRV_MODE } from '../../src/datapath/loader/constants.js';
import { repoRoot } from '../../src/assets.js';
import type { ProgramLike } from './baseline.js';
import type { LiveHarness } from './live.js';

export type SendMethod = 'mmsg' | 'ring';

export function senderPath(): string {
  return join(repoRoot(), 'bench', 'native', 'out', 'afpacket-tx');
}

export interface SenderResult {
  method: SendMethod;
  /** Frames the kernel accepted (the sender retries ENOBUFS, so this is the count asked for). */
  sent: number;
  /** From the first frame to the last send's return (the sender's monotonic clock). */
  wallNs: number;
  retries: number;
  /** The CPU the sender finished on (its pinned one). */
  cpu: number;
}

export interface SendOptions {
  ns: string;
  ifname: string;
  frame: Buffer;
  count: number;
  /** A new source address (low 16 bits) and port per frame (Ethernet + IPv4 without options + TCP only). */
  fresh: boolean;
  cpu: number;
  method?: SendMethod;
  batch?: number;
}

/**
 * Runs the sender in `ns` (bounded: killed when it takes longer than 20 s +
 * 50 µs per frame, i.e. below 20 000 frames per second).
 */
export function sendFrames(o: SendOptions): SenderResult {
  const args = ['netns', 'exec', o.ns, senderPath(), '--ifname', o.ifname, '--count', String(o.count), '--frame', o.frame.toString('hex'), '--cpu', String(o.cpu), '--method', o.method ?? 'mmsg', '--batch', String(o.batch ?? 64)];
  if (o.fresh) args.push('--fresh');
  let out: string;
  try {
    out = execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: Math.ceil(20_000 + o.count / 20), killSignal: 'SIGKILL' });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`afpacket-tx in ${o.ns}: ${(err.stderr || err.message).trim()}`, { cause: e });
  }
  const r = JSON.parse(out.trim().split('\n').pop()!) as { method: SendMethod; sent: number; wall_ns: number; retries: number; cpu: number };
  return { method: r.method, sent: r.sent, wallNs: r.wall_ns, retries: r.retries, cpu: r.cpu };
}

/** Frames the XDP program of a veth has run on (its rx_queue_N_xdp_packets, summed). */
export function xdpPackets(ns: string, ifname: string): number {
  const out = execFileSync('ip', ['netns', 'exec', ns, 'ethtool', '-S', ifname], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  let n = 0;
  for (const m of out.matchAll(/^\s*rx_queue_\d+_xdp_packets:\s*(\d+)$/gm)) n += Number(m[1]);
  return n;
}

export interface AfPacketRun {
  packets: number;
  /** Frames the sender handed to the kernel. */
  sent: number;
  /** Frames the program under test ran on (the receiving veth's XDP count). */
  seen: number;
  /** Frames that came back to the sender's veth (the sink's count). */
  sunk: number;
  wallNs: number;
  /** sunk / wall time, in millions per second. */
  mpps: number;
  retries: number;
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * The rig of one namespace: `rx` gets the program under test, `tx` the
 * sender and the harness's sink (attach it first: harness.attachSink(tx)
 * inside `ns`).
 */
export class AfPacketRig {
  constructor(
    readonly ns: string,
    readonly rx: string,
    readonly tx: string,
    private readonly sink: LiveHarness,
    readonly cpu: number,
    readonly method: SendMethod = 'mmsg',
  ) {}

  /** Attach `target` to rx in native mode, replacing whatever XDP program is there. */
  attach(target: ProgramLike): void {
    inNetns(this.ns, () => native().xdpAttach(ifIndex(this.rx), target.fd, XDP_FLAGS_DRV_MODE));
  }

  detach(): void {
    try {
      inNetns(this.ns, () => detachXdp(this.rx, 'native'));
    } catch {
      // the namespace or the program is gone already
    }
  }

  /** One run: `packets` frames into `target` (attached to rx for the run and left there). */
  run(o: { target: ProgramLike; frame: Buffer; fresh: boolean; packets: number }): AfPacketRun {
    this.attach(o.target);
    const seen0 = xdpPackets(this.ns, this.rx);
    const sunk0 = this.sink.sunkTotal();
    const s = sendFrames({ ns: this.ns, ifname: this.tx, frame: o.frame, count: o.packets, fresh: o.fresh, cpu: this.cpu, method: this.method });
    // The softirq normally finishes inside the sender's send; under load
    // ksoftirqd may take the rest a moment later. Wait (bounded) for the
    // counts to settle, outside the timed window.
    let sunk = this.sink.sunkTotal() - sunk0;
    for (let waited = 0, last = -1; sunk < s.sent && sunk !== last && waited < 500; waited += 5) {
      last = sunk;
      sleepMs(5);
      sunk = this.sink.sunkTotal() - sunk0;
    }
    const seen = xdpPackets(this.ns, this.rx) - seen0;
    return { packets: o.packets, sent: s.sent, seen, sunk, wallNs: s.wallNs, mpps: (sunk / s.wallNs) * 1000, retries: s.retries };
  }

  /**
   * Why this rig cannot measure (null: it can): the sender is not built, or
   * 64 frames through a bare XDP_TX (`floor`) did not come back.
   */
  probe(floor: ProgramLike): string | null {
    if (!existsSync(senderPath())) return `${senderPath()} is not built (scripts/setup builds it)`;
    try {
      const r = this.run({ target: floor, frame: probeFrame(), fresh: false, packets: 64 });
      return r.sunk >= r.sent && r.sent === 64 ? null : `AF_PACKET probe: ${r.sent} sent, ${r.seen} seen by XDP on ${this.rx}, ${r.sunk} back at ${this.tx}`;
    } catch (e) {
      return `AF_PACKET probe: ${(e as Error).message.split('\n')[0]}`;
    } finally {
      this.detach();
    }
  }
}

/** A minimal Ethernet frame (the probe's payload does not matter to a bare XDP_TX). */
function probeFrame(): Buffer {
  const f = Buffer.alloc(60);
  Buffer.from('020000000002020000000001', 'hex').copy(f, 0);
  f.writeUInt16BE(0x0800, 12);
  return f;
}
