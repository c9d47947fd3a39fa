import test from 'ava';
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { PoolConfig } from '../../src/config/types.js';
import { computeDesiredState, desiredForService, type DesiredConfig, frontendKey, nodeAddresses, type NodeAddresses } from '../../src/model/desired.js';
import { IpAllocator } from '../../src/ipam/allocator.js';
import { addressRefusal, ipRequestFor, isOurs, requestedAddresses, restoreRequestFor } from '../../src/model/service.js';
import { acceptanceSlices, localDesired } from '../../src/node-agent/local-services.js';

const advertise = { communities: ['65000:1'], largeCommunities: [], localPref: null, med: null, asPathPrepend: 0, peers: [] };
const pools: PoolConfig[] = [{ name: 'p', cidrs: ['192.0.2.0/24', '2001:db8::/64'], namespaces: [], serviceSelector: {}, autoAssign: true, advertise }];
const config: DesiredConfig = { datapath: { mode: 'dsr', dispatch: 'auto' }, pools };

function svc(name: string, extra: Partial<V1Service['spec']> = {}, annotations: Record<string, string> = {}): V1Service {
  return {
    metadata: { namespace: 'ns', name, annotations },
    spec: { type: 'LoadBalancer', ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 'web' as unknown as never }], ...extra },
  };
}

type Cond = { ready?: boolean; serving?: boolean; terminating?: boolean };
function slice(service: string, name: string, eps: [string, string, Cond][], ports = [{ name: 'http', port: 8080, protocol: 'TCP' }], addressType = 'IPv4'): V1EndpointSlice {
  return {
    metadata: { namespace: 'ns', name, labels: { 'kubernetes.io/service-name': service } },
    addressType,
    ports,
    endpoints: eps.map(([ip, node, conditions]) => ({ addresses: [ip], nodeName: node, conditions })),
  };
}

function node(name: string, internal: string, external?: string): V1Node {
  const addresses = [{ type: 'Hostname', address: name }, { type: 'InternalIP', address: internal }];
  if (external) addresses.push({ type: 'ExternalIP', address: external });
  return { metadata: { name }, status: { addresses } };
}

const nodes = new Map<string, NodeAddresses>([['n1', { v4: '10.0.0.1', v6: null }], ['n2', { v4: '10.0.0.2', v6: 'fd00::2' }]]);
const alloc = [{ ip: '192.0.2.10', pool: 'p' }];

test('ownership by class, default class, and type', (t) => {
  const cfg = { loadBalancerClass: 'edgelb.io/dsr', defaultClass: false };
  t.true(isOurs(svc('a', { loadBalancerClass: 'edgelb.io/dsr' }), cfg));
  t.false(isOurs(svc('a', { loadBalancerClass: 'other.io/x' }), cfg));
  t.false(isOurs(svc('a'), cfg));
  t.true(isOurs(svc('a'), { ...cfg, defaultClass: true }));
  t.false(isOurs(svc('a', { type: 'ClusterIP' }), { ...cfg, defaultClass: true }));
});

test('ip request: annotation wins over spec.loadBalancerIP, sharing key, ports, families', (t) => {
  const s = svc('a', { loadBalancerIP: '192.0.2.5', ipFamilies: ['IPv6', 'IPv4'], ipFamilyPolicy: 'RequireDualStack' }, {
    'edgelb.io/loadBalancerIPs': ' 192.0.2.7 , 2001:db8::7 ',
    'edgelb.io/allow-shared-ip': 'k',
  });
  s.status = { loadBalancer: { ingress: [{ ip: '192.0.2.7' }] } };
  const r = ipRequestFor(s);
  t.deepEqual(r.requested, ['192.0.2.7', '2001:db8::7']);
  t.is(r.sharingKey, 'k');
  t.deepEqual(r.families, [6, 4]);
  t.deepEqual(r.current, ['192.0.2.7']);
  t.deepEqual(r.ports, [{ port: 80, protocol: 'TCP' }]);
  t.deepEqual(r.shareWithNamespaces, []);
  t.deepEqual(ipRequestFor(svc('d', {}, { 'edgelb.io/allow-shared-ip-namespaces': ' team-b , team-c ' })).shareWithNamespaces, ['team-b', 'team-c']);
  t.is(ipRequestFor(svc('d', {}, { 'edgelb.io/allow-shared-ip-namespaces': '*' })).shareWithNamespaces, '*');
  t.deepEqual(requestedAddresses(svc('b', { loadBalancerIP: '192.0.2.5' })), ['192.0.2.5']);
  t.deepEqual(ipRequestFor(svc('c', { ipFamilies: ['IPv6'], ipFamilyPolicy: 'PreferDualStack' })).families, [6]);
  // A dual-stack cluster lists both families for PreferDualStack: the first is required, the second wanted.
  const prefer = ipRequestFor(svc('e', { ipFamilies: ['IPv6', 'IPv4'], ipFamilyPolicy: 'PreferDualStack' }));
  t.deepEqual([prefer.families, prefer.preferredFamilies], [[6], [4]]);
  const single = ipRequestFor(svc('f', { ipFamilies: ['IPv4'], ipFamilyPolicy: 'SingleStack' }));
  t.deepEqual([single.families, single.preferredFamilies], [[4], []]);
});

test('restore replays status: one address in two spellings (another writer\'s) is one address, and the allocator takes it back', (t) => {
  const s = svc('a', { ipFamilies: ['IPv6'], ipFamilyPolicy: 'SingleStack' }, { 'edgelb.io/loadBalancerIPs': '2001:db8::9' });
  s.metadata!.uid = 'u1';
  s.status = { loadBalancer: { ingress: [{ ip: '2001:db8::5' }, { ip: '2001:DB8:0::5' }, { ip: 'not-an-ip' }] } };
  const r = restoreRequestFor(s);
  t.deepEqual(r.requested, ['2001:db8::5', 'not-an-ip'], 'canonical, once each; what is no address stays for the allocator to refuse');
  const ok = { ...s, status: { loadBalancer: { ingress: [{ ip: '2001:db8::5' }, { ip: '2001:DB8:0::5' }] } } };
  const ipam = new IpAllocator([{ name: 'p', cidrs: ['2001:db8::/120'], namespaces: [], serviceSelector: {}, autoAssign: true }]);
  const res = ipam.assign(restoreRequestFor(ok));
  t.true(res.ok, JSON.stringify(res));
  t.deepEqual(ipam.usersOf('2001:db8::5'), [r.key]);
});

test('ready, terminating-but-serving and not-serving endpoints', (t) => {
  const d = desiredForService(svc('a'), [slice('a', 's1', [
    ['10.1.0.3', 'n1', { ready: true }],
    ['10.1.0.1', 'n2', { ready: false, serving: true, terminating: true }],
    ['10.1.0.2', 'n2', { ready: false, serving: false, terminating: true }],
    ['10.1.0.4', 'n1', {}],
    ['10.1.0.5', 'n1', { ready: false }],
  ])], nodes, config, alloc);
  t.is(d.services.length, 1);
  const s = d.services[0]!;
  t.deepEqual(s.frontend, { vip: '192.0.2.10', port: 80, protocol: 'TCP' });
  t.deepEqual(s.backends.map((b) => [b.ip, b.port, b.state, b.nodeName, b.nodeIp]), [
    ['10.1.0.1', 8080, 'terminating', 'n2', '10.0.0.2'],
    ['10.1.0.3', 8080, 'active', 'n1', '10.0.0.1'],
    ['10.1.0.4', 8080, 'active', 'n1', '10.0.0.1'],
  ]);
  t.deepEqual(d.readyAddresses, ['192.0.2.10']);
});

test('a VIP with only terminating endpoints is not advertised but its flows stay programmed', (t) => {
  const s = svc('a');
  const state = computeDesiredState([s], [slice('a', 's1', [['10.1.0.1', 'n1', { ready: false, serving: true, terminating: true }]])], [node('n1', '10.0.0.1')], config, new Map([['ns/a', alloc]]));
  t.deepEqual(state.vips, []);
  t.is(state.services.length, 1);
  t.is(state.services[0]!.backends[0]!.state, 'terminating');
  const up = computeDesiredState([s], [slice('a', 's1', [['10.1.0.1', 'n1', { ready: true }]])], [node('n1', '10.0.0.1')], config, new Map([['ns/a', alloc]]));
  t.deepEqual(up.vips, [{ address: '192.0.2.10', pool: 'p', advertise, services: ['ns/a'] }]);
  t.is(up.services[0]!.backends[0]!.nodeIp, '10.0.0.1');
});

test('node mapping uses InternalIP per family, ExternalIP as fallback', (t) => {
  t.deepEqual(nodeAddresses(node('x', '10.0.0.9', '203.0.113.9')), { v4: '10.0.0.9', v6: null });
  t.deepEqual(nodeAddresses({ status: { addresses: [{ type: 'ExternalIP', address: '203.0.113.9' }, { type: 'InternalIP', address: 'FD00::9' }] } }), { v4: '203.0.113.9', v6: 'fd00::9' });
});

test('an endpoint on a node without a known address is not used (with a Warning); one without a node is its own next hop', (t) => {
  const d = desiredForService(svc('a'), [slice('a', 's1', [['10.1.0.1', 'unknown', { ready: true }], ['10.1.0.2', 'n1', { ready: true }]])], nodes, config, alloc);
  t.deepEqual(d.services[0]!.backends.map((b) => [b.ip, b.nodeIp]), [['10.1.0.2', '10.0.0.1']]);
  t.deepEqual(d.problems, [{ reason: 'NodeAddressUnknown', message: 'endpoint 10.1.0.1 is not used: node unknown has no IPv4 address (InternalIP/ExternalIP) known to edgelb' }]);
  const bare: V1EndpointSlice = { ...slice('a', 's2', []), endpoints: [{ addresses: ['198.51.100.99'], conditions: { ready: true } }] };
  t.deepEqual(desiredForService(svc('a'), [bare], nodes, config, alloc).services[0]!.backends.map((b) => [b.ip, b.nodeIp, b.nodeName]), [['198.51.100.99', '198.51.100.99', '']]);
});

test('annotations choose mode and dispatch; invalid values fall back with a problem', (t) => {
  const ok = desiredForService(svc('a', {}, { 'edgelb.io/mode': 'snat', 'edgelb.io/dispatch': 'ipip' }), [], nodes, config, alloc);
  t.is(ok.services[0]!.mode, 'snat');
  t.is(ok.services[0]!.dispatch, 'ipip');
  t.deepEqual(ok.problems, []);
  const bad = desiredForService(svc('a', {}, { 'edgelb.io/mode': 'fast', 'edgelb.io/dispatch': 'gre' }), [], nodes, config, alloc);
  t.is(bad.services[0]!.mode, 'dsr');
  t.is(bad.services[0]!.dispatch, 'auto');
  t.deepEqual(bad.problems.map((p) => p.reason), ['InvalidMode', 'InvalidDispatch']);
  const local = desiredForService(svc('a', { externalTrafficPolicy: 'Local' }, { 'edgelb.io/mode': 'snat' }), [], nodes, config, alloc);
  t.is(local.services[0]!.mode, 'dsr');
  t.deepEqual(local.problems.map((p) => p.reason), ['ModeOverridden']);
});

test('session affinity and source ranges reach the desired service', (t) => {
  const d = desiredForService(svc('a', {
    sessionAffinity: 'ClientIP',
    loadBalancerSourceRanges: ['198.51.100.7/24', 'bogus', '2001:DB8::/32'],
  }), [], nodes, config, alloc);
  t.is(d.services[0]!.affinityTimeoutSeconds, 10800);
  // Each family's ranges go to that family's frontends.
  t.deepEqual(d.services[0]!.sourceRanges, ['198.51.100.0/24']);
  const dual = desiredForService(svc('a', { loadBalancerSourceRanges: ['198.51.100.7/24', '2001:DB8::/32'] }), [], nodes, config, [...alloc, { ip: '2001:db8::10', pool: 'p' }]);
  t.deepEqual(dual.services.map((x) => [x.frontend.vip, x.sourceRanges]), [['192.0.2.10', ['198.51.100.0/24']], ['2001:db8::10', ['2001:db8::/32']]]);
  t.deepEqual(d.problems.map((p) => p.reason), ['InvalidSourceRange']);
  const timed = desiredForService(svc('a', { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }), [], nodes, config, alloc);
  t.is(timed.services[0]!.affinityTimeoutSeconds, 60);
  t.is(desiredForService(svc('a'), [], nodes, config, alloc).services[0]!.affinityTimeoutSeconds, 0);
  // Every range invalid: closed, not open.
  t.deepEqual(desiredForService(svc('a', { loadBalancerSourceRanges: ['x'] }), [], nodes, config, alloc).services[0]!.sourceRanges, ['0.0.0.0/32']);
});

test('a frontend whose family has no source range is not served (it would admit no client), the reason named', (t) => {
  const d = desiredForService(svc('a', { loadBalancerSourceRanges: ['2001:db8::/32'] }), [], nodes, config, alloc);
  t.deepEqual(d.services, []);
  t.deepEqual(d.rejected, [{
    key: '192.0.2.10:80/TCP', service: 'ns/a', reason: 'SourceRangeFamily',
    message: 'ns/a 192.0.2.10:80/TCP: loadBalancerSourceRanges (2001:db8::/32) has no IPv4 range, so this IPv4 frontend would admit no client',
  }]);
});

test('over the per-Service port cap: every frontend of the Service is rejected with TooManyPorts, none is served', (t) => {
  const ports = Array.from({ length: 5 }, (_, i) => ({ name: `p${i}`, port: 1000 + i, protocol: 'TCP' }));
  const capped = { ...config, datapath: { ...config.datapath, maxPortsPerService: 4 } };
  const d = desiredForService(svc('a', { ports }), [], nodes, capped, alloc);
  t.deepEqual(d.services, []);
  t.is(d.rejected.length, 5);
  t.true(d.rejected.every((r) => r.reason === 'TooManyPorts'));
  t.regex(d.rejected[0]!.message, /^ns\/a 192\.0\.2\.10:1000\/TCP: the Service has 5 TCP\/UDP ports; an edge serves at most 4 per Service \(datapath\.maxPortsPerService\)$/);
  t.is(desiredForService(svc('a', { ports: ports.slice(0, 4) }), [], nodes, capped, alloc).services.length, 4);
});

test('the service.beta.kubernetes.io/load-balancer-source-ranges annotation applies when spec.loadBalancerSourceRanges is empty; the field wins when both are set', (t) => {
  const ann = { 'service.beta.kubernetes.io/load-balancer-source-ranges': ' 198.51.100.0/24 ,2001:db8::/32,, bogus' };
  const d = desiredForService(svc('a', {}, ann), [], nodes, config, alloc);
  // The IPv4 frontend gets the IPv4 entries (each family's frontends get that family's ranges).
  t.deepEqual(d.services[0]!.sourceRanges, ['198.51.100.0/24']);
  t.deepEqual(d.problems.map((p) => p.reason), ['InvalidSourceRange']);
  t.regex(d.problems[0]!.message, /service\.beta\.kubernetes\.io\/load-balancer-source-ranges entry "bogus"/);
  const dual = desiredForService(svc('a', {}, ann), [], nodes, config, [...alloc, { ip: '2001:db8:1::10', pool: 'p' }]);
  t.deepEqual(dual.services.map((x) => [x.frontend.vip, x.sourceRanges]), [['192.0.2.10', ['198.51.100.0/24']], ['2001:db8:1::10', ['2001:db8::/32']]]);
  const both = desiredForService(svc('a', { loadBalancerSourceRanges: ['203.0.113.0/24'] }, ann), [], nodes, config, alloc);
  t.deepEqual(both.services[0]!.sourceRanges, ['203.0.113.0/24']);
  // Only invalid entries: closed, not open — as for the field.
  t.deepEqual(desiredForService(svc('a', {}, { 'service.beta.kubernetes.io/load-balancer-source-ranges': 'nope' }), [], nodes, config, alloc).services[0]!.sourceRanges, ['0.0.0.0/32']);
  t.deepEqual(desiredForService(svc('a', {}, { 'service.beta.kubernetes.io/load-balancer-source-ranges': '' }), [], nodes, config, alloc).services[0]!.sourceRanges, [], 'empty annotation: everyone');
});

test('ports: slice port matched by service port name, named targetPort fallback, UDP, SCTP refused', (t) => {
  const s = svc('a', { ports: [
    { name: 'http', port: 80, protocol: 'TCP', targetPort: 'web' as unknown as never },
    { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 as unknown as never },
    { name: 'metrics', port: 9000, protocol: 'TCP', targetPort: 'prom' as unknown as never },
    { name: 'sctp', port: 99, protocol: 'SCTP' },
  ] });
  const sl = slice('a', 's1', [['10.1.0.1', 'n1', { ready: true }]], [
    { name: 'http', port: 8080, protocol: 'TCP' },
    { name: 'prom', port: 9100, protocol: 'TCP' },
  ]);
  const d = desiredForService(s, [sl], nodes, config, alloc);
  t.deepEqual(d.services.map((x) => [frontendKey(x.frontend), x.backends.map((b) => b.port)]), [
    ['192.0.2.10:80/TCP', [8080]],
    // (The slice lists no UDP port: not for dns; a slice without ports would be, at 5353.)
    ['192.0.2.10:53/UDP', []],
    ['192.0.2.10:9000/TCP', [9100]],
  ]);
  t.deepEqual(d.problems.map((p) => p.reason), ['UnsupportedProtocol']);
});

test('a Service with no TCP or UDP port (SCTP only) is refused an address, naming it and its ports; one TCP or UDP port among them is enough', (t) => {
  const sctp = (port: number) => ({ name: `s${port}`, port, protocol: 'SCTP' });
  const only = addressRefusal(svc('sig', { ports: [sctp(3868), sctp(3869)], loadBalancerIP: '192.0.2.5' }));
  t.is(only?.reason, 'UnsupportedProtocol');
  t.is(only?.message, 'ns/sig has no TCP or UDP port (3868/SCTP, 3869/SCTP); edgelb serves TCP and UDP only, so no address is allocated or announced');
  t.regex(addressRefusal(svc('many', { ports: [1, 2, 3, 4, 5, 6, 7].map(sctp) }))!.message, /\(1\/SCTP, 2\/SCTP, 3\/SCTP, 4\/SCTP, 5\/SCTP and 2 more\)/);
  t.is(addressRefusal(svc('mixed', { ports: [sctp(3868), { name: 'dns', port: 53, protocol: 'UDP' }] })), null);
  t.is(addressRefusal(svc('web')), null);
  // No protocol is TCP (the API server's default).
  t.is(addressRefusal(svc('bare', { ports: [{ port: 80 }] })), null);
});

test('IPv6 VIP takes IPv6 slices only; duplicate endpoints across slices count once', (t) => {
  const both = [{ ip: '192.0.2.10', pool: 'p' }, { ip: '2001:db8::10', pool: 'p' }];
  const d = desiredForService(svc('a'), [
    slice('a', 's4', [['10.1.0.1', 'n1', { ready: true }]]),
    slice('a', 's6a', [['fd01::1', 'n2', { ready: false, serving: true, terminating: true }]], undefined, 'IPv6'),
    slice('a', 's6b', [['FD01::1', 'n2', { ready: true }]], undefined, 'IPv6'),
  ], nodes, config, both);
  t.deepEqual(d.services.map((x) => frontendKey(x.frontend)), ['192.0.2.10:80/TCP', '[2001:db8::10]:80/TCP']);
  t.deepEqual(d.services[1]!.backends, [{ ip: 'fd01::1', port: 8080, nodeIp: 'fd00::2', nodeName: 'n2', weight: 1, state: 'active' }]);
  t.deepEqual(d.readyAddresses, ['192.0.2.10', '2001:db8::10']);
});

test('shared VIP lists every ready service; unallocated services produce nothing', (t) => {
  const a = svc('a');
  const b = svc('b', { ports: [{ name: 'http', port: 81, protocol: 'TCP' }] });
  const c = svc('c');
  const st = computeDesiredState([a, b, c], [
    slice('a', 'sa', [['10.1.0.1', 'n1', { ready: true }]]),
    slice('b', 'sb', [['10.1.0.2', 'n1', { ready: true }]], [{ name: 'http', port: 8081, protocol: 'TCP' }]),
    slice('c', 'sc', [['10.1.0.3', 'n1', { ready: true }]]),
  ], [node('n1', '10.0.0.1')], config, new Map([['ns/a', alloc], ['ns/b', alloc]]));
  t.deepEqual(st.vips.map((v) => [v.address, v.services]), [['192.0.2.10', ['ns/a', 'ns/b']]]);
  t.deepEqual(st.services.map((s) => frontendKey(s.frontend)), ['192.0.2.10:80/TCP', '192.0.2.10:81/TCP']);
});

test('a node\'s local view: our Services at the addresses in their status, through the same whole-cluster function', (t) => {
  const withStatus = (s: V1Service, ip: string): V1Service => ({ ...s, status: { loadBalancer: { ingress: [{ ip }] } } });
  const ours = withStatus(svc('a', { loadBalancerClass: 'edgelb.io/dsr' }), '192.0.2.10');
  const foreign = withStatus(svc('b', { loadBalancerClass: 'other.io/lb' }), '192.0.2.11');
  const pending = svc('c', { loadBalancerClass: 'edgelb.io/dsr' });
  const slices = ['a', 'b', 'c'].map((n, i) => slice(n, `s${n}`, [[`10.1.0.${i + 1}`, 'n1', { ready: true }]]));
  const local = localDesired([ours, foreign, pending], slices, [node('n1', '10.0.0.1')], { kubernetes: { loadBalancerClass: 'edgelb.io/dsr', defaultClass: false }, datapath: config.datapath });
  t.deepEqual(local.map((s) => [frontendKey(s.frontend), s.service, s.backends.map((b) => `${b.ip}@${b.nodeIp}`)]), [['192.0.2.10:80/TCP', 'ns/a', ['10.1.0.1@10.0.0.1']]]);
});

test('a node\'s local view lists pods that are not ready yet (after the ready ones): the edges send to them the moment they turn ready', (t) => {
  const ours = { ...svc('a', { loadBalancerClass: 'edgelb.io/dsr' }), status: { loadBalancer: { ingress: [{ ip: '192.0.2.10' }] } } };
  const slices = [slice('a', 'sa', [
    ['10.1.0.1', 'n1', { ready: true }],
    ['10.1.0.2', 'n1', { ready: false }],
    ['10.1.0.3', 'n1', { ready: false, serving: false, terminating: true }],
    ['10.1.0.4', 'n1', { ready: false, serving: true, terminating: true }],
  ])];
  const local = localDesired([ours], slices, [node('n1', '10.0.0.1')], { kubernetes: { loadBalancerClass: 'edgelb.io/dsr', defaultClass: false }, datapath: config.datapath });
  t.deepEqual(local[0]!.backends.map((b) => [b.ip, b.state]), [['10.1.0.1', 'active'], ['10.1.0.2', 'terminating'], ['10.1.0.3', 'terminating'], ['10.1.0.4', 'terminating']]);
  // The edges' view of the same slices is unchanged: only the ready pod and the serving terminating one.
  const edge = computeDesiredState([ours], slices, [node('n1', '10.0.0.1')], config, new Map([['ns/a', alloc]]));
  t.deepEqual(edge.services[0]!.backends.map((b) => [b.ip, b.state]), [['10.1.0.1', 'active'], ['10.1.0.4', 'terminating']]);
  t.deepEqual(acceptanceSlices(slices)[0]!.endpoints![0], slices[0]!.endpoints![0], 'a ready endpoint is read as it is');
});

test('an endpoint inside a VIP pool (it would loop through the routers back to the edges), multicast or reserved is not used, with a Warning naming it', (t) => {
  const eps: [string, string, Cond][] = [
    ['192.0.2.7', '', { ready: true }],
    ['224.0.0.5', '', { ready: true }],
    ['239.1.2.3', 'n1', { ready: true }],
    ['255.255.255.255', '', { ready: true }],
    ['0.1.2.3', '', { ready: true }],
    ['10.1.0.1', 'n1', { ready: true }],
  ];
  const d = desiredForService(svc('a'), [slice('a', 's1', eps)], nodes, config, alloc);
  t.deepEqual(d.services[0]!.backends.map((b) => b.ip), ['10.1.0.1']);
  t.deepEqual(d.problems.map((p) => p.reason), Array<string>(5).fill('BackendAddressRefused'));
  t.is(d.problems[0]!.message, 'endpoint 192.0.2.7 is not used: it lies in VIP pool p (192.0.2.0/24): packets sent there would come back to the edges');
  t.is(d.problems[1]!.message, 'endpoint 224.0.0.5 is not used: it is multicast (224.0.0.0/4), not a pod\'s address');
  const v6: [string, string, Cond][] = [['2001:db8::9', '', { ready: true }], ['ff02::1', '', { ready: true }], ['fd00::10', 'n2', { ready: true }]];
  const d6 = desiredForService(svc('a'), [slice('a', 's6', v6, undefined, 'IPv6')], nodes, config, [{ ip: '2001:db8::1', pool: 'p' }]);
  t.deepEqual(d6.services[0]!.backends.map((b) => b.ip), ['fd00::10']);
  t.deepEqual(d6.problems.map((p) => p.message.split(':')[0]), ['endpoint 2001', 'endpoint ff02']);
});

test('a node address inside a VIP pool, loopback or multicast is not a next hop: that node\'s endpoints are not used, with a Warning naming node and address', (t) => {
  // Node status is written by each node's own kubelet (the Node authorizer
  // lets it): a misconfigured or hostile one could name a VIP, which would
  // loop every packet through the routers back to the edges.
  const odd = new Map<string, NodeAddresses>([
    ...nodes,
    ['vipnode', { v4: '192.0.2.20', v6: '2001:db8::20' }],
    ['lonode', { v4: '127.0.0.2', v6: '::1' }],
    ['mcnode', { v4: '224.0.0.9', v6: null }],
  ]);
  const eps: [string, string, Cond][] = [
    ['10.1.0.1', 'n1', { ready: true }],
    ['10.1.0.2', 'vipnode', { ready: true }],
    ['10.1.0.3', 'lonode', { ready: true }],
    ['10.1.0.4', 'mcnode', { ready: true }],
  ];
  const d = desiredForService(svc('a'), [slice('a', 's1', eps)], odd, config, alloc);
  t.deepEqual(d.services[0]!.backends.map((b) => b.ip), ['10.1.0.1']);
  t.deepEqual(d.problems.map((p) => p.reason), Array<string>(3).fill('NodeAddressRefused'));
  t.is(d.problems[0]!.message, 'endpoint 10.1.0.2 is not used: the address 192.0.2.20 of its node vipnode lies in VIP pool p (192.0.2.0/24): packets sent there would come back to the edges');
  t.is(d.problems[1]!.message, 'endpoint 10.1.0.3 is not used: the address 127.0.0.2 of its node lonode is loopback (127.0.0.0/8), not a node\'s address');
  t.is(d.problems[2]!.message, 'endpoint 10.1.0.4 is not used: the address 224.0.0.9 of its node mcnode is multicast (224.0.0.0/4), not a node\'s address');
  const v6: [string, string, Cond][] = [['fd00::10', 'n2', { ready: true }], ['fd00::11', 'vipnode', { ready: true }], ['fd00::12', 'lonode', { ready: true }]];
  const d6 = desiredForService(svc('a'), [slice('a', 's6', v6, undefined, 'IPv6')], odd, config, [{ ip: '2001:db8::1', pool: 'p' }]);
  t.deepEqual(d6.services[0]!.backends.map((b) => b.ip), ['fd00::10']);
  t.deepEqual(d6.problems.map((p) => p.reason), ['NodeAddressRefused', 'NodeAddressRefused']);
});

test('an endpoint or node address that is an edge\'s own (the edge would send VIP traffic to itself or another edge) or link-local is not used, with a Warning naming it', (t) => {
  // Edges are not nodes: no pod lives at an edge's address. A slice naming
  // one (or a node claiming one) makes the edge forward the client's
  // packets to itself — straight back into its own XDP program — or to
  // another edge, which forwards them again.
  const edges = new Map([['10.9.0.1', 'edge-a'], ['10.9.0.2', 'edge-b'], ['2001:db8:e::1', 'edge-a']]);
  const withEdges: DesiredConfig = { ...config, edgeAddresses: edges };
  const odd = new Map<string, NodeAddresses>([...nodes, ['edgenode', { v4: '10.9.0.2', v6: '2001:db8:e::1' }], ['llnode', { v4: '169.254.3.4', v6: 'fe80::4' }]]);
  const eps: [string, string, Cond][] = [
    ['10.9.0.1', '', { ready: true }],
    ['10.9.0.2', 'n1', { ready: true }],
    ['169.254.1.1', '', { ready: true }],
    ['10.1.0.1', 'n1', { ready: true }],
    ['10.1.0.2', 'edgenode', { ready: true }],
    ['10.1.0.3', 'llnode', { ready: true }],
  ];
  const d = desiredForService(svc('a'), [slice('a', 's1', eps)], odd, withEdges, alloc);
  t.deepEqual(d.services[0]!.backends.map((b) => b.ip), ['10.1.0.1']);
  t.deepEqual(d.problems.map((p) => p.message), [
    'endpoint 10.9.0.1 is not used: it is the address of edge edge-a: packets sent there would come back to the edges',
    'endpoint 10.9.0.2 is not used: it is the address of edge edge-b: packets sent there would come back to the edges',
    'endpoint 169.254.1.1 is not used: it is link-local (169.254.0.0/16), not a pod\'s address',
    'endpoint 10.1.0.2 is not used: the address 10.9.0.2 of its node edgenode is the address of edge edge-b: packets sent there would come back to the edges',
    'endpoint 10.1.0.3 is not used: the address 169.254.3.4 of its node llnode is link-local (169.254.0.0/16), not a node\'s address',
  ]);
  t.deepEqual(d.problems.map((p) => p.reason), ['BackendAddressRefused', 'BackendAddressRefused', 'BackendAddressRefused', 'NodeAddressRefused', 'NodeAddressRefused']);
  const v6: [string, string, Cond][] = [['2001:db8:e::1', '', { ready: true }], ['fd00::10', 'n2', { ready: true }], ['fd00::11', 'edgenode', { ready: true }], ['fd00::12', 'llnode', { ready: true }]];
  const d6 = desiredForService(svc('a'), [slice('a', 's6', v6, undefined, 'IPv6')], odd, withEdges, [{ ip: '2001:db8::1', pool: 'p' }]);
  t.deepEqual(d6.services[0]!.backends.map((b) => b.ip), ['fd00::10']);
  t.deepEqual(d6.problems.map((p) => p.reason), ['BackendAddressRefused', 'NodeAddressRefused', 'NodeAddressRefused']);
  // Without edge addresses (a Kubernetes node's own view) they are backends like any other.
  t.deepEqual(desiredForService(svc('a'), [slice('a', 's1', eps)], odd, config, alloc).services[0]!.backends.map((b) => b.ip), ['10.1.0.1', '10.1.0.2', '10.9.0.1', '10.9.0.2']);
});

test('a slice that lists ports but none for a Service port (a pod serving only its metrics port) gives no backend to that port; only a slice without ports falls back to the targetPort', (t) => {
  // What kube-proxy does: endpoints belong to a Service port through a slice
  // port of its name. A mirrored or hand-made slice with only the metrics
  // port made its pods backends of every other port at its numeric
  // targetPort, where nothing listens.
  const s = svc('a', { ports: [
    { name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 as unknown as never },
    { name: 'metrics', port: 9090, protocol: 'TCP', targetPort: 9090 as unknown as never },
    { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 as unknown as never },
  ] });
  const both = slice('a', 'both', [['10.1.0.1', 'n1', { ready: true }]], [{ name: 'http', port: 8080, protocol: 'TCP' }, { name: 'metrics', port: 9090, protocol: 'TCP' }]);
  const metricsOnly = slice('a', 'metrics-only', [['10.1.0.2', 'n1', { ready: true }]], [{ name: 'metrics', port: 9090, protocol: 'TCP' }]);
  const portless = slice('a', 'portless', [['10.1.0.3', 'n1', { ready: true }]], []);
  const d = desiredForService(s, [both, metricsOnly, portless], nodes, config, alloc);
  t.deepEqual(d.services.map((x) => [frontendKey(x.frontend), x.backends.map((b) => `${b.ip}:${b.port}`)]), [
    ['192.0.2.10:80/TCP', ['10.1.0.1:8080', '10.1.0.3:8080']],
    ['192.0.2.10:9090/TCP', ['10.1.0.1:9090', '10.1.0.2:9090', '10.1.0.3:9090']],
    ['192.0.2.10:53/UDP', ['10.1.0.3:5353']],
  ]);
});

test('one endpoint in two slices naming different nodes (both ready) gives the same backend whatever order the slices arrive in: every edge, and one edge after a relist, computes the same', (t) => {
  const a = slice('a', 'slice-a', [['10.1.0.1', 'n2', { ready: true }]]);
  const b = slice('a', 'slice-b', [['10.1.0.1', 'n1', { ready: true }]]);
  const backends = (slices: V1EndpointSlice[]) => desiredForService(svc('a'), slices, nodes, config, alloc).services[0]!.backends;
  t.deepEqual(backends([a, b]), backends([b, a]));
  t.is(backends([b, a])[0]!.nodeName, 'n2', 'the slice first by name');
});

test('a node whose IPv6 address is IPv4-mapped (never on the wire: a host\'s notation for an IPv4 peer) is not a next hop', (t) => {
  const mapped = new Map<string, NodeAddresses>([...nodes, ['mapped', { v4: '10.0.0.9', v6: '::ffff:c000:214' }]]);
  const v6: [string, string, Cond][] = [['fd00::10', 'n2', { ready: true }], ['fd00::11', 'mapped', { ready: true }]];
  const d6 = desiredForService(svc('a'), [slice('a', 's6', v6, undefined, 'IPv6')], mapped, config, [{ ip: '2001:db8::1', pool: 'p' }]);
  t.deepEqual(d6.services[0]!.backends.map((b) => b.ip), ['fd00::10']);
  t.deepEqual(d6.problems.map((p) => p.message), ['endpoint fd00::11 is not used: the address ::ffff:c000:214 of its node mapped is IPv4-mapped IPv6 (::ffff:0:0/96), not a node\'s address']);
});
