import test from 'ava';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NO_ATTRS, buildPath, type DesiredVip } from '../../src/bgp/attributes.js';
import { compareAdjOut, desiredPaths, diffPaths, expectedAdjOut, localPaths } from '../../src/bgp/path-reconciler.js';
import { desiredPeers, diffPeers, needsRecreate, peerSpecFromApi, peerSpecToApi, readPasswordFile, type PeerSpec } from '../../src/bgp/peer-reconciler.js';
import { buildPolicy, peerGroups } from '../../src/bgp/policy.js';
import { drainPlan, nextDrainState } from '../../src/bgp/drain.js';
import { defaultPeer } from '../lib/gobgpd.js';

const spec = (address: string, over: Partial<PeerSpec> = {}): PeerSpec => ({
  address,
  asn: 65000,
  localAsn: 65001,
  localAddress: '',
  password: '',
  holdTime: 9,
  keepalive: 3,
  multihop: 0,
  passive: false,
  gracefulRestart: false,
  restartTime: 0,
  ...over,
});

test('peer diff touches only the changed peer', (t) => {
  const actual = [spec('10.0.0.1'), spec('10.0.0.2'), spec('10.0.0.3')];
  const desired = [spec('10.0.0.1'), spec('10.0.0.2', { holdTime: 30, keepalive: 10 }), spec('10.0.0.4')];
  const d = diffPeers(desired, actual);
  t.deepEqual(d.add.map((p) => p.address), ['10.0.0.4']);
  t.deepEqual(d.update.map((p) => p.address), ['10.0.0.2']);
  t.deepEqual(d.delete, ['10.0.0.3']);
  t.deepEqual(diffPeers(actual, actual), { add: [], update: [], delete: [] });
});

test('an unset local address matches the one gobgpd reports after connecting', (t) => {
  const d = diffPeers([spec('10.0.0.1')], [spec('10.0.0.1', { localAddress: '10.0.0.10' })]);
  t.is(d.update.length, 0);
  t.is(diffPeers([spec('10.0.0.1', { localAddress: '10.0.0.11' })], [spec('10.0.0.1', { localAddress: '10.0.0.10' })]).update.length, 1);
});

test('password/ASN changes re-create the peer; timer changes update it', (t) => {
  t.true(needsRecreate(spec('a', { password: 'x' }), spec('a')));
  t.true(needsRecreate(spec('a', { asn: 1 }), spec('a')));
  t.false(needsRecreate(spec('a', { holdTime: 30 }), spec('a')));
});

test('PeerConfig → API → spec round-trips every field we set', (t) => {
  const s = desiredPeers(
    [defaultPeer('10.0.0.1', { multihop: 4, passive: true, localAddress: '10.0.0.9', passwordFile: '/pw', gracefulRestart: { enabled: true, restartTime: 90 } })],
    65001,
    () => 'secret',
  )[0]!;
  t.is(s.password, 'secret');
  const api = peerSpecToApi(s);
  t.deepEqual(api.ebgp_multihop, { enabled: true, multihop_ttl: 4 });
  t.true(api.transport?.passive_mode);
  t.truthy(api.afi_safis?.[0]?.mp_graceful_restart);
  t.deepEqual(peerSpecFromApi(api), s);
});

test('duplicate peers and unreadable/world-readable password files are refused', (t) => {
  t.throws(() => desiredPeers([defaultPeer('10.0.0.1'), defaultPeer('10.0.0.1')], 1), { message: /bgp\.peers\[1\].*duplicate/ });
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-pw-'));
  try {
    const f = join(dir, 'pw');
    writeFileSync(f, 'hunter2\n', { mode: 0o644 });
    t.throws(() => readPasswordFile(f, 'bgp.peers[0]'), { message: /world-readable/ });
    writeFileSync(join(dir, 'ok'), 'hunter2\n', { mode: 0o600 });
    t.is(readPasswordFile(join(dir, 'ok'), 'x'), 'hunter2');
    t.throws(() => readPasswordFile(join(dir, 'missing'), 'bgp.peers[2]'), { message: /bgp\.peers\[2\]: passwordFile/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const vip = (prefix: string, attrs = NO_ATTRS): DesiredVip => ({ prefix, attrs });

test('path diff: add new, replace changed, withdraw extra, keep equal', (t) => {
  const opts = { localAsn: 65001 };
  const actual = desiredPaths([vip('10.0.0.1'), vip('10.0.0.2'), vip('10.0.0.3')], opts);
  const desired = desiredPaths([vip('10.0.0.1/32'), vip('10.0.0.2', { ...NO_ATTRS, med: 5 }), vip('10.0.0.4')], opts);
  const d = diffPaths(desired, actual);
  t.is(d.unchanged, 1);
  t.deepEqual(d.add.map((p) => String(p.nlri['prefix'])).sort(), ['10.0.0.2', '10.0.0.4']);
  t.deepEqual(d.delete.map((p) => String(p.nlri['prefix'])), ['10.0.0.3']);
  t.throws(() => desiredPaths([vip('10.0.0.1'), vip('10.0.0.1/32')], opts), { message: /twice/ });
});

test('localPaths keeps only our (local) paths from a ListPath answer', (t) => {
  const ours = buildPath(vip('10.0.0.1'), { localAsn: 1 });
  const theirs = { ...buildPath(vip('10.0.0.2'), { localAsn: 1 }), neighbor_ip: '10.9.9.9' };
  const m = localPaths([
    { prefix: '10.0.0.1/32', paths: [{ ...ours, neighbor_ip: '<nil>' }] },
    { prefix: '10.0.0.2/32', paths: [theirs] },
  ]);
  t.deepEqual([...m.keys()], ['10.0.0.1/32']);
});

test('expected adj-out honours peer subsets and address family; compare finds each kind of drift', (t) => {
  const opts = { localAsn: 65001 };
  const vips = [vip('10.0.0.1', { ...NO_ATTRS, communities: ['1:1'] }), vip('10.0.0.2', { ...NO_ATTRS, peers: ['10.9.0.2'] }), vip('2001:db8::1')];
  const e1 = expectedAdjOut(vips, '10.9.0.1', opts);
  t.deepEqual([...e1.keys()], ['10.0.0.1/32']);
  const e2 = expectedAdjOut(vips, '10.9.0.2', opts);
  t.deepEqual([...e2.keys()].sort(), ['10.0.0.1/32', '10.0.0.2/32']);
  t.is(e2.get('10.0.0.2/32')!.largeCommunities.length, 0, 'mark is stripped on export');
  t.is(compareAdjOut('p', e2, e2), null);
  const actual = new Map(e2);
  actual.delete('10.0.0.2/32');
  actual.set('10.0.0.1/32', { ...e2.get('10.0.0.1/32')!, communities: [] });
  actual.set('10.0.0.7/32', e2.get('10.0.0.1/32')!);
  t.deepEqual(compareAdjOut('p', e2, actual), { peer: 'p', missing: ['10.0.0.2/32'], unexpected: ['10.0.0.7/32'], differing: ['10.0.0.1/32'] });
});

test('policy: one allow statement per peer group, then deny-marked, accept-local; default reject both ways', (t) => {
  const groups = peerGroups([[], ['10.0.0.2', '10.0.0.1'], ['10.0.0.1', '10.0.0.2'], ['10.0.0.3']]);
  t.is(groups.length, 2);
  const p = buildPolicy(65001, groups);
  const exp = p.policies.find((x) => x.name === 'edgelb-export')!;
  t.is(exp.statements.length, 4);
  t.is(exp.statements.at(-2)!.name, 'edgelb-deny-marked');
  t.is(exp.statements.at(-1)!.conditions?.route_type, 'ROUTE_TYPE_LOCAL');
  t.true(p.assignments.every((a) => a.default_action === 'REJECT' && a.name === 'global'));
  const nset = p.definedSets.find((d) => d.defined_type === 'NEIGHBOR' && d.list?.includes('10.0.0.3/32'));
  t.truthy(nset);
});

test('drain state machine', (t) => {
  t.is(nextDrainState('active', 'drain'), 'draining');
  t.is(nextDrainState('draining', 'drain-timer'), 'drained');
  t.is(nextDrainState('active', 'drain-timer'), 'active');
  t.is(nextDrainState('drained', 'undrain'), 'active');
  t.deepEqual(drainPlan('draining'), { announce: true, gracefulShutdown: true });
  t.deepEqual(drainPlan('drained'), { announce: false, gracefulShutdown: false });
});
