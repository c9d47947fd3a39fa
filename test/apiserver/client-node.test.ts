/**
 * Fidelity of the test API server with @kubernetes/client-node 2.x as a black
 * box: typed API calls, informers (list + watch with resourceVersion), watch
 * resume after compaction (410 → relist) and after an API server restart.
 */
import test from 'ava';
import {
  CoordinationV1Api, CoreV1Api, DiscoveryV1Api, KubeConfig, makeInformer, PatchStrategy, setHeaderOptions,
  type V1EndpointSlice, type V1Service,
} from '@kubernetes/client-node';
import { TestApiServer } from './server.js';

async function setup(t: { teardown(fn: () => Promise<void> | void): void }): Promise<{ api: TestApiServer; kc: KubeConfig }> {
  const api = await TestApiServer.start({ bookmarkIntervalMs: 200 });
  t.teardown(() => api.close());
  const kc = new KubeConfig();
  kc.loadFromFile(api.kubeconfigPath);
  return { api, kc };
}

/** Polls `cond` every 20 ms for at most `ms`. */
async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}

function lbService(name: string, extra: Partial<V1Service['spec']> = {}): V1Service {
  return {
    metadata: { name, labels: { app: name } },
    spec: { type: 'LoadBalancer', loadBalancerClass: 'edgelb.io/dsr', selector: { app: name }, ports: [{ name: 'http', port: 80, targetPort: 8080 }], ...extra },
  };
}

test('CoreV1Api: create, get, list with selectors, merge-patch status, 404/409/422 errors', async (t) => {
  const { api, kc } = await setup(t);
  const core = kc.makeApiClient(CoreV1Api);
  const created = await core.createNamespacedService({ namespace: 'default', body: lbService('web') });
  t.truthy(created.metadata?.uid);
  t.regex(created.spec?.clusterIP ?? '', /^10\.9[6-9]|^10\.1[01]\d\./);
  t.is(created.spec?.ports?.[0]?.protocol, 'TCP');
  t.true((created.spec?.ports?.[0]?.nodePort ?? 0) >= 30000);
  t.is(created.spec?.externalTrafficPolicy, 'Cluster');
  t.is(created.spec?.sessionAffinity, 'None');
  t.deepEqual(created.spec?.ipFamilies, ['IPv4']);

  await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'internal' }, spec: { ports: [{ port: 53, protocol: 'UDP' }] } } });
  const lbs = await core.listNamespacedService({ namespace: 'default', fieldSelector: 'spec.type=LoadBalancer' });
  t.deepEqual(lbs.items.map((s) => s.metadata?.name), ['web']);
  const byLabel = await core.listServiceForAllNamespaces({ labelSelector: 'app in (web,other)' });
  t.deepEqual(byLabel.items.map((s) => s.metadata?.name), ['web']);
  t.true(Number(lbs.metadata?.resourceVersion) >= Number(created.metadata?.resourceVersion));

  const patched = await core.patchNamespacedServiceStatus(
    { name: 'web', namespace: 'default', body: { status: { loadBalancer: { ingress: [{ ip: '192.0.2.10' }] } } } },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );
  t.deepEqual(patched.status?.loadBalancer?.ingress?.map((i) => i.ip), ['192.0.2.10']);
  t.true(Number(patched.metadata?.resourceVersion) > Number(created.metadata?.resourceVersion));
  // ipMode is defaulted, as by Kubernetes ≥ 1.30.
  t.deepEqual(api.get('services', 'default', 'web')?.status, { loadBalancer: { ingress: [{ ip: '192.0.2.10', ipMode: 'VIP' }] } });

  // Status in a write to the main resource is ignored.
  const spec = await core.readNamespacedService({ name: 'web', namespace: 'default' });
  spec.status = { loadBalancer: { ingress: [{ ip: '198.51.100.1' }] } };
  spec.metadata!.labels = { app: 'web', tier: 'edge' };
  const replaced = await core.replaceNamespacedService({ name: 'web', namespace: 'default', body: spec });
  t.is(replaced.metadata?.labels?.tier, 'edge');
  t.deepEqual(replaced.status?.loadBalancer?.ingress?.map((i) => i.ip), ['192.0.2.10']);

  // A stale resourceVersion is a 409 Conflict.
  const stale = { ...created, metadata: { ...created.metadata } };
  const e409 = await t.throwsAsync(core.replaceNamespacedService({ name: 'web', namespace: 'default', body: stale }));
  t.is((e409 as { code?: number }).code, 409);
  const e404 = await t.throwsAsync(core.readNamespacedService({ name: 'nope', namespace: 'default' }));
  t.is((e404 as { code?: number }).code, 404);
  const e422 = await t.throwsAsync(core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'Bad_Name' }, spec: { ports: [{ port: 80 }] } } }));
  t.is((e422 as { code?: number }).code, 422);
  t.true(api.requestCount('patch', 'services/status') === 1);
});

test('Leases: optimistic concurrency gives the second writer a 409', async (t) => {
  const { kc } = await setup(t);
  const coord = kc.makeApiClient(CoordinationV1Api);
  const now = new Date();
  const lease = await coord.createNamespacedLease({
    namespace: 'kube-system',
    body: { metadata: { name: 'edgelb-ipam' }, spec: { holderIdentity: 'edge-a', leaseDurationSeconds: 15, acquireTime: now, renewTime: now } },
  });
  const a = await coord.readNamespacedLease({ name: 'edgelb-ipam', namespace: 'kube-system' });
  const b = await coord.readNamespacedLease({ name: 'edgelb-ipam', namespace: 'kube-system' });
  a.spec!.renewTime = new Date();
  await coord.replaceNamespacedLease({ name: 'edgelb-ipam', namespace: 'kube-system', body: a });
  b.spec!.holderIdentity = 'edge-b';
  const err = await t.throwsAsync(coord.replaceNamespacedLease({ name: 'edgelb-ipam', namespace: 'kube-system', body: b }));
  t.is((err as { code?: number }).code, 409);
  const final = await coord.readNamespacedLease({ name: 'edgelb-ipam', namespace: 'kube-system' });
  t.is(final.spec?.holderIdentity, 'edge-a');
  // MicroTime comes back re-encoded with microseconds, as from a Go server.
  t.regex(String(final.spec?.renewTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  t.not(final.metadata?.resourceVersion, lease.metadata?.resourceVersion);
  const dup = await t.throwsAsync(coord.createNamespacedLease({ namespace: 'kube-system', body: { metadata: { name: 'edgelb-ipam' }, spec: {} } }));
  t.is((dup as { code?: number }).code, 409);
});

test('informer sees add, update and delete; resumes after compaction via 410 and relist; survives a restart', async (t) => {
  const { api, kc } = await setup(t);
  const core = kc.makeApiClient(CoreV1Api);
  const informer = makeInformer<V1Service>(kc, '/api/v1/services', () => core.listServiceForAllNamespaces());
  const seen: string[] = [];
  const errors: unknown[] = [];
  informer.on('add', (s) => seen.push(`add ${s.metadata?.name}`));
  informer.on('update', (s) => seen.push(`update ${s.metadata?.name} ${s.status?.loadBalancer?.ingress?.[0]?.ip ?? '-'}`));
  informer.on('delete', (s) => seen.push(`delete ${s.metadata?.name}`));
  informer.on('error', (e) => errors.push(e));
  await informer.start();
  t.teardown(() => informer.stop());
  t.true(await until(() => seen.includes('add kubernetes') && api.openWatches === 1), 'initial list and watch');

  api.create({ apiVersion: 'v1', kind: 'Service', ...lbService('a') });
  t.true(await until(() => seen.includes('add a')));
  api.mergePatch('services', 'default', 'a', { status: { loadBalancer: { ingress: [{ ip: '192.0.2.1' }] } } }, 'status');
  t.true(await until(() => seen.includes('update a 192.0.2.1')));

  // Compaction while the watch is down: the resume gets 410 and the informer relists.
  const listsBefore = api.requestCount('list', 'services');
  api.compactHistory({ dropWatches: true });
  api.create({ apiVersion: 'v1', kind: 'Service', ...lbService('b') });
  t.true(await until(() => seen.includes('add b')), 'b seen after relist');
  t.true(api.requestCount('list', 'services') > listsBefore, 'relisted after 410');
  t.true(api.requests().some((r) => r.verb === 'watch' && /resourceVersion=\d+/.test(r.path)), 'watches resume from a resourceVersion');

  // Restart: same data; the watch reconnects (after its 1 s backoff) and sees later changes.
  await api.restart();
  api.delete('services', 'default', 'a');
  t.true(await until(() => seen.includes('delete a'), 8000), 'delete seen after restart');
  t.deepEqual(errors, []);
  t.deepEqual(informer.list().map((s) => s.metadata?.name).sort(), ['b', 'kubernetes']);
});

test('watch with bookmarks and a label selector: leaving the selector is a DELETED event', async (t) => {
  const { api, kc } = await setup(t);
  const disc = kc.makeApiClient(DiscoveryV1Api);
  const slice: V1EndpointSlice = {
    metadata: { generateName: 'web-', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: true }, nodeName: 'n1' }],
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
  const created = await disc.createNamespacedEndpointSlice({ namespace: 'default', body: slice });
  t.regex(created.metadata?.name ?? '', /^web-[a-z0-9]{5}$/);
  const list = await disc.listNamespacedEndpointSlice({ namespace: 'default', labelSelector: 'kubernetes.io/service-name=web' });

  const events: string[] = [];
  const url = `${api.url}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?watch=true&allowWatchBookmarks=true` +
    `&labelSelector=${encodeURIComponent('kubernetes.io/service-name=web')}&resourceVersion=${list.metadata?.resourceVersion}`;
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const res = await fetch(url, { signal: ac.signal });
  t.is(res.status, 200);
  const reader = (async () => {
    let buf = '';
    const dec = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += dec.decode(chunk);
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const ev = JSON.parse(buf.slice(0, i)) as { type: string; object: { metadata: { name?: string; resourceVersion: string } } };
          buf = buf.slice(i + 1);
          events.push(ev.type === 'BOOKMARK' ? 'BOOKMARK' : `${ev.type} ${ev.object.metadata.name}`);
        }
      }
    } catch {
      // aborted
    }
  })();
  const name = created.metadata!.name!;
  api.mergePatch('endpointslices.discovery.k8s.io', 'default', name, { endpoints: [{ addresses: ['10.0.0.2'], conditions: { ready: true } }] });
  api.mergePatch('endpointslices.discovery.k8s.io', 'default', name, { metadata: { labels: { 'kubernetes.io/service-name': 'other' } } });
  t.true(await until(() => events.includes(`DELETED ${name}`) && events.includes('BOOKMARK')));
  t.deepEqual(events.filter((e) => e !== 'BOOKMARK'), [`MODIFIED ${name}`, `DELETED ${name}`]);
  ac.abort();
  await reader;
});
