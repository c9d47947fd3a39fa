import test from 'ava';
import { KubernetesController } from '../../src/k8s/controller.js';
import { silentLogger } from '../../src/log/logger.js';
import { TestApiServer } from '../apiserver/server.js';
import { conditionOf, endpointSlice, ingressOf, node, RecordingSink, service, testConfig, waitFor, type Obj } from './helpers.js';

const log = silentLogger();

async function setup(pools = [{ cidrs: ['192.0.2.0/29'] }], lease = 1.5) {
  const server = await TestApiServer.start();
  const controllers: KubernetesController[] = [];
  const make = (nodeName: string, sink = new RecordingSink()) => {
    const c = new KubernetesController({ config: testConfig(pools, lease), kubeconfigPath: server.kubeconfigPath, nodeName, logger: log, sink, debounceMs: 5 });
    controllers.push(c);
    return { c, sink };
  };
  const teardown = async () => {
    for (const c of controllers) await c.stop().catch(() => undefined);
    await server.close();
  };
  return { server, make, teardown };
}

function events(server: TestApiServer, name: string): Obj[] {
  return server.list('events', 'ns').filter((e) => (e.involvedObject as { name?: string }).name === name);
}

test('allocates to status, advertises with ready endpoints, refuses requests outside pools', async (t) => {
  const { server, make, teardown } = await setup();
  t.teardown(teardown);
  server.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns' } });
  server.create(node('n1', '10.0.0.1'));
  server.create(service('ns', 'web'));
  server.create(endpointSlice('ns', 'web', 'web-1', [{ ip: '10.1.0.1', node: 'n1' }]));
  server.create(service('ns', 'other-class', { cls: 'example.com/lb' }));
  server.create(service('ns', 'refused', { annotations: { 'edgelb.io/loadBalancerIPs': '203.0.113.5' } }));
  server.create(service('ns', 'asked', { loadBalancerIP: '192.0.2.6' }));
  const { c, sink } = make('edge-a');
  await c.start();
  await waitFor('web in status', () => ingressOf(server.get('services', 'ns', 'web'))[0] === '192.0.2.1');
  await waitFor('web advertised condition', () => conditionOf(server.get('services', 'ns', 'web'))?.status === 'True');
  t.regex(conditionOf(server.get('services', 'ns', 'web'))!.message, /advertised by 1 edge\(s\): edge-a/);
  await waitFor('VIP in sink', () => sink.vipAddresses().includes('192.0.2.1'));
  const fe = sink.frontends.get('TCP/192.0.2.1:80')!;
  t.deepEqual(fe.backends, [{ ip: '10.1.0.1', port: 8080, nodeIp: '10.0.0.1', nodeName: 'n1', weight: 1, state: 'active' }]);

  await waitFor('refused condition', () => conditionOf(server.get('services', 'ns', 'refused'))?.reason === 'RequestRefused');
  t.deepEqual(ingressOf(server.get('services', 'ns', 'refused')), []);
  await waitFor('refused event', () => events(server, 'refused').some((e) => e.reason === 'RequestRefused' && e.type === 'Warning'));
  await waitFor('requested address in pool honoured', () => ingressOf(server.get('services', 'ns', 'asked'))[0] === '192.0.2.6');
  // No endpoints: allocated but not advertised.
  t.is(conditionOf(server.get('services', 'ns', 'asked'))?.reason, 'NoReadyEndpoints');
  t.false(sink.vipAddresses().includes('192.0.2.6'));
  t.deepEqual(ingressOf(server.get('services', 'ns', 'other-class')), []);
  t.deepEqual(sink.vipAddresses(), ['192.0.2.1']);
  await waitFor('allocation event', () => events(server, 'web').some((e) => e.reason === 'IPAllocated'));

  // Exhaustion: .1-.6 usable, .1 and .6 taken; four more fit, the fifth waits.
  for (let i = 0; i < 5; i++) server.create(service('ns', `fill${i}`));
  await waitFor('exhausted condition', () => server.list('services', 'ns').some((s) => conditionOf(s)?.reason === 'PoolExhausted'));
  const waiting = server.list('services', 'ns').find((s) => conditionOf(s)?.reason === 'PoolExhausted')!;
  const waitingName = (waiting.metadata as { name: string }).name;
  await waitFor('exhausted event', () => events(server, waitingName).some((e) => e.reason === 'PoolExhausted'));
  // Deleting a Service frees its address for the waiting one.
  server.delete('services', 'ns', 'asked');
  await waitFor('waiting service gets the freed address', () => ingressOf(server.get('services', 'ns', waitingName))[0] === '192.0.2.6');
  t.true(c.status().leader);
  t.true(c.status().connected);
});

test('restart stability: a new controller keeps every address and writes no status', async (t) => {
  const { server, make, teardown } = await setup([{ cidrs: ['192.0.2.0/28'] }]);
  t.teardown(teardown);
  server.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns' } });
  for (let i = 0; i < 6; i++) {
    server.create(service('ns', `s${i}`));
    server.create(endpointSlice('ns', `s${i}`, `s${i}-1`, [{ ip: `10.1.0.${i + 1}`, node: 'n1' }]));
  }
  const first = make('edge-a');
  await first.c.start();
  await waitFor('all advertised', () => server.list('services', 'ns').every((s) => conditionOf(s)?.status === 'True'));
  const before = Object.fromEntries(server.list('services', 'ns').map((s) => [(s.metadata as { name: string }).name, ingressOf(s)]));
  await first.c.stop();
  // Delete one so the survivors are not simply the first N addresses.
  server.delete('services', 'ns', 's0');
  delete before.s0;
  const writes = server.requestCount('patch', 'services/status');
  const second = make('edge-a');
  await second.c.start();
  await waitFor('second is leader and programmed', () => second.c.status().leader && second.sink.vips.length === 5);
  await second.c.settle();
  const after = Object.fromEntries(server.list('services', 'ns').map((s) => [(s.metadata as { name: string }).name, ingressOf(s)]));
  t.deepEqual(after, before);
  t.is(server.requestCount('patch', 'services/status'), writes);
});

test('sharing an address by key with disjoint ports; a clash gets its own address', async (t) => {
  const { server, make, teardown } = await setup();
  t.teardown(teardown);
  server.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns' } });
  const shared = { 'edgelb.io/allow-shared-ip': 'k1' };
  server.create(service('ns', 'a', { ports: [80], annotations: shared }));
  server.create(service('ns', 'b', { ports: [443], annotations: shared }));
  server.create(service('ns', 'c', { ports: [80], annotations: shared }));
  const { c } = make('edge-a');
  await c.start();
  await waitFor('all allocated', () => ['a', 'b', 'c'].every((n) => ingressOf(server.get('services', 'ns', n)).length === 1));
  const ip = (n: string) => ingressOf(server.get('services', 'ns', n))[0];
  t.is(ip('a'), ip('b'));
  t.not(ip('a'), ip('c'));
});
