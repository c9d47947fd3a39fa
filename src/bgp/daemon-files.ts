// Small facts about the daemons we run (gobgpd, FRR's bfdd and, in tests,
// zebra/bgpd): whose files their run directories must be, which pid a pid
// file names, and whether a pid still is the process it was.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

/** Whether a process exists (EPERM: it does, but is not ours to signal). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * When the process started (clock ticks since boot, field 22 of
 * /proc/PID/stat), or undefined when there is no such process. With the pid
 * it names one process: pids are reused, and soon — pid_max is 32 768 on a
 * small machine, and a busy test run wraps it — so a pid remembered from
 * earlier may by now be someone else's.
 */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * The live process a pid file names, or undefined (no file, garbage, or
 * dead) — and, given `binary`, only when that process runs it (its
 * /proc/PID/comm): a pid file outlives a crashed daemon, and its pid may by
 * now be another program's.
 */
export function livePidFrom(pidFile: string, binary?: string): number | undefined {
  try {
    const n = Number(readFileSync(pidFile, 'utf8').trim());
    if (!Number.isInteger(n) || n <= 0 || !pidAlive(n)) return undefined;
    if (binary !== undefined && readFileSync(`/proc/${n}/comm`, 'utf8').trim() !== basename(binary).slice(0, 15)) return undefined;
    return n;
  } catch {
    return undefined;
  }
}

/** uid/gid of a system user (FRR's daemons drop to `frr`), or null when there is none. */
export function userIds(user: string): { uid: number; gid: number } | null {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${user}:`));
  if (!line) return null;
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}
