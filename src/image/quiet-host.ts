// The timed boot measures the image on an emulated CPU that needs the
// host's cores to itself (ava.config.mjs runs the image tests one at a time
// for that reason). Work that a previous test leaves behind — the kernel
// tearing down a lab's namespaces, daemons still exiting — shares those
// cores and shows up as boot time of the image. Before the timed boot, wait
// (bounded) until the host has been mostly idle for a short window, and say
// how long that took and how idle it was.
import { readFileSync } from 'node:fs';

export interface CpuSample {
  /** Jiffies spent idle or waiting for I/O, summed over the CPUs. */
  idle: number;
  total: number;
}

/** The aggregate "cpu" line of /proc/stat. */
export function parseProcStat(text: string): CpuSample {
  const line = text.split('\n').find((l) => l.startsWith('cpu '));
  if (!line) throw new Error('/proc/stat has no aggregate "cpu" line');
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 4 || f.some((n) => !Number.isFinite(n))) throw new Error(`/proc/stat: cannot read "${line}"`);
  // user nice system idle iowait irq softirq steal (guest time is already in user).
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { idle: f[3]! + (f[4] ?? 0), total };
}

/** The idle share of the CPUs between two samples (1: nothing ran). */
export function idleBetween(a: CpuSample, b: CpuSample): number {
  const dt = b.total - a.total;
  return dt <= 0 ? 1 : (b.idle - a.idle) / dt;
}

export interface QuietOptions {
  /** Idle share a window must reach. */
  minIdle: number;
  windowMs: number;
  /** Give up waiting (and boot anyway) after this long. */
  maxWaitMs: number;
  readStat?: () => string;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

export interface QuietResult {
  quiet: boolean;
  waitedMs: number;
  /** The last window's idle share. */
  idle: number;
}

export async function waitForQuietHost(o: QuietOptions): Promise<QuietResult> {
  const read = o.readStat ?? (() => readFileSync('/proc/stat', 'utf8'));
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = o.now ?? Date.now;
  const t0 = now();
  let prev = parseProcStat(read());
  for (;;) {
    await sleep(o.windowMs);
    const cur = parseProcStat(read());
    const idle = idleBetween(prev, cur);
    const waitedMs = now() - t0;
    if (idle >= o.minIdle) return { quiet: true, waitedMs, idle };
    if (waitedMs >= o.maxWaitMs) return { quiet: false, waitedMs, idle };
    prev = cur;
  }
}

export function describeQuiet(q: QuietResult): string {
  const idle = `${(q.idle * 100).toFixed(0)}% idle`;
  return q.quiet ? `host quiet (${idle}) after ${(q.waitedMs / 1000).toFixed(1)} s` : `host still busy (${idle}) after ${(q.waitedMs / 1000).toFixed(1)} s: booting anyway`;
}
