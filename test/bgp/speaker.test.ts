// BgpSpeaker against a real gobgpd that appears late, without a router: the
// agent must come up, keep the desired VIPs and configure gobgpd when it answers.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NO_ATTRS } from '../../src/bgp/attributes.js';
import { FAMILY_V4 } from '../../src/bgp/gobgp-client.js';
import { GobgpdProcess } from '../../src/bgp/gobgpd-process.js';
import { BgpSpeaker } from '../../src/bgp/speaker.js';
import { edgeBgpConfig } from '../lib/gobgpd.js';
import { waitFor } from '../lib/netns.js';

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
