import test from 'ava';
import type { PoolConfig } from '../../src/config/types.js';
import { IpAllocator, poolForAddress, type IpRequest } from '../../src/ipam/allocator.js';

const advertise = { communities: [], largeCommunities: [], localPref: null, med: null, asPathPrepend: 0, peers: [] };

function pool(name: string, cidrs: string[], extra: Partial<PoolConfig> = {}): PoolConfig {
  return { name, cidrs, namespaces: [], serviceSelector: {}, autoAssign: true, advertise, ...extra };
}

function req(key: string, extra: Partial<IpRequest> = {}): IpRequest {
  return {
    key,
    namespace: key.split('/')[0]!,
    labels: {},
    requested: [],
    sharingKey: null,
    ports: [{ port: 80, protocol: 'TCP' }],
    families: [],
    current: [],
    ...extra,
  };
}

function reasonOf(r: ReturnType<IpAllocator['assign']>): string | null {
  return r.ok ? null : r.reason;
}

function ips(r: ReturnType<IpAllocator['assign']>): string[] {
  if (!r.ok) throw new Error(`expected success, got ${r.reason}: ${r.message}`);
  return r.addresses.map((a) => a.ip);
}

test('auto-assigns lowest free address, skipping v4 network address', (t) => {
  const a = new IpAllocator([pool('p', ['192.0.2.0/30'])]);
  t.deepEqual(ips(a.assign(req('ns/a'))), ['192.0.2.1']);
  t.deepEqual(ips(a.assign(req('ns/b'))), ['192.0.2.2']);
  // .3 is the broadcast address of a /30: exhausted now.
  const r = a.assign(req('ns/c'));
  t.false(r.ok);
  if (!r.ok) t.is(r.reason, 'PoolExhausted');
  a.release('ns/a');
  t.deepEqual(ips(a.assign(req('ns/c'))), ['192.0.2.1']);
});

test('/31 and /32 use every address', (t) => {
  const a = new IpAllocator([pool('p', ['192.0.2.0/31', '198.51.100.9/32'])]);
  t.deepEqual(['a', 'b', 'c'].map((n) => ips(a.assign(req(`ns/${n}`)))[0]), ['192.0.2.0', '192.0.2.1', '198.51.100.9']);
  t.false(a.assign(req('ns/d')).ok);
});

test('IPv6 pool and family selection', (t) => {
  const a = new IpAllocator([pool('v4', ['192.0.2.0/24']), pool('v6', ['2001:db8::/64'])]);
  t.deepEqual(ips(a.assign(req('ns/a', { families: [6] }))), ['2001:db8::1']);
  t.deepEqual(ips(a.assign(req('ns/b', { families: [4, 6] }))), ['192.0.2.1', '2001:db8::2']);
  t.deepEqual(ips(a.assign(req('ns/c'))), ['192.0.2.2']);
  t.deepEqual(ips(a.assign(req('ns/d', { requested: ['2001:db8::ff'] }))), ['2001:db8::ff']);
});

test('PreferDualStack: an address of each listed family a pool has free; a family without one is skipped, not a failure', (t) => {
  const both = new IpAllocator([pool('v4', ['192.0.2.0/24']), pool('v6', ['2001:db8::/64'])]);
  t.deepEqual(ips(both.assign(req('ns/a', { families: [4], preferredFamilies: [6] }))), ['192.0.2.1', '2001:db8::1']);
  const v4only = new IpAllocator([pool('v4', ['192.0.2.0/24'])]);
  t.deepEqual(ips(v4only.assign(req('ns/a', { families: [4], preferredFamilies: [6] }))), ['192.0.2.1']);
  // RequireDualStack in the same cluster fails, naming the family.
  const r = v4only.assign(req('ns/b', { families: [4, 6] }));
  t.false(r.ok);
  if (!r.ok) t.regex(r.message, /no free IPv6 address/);
  // A kept address of the preferred family stays (restart stability).
  const again = new IpAllocator([pool('v4', ['192.0.2.0/24']), pool('v6', ['2001:db8::/64'])]);
  t.deepEqual(ips(again.assign(req('ns/a', { families: [4], preferredFamilies: [6], current: ['192.0.2.9', '2001:db8::9'] }))), ['192.0.2.9', '2001:db8::9']);
});

test('requested address inside an owned pool is honoured, outside is refused', (t) => {
  const a = new IpAllocator([pool('p', ['192.0.2.0/24'], { autoAssign: false })]);
  t.deepEqual(ips(a.assign(req('ns/a', { requested: ['192.0.2.50'] }))), ['192.0.2.50']);
  const out = a.assign(req('ns/b', { requested: ['203.0.113.1'] }));
  t.deepEqual(out.ok ? null : out.reason, 'RequestRefused');
  const bad = a.assign(req('ns/c', { requested: ['not-an-ip'] }));
  t.deepEqual(bad.ok ? null : bad.reason, 'InvalidRequest');
  // Auto-assign is off for this pool: nothing to allocate from.
  const none = a.assign(req('ns/d'));
  t.deepEqual(none.ok ? null : none.reason, 'NoPool');
  t.deepEqual(a.usersOf('192.0.2.50'), ['ns/a']);
  t.is(a.assignmentOf('ns/b'), undefined);
});

test('namespace and label selectors restrict pools, also for requests', (t) => {
  const a = new IpAllocator([
    pool('team', ['10.0.0.0/24'], { namespaces: ['team'], serviceSelector: { tier: 'web' } }),
    pool('rest', ['10.1.0.0/24']),
  ]);
  t.deepEqual(ips(a.assign(req('team/a', { labels: { tier: 'web' } }))), ['10.0.0.1']);
  t.deepEqual(ips(a.assign(req('team/b', { labels: { tier: 'db' } }))), ['10.1.0.1']);
  t.deepEqual(ips(a.assign(req('other/c', { labels: { tier: 'web' } }))), ['10.1.0.2']);
  const refused = a.assign(req('other/d', { requested: ['10.0.0.9'] }));
  t.false(refused.ok);
  if (!refused.ok) {
    t.is(refused.reason, 'RequestRefused');
    t.regex(refused.message, /pool team/);
  }
  t.deepEqual(poolForAddress([pool('team', ['10.0.0.0/24'], { namespaces: ['team'] })], '10.0.0.9', 'other', {}), null);
  t.is(poolForAddress([pool('team', ['10.0.0.0/24'], { namespaces: ['team'] })], '10.0.0.9', 'team', {})?.name, 'team');
});

test('sharing: same key and disjoint ports share, clashes and foreign keys do not', (t) => {
  const a = new IpAllocator([pool('p', ['192.0.2.0/24'])]);
  const first = ips(a.assign(req('ns/dns-tcp', { sharingKey: 'dns', ports: [{ port: 53, protocol: 'TCP' }] })));
  // Auto-assign joins the existing shared address.
  t.deepEqual(ips(a.assign(req('ns/dns-udp', { sharingKey: 'dns', ports: [{ port: 53, protocol: 'UDP' }] }))), first);
  t.deepEqual(a.usersOf(first[0]!).sort(), ['ns/dns-tcp', 'ns/dns-udp']);
  // Same key, clashing port: gets its own address.
  t.notDeepEqual(ips(a.assign(req('ns/dns-tcp2', { sharingKey: 'dns', ports: [{ port: 53, protocol: 'TCP' }] }))), first);
  // Explicit request of the shared address with a clash or a different key is refused.
  const clash = a.assign(req('ns/x', { sharingKey: 'dns', requested: first, ports: [{ port: 53, protocol: 'udp' }] }));
  t.is(clash.ok ? null : clash.reason, 'SharingConflict');
  const foreign = a.assign(req('ns/y', { sharingKey: 'other', requested: first, ports: [{ port: 80, protocol: 'TCP' }] }));
  t.is(foreign.ok ? null : foreign.reason, 'SharingConflict');
  const noKey = a.assign(req('ns/z', { requested: first, ports: [{ port: 81, protocol: 'TCP' }] }));
  t.is(noKey.ok ? null : noKey.reason, 'SharingConflict');
  // Releasing one user keeps the address for the other.
  a.release('ns/dns-tcp');
  t.deepEqual(a.usersOf(first[0]!), ['ns/dns-udp']);
});

test('sharing across namespaces needs an opt-in on both Services; a key alone does not let one tenant join another\'s address', (t) => {
  const a = new IpAllocator([pool('p', ['192.0.2.0/24'])]);
  const mine = ips(a.assign(req('team-a/web', { sharingKey: 'k', ports: [{ port: 80, protocol: 'TCP' }] })));
  // Another namespace, same key: not joined; asking for the address outright is refused, naming the opt-in.
  t.notDeepEqual(ips(a.assign(req('team-b/intruder', { sharingKey: 'k', ports: [{ port: 443, protocol: 'TCP' }] }))), mine);
  const asked = a.assign(req('team-b/asks', { sharingKey: 'k', requested: mine, ports: [{ port: 8443, protocol: 'TCP' }] }));
  t.false(asked.ok);
  if (!asked.ok) {
    t.is(asked.reason, 'SharingConflict');
    t.regex(asked.message, /team-a\/web in namespace team-a .*edgelb\.io\/allow-shared-ip-namespaces/);
  }
  // One side opting in is not enough.
  const oneSided = a.assign(req('team-b/one', { sharingKey: 'k', shareWithNamespaces: ['team-a'], requested: mine, ports: [{ port: 8444, protocol: 'TCP' }] }));
  t.false(oneSided.ok);
  // Both sides: shared.
  const b = new IpAllocator([pool('p', ['192.0.2.0/24'])]);
  const first = ips(b.assign(req('team-a/web', { sharingKey: 'k', shareWithNamespaces: ['team-b'], ports: [{ port: 80, protocol: 'TCP' }] })));
  t.deepEqual(ips(b.assign(req('team-b/api', { sharingKey: 'k', shareWithNamespaces: '*', ports: [{ port: 443, protocol: 'TCP' }] }))), first);
  t.deepEqual(b.usersOf(first[0]!).sort(), ['team-a/web', 'team-b/api']);
  // A third namespace the first did not name stays out.
  t.notDeepEqual(ips(b.assign(req('team-c/x', { sharingKey: 'k', shareWithNamespaces: '*', ports: [{ port: 8080, protocol: 'TCP' }] }))), first);
});

test('restart stability: replaying status keeps every address, even out of order of allocation', (t) => {
  const pools = [pool('p', ['192.0.2.0/24', '2001:db8::/120'])];
  const a = new IpAllocator(pools);
  const keys = Array.from({ length: 20 }, (_, i) => `ns/s${i}`);
  const before = new Map(keys.map((k, i) => [k, ips(a.assign(req(k, { families: i % 3 === 0 ? [6] : [] })))]));
  for (const k of keys.filter((_, i) => i % 4 === 0)) a.release(k);
  const after = new Map(keys.filter((_, i) => i % 4 !== 0).map((k) => [k, before.get(k)!]));
  // New process: replay in reverse order from "status".
  const b = new IpAllocator(pools);
  for (const [k, cur] of [...after].reverse()) {
    t.deepEqual(ips(b.assign(req(k, { current: cur, families: cur[0]!.includes(':') ? [6] : [] }))), cur);
  }
  // A freed address is reused, nothing held is handed out twice.
  const fresh = ips(b.assign(req('ns/new')))[0]!;
  t.false([...after.values()].flat().includes(fresh));
  // Re-assigning an unchanged Service is a no-op.
  const [k0, cur0] = [...after][0]!;
  t.deepEqual(ips(b.assign(req(k0, { current: cur0 }))), cur0);
});

test('a status address outside the pools or taken by an older Service is replaced', (t) => {
  const a = new IpAllocator([pool('p', ['192.0.2.0/29'])]);
  t.deepEqual(ips(a.assign(req('ns/old', { current: ['192.0.2.3'] }))), ['192.0.2.3']);
  t.deepEqual(ips(a.assign(req('ns/dup', { current: ['192.0.2.3'] }))), ['192.0.2.1']);
  t.deepEqual(ips(a.assign(req('ns/foreign', { current: ['203.0.113.7'] }))), ['192.0.2.2']);
});

test('exhaustion of a large pool is reported, not looped over', (t) => {
  const a = new IpAllocator([pool('p', ['10.0.0.0/22'])]);
  let ok = 0;
  for (let i = 0; i < 1100; i++) if (a.assign(req(`ns/s${i}`)).ok) ok++;
  t.is(ok, 1022);
  const r = a.assign(req('ns/more'));
  t.is(r.ok ? null : r.reason, 'PoolExhausted');
  t.deepEqual(a.stats(), [{ pool: 'p', used: 1022, size: 1022n }]);
});

test('takeLoosened: set when a holder lets go of an address or changes its ports, sharing key or namespaces; not when it keeps its terms or takes one', (t) => {
  const a = new IpAllocator([pool('p', ['192.0.2.0/29'])]);
  const holder = (extra: Partial<IpRequest> = {}) => req('ns/h', { requested: ['192.0.2.3'], sharingKey: 'k1', ...extra });
  t.deepEqual(ips(a.assign(holder())), ['192.0.2.3']);
  t.false(a.takeLoosened(), 'taking an address frees nothing');
  t.deepEqual(ips(a.assign(holder())), ['192.0.2.3']);
  t.false(a.takeLoosened(), 'the same terms again');
  // Waiting: the same key on the same port clashes.
  t.false(a.assign(req('ns/w', { requested: ['192.0.2.3'], sharingKey: 'k1' })).ok);
  t.false(a.takeLoosened(), 'a refusal frees nothing');
  a.assign(holder({ ports: [{ port: 8080, protocol: 'TCP' }] }));
  t.true(a.takeLoosened(), 'other ports');
  t.false(a.takeLoosened(), 'taken once');
  t.deepEqual(ips(a.assign(req('ns/w', { requested: ['192.0.2.3'], sharingKey: 'k1' }))), ['192.0.2.3'], 'the waiting Service fits now');
  a.assign(holder({ ports: [{ port: 8080, protocol: 'TCP' }], shareWithNamespaces: ['other'] }));
  t.true(a.takeLoosened(), 'other namespaces');
  a.release('ns/w');
  t.true(a.takeLoosened(), 'released');
  a.release('ns/w');
  t.false(a.takeLoosened(), 'releasing what is not held');
  a.assign(holder({ sharingKey: 'k2', ports: [{ port: 8080, protocol: 'TCP' }], shareWithNamespaces: ['other'] }));
  t.true(a.takeLoosened(), 'another sharing key');
  a.assign(holder({ requested: ['192.0.2.4'], sharingKey: 'k2', ports: [{ port: 8080, protocol: 'TCP' }], shareWithNamespaces: ['other'] }));
  t.true(a.takeLoosened(), 'another address: the old one is free');
});

test('a Service object with a new uid is a new Service: what the old object held under its name is released before it is decided, not kept as its previous address', (t) => {
  const a = new IpAllocator([pool('p', ['192.0.2.0/29'])]);
  t.deepEqual(ips(a.assign(req('ns/a', { uid: 'ua' }))), ['192.0.2.1']);
  t.deepEqual(ips(a.assign(req('ns/b', { uid: 'ub' }))), ['192.0.2.2']);
  t.deepEqual(ips(a.assign(req('ns/one', { uid: 'u1', requested: ['192.0.2.3'] }))), ['192.0.2.3']);
  const two = req('ns/two', { uid: 'u2', requested: ['192.0.2.3'] });
  t.is(reasonOf(a.assign(two)), 'SharingConflict');
  t.false(a.takeLoosened());
  // `one` deleted and created again under its name, asking for nothing,
  // before the controller computed the deletion: a new uid.
  t.deepEqual(ips(a.assign(req('ns/one', { uid: 'u1-again' }))), ['192.0.2.4'], 'the recreated Service kept the old object\'s address (or took the one ns/two waits for)');
  t.true(a.takeLoosened(), 'the old object\'s address is free: the Service waiting for it is decided again');
  t.deepEqual(ips(a.assign(two)), ['192.0.2.3']);
  // The same object decided again keeps its address; one replayed from status (restore) as well.
  t.deepEqual(ips(a.assign(req('ns/one', { uid: 'u1-again' }))), ['192.0.2.4']);
  t.deepEqual(ips(a.assign(req('ns/one', { uid: 'u1-again', current: ['192.0.2.4'] }))), ['192.0.2.4']);
  t.false(a.takeLoosened());
});

test('an address a waiting Service requested is not auto-assigned to another while the request stands; it stops being reserved when the requester goes or asks for another', (t) => {
  const a = new IpAllocator([pool('p', ['192.0.2.0/29'])]);
  t.deepEqual(ips(a.assign(req('ns/h', { requested: ['192.0.2.1'] }))), ['192.0.2.1']);
  const w = req('ns/w', { requested: ['192.0.2.1'] });
  t.is(reasonOf(a.assign(w)), 'SharingConflict');
  // The holder goes; in the same round an automatic Service is decided before the waiting one is retried.
  a.release('ns/h');
  t.deepEqual(ips(a.assign(req('ns/x'))), ['192.0.2.2'], 'auto-assignment took the address ns/w requested');
  t.deepEqual(ips(a.assign(req('ns/x', { current: ['192.0.2.1'] }))), ['192.0.2.2'], 'nor from a status that shows it');
  t.deepEqual(ips(a.assign(w)), ['192.0.2.1'], 'the requester gets it once free');

  // A requester that goes (deleted, or no longer of our class: released) reserves nothing.
  t.is(reasonOf(a.assign(req('ns/w2', { requested: ['192.0.2.1'] }))), 'SharingConflict');
  a.release('ns/w');
  t.deepEqual(ips(a.assign(req('ns/y'))), ['192.0.2.3'], 'ns/w2 waits for .1');
  a.takeLoosened();
  a.release('ns/w2');
  t.true(a.takeLoosened(), 'a free address no longer reserved: Services refused for exhaustion are worth deciding again');
  t.deepEqual(ips(a.assign(req('ns/z'))), ['192.0.2.1']);

  // An edited request reserves what it asks for now, not what it asked before.
  t.is(reasonOf(a.assign(req('ns/e', { requested: ['192.0.2.1'] }))), 'SharingConflict');
  a.release('ns/z');
  a.takeLoosened();
  t.deepEqual(ips(a.assign(req('ns/e', { requested: ['192.0.2.6'] }))), ['192.0.2.6']);
  t.true(a.takeLoosened(), '.1 is free for anyone again');
  t.deepEqual(ips(a.assign(req('ns/v'))), ['192.0.2.1']);
});

test('a Service refused only because the free addresses are reserved for Services waiting for them is told so; a waiting Service refused again loosens nothing', (t) => {
  const a = new IpAllocator([pool('p', ['192.0.2.0/30'])]);
  t.deepEqual(ips(a.assign(req('ns/h', { requested: ['192.0.2.1'] }))), ['192.0.2.1']);
  t.deepEqual(ips(a.assign(req('ns/b'))), ['192.0.2.2']);
  const w = req('ns/w', { requested: ['192.0.2.1'] });
  for (let i = 0; i < 2; i++) {
    t.is(reasonOf(a.assign(w)), 'SharingConflict');
    t.false(a.takeLoosened(), 'decided again and refused again: nothing changed (no retry loop)');
  }
  a.release('ns/h');
  t.true(a.takeLoosened());
  const c = a.assign(req('ns/c'));
  t.deepEqual(c, { ok: false, reason: 'AddressesReserved', message: 'no free address in pool(s) p but 192.0.2.1, requested by ns/w, which waits for it' });
  t.false(a.takeLoosened());
  // Edited to a request that cannot be met (outside every pool): it reserves nothing any more.
  t.is(reasonOf(a.assign(req('ns/w', { requested: ['203.0.113.1'] }))), 'RequestRefused');
  t.true(a.takeLoosened(), '.1 is free for anyone again');
  t.deepEqual(ips(a.assign(req('ns/c'))), ['192.0.2.1']);
});
