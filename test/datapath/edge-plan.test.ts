// The edge planner without maps or root: what a change writes, what it
// frees, and how one frontend's failure stays its own.
import test from 'ava';
import { EdgePlanner, type EdgePlan, type PlannerLimits } from '../../src/datapath/edge-plan.js';
import { EDGE_MAP_LAYOUTS, EDGE_RING_PER_ELEM, edgeLayoutMismatches } from '../../src/datapath/edge-maps.js';
import type { DesiredService } from '../../src/model/types.js';
import { backend, service, VIP } from './edge-helpers.js';
import { freeSpace, moreRoom } from '../../src/k8s/sink.js';

const LIMITS: PlannerLimits = { ringSlots: 1 << 16, serviceIds: 64, backendIds: 256, maglevTableSize: 16381, autoDispatchDefault: 'ipip' };

function fe(port: number, over: Partial<DesiredService> = {}): DesiredService {
  return service({ service: `ns/s${port}`, frontend: { vip: VIP, port, protocol: 'TCP' }, ...over });
}

function writes(p: EdgePlan) {
  return { backends: p.backends.n, ring: p.ring.n, services: p.services.n, svcDeletes: p.svcDeletes.length, retiredBackends: p.retiredBackends.length, retiredRegions: p.retiredRegions.length };
}

test('a new frontend writes its backends, its region, its entry and the VIP marker; the same again writes nothing', (t) => {
  const pl = new EdgePlanner(LIMITS);
  const d = fe(80, { backends: [backend(1), backend(2)] });
  const { plan, result } = pl.plan([d]);
  t.deepEqual(result.added, [`${VIP}:80/TCP`]);
  // 2 backends; a 256-slot region (100 × 2 active → class 8) = 16 ring elements; marker + service entry.
  t.deepEqual(writes(plan), { backends: 2, ring: 256 / EDGE_RING_PER_ELEM, services: 2, svcDeletes: 0, retiredBackends: 0, retiredRegions: 0 });
  t.deepEqual(plan.newSvcIds, [1]);
  t.deepEqual(plan.newBeIds, [1, 2]);
  pl.commit(plan);
  const again = pl.plan([{ ...d, backends: d.backends.map((b) => ({ ...b })) }]);
  t.deepEqual(again.result.unchanged, [`${VIP}:80/TCP`]);
  t.deepEqual(writes(again.plan), { backends: 0, ring: 0, services: 0, svcDeletes: 0, retiredBackends: 0, retiredRegions: 0 });
});

test('a backend change writes only that backend and the slots that moved; removal retires everything, commit frees it', (t) => {
  const pl = new EdgePlanner(LIMITS);
  const bs = Array.from({ length: 10 }, (_, i) => backend(i + 1));
  pl.commit(pl.plan([fe(80, { backends: bs })]).plan);
  const slots = pl.capacity().ringSlots.used;
  const { plan } = pl.plan([fe(80, { backends: bs.slice(1) })]);
  t.is(plan.backends.n, 0, 'kept backends keep their entries');
  t.deepEqual(plan.retiredBackends, [1]);
  t.true(plan.ring.n > 0 && plan.ring.n < slots / EDGE_RING_PER_ELEM, `${plan.ring.n} ring elements rewritten`);
  pl.commit(plan);
  t.is(pl.capacity().backendIds.used, 9);
  const gone = pl.plan([], [`${VIP}:80/TCP`]);
  t.deepEqual(gone.result.removed, [`${VIP}:80/TCP`]);
  t.is(gone.plan.svcDeletes.length, 2, 'entry and VIP marker');
  t.is(gone.plan.retiredBackends.length, 9);
  t.is(pl.capacity().backendIds.used, 9, 'ids are released only at commit');
  pl.commit(gone.plan);
  t.like(pl.capacity(), { ringSlots: { used: 0 }, backendIds: { used: 0 }, serviceIds: { used: 0 } });
});

test('one frontend the datapath cannot serve is rejected with its reason; the others of the same change are planned', (t) => {
  const pl = new EdgePlanner(LIMITS);
  const { plan, result } = pl.plan([
    fe(80),
    fe(81, { sourceRanges: ['2001:db8::/32'] }),
    service({ service: 'ns/v6', frontend: { vip: '2001:db8::1', port: 80, protocol: 'TCP' } }),
    fe(82, { backends: [backend(1, { nodeIp: '' })] }),
    fe(83, { backends: [backend(1, { port: 0 })] }),
  ]);
  t.deepEqual(result.added, [`${VIP}:80/TCP`]);
  t.deepEqual(result.rejected.map((r) => [r.key, r.reason]), [
    [`${VIP}:81/TCP`, 'UnsupportedFamily'],
    ['[2001:db8::1]:80/TCP', 'UnsupportedFamily'],
    [`${VIP}:82/TCP`, 'InvalidFrontend'],
    [`${VIP}:83/TCP`, 'InvalidFrontend'],
  ]);
  t.regex(result.rejected[0]!.message, /^ns\/s81 203\.0\.113\.10:81\/TCP: source range 2001:db8::\/32 is IPv6/);
  t.regex(result.rejected[2]!.message, /has no node address/);
  t.is(plan.newSvcIds.length, 1);
  t.is(pl.size, 1);
});

test('a frontend whose new version is rejected leaves the maps instead of staying in its old shape', (t) => {
  const pl = new EdgePlanner(LIMITS);
  pl.commit(pl.plan([fe(80, { sourceRanges: ['10.0.0.0/8'] })]).plan);
  const { plan, result } = pl.plan([fe(80, { sourceRanges: ['2001:db8::/32'] })]);
  t.is(result.rejected[0]?.reason, 'UnsupportedFamily');
  t.is(plan.svcDeletes.length, 2);
  t.is(plan.srcDeletes.length, 1);
  pl.commit(plan);
  t.is(pl.size, 0);
  t.like(pl.capacity(), { ringSlots: { used: 0 }, backendIds: { used: 0 }, serviceIds: { used: 0 } });
});

test('out of ids or slots: the frontend is rejected, nothing it allocated stays taken, a later plan fits once space is freed', (t) => {
  const pl = new EdgePlanner({ ...LIMITS, backendIds: 8 }); // ids 1..7
  const first = pl.plan([fe(80, { backends: [1, 2, 3, 4, 5].map((i) => backend(i)) })]);
  pl.commit(first.plan);
  const { plan, result } = pl.plan([fe(81, { backends: [6, 7, 8].map((i) => backend(i)) }), fe(82, { backends: [backend(9)] })]);
  t.deepEqual(result.rejected.map((r) => [r.key, r.reason]), [[`${VIP}:81/TCP`, 'OutOfBackendIds']]);
  t.deepEqual(result.added, [`${VIP}:82/TCP`]);
  t.deepEqual(plan.newBeIds, [6], 'the rejected frontend wrote nothing and kept no id');
  pl.commit(plan);
  t.is(pl.capacity().backendIds.used, 6);
  pl.commit(pl.plan([], [`${VIP}:80/TCP`]).plan);
  t.deepEqual(pl.plan([fe(81, { backends: [6, 7, 8].map((i) => backend(i)) })]).result.added, [`${VIP}:81/TCP`]);

  const ring = new EdgePlanner({ ...LIMITS, ringSlots: 512 });
  const r = ring.plan([fe(80), fe(81), fe(82)]);
  t.deepEqual(r.result.rejected.map((x) => x.reason), ['OutOfRingSlots']);
  t.regex(r.result.rejected[0]!.message, /Maglev slot array full/);
  t.is(ring.capacity().serviceIds.used, 2, 'the rejected frontend gave its service id back');
});

test('growing past a free block keeps the region it has while every active backend still gets a slot', (t) => {
  const pl = new EdgePlanner({ ...LIMITS, ringSlots: 512 });
  pl.commit(pl.plan([fe(80, { backends: [backend(1)] }), fe(81, { backends: [backend(2)] })]).plan);
  // 3 active backends want a 512-slot class; the ring is full, the 256-slot table still covers them.
  const { result } = pl.plan([fe(80, { backends: [1, 3, 4].map((i) => backend(i)) })]);
  t.deepEqual(result.updated, [`${VIP}:80/TCP`]);
  t.is(pl.get(`${VIP}:80/TCP`)!.m, 251);
});

test('map layouts: a size that differs from edge-maps.ts is named', (t) => {
  const ok = new Map(Object.entries(EDGE_MAP_LAYOUTS).map(([n, l]) => [n, { keySize: l.key, valueSize: l.value }]));
  t.deepEqual(edgeLayoutMismatches(ok), []);
  ok.set('edge_backends', { keySize: 4, valueSize: 20 });
  ok.delete('edge_config');
  t.deepEqual(edgeLayoutMismatches(ok), ['edge_backends: value is 20 bytes in the object, 16 in edge-maps.ts', 'edge_config: missing from the object']);
});

test('map layouts cover the second-chance maps: edge_sc_prev, edge_sc_flows, edge_sc_stats', (t) => {
  t.like(EDGE_MAP_LAYOUTS, { edge_sc_prev: { key: 4, value: 24 }, edge_sc_flows: { key: 16, value: 12 }, edge_sc_stats: { key: 4, value: 8 } });
  const ok = new Map(Object.entries(EDGE_MAP_LAYOUTS).map(([n, l]) => [n, { keySize: l.key, valueSize: l.value }]));
  ok.set('edge_sc_prev', { keySize: 4, valueSize: 16 });
  t.deepEqual(edgeLayoutMismatches(ok), ['edge_sc_prev: value is 16 bytes in the object, 24 in edge-maps.ts']);
});

// Second chance (docs/second-chance.md) in the planner: the previous table
// takes a region from the same allocator, is planned into the same plan
// (the writer puts it before the ring), closes at the end of its window
// and goes with its service.
function clocked(windowSeconds: number): { pl: EdgePlanner; set: (ns: bigint) => void } {
  let now = 1_000_000_000_000n;
  const pl = new EdgePlanner({ ...LIMITS, secondChanceNs: BigInt(windowSeconds) * 1_000_000_000n, clockNs: () => now });
  return { pl, set: (ns) => (now = ns) };
}

test('second chance: a table change plans the previous table (slots and entry) in a region of its own; same table, no previous', (t) => {
  const { pl } = clocked(600);
  const key = `${VIP}:80/TCP`;
  pl.commit(pl.plan([fe(80, { backends: [1, 2, 3].map((i) => backend(i)) })]).plan);
  const st = pl.get(key)!;
  const before = { off: st.ringOff, cls: st.cls!, m: st.m, table: st.table!.slice() };
  const used = pl.capacity().ringSlots.used;
  const { plan } = pl.plan([fe(80, { backends: [1, 2, 3, 4].map((i) => backend(i)) })]);
  t.is(plan.scPrev.length, 1);
  t.is(plan.scPrev[0]!.svcId, st.id);
  const prevOff = plan.scPrev[0]!.value.readUInt32LE(0);
  t.not(prevOff, before.off, 'not the service region');
  t.is(plan.scPrev[0]!.value.readUInt32LE(4), before.m, 'ringSize: the old M');
  t.is(plan.scRing.n, 2 ** before.cls / EDGE_RING_PER_ELEM, 'the whole previous table');
  t.is(plan.scRing.k32[0], prevOff / EDGE_RING_PER_ELEM);
  // Every old backend is still a backend: the previous table is the old one.
  for (let s = 0; s < before.m; s++) t.is(plan.scRing.v32[s], before.table[s]);
  pl.commit(plan);
  t.is(pl.capacity().ringSlots.used, used + 2 ** before.cls, 'the previous table comes from the same allocator');
  t.is(pl.previous.open, 1);
  // A terminating backend added leaves the table as it is: no new previous table.
  const same = pl.plan([fe(80, { backends: [...[1, 2, 3, 4].map((i) => backend(i)), backend(5, { state: 'terminating' })] })]);
  t.is(same.plan.scPrev.length, 0);
  t.is(same.plan.scRing.n, 0);
});

test('second chance: windows close at the next plan after their end (entry closed, region freed at commit); removal forgets', (t) => {
  const { pl, set } = clocked(10);
  const base = 1_000_000_000_000n;
  pl.commit(pl.plan([fe(80, { backends: [backend(1), backend(2)] }), fe(81, { backends: [backend(3), backend(4)] })]).plan);
  pl.commit(pl.plan([fe(80, { backends: [backend(1), backend(2), backend(5)] }), fe(81, { backends: [backend(3), backend(4), backend(6)] })]).plan);
  t.is(pl.previous.open, 2);
  const held = pl.previous.slots();
  const used = pl.capacity().ringSlots.used - held;
  set(base + 9_000_000_000n);
  t.is(pl.expireSecondChance().closed, 0, 'inside the window');
  set(base + 10_000_000_000n);
  const { plan, closed } = pl.expireSecondChance();
  t.is(closed, 2);
  t.deepEqual(plan.scPrev.map((e) => e.value.readUInt32LE(4)), [0, 0], 'entries closed (ringSize 0)');
  t.is(plan.retiredRegions.length, 2);
  t.is(pl.capacity().ringSlots.used > used, true, 'regions are released only at commit');
  pl.commit(plan);
  t.is(pl.capacity().ringSlots.used, used);

  // A new window, then the service goes: its entry is cleared after the service entry, its region freed.
  pl.commit(pl.plan([fe(80, { backends: [backend(1), backend(2)] })]).plan);
  t.is(pl.previous.open, 1);
  const id = pl.get(`${VIP}:80/TCP`)!.id;
  const gone = pl.plan([], [`${VIP}:80/TCP`]);
  t.deepEqual(gone.plan.scForget, [id]);
  t.is(gone.plan.scPrev.length, 0);
  pl.commit(gone.plan);
  t.is(pl.previous.open, 0);
  t.is(pl.capacity().ringSlots.used, 2 ** pl.get(`${VIP}:81/TCP`)!.cls!);
});

test('second chance: off (window 0) plans no previous table; restore reserves the regions edge_sc_prev names', (t) => {
  const off = new EdgePlanner(LIMITS);
  off.commit(off.plan([fe(80, { backends: [backend(1), backend(2)] })]).plan);
  const { plan } = off.plan([fe(80, { backends: [backend(1), backend(2), backend(3)] })]);
  t.is(plan.scPrev.length + plan.scRing.n, 0);

  const { pl } = clocked(600);
  pl.restore({ services: [], markers: [], backends: [], srcRanges: [], scPrev: [{ svcId: 7, ringOff: 256, ringSize: 251, untilNs: 5n, flags: 1 }] });
  t.is(pl.previous.open, 1);
  t.is(pl.capacity().ringSlots.used, 256);
  const next = pl.plan([]);
  t.is(next.plan.scPrev.length, 1, 'the window that ended before the restart closes at the first plan');
  pl.commit(next.plan);
  t.is(pl.capacity().ringSlots.used, 0);
});

test('source ranges share one table per family: a frontend whose new ranges do not fit is rejected (OutOfSourceRanges) before it allocates anything; counts survive a restore; removals make room', (t) => {
  const limits: PlannerLimits = { ...LIMITS, srcRanges: 4, srcRanges6: 2, ipv6: true };
  const pl = new EdgePlanner(limits);
  const a = fe(80, { sourceRanges: ['10.0.0.0/8', '10.1.0.0/16', '10.2.0.0/16'] });
  const first = pl.plan([a]);
  pl.commit(first.plan);
  t.deepEqual(first.plan.srcAdds.length, 3);
  const ids = pl.capacity().serviceIds.used;
  const b = fe(81, { sourceRanges: ['192.168.0.0/16', '172.16.0.0/12'] });
  const full = pl.plan([b]);
  t.deepEqual(full.result.rejected.map((r) => r.reason), ['OutOfSourceRanges']);
  t.is(full.result.rejected[0]!.message, `ns/s81 ${VIP}:81/TCP: 2 source ranges (2 new) do not fit: edge_src_ranges has 1 free entries (3 of 4 in use)`);
  t.is(pl.capacity().serviceIds.used, ids, 'nothing allocated for the rejected frontend');
  // The other family has its own table.
  const v6 = service({ service: 'ns/v6', frontend: { vip: '2001:db8::10', port: 80, protocol: 'TCP' }, backends: [backend(1, { ip: 'fd00::1', nodeIp: 'fd00::100' })], sourceRanges: ['2001:db8:1::/48', '2001:db8:2::/48'] });
  t.deepEqual(pl.plan([v6]).result.rejected, []);
  // Replacing a frontend's ranges: the writer adds before it deletes, so the new ones must fit beside the old.
  t.deepEqual(pl.plan([{ ...a, sourceRanges: ['10.0.0.0/8', '10.1.0.0/16', '10.3.0.0/16'] }]).result.rejected, []);
  t.deepEqual(pl.plan([{ ...a, sourceRanges: ['10.0.0.0/8', '10.4.0.0/16', '10.5.0.0/16'] }]).result.rejected.map((r) => r.reason), ['OutOfSourceRanges']);
  // A restarted agent counts what the pinned maps hold.
  const restored = new EdgePlanner(limits);
  restored.restore({
    services: [{ keyBuf: Buffer.alloc(8), vip: VIP, port: 80, proto: 6, id: 1, ringOff: 0, ringSize: 0, flags: 0, value: Buffer.alloc(16) }],
    markers: [VIP],
    backends: [],
    srcRanges: ['10.0.0.0/8', '10.1.0.0/16', '10.2.0.0/16'].map((cidr) => ({ svcId: 1, cidr })),
  });
  t.deepEqual(restored.plan([b]).result.rejected.map((r) => r.reason), ['OutOfSourceRanges']);
  // Removing the first frontend frees its entries: the second fits in the next plan.
  const gone = pl.plan([], [`${VIP}:80/TCP`]);
  pl.commit(gone.plan);
  t.deepEqual(pl.plan([b]).result.rejected, []);
});

test('edge_services entries: a frontend takes one, a new VIP one more for its marker; a frontend rejected for another reason leaves the count as it was; a restore counts frontends and markers', (t) => {
  const limits: PlannerLimits = { ...LIMITS, backendIds: 4, serviceEntries: 6 };
  const pl = new EdgePlanner(limits);
  const on = (vip: string, port: number, over: Partial<DesiredService> = {}) => service({ service: `ns/${vip}-${port}`, frontend: { vip, port, protocol: 'TCP' }, ...over });
  pl.commit(pl.plan([on('203.0.113.1', 80), on('203.0.113.2', 80)]).plan); // 2 frontends + 2 markers; 2 of 3 backend ids
  // Needs 3 backend ids, 1 is left: rejected after its 2 entries were counted — the count is undone.
  const tooMany = pl.plan([on('203.0.113.3', 80, { backends: [backend(7), backend(8), backend(9)] })]);
  t.deepEqual(tooMany.result.rejected.map((r) => r.reason), ['OutOfBackendIds']);
  t.deepEqual(pl.plan([on('203.0.113.3', 80, { backends: [] })]).result.rejected, [], 'a new VIP: two entries, and two are free');
  const full = pl.plan([on('203.0.113.1', 443, { backends: [] })]);
  t.deepEqual(full.result.rejected.map((r) => r.reason), ['OutOfServiceIds']);
  t.is(full.result.rejected[0]!.message, 'ns/203.0.113.1-443 203.0.113.1:443/TCP: edge_services is full: 6 of 6 entries in use (one per frontend, and one marker per VIP)');
  const restored = new EdgePlanner(limits);
  restored.restore({
    services: [{ keyBuf: Buffer.alloc(8), vip: '203.0.113.1', port: 80, proto: 6, id: 1, ringOff: 0, ringSize: 0, flags: 0, value: Buffer.alloc(16) }],
    markers: ['203.0.113.1', '203.0.113.9'],
    backends: [],
    srcRanges: [],
  });
  // 1 frontend + 2 markers in the maps: a new VIP fits (5 of 6), a second new VIP does not, a port on a known VIP does.
  t.deepEqual(restored.plan([on('203.0.113.4', 80, { backends: [] })]).result.rejected, []);
  t.deepEqual(restored.plan([on('203.0.113.5', 80, { backends: [] })]).result.rejected.map((r) => r.reason), ['OutOfServiceIds']);
  t.deepEqual(restored.plan([on('203.0.113.9', 80, { backends: [] })]).result.rejected, []);
});

test('capacity() reports the source-range tables and edge_services entries: freeing them alone is more room, so the controller offers a rejected frontend again', (t) => {
  const pl = new EdgePlanner({ ...LIMITS, srcRanges: 4, srcRanges6: 2, serviceEntries: 10, serviceEntries6: 8 });
  pl.commit(pl.plan([fe(80, { sourceRanges: ['10.0.0.0/8', '10.1.0.0/16', '10.2.0.0/16'] })]).plan);
  const c = pl.capacity();
  t.like(c, { sourceRanges: { used: 3, total: 4 }, sourceRanges6: { used: 0, total: 2 }, serviceEntries: { used: 2, total: 10 }, serviceEntries6: { used: 0, total: 8 } });
  const then = freeSpace(c);
  // Fewer ranges on the same frontend: no id or slot freed, but two entries.
  pl.commit(pl.plan([fe(80, { sourceRanges: ['10.0.0.0/8'] })]).plan);
  t.true(moreRoom(then, freeSpace(pl.capacity())));
});
