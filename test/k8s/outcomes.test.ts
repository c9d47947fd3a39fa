// The controller against a sink that decides like the edge datapath: one
// Service that cannot be served never stops the others, status follows
// what the sink did, and a restart removes nothing before the whole
// cluster has been computed once.
//
// Against the real kube-apiserver (test/lib/kube.ts) as the edgelb-edge
// ServiceAccount. One control plane for the file; each test has its own
// namespace, loadBalancerClass and Lease name. Services are selector-less
// with hand-made EndpointSlices (helpers.endpointSlice: a managed-by of our
// own, which the EndpointSlice controller leaves alone), so a test decides
// its endpoints exactly, thousands of them included.
import test, { type ExecutionContext } from 'ava';
import { KubernetesController, type KubernetesControllerOptions } from '../../src/k8s/controller.js';
import { silentLogger } from '../../src/log/logger.js';
import type { DesiredService } from '../../src/model/types.js';
import type { DesiredStateSink } from '../../src/k8s/sink.js';
import { pool } from '../lib/kube.js';
import { edgeClusterPerFile } from './edge-cluster.js';
import { EDGELB_NAMESPACE } from '../../src/lab/kube/rbac.js';
import { conditionOf, endpointSlice, ingressOf, node, PlannerSink, RecordingSink, service, testConfig, waitFor, type Obj } from './helpers.js';

const log = silentLogger();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const k8s = edgeClusterPerFile('outcomes');
let seq = 0;

type Pools = { cidrs: string[] }[];

/** A namespace, class and Lease of the test's own; its controllers stopped at the end. */
async function setup(t: ExecutionContext, pools: Pools = [{ cidrs: ['192.0.2.0/28', '2001:db8::/120'] }]) {
  const n = ++seq;
  const ns = `o${n}`;
  const cls = `edgelb.io/o${n}`;
  const leaseName = `edgelb-o${n}`;
  await k8s.cluster.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  const config = (p: Pools = pools, lease?: number) => {
    const base = testConfig(p, lease);
    return { ...base, kubernetes: { ...base.kubernetes, loadBalancerClass: cls, leaseName, leaseNamespace: EDGELB_NAMESPACE } };
  };
  const controllers: KubernetesController[] = [];
  t.teardown(async () => {
    for (const c of controllers) await c.stop().catch(() => undefined);
  });
  /** A controller of this test (stopped at its end). */
  const controller = (o: Partial<KubernetesControllerOptions> & Pick<KubernetesControllerOptions, 'sink'>) => {
    const c = new KubernetesController({ config: config(), kubeconfigPath: k8s.kubeconfig, nodeName: 'edge-a', logger: log, debounceMs: 5, ...o });
    controllers.push(c);
    return c;
  };
  const make = (sink: DesiredStateSink, extra: { roundSize?: number; advertising?: boolean; nodeName?: string } = {}) => controller({ sink, ...extra });
  const events = async (name: string): Promise<Obj[]> => (await k8s.cluster.list('events', ns)).filter((e) => (e.regarding as { name?: string }).name === name);
  const svc = async (name: string): Promise<Obj | undefined> => (await k8s.cluster.get('services', ns, name)) ?? undefined;
  /** A selector-less Service of this test's class. */
  const createService = (name: string, opts: Parameters<typeof service>[2] = {}, spec: Obj = {}) => k8s.cluster.create(withSpec(service(ns, name, { cls, selector: false, ...opts }), spec));
  /** A Service with one ready endpoint on n1. */
  const serve = async (name: string, ip: string, extra: { annotations?: Record<string, string>; spec?: Obj } = {}) => {
    await createService(name, { annotations: extra.annotations ?? {} }, extra.spec ?? {});
    await k8s.cluster.create(endpointSlice(ns, name, `${name}-1`, [{ ip, node: 'n1' }]));
  };
  return { ns, cls, leaseName, config, controller, make, events, svc, createService, serve };
}

function withSpec(o: Obj, spec: Obj): Obj {
  return { ...o, spec: { ...(o.spec as Obj), ...spec } };
}

/** Another edge holds the election Lease (this one follows status, as after a handover while another leads). */
function foreignLease(leaseName: string): Obj {
  return {
    apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { namespace: EDGELB_NAMESPACE, name: leaseName },
    spec: { holderIdentity: 'edge-z', leaseDurationSeconds: 60, renewTime: new Date().toISOString().replace('Z', '000Z') },
  };
}

test.serial('unservable frontends are reported on their Service and not advertised; every other addition and removal of the same round applies; no retry loop', async (t) => {
  const { ns, make, events, svc, serve } = await setup(t);
  await serve('gone', '10.1.0.1');
  const sink = new PlannerSink();
  const c = make(sink);
  await c.start();
  await waitFor('gone advertised', () => sink.vipAddresses().includes('192.0.2.1'), 20_000);
  await c.settle();

  // One round: an IPv6 VIP (this datapath forwards IPv4 only), an IPv4 VIP
  // whose only source range is IPv6, a new Service, and a deletion.
  await Promise.all([
    serve('v6', '10.1.0.2', { annotations: { 'edgelb.io/loadBalancerIPs': '2001:db8::5' } }),
    serve('ranges6', '10.1.0.3', { spec: { loadBalancerSourceRanges: ['2001:db8::/32'] } }),
    serve('later', '10.1.0.4'),
    k8s.cluster.delete('services', ns, 'gone'),
  ]);
  await waitFor('later in the sink and advertised', () => [...sink.frontends.values()].some((d) => d.service === `${ns}/later`) && sink.vips.some((v) => v.services.includes(`${ns}/later`)), 20_000);
  await waitFor('gone removed from the sink and its VIP withdrawn', () => ![...sink.frontends.values()].some((d) => d.service === `${ns}/gone`) && !sink.vips.some((v) => v.services.includes(`${ns}/gone`)), 20_000);
  await waitFor('v6: condition False, UnsupportedFamily', async () => conditionOf(await svc('v6'))?.reason === 'UnsupportedFamily', 20_000);
  await waitFor('ranges6: condition False, SourceRangeFamily', async () => conditionOf(await svc('ranges6'))?.reason === 'SourceRangeFamily', 20_000);
  t.is(conditionOf(await svc('v6'))!.status, 'False');
  t.regex(conditionOf(await svc('v6'))!.message, new RegExp(`^${ns}/v6 \\[2001:db8::5\\]:80/TCP: VIP 2001:db8::5 is IPv6; this edge's datapath forwards IPv4 only`));
  t.is(conditionOf(await svc('ranges6'))!.status, 'False');
  await waitFor('later: condition True', async () => conditionOf(await svc('later'))?.status === 'True', 20_000);
  await waitFor('Warning Events naming the reasons', async () =>
    (await events('v6')).some((e) => e.type === 'Warning' && e.reason === 'UnsupportedFamily' && /not served by edge edge-a/.test(String(e.note))) &&
    (await events('ranges6')).some((e) => e.type === 'Warning' && e.reason === 'SourceRangeFamily'), 20_000);
  const ranges6Vip = ingressOf(await svc('ranges6'))[0]!;
  t.truthy(ranges6Vip);
  t.false(sink.vipAddresses().includes('2001:db8::5'));
  t.false(sink.vipAddresses().includes(ranges6Vip), 'a VIP with no served frontend is not advertised');
  t.deepEqual(c.status().rejected, { UnsupportedFamily: 1, SourceRangeFamily: 1 });

  // Rejected frontends are not offered again while nothing changes.
  await c.settle();
  const calls = sink.calls.length;
  const offered = sink.calls.flatMap((x) => x.changed).filter((d: DesiredService) => d.service === `${ns}/v6`).length;
  await sleep(1500);
  t.is(sink.calls.length, calls, 'no sink calls while nothing changes');
  t.is(offered, 1, 'the IPv6 frontend was offered once');

  // A change to the Service is retried: without the IPv6 range it is served.
  await k8s.cluster.patch('services', ns, 'ranges6', { spec: { loadBalancerSourceRanges: [] } });
  await waitFor('ranges6 advertised once its ranges changed', async () => conditionOf(await svc('ranges6'))?.status === 'True' && sink.vipAddresses().includes(ranges6Vip), 20_000);
  t.deepEqual(c.status().rejected, { UnsupportedFamily: 1 });
});

test.serial('out of space: the frontend that does not fit is rejected and retried when space frees, not in a loop', async (t) => {
  const { ns, make, svc, createService } = await setup(t);
  const sink = new PlannerSink({ backendIds: 4 }); // ids 1..3
  await createService('a');
  await k8s.cluster.create(endpointSlice(ns, 'a', 'a-1', [{ ip: '10.1.0.1', node: 'n1' }, { ip: '10.1.0.2', node: 'n1' }]));
  const c = make(sink);
  await c.start();
  await waitFor('a served', async () => conditionOf(await svc('a'))?.status === 'True', 20_000);
  await createService('b');
  await k8s.cluster.create(endpointSlice(ns, 'b', 'b-1', [{ ip: '10.2.0.1', node: 'n1' }, { ip: '10.2.0.2', node: 'n1' }]));
  await waitFor('b rejected for backend ids', async () => conditionOf(await svc('b'))?.reason === 'OutOfBackendIds', 20_000);
  const vipB = ingressOf(await svc('b'))[0]!;
  t.false(sink.vipAddresses().includes(vipB));
  await c.settle();
  const calls = sink.calls.length;
  await sleep(1000);
  t.is(sink.calls.length, calls, 'not retried while the space is the same');
  await k8s.cluster.delete('services', ns, 'a');
  await waitFor('b served once a freed its ids', async () => conditionOf(await svc('b'))?.status === 'True' && sink.vipAddresses().includes(vipB), 20_000);
  t.deepEqual(c.status().rejected, {});
});

test.serial('status follows the sink: nothing is written while the sink has not answered', async (t) => {
  const { make, svc, serve } = await setup(t);
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
  await serve('web', '10.1.0.1');
  const c = make(sink);
  await c.start();
  await waitFor('the sink was asked', () => asked, 20_000);
  await sleep(800);
  t.is(conditionOf(await svc('web')), undefined, 'no condition before the sink answered');
  t.deepEqual(ingressOf(await svc('web')), []);
  release();
  await waitFor('advertised after the sink accepted', async () => conditionOf(await svc('web'))?.status === 'True', 20_000);
});

test.serial('an edge counts as advertising only while it says so (BGP session up, not drained)', async (t) => {
  const { make, svc, serve } = await setup(t);
  await serve('web', '10.1.0.1');
  const c = make(new RecordingSink(), { advertising: false });
  await c.start();
  await waitFor('NoEdges while not advertising', async () => conditionOf(await svc('web'))?.reason === 'NoEdges', 20_000);
  c.setAdvertising(true);
  await waitFor('advertised once the edge advertises', async () => conditionOf(await svc('web'))?.status === 'True', 20_000);
  c.setAdvertising(false);
  await waitFor('NoEdges again when it stops', async () => conditionOf(await svc('web'))?.reason === 'NoEdges', 20_000);
  t.pass();
});

// 1 000 Services in rounds of 250: the rule needs several rounds, not the
// scale (test/agent/handover-scale.test.ts has 3 000 against a real agent,
// router and maps); each Service costs the real API server three writes.
test.serial('start-up with a thousand Services: nothing is removed or withdrawn before every Service was computed once; then the stale frontends go', async (t) => {
  const N = 1000;
  const { ns, make, createService, leaseName } = await setup(t, [{ cidrs: ['10.200.0.0/18'] }]);
  await k8s.cluster.create(foreignLease(leaseName));
  const held: string[] = [];
  const t0 = Date.now();
  // Node ports would run out with thousands of Services (30000-32767): none are allocated.
  await pool(N, 8, async (i) => {
    const name = `s${i}`;
    const ip = `10.200.${i >> 8}.${i & 255}`;
    await createService(name, {}, { allocateLoadBalancerNodePorts: false });
    await k8s.cluster.create(endpointSlice(ns, name, `${name}-1`, [{ ip: `10.1.${i >> 8}.${i & 255}`, node: 'n1' }]));
    await k8s.cluster.patchStatus('services', ns, name, { loadBalancer: { ingress: [{ ip, ipMode: 'VIP' }] } });
    held.push(`${ip}:80/TCP`);
  });
  t.log(`${N} Services, slices and status written in ${Date.now() - t0} ms`);
  const stale = '10.200.63.1:80/TCP'; // outside the N Services' addresses
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
  const c = make(sink, { roundSize: 250 });
  const t1 = Date.now();
  await c.start();
  await waitFor('first pass complete', () => c.status().firstPassDone, 60_000);
  await c.settle();
  t.log(`first pass complete ${Date.now() - t1} ms after start; ${order.join('; ')}`);
  t.true(order.filter((o) => o.startsWith('upsert')).length >= 3, 'several bounded rounds');
  t.is(sink.vipCalls[0]?.length, N, 'the first VIP set is the complete one');
  t.true(sink.vipCalls.every((v) => v.length === N), 'no VIP withdrawn at any point');
  t.deepEqual(order.filter((o) => o.startsWith('remove')), [`remove ${stale} after ${N} upserted`]);
  t.is(sink.frontends.size, N);
  t.false(c.status().leader);
});

test.serial('two machines with one edge name: detected and reported by both (status, Warning Event), and only one of them leads', async (t) => {
  const { serve, controller, config, leaseName } = await setup(t);
  await serve('web', '10.1.0.1');
  const mk = (instanceId: string) => controller({ config: config([{ cidrs: ['192.0.2.0/28'] }], 1.5), instanceId, sink: new RecordingSink() });
  const one = mk('aaaaaaaaaaaaaaaa');
  const two = mk('bbbbbbbbbbbbbbbb');
  await one.start();
  await waitFor('the first leads', () => one.status().leader, 20_000);
  await two.start();
  let both = 0;
  const t0 = Date.now();
  await waitFor('both see the duplicate', () => {
    if (one.status().leader && two.status().leader) both++;
    return one.status().duplicateName === 'bbbbbbbbbbbbbbbb' && two.status().duplicateName === 'aaaaaaaaaaaaaaaa';
  }, 20_000);
  while (Date.now() - t0 < 4000) {
    if (one.status().leader && two.status().leader) both++;
    await sleep(25);
  }
  t.is(both, 0, 'never two leaders');
  t.true(one.status().leader);
  let warned: Obj[] = [];
  await waitFor('a DuplicateEdgeName Warning', async () => {
    warned = (await k8s.cluster.list('events', EDGELB_NAMESPACE)).filter((e) => e.reason === 'DuplicateEdgeName' && e.type === 'Warning');
    return warned.length > 0;
  }, 20_000);
  t.like(warned[0]!.regarding as Obj, { kind: 'Lease', name: `${leaseName}-edge-edge-a` });
  t.regex(String(warned[0]!.note), /two machines present the edge name edge-a/);
  // The other machine leaves: the report clears, and the remaining one leads after the lease expires.
  await one.stop({ releaseLease: false });
  await waitFor('duplicate cleared', () => two.status().duplicateName === null, 15_000);
  await waitFor('the remaining one leads', () => two.status().leader, 15_000);
});

test.serial('a restart on the same machine (same instance) is not a duplicate and takes over the Lease at once', async (t) => {
  const { serve, controller, config, leaseName } = await setup(t);
  await serve('web', '10.1.0.1');
  // A long lease: taking it over as someone else's would take 30 s, far beyond the wait below.
  const mk = () => controller({ config: config([{ cidrs: ['192.0.2.0/28'] }], 30), sink: new RecordingSink() });
  const first = mk();
  const second = mk();
  await first.start();
  await waitFor('first leads', () => first.status().leader, 20_000);
  const lease = async () => (await k8s.cluster.get('leases', EDGELB_NAMESPACE, leaseName)) as { spec: { leaseTransitions?: number }; metadata: { annotations?: Record<string, string> } };
  const before = await lease();
  await first.stop({ releaseLease: false }); // as a SIGQUIT handover leaves it
  await second.start();
  await waitFor('second leads, well within the 30 s lease', () => second.status().leader, 10_000);
  const after = await lease();
  t.is(after.spec.leaseTransitions, before.spec.leaseTransitions, 'renewed as its own, not taken over');
  t.is(after.metadata.annotations?.['edgelb.io/holder-instance'], before.metadata.annotations?.['edgelb.io/holder-instance']);
  await sleep(1000);
  t.is(second.status().duplicateName, null);
});

test.serial('the echo of our own status write is not a new occurrence: a failure\'s Warning Event is not counted again', async (t) => {
  // One address: the second Service cannot have one.
  const { ns, make, svc, events, createService } = await setup(t, [{ cidrs: ['192.0.2.1/32'] }]);
  for (const [name, ip] of [['first', '10.1.0.1'], ['second', '10.1.0.2']] as const) {
    await createService(name);
    await k8s.cluster.create(endpointSlice(ns, name, `${name}-1`, [{ ip, node: 'n1' }]));
  }
  const c = make(new RecordingSink());
  await c.start();
  const failed = async () => (conditionOf(await svc('first'))?.reason === 'PoolExhausted' ? 'first' : conditionOf(await svc('second'))?.reason === 'PoolExhausted' ? 'second' : null);
  await waitFor('one Service reports the exhausted pool in status', async () => (await failed()) !== null && c.status().statusWritesPending === 0, 20_000);
  const name = (await failed())!;
  await waitFor('its Warning Event', async () => (await events(name)).some((e) => e.type === 'Warning' && e.reason === 'PoolExhausted'), 20_000);
  // Time for the status write's echo to arrive and anything it would cause.
  await sleep(2000);
  const warnings = (await events(name)).filter((e) => e.reason === 'PoolExhausted');
  t.is(warnings.length, 1);
  t.is((warnings[0]!.series as { count?: number } | undefined)?.count ?? 1, 1);
});

test.serial('over the port cap: rejected with an Event; a config change that raises the cap serves it', async (t) => {
  const pools = [{ cidrs: ['192.0.2.0/28'] }];
  const { ns, make, svc, events, createService, config } = await setup(t, pools);
  const ports = [80, 81, 82];
  await createService('many', { ports });
  await k8s.cluster.create(endpointSlice(ns, 'many', 'many-1', [{ ip: '10.1.0.1', node: 'n1' }], ports));
  const sink = new RecordingSink();
  const c = make(sink);
  const capped = config(pools);
  capped.datapath = { ...capped.datapath, maxPortsPerService: 2 };
  c.reconfigure(capped);
  await c.start();
  await waitFor('rejected for its ports', async () => conditionOf(await svc('many'))?.reason === 'TooManyPorts', 20_000);
  await waitFor('TooManyPorts Event', async () => (await events('many')).some((e) => e.type === 'Warning' && e.reason === 'TooManyPorts'), 20_000);
  t.is(sink.frontends.size, 0);
  t.deepEqual(c.status().rejected, { TooManyPorts: 3 });
  c.reconfigure({ ...capped, datapath: { ...capped.datapath, maxPortsPerService: 3 } });
  await waitFor('served under the new cap', async () => conditionOf(await svc('many'))?.status === 'True' && sink.frontends.size === 3, 20_000);
  t.deepEqual(c.status().rejected, {});
});

test.serial('a config change of a pool\'s BGP attributes re-sends its VIPs with them (no address changed)', async (t) => {
  const pools = [{ cidrs: ['192.0.2.0/28'] }];
  const { ns, make, createService, config } = await setup(t, pools);
  await createService('web');
  await k8s.cluster.create(endpointSlice(ns, 'web', 'web-1', [{ ip: '10.1.0.1', node: 'n1' }]));
  const sink = new RecordingSink();
  const c = make(sink);
  const base = config(pools);
  c.reconfigure(base);
  await c.start();
  await waitFor('the VIP is applied', () => sink.vips.length === 1, 20_000);
  t.deepEqual(sink.vips[0]!.advertise.communities, []);
  const tagged = { ...base, pools: base.pools.map((p) => ({ ...p, advertise: { ...p.advertise, communities: ['65000:7'] } })) };
  c.reconfigure(tagged);
  await waitFor('the VIP is re-sent with the new community', () => JSON.stringify(sink.vips[0]?.advertise.communities) === '["65000:7"]', 10_000);
  t.is(sink.vips.length, 1);
});

test.serial('a follower whose reloaded config no longer has the pool of an address in status stops serving and advertising it, as a follower started with that config never does', async (t) => {
  const { ns, leaseName, controller, serve, config } = await setup(t, [{ cidrs: ['192.0.2.0/28'] }]);
  // Another edge allocates (and has not reloaded yet: a rolling config change).
  await k8s.cluster.create(foreignLease(leaseName));
  await serve('web', '10.1.0.1');
  await k8s.cluster.patchStatus('services', ns, 'web', { loadBalancer: { ingress: [{ ip: '192.0.2.5' }] } });
  const sink = new RecordingSink();
  // The Lease's holder is trusted for 60 s: these edges follow throughout.
  const c = controller({ sink, config: config(undefined, 60) });
  await c.start();
  await waitFor('the follower serves the address in status', () => sink.vipAddresses().join() === '192.0.2.5', 20_000);
  const moved = config([{ cidrs: ['198.51.100.0/28'] }], 60);
  c.reconfigure(moved);
  await waitFor('the reloaded follower withdraws 192.0.2.5', () => sink.vips.length === 0 && sink.frontends.size === 0, 10_000).catch(() => undefined);
  await c.settle();
  t.deepEqual(sink.vipAddresses(), [], 'still advertised by the reloaded follower: 192.0.2.5 is in none of its pools');
  t.deepEqual([...sink.frontends.keys()], []);
  // The same cluster and config, without the history: nothing.
  const freshSink = new RecordingSink();
  const fresh = controller({ sink: freshSink, nodeName: 'edge-b', config: moved });
  await fresh.start();
  await waitFor('the fresh follower computed the Service', () => fresh.status().firstPassDone, 20_000);
  await fresh.settle();
  t.deepEqual([...freshSink.frontends.keys()], []);
});

/**
 * An admission policy of the API server's own that refuses every status
 * write to the namespace's Services named `prefix`… (as a policy engine or
 * an overloaded API server may for a while); removed at the end of the test.
 */
async function refuseStatusWrites(t: ExecutionContext, ns: string, prefix: string): Promise<void> {
  const name = `edgelb-test-refuse-status-${ns}`;
  const policy = {
    apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicy', metadata: { name },
    spec: {
      failurePolicy: 'Fail',
      matchConstraints: { resourceRules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['services/status'] }] },
      validations: [{ expression: `!object.metadata.name.startsWith('${prefix}')`, message: 'status writes refused by the test' }],
    },
  };
  const binding = {
    apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicyBinding', metadata: { name },
    spec: { policyName: name, validationActions: ['Deny'], matchResources: { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } } } },
  };
  t.teardown(async () => {
    await k8s.cluster.kubectl(['delete', '--ignore-not-found', 'validatingadmissionpolicybinding', name]).catch(() => undefined);
    await k8s.cluster.kubectl(['delete', '--ignore-not-found', 'validatingadmissionpolicy', name]).catch(() => undefined);
  });
  await k8s.cluster.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [policy, binding] }));
  // In force once the API server refuses a write of its own (its policy cache fills within a second or so).
  const probe = `${prefix}-probe`;
  await k8s.cluster.create(service(ns, probe, { selector: false }));
  await waitFor('the policy in force', () => k8s.cluster.patchStatus('services', ns, probe, { conditions: [] }).then(() => false, () => true), 20_000);
  await k8s.cluster.delete('services', ns, probe);
}

test.serial('a reload on the allocating edge keeps the addresses it gave out whose status is not written yet: not handed the lowest free one, which a Service deleted meanwhile held', async (t) => {
  const { ns, make, svc, serve, config } = await setup(t, [{ cidrs: ['192.0.2.0/28'] }]);
  await refuseStatusWrites(t, ns, 'late');
  await serve('first', '10.1.0.1');
  const sink = new RecordingSink();
  const c = make(sink);
  await c.start();
  await waitFor('first in status', async () => ingressOf(await svc('first')).join() === '192.0.2.1', 20_000);
  await serve('late', '10.1.0.2');
  await waitFor('late programmed and advertised', () => sink.frontends.has('192.0.2.2:80/TCP') && sink.vipAddresses().includes('192.0.2.2'), 20_000);
  t.deepEqual(ingressOf(await svc('late')), [], 'its status write is refused');
  // The lowest address is freed, then the config is reloaded without a
  // change to the pools (another BGP community, say).
  await k8s.cluster.delete('services', ns, 'first');
  await waitFor('first withdrawn', () => !sink.vipAddresses().includes('192.0.2.1'), 10_000);
  sink.clearLog();
  c.reconfigure(config());
  await sleep(300);
  await c.settle();
  t.deepEqual([...sink.frontends.keys()], ['192.0.2.2:80/TCP'], 'late moved to another address');
  t.deepEqual(sink.vipAddresses(), ['192.0.2.2']);
  t.deepEqual(sink.calls.flatMap((x) => x.removed), [], 'a frontend removed by a reload that changed no pool');
});

test.serial('an endpoint on a node whose address is not known yet is used as soon as the node gets one (nothing else changes)', async (t) => {
  const { ns, make, createService } = await setup(t);
  await createService('late-node');
  // One endpoint on n1 (known), one on a node that has no Node object yet (a node joining).
  const lateNode = `late-${ns}`;
  await k8s.cluster.create(endpointSlice(ns, 'late-node', 'late-node-1', [{ ip: '10.1.0.10', node: 'n1' }, { ip: '10.1.0.11', node: lateNode }]));
  const sink = new RecordingSink();
  const c = make(sink);
  await c.start();
  const backends = (): string[] => [...sink.frontends.values()].filter((d) => d.service === `${ns}/late-node`).flatMap((d) => d.backends.map((b) => b.ip)).sort();
  await waitFor('late-node served by its endpoint on n1', () => backends().length === 1, 20_000);
  await c.settle();
  t.deepEqual(backends(), ['10.1.0.10']);
  await k8s.cluster.create(node(lateNode, '10.0.0.9'));
  await waitFor(`the endpoint on ${lateNode} once the node has an address`, () => backends().length === 2, 20_000);
  t.deepEqual(backends(), ['10.1.0.10', '10.1.0.11']);
  t.is([...sink.frontends.values()].find((d) => d.service === `${ns}/late-node`)!.backends.find((b) => b.ip === '10.1.0.11')!.nodeIp, '10.0.0.9');
});

test.serial('stop() in the backoff after a failed sink (gobgpd down: applyVips throws) does not wait the backoff out', async (t) => {
  const { make, serve } = await setup(t);
  class FailingVips extends RecordingSink {
    failing = false;
    failures = 0;
    override applyVips(vips: Parameters<RecordingSink['applyVips']>[0]): void {
      if (this.failing) {
        this.failures++;
        throw new Error('gobgpd is not answering');
      }
      super.applyVips(vips);
    }
  }
  const sink = new FailingVips();
  const c = make(sink);
  await c.start();
  await waitFor('the first pass', () => c.status().firstPassDone);
  sink.failing = true;
  await serve('web', '10.1.0.60'); // a new VIP: every round now fails, waiting 1, 2, 4, 8 s between them
  await waitFor('four failed rounds', () => sink.failures >= 4, 20_000);
  const t0 = Date.now();
  await c.stop();
  const ms = Date.now() - t0;
  t.true(ms < 2000, `stop() took ${ms} ms (the round was waiting 8 s before its retry)`);
});
