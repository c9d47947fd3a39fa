// Small facts about the daemons we run (gobgpd, FRR's bfdd and, in tests,
// zebra/bgpd): whose files their run directories must be, and which pid a
// pid file names.
import { readFileSync } from 'node:fs';

/** Whether a process exists (EPERM: it does, but is not ours to signal). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The live process a pid file names, or undefined (no file, garbage, or dead). */
export function livePidFrom(pidFile: string): number | undefined {
  try {
    const n = Number(readFileSync(pidFile, 'utf8').trim());
    return Number.isInteger(n) && n > 0 && pidAlive(n) ? n : undefined;
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
