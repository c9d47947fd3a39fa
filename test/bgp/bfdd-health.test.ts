// A bfdd that (re)starts while the edge is unhealthy must come up with its
// sessions shut down: the config file it reads at start always carries the
// current health, also when the daemon was not running as health changed
// (on the appliance systemd restarts it from that file).
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BfddSupervisor } from '../../src/bgp/bfdd.js';

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
