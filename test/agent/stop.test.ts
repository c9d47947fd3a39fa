// SIGTERM while gobgpd is away (stopped first, hung, restarting): the drain
// cannot withdraw anything, and the agent must still stop everything else —
// above all release the leader Lease so another edge allocates at once.
// Real gobgpd (in a namespace of its own: it listens on port 179), the real
// kube-apiserver, the agent's real BGP and Kubernetes parts.
import test from 'ava';
import { join } from 'node:path';
import { EDGELB_NAMESPACE } from '../../src/lab/kube/rbac.js';
import { edgeClusterPerFile } from '../k8s/edge-cluster.js';
import { waitFor } from '../lib/netns.js';
import { agentBesideGobgpd } from './harness.js';

const k8s = edgeClusterPerFile('agent-stop');

test('SIGTERM with gobgpd down: the failed drain does not stop the rest — the leader Lease is released', async (t) => {
  t.timeout(90_000);
  const { agent, bgp, kubernetes, cleanup, stopGobgpd } = await agentBesideGobgpd(t, 'stop', (dir) => [
    'node: { name: edge-s, routerId: 10.0.0.11, asn: 64512, uplink: eth0 }',
    `bgp: { gobgp: { socket: ${join(dir, 'gobgp.sock')}, manage: false }, drainSeconds: 0, peers: [{ address: 10.0.0.1, asn: 64500 }] }`,
    'pools: [{ name: p0, cidrs: [10.96.100.0/24] }]',
    `kubernetes: { kubeconfig: ${k8s.kubeconfig}, leaseName: edgelb-stop, leaseNamespace: ${EDGELB_NAMESPACE}, leaseDurationSeconds: 30 }`,
    `control: { socket: ${join(dir, 'control.sock')} }`,
    '',
  ].join('\n'));
  let stopped = false;
  cleanup.add('agent', () => (stopped ? undefined : agent.stop('handover')));
  await bgp.start();
  await kubernetes.start();
  const holder = async (): Promise<string | undefined> =>
    ((await k8s.cluster.get('leases', EDGELB_NAMESPACE, 'edgelb-stop')) as { spec?: { holderIdentity?: string } } | null)?.spec?.holderIdentity;
  t.true(await waitFor(async () => kubernetes.view().leader, 20_000), 'this edge leads');
  t.is(await holder(), 'edge-s');

  await stopGobgpd(); // gobgpd gone before the agent is stopped
  const outcome = await agent.stop('shutdown').then(
    () => 'stopped',
    async (e: Error) => {
      // Stop what it left running, the way a crash would (the Lease kept), so the test ends.
      await kubernetes.stop('handover');
      await bgp.stop('handover');
      return `stop failed: ${e.message}`;
    },
  );
  stopped = true;
  t.is(outcome, 'stopped');
  t.is(await holder(), '', 'the Lease released: another edge takes over at its next poll, not after 30 s');
});
