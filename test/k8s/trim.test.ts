// What the informers cache of a Service and an EndpointSlice: what
// reconciliation reads, nothing it does not (cluster addresses, managed
// fields), and no field that was absent appears.
import test from 'ava';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { setFlagsFromString } from 'node:v8';
import { trimService, trimSlice } from '../../src/k8s/trim.js';

function service(): V1Service {
  return {
    metadata: { name: 'web', namespace: 'shop', uid: 'u1', resourceVersion: '7', generation: 2, creationTimestamp: '2026-12-01T00:00:00Z' as unknown as Date, labels: { app: 'web' }, annotations: { 'edgelb.io/allow-shared-ip': 'k' }, managedFields: [{ manager: 'kubectl' }] },
    spec: { type: 'LoadBalancer', loadBalancerClass: 'edgelb.io/dsr', clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack', externalTrafficPolicy: 'Local', ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }], loadBalancerSourceRanges: ['192.0.2.0/24'] },
    status: { loadBalancer: { ingress: [{ ip: '192.0.2.1', ipMode: 'VIP' }] }, conditions: [{ type: 'edgelb.io/Advertised', status: 'True', reason: 'Advertised', message: 'm', lastTransitionTime: '2026-12-01T00:00:00Z' as unknown as Date }] },
  } as V1Service;
}

test('a cached Service keeps what reconciliation reads, drops cluster addresses and managed fields, adds nothing', (t) => {
  const want = service();
  delete want.metadata!.managedFields;
  delete want.spec!.clusterIP;
  delete want.spec!.clusterIPs;
  const got = trimService(service());
  t.deepEqual(got, want);
  // Absent optional fields stay absent (not present as undefined).
  const bare = trimService({ metadata: { name: 'a', namespace: 'b' }, spec: { ports: [{ port: 80 }] } } as V1Service);
  t.deepEqual(Object.keys(bare.spec!), ['ports']);
  t.deepEqual(Object.keys(bare.spec!.ports![0]!), ['port']);
});

test('slices with equal ports share one frozen port list', (t) => {
  const slice = (name: string): V1EndpointSlice => ({ metadata: { name, namespace: 'shop', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints: [{ addresses: ['10.0.0.1'], conditions: { ready: true } }] });
  const a = trimSlice(slice('a'));
  const b = trimSlice(slice('b'));
  t.deepEqual(a.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  t.is(a.ports, b.ports);
  t.true(Object.isFrozen(a.ports));
  // The API server sends null for a slice without ports.
  t.is(trimSlice({ ...slice('c'), ports: null as unknown as undefined }).ports as unknown, null);
});

test('a cached Service keeps V8 fast properties (deleting a field made metadata and spec hash tables, ~1.2 KB per Service)', (t) => {
  setFlagsFromString('--allow-natives-syntax');
  const hasFastProperties = new Function('o', 'return %HasFastProperties(o)') as (o: unknown) => boolean;
  // As JSON.parse builds it (the informers read raw JSON).
  const got = trimService(JSON.parse(JSON.stringify(service())) as V1Service);
  for (const [what, o] of Object.entries({ metadata: got.metadata, annotations: got.metadata!.annotations, spec: got.spec })) t.true(hasFastProperties(o), what);
  const applied = service();
  applied.metadata!.annotations!['kubectl.kubernetes.io/last-applied-configuration'] = '{}';
  const trimmed = trimService(JSON.parse(JSON.stringify(applied)) as V1Service);
  t.deepEqual(trimmed.metadata!.annotations, { 'edgelb.io/allow-shared-ip': 'k' });
  t.true(hasFastProperties(trimmed.metadata!.annotations));
});

test('Services with equal ports and IP families share one frozen copy of each', (t) => {
  const a = trimService(service());
  const b = trimService(service());
  t.is(a.spec!.ports, b.spec!.ports);
  t.is(a.spec!.ipFamilies, b.spec!.ipFamilies);
  t.true(Object.isFrozen(a.spec!.ports) && Object.isFrozen(a.spec!.ports![0]));
  const other = service();
  other.spec!.ports![0]!.targetPort = 9090 as never;
  const c = trimService(other);
  t.not(c.spec!.ports, a.spec!.ports);
  t.deepEqual(c.spec!.ports, [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 9090 }]);
  // Trimming an object twice is harmless.
  t.deepEqual(trimService(c), c);
});

test('a cached Service keeps only the annotations edgelb reads, and of a Service that is not a LoadBalancer only what tells that (and its status): a tenant\'s 250 KB annotations on every Service were cached whole by every edge', (t) => {
  const big = 'x'.repeat(250_000);
  const lb = service();
  lb.metadata!.annotations = { ...lb.metadata!.annotations, 'edgelb.io/mode': 'snat', 'service.beta.kubernetes.io/load-balancer-source-ranges': '192.0.2.0/24', 'example.com/blob': big, 'helm.sh/values': big };
  const got = trimService(lb);
  t.deepEqual(got.metadata!.annotations, { 'edgelb.io/allow-shared-ip': 'k', 'edgelb.io/mode': 'snat', 'service.beta.kubernetes.io/load-balancer-source-ranges': '192.0.2.0/24' });
  t.true(JSON.stringify(got).length < 2000, `${JSON.stringify(got).length} characters cached`);
  const cluster: V1Service = {
    metadata: { name: 'db', namespace: 'shop', uid: 'u2', resourceVersion: '9', generation: 1, labels: { blob: 'y'.repeat(63) }, annotations: { 'example.com/blob': big, 'edgelb.io/mode': 'snat' } },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.11', ports: [{ name: 'pg', port: 5432, protocol: 'TCP' }], selector: { app: 'db' } },
    status: { loadBalancer: {}, conditions: [{ type: 'other', status: 'True', reason: 'R', message: 'm', lastTransitionTime: '2026-12-01T00:00:00Z' as unknown as Date }] },
  };
  t.deepEqual(trimService(structuredClone(cluster)), {
    metadata: { name: 'db', namespace: 'shop', uid: 'u2', resourceVersion: '9', generation: 1 },
    spec: { type: 'ClusterIP' },
    status: cluster.status,
  } as V1Service);
});
