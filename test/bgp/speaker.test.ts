// BgpSpeaker against a real gobgpd that appears late, without a router: the
// agent must come up, keep the desired VIPs and configure gobgpd when it answers.
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NO_ATTRS } from '../../src/bgp/attributes.js';
import { FAMILY_V4 } from '../../src/bgp/gobgp-client.js';
import { GobgpdProcess } from '../../src/bgp/gobgpd-process.js';
import { BgpSpeaker } from '../../src/bgp/speaker.js';
import { edgeBgpConfig } from '../lib/gobgpd.js';
import { waitFor } from '../lib/netns.js';
import { pidAlive } from '../../src/bgp/daemon-files.js';

test('speaker starts before gobgpd, then configures it and announces when it appears', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-speaker-'));
  const bgp = { ...edgeBgpConfig(dir, []), gobgp: { ...edgeBgpConfig(dir, []).gobgp, manage: false } };
  // listenPort -1: no BGP listener, so this test needs no namespace.
  const speaker = new BgpSpeaker({ node: { asn: 65123, routerId: '192.0.2.1' }, bgp }, { listenPort: -1, reconcileIntervalMs: 200 });
  const gobgpd = new GobgpdProcess({ binary: 'gobgpd', socket: bgp.gobgp.socket, logFile: join(dir, 'gobgpd.log') });
  try {
    await speaker.start();
    const before = await speaker.status();
    t.false(before.gobgpdHealthy);
    await t.throwsAsync(speaker.setDesired([{ prefix: '198.51.100.7/32', attrs: NO_ATTRS }]));
    await gobgpd.start();
    t.false(gobgpd.adopted);
    const announced = await waitFor(async () => {
      const rib = await speaker.client.listPath('GLOBAL', FAMILY_V4).catch(() => []);
      return rib.some((d) => d.prefix === '198.51.100.7/32');
    }, 10000);
    t.true(announced, 'the VIP set before gobgpd existed is announced once it answers');
    t.is((await speaker.client.getBgp()).asn, 65123);
    t.true((await speaker.status()).gobgpdHealthy);
  } finally {
    await speaker.close();
    await gobgpd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('with gobgpdWaitMs, start() waits for a gobgpd that comes up late and configures it in the first round', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-speaker-'));
  const bgp = { ...edgeBgpConfig(dir, []), gobgp: { ...edgeBgpConfig(dir, []).gobgp, manage: false } };
  // No reconcile loop: only the wait inside start() can have configured it.
  const speaker = new BgpSpeaker({ node: { asn: 65124, routerId: '192.0.2.2' }, bgp }, { listenPort: -1, reconcileIntervalMs: 0, gobgpdWaitMs: 20_000 });
  const gobgpd = new GobgpdProcess({ binary: 'gobgpd', socket: bgp.gobgp.socket, logFile: join(dir, 'gobgpd.log') });
  try {
    const t0 = Date.now();
    const late = new Promise((r) => setTimeout(r, 1000)).then(() => gobgpd.start());
    await speaker.start();
    await late;
    t.true(Date.now() - t0 >= 1000, 'start() waited for gobgpd');
    t.is((await speaker.client.getBgp()).asn, 65124, 'global config applied by start() itself');
    t.true((await speaker.status()).gobgpdHealthy);
  } finally {
    await speaker.close();
    await gobgpd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('gobgpdWaitMs is bounded: without gobgpd, start() gives up after the wait and leaves it to the loop', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-speaker-'));
  const bgp = { ...edgeBgpConfig(dir, []), gobgp: { ...edgeBgpConfig(dir, []).gobgp, manage: false } };
  const speaker = new BgpSpeaker({ node: { asn: 65125, routerId: '192.0.2.3' }, bgp }, { listenPort: -1, reconcileIntervalMs: 200, gobgpdWaitMs: 600 });
  try {
    const t0 = Date.now();
    await speaker.start();
    const waited = Date.now() - t0;
    t.true(waited >= 600 && waited < 5000, `waited ${waited} ms`);
    t.false((await speaker.status()).gobgpdHealthy);
  } finally {
    await speaker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Whether every thread of `pid` has stopped (SIGSTOP's group stop is asynchronous). */
function allStopped(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).every((tid) => /^State:\s+T/m.test(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8')));
  } catch {
    return false;
  }
}

/** How long `p` took to settle, or null if it had not within `ms`. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<number | null> {
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.then(() => true, () => true), new Promise<false>((res) => (timer = setTimeout(() => res(false), ms)))]);
  clearTimeout(timer);
  return r ? Date.now() - t0 : null;
}

test('a hung gobgpd (SIGSTOP) is reported within seconds, and a VIP change meanwhile fails within seconds, is kept and applied once it answers', async (t) => {
  t.timeout(120_000);
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-speaker-'));
  const bgp = { ...edgeBgpConfig(dir, []), gobgp: { ...edgeBgpConfig(dir, []).gobgp, manage: false } };
  const speaker = new BgpSpeaker({ node: { asn: 65126, routerId: '192.0.2.4' }, bgp }, { listenPort: -1, reconcileIntervalMs: 200 });
  const gobgpd = new GobgpdProcess({ binary: 'gobgpd', socket: bgp.gobgp.socket, logFile: join(dir, 'gobgpd.log') });
  let pid: number | undefined;
  try {
    await gobgpd.start();
    pid = gobgpd.pid!;
    await speaker.start();
    await speaker.setDesired([{ prefix: '198.51.100.8/32', attrs: NO_ATTRS }]);
    t.true((await speaker.status()).gobgpdHealthy);
    process.kill(pid, 'SIGSTOP'); // alive, its socket accepting, answering nothing
    t.true(await waitFor(async () => allStopped(pid!), 5000));
    // status() feeds health, /readyz and whether this edge counts as advertising.
    let status: Awaited<ReturnType<BgpSpeaker['status']>> | undefined;
    const statusMs = await settledWithin(speaker.status().then((s) => (status = s)), 15_000);
    t.not(statusMs, null, 'status() still waiting after 15 s (a ListPeer stream with a 60 s deadline)');
    t.false(status?.gobgpdHealthy ?? true);
    // A VIP change (the Kubernetes side's applyVips) must fail soon, not hold every later round for a minute.
    const change = speaker.setDesired([{ prefix: '198.51.100.8/32', attrs: NO_ATTRS }, { prefix: '198.51.100.9/32', attrs: NO_ATTRS }]);
    const changeMs = await settledWithin(change, 15_000);
    t.not(changeMs, null, 'setDesired still waiting after 15 s');
    await change.catch(() => undefined);
    process.kill(pid, 'SIGCONT');
    const announced = await waitFor(async () => {
      const rib = await speaker.client.listPath('GLOBAL', FAMILY_V4).catch(() => []);
      return rib.some((d) => d.prefix === '198.51.100.9/32');
    }, 10000);
    t.true(announced, 'the VIP set given while gobgpd hung is announced once it answers');
  } finally {
    if (pid !== undefined && pidAlive(pid)) process.kill(pid, 'SIGCONT');
    await speaker.close();
    await gobgpd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an agent restarted but not yet told the VIPs (first pass, or the API server unreachable): drain withdraws what it adopted, undrain and a gobgpd restart bring it back', async (t) => {
  t.timeout(60_000);
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-speaker-'));
  const bgp = { ...edgeBgpConfig(dir, []), gobgp: { ...edgeBgpConfig(dir, []).gobgp, manage: false } };
  const cfg = { node: { asn: 65127, routerId: '192.0.2.5' }, bgp };
  const gobgpd = (): GobgpdProcess => new GobgpdProcess({ binary: 'gobgpd', socket: bgp.gobgp.socket, logFile: join(dir, 'gobgpd.log') });
  let g = gobgpd();
  const first = new BgpSpeaker(cfg, { listenPort: -1, reconcileIntervalMs: 200 });
  const second = new BgpSpeaker(cfg, { listenPort: -1, reconcileIntervalMs: 200 });
  const rib = async (): Promise<string[]> =>
    (await second.client.listPath('GLOBAL', FAMILY_V4).catch(() => [])).map((d) => `${d.prefix} ${JSON.stringify(d.paths[0]?.pattrs.find((a) => String(a['@type']).endsWith('CommunitiesAttribute')) ?? null)}`).sort();
  try {
    await g.start();
    await first.start();
    await first.setDesired([
      { prefix: '198.51.100.10/32', attrs: { ...NO_ATTRS, communities: ['65000:10'] } },
      { prefix: '198.51.100.11/32', attrs: NO_ATTRS },
    ]);
    await first.close(); // a handover: gobgpd keeps announcing
    await second.start();
    await new Promise((r) => setTimeout(r, 500)); // a few reconcile rounds
    const adopted = await rib();
    t.is(adopted.length, 2);
    await second.drain(); // `edgelb drain`, or the drain before SIGTERM ends the agent (which then detaches XDP)
    t.deepEqual(await rib(), [], 'drained: nothing announced');
    await second.undrain();
    t.deepEqual(await rib(), adopted, 'undrained: the adopted VIPs again, as they were');
    await g.stop(); // gobgpd restarts: its RIB is empty
    g = gobgpd();
    await g.start();
    t.true(await waitFor(async () => JSON.stringify(await rib()) === JSON.stringify(adopted), 10_000), `re-announced after the gobgpd restart: ${JSON.stringify(await rib())}`);
    await second.setDesired([{ prefix: '198.51.100.11/32', attrs: NO_ATTRS }]);
    t.deepEqual((await rib()).map((r) => r.split(' ')[0]), ['198.51.100.11/32'], 'the first desired state replaces what was adopted');
  } finally {
    await first.close();
    await second.close();
    await g.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
