// Valid-but-hostile API objects against the edge's controller: what a
// tenant who may create Services (or an unlucky operator) can write, and
// the promise that one such object never takes the edge down, blocks the
// other Services, or goes unreported.
//
// Against the real kube-apiserver (test/lib/kube.ts) as the edgelb-edge
// ServiceAccount, like outcomes.test.ts: one control plane for the file,
// each test with its own namespace, class and Lease; selector-less Services
// with hand-made EndpointSlices; no controller manager.
import test, { type ExecutionContext } from 'ava';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { pool } from '../lib/kube.js';
import { KubernetesController, type KubernetesControllerOptions } from '../../src/k8s/controller.js';
import { IpAllocator, type IpRequest } from '../../src/ipam/allocator.js';
import { createLogger, silentLogger } from '../../src/log/logger.js';
import type { DesiredStateSink } from '../../src/k8s/sink.js';
import { edgeClusterPerFile } from './edge-cluster.js';
import { StatusWriter, statusPatch } from '../../src/k8s/status.js';
import type { V1Service } from '@kubernetes/client-node';
import { EDGELB_NAMESPACE } from '../../src/lab/kube/rbac.js';
import { RestClient } from '../../src/k8s/rest.js';
import { loadKubeConfig } from '../../src/k8s/kubeconfig.js';
import { EventRecorder } from '../../src/k8s/events.js';
import { ADDRESSES_ANNOTATION, PRESENCE_LABEL, presenceLeaseName } from '../../src/k8s/presence.js';
import { conditionOf, endpointSlice, ingressOf, node, PlannerSink, RecordingSink, service, testConfig, waitFor, type Obj } from './helpers.js';

const log = silentLogger();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const k8s = edgeClusterPerFile('hostile');
let seq = 0;

type Pools = { cidrs: string[] }[];

async function setup(t: ExecutionContext, pools: Pools = [{ cidrs: ['192.0.2.0/28'] }]) {
  const n = ++seq;
  const ns = `h${n}`;
  const cls = `edgelb.io/h${n}`;
  const leaseName = `edgelb-h${n}`;
  await k8s.cluster.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  const config = (p: Pools = pools) => {
    const base = testConfig(p);
    return { ...base, kubernetes: { ...base.kubernetes, loadBalancerClass: cls, leaseName, leaseNamespace: EDGELB_NAMESPACE } };
  };
  const controllers: KubernetesController[] = [];
  t.teardown(async () => {
    for (const c of controllers) await c.stop().catch(() => undefined);
  });
  const make = (sink: DesiredStateSink, extra: Partial<KubernetesControllerOptions> = {}) => {
    const c = new KubernetesController({ config: config(), kubeconfigPath: k8s.kubeconfig, nodeName: 'edge-a', logger: log, debounceMs: 5, sink, ...extra });
    controllers.push(c);
    return c;
  };
  const events = async (name: string): Promise<Obj[]> => (await k8s.cluster.list('events', ns)).filter((e) => (e.regarding as { name?: string }).name === name);
  const svc = async (name: string): Promise<Obj | undefined> => (await k8s.cluster.get('services', ns, name)) ?? undefined;
  const createService = (name: string, opts: Parameters<typeof service>[2] = {}, spec: Obj = {}) => {
    const o = service(ns, name, { cls, selector: false, ...opts });
    return k8s.cluster.create({ ...o, spec: { ...(o.spec as Obj), ...spec } });
  };
  const serve = async (name: string, ip: string, extra: { annotations?: Record<string, string>; spec?: Obj } = {}) => {
    await createService(name, { annotations: extra.annotations ?? {} }, extra.spec ?? {});
    await k8s.cluster.create(endpointSlice(ns, name, `${name}-1`, [{ ip, node: 'n1' }]));
  };
  return { ns, cls, leaseName, config, make, events, svc, createService, serve };
}

test.serial('an address request edited in while no edge leads does not take an older Service\'s address from its status at the next leader', async (t) => {
  const { ns, make, svc, serve } = await setup(t);
  await serve('tenant', '10.1.0.1');
  const first = make(new RecordingSink());
  await first.start();
  await waitFor('tenant in status', async () => ingressOf(await svc('tenant')).length === 1, 20_000);
  // Created after the tenant: younger, so replayed after it.
  await serve('victim', '10.1.0.2');
  await waitFor('victim in status', async () => ingressOf(await svc('victim')).length === 1, 20_000);
  await first.settle();
  await first.stop();
  const victimIp = ingressOf(await svc('victim'))[0]!;
  const tenantIp = ingressOf(await svc('tenant'))[0]!;
  t.not(victimIp, tenantIp);
  // While no edge leads (an upgrade, a crash), the tenant asks for the
  // victim's address.
  await k8s.cluster.patch('services', ns, 'tenant', { metadata: { annotations: { 'edgelb.io/loadBalancerIPs': victimIp } } });
  const second = make(new RecordingSink());
  await second.start();
  await waitFor('the new leader decided', async () => {
    const [tn, vi] = [await svc('tenant'), await svc('victim')];
    return second.status().leader && (conditionOf(tn)?.reason === 'SharingConflict' || ingressOf(vi)[0] !== victimIp);
  }, 20_000);
  await second.settle();
  t.deepEqual(ingressOf(await svc('victim')), [victimIp], 'the victim keeps the address its status showed');
  t.is(conditionOf(await svc('tenant'))?.reason, 'SharingConflict');
});

test.serial('Services that stopped being ours while no edge ran (made a ClusterIP; classless after defaultClass was turned off) lose our address and condition at the next leader, and the address is free for another Service', async (t) => {
  const { ns, make, svc, serve, config } = await setup(t, [{ cidrs: ['192.0.2.0/31'] }]);
  const withDefault = { ...config(), kubernetes: { ...config().kubernetes, defaultClass: true } };
  await serve('left', '10.1.0.1');
  await createClassless(ns, 'classless', '10.1.0.2');
  const first = make(new RecordingSink(), { config: withDefault });
  await first.start();
  await waitFor('both in status', async () => ingressOf(await svc('left')).length === 1 && ingressOf(await svc('classless')).length === 1, 20_000);
  await first.settle();
  await first.stop();
  // While no edge runs, one Service stops being a LoadBalancer and the
  // operator stops handling classless ones: nobody processed either change,
  // so no edge remembers that they were ours.
  await k8s.cluster.patch('services', ns, 'left', { spec: { type: 'ClusterIP', loadBalancerClass: null, allocateLoadBalancerNodePorts: null } });
  const held = ingressOf(await svc('classless'))[0]!;
  // Another edgelb installation's Service (its class, its pool): the same condition type, not ours to take.
  await k8s.cluster.create(service(ns, 'theirs', { cls: 'example.com/other-edgelb', selector: false }));
  const theirCondition = { type: 'edgelb.io/Advertised', status: 'True', reason: 'Advertised', message: '198.51.100.9 advertised by 1 edge(s): other', lastTransitionTime: '2026-12-01T00:00:00Z' };
  await k8s.cluster.patchStatus('services', ns, 'theirs', { loadBalancer: { ingress: [{ ip: '198.51.100.9' }] }, conditions: [theirCondition] });
  await serve('next', '10.1.0.3');
  const second = make(new RecordingSink());
  await second.start();
  await waitFor('next advertised', async () => conditionOf(await svc('next'))?.status === 'True', 20_000).catch(() => undefined);
  await second.settle();
  await waitFor('released', async () => conditionOf(await svc('classless')) === undefined && conditionOf(await svc('left')) === undefined, 10_000).catch(() => undefined);
  for (const name of ['left', 'classless']) {
    t.deepEqual(ingressOf(await svc(name)), [], `our address is still in ${name}'s status`);
    t.is(conditionOf(await svc(name)), undefined, `our condition is still on ${name}`);
  }
  t.is(conditionOf(await svc('next'))?.status, 'True');
  t.deepEqual(ingressOf(await svc('theirs')), ['198.51.100.9'], 'another installation\'s address stays');
  t.is(conditionOf(await svc('theirs'))?.message, theirCondition.message, 'another installation\'s condition stays');
  t.true(ingressOf(await svc('next')).length === 1, 'next got an address of the pool');
  t.log(`classless held ${held}; next got ${ingressOf(await svc('next'))[0]}`);
});

/** A LoadBalancer Service without a class, served by one endpoint. */
async function createClassless(ns: string, name: string, ip: string): Promise<void> {
  await k8s.cluster.create(service(ns, name, { cls: null, selector: false }));
  await k8s.cluster.create(endpointSlice(ns, name, `${name}-1`, [{ ip, node: 'n1' }]));
}

test.serial('a condition message longer than the API server takes (a 40 000-character address request) still reaches status', async (t) => {
  const { make, svc, serve } = await setup(t);
  await serve('garbage', '10.1.0.1', { annotations: { 'edgelb.io/loadBalancerIPs': 'x'.repeat(40_000) } });
  await serve('ranges', '10.1.0.2', { spec: { loadBalancerSourceRanges: Array.from({ length: 1500 }, (_, i) => `2001:db8:${i.toString(16)}::/48`) } });
  await serve('fine', '10.1.0.3');
  const c = make(new RecordingSink());
  await c.start();
  await waitFor('fine advertised', async () => conditionOf(await svc('fine'))?.status === 'True', 20_000);
  await waitFor('garbage: InvalidRequest in its condition', async () => conditionOf(await svc('garbage'))?.reason === 'InvalidRequest', 10_000);
  t.regex(conditionOf(await svc('garbage'))!.message, /^requested address "xxxx/);
  await waitFor('ranges: SourceRangeFamily in its condition', async () => conditionOf(await svc('ranges'))?.reason === 'SourceRangeFamily', 10_000);
});

test.serial('a Service with hundreds of ports over the cap gets a few Warning Events, not one per frontend', async (t) => {
  const { ns, make, svc, events, createService, config } = await setup(t);
  const ports = Array.from({ length: 400 }, (_, i) => 1000 + i);
  // allocateLoadBalancerNodePorts: false — the node port range would not hold 400.
  await createService('many', { ports }, { allocateLoadBalancerNodePorts: false });
  await k8s.cluster.create(endpointSlice(ns, 'many', 'many-1', [{ ip: '10.1.0.1', node: 'n1' }], ports.slice(0, 100)));
  await createService('fine');
  await k8s.cluster.create(endpointSlice(ns, 'fine', 'fine-1', [{ ip: '10.1.0.2', node: 'n1' }]));
  const capped = config();
  capped.datapath = { ...capped.datapath, maxPortsPerService: 100 };
  const c = make(new RecordingSink(), { config: capped });
  await c.start();
  await waitFor('rejected for its ports', async () => conditionOf(await svc('many'))?.reason === 'TooManyPorts', 20_000);
  await waitFor('fine advertised', async () => conditionOf(await svc('fine'))?.status === 'True', 20_000);
  await c.settle();
  await waitFor('events written', () => c.status().eventsPending === 0, 20_000);
  const warnings = (await events('many')).filter((e) => e.reason === 'TooManyPorts');
  t.true(warnings.length >= 1 && warnings.length <= 2, `${warnings.length} TooManyPorts Events`);
  t.regex(String(warnings[0]!.note), /400 TCP\/UDP ports/);
});

test.serial('a follower reads one address spelled two ways in two Services\' status (written by someone else) as one frontend: one of them gets FrontendConflict, the sink one entry', async (t) => {
  const { ns, leaseName, make, svc, serve } = await setup(t, [{ cidrs: ['2001:db8::/120'] }]);
  // Another edge leads: this one follows status.
  await k8s.cluster.create({
    apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { namespace: EDGELB_NAMESPACE, name: leaseName },
    spec: { holderIdentity: 'edge-z', leaseDurationSeconds: 60, renewTime: new Date().toISOString().replace('Z', '000Z') },
  });
  await serve('a', '10.1.0.1');
  await serve('b', '10.1.0.2');
  await k8s.cluster.patchStatus('services', ns, 'a', { loadBalancer: { ingress: [{ ip: '2001:db8::5' }] } });
  await k8s.cluster.patchStatus('services', ns, 'b', { loadBalancer: { ingress: [{ ip: '2001:DB8:0::5' }] } });
  t.deepEqual(ingressOf(await svc('b')), ['2001:DB8:0::5'], 'the API server keeps the spelling');
  const sink = new RecordingSink();
  const c = make(sink);
  await c.start();
  await waitFor('a frontend programmed', () => sink.frontends.size > 0, 20_000);
  await c.settle();
  await sleep(300);
  await c.settle();
  t.deepEqual([...sink.frontends.keys()], ['[2001:db8::5]:80/TCP']);
  // (Its endpoints are IPv4: no VIP is advertised, and none in another spelling.)
  t.deepEqual(sink.vipCalls.flat().map((v) => v.address), []);
  t.deepEqual(c.status().rejected, { FrontendConflict: 1 });
});

test('address sharing with tens of thousands of ports costs linear time, not quadratic (it runs on the event loop that renews the Lease)', (t) => {
  const a = new IpAllocator([{ name: 'p', cidrs: ['192.0.2.0/24'], namespaces: [], serviceSelector: {}, autoAssign: true }]);
  const req = (key: string, protocol: string): IpRequest => ({
    key, namespace: 'ns', labels: {}, requested: [], sharingKey: 'k', shareWithNamespaces: [], families: [], current: [],
    ports: Array.from({ length: 30_000 }, (_, i) => ({ port: 1 + i, protocol })),
  });
  t.true(a.assign(req('ns/a', 'TCP')).ok);
  const t0 = Date.now();
  const r = a.assign(req('ns/b', 'UDP'));
  const ms = Date.now() - t0;
  t.deepEqual(r, { ok: true, addresses: [{ ip: '192.0.2.1', pool: 'p' }] });
  t.true(ms < 500, `${ms} ms for one assignment`);
});

test('tens of thousands of Services waiting for requested addresses cost linear time: reserving, passing reserved addresses over and handing them out (it runs on the event loop that renews the Lease)', (t) => {
  const a = new IpAllocator([{ name: 'p', cidrs: ['10.0.0.0/16'], namespaces: [], serviceSelector: {}, autoAssign: true }]);
  const N = 20_000;
  const ip = (i: number) => `10.0.${1 + (i >> 8)}.${i & 255}`;
  const req = (key: string, requested: string[]): IpRequest => ({ key, namespace: 'ns', labels: {}, requested, sharingKey: null, ports: [{ port: 80, protocol: 'TCP' }], families: [], current: [] });
  for (let i = 0; i < N; i++) a.assign(req(`ns/h${i}`, [ip(i)]));
  const t0 = Date.now();
  // Each holder's address asked for by one Service, the first one by a thousand more.
  for (let i = 0; i < N; i++) t.false(a.assign(req(`ns/w${i}`, [ip(i)])).ok);
  for (let i = 0; i < 1000; i++) a.assign(req(`ns/crowd${i}`, [ip(0)]));
  for (let i = 0; i < N; i++) a.release(`ns/h${i}`);
  // 10.0.1.0–10.0.79.31 are free and reserved: automatic Services go past them.
  const offset = (x: string) => Number(x.split('.')[2]) * 256 + Number(x.split('.')[3]);
  const autos = Array.from({ length: 1000 }, (_, i) => a.assign(req(`ns/auto${i}`, [])).ok ? offset(a.assignmentOf(`ns/auto${i}`)![0]!.ip) : -1);
  t.deepEqual(autos.filter((o) => o < 1 || (o >= 256 && o < 256 + N)), []);
  for (let i = 0; i < N; i++) t.true(a.assign(req(`ns/w${i}`, [ip(i)])).ok);
  for (let i = 0; i < 1000; i++) a.release(`ns/crowd${i}`);
  const ms = Date.now() - t0;
  t.true(ms < 3000, `${ms} ms for ${2 * N + 3000} decisions`);
});

test('an IPv6 or dual-stack Service against IPv4-only pools is told there is no pool of its family, not that the pool is exhausted', (t) => {
  const a = new IpAllocator([{ name: 'v4only', cidrs: ['192.0.2.0/28'], namespaces: [], serviceSelector: {}, autoAssign: true }]);
  const req = (key: string, families: (4 | 6)[]): IpRequest => ({ key, namespace: 'ns', labels: {}, requested: [], sharingKey: null, ports: [{ port: 80, protocol: 'TCP' }], families, current: [] });
  for (const fams of [[6], [4, 6]] as (4 | 6)[][]) {
    const r = a.assign(req(`ns/${fams.join('')}`, fams));
    t.deepEqual(r, { ok: false, reason: 'NoPool', message: 'no free IPv6 address: no auto-assign pool admitting this Service has IPv6 addresses (pool(s) v4only)' });
  }
});

test.serial('a status write lands only on the Service it was computed for: one deleted and recreated under the same name (a new uid) while the write was on its way is left alone', async (t) => {
  const { ns, createService, svc } = await setup(t);
  await createService('again');
  const old = (await svc('again')) as V1Service;
  await k8s.cluster.admin.ok('DELETE', `/api/v1/namespaces/${ns}/services/again`);
  await createService('again');
  const now = (await svc('again')) as V1Service;
  t.not(now.metadata?.uid, old.metadata?.uid);
  // What a writer still holding the deleted Service (the informer had not caught up) sends: the API
  // server refuses it (422: metadata.uid is immutable), so nothing of it lands.
  const patch = statusPatch(old, { ingress: ['192.0.2.9'], condition: { status: 'True', reason: 'Advertised', message: 'x' } }, new Date());
  const r = await k8s.cluster.admin.request('PATCH', `/api/v1/namespaces/${ns}/services/again/status`, patch, 'application/merge-patch+json');
  t.is(r.code, 422, `HTTP ${r.code} ${JSON.stringify(r.body).slice(0, 300)}`);
  t.deepEqual(ingressOf(await svc('again')), []);
  // The same write for the Service as it is now lands.
  const ok = await k8s.cluster.admin.request('PATCH', `/api/v1/namespaces/${ns}/services/again/status`, statusPatch(now, { ingress: ['192.0.2.9'], condition: null }, new Date()), 'application/merge-patch+json');
  t.is(ok.code, 200, JSON.stringify(ok.body).slice(0, 300));
  t.deepEqual(ingressOf(await svc('again')), ['192.0.2.9']);
});

test.serial('thousands of unusable endpoints in one Service give a few Warning Events per reason, not one each (the recorder\'s queue is shared by every Service)', async (t) => {
  const { ns, make, svc, events, createService, serve } = await setup(t);
  // 2 000 endpoints on a node without a known address (the API server
  // validates source ranges, annotation included, so those cannot pile up).
  await createService('noisy');
  for (let j = 0; j < 2; j++) {
    const eps = Array.from({ length: 1000 }, (_, i) => ({ ip: `10.${50 + j}.${i >> 8}.${i & 255}`, node: 'nowhere' }));
    await k8s.cluster.create(endpointSlice(ns, 'noisy', `noisy-${j}`, eps));
  }
  await serve('fine', '10.1.0.9');
  const c = make(new RecordingSink());
  await c.start();
  await waitFor('fine advertised', async () => conditionOf(await svc('fine'))?.status === 'True', 20_000);
  await waitFor('noisy decided', async () => conditionOf(await svc('noisy'))?.reason === 'NoReadyEndpoints', 20_000);
  await c.settle();
  await waitFor('events written', () => c.status().eventsPending === 0, 60_000);
  const noisy = await events('noisy');
  const count = (reason: string) => noisy.filter((e) => e.reason === reason).length;
  t.true(count('NodeAddressUnknown') >= 1 && count('NodeAddressUnknown') <= 5, `${count('NodeAddressUnknown')} NodeAddressUnknown Events`);
  t.true(noisy.some((e) => e.reason === 'NodeAddressUnknown' && /and 1995 more for the same reason/.test(String(e.note))), 'the count of the others is named');
  t.true((await events('fine')).some((e) => e.reason === 'IPAllocated'));
});

test.serial('an edge name of 253 characters (the longest node.name takes) and a Lease name as long still get their Events recorded', async (t) => {
  const { ns, createService, svc } = await setup(t);
  await createService('s'.repeat(63));
  const target = (await svc('s'.repeat(63))) as V1Service;
  const rest = new RestClient(loadKubeConfig(k8s.kubeconfig));
  t.teardown(() => rest.close());
  const host = `edge-${'a'.repeat(240)}.example`;
  const rec = new EventRecorder({ rest, component: 'edgelb', host, logger: log });
  rec.record(target, 'Warning', 'NodeAddressUnknown', 'endpoint 10.1.0.1 is not used');
  // (What presenceLeaseName makes of such an edge name: 253 characters.)
  const lease = `edgelb-edge-${host}`.slice(0, 253);
  rec.recordFor({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', namespace: ns, name: lease }, 'Warning', 'DuplicateEdgeName', 'two machines present the edge name');
  await waitFor('written', () => rec.pending() === 0, 10_000);
  t.is(rec.failed, 0, 'no Event refused');
  const all = await k8s.cluster.list('events', ns);
  t.deepEqual(all.map((e) => e.reason).sort(), ['DuplicateEdgeName', 'NodeAddressUnknown']);
  for (const e of all) t.true((e.metadata as { name: string }).name.length <= 253);
  t.true(all.every((e) => String(e.reportingInstance).startsWith('edge-aaaa')), 'the instance still names the edge');
});

test.serial('a Service with 20 000 endpoints on 10 ports (200 000 backend entries) is refused at once (TooManyBackends) without blocking the event loop; the others are served', async (t) => {
  const { ns, make, svc, events, createService, serve, config } = await setup(t);
  const ports = Array.from({ length: 10 }, (_, i) => 80 + i);
  await createService('huge', { ports }, { allocateLoadBalancerNodePorts: false });
  await pool(20, 4, (j) => k8s.cluster.create(endpointSlice(ns, 'huge', `huge-${j}`, Array.from({ length: 1000 }, (_, i) => ({ ip: `10.${100 + j}.${i >> 8}.${i & 255}`, node: 'n1' })), ports)));
  await serve('fine', '10.1.0.9');
  const capped = config();
  capped.datapath = { ...capped.datapath, maxPortsPerService: 100, maxBackendsPerService: 65_536 };
  const sink = new PlannerSink({ backendIds: 1 << 18 });
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  t.teardown(() => delay.disable());
  const c = make(sink, { config: capped });
  await c.start();
  await waitFor('huge refused', async () => conditionOf(await svc('huge'))?.reason === 'TooManyBackends', 20_000);
  await waitFor('fine advertised', async () => conditionOf(await svc('fine'))?.status === 'True', 20_000);
  await c.settle();
  const maxMs = delay.max / 1e6;
  t.log(`longest event loop delay ${maxMs.toFixed(0)} ms`);
  t.true(maxMs < 1000, `event loop blocked ${maxMs.toFixed(0)} ms`);
  t.regex(conditionOf(await svc('huge'))!.message, /needs 200000 backend entries .*at most 65536 per Service \(datapath\.maxBackendsPerService\)/);
  t.false([...sink.frontends.values()].some((d) => d.service === `${ns}/huge`), 'nothing of it reached the sink');
  await waitFor('its Warning Event', async () => (await events('huge')).some((e) => e.reason === 'TooManyBackends'), 20_000);
});

test.serial('many large Services at once are computed over several rounds, each bounded in backend entries (the round runs on the event loop that renews the Lease)', async (t) => {
  const { ns, make, svc, createService } = await setup(t, [{ cidrs: ['192.0.2.0/27'] }]);
  const ports = [80, 81, 82, 83, 84];
  for (let s = 0; s < 6; s++) {
    await createService(`big${s}`, { ports }, { allocateLoadBalancerNodePorts: false });
    await k8s.cluster.create(endpointSlice(ns, `big${s}`, `big${s}-1`, Array.from({ length: 1000 }, (_, i) => ({ ip: `10.${60 + s}.${i >> 8}.${i & 255}`, node: 'n1' })), ports));
  }
  const sink = new RecordingSink();
  const c = make(sink, { roundBackends: 5000 });
  await c.start();
  await waitFor('all advertised', async () => {
    for (let s = 0; s < 6; s++) if (conditionOf(await svc(`big${s}`))?.status !== 'True') return false;
    return true;
  }, 30_000);
  const perCall = sink.calls.filter((x) => x.changed.length > 0).map((x) => x.changed.reduce((n, d) => n + d.backends.length, 0));
  t.is(perCall.reduce((a, b) => a + b, 0), 30_000);
  // A round stops taking Services once it holds the budget: at most one Service (5 000) past it.
  t.true(perCall.every((n) => n <= 10_000), `backend entries per round: ${perCall.join(', ')}`);
});

test.serial('a follower takes at most one address per family from a status someone else wrote with 100 entries (hostnames, foreign addresses, ipMode Proxy): one frontend, one VIP', async (t) => {
  const { ns, leaseName, make, serve } = await setup(t, [{ cidrs: ['192.0.2.0/24', '2001:db8::/120'] }]);
  await k8s.cluster.create({
    apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { namespace: EDGELB_NAMESPACE, name: leaseName },
    spec: { holderIdentity: 'edge-z', leaseDurationSeconds: 60, renewTime: new Date().toISOString().replace('Z', '000Z') },
  });
  await serve('bogus', '10.1.0.1');
  const ingress: Obj[] = [{ hostname: 'lb.example.com' }, { ip: '198.51.100.7' }];
  for (let i = 1; i <= 100; i++) ingress.push({ ip: `192.0.2.${i}`, ipMode: i % 2 ? 'VIP' : 'Proxy' });
  await k8s.cluster.patchStatus('services', ns, 'bogus', { loadBalancer: { ingress } });
  const sink = new RecordingSink();
  const c = make(sink);
  await c.start();
  await waitFor('a frontend programmed', () => sink.frontends.size > 0, 20_000);
  await c.settle();
  await sleep(300);
  await c.settle();
  t.deepEqual([...sink.frontends.keys()], ['192.0.2.1:80/TCP'], 'the first address of its family, as the allocating edge writes it');
  t.deepEqual(sink.vipAddresses(), ['192.0.2.1']);
});

test.serial('a Service switching type and class while it holds an address (LoadBalancer → ClusterIP → LoadBalancer, to another class and back): withdrawn, released, re-allocated — never two Services on one address, nothing leaked, another class\'s status left alone', async (t) => {
  const { ns, cls, make, svc, serve } = await setup(t, [{ cidrs: ['192.0.2.0/29'] }]);
  await serve('flip', '10.1.0.1');
  await serve('other', '10.1.0.2');
  const sink = new RecordingSink();
  const c = make(sink);
  await c.start();
  const ours = async (names: string[]) => {
    for (const n of names) if (conditionOf(await svc(n))?.status !== 'True') return false;
    return true;
  };
  await waitFor('both advertised', () => ours(['flip', 'other']), 20_000);
  const first = ingressOf(await svc('flip'))[0]!;
  const distinct = async (names: string[]) => {
    const ips = (await Promise.all(names.map(async (n) => ingressOf(await svc(n))))).flat();
    t.is(new Set(ips).size, ips.length, `addresses ${ips.join(', ')}`);
    t.deepEqual(sink.vipAddresses().sort(), [...ips].sort(), 'the sink advertises exactly what status shows');
    t.is(c.status().pools[0]!.used, ips.length, 'the allocator holds exactly those');
  };
  const toClusterIP = () => k8s.cluster.patch('services', ns, 'flip', { spec: { type: 'ClusterIP', loadBalancerClass: null, allocateLoadBalancerNodePorts: null } });
  const toLB = (lbClass: string) => k8s.cluster.patch('services', ns, 'flip', { spec: { type: 'LoadBalancer', loadBalancerClass: lbClass } });
  const gone = async () => !sink.vipAddresses().includes(first) && ![...sink.frontends.values()].some((d) => d.service === `${ns}/flip`);

  await toClusterIP();
  await waitFor('flip withdrawn and removed', gone, 20_000);
  await waitFor('flip has no address in status', async () => ingressOf(await svc('flip')).length === 0 && conditionOf(await svc('flip')) === undefined, 20_000);
  // Its address is free again: a new Service may take it.
  await serve('third', '10.1.0.3');
  await waitFor('third advertised', () => ours(['third']), 20_000);
  await c.settle();
  await distinct(['other', 'third']);

  await toLB(cls);
  await waitFor('flip advertised again', () => ours(['flip']), 20_000);
  await c.settle();
  await distinct(['flip', 'other', 'third']);

  // Away to another controller's class (through ClusterIP: the class is immutable while LoadBalancer).
  await toClusterIP();
  await waitFor('flip removed', async () => ![...sink.frontends.values()].some((d) => d.service === `${ns}/flip`), 20_000);
  await toLB('example.com/other-lb');
  await k8s.cluster.patchStatus('services', ns, 'flip', { loadBalancer: { ingress: [{ ip: '198.51.100.1' }] } });
  await sleep(500);
  await c.settle();
  await sleep(300);
  t.deepEqual(ingressOf(await svc('flip')), ['198.51.100.1'], 'the other controller\'s status is left alone');
  t.is(conditionOf(await svc('flip')), undefined);
  await distinct(['other', 'third']);

  await toClusterIP();
  await toLB(cls);
  await waitFor('flip advertised once back in our class', () => ours(['flip']), 20_000);
  await c.settle();
  await distinct(['flip', 'other', 'third']);
});

// The interleaving behind the type/class test's rare failure, forced: the
// release write (computed from the ClusterIP version) reaches the API server
// only after the Service moved to another class and that controller wrote
// its status, so it is refused (409, the resourceVersion it carries). The
// release must then be written from the newer version — the controller had
// forgotten it when it computed that version (not ours, nothing held), so
// our condition stayed on a Service another controller owns, for good.
test.serial('a release refused because the Service changed meanwhile (moved to another class, that controller wrote its status) is written again from the newer version: our condition leaves, the other controller\'s address stays', async (t) => {
  const { ns, make, svc, serve } = await setup(t);
  await serve('flip', '10.1.0.1');
  const c = make(new RecordingSink());
  const rest = (c as unknown as { rest: RestClient }).rest;
  const send = rest.send.bind(rest);
  let gate: Promise<void> | null = null;
  let open = () => {};
  let held = 0;
  const refused: number[] = [];
  rest.send = async (method, path, body, ...more) => {
    // Only a release names a resourceVersion (status.ts).
    const release = method === 'PATCH' && path.endsWith('/services/flip/status') && (body as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion !== undefined;
    if (release && gate) {
      held++;
      await gate;
    }
    try {
      return await send(method, path, body, ...more);
    } catch (e) {
      if (release) refused.push((e as { code?: number }).code ?? 0);
      throw e;
    }
  };
  await c.start();
  await waitFor('flip advertised', async () => conditionOf(await svc('flip'))?.status === 'True', 20_000);
  await c.settle();

  gate = new Promise<void>((r) => (open = r));
  await k8s.cluster.patch('services', ns, 'flip', { spec: { type: 'ClusterIP', loadBalancerClass: null, allocateLoadBalancerNodePorts: null } });
  await waitFor('the release write on its way (held)', () => held === 1, 20_000);
  await k8s.cluster.patch('services', ns, 'flip', { spec: { type: 'LoadBalancer', loadBalancerClass: 'example.com/other-lb' } });
  const written = await k8s.cluster.patchStatus('services', ns, 'flip', { loadBalancer: { ingress: [{ ip: '198.51.100.1' }] } });
  const rv = (written.metadata as { resourceVersion: string }).resourceVersion;
  const cache = (c as unknown as { cluster: { service(key: string): V1Service | undefined } }).cluster;
  await waitFor('the controller holds the other class\'s version', () => cache.service(`${ns}/flip`)?.metadata?.resourceVersion === rv, 20_000);
  await c.settle();
  open();
  await waitFor('the held release refused', () => refused.length === 1, 20_000);
  t.deepEqual(refused, [409]);
  await waitFor('our condition taken out', async () => conditionOf(await svc('flip')) === undefined, 10_000).catch(() => undefined);
  t.is(conditionOf(await svc('flip')), undefined, 'our condition is still on the Service');
  t.deepEqual(ingressOf(await svc('flip')), ['198.51.100.1'], 'the other controller\'s status is left alone');
});

test.serial('odd EndpointSlices (the VIP itself, broadcast, a node\'s address, IPv6 and FQDN slices for an IPv4 Service, duplicates, null conditions, port 0, no ports): the usable endpoints are served, the others named in Warnings', async (t) => {
  const { ns, make, svc, events, createService } = await setup(t);
  await createService('odd', {}, {});
  const slice = (name: string, over: Obj) => k8s.cluster.create({ ...endpointSlice(ns, 'odd', name, [{ ip: '10.1.0.1', node: 'n1' }]), ...over });
  const ep = (ip: string, extra: Obj = {}) => ({ addresses: [ip], nodeName: 'n1', conditions: { ready: true }, ...extra });
  await slice('good', { endpoints: [ep('10.1.0.1'), ep('192.0.2.1'), ep('255.255.255.255'), ep('10.0.0.1'), ep('10.1.0.3', { conditions: { ready: null, serving: null, terminating: null } })] });
  await slice('dup', { endpoints: [ep('10.1.0.1')] });
  await slice('v6', { addressType: 'IPv6', endpoints: [ep('2001:db8:1::1')] });
  await slice('fqdn', { addressType: 'FQDN', endpoints: [ep('backend.example.com')] });
  await slice('zero', { ports: [{ name: 'p80', port: 0, protocol: 'TCP' }], endpoints: [ep('10.1.0.4')] });
  await slice('noports', { ports: null, endpoints: [ep('10.1.0.5')] });
  const sink = new PlannerSink();
  const c = make(sink);
  await c.start();
  await waitFor('odd advertised', async () => conditionOf(await svc('odd'))?.status === 'True', 20_000);
  await c.settle();
  const [d] = [...sink.frontends.values()].filter((x) => x.service === `${ns}/odd`);
  t.deepEqual(d!.backends.map((b) => `${b.ip}:${b.port}`).sort(), ['10.0.0.1:8080', '10.1.0.1:8080', '10.1.0.3:8080', '10.1.0.5:8080']);
  await waitFor('Warnings naming what is not used', async () => {
    const notes = (await events('odd')).filter((e) => e.type === 'Warning').map((e) => `${String(e.reason)}: ${String(e.note)}`);
    return ['192.0.2.1 is not used', '255.255.255.255 is not used', 'FQDN', 'its port is 0'].every((s) => notes.some((n) => n.includes(s)));
  }, 20_000);
});

test.serial('names at their limits (a 63-character namespace and Service, 15-character port names): allocated, advertised, Events and condition written', async (t) => {
  const { make } = await setup(t);
  const ns = `n${seq}-${'x'.repeat(61 - String(seq).length)}`;
  const name = `s-${'y'.repeat(61)}`;
  t.is(ns.length, 63);
  await k8s.cluster.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  const o = service(ns, name, { cls: `edgelb.io/h${seq}`, selector: false });
  await k8s.cluster.create({ ...o, spec: { ...(o.spec as Obj), ports: [{ name: 'p'.repeat(15), port: 80, protocol: 'TCP', targetPort: 8080 }, { name: 'q'.repeat(15), port: 90, protocol: 'SCTP', targetPort: 9090 }] } });
  await k8s.cluster.create({ ...endpointSlice(ns, name, 'e'.repeat(253), [{ ip: '10.1.0.1', node: 'n1' }]), ports: [{ name: 'p'.repeat(15), port: 8080, protocol: 'TCP' }] });
  const c = make(new RecordingSink());
  await c.start();
  const get = async () => (await k8s.cluster.get('services', ns, name)) ?? undefined;
  await waitFor('advertised', async () => conditionOf(await get())?.status === 'True', 20_000);
  await c.settle();
  await waitFor('events written', () => c.status().eventsPending === 0, 20_000);
  const reasons = (await k8s.cluster.list('events', ns)).map((e) => e.reason);
  t.true(reasons.includes('IPAllocated') && reasons.includes('UnsupportedProtocol'), reasons.join(', '));
});

test.serial('one Service\'s source ranges cannot fill the edge\'s table of them (one entry per range and frontend, shared by every Service): 100 ports × 655 ranges is refused (TooManySourceRanges), another Service\'s ranges still fit', async (t) => {
  const { ns, make, svc, createService, config } = await setup(t);
  const ports = Array.from({ length: 100 }, (_, i) => 1000 + i);
  await createService('walls', { ports }, { allocateLoadBalancerNodePorts: false, loadBalancerSourceRanges: Array.from({ length: 655 }, (_, i) => `11.${i >> 8}.${i & 255}.0/24`) });
  await k8s.cluster.create(endpointSlice(ns, 'walls', 'walls-1', [{ ip: '10.1.0.1', node: 'n1' }], ports));
  const capped = config();
  capped.datapath = { ...capped.datapath, maxPortsPerService: 100, maxSourceRangesPerService: 16_384 };
  const c = make(new PlannerSink({ srcRanges: 65_536 }), { config: capped });
  await c.start();
  await waitFor('walls decided', async () => conditionOf(await svc('walls')) !== undefined, 20_000);
  // Then another tenant's Service with a few ranges (36 entries would have been left).
  await createService('fenced', {}, { loadBalancerSourceRanges: Array.from({ length: 40 }, (_, i) => `12.0.${i}.0/24`) });
  await k8s.cluster.create(endpointSlice(ns, 'fenced', 'fenced-1', [{ ip: '10.1.0.2', node: 'n1' }]));
  // Its Service may be computed before its slice arrives (NoReadyEndpoints
  // first): wait for the condition to settle on advertised, or time out
  // naming what it says (a refusal would stay).
  await waitFor('fenced advertised', async () => conditionOf(await svc('fenced'))?.status === 'True', 20_000).catch(() => undefined);
  t.is(conditionOf(await svc('fenced'))?.status, 'True', JSON.stringify(conditionOf(await svc('fenced'))));
  t.is(conditionOf(await svc('walls'))?.reason, 'TooManySourceRanges');
  t.regex(conditionOf(await svc('walls'))!.message, /needs 65500 source-range entries .*at most 16384 per Service \(datapath\.maxSourceRangesPerService\)/);
});

test.serial('source-range entries count towards a round\'s budget like backends (the datapath plans each one on the event loop)', async (t) => {
  const { ns, make, svc, createService } = await setup(t);
  const ports = [80, 81, 82, 83, 84];
  for (let s = 0; s < 4; s++) {
    await createService(`walled${s}`, { ports }, { allocateLoadBalancerNodePorts: false, loadBalancerSourceRanges: Array.from({ length: 1000 }, (_, i) => `${20 + s}.${i >> 8}.${i & 255}.0/24`) });
    await k8s.cluster.create(endpointSlice(ns, `walled${s}`, `walled${s}-1`, [{ ip: `10.1.0.${s + 1}`, node: 'n1' }], ports));
  }
  const sink = new RecordingSink();
  const c = make(sink, { roundBackends: 5000 });
  await c.start();
  await waitFor('all advertised', async () => {
    for (let s = 0; s < 4; s++) if (conditionOf(await svc(`walled${s}`))?.status !== 'True') return false;
    return true;
  }, 30_000);
  const perCall = sink.calls.filter((x) => x.changed.length > 0).map((x) => x.changed.reduce((n, d) => n + d.backends.length + d.sourceRanges.length, 0));
  t.is(perCall.reduce((a, b) => a + b, 0), 4 * 5 * 1001);
  t.true(perCall.every((n) => n <= 10_010), `entries per round: ${perCall.join(', ')}`);
});

test.serial('an EndpointSlice naming an edge\'s own address (this edge\'s, or another edge\'s from its presence Lease), or a node claiming one: those endpoints are not used, the others are, and Warnings name them', async (t) => {
  const { ns, leaseName, make, svc, events, createService } = await setup(t);
  // Another edge, as its presence Lease tells the others.
  await k8s.cluster.create({
    apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
    metadata: { namespace: EDGELB_NAMESPACE, name: presenceLeaseName(leaseName, 'edge-b'), labels: { [PRESENCE_LABEL]: 'true' }, annotations: { [ADDRESSES_ANNOTATION]: '10.9.0.2,2001:db8:e::2' } },
    spec: { holderIdentity: 'edge-b', leaseDurationSeconds: 60, renewTime: new Date().toISOString().replace('Z', '000Z') },
  });
  // A node whose kubelet claims this edge's address.
  const nodeName = `${ns}-claims-edge`;
  await k8s.cluster.create(node(nodeName, '10.9.0.1'));
  t.teardown(() => k8s.cluster.admin.ok('DELETE', `/api/v1/nodes/${nodeName}`).catch(() => undefined));
  await createService('looped');
  await k8s.cluster.create(endpointSlice(ns, 'looped', 'looped-1', [
    { ip: '10.1.0.1', node: 'n1' },
    { ip: '10.9.0.1', node: 'n1' },
    { ip: '10.9.0.2', node: 'n1' },
    { ip: '10.1.0.2', node: nodeName },
  ]));
  const sink = new PlannerSink();
  const c = make(sink, { ownAddresses: ['10.9.0.1'] });
  await c.start();
  await waitFor('looped advertised', async () => conditionOf(await svc('looped'))?.status === 'True', 20_000);
  await c.settle();
  const [d] = [...sink.frontends.values()].filter((x) => x.service === `${ns}/looped`);
  t.deepEqual(d!.backends.map((b) => b.ip), ['10.1.0.1'], 'only the pod: never an edge, nor a node at an edge\'s address');
  await waitFor('Warnings naming each', async () => {
    const notes = (await events('looped')).filter((e) => e.type === 'Warning').map((e) => `${String(e.reason)}: ${String(e.note)}`);
    return [
      'BackendAddressRefused: endpoint 10.9.0.1 is not used: it is the address of edge edge-a',
      'BackendAddressRefused: endpoint 10.9.0.2 is not used: it is the address of edge edge-b',
      `NodeAddressRefused: endpoint 10.1.0.2 is not used: the address 10.9.0.1 of its node ${nodeName} is the address of edge edge-a`,
    ].every((s) => notes.some((n) => n.startsWith(s)));
  }, 20_000);
  // This edge tells the others its addresses the same way.
  const own = await k8s.cluster.get('leases', EDGELB_NAMESPACE, presenceLeaseName(leaseName, 'edge-a'));
  t.is((own?.metadata as { annotations?: Record<string, string> } | undefined)?.annotations?.[ADDRESSES_ANNOTATION], '10.9.0.1');
});

test.serial('a ClusterIP Service with 250 KB of annotations (cached as a stub) that becomes a LoadBalancer of our class is served with the annotations edgelb reads', async (t) => {
  const { ns, cls, make, svc, createService } = await setup(t);
  await createService('later', { annotations: { 'edgelb.io/mode': 'snat', 'example.com/blob': 'x'.repeat(250_000) } }, { type: 'ClusterIP', loadBalancerClass: null, allocateLoadBalancerNodePorts: null });
  await k8s.cluster.create(endpointSlice(ns, 'later', 'later-1', [{ ip: '10.1.0.1', node: 'n1' }]));
  const sink = new RecordingSink();
  const c = make(sink);
  await c.start();
  await c.settle();
  t.is(conditionOf(await svc('later')), undefined, 'not ours while ClusterIP');
  await k8s.cluster.patch('services', ns, 'later', { spec: { type: 'LoadBalancer', loadBalancerClass: cls } });
  await waitFor('later advertised', async () => conditionOf(await svc('later'))?.status === 'True', 20_000);
  await c.settle();
  t.deepEqual([...sink.frontends.values()].filter((d) => d.service === `${ns}/later`).map((d) => d.mode), ['snat']);
});

test.serial('a release write (the Service left our class) that reaches the API server after another controller wrote its address does not wipe that address', async (t) => {
  const { ns, createService, svc } = await setup(t);
  await createService('left');
  await k8s.cluster.patchStatus('services', ns, 'left', { loadBalancer: { ingress: [{ ip: '192.0.2.9' }] } });
  // The edge's cache as the write is computed: still showing our address.
  let cached = (await svc('left')) as V1Service;
  const rest = new RestClient(loadKubeConfig(k8s.kubeconfig));
  t.teardown(() => rest.close());
  let open: () => void = () => undefined;
  const gate = new Promise<void>((r) => (open = r));
  let held = 0;
  // The write is on its way (a slow API server, a busy edge) while the other controller writes.
  const slow = { send: async (...a: Parameters<RestClient['send']>) => {
    if (a[0] === 'PATCH' && held++ === 0) await gate;
    return rest.send(...a);
  } } as unknown as RestClient;
  const writer = new StatusWriter({ rest: slow, logger: log, get: () => cached, retryMs: 50 });
  t.teardown(() => writer.stop());
  writer.set(`${ns}/left`, { ingress: [], condition: null, release: ['192.0.2.9'] });
  await waitFor('the release write sent', () => held > 0, 5_000);
  await k8s.cluster.patchStatus('services', ns, 'left', { loadBalancer: { ingress: [{ ip: '198.51.100.1' }] } });
  open();
  // The informer then delivers the other controller's write.
  cached = (await svc('left')) as V1Service;
  writer.observe(`${ns}/left`);
  await waitFor('settled', () => writer.pending() === 0, 10_000);
  t.deepEqual(ingressOf(await svc('left')), ['198.51.100.1'], 'the other controller\'s address stays');
});

test.serial('Services in a namespace stuck Terminating (a finalizer that never goes): the Events the API server refuses there are not logged as missing permissions, one error line each', async (t) => {
  const { ns, make, svc, createService } = await setup(t);
  for (let i = 0; i < 10; i++) {
    await createService(`s${i}`);
    await k8s.cluster.create(endpointSlice(ns, `s${i}`, `s${i}-1`, [{ ip: `10.1.0.${i + 1}`, node: 'n1' }]));
  }
  const lines: string[] = [];
  const stream = new Writable({ write(chunk: Buffer, _e, cb) { lines.push(String(chunk)); cb(); } });
  const c = make(new RecordingSink(), { logger: createLogger({ stream, level: 'debug' }) });
  await c.start();
  await waitFor('all advertised', async () => {
    for (let i = 0; i < 10; i++) if (conditionOf(await svc(`s${i}`))?.status !== 'True') return false;
    return true;
  }, 20_000);
  await c.settle();
  await waitFor('events written', () => c.status().eventsPending === 0, 20_000);
  // No namespace controller runs here: the namespace stays Terminating with its content, as behind a stuck finalizer.
  await k8s.cluster.admin.ok('DELETE', `/api/v1/namespaces/${ns}`);
  // Every Service's endpoint goes to a node without an address: a Warning and a Withdrawn Event each.
  for (let i = 0; i < 10; i++) await k8s.cluster.patch('endpointslices', ns, `s${i}-1`, { endpoints: [{ addresses: [`10.1.0.${i + 1}`], nodeName: 'nowhere', conditions: { ready: true } }] });
  await waitFor('all withdrawn', async () => {
    for (let i = 0; i < 10; i++) if (conditionOf(await svc(`s${i}`))?.reason !== 'NoReadyEndpoints') return false;
    return true;
  }, 20_000);
  await c.settle();
  await waitFor('events tried', () => c.status().eventsPending === 0, 20_000);
  const misleading = lines.filter((l) => l.includes('permission denied'));
  t.is(misleading.length, 0, misleading.slice(0, 2).join('\n'));
});

test.serial('a status write that gives an older Service another Service\'s address while no edge leads: the edge taking over, which served that address for its owner, keeps it there', async (t) => {
  const { ns, make, svc, serve } = await setup(t);
  await serve('older', '10.1.0.1');
  await sleep(1100); // creation timestamps have whole seconds
  await serve('victim', '10.1.0.2');
  const leader = make(new RecordingSink());
  await leader.start();
  await waitFor('both advertised', async () => conditionOf(await svc('older'))?.status === 'True' && conditionOf(await svc('victim'))?.status === 'True', 20_000);
  const followerSink = new RecordingSink();
  const follower = make(followerSink, { nodeName: 'edge-b' });
  await follower.start();
  const victimIp = ingressOf(await svc('victim'))[0]!;
  await waitFor('the follower serves the victim', () => [...followerSink.frontends.values()].some((d) => d.service.endsWith('/victim') && d.frontend.vip === victimIp), 20_000);
  await leader.settle();
  // The leader dies (its Lease runs out); meanwhile someone with access to status (a careless
  // `kubectl patch --subresource=status`, another controller) writes the victim's address into the older Service.
  await leader.stop({ releaseLease: false });
  await k8s.cluster.patchStatus('services', ns, 'older', { loadBalancer: { ingress: [{ ip: victimIp }] } });
  await waitFor('the follower leads', () => follower.status().leader, 20_000);
  await sleep(500);
  await follower.settle();
  await waitFor('statuses settled', async () => ingressOf(await svc('older'))[0] !== victimIp || ingressOf(await svc('victim'))[0] !== victimIp, 20_000).catch(() => undefined);
  t.deepEqual(ingressOf(await svc('victim')), [victimIp], 'the victim keeps its address');
  t.not(ingressOf(await svc('older'))[0], victimIp);
  t.true([...followerSink.frontends.values()].filter((d) => d.frontend.vip === victimIp).every((d) => d.service.endsWith('/victim')), 'its frontend keeps the victim\'s backends');
});

test.serial('a Service refused an address for a clash gets it once the clash is gone: the holder moved to other ports, or a change in the same round freed it after it was refused', async (t) => {
  const { ns, make, svc, serve } = await setup(t);
  const ask = (key: string) => ({ annotations: { 'edgelb.io/loadBalancerIPs': '192.0.2.3', 'edgelb.io/allow-shared-ip': key } });
  await serve('holder', '10.1.0.1', ask('k1'));
  // A long debounce: the two edits below reach the controller in one round.
  const c = make(new RecordingSink(), { debounceMs: 400 });
  await c.start();
  await waitFor('holder in status', async () => ingressOf(await svc('holder'))[0] === '192.0.2.3', 20_000);
  // Same key, same port: a clash. Another key: a clash too.
  await serve('ports', '10.1.0.2', ask('k1'));
  await serve('key', '10.1.0.3', { annotations: { 'edgelb.io/loadBalancerIPs': '192.0.2.3', 'edgelb.io/allow-shared-ip': 'k2' }, spec: { ports: [{ name: 'p443', port: 443, protocol: 'TCP', targetPort: 8443 }] } });
  await waitFor('both refused', async () => conditionOf(await svc('ports'))?.reason === 'SharingConflict' && conditionOf(await svc('key'))?.reason === 'SharingConflict', 20_000);
  await c.settle();
  // The holder moves to port 8080: "ports" no longer clashes with it,
  // though no address was released.
  await k8s.cluster.patch('services', ns, 'holder', { spec: { ports: [{ name: 'p8080', port: 8080, protocol: 'TCP', targetPort: 8080 }] } });
  await waitFor('ports shares the address', async () => ingressOf(await svc('ports'))[0] === '192.0.2.3', 10_000).catch(() => undefined);
  t.deepEqual(ingressOf(await svc('ports')), ['192.0.2.3'], 'the Service whose ports clashed is still refused');
  await c.settle();
  // Both sharers move to k2, in one round: the holder (older, decided first)
  // is refused while "ports" still holds the address under k1; then "ports"
  // moves, and the address is k2's — the holder must be decided again.
  for (const name of ['holder', 'ports']) await k8s.cluster.patch('services', ns, name, { metadata: { annotations: { 'edgelb.io/allow-shared-ip': 'k2' } } });
  await waitFor('all three share the address', async () => (await Promise.all(['holder', 'ports', 'key'].map(svc))).every((o) => ingressOf(o)[0] === '192.0.2.3'), 10_000).catch(() => undefined);
  t.deepEqual(ingressOf(await svc('holder')), ['192.0.2.3'], 'the holder, refused before the change that let it back in, is still refused');
  t.deepEqual(ingressOf(await svc('key')), ['192.0.2.3'], 'the Service whose key clashed is still refused');
});

/**
 * `one` holds 192.0.2.3 by request, `two` asks for it too and is refused;
 * then `one` is deleted and created again under its name, asking for
 * nothing (a new uid). `oneRound`: both changes reach the controller in one
 * round (a long debounce); else the deletion is computed first.
 */
async function recreatedHolder(t: ExecutionContext, oneRound: boolean) {
  const { ns, make, svc, serve, createService } = await setup(t);
  const ask = { annotations: { 'edgelb.io/loadBalancerIPs': '192.0.2.3' } };
  await serve('a', '10.1.0.1');
  await serve('b', '10.1.0.2');
  await serve('one', '10.1.0.3', ask);
  const sink = new RecordingSink();
  const c = make(sink, { debounceMs: oneRound ? 400 : 5 });
  await c.start();
  await waitFor('one holds the address it asked for', async () => ingressOf(await svc('one'))[0] === '192.0.2.3', 20_000);
  await serve('two', '10.1.0.4', ask);
  await waitFor('two refused', async () => conditionOf(await svc('two'))?.reason === 'SharingConflict', 20_000);
  await c.settle();
  const uid = (o: Obj | undefined) => (o?.metadata as { uid?: string } | undefined)?.uid;
  const oldUid = uid(await svc('one'));
  await k8s.cluster.delete('services', ns, 'one');
  if (!oneRound) await waitFor('the deletion computed', () => ![...sink.frontends.values()].some((d) => d.service === `${ns}/one`), 20_000);
  // (Its EndpointSlice stays, and serves the new object.)
  await createService('one');
  t.not(uid(await svc('one')), oldUid);
  await waitFor('both have an address', async () => ingressOf(await svc('one')).length > 0 && ingressOf(await svc('two')).length > 0, 10_000).catch(() => undefined);
  await c.settle();
  t.deepEqual(ingressOf(await svc('two')), ['192.0.2.3'], 'the Service that asked for the address did not get it');
  t.deepEqual(ingressOf(await svc('one')), ['192.0.2.4'], 'the recreated Service (a new object asking for nothing) got no other address');
  const vipsOf = (name: string) => [...new Set([...sink.frontends.values()].filter((d) => d.service === `${ns}/${name}`).map((d) => d.frontend.vip))];
  t.deepEqual(vipsOf('two'), ['192.0.2.3']);
  t.deepEqual(vipsOf('one'), ['192.0.2.4']);
}

test.serial('a Service deleted and created again under its name (a new uid) in one round does not keep the address another Service asked for and waits for: that one gets it, the new one another', (t) => recreatedHolder(t, true));

test.serial('a Service deleted and created again under its name (a new uid) in separate rounds: the Service that asked for its address gets it, the new one another', (t) => recreatedHolder(t, false));

test.serial('a Service deleted and created again under its name in one round, asking for nothing, is a new Service: the lowest free address (not the old object\'s, neither kept nor written into its status) and IPAllocated on the new object', async (t) => {
  const { ns, make, svc, events, createService, serve } = await setup(t);
  await serve('one', '10.1.0.1', { annotations: { 'edgelb.io/loadBalancerIPs': '192.0.2.3' } });
  const c = make(new RecordingSink(), { debounceMs: 400 });
  await c.start();
  await waitFor('one in status', async () => ingressOf(await svc('one'))[0] === '192.0.2.3', 20_000);
  await c.settle();
  await k8s.cluster.delete('services', ns, 'one');
  await createService('one');
  const uid = ((await svc('one'))?.metadata as { uid: string }).uid;
  const seen: string[][] = [];
  await waitFor('the new object in status', async () => {
    seen.push(ingressOf(await svc('one')));
    return ingressOf(await svc('one'))[0] === '192.0.2.1';
  }, 5_000).catch(() => undefined);
  t.deepEqual(ingressOf(await svc('one')), ['192.0.2.1']);
  t.false(seen.some((ips) => ips.includes('192.0.2.3')), `the new object's status showed the old one's address: ${JSON.stringify(seen)}`);
  const allocated = async () => (await events('one')).some((e) => e.reason === 'IPAllocated' && (e.regarding as { uid?: string }).uid === uid);
  await waitFor('IPAllocated on the new object', allocated, 5_000).catch(() => undefined);
  t.true(await allocated(), 'no IPAllocated Event on the new object');
});

test.serial('a Service deleted and created again under its name in one round is reported as the new Service it is, even at the same address: IPAllocated on the new object', async (t) => {
  const { ns, make, svc, events, createService, serve } = await setup(t);
  await serve('solo', '10.1.0.1');
  const c = make(new RecordingSink(), { debounceMs: 400 });
  await c.start();
  await waitFor('solo in status', async () => ingressOf(await svc('solo'))[0] === '192.0.2.1', 20_000);
  await c.settle();
  await k8s.cluster.delete('services', ns, 'solo');
  await createService('solo');
  const uid = ((await svc('solo'))?.metadata as { uid: string }).uid;
  await waitFor('the new object in status', async () => ingressOf(await svc('solo'))[0] === '192.0.2.1', 20_000);
  const allocated = async () => (await events('solo')).some((e) => e.reason === 'IPAllocated' && (e.regarding as { uid?: string }).uid === uid);
  await waitFor('IPAllocated on the new object', allocated, 5_000).catch(() => undefined);
  t.true(await allocated(), 'no IPAllocated Event on the new object');
});

test.serial('a leader Lease left with leaseTransitions at the int32 maximum (the API server takes it; one more it refuses, 400) is still taken over: the count stays at the maximum and the edge allocates', async (t) => {
  const { leaseName, make, svc, serve } = await setup(t);
  // Someone with access to Leases, or another edge's bug, left it there;
  // its holder is gone.
  await k8s.cluster.create({
    apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
    metadata: { namespace: EDGELB_NAMESPACE, name: leaseName },
    spec: { holderIdentity: 'gone', leaseDurationSeconds: 1, leaseTransitions: 2 ** 31 - 1, renewTime: new Date().toISOString().replace('Z', '000Z') },
  });
  await serve('web', '10.1.0.1');
  const c = make(new RecordingSink());
  await c.start();
  await waitFor('edge-a leads', () => c.status().leader, 20_000);
  await waitFor('web allocated', async () => ingressOf(await svc('web')).length === 1, 20_000);
  const lease = await k8s.cluster.get('leases', EDGELB_NAMESPACE, leaseName);
  t.like(lease?.spec, { holderIdentity: 'edge-a', leaseTransitions: 2 ** 31 - 1 });
});

test.serial('presence Leases not named after their holder (one claiming this edge, not advertising; a second one of a crashed edge) change nobody\'s count: the condition names the edges that advertise', async (t) => {
  const { leaseName, make, svc, serve } = await setup(t);
  const renewTime = new Date().toISOString().replace('Z', '000Z');
  const presence = (name: string, holder: string, annotations: Record<string, string>) => k8s.cluster.create({
    apiVersion: 'coordination.k8s.io/v1', kind: 'Lease',
    metadata: { namespace: EDGELB_NAMESPACE, name, labels: { [PRESENCE_LABEL]: 'true' }, annotations },
    spec: { holderIdentity: holder, leaseDurationSeconds: 60, renewTime },
  });
  // Claims this edge's name and says it does not advertise (listed after this edge's own Lease).
  await presence(`${leaseName}-edge-zzz`, 'edge-a', { 'edgelb.io/advertising': 'false' });
  // edge-b crashed: its own Lease and another claiming its name, neither renewed again.
  await presence(presenceLeaseName(leaseName, 'edge-b'), 'edge-b', {});
  await presence(`${leaseName}-edge-b-copy`, 'edge-b', {});
  await serve('web', '10.1.0.1');
  const c = make(new RecordingSink());
  await c.start();
  // D = 1.5 s: edge-b counts out 2.25 s after its Lease last changed.
  let message = '';
  await waitFor('the condition names edge-a alone', async () => (message = conditionOf(await svc('web'))?.message ?? '').endsWith('advertised by 1 edge(s): edge-a'), 20_000).catch((e: unknown) => {
    throw new Error(`${String(e)}; the condition says ${JSON.stringify(message)}, the edges counted ${JSON.stringify(c.status().advertisingEdges)}`);
  });
  await sleep(3000);
  await c.settle();
  t.deepEqual(c.status().advertisingEdges, ['edge-a']);
  t.like(conditionOf(await svc('web')), { status: 'True', reason: 'Advertised' });
});
