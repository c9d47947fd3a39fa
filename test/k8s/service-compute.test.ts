// One Service's round computed without the API server (service-compute.ts is
// pure given its context): what a Service edgelb cannot serve at any port
// does to the allocator, on the allocating edge and on a follower.
import test from 'ava';
import type { V1Service, V1ServicePort } from '@kubernetes/client-node';
import { IpAllocator } from '../../src/ipam/allocator.js';
import { computeService, type ComputeContext, type SvcState } from '../../src/k8s/service-compute.js';
import { FrontendClaims } from '../../src/k8s/claims.js';
import { serviceKey } from '../../src/model/service.js';
import { testConfig } from './helpers.js';

/** A pool of one address: whoever holds it, nobody else gets one. */
const config = testConfig([{ cidrs: ['192.0.2.7/32'] }]);

function context(ipam: IpAllocator | null): ComputeContext {
  return { config, ipam, claims: new FrontendClaims(), live: () => true, slicesOf: () => [], nodeAddrs: new Map() };
}

function svc(name: string, ports: V1ServicePort[], extra: { loadBalancerIP?: string; annotations?: Record<string, string>; ingress?: string[]; uid?: string } = {}): V1Service {
  return {
    metadata: { namespace: 'ns', name, annotations: extra.annotations ?? {}, ...(extra.uid ? { uid: extra.uid } : {}) },
    spec: { type: 'LoadBalancer', ports, ...(extra.loadBalancerIP ? { loadBalancerIP: extra.loadBalancerIP } : {}) },
    status: { loadBalancer: { ingress: (extra.ingress ?? []).map((ip) => ({ ip })) } },
  };
}

const SCTP: V1ServicePort[] = [{ name: 'sig', port: 3868, protocol: 'SCTP' }, { name: 'sig2', port: 3869, protocol: 'SCTP' }];
const TCP: V1ServicePort[] = [{ name: 'http', port: 80, protocol: 'TCP' }];

function compute(ctx: ComputeContext, s: V1Service, prev?: SvcState) {
  return computeService(ctx, serviceKey(s), s, prev);
}

test('a Service with only SCTP ports takes no pool address: no frontend, one reason; the next TCP Service gets the only address', (t) => {
  const ipam = new IpAllocator(config.pools);
  const ctx = context(ipam);
  const c = compute(ctx, svc('sig', SCTP));
  t.deepEqual(c.st.addresses, []);
  t.deepEqual(c.items, []);
  t.is(c.st.failure?.reason, 'UnsupportedProtocol');
  t.regex(c.st.failure!.message, /ns\/sig has no TCP or UDP port \(3868\/SCTP, 3869\/SCTP\).*no address is allocated or announced/);
  // The refusal is the one Warning: no per-port repeat of it.
  t.deepEqual(c.problems, []);
  t.is(ipam.assignmentOf('ns/sig'), undefined);
  const web = compute(ctx, svc('web', TCP));
  t.deepEqual(web.st.addresses, [{ ip: '192.0.2.7', pool: 'pool0' }]);
  t.is(web.st.failure, null);
});

test('an SCTP-only Service does not hold an address it requests (spec.loadBalancerIP or edgelb.io/loadBalancerIPs)', (t) => {
  const ipam = new IpAllocator(config.pools);
  const ctx = context(ipam);
  for (const s of [svc('asks', SCTP, { loadBalancerIP: '192.0.2.7' }), svc('annotated', SCTP, { annotations: { 'edgelb.io/loadBalancerIPs': '192.0.2.7' } })]) {
    const c = compute(ctx, s);
    t.deepEqual(c.st.addresses, []);
    t.is(c.st.failure?.reason, 'UnsupportedProtocol');
    t.deepEqual(ipam.usersOf('192.0.2.7'), []);
  }
  t.deepEqual(compute(ctx, svc('web', TCP, { loadBalancerIP: '192.0.2.7' })).st.addresses.map((a) => a.ip), ['192.0.2.7']);
});

test('edited to SCTP only, a Service releases its address (another takes it); edited back to TCP it gets one as usual', (t) => {
  const ipam = new IpAllocator(config.pools);
  const ctx = context(ipam);
  const served = compute(ctx, svc('flip', TCP));
  t.deepEqual(served.st.addresses.map((a) => a.ip), ['192.0.2.7']);
  t.is(served.items.length, 1);
  const edited = compute(ctx, svc('flip', SCTP, { ingress: ['192.0.2.7'] }), served.st);
  t.deepEqual(edited.st.addresses, []);
  t.deepEqual(edited.items, []);
  t.is(edited.st.failure?.reason, 'UnsupportedProtocol');
  t.is(ipam.assignmentOf('ns/flip'), undefined);
  t.deepEqual(compute(ctx, svc('other', TCP)).st.addresses.map((a) => a.ip), ['192.0.2.7']);
  ipam.release('ns/other');
  const back = compute(ctx, svc('flip', [...SCTP, ...TCP]), edited.st);
  t.deepEqual(back.st.addresses.map((a) => a.ip), ['192.0.2.7']);
  t.is(back.st.failure, null);
});

test('a follower takes no address for an SCTP-only Service, even while its status still shows one', (t) => {
  const ctx = context(null);
  const before = compute(ctx, svc('flip', TCP, { ingress: ['192.0.2.7'] }));
  t.deepEqual(before.st.addresses.map((a) => a.ip), ['192.0.2.7']);
  const after = compute(ctx, svc('flip', SCTP, { ingress: ['192.0.2.7'] }), before.st);
  t.deepEqual(after.st.addresses, []);
  t.deepEqual(after.items, []);
});

test('a mixed Service (TCP and SCTP) keeps its address; TCP is served and the SCTP port named in a Warning', (t) => {
  const ipam = new IpAllocator(config.pools);
  const c = compute(context(ipam), svc('mixed', [...TCP, ...SCTP]));
  t.deepEqual(c.st.addresses.map((a) => a.ip), ['192.0.2.7']);
  t.deepEqual(c.items.map((i) => i.fk), ['192.0.2.7:80/TCP']);
  t.is(c.st.failure, null);
  t.deepEqual(c.problems.map((p) => p.reason), ['UnsupportedProtocol', 'UnsupportedProtocol']);
});

test('a follower keeps what it held while status shows no address it may take, only as far as its pools still admit it', (t) => {
  const ctx = context(null);
  const held = compute(ctx, svc('web', TCP, { ingress: ['192.0.2.7'] }));
  // Status emptied (the leader lost its Lease before its write landed): kept.
  t.deepEqual(compute(ctx, svc('web', TCP), held.st).st.addresses.map((a) => a.ip), ['192.0.2.7']);
  // A reload took the pool away: not kept, whether status is empty or still shows the address.
  const reloaded: ComputeContext = { ...ctx, config: testConfig([{ cidrs: ['198.51.100.0/28'] }]) };
  t.deepEqual(compute(reloaded, svc('web', TCP), held.st).st.addresses, []);
  t.deepEqual(compute(reloaded, svc('web', TCP, { ingress: ['192.0.2.7'] }), held.st).st.addresses, []);
  // The pool renamed: kept under its new name (the VIP takes that pool's BGP attributes).
  const renamed: ComputeContext = { ...ctx, config: { ...config, pools: config.pools.map((p) => ({ ...p, name: 'renamed' })) } };
  t.deepEqual(compute(renamed, svc('web', TCP), held.st).st.addresses, [{ ip: '192.0.2.7', pool: 'renamed' }]);
});

test('deleted and created again under its name (a new uid) before the allocating edge computed the deletion: the new Service does not inherit the address, and the Service that asked for it gets it', (t) => {
  const ipam = new IpAllocator(config.pools);
  const ctx = context(ipam);
  const one = compute(ctx, svc('one', TCP, { uid: 'u1', loadBalancerIP: '192.0.2.7' }));
  t.deepEqual(one.st.addresses.map((a) => a.ip), ['192.0.2.7']);
  const two = svc('two', TCP, { uid: 'u2', loadBalancerIP: '192.0.2.7' });
  t.is(compute(ctx, two).st.failure?.reason, 'SharingConflict');
  const again = compute(ctx, svc('one', TCP, { uid: 'u1-again' }), one.st);
  t.deepEqual(again.st.addresses, [], 'the recreated Service kept the deleted one\'s address');
  t.is(again.st.failure?.reason, 'AddressesReserved');
  t.deepEqual(compute(ctx, two).st.addresses.map((a) => a.ip), ['192.0.2.7']);
});

test('a follower does not carry a deleted Service\'s addresses over to one created again under its name (a new uid) while its status is still empty', (t) => {
  const ctx = context(null);
  const held = compute(ctx, svc('web', TCP, { uid: 'u1', ingress: ['192.0.2.7'] }));
  held.st.advertised = true;
  t.deepEqual(compute(ctx, svc('web', TCP, { uid: 'u1' }), held.st).st.addresses.map((a) => a.ip), ['192.0.2.7'], 'the same object keeps them');
  const again = compute(ctx, svc('web', TCP, { uid: 'u2' }), held.st);
  t.deepEqual(again.st.addresses, [], 'the new object took the old one\'s addresses');
  t.false(again.st.advertised, 'nor what was reported of it');
});
