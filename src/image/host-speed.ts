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

/** OVMF's boot manager starting the first boot entry: the end of the firmware phase. */
export const FIRMWARE_DONE_RE = /BdsDxe: (?:loading|starting) Boot/;

/**
 * The firmware phase on the reference host (the 2-vCPU AMD EPYC VM of the
 * README's measured results, idle, multi-threaded TCG as the timed boot):
 * median of the timed boots measured on 2026-12-07.
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

/**
 * How many times slower than the reference host the emulator ran, by the
 * firmware phase: 1 when faster, unknown or implausible; at most MAX_HOST_FACTOR.
 */
export function hostFactor(firmwareS: number | null, reference = REFERENCE_FIRMWARE_S): number {
  if (firmwareS === null || !Number.isFinite(firmwareS) || firmwareS <= 0) return 1;
  const f = firmwareS / reference;
  return Math.round(Math.min(MAX_HOST_FACTOR, Math.max(1, f)) * 100) / 100;
}

export function describeHostSpeed(firmwareS: number | null, factor: number): string {
  if (firmwareS === null) return 'firmware phase not seen on the console: host speed unknown, budget unscaled';
  const rel = firmwareS / REFERENCE_FIRMWARE_S;
  return `firmware phase ${firmwareS.toFixed(1)} s against ${REFERENCE_FIRMWARE_S} s on the reference host: ${rel.toFixed(2)}× its time, boot budget × ${factor.toFixed(2)}`;
}
