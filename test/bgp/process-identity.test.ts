// A remembered pid may by now name another process (pid_max is 32 768 on a
// small machine; a busy test run wraps it): stopping "our" daemon must never
// signal the newcomer. A CI run once saw a SIGSTOPped gobgpd of one test
// vanish mid-test; stale-pid signals are one way that happens.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killAndWait, livePidFrom, processStartTime } from '../../src/bgp/daemon-files.js';
import { GobgpdProcess } from '../../src/bgp/gobgpd-process.js';
import { stopPid } from '../../src/lab/procs.js';

/** A child that outlives the test unless killed (stopped in teardown either way). */
function sleeper(t: { teardown: (fn: () => void) => void }, ignoreTerm = false): ChildProcess {
  const child = ignoreTerm ? spawn('sh', ['-c', 'trap "" TERM; sleep 30 & wait'], { stdio: 'ignore' }) : spawn('sleep', ['30'], { stdio: 'ignore' });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));

test('a process\'s start time names it: stable while it runs, gone with it, not the same as an older process\'s', async (t) => {
  const c = sleeper(t);
  const st = processStartTime(c.pid!);
  t.regex(st ?? '', /^\d+$/);
  t.is(processStartTime(c.pid!), st);
  t.not(processStartTime(process.pid), undefined);
  c.kill('SIGKILL');
  await exited(c);
  t.is(processStartTime(c.pid!), undefined);
});

test('killAndWait signals only the process the pid named then: another start time is left alone', async (t) => {
  const c = sleeper(t);
  const st = processStartTime(c.pid!)!;
  await killAndWait(c.pid!, 300, String(Number(st) - 1));
  t.is(c.exitCode, null, 'not signalled');
  t.is(c.signalCode, null);
  await killAndWait(c.pid!, 300, st);
  await exited(c);
  t.is(c.signalCode, 'SIGTERM');
});

test('killAndWait: a process that ignores SIGTERM is killed after the grace time', async (t) => {
  const c = sleeper(t, true);
  await new Promise((r) => setTimeout(r, 200)); // the trap is set
  await killAndWait(c.pid!, 300);
  await exited(c);
  t.is(c.signalCode, 'SIGKILL');
});

test('stopPid stops a process, and a pid with no process is nothing to do', async (t) => {
  const c = sleeper(t);
  await stopPid(c.pid!, 'SIGTERM', 300);
  await exited(c);
  t.is(c.signalCode, 'SIGTERM');
  await t.notThrowsAsync(stopPid(c.pid!, 'SIGTERM', 100));
});

test('GobgpdProcess.stop with a pid file naming a live process that is not gobgpd leaves that process alone', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-pid-reuse-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, 'gobgp.sock');
  const c = sleeper(t);
  writeFileSync(`${socket}.pid`, `${c.pid}\n`); // gobgpd's pid, since reused by `sleep`
  await new GobgpdProcess({ binary: 'gobgpd', socket }).stop(300);
  t.is(c.exitCode, null, 'not signalled');
  t.is(c.signalCode, null);
});

test('a pid file is believed only for the program it belongs to', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-pid-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const c = sleeper(t);
  const file = join(dir, 'x.pid');
  writeFileSync(file, `${c.pid}\n`);
  t.is(livePidFrom(file), c.pid, 'alive');
  t.is(livePidFrom(file, '/usr/bin/sleep'), c.pid, 'and runs sleep');
  t.is(livePidFrom(file, '/usr/lib/frr/bfdd'), undefined, 'but is no bfdd');
  writeFileSync(file, 'garbage\n');
  t.is(livePidFrom(file, 'sleep'), undefined);
});
