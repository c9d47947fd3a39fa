// GobgpdProcess against a real gobgpd (no BGP listener is started, so no
// namespace is needed): a gobgpd that is alive but slow to answer — a loaded
// machine, a hung moment — must be waited for and adopted, never doubled.
// Starting a second one removed the first one's API socket (the first kept
// announcing, unreachable for ever) and the second could not bind port 179.
import test from 'ava';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
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

test('a gobgpd that stays hung is reported, not replaced', async (t) => {
  const { socket, make, started } = setup(t);
  const first = make();
  started.push(first);
  await first.start();
  const pid = first.pid!;
  process.kill(pid, 'SIGSTOP');
  const second = make();
  started.push(second); // stopped too, should it have started another gobgpd
  await t.throwsAsync(second.start(1500), { message: new RegExp(`pid ${pid}.*does not answer`) });
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
