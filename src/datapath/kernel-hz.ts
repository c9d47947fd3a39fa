// The running kernel's tick rate (CONFIG_HZ), which the edge program needs
// to turn jiffies into nanoseconds without a helper call
// (bpf/include/edge_time.h). Read from the kernel's build config: Debian
// ships it as /boot/config-<release>, kernels with IKCONFIG_PROC expose
// /proc/config.gz. 0 when neither is there or the value is not one the
// program knows — the program then reads the coarse clock through its helper.
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { gunzipSync } from 'node:zlib';

/** Tick rates the edge program converts itself (edge_time.h). */
export const KNOWN_HZ = [100, 250, 1000] as const;

/** CONFIG_HZ from a kernel config's text; 0 when absent or not in KNOWN_HZ. */
export function parseKernelHz(config: string): number {
  const m = /^CONFIG_HZ=(\d+)\s*$/m.exec(config);
  const hz = m ? Number(m[1]) : 0;
  return (KNOWN_HZ as readonly number[]).includes(hz) ? hz : 0;
}

/** The running kernel's CONFIG_HZ (see parseKernelHz), from the first config file that can be read. */
export function kernelHz(files: readonly string[] = [`/boot/config-${release()}`, '/proc/config.gz']): number {
  for (const f of files) {
    let text: string;
    try {
      const raw = readFileSync(f);
      text = (raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw).toString('latin1');
    } catch {
      continue; // missing or unreadable: try the next
    }
    return parseKernelHz(text);
  }
  return 0;
}
