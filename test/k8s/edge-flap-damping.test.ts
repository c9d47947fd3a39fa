import test from 'ava';
import { EdgeFlapDamper, MAX_PENALTY, REUSE, SUPPRESS } from '../../src/k8s/edge-flap-damping.js';

const HALF = 60_000;

test('a join, a leave and a restart are shown at once', (t) => {
  const d = new EdgeFlapDamper(HALF);
  t.deepEqual(d.view(['a'], 0), ['a']);
  t.deepEqual(d.view(['a', 'b'], 1000), ['a', 'b']);
  t.deepEqual(d.view(['a'], 2000), ['a'], 'b left');
  t.deepEqual(d.view(['a', 'b'], 3000), ['a', 'b'], 'b back');
  t.deepEqual(d.held(), []);
});

test('an edge that keeps flapping is held as it was shown; its latest state is shown once it settles, within two half-lives after it stops', (t) => {
  const d = new EdgeFlapDamper(HALF);
  d.view(['a', 'b'], 0);
  // Long after its join, b flaps every 5 s: 42 changes.
  let now = 10 * HALF;
  let last = 'a,b';
  let shownChanges = 0;
  for (let i = 0; i < 42; i++) {
    now += 5000;
    const v = d.view(i % 2 === 0 ? ['a'] : ['a', 'b'], now).join(',');
    if (v !== last) shownChanges++;
    last = v;
  }
  t.true(shownChanges <= SUPPRESS, `${shownChanges} of 42 changes shown`);
  t.deepEqual(d.held(), ['b']);
  t.is(last, 'a', 'held as gone (its third change), although it is present now');
  // b settles down, present. Its penalty (≤ MAX_PENALTY) decays below REUSE within log2(MAX/REUSE) half-lives.
  const stop = now;
  let shownAt: number | null = null;
  while (now - stop < 3 * HALF) {
    now += 1000;
    if (d.view(['a', 'b'], now).join(',') === 'a,b') {
      shownAt = now;
      break;
    }
  }
  t.truthy(shownAt, 'b shown as present at last');
  t.true(shownAt! - stop <= Math.log2(MAX_PENALTY / REUSE) * HALF + 1000, `after ${shownAt! - stop} ms`);
  now += 3 * HALF;
  d.view(['a', 'b'], now);
  t.deepEqual(d.held(), []);
});

test('changes within one penalty below SUPPRESS are never held; the other edges are never affected', (t) => {
  t.true(SUPPRESS > 2, 'a restart (two changes) must not be held');
  const d = new EdgeFlapDamper(HALF);
  d.view(['a', 'b', 'c'], 0);
  let now = 10 * HALF;
  for (let i = 0; i < 20; i++) {
    now += 1000;
    const v = d.view(i % 2 === 0 ? ['a', 'c'] : ['a', 'b', 'c'], now);
    t.true(v.includes('a') && v.includes('c'));
  }
  // c leaves while b is held: shown at once.
  t.false(d.view(['a', 'b'], now + 1000).includes('c'));
});
