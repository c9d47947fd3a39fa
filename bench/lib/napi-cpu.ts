// CPU time an edge spends on its packets, measurable per namespace.
//
// Packet processing runs in softirq context, which Linux charges to no
// process (and, without CONFIG_IRQ_TIME_ACCOUNTING, to whatever task it
// interrupted). With threaded NAPI (/sys/class/net/IF/threaded = 1) a
// device's receive poll runs in its own kernel thread "napi/IF-ID", whose
// scheduler run time (/proc/PID/schedstat, ns) is exactly the CPU the device's
// receive path used: for an edge's uplink that is the XDP program and its
// XDP_TX/XDP_REDIRECT, or the kernel's GRO, IP forwarding, netfilter/IPVS and
// transmit, up to handing the frame to the next veth (whose own processing
// then runs as a softirq, which PollMeter leaves out).
//
// A veth polls with NAPI only when it runs XDP or GRO was asked for
// (`ethtool -K IF gro on`), and only takes skbs into NAPI when the sending
// peer has no TSO (veth_skb_is_eligible_for_gro); prepareVethNapi does both.
// Detaching XDP gives the peer its TSO back (veth_xdp_set), so turn it off
// again after every detach (senderTsoOff).
//
// A thread's run time is more than its polls, though: on a VM, waking it up
// and switching it in costs microseconds per wake (one frame per wake at lab
// rates), and without CONFIG_IRQ_TIME_ACCOUNTING (this kernel) it is also
// charged for every softirq that runs when it re-enables bottom halves —
// other devices' packets, TCP timers. PollMeter sums only the polls (raw
// tracepoints sched_switch, napi_poll, softirq_entry/exit); cpuNs() gives the
// whole run time for comparison.
//
// The threads run SCHED_FIFO (realtime()): like softirq processing they then
// preempt ordinary work as soon as a packet arrives, instead of queueing
// behind every runnable task of a busy machine, which would add milliseconds
// of latency that softirq processing never has.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BpfObject } from '../../src/datapath/loader.js';
import { native } from '../../src/datapath/loader/binding.js';
import { repoRoot } from '../../src/assets.js';
import { nsRun } from '../../test/lib/netns.js';

export interface NapiThread {
  pid: number;
  /** napi/IF-ID: unique (NAPI ids are global). */
  comm: string;
  /** What the thread polls, for messages (e.g. "edge1 eth0"). */
  label: string;
}

function checkIfname(ifname: string): void {
  if (!/^[\w.-]{1,15}$/.test(ifname)) throw new Error(`interface name '${ifname}' is not plain`);
}

/** NAPI kernel threads whose name says they poll `ifname` (of any namespace). */
export function napiThreads(ifname: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const comm = readFileSync(`/proc/${d}/comm`, 'utf8').trim();
      if (comm.startsWith(`napi/${ifname}-`)) out.set(Number(d), comm);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/** GRO asked for (NAPI without XDP) on `ifname`; TSO off on the peer side that sends into it. */
export async function prepareVethNapi(ns: string, ifname: string, sender?: { ns: string; ifname: string }): Promise<void> {
  await nsRun(ns, ['ethtool', '-K', ifname, 'gro', 'on']);
  if (sender) senderTsoOff(sender);
}

/** TSO off on the veth that sends into a NAPI-polled one (synchronous: called right after an XDP detach). */
export function senderTsoOff(sender: { ns: string; ifname: string }): void {
  execFileSync('ip', ['netns', 'exec', sender.ns, 'ethtool', '-K', sender.ifname, 'tso', 'off'], { stdio: 'pipe' });
}

/** SCHED_FIFO for a NAPI thread, so it runs when packets arrive the way softirq processing would. */
export function realtime(t: NapiThread, priority = 50): void {
  execFileSync('chrt', ['-f', '-p', String(priority), String(t.pid)], { stdio: 'pipe' });
}

/** Frames received on ns/ifname (XDP-handled ones included). */
export function rxPackets(ns: string, ifname: string): number {
  checkIfname(ifname);
  return Number(execFileSync('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${ifname}/statistics/rx_packets`], { encoding: 'utf8' }).trim());
}

/**
 * Turns threaded NAPI on for ns/ifname and returns its poll thread(s), found
 * as the napi/IFNAME-* threads that appear when it is switched on.
 */
export async function threadedNapi(ns: string, ifname: string, label: string): Promise<NapiThread[]> {
  checkIfname(ifname);
  const path = `/sys/class/net/${ifname}/threaded`;
  const write = (v: 0 | 1): Promise<unknown> => nsRun(ns, ['sh', '-c', `echo ${v} > ${path}`]);
  await write(0);
  const before = napiThreads(ifname);
  await write(1);
  const found: NapiThread[] = [];
  for (const [pid, comm] of napiThreads(ifname)) if (!before.has(pid)) found.push({ pid, comm, label });
  if (found.length === 0) throw new Error(`${label}: no NAPI thread appeared after ${path} = 1 (is NAPI on: XDP attached or GRO asked for?)`);
  return found;
}

/** Sum of the threads' run time in ns; throws when one of them is gone (its NAPI was deleted). */
export function cpuNs(threads: NapiThread[]): number {
  let n = 0;
  for (const t of threads) {
    let comm = '';
    let stat = '';
    try {
      comm = readFileSync(`/proc/${t.pid}/comm`, 'utf8').trim();
      stat = readFileSync(`/proc/${t.pid}/schedstat`, 'utf8');
    } catch {
      // fall through: reported below
    }
    if (comm !== t.comm) throw new Error(`${t.label}: NAPI thread ${t.comm} (pid ${t.pid}) is gone; the device's NAPI was deleted`);
    n += Number(stat.split(' ')[0]);
  }
  return n;
}

/**
 * The watched NAPI threads' poll time (bench/bpf/napi_poll_time.c): from
 * being switched in, or from the previous poll, to the end of each poll,
 * minus softirqs that ran inside — the edge's own receive-path work without
 * the wake-up and context switches around it.
 */
export class PollMeter {
  private readonly links: number[] = [];

  private constructor(private readonly obj: BpfObject) {}

  static start(threads: NapiThread[]): PollMeter {
    const m = new PollMeter(BpfObject.load(join(repoRoot(), 'bench', 'bpf', 'out', 'napi_poll_time.o')));
    try {
      for (const t of threads) m.obj.map('poll_time').update(u32(t.pid), Buffer.alloc(24));
      for (const [prog, tp] of [
        ['on_switch', 'sched_switch'],
        ['on_poll', 'napi_poll'],
        ['on_softirq_entry', 'softirq_entry'],
        ['on_softirq_exit', 'softirq_exit'],
      ] as const) {
        m.links.push(native().rawTracepointOpen(tp, m.obj.program(prog).fd));
      }
    } catch (e) {
      m.close();
      throw e;
    }
    return m;
  }

  /** Summed poll time (ns) and poll count of these threads so far. */
  read(threads: NapiThread[]): { ns: number; polls: number } {
    let ns = 0;
    let polls = 0;
    for (const t of threads) {
      const v = this.obj.map('poll_time').lookup(u32(t.pid));
      if (!v) continue;
      ns += Number(v.readBigUInt64LE(0));
      polls += Number(v.readBigUInt64LE(8));
    }
    return { ns, polls };
  }

  close(): void {
    for (const l of this.links.splice(0)) native().closeFd(l);
    this.obj.close();
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}
