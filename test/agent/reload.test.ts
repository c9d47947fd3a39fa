// A reload while gobgpd is away (systemd restarting it, a hung moment): the
// file is valid, so every part takes it — BGP applies it once gobgpd answers
// again. Real gobgpd (in a namespace of its own: it listens on port 179),
// the agent's real BGP and Kubernetes parts (the latter not connected: only
// the config it holds is read).
import test from 'ava';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { configHash } from '../../src/agent/agent.js';
import { waitFor } from '../lib/netns.js';
import { agentBesideGobgpd } from './harness.js';

function configText(dir: string, peers: string[], pools: string[]): string {
  return [
    'node: { name: edge-r, routerId: 10.0.0.11, asn: 64512, uplink: eth0 }',
    `bgp: { gobgp: { socket: ${join(dir, 'gobgp.sock')}, manage: false }, peers: [${peers.map((p) => `{ address: ${p}, asn: 64500 }`).join(', ')}] }`,
    `pools: [${pools.map((p, i) => `{ name: p${i}, cidrs: [${p}] }`).join(', ')}]`,
    `control: { socket: ${join(dir, 'control.sock')} }`,
    '',
  ].join('\n');
}

test('a reload while gobgpd is down applies to every part (Kubernetes gets the new pools, the new hash is reported); BGP applies it when gobgpd answers', async (t) => {
  t.timeout(60_000);
  const { dir, file, agent, bgp, kubernetes, cleanup, stopGobgpd, startGobgpd } = await agentBesideGobgpd(t, 'reload', (d) => configText(d, ['10.0.0.1'], ['10.96.100.0/24']));
  await bgp.start();
  cleanup.add('bgp part', () => bgp.stop('handover'));
  const peers = async (): Promise<string[]> => (await bgp.speaker.client.listPeer().catch(() => [])).map((p) => p.conf.neighbor_address).sort();
  t.true(await waitFor(async () => (await peers()).join() === '10.0.0.1', 10_000), 'the first peer is configured');

  await stopGobgpd(); // gobgpd away (systemd restarting it)
  writeFileSync(file, configText(dir, ['10.0.0.1', '10.0.0.2'], ['10.96.100.0/24', '10.96.200.0/24']));
  const message = await agent.reload().catch((e: Error) => `failed: ${e.message}`);
  t.regex(message, /^reloaded /);
  t.deepEqual(kubernetes.poolUsage().map((p) => p.pool), ['p0', 'p1'], 'the Kubernetes part has the new pools');
  t.is(agent.configDigest, configHash(file), 'the new config is the one reported');

  await startGobgpd(); // back, empty: the reconcile loop configures it from the new config
  t.true(await waitFor(async () => (await peers()).join() === '10.0.0.1,10.0.0.2', 15_000), `peers in gobgpd: ${(await peers()).join()}`);
});
