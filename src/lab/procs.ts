// Long-lived lab processes (API server, echo pods, agents, daemons) started
// detached inside a namespace with their output in a log file, so `lab up`
// can exit and `lab down` (another process) can stop them by pid.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { sleep } from './netns.js';
import { killAndWait, processState } from '../bgp/daemon-files.js';

export interface LabProcess {
  name: string;
  ns: string;
  pid: number;
  argv: string[];
  log: string;
}

/**
 * Starts `argv` in `ns`, detached, stdout+stderr appended to `log`. Uses
 * nsenter (network namespace only) rather than `ip netns exec`: the latter
 * remounts /sys, which hides bpffs at /sys/fs/bpf, where the agents and the
 * node sync find their pinned maps.
 */
export function spawnInNs(name: string, ns: string, argv: string[], log: string, env: NodeJS.ProcessEnv = process.env): LabProcess {
  const fd = openSync(log, 'a');
  try {
    // ns '' is the caller's own namespace (a control plane on loopback for tests).
    const cmd = ns === '' ? argv : ['nsenter', `--net=/run/netns/${ns}`, '--', ...argv];
    const child = spawn(cmd[0]!, cmd.slice(1), { detached: true, stdio: ['ignore', fd, fd], env });
    if (child.pid === undefined) throw new Error(`${name}: could not start ${argv.join(' ')}`);
    child.unref();
    return { name, ns, pid: child.pid, argv, log };
  } finally {
    closeSync(fd);
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); it is not serving anything.
  const state = processState(pid);
  return state !== undefined && state !== 'Z';
}

/** True when /proc/PID/cmdline still is the process we started (pids get reused). */
export function sameProcess(p: Pick<LabProcess, 'pid' | 'argv'>): boolean {
  try {
    const cmd = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    // nsenter execs the command, so the pid runs argv itself.
    const want = p.argv.filter((a) => !a.startsWith('-')).slice(-1)[0] ?? '';
    return cmd.join(' ').includes(want);
  } catch {
    return false;
  }
}

/** Waits until `log` contains a line matching `re`; throws with the log's tail on timeout or exit. */
export async function waitForLog(p: LabProcess, re: RegExp, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = existsSync(p.log) ? readFileSync(p.log, 'utf8') : '';
    const line = text.split('\n').find((l) => re.test(l));
    if (line !== undefined) return line;
    if (!alive(p.pid)) throw new Error(`${p.name} exited before printing ${re}; log ${p.log}:\n${tail(text)}`);
    if (Date.now() > deadline) throw new Error(`${p.name} did not print ${re} within ${timeoutMs} ms; log ${p.log}:\n${tail(text)}`);
    await sleep(100);
  }
}

export function tail(text: string, lines = 15): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** SIGTERM (or `signal`), then SIGKILL after `graceMs`; resolves once the process is gone (killAndWait: never a newcomer on its pid). */
export async function stopPid(pid: number, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
  await killAndWait(pid, graceMs, undefined, signal);
}

/** Bytes in `file` now (0 when absent): the offset to wait for a fresh log line from. */
export function readSize(file: string): number {
  try {
    return readFileSync(file).length;
  } catch {
    return 0;
  }
}

/** Like waitForLog, but only lines written after `offset` count (a restarted process appends to its old log). */
export async function waitForLogAfter(p: LabProcess, log: string, offset: number, re: RegExp, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = existsSync(log) ? readFileSync(log).subarray(offset).toString('utf8') : '';
    const line = text.split('\n').find((l) => re.test(l));
    if (line !== undefined) return line;
    if (!alive(p.pid)) throw new Error(`${p.name} exited before printing ${re}; last lines of ${log}:\n${tail(text)}`);
    if (Date.now() > deadline) throw new Error(`${p.name} did not print ${re} within ${timeoutMs} ms; last lines of ${log}:\n${tail(text)}`);
    await sleep(100);
  }
}
