// The dirty Services' queue: bounded takes, the allocation order sorted once
// per change of the set instead of once per round (startup: 10 000 Services,
// 200 a round, was 50 full sorts).
import test from 'ava';
import { DirtyQueue, type KeyOrder } from '../../src/k8s/dirty-queue.js';

function counting(rank: (k: string) => number): { by: KeyOrder; calls: () => number; sorted: () => number } {
  let calls = 0;
  let sorted = 0;
  return {
    by: (keys) => {
      calls++;
      sorted += keys.length;
      return [...keys].sort((a, b) => rank(a) - rank(b));
    },
    calls: () => calls,
    sorted: () => sorted,
  };
}

test('without an order: insertion order, at most max a take, each key once', (t) => {
  const q = new DirtyQueue();
  for (const k of ['c', 'a', 'b', 'a']) q.add(k);
  t.is(q.size, 3);
  t.deepEqual(q.take(2, null), ['c', 'a']);
  t.deepEqual(q.take(2, null), ['b']);
  t.deepEqual(q.take(2, null), []);
  t.is(q.size, 0);
});

test('in order: a big set is sorted once and handed out round after round', (t) => {
  const q = new DirtyQueue();
  const keys = Array.from({ length: 1000 }, (_, i) => `svc-${i}`);
  for (const k of keys) q.add(k);
  const rank = (k: string) => -Number(k.slice(4)); // newest first
  const c = counting(rank);
  const got: string[] = [];
  for (let r = 0; r < 5; r++) got.push(...q.take(200, c.by));
  t.deepEqual(got, [...keys].reverse());
  t.is(c.calls(), 1, 'one sort for five rounds');
  t.is(c.sorted(), 1000);
  t.is(q.size, 0);
});

test('a key added between rounds is sorted in at its rank (the rest re-sorted once)', (t) => {
  const q = new DirtyQueue();
  for (const k of ['b', 'd', 'f', 'h']) q.add(k);
  const c = counting((k) => k.charCodeAt(0));
  t.deepEqual(q.take(2, c.by), ['b', 'd']);
  q.add('a');
  q.add('e');
  t.deepEqual(q.take(2, c.by), ['a', 'e']);
  t.deepEqual(q.take(2, c.by), ['f', 'h']);
  t.is(c.calls(), 2);
  // Re-adding a key already waiting changes nothing but the sort's freshness.
  q.add('z');
  q.add('z');
  t.deepEqual(q.take(5, c.by), ['z']);
});

test('another order (leadership changed) or none drops the kept sort', (t) => {
  const q = new DirtyQueue();
  for (const k of ['x', 'y', 'z', 'w']) q.add(k);
  const asc = counting((k) => k.charCodeAt(0));
  const desc = counting((k) => -k.charCodeAt(0));
  t.deepEqual(q.take(1, asc.by), ['w']);
  t.deepEqual(q.take(1, desc.by), ['z']);
  t.deepEqual(q.take(1, null), ['x']);
  t.deepEqual(q.take(1, asc.by), ['y']);
  t.is(asc.calls(), 2);
  t.is(desc.calls(), 1);
});
