// Small facts about the daemons we run (gobgpd, FRR's bfdd and, in tests,
// zebra/bgpd): whose files their run directories must be, which pid a pid
// file names, whether a pid still is the process it was, and how to stop one.
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** Whether a process exists (EPERM: it does, but is not ours to signal). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Fields 3 onwards of /proc/PID/stat (the state letter first), or undefined when there is no such process. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
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
  return statFields(pid)?.[19];
}

/** The process's state letter (R, S, D, T, Z, …), or undefined when there is no such process. */
export function processState(pid: number): string | undefined {
  return statFields(pid)?.[0];
}

/** Exited, or a zombie that serves nothing any more. */
function gone(pid: number): boolean {
  const state = processState(pid);
  return state === undefined || state === 'Z';
}

/**
 * `signal` (SIGTERM), then SIGKILL after `timeoutMs`, and wait for the
 * process to exit. Only the process `pid` names now — or, given `startTime`
 * (processStartTime), the one it named then — is ever signalled: should it
 * exit and its pid be reused while we wait, the newcomer is left alone.
 */
export async function killAndWait(pid: number, timeoutMs = 5000, startTime?: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const born = startTime ?? processStartTime(pid);
  const ours = () => born !== undefined && processStartTime(pid) === born;
  if (!ours() || gone(pid)) return;
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!ours() || gone(pid)) return;
    await sleep(25);
  }
  if (!ours()) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  const hard = Date.now() + 2000;
  while (Date.now() < hard && ours() && !gone(pid)) await sleep(25);
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
