// A Service update that changes only its status — most often the echo of
// the allocating edge's own status write — is told apart from one that
// changes what reconciliation reads otherwise (cluster-cache's
// serviceChange), and the controller recomputes it only when that status
// disagrees with the state it computed (statusReflects). The first pass
// reads the Services' keys once, not at every round. An echo is cached
// sharing what did not change with the version cached before it.
import test from 'ava';
import type { V1Service } from '@kubernetes/client-node';
import { ClusterCache, serviceChange } from '../../src/k8s/cluster-cache.js';
import type { RestClient } from '../../src/k8s/rest.js';
import { trimService } from '../../src/k8s/trim.js';
import { silentLogger } from '../../src/log/logger.js';
import { statusReflects } from '../../src/k8s/service-compute.js';
import { FirstPass } from '../../src/k8s/first-pass.js';
import { CONDITION_ADVERTISED } from '../../src/model/service.js';

function svc(o: { ingress?: string[]; reason?: string; message?: string; port?: number; labels?: Record<string, string>; annotations?: Record<string, string>; uid?: string; rv?: string; other?: boolean } = {}): V1Service {
  const conditions = [];
  if (o.reason) conditions.push({ type: CONDITION_ADVERTISED, status: 'False', reason: o.reason, message: o.message ?? 'm', lastTransitionTime: new Date(0) });
  if (o.other) conditions.push({ type: 'example.com/Other', status: 'True', reason: 'X', message: 'x', lastTransitionTime: new Date(0) });
  return {
    metadata: { name: 'web', namespace: 'shop', uid: o.uid ?? 'u1', resourceVersion: o.rv ?? '1', labels: o.labels, annotations: o.annotations },
    spec: { type: 'LoadBalancer', ports: [{ port: o.port ?? 80, protocol: 'TCP' }] },
    status: { loadBalancer: { ingress: (o.ingress ?? []).map((ip) => ({ ip })) }, conditions },
  } as V1Service;
}

const change = serviceChange;

test('a status-only change (addresses, or a failure in our condition) is "status"; anything reconciliation reads elsewhere is "changed"', (t) => {
  t.is(change(svc(), svc({ rv: '2' })), 'same');
  t.is(change(svc(), svc({ ingress: ['192.0.2.1'] })), 'status');
  t.is(change(svc({ ingress: ['192.0.2.1'] }), svc({ ingress: ['192.0.2.2'] })), 'status');
  t.is(change(svc(), svc({ reason: 'PoolExhausted' })), 'status');
  // Not read by reconciliation: our condition's message or a non-failure reason, other controllers' conditions.
  t.is(change(svc({ reason: 'Pending' }), svc({ reason: 'Advertised', message: 'other' })), 'same');
  t.is(change(svc(), svc({ other: true })), 'same');
  t.is(change(svc(), svc({ port: 443 })), 'changed');
  t.is(change(svc(), svc({ port: 443, ingress: ['192.0.2.1'] })), 'changed');
  t.is(change(svc(), svc({ labels: { a: 'b' } })), 'changed');
  t.is(change(svc(), svc({ annotations: { a: 'b' } })), 'changed');
  t.is(change(svc(), svc({ uid: 'u2' })), 'changed');
  t.is(serviceChange(undefined, svc()), 'changed');
  // Compared as values: the same spec in another key order, or as another copy, is the same.
  const reordered = svc();
  reordered.spec = { ports: [{ protocol: 'TCP', port: 80 }], type: 'LoadBalancer' };
  t.is(change(svc(), reordered), 'same');
  t.is(change(svc({ labels: { a: 'b', c: 'd' } }), svc({ labels: { c: 'd', a: 'b' } })), 'same');
  // Addresses in another order: a status change (the order is what status shows).
  t.is(change(svc({ ingress: ['192.0.2.1', '2001:db8::1'] }), svc({ ingress: ['2001:db8::1', '192.0.2.1'] })), 'status');
});

test('statusReflects: status shows exactly the addresses of the computed state, in order', (t) => {
  const st = (...ips: string[]) => ({ addresses: ips.map((ip) => ({ ip, pool: 'p' })) });
  t.true(statusReflects(st('192.0.2.1'), svc({ ingress: ['192.0.2.1'] })));
  t.true(statusReflects(st('192.0.2.1', '2001:db8::1'), svc({ ingress: ['192.0.2.1', '2001:db8::1'] })));
  t.true(statusReflects(st(), svc({ reason: 'PoolExhausted' })));
  t.false(statusReflects(st('192.0.2.1'), svc()));
  t.false(statusReflects(st(), svc({ ingress: ['192.0.2.1'] })));
  t.false(statusReflects(st('192.0.2.1'), svc({ ingress: ['192.0.2.2'] })));
  t.false(statusReflects(st('192.0.2.1', '2001:db8::1'), svc({ ingress: ['2001:db8::1', '192.0.2.1'] })));
  // A foreign address next to ours: computed again (a follower filters it by pool).
  t.false(statusReflects(st('192.0.2.1'), svc({ ingress: ['192.0.2.1', '198.51.100.1'] })));
});

test('the first pass reads the Services once, at its first begin', (t) => {
  const fp = new FirstPass();
  let reads = 0;
  const keys = () => {
    reads++;
    return ['a/x', 'a/y'];
  };
  fp.begin(keys, 0);
  fp.begin(keys, 1);
  fp.begin(keys, 2);
  t.is(reads, 1);
  fp.computed(['a/x']);
  t.false(fp.ready(true, 1000, 3));
  fp.computed(['a/y']);
  t.true(fp.ready(true, 1000, 3));
});

/** A Service as the API sends it (new objects and strings at every call, like JSON.parse). */
function received(rv: string, ingress: string[]): V1Service {
  return JSON.parse(
    JSON.stringify({
      metadata: { name: 'web', namespace: 'shop', uid: 'u1', resourceVersion: rv, labels: { app: 'web' }, managedFields: [{ manager: 'x' }] },
      spec: { type: 'LoadBalancer', loadBalancerClass: 'edgelb.io/dsr', ports: [{ port: 80, protocol: 'TCP' }], selector: { app: 'web' } },
      status: { loadBalancer: { ingress: ingress.map((ip) => ({ ip, ipMode: 'VIP' })) }, conditions: [{ type: 'example.com/Other', status: 'True', reason: 'X', message: 'x', lastTransitionTime: '2026-12-07T10:00:00Z' }] },
    }),
  ) as V1Service;
}

test('a status echo is cached sharing the parts that did not change with the Service cached before it (each echo was a whole new Service surviving in V8\'s young generation)', async (t) => {
  let push: ((ev: unknown) => void) | null = null;
  const rest = {
    listAll: async (path: string, project: (o: unknown) => unknown) => ({ metadata: { resourceVersion: '1' }, items: path.includes('/services') ? [project(received('1', []))] : [] }),
    watch: async (path: string, onEvent: (ev: unknown) => void) => {
      if (path.includes('/services')) push = onEvent;
      return { abort: () => undefined };
    },
  } as unknown as RestClient;
  const statusChanged: string[] = [];
  const dirty: string[] = [];
  const cache = new ClusterCache({ rest, logger: silentLogger(), onListed: () => undefined, onServiceSeen: () => undefined, onDirty: (k) => dirty.push(k), onStatusChanged: (k) => statusChanged.push(k), onNodeChanged: () => undefined });
  await cache.start();
  t.deepEqual(dirty, ['shop/web']);
  const before = cache.service('shop/web')!;
  push!({ type: 'MODIFIED', object: received('2', ['10.0.0.1']) });
  const after = cache.service('shop/web')!;
  t.deepEqual(statusChanged, ['shop/web']);
  t.deepEqual(after, trimService(received('2', ['10.0.0.1'])));
  t.is(after.spec, before.spec);
  t.is(after.metadata!.labels, before.metadata!.labels);
  t.is(after.status!.conditions![0], before.status!.conditions![0]);
  t.not(after.metadata, before.metadata);
  t.is(after.metadata!.resourceVersion, '2');
  t.not(after.status!.loadBalancer, before.status!.loadBalancer);
  // A change elsewhere is a new part; its unchanged neighbours are still shared.
  const changed = received('3', ['10.0.0.1']);
  changed.spec!.selector = { app: 'shop' };
  push!({ type: 'MODIFIED', object: changed });
  const third = cache.service('shop/web')!;
  t.not(third.spec, after.spec);
  t.is(third.spec!.ports, after.spec!.ports);
  t.is(third.status!.loadBalancer, after.status!.loadBalancer);
  t.deepEqual(third.spec!.selector, { app: 'shop' });
  // Each update is told apart from the version it replaced: the echo was no recomputation, the selector one was.
  t.deepEqual(dirty, ['shop/web', 'shop/web']);
  t.deepEqual(statusChanged, ['shop/web']);
  // A new version that changes nothing reconciliation reads (here only its resourceVersion): neither.
  const same = received('4', ['10.0.0.1']);
  same.spec!.selector = { app: 'shop' };
  push!({ type: 'MODIFIED', object: same });
  t.deepEqual(dirty, ['shop/web', 'shop/web']);
  t.deepEqual(statusChanged, ['shop/web']);
  await cache.stop();
});
