// How fast the emulator ran this boot, measured in the boot itself.
//
// Boot to READY is timed on an emulated CPU (TCG), so it is a product of the
// image and of the host's speed — and this machine's host speed moves by up
// to 1.8× between runs an hour apart with nothing else running (docs/
// boot-time.md, session 19). A fixed wall-clock budget then fails an
// unchanged image. The firmware phase is the reference program: from QEMU's
// start to OVMF's boot manager loading our boot entry, the emulator runs only
// Debian's OVMF (before any byte of the image is read), a fixed workload.
// Its time against the same phase on the reference host gives the host's
// slowdown; the boot budget scales by it — never below the 60 s, and
// at most doubled, so a regression of the image itself still fails.
//
// The firmware runs on one vCPU, so it does not see a host whose cores are
// taken by other processes (the boot needs both): a busy host booted the
// image in 86.8 s with the firmware phase at its usual 5.4 s. So the boot
// also counts the CPU time that processes other than QEMU used while it ran
// (/proc/stat's busy time less QEMU's own), and the budget grows by the
// share of the host's CPU they took — time the emulator could not have had.

import { readFileSync } from 'node:fs';
import { parseProcStat } from './quiet-host.js';

/** OVMF's boot manager starting the first boot entry: the end of the firmware phase. */
export const FIRMWARE_DONE_RE = /BdsDxe: (?:loading|starting) Boot/;

/**
 * The firmware phase on the reference host (the 2-vCPU AMD EPYC VM of the
 * README's measured results, idle): the low end of what it showed on
 * 2026-12-07 — 5.2–6.2 s over the boots logged that day with the host
 * idle. A lower reference only makes the budget stricter.
 */
export const REFERENCE_FIRMWARE_S = 5.2;

/** The budget grows with the host's slowdown up to this factor. */
export const MAX_HOST_FACTOR = 2;

/** Seconds at which the firmware phase ended, from a console timeline ("  5.2 line" rows, LogTail), or null. */
export function firmwareSeconds(timeline: readonly string[]): number | null {
  for (const row of timeline) {
    const m = /^\s*(\d+(?:\.\d+)?) (.*)$/.exec(row);
    if (m && FIRMWARE_DONE_RE.test(m[2]!)) return Number(m[1]);
  }
  return null;
}

/** CPU time counters at one instant: the host's (/proc/stat, all CPUs) and QEMU's own (its /proc/PID/stat), in clock ticks. */
export interface CpuSnapshot {
  idle: number;
  total: number;
  /** QEMU's user + system time, every thread; null: not readable (it exited). */
  qemu: number | null;
}

/** utime + stime of a /proc/PID/stat line (fields 14 and 15; the command name may hold spaces and parentheses). */
export function procCpuTicks(stat: string): number | null {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): utime and stime are fields 14 and 15.
  const u = Number(rest[11]);
  const s = Number(rest[12]);
  return Number.isFinite(u) && Number.isFinite(s) ? u + s : null;
}

export function cpuSnapshot(pid: number | undefined): CpuSnapshot {
  const host = parseProcStat(readFileSync('/proc/stat', 'utf8'));
  let qemu: number | null = null;
  try {
    if (pid !== undefined) qemu = procCpuTicks(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    // QEMU already gone: its time is unknown (null).
  }
  return { ...host, qemu };
}

/** The share of the host's CPU time between two snapshots that processes other than QEMU used (0–1; null: unknown). */
export function othersShare(a: CpuSnapshot, b: CpuSnapshot): number | null {
  const total = b.total - a.total;
  if (a.qemu === null || b.qemu === null || total <= 0) return null;
  const busy = total - (b.idle - a.idle);
  const others = Math.max(0, busy - (b.qemu - a.qemu));
  return Math.round(Math.min(1, others / total) * 100) / 100;
}

/** Others' share counted at most this much (the factor it gives is capped anyway). */
const MAX_OTHERS_SHARE = 0.75;

/**
 * How many times slower than on the reference host, with the host to
 * itself, this boot ran: the firmware phase's ratio (per-core speed) over
 * the share of the CPU left to QEMU (others' use). 1 when faster, unknown
 * or implausible; at most MAX_HOST_FACTOR.
 */
export function hostFactor(firmwareS: number | null, others: number | null = null, reference = REFERENCE_FIRMWARE_S): number {
  const speed = firmwareS === null || !Number.isFinite(firmwareS) || firmwareS <= 0 ? 1 : Math.max(1, firmwareS / reference);
  const share = others === null || !Number.isFinite(others) ? 0 : Math.min(MAX_OTHERS_SHARE, Math.max(0, others));
  return Math.round(Math.min(MAX_HOST_FACTOR, speed / (1 - share)) * 100) / 100;
}

export function describeHostSpeed(firmwareS: number | null, others: number | null, factor: number): string {
  const fw = firmwareS === null
    ? 'firmware phase not seen on the console (per-core speed unknown)'
    : `firmware phase ${firmwareS.toFixed(1)} s against ${REFERENCE_FIRMWARE_S} s on the reference host (${(firmwareS / REFERENCE_FIRMWARE_S).toFixed(2)}× its time)`;
  const busy = others === null ? 'other processes\' CPU use unknown' : `other processes took ${Math.round(others * 100)}% of the host's CPU during the boot`;
  return `${fw}; ${busy}: boot budget × ${factor.toFixed(2)}`;
}
