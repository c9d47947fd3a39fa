// The edge caches EndpointSlices packed (one string per slice): what comes
// back out must be what desired state reads of the slice as received —
// first address (IPv4 and IPv6), every combination of conditions, the node
// — and the index must follow a slice's updates and deletion.
import test from 'ava';
import type { V1Endpoint, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { ClusterIndex } from '../../src/k8s/cluster-index.js';
import { trimSlice } from '../../src/k8s/trim.js';
import { packEndpoints, packSlice, unpackEndpoints, unpackSlice, type PackedSlice } from '../../src/k8s/packed-slice.js';
import { desiredForService, type DesiredConfig, type NodeAddresses } from '../../src/model/desired.js';
import type { PoolConfig } from '../../src/config/types.js';

const TRI = [undefined, true, false];

/** Every combination of ready/serving/terminating (absent, true, false), alternating IPv4/IPv6 and with/without a node. */
function everyCondition(): V1Endpoint[] {
  const out: V1Endpoint[] = [];
  let i = 0;
  for (const ready of TRI)
    for (const serving of TRI)
      for (const terminating of TRI) {
        const conditions: V1Endpoint['conditions'] = {};
        if (ready !== undefined) conditions.ready = ready;
        if (serving !== undefined) conditions.serving = serving;
        if (terminating !== undefined) conditions.terminating = terminating;
        const ep: V1Endpoint = { addresses: [i % 2 ? `2001:db8::${i.toString(16)}` : `10.1.0.${i}`], conditions };
        if (i % 3) ep.nodeName = `node-${i % 3}`;
        out.push(ep);
        i++;
      }
  return out;
}

function slice(name: string, service: string | undefined, endpoints: V1Endpoint[], addressType = 'IPv4'): V1EndpointSlice {
  return {
    metadata: { namespace: 'ns', name, resourceVersion: '5', uid: 'u', labels: service === undefined ? {} : { 'kubernetes.io/service-name': service, other: 'x' } },
    addressType,
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints,
  };
}

test('endpoints round trip: first address (IPv4 and IPv6), all 27 condition combinations, node or none', (t) => {
  const eps = everyCondition();
  const packed = packEndpoints(eps);
  t.is(typeof packed, 'string');
  t.deepEqual(unpackEndpoints(packed!), eps);
  // Unpacked conditions are shared and cannot be changed through one endpoint.
  const again = unpackEndpoints(packed!);
  t.is(again[0]!.conditions, unpackEndpoints(packed!)[0]!.conditions);
  t.true(Object.isFrozen(again[0]!.conditions));
});

test('what desired state does not read is not kept: later addresses, an absent conditions object, null conditions, an empty node', (t) => {
  const eps = [
    { addresses: ['10.0.0.1', '10.0.0.2'], nodeName: 'n1', conditions: { ready: true } },
    { addresses: ['fd00::1'] },
    { addresses: [], nodeName: '' },
    { conditions: { ready: null, serving: null, terminating: true } as unknown as V1Endpoint['conditions'] },
  ] as V1Endpoint[];
  t.deepEqual(unpackEndpoints(packEndpoints(eps)!), [
    { addresses: ['10.0.0.1'], nodeName: 'n1', conditions: { ready: true } },
    { addresses: ['fd00::1'], conditions: {} },
    { addresses: [], conditions: {} },
    { addresses: [], conditions: { terminating: true } },
  ]);
  t.deepEqual(unpackEndpoints(packEndpoints([])!), []);
});

test('endpoints that do not fit the encoding are kept as objects (as trimmed)', (t) => {
  const odd = [{ addresses: ['10.0.0.1,10.0.0.2'], nodeName: 'n1', conditions: { ready: true } }];
  t.is(packEndpoints(odd), null);
  t.is(packEndpoints([{ addresses: ['10.0.0.1'], nodeName: 'a b' }]), null);
  t.is(packEndpoints([{ addresses: ['10.0.0.1'], conditions: { ready: 'yes' as unknown as boolean } }]), null);
  const p = packSlice(slice('s', 'web', odd));
  t.not(typeof p.endpoints, 'string');
  t.deepEqual(unpackSlice(p).endpoints, trimSlice(slice('s', 'web', odd)).endpoints);
  // Malformed input never throws (the informer would cache the raw object instead).
  t.notThrows(() => packSlice({ metadata: { name: 'x' }, endpoints: 'nope' } as unknown as V1EndpointSlice));
  t.notThrows(() => packSlice({ metadata: { name: 'y' }, endpoints: [null, 5] } as unknown as V1EndpointSlice));
});

test('a packed slice keeps name, namespace, version, service, address type and shared ports; unpacks to what desired state reads', (t) => {
  const p = packSlice(slice('web-abc', 'web', everyCondition(), 'IPv6'));
  t.deepEqual(p.metadata, { name: 'web-abc', namespace: 'ns', resourceVersion: '5' });
  t.is(p.service, 'web');
  t.is(packSlice(slice('web-def', 'web', [])).ports, p.ports);
  const u = unpackSlice(p);
  t.deepEqual(u, { metadata: { name: 'web-abc', namespace: 'ns', labels: { 'kubernetes.io/service-name': 'web' } }, addressType: 'IPv6', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints: everyCondition() });
  t.deepEqual(unpackSlice(packSlice(slice('lone', undefined, []))).metadata!.labels, {});
});

test('desired state from packed slices equals desired state from the slices as received', (t) => {
  const advertise = { communities: [], largeCommunities: [], localPref: null, med: null, asPathPrepend: 0, peers: [] };
  const pools: PoolConfig[] = [{ name: 'p', cidrs: ['192.0.2.0/24', '2001:db8:1::/64'], namespaces: [], serviceSelector: {}, autoAssign: true, advertise }];
  const config: DesiredConfig = { datapath: { mode: 'dsr', dispatch: 'auto' }, pools };
  const svc: V1Service = { metadata: { namespace: 'ns', name: 'web' }, spec: { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, protocol: 'TCP' }] } };
  const nodes = new Map<string, NodeAddresses>([['node-1', { v4: '10.0.0.1', v6: 'fd00::1' }], ['node-2', { v4: '10.0.0.2', v6: null }]]);
  const alloc = [{ ip: '192.0.2.10', pool: 'p' }, { ip: '2001:db8:1::10', pool: 'p' }];
  const eps = everyCondition();
  const slices = [slice('v4', 'web', eps.filter((e) => !e.addresses[0]!.includes(':'))), slice('v6', 'web', eps.filter((e) => e.addresses[0]!.includes(':')), 'IPv6')];
  const want = desiredForService(svc, slices, nodes, config, alloc);
  t.true(want.services.some((s) => s.backends.length > 0));
  t.deepEqual(desiredForService(svc, slices.map((s) => unpackSlice(packSlice(s))), nodes, config, alloc), want);
});

test('the index follows a packed slice through add, update (new endpoints, another Service) and delete', (t) => {
  const cache = new Map<string, PackedSlice>();
  const index = new ClusterIndex();
  const get = (name: string, ns: string) => cache.get(`${ns}/${name}`);
  const apply = (ev: string, s: V1EndpointSlice) => {
    const p = packSlice(s);
    if (ev === 'delete') cache.delete(`ns/${s.metadata!.name}`);
    else cache.set(`ns/${s.metadata!.name}`, p);
    return index.onSlice(ev, p);
  };
  const a = [{ addresses: ['10.1.0.1'], nodeName: 'n1', conditions: { ready: true } }];
  const b = [{ addresses: ['2001:db8::2'], nodeName: 'n2', conditions: { ready: false, serving: true, terminating: true } }];
  t.deepEqual(apply('add', slice('s1', 'web', a)), ['ns/web']);
  t.deepEqual(apply('add', slice('s2', 'web', b, 'IPv6')), ['ns/web']);
  t.deepEqual(index.slicesOf('ns/web', get).map((s) => [s.metadata!.name, s.endpoints]), [['s1', a], ['s2', b]]);
  t.deepEqual(apply('update', slice('s1', 'web', b)), ['ns/web']);
  t.deepEqual(index.slicesOf('ns/web', get).map((s) => s.endpoints), [b, b]);
  // Relabelled to another Service: both are recomputed.
  t.deepEqual(apply('update', slice('s1', 'api', a)), ['ns/web', 'ns/api']);
  t.deepEqual(index.slicesOf('ns/web', get).map((s) => s.metadata!.name), ['s2']);
  t.deepEqual(index.slicesOf('ns/api', get).map((s) => s.endpoints), [a]);
  t.deepEqual(apply('delete', slice('s2', 'web', b)), ['ns/web']);
  t.deepEqual(index.slicesOf('ns/web', get), []);
  t.deepEqual(apply('delete', slice('s1', 'api', a)), ['ns/api']);
  t.deepEqual(index.slicesOf('ns/api', get), []);
});
