// Live-traffic throughput: BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES,
// through the restore-and-tail-call harness in bench/bpf/live_frames.c.
//
// The kernel generates `packets` frames from a page pool, runs the harness
// on each (which writes the template frame back, optionally with a fresh
// source address/port, and tail-calls the program under test) and really
// transmits what the program returns XDP_TX / XDP_REDIRECT for. Run it in a
// namespace whose egress veth has the harness's sink attached on the peer
// (attachSink): the sink counts what arrived, so a run also proves that its
// frames were sent.
//
// Packets per second = packets / wall time of the BPF_PROG_RUN call on one
// pinned CPU: generation, the harness, the program, the transmit and the
// receiving veth's XDP drop all run on that CPU (the peer's NAPI poll runs in
// the caller's softirq). The kernel's own duration covers less (it is
// reported too, not used).
import { join } from 'node:path';
import { release } from 'node:os';
import { BpfObject, BPF_F_TEST_XDP_LIVE_FRAMES, type BpfProgram } from '../../src/datapath/loader.js';
import { repoRoot } from '../../src/assets.js';
import type { ProgramLike } from './baseline.js';

/** Must match LIVE_MAX_FRAME, struct live_frame and enum live_counter in bench/bpf/live_frames.c. */
const MAX_FRAME = 256;
const COUNTER = { restored: 0, noTarget: 1, sunk: 2, ignored: 3 } as const;

export interface LiveRun {
  packets: number;
  wallNs: number;
  /** packets / wall time, in millions per second. */
  mpps: number;
  /** The kernel's BPF_PROG_RUN duration per packet (excludes part of the transmit path). */
  kernelNsPerPacket: number;
  /** Frames the harness prepared, tail calls that failed, frames that reached the sink. */
  restored: number;
  noTarget: number;
  sunk: number;
}

export function benchObjectPath(name: string): string {
  return join(repoRoot(), 'bench', 'bpf', 'out', `${name}.o`);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

export class LiveHarness {
  private constructor(readonly obj: BpfObject) {}

  static load(path = benchObjectPath('live_frames')): LiveHarness {
    return new LiveHarness(BpfObject.load(path));
  }

  /**
   * Why this kernel will not run live frames (null: it will). One frame to
   * the sink (XDP_DROP: nothing is sent anywhere) on loopback. Some kernels
   * refuse BPF_F_TEST_XDP_LIVE_FRAMES outright — 6.18.44-fc-v1300 answers
   * EPERM to root with CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN, for any
   * program — and then there is no live figure to report.
   */
  static unavailable(): string | null {
    const h = LiveHarness.load();
    try {
      const frame = Buffer.alloc(60);
      frame.writeUInt16BE(0x0800, 12);
      h.run({ target: h.obj.program('live_sink'), frame, fresh: false, packets: 1, ingressIfindex: 1 });
      return null;
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'EPERM' || code === 'EOPNOTSUPP' || code === 'EINVAL' || code === 'ENOTSUPP') {
        return `this kernel (${release()}) refuses BPF_F_TEST_XDP_LIVE_FRAMES: ${(e as Error).message}`;
      }
      throw e;
    } finally {
      h.close();
    }
  }

  /** The floor target: a bare XDP_TX behind the same harness. */
  get txProgram(): BpfProgram {
    return this.obj.program('live_tx');
  }

  /** The kernel's path as the target: XDP_PASS, the frame goes up the ingress device's stack. */
  get passProgram(): BpfProgram {
    return this.obj.program('live_pass');
  }

  /** Attach the sink to the receiving veth (call inside the namespace). */
  attachSink(ifname: string): void {
    this.obj.program('live_sink').attachXdp(ifname, 'native');
  }

  /** Unicast frames the sink has counted so far (all CPUs), for callers that time their own sends. */
  sunkTotal(): number {
    return this.counter(COUNTER.sunk);
  }

  /** Multicast frames the sink dropped without counting them (the rig's own IPv6 MLD reports). */
  ignoredTotal(): number {
    return this.counter(COUNTER.ignored);
  }

  private counter(idx: number): number {
    const v = this.obj.map('live_counters').lookup(u32(idx));
    let n = 0;
    if (v) for (let o = 0; o + 8 <= v.length; o += 8) n += Number(v.readBigUInt64LE(o));
    return n;
  }

  /**
   * One live run of `packets` frames (call inside the namespace that has
   * `ingressIfindex`). `fresh`: a new source address and port per frame
   * (the frame must be Ethernet + IPv4 without options + TCP).
   */
  run(o: { target: ProgramLike; frame: Buffer; fresh: boolean; packets: number; ingressIfindex: number; batchSize?: number }): LiveRun {
    if (o.frame.length > MAX_FRAME) throw new RangeError(`live frame of ${o.frame.length} bytes > ${MAX_FRAME}`);
    if (o.fresh && (o.frame.length < 54 || o.frame.readUInt16BE(12) !== 0x0800 || o.frame[14] !== 0x45 || o.frame[23] !== 6)) {
      throw new RangeError('fresh tuples need an Ethernet + IPv4 (no options) + TCP frame');
    }
    this.obj.map('live_target').update(u32(0), u32(o.target.fd));
    const tmpl = Buffer.alloc(8 + MAX_FRAME);
    tmpl.writeUInt32LE(o.frame.length, 0);
    tmpl.writeUInt32LE(o.fresh ? 1 : 0, 4);
    o.frame.copy(tmpl, 8);
    this.obj.map('live_template').update(u32(0), tmpl);
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    const ctx = Buffer.alloc(24);
    ctx.writeUInt32LE(o.frame.length, 4);
    ctx.writeUInt32LE(o.ingressIfindex, 12);
    const before = [this.counter(COUNTER.restored), this.counter(COUNTER.noTarget), this.counter(COUNTER.sunk)];
    const t0 = process.hrtime.bigint();
    const r = this.obj.program('live_restore').testRun({
      data: o.frame,
      repeat: o.packets,
      flags: BPF_F_TEST_XDP_LIVE_FRAMES,
      ctxIn: ctx,
      batchSize: o.batchSize ?? 64,
    });
    const wallNs = Number(process.hrtime.bigint() - t0);
    const [restored, noTarget, sunk] = [COUNTER.restored, COUNTER.noTarget, COUNTER.sunk].map((c, i) => this.counter(c) - before[i]!) as [number, number, number];
    return { packets: o.packets, wallNs, mpps: (o.packets / wallNs) * 1000, kernelNsPerPacket: r.duration, restored, noTarget, sunk };
  }

  close(): void {
    this.obj.close();
  }
}
