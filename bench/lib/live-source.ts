// Where bench:datapath's live-traffic rows get their frames: live frames
// (BPF_PROG_RUN + BPF_F_TEST_XDP_LIVE_FRAMES, bench/lib/live.ts) when the
// kernel allows them, else a userspace AF_PACKET sender over the veth pair
// (bench/lib/afpacket.ts). Both run the program under test on one pinned
// CPU, send what it returns XDP_TX / XDP_REDIRECT for out of up0 and count
// it at up1's sink; they differ in what generates the frames, which the
// floor (a bare XDP_TX behind the same generator) measures.
import { inNetns } from '../../src/datapath/loader.js';
import type { ProgramLike } from './baseline.js';
import { AfPacketRig } from './afpacket.js';
import type { LiveHarness } from './live.js';

export type LiveMethod = 'live-frames' | 'af-packet';

export interface LiveSample {
  packets: number;
  wallNs: number;
  /** The frames the rate counts: every generated one (live frames), or those that came back to the sink (af-packet). */
  counted: number;
  /** counted / wall time, millions per second. */
  mpps: number;
  /** Frames the generator produced (live frames) or the sender handed to the kernel (af-packet). */
  sent: number;
  /** Frames the program under test ran on. */
  seen: number;
  /** Frames that came back to the sink. */
  sunk: number;
  /** The kernel's BPF_PROG_RUN duration per packet (live frames only). */
  kernelNsPerPacket: number | null;
}

export interface LiveSource {
  readonly method: LiveMethod;
  /** The floor's target: a bare XDP_TX. */
  readonly floor: ProgramLike;
  /** The kernel's path as the target: XDP_PASS hands the frame to up0's stack (the kernel rigs). */
  readonly pass: ProgramLike;
  run(target: ProgramLike, frame: Buffer, fresh: boolean, packets: number): LiveSample;
  /** Leave nothing attached that the run attached. */
  finish(): void;
  /** The same method on another rig namespace with the same up0 / up1 and up1's sink attached (bench/lib/kernel-rig.ts). */
  on(ns: string, up0: number): LiveSource;
}

function liveFrames(live: LiveHarness, ns: string, ingressIfindex: number): LiveSource {
  return {
    method: 'live-frames',
    floor: live.txProgram,
    pass: live.passProgram,
    run(target, frame, fresh, packets) {
      const r = inNetns(ns, () => live.run({ target, frame, fresh, packets, ingressIfindex }));
      if (r.restored !== r.packets || r.noTarget !== 0) throw new Error(`live run: ${r.restored} of ${r.packets} frames prepared, ${r.noTarget} failed tail calls`);
      return { packets: r.packets, wallNs: r.wallNs, counted: r.packets, mpps: r.mpps, sent: r.packets, seen: r.restored, sunk: r.sunk, kernelNsPerPacket: r.kernelNsPerPacket };
    },
    finish() {},
    on: (other, up0) => liveFrames(live, other, up0),
  };
}

function afPacket(live: LiveHarness, ns: string, cpu: number): LiveSource {
  const rig = new AfPacketRig(ns, 'up0', 'up1', live, cpu);
  return {
    method: 'af-packet',
    floor: live.txProgram,
    pass: live.passProgram,
    run(target, frame, fresh, packets) {
      const r = rig.run({ target, frame, fresh, packets });
      if (r.sent !== packets) throw new Error(`af-packet run: ${r.sent} of ${packets} frames sent`);
      return { packets, wallNs: r.wallNs, counted: r.sunk, mpps: r.mpps, sent: r.sent, seen: r.seen, sunk: r.sunk, kernelNsPerPacket: null };
    },
    finish() {
      rig.detach();
    },
    on: (other) => afPacket(live, other, cpu),
  };
}

/**
 * The live source for the rig namespace `ns` (up0 the program's side, up1
 * the sink's, already attached): live frames unless `liveFramesRefused`
 * says why not, then the AF_PACKET sender pinned to `cpu`; or why neither
 * works.
 */
export function chooseLiveSource(o: { live: LiveHarness; liveFramesRefused: string | null; ns: string; up0: number; cpu: number }): LiveSource | { unavailable: string } {
  if (!o.liveFramesRefused) return liveFrames(o.live, o.ns, o.up0);
  const why = new AfPacketRig(o.ns, 'up0', 'up1', o.live, o.cpu).probe(o.live.txProgram);
  if (why) return { unavailable: `${o.liveFramesRefused}; ${why}` };
  return afPacket(o.live, o.ns, o.cpu);
}
