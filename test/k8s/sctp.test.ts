// A LoadBalancer Service with only SCTP ports (valid to the API server;
// edgelb's datapath serves TCP and UDP) against the edge's controller and
// the real kube-apiserver (test/lib/kube.ts), as the edgelb-edge
// ServiceAccount: it must not take an address from a pool — pools are
// finite, and such an address would be announced yet serve nothing.
// Selector-less Services with hand-made EndpointSlices; no controller manager.
import test from 'ava';
import { KubernetesController } from '../../src/k8s/controller.js';
import { silentLogger } from '../../src/log/logger.js';
import { EDGELB_NAMESPACE } from '../../src/lab/kube/rbac.js';
import { edgeClusterPerFile } from './edge-cluster.js';
import { conditionOf, endpointSlice, ingressOf, RecordingSink, service, testConfig, waitFor, type Obj } from './helpers.js';

const k8s = edgeClusterPerFile('sctp');

const SCTP = [{ name: 'sig', port: 3868, protocol: 'SCTP', targetPort: 3868 }];
const TCP = [{ name: 'p80', port: 80, protocol: 'TCP', targetPort: 8080 }];

test.serial('an SCTP-only Service takes no pool address, requested or not (a Warning says why); edited to TCP it gets one, a served Service edited to SCTP only releases and withdraws its address', async (t) => {
  const ns = 'sctp1';
  const cls = 'edgelb.io/sctp1';
  await k8s.cluster.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  const create = async (name: string, ports: Obj[], spec: Obj = {}) => {
    const o = service(ns, name, { cls, selector: false });
    await k8s.cluster.create({ ...o, spec: { ...(o.spec as Obj), ports, ...spec } });
    // One ready endpoint for every port the test gives its Services.
    await k8s.cluster.create({ ...endpointSlice(ns, name, `${name}-1`, [{ ip: '10.1.0.1', node: 'n1' }]), ports: [{ name: 'sig', port: 3868, protocol: 'SCTP' }, { name: 'p80', port: 8080, protocol: 'TCP' }] });
  };
  const get = async (name: string) => (await k8s.cluster.get('services', ns, name)) ?? undefined;
  const warnings = async (name: string) => (await k8s.cluster.list('events', ns)).filter((e) => (e.regarding as { name?: string }).name === name && e.type === 'Warning');

  // Oldest first: before the fix `sig` took the pool's one address and `asks` was refused it.
  await create('sig', SCTP);
  await create('asks', SCTP, { loadBalancerIP: '192.0.2.7' });
  await create('web', TCP);
  const base = testConfig([{ cidrs: ['192.0.2.7/32'] }]);
  const config = { ...base, kubernetes: { ...base.kubernetes, loadBalancerClass: cls, leaseName: 'edgelb-sctp1', leaseNamespace: EDGELB_NAMESPACE } };
  const sink = new RecordingSink();
  const c = new KubernetesController({ config, kubeconfigPath: k8s.kubeconfig, nodeName: 'edge-a', logger: silentLogger(), debounceMs: 5, sink });
  t.teardown(() => c.stop());
  await c.start();

  await waitFor('web gets the pool\'s only address', async () => ingressOf(await get('web'))[0] === '192.0.2.7', 20_000);
  await waitFor('web advertised', async () => conditionOf(await get('web'))?.status === 'True', 20_000);
  for (const name of ['sig', 'asks']) {
    await waitFor(`${name} decided`, async () => conditionOf(await get(name))?.reason === 'UnsupportedProtocol', 20_000);
    t.deepEqual(ingressOf(await get(name)), [], name);
    t.is(conditionOf(await get(name))?.status, 'False');
    await waitFor(`${name}'s Warning`, async () => (await warnings(name)).some((e) => e.reason === 'UnsupportedProtocol' && String(e.note).includes(`${ns}/${name} has no TCP or UDP port (3868/SCTP)`)), 20_000);
  }
  await c.settle();
  t.deepEqual(sink.vipAddresses(), ['192.0.2.7']);
  t.deepEqual([...sink.frontends.values()].map((d) => d.service), [`${ns}/web`]);

  // A served Service edited to SCTP only: released like any other — out of status, its frontend removed, its VIP withdrawn.
  await k8s.cluster.patch('services', ns, 'web', { spec: { ports: SCTP } });
  await waitFor('web released', async () => ingressOf(await get('web')).length === 0 && conditionOf(await get('web'))?.reason === 'UnsupportedProtocol', 20_000);
  await c.settle();
  t.deepEqual(sink.vipAddresses(), []);
  t.deepEqual([...sink.frontends.keys()], []);
  await waitFor('web withdrawn Event', async () => (await k8s.cluster.list('events', ns)).some((e) => (e.regarding as { name?: string }).name === 'web' && e.reason === 'Withdrawn'), 20_000);
  t.deepEqual(ingressOf(await get('sig')), [], 'the freed address does not go to an SCTP-only Service');

  // An SCTP-only Service edited to add a TCP port gets the freed address as usual, and is served.
  await k8s.cluster.patch('services', ns, 'sig', { spec: { ports: [...SCTP, ...TCP] } });
  await waitFor('sig gets the address', async () => ingressOf(await get('sig'))[0] === '192.0.2.7', 20_000);
  await waitFor('sig advertised', async () => conditionOf(await get('sig'))?.status === 'True', 20_000);
  // Mixed, as before: the TCP port served, the SCTP port named in a Warning.
  await waitFor('sig\'s SCTP port named', async () => (await warnings('sig')).some((e) => e.reason === 'UnsupportedProtocol' && String(e.note).includes('port sig/SCTP is not served')), 20_000);
  await c.settle();
  t.deepEqual(sink.vipAddresses(), ['192.0.2.7']);
  t.deepEqual([...sink.frontends.keys()], ['192.0.2.7:80/TCP']);
  t.deepEqual(ingressOf(await get('asks')), []);
  t.is(c.status().pools[0]?.used, 1);
});
