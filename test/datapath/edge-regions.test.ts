import test from 'ava';
import { IdAllocator, RegionAllocator } from '../../src/datapath/edge-regions.js';

test('buddy regions: aligned, disjoint, merge back to one block after churn', (t) => {
  const a = new RegionAllocator(16);
  const live = new Map<number, number>();
  let seed = 7;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  for (let i = 0; i < 5000; i++) {
    if (live.size > 0 && rand(3) === 0) {
      const offs = [...live.keys()];
      const off = offs[rand(offs.length)]!;
      a.release(off);
      live.delete(off);
      continue;
    }
    const k = 8 + rand(5);
    const off = a.alloc(k);
    if (off === null) continue;
    t.is(off % 2 ** k, 0);
    for (const [o, kk] of live) t.true(off + 2 ** k <= o || o + 2 ** kk <= off, 'overlap');
    live.set(off, k);
  }
  t.is(a.usedSlots(), [...live.values()].reduce((s, k) => s + 2 ** k, 0));
  for (const off of live.keys()) a.release(off);
  t.is(a.usedSlots(), 0);
  t.is(a.alloc(16), 0, 'everything merged back');
});

test('buddy regions: full → null; reserve rebuilds state; bad release throws', (t) => {
  const a = new RegionAllocator(10);
  t.is(a.alloc(10), 0);
  t.is(a.alloc(8), null);
  a.release(0);
  const b = new RegionAllocator(10);
  b.reserve(256, 8);
  b.reserve(768, 8);
  t.is(b.alloc(9), null, 'no aligned 512 block left');
  const x = b.alloc(8);
  t.true(x === 0 || x === 512);
  t.throws(() => b.reserve(256, 8), { message: /overlaps/ });
  t.throws(() => b.release(100), { message: /not allocated/ });
});

test('ids: fresh ids first, freed ids reused oldest-first, exhaustion is an error', (t) => {
  const ids = new IdAllocator(1, 5, 'service');
  t.deepEqual([ids.alloc(), ids.alloc(), ids.alloc(), ids.alloc()], [1, 2, 3, 4]);
  t.throws(() => ids.alloc(), { message: /out of service ids/ });
  ids.release(3);
  ids.release(1);
  t.is(ids.alloc(), 3);
  t.is(ids.alloc(), 1);
  const r = new IdAllocator(1, 10, 'backend');
  r.reserve(1);
  r.reserve(2);
  t.is(r.alloc(), 3);
});
