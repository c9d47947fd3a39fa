// A bfdd that (re)starts while the edge is unhealthy must come up with its
// sessions shut down: the config file it reads at start always carries the
// current health, also when the daemon was not running as health changed
// (on the appliance systemd restarts it from that file).
import test from 'ava';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BfddSupervisor } from '../../src/bgp/bfdd.js';
import { Cleanup, createNetns, nsRun, nsWrap, uniqueId } from '../../src/lab/netns.js';

test('health written to bfdd.conf even while bfdd is down, so a restarted bfdd starts shut down', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-bfdd-health-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sup = new BfddSupervisor({ binary: '/usr/lib/frr/bfdd', runDir: dir, spawn: false, user: 'root' });
  const peer = { address: '192.0.2.1', localAddress: '192.0.2.10', multihop: false, minRxMs: 100, minTxMs: 100, multiplier: 3 };
  // No bfdd runs (systemd is restarting it): apply() writes the file and says so.
  await t.throwsAsync(() => sup.apply([peer]), { message: /bfdd is not running/ });
  t.notRegex(readFileSync(join(dir, 'bfdd.conf'), 'utf8'), /^ {2}shutdown$/m);
  await sup.setHealthy(false);
  t.regex(readFileSync(join(dir, 'bfdd.conf'), 'utf8'), /^ {2}shutdown$/m, 'the file the restarted daemon reads is shut down');
  await sup.setHealthy(true);
  t.notRegex(readFileSync(join(dir, 'bfdd.conf'), 'utf8'), /^ {2}shutdown$/m);
});

test('a health change whose vtysh fails (timed out) is made at the next call, not recorded as done', async (t) => {
  t.timeout(60_000);
  const cleanup = new Cleanup();
  t.teardown(async () => {
    const errors = await cleanup.run();
    if (errors.length > 0) throw errors[0];
  });
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-bfdd-health-'));
  cleanup.add('dir', () => rmSync(dir, { recursive: true, force: true }));
  chmodSync(dir, 0o755); // bfdd drops to user frr and must reach its run dir below this one
  const ns = await createNetns(`elbbh${uniqueId()}`, cleanup);
  await nsRun(ns, ['ip', 'addr', 'add', '192.0.2.10/32', 'dev', 'lo']);
  // vtysh's configuration commands fail while the flag file exists (as when vtysh times out on a busy machine).
  const flag = join(dir, 'vtysh-fails');
  const wrap = join(dir, 'flaky');
  writeFileSync(wrap, `#!/bin/sh\ncase " $* " in *" vtysh "*"configure terminal"*) if [ -e ${flag} ]; then echo "vtysh: simulated timeout" >&2; exit 1; fi ;; esac\nexec "$@"\n`);
  chmodSync(wrap, 0o755);
  const sup = new BfddSupervisor({ binary: '/usr/lib/frr/bfdd', runDir: join(dir, 'bfdd'), spawn: true, wrap: [wrap, ...nsWrap(ns)] });
  cleanup.add('bfdd', () => sup.stop());
  const peer = { address: '192.0.2.1', localAddress: '192.0.2.10', multihop: false, minRxMs: 100, minTxMs: 100, multiplier: 3 };
  await sup.apply([peer]);
  const status = async (): Promise<string | undefined> => (await sup.sessions()).find((s) => s.peer === peer.address)?.status;
  t.not(await status(), 'shutdown');

  writeFileSync(flag, '');
  await t.throwsAsync(sup.setHealthy(false), { message: /simulated timeout/ });
  t.not(await status(), 'shutdown', 'the failed change did not reach bfdd');
  rmSync(flag);
  t.false(existsSync(flag));
  await new Promise((r) => setTimeout(r, 1100)); // a failed change is tried again at most once a second
  await sup.setHealthy(false); // the coupling's next call (every 200 ms)
  t.is(await status(), 'shutdown', 'unhealthy: the session is shut down');

  writeFileSync(flag, '');
  await t.throwsAsync(sup.setHealthy(true));
  rmSync(flag);
  await new Promise((r) => setTimeout(r, 1100));
  await sup.setHealthy(true);
  t.not(await status(), 'shutdown', 'healthy again: the session is enabled');
});

test('bgp.bfdd.runDir naming an existing directory (/run, /tmp by mistake) is not handed to the bfdd user; one the agent creates is', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-bfdd-rundir-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const peer = { address: '192.0.2.1', localAddress: '192.0.2.10', multihop: false, minRxMs: 100, minTxMs: 100, multiplier: 3 };
  const existing = new BfddSupervisor({ binary: '/usr/lib/frr/bfdd', runDir: dir, spawn: false, user: 'nobody' });
  await t.throwsAsync(() => existing.apply([peer]), { message: /bfdd is not running/ });
  t.is(statSync(dir).uid, 0, 'an existing directory changed owner');
  const made = join(dir, 'bfdd');
  const fresh = new BfddSupervisor({ binary: '/usr/lib/frr/bfdd', runDir: made, spawn: false, user: 'nobody' });
  await t.throwsAsync(() => fresh.apply([peer]), { message: /bfdd is not running/ });
  t.is(statSync(made).uid, 65534);
});
