/**
 * Pure parts of the test API server: selectors, patch formats, the store's
 * resource versions and history, Service allocation, printing helpers.
 */
import test from 'ava';
import { jsonPatch, mergePatch, PatchError, strategicMergePatch, strategyTable } from './patch.js';
import { matchFields, matchLabels, parseFieldSelector, parseLabelSelector, SelectorError } from './selectors.js';
import { ServiceAllocator } from './services.js';
import { Store } from './store.js';
import { humanDuration } from './tables.js';
import { formatMicroTime, isCIDR, isIPv6, nameProblem, normalizeTimes } from './validation.js';

test('label selectors: every operator, and malformed input is refused', (t) => {
  const l = { app: 'web', tier: 'edge', n: '5' };
  const m = (s: string): boolean => matchLabels(parseLabelSelector(s), l);
  t.true(m(''));
  t.true(m('app=web'));
  t.true(m('app==web'));
  t.false(m('app!=web'));
  t.true(m('app!=db'));
  t.true(m('missing!=x'));
  t.true(m('app in (db, web)'));
  t.false(m('app notin (db,web)'));
  t.true(m('missing notin (a)'));
  t.false(m('missing in (a)'));
  t.true(m('tier'));
  t.false(m('!tier'));
  t.true(m('!missing'));
  t.true(m('app=web,tier=edge,!missing'));
  t.false(m('app=web,tier=core'));
  t.true(m('n>4'));
  t.false(m('n<5'));
  t.true(m('edgelb.io/pool notin (blue)'));
  for (const bad of ['app=(', 'app in (a', 'a b c', ',', 'app=web,', 'Bad Key=1', 'app=va lue']) {
    t.throws(() => parseLabelSelector(bad), { instanceOf: SelectorError }, bad);
  }
});

test('field selectors: supported fields only, = == !=', (t) => {
  const allowed = ['metadata.name', 'metadata.namespace', 'spec.type'];
  const svc = { metadata: { name: 'web', namespace: 'default' }, spec: { type: 'LoadBalancer' } };
  t.true(matchFields(parseFieldSelector('spec.type=LoadBalancer', allowed, 'services'), svc));
  t.true(matchFields(parseFieldSelector('metadata.name==web,metadata.namespace!=kube-system', allowed, 'services'), svc));
  t.false(matchFields(parseFieldSelector('spec.type!=LoadBalancer', allowed, 'services'), svc));
  t.throws(() => parseFieldSelector('spec.clusterIP=1.2.3.4', allowed, 'services'), { message: 'field label not supported: spec.clusterIP' });
  t.throws(() => parseFieldSelector('nonsense', allowed, 'services'), { instanceOf: SelectorError });
});

test('merge patch (RFC 7386)', (t) => {
  t.deepEqual(mergePatch({ a: 1, b: { c: 2, d: 3 }, l: [1, 2] }, { b: { c: null, e: 4 }, l: [3], f: 'x' }), { a: 1, b: { d: 3, e: 4 }, l: [3], f: 'x' });
  t.deepEqual(mergePatch({ a: 1 }, 'x'), 'x');
});

const svcStrategies = strategyTable({ 'spec.ports': { mergeKey: 'port' }, 'metadata.finalizers': { mergePrimitives: true }, 'status.conditions': { mergeKey: 'type' } });

test('strategic merge patch: keyed lists, directives, maps', (t) => {
  const svc = {
    metadata: { labels: { a: '1', b: '2' }, finalizers: ['x'] },
    spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30001 }, { name: 'https', port: 443, nodePort: 30002 }] },
  };
  // Ports merge by port; unmentioned fields (nodePort) survive.
  const p1 = strategicMergePatch(svc, { spec: { ports: [{ port: 80, targetPort: 9090 }] }, metadata: { labels: { b: null, c: '3' } } }, svcStrategies) as typeof svc;
  t.deepEqual(p1.spec.ports, [{ name: 'http', port: 80, targetPort: 9090, nodePort: 30001 }, { name: 'https', port: 443, nodePort: 30002 }]);
  t.deepEqual(p1.metadata.labels, { a: '1', c: '3' });
  // kubectl apply's shape: $setElementOrder plus a delete directive and an addition.
  const p2 = strategicMergePatch(svc, {
    spec: {
      $setElementOrder: undefined,
      '$setElementOrder/ports': [{ port: 53 }, { port: 80 }],
      ports: [{ port: 53, name: 'dns', protocol: 'UDP' }, { port: 443, $patch: 'delete' }],
    },
  }, svcStrategies) as typeof svc;
  t.deepEqual(p2.spec.ports.map((p) => p.port), [53, 80]);
  // Primitive merge lists are unions; $deleteFromPrimitiveList removes.
  const p3 = strategicMergePatch(svc, { metadata: { finalizers: ['y'] } }, svcStrategies) as typeof svc;
  t.deepEqual(p3.metadata.finalizers, ['x', 'y']);
  const p4 = strategicMergePatch(svc, { metadata: { '$deleteFromPrimitiveList/finalizers': ['x'] } }, svcStrategies) as typeof svc;
  t.deepEqual(p4.metadata.finalizers, []);
  // $patch: replace on a map; lists without a merge key are replaced.
  const p5 = strategicMergePatch(svc, { spec: { selector: { $patch: 'replace', tier: 'edge' } } }, svcStrategies) as typeof svc;
  t.deepEqual(p5.spec.selector, { tier: 'edge' });
  const p6 = strategicMergePatch({ spec: { externalIPs: ['1.1.1.1', '2.2.2.2'] } }, { spec: { externalIPs: ['3.3.3.3'] } }, svcStrategies);
  t.deepEqual(p6, { spec: { externalIPs: ['3.3.3.3'] } });
  // $retainKeys drops keys not listed.
  t.deepEqual(strategicMergePatch({ s: { a: 1, b: 2 } }, { s: { $retainKeys: ['c'], c: 3 } }, svcStrategies), { s: { c: 3 } });
  // A keyed list element without its key is an error.
  t.throws(() => strategicMergePatch(svc, { spec: { ports: [{ name: 'x' }] } }, svcStrategies), { instanceOf: PatchError });
  // Status conditions merge by type.
  const withCond = { status: { conditions: [{ type: 'A', status: 'True' }, { type: 'B', status: 'False' }] } };
  t.deepEqual(strategicMergePatch(withCond, { status: { conditions: [{ type: 'B', status: 'True' }] } }, svcStrategies),
    { status: { conditions: [{ type: 'A', status: 'True' }, { type: 'B', status: 'True' }] } });
});

test('json patch (RFC 6902)', (t) => {
  const doc = { metadata: { labels: { 'a/b': '1' } }, spec: { ports: [{ port: 80 }] } };
  const out = jsonPatch(doc, [
    { op: 'add', path: '/spec/ports/-', value: { port: 443 } },
    { op: 'replace', path: '/spec/ports/0/port', value: 8080 },
    { op: 'remove', path: '/metadata/labels/a~1b' },
    { op: 'test', path: '/spec/ports/1/port', value: 443 },
    { op: 'copy', from: '/spec/ports/1', path: '/spec/extra' },
  ]);
  t.deepEqual(out, { metadata: { labels: {} }, spec: { ports: [{ port: 8080 }, { port: 443 }], extra: { port: 443 } } });
  t.deepEqual(doc.spec.ports, [{ port: 80 }], 'input untouched');
  t.throws(() => jsonPatch(doc, [{ op: 'test', path: '/spec/ports/0/port', value: 1 }]), { instanceOf: PatchError });
  t.throws(() => jsonPatch(doc, [{ op: 'replace', path: '/nope/x', value: 1 }]), { instanceOf: PatchError });
  t.throws(() => jsonPatch(doc, { op: 'add' }), { instanceOf: PatchError });
});

test('store: global resource versions, history replay, compaction → expired', (t) => {
  const s = new Store(4);
  const rv0 = s.resourceVersion;
  const a = s.create('services', { metadata: { name: 'a', namespace: 'default' } });
  const b = s.create('leases', { metadata: { name: 'b', namespace: 'default' } });
  t.is(Number(a.metadata.resourceVersion), rv0 + 1);
  t.is(Number(b.metadata.resourceVersion), rv0 + 2, 'one counter across kinds');
  s.update('services', { ...a, metadata: { ...a.metadata, labels: { x: '1' } } });
  const gone = s.delete('services', 'default', 'a')!;
  t.is(Number(gone.metadata.resourceVersion), rv0 + 4, 'deletion gets its own version');
  const since = s.since(rv0 + 1);
  t.true(Array.isArray(since));
  t.deepEqual((since as { type: string }[]).map((e) => e.type), ['ADDED', 'MODIFIED', 'DELETED']);
  // Beyond 1.25 × capacity, the oldest events are dropped and their versions expire.
  for (let i = 0; i < 4; i++) s.create('leases', { metadata: { name: `l${i}`, namespace: 'default' } });
  t.is(s.since(rv0), 'expired');
  t.true(Array.isArray(s.since(s.resourceVersion)));
  const before = s.resourceVersion;
  s.compact();
  t.is(s.since(before), 'expired');
  t.deepEqual(s.since(s.resourceVersion), []);
});

test('service allocator: cluster IPs and node ports, conflicts, reuse on update, release', (t) => {
  const al = new ServiceAllocator('10.96.0.0/29', [30000, 30002]);
  const mk = (name: string, spec: Record<string, unknown>): Record<string, any> => ({ metadata: { name }, spec: { type: 'LoadBalancer', ports: [{ port: 80 }], ...spec } }); // eslint-disable-line @typescript-eslint/no-explicit-any
  const s1 = mk('a', {});
  t.deepEqual(al.admit(s1, undefined), []);
  t.is(s1.spec.clusterIP, '10.96.0.1');
  t.is(s1.spec.ports[0].nodePort, 30000);
  t.is(s1.spec.ports[0].targetPort, 80);
  const s2 = mk('b', { clusterIP: '10.96.0.1' });
  t.regex(al.admit(s2, undefined)[0]!.message, /provided IP is already allocated/);
  const s3 = mk('c', { clusterIP: '10.97.0.1' });
  t.regex(al.admit(s3, undefined)[0]!.message, /not in the valid range/);
  const s4 = mk('d', { ports: [{ port: 80, nodePort: 30000 }] });
  t.regex(al.admit(s4, undefined)[0]!.message, /provided port is already allocated/);
  // Update without clusterIP/nodePort keeps them; changing the IP is refused.
  const upd = mk('a', { ports: [{ port: 80, targetPort: 9000 }, { port: 81, name: 'b' }] });
  upd.spec.ports[0].name = 'a';
  t.deepEqual(al.admit(upd, structuredClone(s1)), []);
  t.is(upd.spec.clusterIP, '10.96.0.1');
  t.is(upd.spec.ports[0].nodePort, 30000);
  t.is(upd.spec.ports[1].nodePort, 30001);
  const moved = mk('a', { clusterIP: '10.96.0.5' });
  t.regex(al.admit(moved, structuredClone(upd))[0]!.message, /may not change once set/);
  // Exhausted node ports.
  const big = mk('e', { ports: [{ port: 1, name: 'x' }, { port: 2, name: 'y' }] });
  t.regex(al.admit(big, undefined)[0]!.message, /range is full/);
  // No node ports when allocateLoadBalancerNodePorts is false.
  const nn = mk('f', { allocateLoadBalancerNodePorts: false });
  t.deepEqual(al.admit(nn, undefined), []);
  t.is(nn.spec.ports[0].nodePort, undefined);
  // Releasing frees the IP and ports.
  al.release(upd);
  const again = mk('g', { clusterIP: '10.96.0.1', ports: [{ port: 80, nodePort: 30000 }] });
  t.deepEqual(al.admit(again, undefined), []);
  // Validation of the rest of the spec.
  const bad = { metadata: { name: 'h' }, spec: { type: 'ClusterIP', ports: [{ port: 70000 }, { port: 80, protocol: 'ICMP' }], loadBalancerClass: 'x.io/y' } };
  const causes = al.admit(bad, undefined).map((c) => c.field);
  t.true(causes.includes('spec.ports[0].port'));
  t.true(causes.includes('spec.ports[1].protocol'));
  t.true(causes.includes('spec.ports[0].name'));
  t.true(causes.includes('spec.loadBalancerClass'));
  // Type change LoadBalancer → ClusterIP drops node ports and LB-only fields the client left alone.
  const lb = mk('j', { allocateLoadBalancerNodePorts: true, externalTrafficPolicy: 'Local' });
  t.deepEqual(al.admit(lb, undefined), []);
  const toCIP = structuredClone(lb);
  toCIP.spec.type = 'ClusterIP';
  t.deepEqual(al.admit(toCIP, lb), []);
  t.is(toCIP.spec.ports[0].nodePort, undefined);
  t.is(toCIP.spec.healthCheckNodePort, undefined);
  t.is(toCIP.spec.externalTrafficPolicy, undefined);
  t.is(toCIP.spec.allocateLoadBalancerNodePorts, undefined);
  t.is(toCIP.spec.clusterIP, lb.spec.clusterIP);
  const affinity = mk('i', { sessionAffinity: 'ClientIP', allocateLoadBalancerNodePorts: false });
  t.deepEqual(al.admit(affinity, undefined), []);
  t.is(affinity.spec.sessionAffinityConfig.clientIP.timeoutSeconds, 10800);
});

test('printing and validation helpers', (t) => {
  t.is(humanDuration(5_000), '5s');
  t.is(humanDuration(119_000), '119s');
  t.is(humanDuration(150_000), '2m30s');
  t.is(humanDuration(30 * 60_000), '30m');
  t.is(humanDuration(5 * 3600_000 + 60_000), '5h1m');
  t.is(humanDuration(3 * 86400_000), '3d');
  t.is(humanDuration(-5000), '<invalid>');
  t.is(nameProblem('web', 'dns1035'), undefined);
  t.truthy(nameProblem('1web', 'dns1035'));
  t.is(nameProblem('1web', 'dns1123label'), undefined);
  t.is(nameProblem('a.b-c', 'dns1123subdomain'), undefined);
  t.truthy(nameProblem('A', 'dns1123subdomain'));
  t.true(isIPv6('2001:db8::1'));
  t.false(isIPv6('2001:db8:::1'));
  t.true(isCIDR('192.0.2.0/24'));
  t.false(isCIDR('192.0.2.0/33'));
  t.is(formatMicroTime(new Date('2026-01-02T03:04:05.678Z')), '2026-01-02T03:04:05.678000Z');
  const lease = { spec: { renewTime: '2026-01-02T03:04:05.6Z' } };
  t.is(normalizeTimes('Lease', lease), undefined);
  t.is(lease.spec.renewTime, '2026-01-02T03:04:05.600000Z');
  t.regex(normalizeTimes('Lease', { spec: { renewTime: 'yesterday' } }) ?? '', /spec\.renewTime/);
});
