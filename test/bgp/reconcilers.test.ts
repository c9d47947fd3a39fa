import test from 'ava';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NO_ATTRS, buildPath, type DesiredVip } from '../../src/bgp/attributes.js';
import { compareAdjOut, desiredPaths, diffPaths, expectedAdjOut, localPaths, vipsWithoutPeer } from '../../src/bgp/path-reconciler.js';
import { parseConfig, ConfigError } from '../../src/config/load.js';
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

test('a password file the config check accepts is sent as written: line endings dropped, at most 80 bytes (TCP-MD5), one line', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-pw-'));
  try {
    const cases: [string, string | RegExp][] = [
      ['hunter2\n', 'hunter2'],
      ['hunter2\r\n', 'hunter2'],
      ['hunter2\n\n', 'hunter2'], // an editor's trailing blank line
      ['pass word', 'pass word'],
      ['ü'.repeat(40), 'ü'.repeat(40)], // 80 bytes
      ['ü'.repeat(41), /80 bytes/], // 41 characters, 82 bytes
      ['line1\nline2\n', /one line/],
      ['\n\n', /empty/],
    ];
    cases.forEach(([text, want], i) => {
      const f = join(dir, `pw${i}`);
      writeFileSync(f, text, { mode: 0o600 });
      const config = `node: {routerId: 10.0.0.1, asn: 1, uplink: e0}\nbgp: {peers: [{address: 10.0.0.2, asn: 2, passwordFile: "${f}"}]}\n`;
      if (typeof want === 'string') {
        t.notThrows(() => parseConfig(config, 'x'), JSON.stringify(text));
        t.is(readPasswordFile(f, 'bgp.peers[0]'), want, JSON.stringify(text));
      } else {
        const err = t.throws(() => parseConfig(config, 'x'), { instanceOf: ConfigError }, JSON.stringify(text)) as ConfigError;
        t.regex(err?.message ?? '', want, JSON.stringify(text));
        t.throws(() => readPasswordFile(f, 'bgp.peers[0]'), { message: want }, JSON.stringify(text));
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('family selection: an IPv4 peer negotiates IPv4 unicast only, an IPv6 peer IPv6 unicast only', (t) => {
  const [v4, v6] = desiredPeers([defaultPeer('10.0.0.1'), defaultPeer('2001:db8::1', { gracefulRestart: { enabled: true, restartTime: 60 } })], 65001);
  t.deepEqual(peerSpecToApi(v4!).afi_safis?.map((a) => a.config.family), [{ afi: 'AFI_IP', safi: 'SAFI_UNICAST' }]);
  const api6 = peerSpecToApi(v6!);
  t.deepEqual(api6.afi_safis?.map((a) => a.config.family), [{ afi: 'AFI_IP6', safi: 'SAFI_UNICAST' }]);
  t.truthy(api6.afi_safis?.[0]?.mp_graceful_restart, 'graceful restart for the IPv6 family');
});

test('IPv6 peers are kept canonical, so gobgpd\'s copy matches however the config spells them', (t) => {
  const [s] = desiredPeers([defaultPeer('2001:DB8:0:0::1', { localAddress: '2001:db8:0::a' })], 65001);
  t.is(s!.address, '2001:db8::1');
  t.is(s!.localAddress, '2001:db8::a');
  // gobgpd answers ListPeer with the address as it was added: canonical.
  t.deepEqual(diffPeers([s!], [peerSpecFromApi(peerSpecToApi(s!))]), { add: [], update: [], delete: [] });
  t.throws(() => desiredPeers([defaultPeer('2001:db8::1'), defaultPeer('2001:DB8::0:1')], 1), { message: /bgp\.peers\[1\].*duplicate/ });
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

test('expected adj-out per family: IPv6 VIPs for IPv6 peers only (restrictions included), IPv4 VIPs for IPv4 peers only', (t) => {
  const opts = { localAsn: 65001 };
  const vips = [
    vip('10.0.0.1'),
    vip('2001:db8::1', { ...NO_ATTRS, communities: ['1:6'] }),
    vip('2001:db8::2', { ...NO_ATTRS, peers: ['fd00::2'] }),
    // Restricted to an IPv4 peer: an IPv6 VIP then goes nowhere (config validation refuses such a pool).
    vip('2001:db8::3', { ...NO_ATTRS, peers: ['10.9.0.1'] }),
  ];
  t.deepEqual([...expectedAdjOut(vips, '10.9.0.1', opts).keys()], ['10.0.0.1/32']);
  t.deepEqual([...expectedAdjOut(vips, 'fd00::1', opts).keys()], ['2001:db8::1/128']);
  const e = expectedAdjOut(vips, 'fd00::2', opts);
  t.deepEqual([...e.keys()].sort(), ['2001:db8::1/128', '2001:db8::2/128']);
  t.deepEqual(e.get('2001:db8::1/128')!.communities, ['1:6']);
  t.deepEqual(e.get('2001:db8::2/128')!.largeCommunities, [], 'mark stripped on export');
});

test('family selection: VIPs that no peer of their family may carry are named', (t) => {
  const vips = [vip('10.0.0.1'), vip('2001:db8::1'), vip('2001:db8::2', { ...NO_ATTRS, peers: ['10.9.0.1'] }), vip('2001:db8::3', { ...NO_ATTRS, peers: ['fd00::1'] })];
  t.deepEqual(vipsWithoutPeer(vips, ['10.9.0.1']), ['2001:db8::1/128', '2001:db8::2/128', '2001:db8::3/128'], 'IPv4 sessions only');
  t.deepEqual(vipsWithoutPeer(vips, ['10.9.0.1', 'fd00::1']), ['2001:db8::2/128'], 'restricted to an IPv4 peer');
  t.deepEqual(vipsWithoutPeer(vips, ['fd00::1']), ['10.0.0.1/32', '2001:db8::2/128']);
  t.deepEqual(vipsWithoutPeer([], []), []);
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

test('policy: an IPv6 peer group is a neighbor set of /128 host prefixes, in any mix with IPv4 peers', (t) => {
  const groups = peerGroups([['fd00::2'], ['10.0.0.1', 'fd00::1']]);
  const p = buildPolicy(65001, groups);
  const sets = p.definedSets.filter((d) => d.defined_type === 'NEIGHBOR').map((d) => d.list);
  t.deepEqual(sets.map((l) => [...(l ?? [])].sort()).sort(), [['10.0.0.1/32', 'fd00::1/128'], ['fd00::2/128']]);
  t.is(p.policies.find((x) => x.name === 'edgelb-export')!.statements.length, 4);
});

test('drain state machine', (t) => {
  t.is(nextDrainState('active', 'drain'), 'draining');
  t.is(nextDrainState('draining', 'drain-timer'), 'drained');
  t.is(nextDrainState('active', 'drain-timer'), 'active');
  t.is(nextDrainState('drained', 'undrain'), 'active');
  t.deepEqual(drainPlan('draining'), { announce: true, gracefulShutdown: true });
  t.deepEqual(drainPlan('drained'), { announce: false, gracefulShutdown: false });
});
