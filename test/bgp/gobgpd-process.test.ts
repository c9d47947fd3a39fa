// GobgpdProcess against a real gobgpd (no BGP listener is started, so no
// namespace is needed): a gobgpd that is alive but slow to answer — a loaded
// machine, a hung moment — must be waited for and adopted, never doubled.
// Starting a second one removed the first one's API socket (the first kept
// announcing, unreachable for ever) and the second could not bind port 179.
import test from 'ava';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GobgpdProcess } from '../../src/bgp/gobgpd-process.js';
import { pidAlive } from '../../src/bgp/daemon-files.js';

function setup(t: { teardown: (fn: () => void | Promise<void>) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-gobgpd-proc-'));
  const socket = join(dir, 'gobgp.sock');
  const make = () => new GobgpdProcess({ binary: 'gobgpd', socket, logFile: join(dir, 'gobgpd.log') });
  const started: GobgpdProcess[] = [];
  t.teardown(async () => {
    for (const g of started) {
      if (g.pid !== undefined && pidAlive(g.pid)) process.kill(g.pid, 'SIGCONT');
      await g.stop();
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir, socket, make, started };
}

test('a gobgpd that answers slowly is waited for and adopted; no second gobgpd, its socket kept', async (t) => {
  const { socket, make, started } = setup(t);
  const first = make();
  started.push(first);
  await first.start();
  const pid = first.pid!;
  process.kill(pid, 'SIGSTOP'); // alive, not answering
  const resume = setTimeout(() => process.kill(pid, 'SIGCONT'), 1500);
  t.teardown(() => clearTimeout(resume));
  const second = make();
  started.push(second);
  await second.start(10000);
  t.true(second.adopted, 'adopted the running gobgpd');
  t.is(second.pid, pid);
  t.true(existsSync(socket), 'its API socket is still there');
});

/** The process's state letter from /proc (T: stopped). */
function procState(pid: number): string {
  try {
    return /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '?';
  } catch {
    return 'gone';
  }
}

/** The state letters of all of the process's threads. */
function threadStates(pid: number): string {
  try {
    return readdirSync(`/proc/${pid}/task`).map((tid) => procState(Number(tid))).join('');
  } catch {
    return 'gone';
  }
}

/** Waits (≤ 5 s) until every thread of `pid` has stopped: SIGSTOP's group stop is asynchronous. */
async function stopped(pid: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!/^T+$/.test(threadStates(pid)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

function readLog(dir: string): string {
  try {
    return readFileSync(join(dir, 'gobgpd.log'), 'utf8').slice(-2000);
  } catch {
    return '(none)';
  }
}

test('a gobgpd that stays hung is reported, not replaced', async (t) => {
  const { dir, socket, make, started } = setup(t);
  const first = make();
  started.push(first);
  await first.start();
  const pid = first.pid!;
  process.kill(pid, 'SIGSTOP');
  await stopped(pid);
  const second = make();
  started.push(second); // stopped too, should it have started another gobgpd
  const outcome = second.start(1500);
  // A resolved start names what it did: adopted which pid, or started which.
  await t.throwsAsync(outcome, { message: new RegExp(`pid ${pid}.*does not answer`) },
    `second: adopted=${second.adopted} pid=${second.pid} (the hung one: ${pid}, threads ${threadStates(pid)}); gobgpd log:\n${readLog(dir)}`);
  t.true(pidAlive(pid));
  t.true(existsSync(socket), 'its API socket is still there');
  process.kill(pid, 'SIGCONT');
});

test('a recorded pid that is not gobgpd (reused) is stale: a fresh gobgpd starts', async (t) => {
  const { socket, make, started } = setup(t);
  const { writeFileSync } = await import('node:fs');
  writeFileSync(`${socket}.pid`, `${process.pid}\n`); // alive, but this test runner, not gobgpd
  const g = make();
  started.push(g);
  await g.start(10000);
  t.false(g.adopted);
  t.not(g.pid, process.pid);
});

test('bgp.gobgp.socket naming an existing file that is no socket is refused, and the file is left alone', async (t) => {
  const { dir, started } = setup(t);
  const file = join(dir, 'edgelb.yaml');
  writeFileSync(file, 'node: {}\n');
  const g = new GobgpdProcess({ binary: 'gobgpd', socket: file, logFile: join(dir, 'gobgpd.log') });
  started.push(g);
  await t.throwsAsync(() => g.start(5000), { message: new RegExp(`bgp\\.gobgp\\.socket ${file} exists and is not a socket`) });
  t.is(readFileSync(file, 'utf8'), 'node: {}\n');
});
