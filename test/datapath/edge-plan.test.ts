// The edge planner without maps or root: what a change writes, what it
// frees, and how one frontend's failure stays its own.
import test from 'ava';
import { EdgePlanner, type EdgePlan, type PlannerLimits } from '../../src/datapath/edge-plan.js';
import { EDGE_MAP_LAYOUTS, EDGE_RING_PER_ELEM, edgeLayoutMismatches } from '../../src/datapath/edge-maps.js';
import type { DesiredService } from '../../src/model/types.js';
import { backend, service, VIP } from './edge-helpers.js';

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
