// The controller against a sink that decides like the edge datapath: one
// Service that cannot be served never stops the others, status follows
// what the sink did, and a restart removes nothing before the whole
// cluster has been computed once.
import test from 'ava';
import { KubernetesController } from '../../src/k8s/controller.js';
import { silentLogger } from '../../src/log/logger.js';
import type { DesiredService } from '../../src/model/types.js';
import type { DesiredStateSink } from '../../src/k8s/sink.js';
import { TestApiServer } from '../apiserver/server.js';
import { conditionOf, endpointSlice, ingressOf, node, PlannerSink, RecordingSink, service, testConfig, waitFor, type Obj } from './helpers.js';

const log = silentLogger();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function cluster(t: import('ava').ExecutionContext, pools: { cidrs: string[] }[] = [{ cidrs: ['192.0.2.0/28', '2001:db8::/120'] }]) {
  const server = await TestApiServer.start({ nodePortRange: [30000, 39999] });
  server.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ns' } });
  server.create(node('n1', '10.0.0.1'));
  const controllers: KubernetesController[] = [];
  t.teardown(async () => {
    for (const c of controllers) await c.stop().catch(() => undefined);
    await server.close();
  });
  const make = (sink: DesiredStateSink, extra: { batchSize?: number; advertising?: boolean; nodeName?: string } = {}) => {
    const c = new KubernetesController({ config: testConfig(pools), kubeconfigPath: server.kubeconfigPath, nodeName: extra.nodeName ?? 'edge-a', logger: log, sink, debounceMs: 5, ...extra });
    controllers.push(c);
    return c;
  };
  const events = (name: string) => server.list('events', 'ns').filter((e) => (e.involvedObject as { name?: string }).name === name);
  const svc = (name: string) => server.get('services', 'ns', name);
  return { server, make, events, svc };
}

function withSpec(o: Obj, spec: Obj): Obj {
  return { ...o, spec: { ...(o.spec as Obj), ...spec } };
}

function serve(server: TestApiServer, name: string, ip: string, extra: { annotations?: Record<string, string>; spec?: Obj } = {}): void {
  server.create(withSpec(service('ns', name, { annotations: extra.annotations ?? {} }), extra.spec ?? {}));
  server.create(endpointSlice('ns', name, `${name}-1`, [{ ip, node: 'n1' }]));
}

test('unservable frontends are reported on their Service and not advertised; every other addition and removal of the same round applies; no retry loop', async (t) => {
  const { server, make, events, svc } = await cluster(t);
  serve(server, 'gone', '10.1.0.1');
  const sink = new PlannerSink();
  const c = make(sink);
  await c.start();
  await waitFor('gone advertised', () => sink.vipAddresses().includes('192.0.2.1'));
  await c.settle();

  // One round: an IPv6 VIP (this datapath forwards IPv4 only), an IPv4 VIP
  // whose only source range is IPv6, a new Service, and a deletion.
  serve(server, 'v6', '10.1.0.2', { annotations: { 'edgelb.io/loadBalancerIPs': '2001:db8::5' } });
  serve(server, 'ranges6', '10.1.0.3', { spec: { loadBalancerSourceRanges: ['2001:db8::/32'] } });
  serve(server, 'later', '10.1.0.4');
  server.delete('services', 'ns', 'gone');
  await waitFor('later in the sink and advertised', () => [...sink.frontends.values()].some((d) => d.service === 'ns/later') && sink.vips.some((v) => v.services.includes('ns/later')));
  await waitFor('gone removed from the sink and its VIP withdrawn', () => ![...sink.frontends.values()].some((d) => d.service === 'ns/gone') && !sink.vips.some((v) => v.services.includes('ns/gone')));
  await waitFor('v6: condition False, UnsupportedFamily', () => conditionOf(svc('v6'))?.reason === 'UnsupportedFamily');
  await waitFor('ranges6: condition False, SourceRangeFamily', () => conditionOf(svc('ranges6'))?.reason === 'SourceRangeFamily');
  t.is(conditionOf(svc('v6'))!.status, 'False');
  t.regex(conditionOf(svc('v6'))!.message, /^ns\/v6 \[2001:db8::5\]:80\/TCP: VIP 2001:db8::5 is IPv6; this edge's datapath forwards IPv4 only/);
  t.is(conditionOf(svc('ranges6'))!.status, 'False');
  await waitFor('later: condition True', () => conditionOf(svc('later'))?.status === 'True');
  await waitFor('Warning Events naming the reasons', () =>
    events('v6').some((e) => e.type === 'Warning' && e.reason === 'UnsupportedFamily' && /not served by edge edge-a/.test(String(e.message))) &&
    events('ranges6').some((e) => e.type === 'Warning' && e.reason === 'SourceRangeFamily'));
  const ranges6Vip = ingressOf(svc('ranges6'))[0]!;
  t.truthy(ranges6Vip);
  t.false(sink.vipAddresses().includes('2001:db8::5'));
  t.false(sink.vipAddresses().includes(ranges6Vip), 'a VIP with no served frontend is not advertised');
  t.deepEqual(c.status().rejected, { UnsupportedFamily: 1, SourceRangeFamily: 1 });

  // Rejected frontends are not offered again while nothing changes.
  await c.settle();
  const calls = sink.calls.length;
  const offered = sink.calls.flatMap((x) => x.changed).filter((d: DesiredService) => d.service === 'ns/v6').length;
  await sleep(1500);
  t.is(sink.calls.length, calls, 'no sink calls while nothing changes');
  t.is(offered, 1, 'the IPv6 frontend was offered once');

  // A change to the Service is retried: without the IPv6 range it is served.
  const cur = svc('ranges6')!;
  server.update({ ...cur, spec: { ...(cur.spec as Obj), loadBalancerSourceRanges: [] } });
  await waitFor('ranges6 advertised once its ranges changed', () => conditionOf(svc('ranges6'))?.status === 'True' && sink.vipAddresses().includes(ranges6Vip));
  t.deepEqual(c.status().rejected, { UnsupportedFamily: 1 });
});

test('out of space: the frontend that does not fit is rejected and retried when space frees, not in a loop', async (t) => {
  const { server, make, svc } = await cluster(t);
  const sink = new PlannerSink({ backendIds: 4 }); // ids 1..3
  server.create(service('ns', 'a'));
  server.create(endpointSlice('ns', 'a', 'a-1', [{ ip: '10.1.0.1', node: 'n1' }, { ip: '10.1.0.2', node: 'n1' }]));
  const c = make(sink);
  await c.start();
  await waitFor('a served', () => conditionOf(svc('a'))?.status === 'True');
  server.create(service('ns', 'b'));
  server.create(endpointSlice('ns', 'b', 'b-1', [{ ip: '10.2.0.1', node: 'n1' }, { ip: '10.2.0.2', node: 'n1' }]));
  await waitFor('b rejected for backend ids', () => conditionOf(svc('b'))?.reason === 'OutOfBackendIds');
  const vipB = ingressOf(svc('b'))[0]!;
  t.false(sink.vipAddresses().includes(vipB));
  await c.settle();
  const calls = sink.calls.length;
  await sleep(1000);
  t.is(sink.calls.length, calls, 'not retried while the space is the same');
  server.delete('services', 'ns', 'a');
  await waitFor('b served once a freed its ids', () => conditionOf(svc('b'))?.status === 'True' && sink.vipAddresses().includes(vipB));
  t.deepEqual(c.status().rejected, {});
});

test('status follows the sink: nothing is written while the sink has not answered', async (t) => {
  const { server, make, svc } = await cluster(t);
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  let asked = false;
  const inner = new RecordingSink();
  const sink: DesiredStateSink = {
    upsert: async (changed) => {
      asked = true;
      await gate;
      return inner.upsert(changed);
    },
    remove: (keys) => inner.remove(keys),
    applyVips: (vips) => inner.applyVips(vips),
  };
  serve(server, 'web', '10.1.0.1');
  const c = make(sink);
  await c.start();
  await waitFor('the sink was asked', () => asked);
  await sleep(800);
  t.is(conditionOf(svc('web')), undefined, 'no condition before the sink answered');
  t.deepEqual(ingressOf(svc('web')), []);
  release();
  await waitFor('advertised after the sink accepted', () => conditionOf(svc('web'))?.status === 'True');
});

test('an edge counts as advertising only while it says so (BGP session up, not drained)', async (t) => {
  const { server, make, svc } = await cluster(t);
  serve(server, 'web', '10.1.0.1');
  const c = make(new RecordingSink(), { advertising: false });
  await c.start();
  await waitFor('NoEdges while not advertising', () => conditionOf(svc('web'))?.reason === 'NoEdges');
  c.setAdvertising(true);
  await waitFor('advertised once the edge advertises', () => conditionOf(svc('web'))?.status === 'True');
  c.setAdvertising(false);
  await waitFor('NoEdges again when it stops', () => conditionOf(svc('web'))?.reason === 'NoEdges');
  t.pass();
});

test('start-up with thousands of Services: nothing is removed or withdrawn before every Service was computed once; then the stale frontends go', async (t) => {
  const N = 3000;
  const { server, make } = await cluster(t, [{ cidrs: ['10.200.0.0/18'] }]);
  // Another edge holds the Lease: this one follows status (as after a handover while another leads).
  server.create({
    apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { namespace: 'kube-system', name: 'edgelb' },
    spec: { holderIdentity: 'edge-z', leaseDurationSeconds: 60, renewTime: new Date().toISOString().replace('Z', '000Z') },
  });
  const held: string[] = [];
  for (let i = 0; i < N; i++) {
    const name = `s${i}`;
    const ip = `10.200.${i >> 8}.${i & 255}`;
    server.create(withSpec(service('ns', name), { allocateLoadBalancerNodePorts: false }));
    server.create(endpointSlice('ns', name, `${name}-1`, [{ ip: `10.1.${i >> 8}.${i & 255}`, node: 'n1' }]));
    server.mergePatch('services', 'ns', name, { status: { loadBalancer: { ingress: [{ ip }] } } }, 'status');
    held.push(`${ip}:80/TCP`);
  }
  const stale = '10.200.63.1:80/TCP';
  // The sink holds every frontend already (adopted from pinned maps) and one nobody wants any more.
  const sink = new RecordingSink([...held, stale]);
  const order: string[] = [];
  const upsert = sink.upsert.bind(sink);
  const remove = sink.remove.bind(sink);
  const applyVips = sink.applyVips.bind(sink);
  let upserted = 0;
  sink.upsert = (changed) => {
    upserted += changed.length;
    order.push(`upsert ${changed.length} (total ${upserted})`);
    return upsert(changed);
  };
  sink.remove = (keys) => {
    order.push(`remove ${keys.join(',')} after ${upserted} upserted`);
    remove(keys);
  };
  sink.applyVips = (vips) => {
    order.push(`vips ${vips.length} after ${upserted} upserted`);
    applyVips(vips);
  };
  const c = make(sink, { batchSize: 1000 });
  await c.start();
  await waitFor('first pass complete', () => c.status().firstPassDone, 60_000);
  await c.settle();
  t.log(order.join('; '));
  t.true(order.filter((o) => o.startsWith('upsert')).length >= 3, 'several bounded rounds');
  t.is(sink.vipCalls[0]?.length, N, 'the first VIP set is the complete one');
  t.true(sink.vipCalls.every((v) => v.length === N), 'no VIP withdrawn at any point');
  t.deepEqual(order.filter((o) => o.startsWith('remove')), [`remove ${stale} after ${N} upserted`]);
  t.is(sink.frontends.size, N);
  t.false(c.status().leader);
});

test('two machines with one edge name: detected and reported by both (status, Warning Event), and only one of them leads', async (t) => {
  const { server } = await cluster(t);
  serve(server, 'web', '10.1.0.1');
  const mk = (instanceId: string) =>
    new KubernetesController({ config: testConfig([{ cidrs: ['192.0.2.0/28'] }], 1.5), kubeconfigPath: server.kubeconfigPath, nodeName: 'edge-a', instanceId, logger: log, sink: new RecordingSink(), debounceMs: 5 });
  const one = mk('aaaaaaaaaaaaaaaa');
  const two = mk('bbbbbbbbbbbbbbbb');
  t.teardown(async () => {
    await one.stop().catch(() => undefined);
    await two.stop().catch(() => undefined);
  });
  await one.start();
  await waitFor('the first leads', () => one.status().leader);
  await two.start();
  let both = 0;
  const t0 = Date.now();
  await waitFor('both see the duplicate', () => {
    if (one.status().leader && two.status().leader) both++;
    return one.status().duplicateName === 'bbbbbbbbbbbbbbbb' && two.status().duplicateName === 'aaaaaaaaaaaaaaaa';
  });
  while (Date.now() - t0 < 4000) {
    if (one.status().leader && two.status().leader) both++;
    await sleep(25);
  }
  t.is(both, 0, 'never two leaders');
  t.true(one.status().leader);
  const warned = server.list('events', 'kube-system').filter((e) => e.reason === 'DuplicateEdgeName' && e.type === 'Warning');
  t.true(warned.length > 0);
  t.like(warned[0]!.involvedObject as Obj, { kind: 'Lease', name: 'edgelb-edge-edge-a' });
  t.regex(String(warned[0]!.message), /two machines present the edge name edge-a/);
  // The other machine leaves: the report clears, and the remaining one leads after the lease expires.
  await one.stop({ releaseLease: false });
  await waitFor('duplicate cleared', () => two.status().duplicateName === null, 15_000);
  await waitFor('the remaining one leads', () => two.status().leader, 15_000);
});

test('a restart on the same machine (same instance) is not a duplicate and takes over the Lease at once', async (t) => {
  const { server } = await cluster(t);
  serve(server, 'web', '10.1.0.1');
  // A long lease: taking it over as someone else's would take 30 s, far beyond the wait below.
  const mk = () => new KubernetesController({ config: testConfig([{ cidrs: ['192.0.2.0/28'] }], 30), kubeconfigPath: server.kubeconfigPath, nodeName: 'edge-a', logger: log, sink: new RecordingSink(), debounceMs: 5 });
  const first = mk();
  const second = mk();
  t.teardown(async () => {
    await first.stop().catch(() => undefined);
    await second.stop().catch(() => undefined);
  });
  await first.start();
  await waitFor('first leads', () => first.status().leader);
  const lease = () => server.get('leases.coordination.k8s.io', 'kube-system', 'edgelb') as { spec: { leaseTransitions?: number }; metadata: { annotations?: Record<string, string> } };
  const before = lease();
  await first.stop({ releaseLease: false }); // as a SIGQUIT handover leaves it
  await second.start();
  await waitFor('second leads, well within the 30 s lease', () => second.status().leader, 10_000);
  t.is(lease().spec.leaseTransitions, before.spec.leaseTransitions, 'renewed as its own, not taken over');
  t.is(lease().metadata.annotations?.['edgelb.io/holder-instance'], before.metadata.annotations?.['edgelb.io/holder-instance']);
  await sleep(1000);
  t.is(second.status().duplicateName, null);
});

test('over the port cap: rejected with an Event; a config change that raises the cap serves it', async (t) => {
  const pools = [{ cidrs: ['192.0.2.0/28'] }];
  const { server, make, svc, events } = await cluster(t, pools);
  const ports = [80, 81, 82];
  server.create(service('ns', 'many', { ports }));
  server.create(endpointSlice('ns', 'many', 'many-1', [{ ip: '10.1.0.1', node: 'n1' }], ports));
  const sink = new RecordingSink();
  const c = make(sink);
  const capped = testConfig(pools);
  capped.datapath = { ...capped.datapath, maxPortsPerService: 2 };
  c.reconfigure(capped);
  await c.start();
  await waitFor('rejected for its ports', () => conditionOf(svc('many'))?.reason === 'TooManyPorts');
  await waitFor('TooManyPorts Event', () => events('many').some((e) => e.type === 'Warning' && e.reason === 'TooManyPorts'));
  t.is(sink.frontends.size, 0);
  t.deepEqual(c.status().rejected, { TooManyPorts: 3 });
  c.reconfigure({ ...capped, datapath: { ...capped.datapath, maxPortsPerService: 3 } });
  await waitFor('served under the new cap', () => conditionOf(svc('many'))?.status === 'True' && sink.frontends.size === 3);
  t.deepEqual(c.status().rejected, {});
});
