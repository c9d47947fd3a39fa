import test from 'ava';
import { chooseTableSize, isPrime, maglevTable, primeForClass, maxClass, type MaglevMember } from '../../src/datapath/maglev.js';

function members(n: number, weight = (_i: number) => 1): MaglevMember[] {
  return Array.from({ length: n }, (_, i) => ({ key: `10.1.${i >> 8}.${i & 255}:8080`, weight: weight(i) }));
}

function shares(table: Int32Array, n: number): number[] {
  const c = new Array<number>(n).fill(0);
  for (const v of table) c[v]! += 1;
  return c;
}

test('every slot is filled with a valid member', (t) => {
  const tab = maglevTable(members(7), 1021);
  t.is(tab.length, 1021);
  for (const v of tab) t.true(v >= 0 && v < 7);
});

test('balance: 10 backends over 16381 slots within ±5 % of their share', (t) => {
  const tab = maglevTable(members(10), 16381);
  const share = 16381 / 10;
  for (const c of shares(tab, 10)) t.true(Math.abs(c - share) <= share * 0.05, `count ${c} vs ${share}`);
});

test('weights: shares follow weights within ±5 %', (t) => {
  const w = [1, 2, 3, 4, 1, 1, 2, 2, 5, 3];
  const tab = maglevTable(members(10, (i) => w[i]!), 16381);
  const total = w.reduce((a, b) => a + b, 0);
  shares(tab, 10).forEach((c, i) => {
    const share = (16381 * w[i]!) / total;
    t.true(Math.abs(c - share) <= share * 0.05, `backend ${i} weight ${w[i]}: ${c} vs ${share}`);
  });
});

test('disruption: removing one of N moves at most 1/N + 2 % of slots', (t) => {
  for (const n of [3, 10, 50]) {
    const all = members(n);
    const before = maglevTable(all, 16381);
    const removed = 1;
    const rest = all.filter((_, i) => i !== removed);
    const after = maglevTable(rest, 16381);
    let moved = 0;
    for (let s = 0; s < 16381; s++) {
      const b = all[before[s]!]!.key;
      const a = rest[after[s]!]!.key;
      if (a !== b) moved++;
    }
    t.true(moved / 16381 <= 1 / n + 0.02, `n=${n}: moved ${moved}`);
  }
});

test('edges agree: same table whatever the input order', (t) => {
  const a = members(25, (i) => 1 + (i % 3));
  const b = [...a].reverse();
  const ta = maglevTable(a, 4093);
  const tb = maglevTable(b, 4093);
  for (let s = 0; s < 4093; s++) t.is(a[ta[s]!]!.key, b[tb[s]!]!.key);
});

test('bad input is rejected with a clear error', (t) => {
  t.throws(() => maglevTable([], 101), { message: /at least one member/ });
  t.throws(() => maglevTable(members(2), 100), { message: /not prime/ });
  t.throws(() => maglevTable([{ key: 'a', weight: 1 }, { key: 'a', weight: 1 }], 101), { message: /duplicate/ });
  t.throws(() => maglevTable([{ key: 'a', weight: 0 }], 101), { message: /weight/ });
});

test('table size: ≥ 100 × backends, prime, capped, with hysteresis', (t) => {
  const s1 = chooseTableSize(1, 16381);
  t.true(isPrime(s1.m) && s1.m >= 100 && s1.m < 2 ** s1.cls);
  const s10 = chooseTableSize(10, 16381);
  t.true(s10.m >= 1000);
  t.is(s10.m, 1021);
  const big = chooseTableSize(100000, 16381);
  t.is(big.m, 16381);
  t.is(big.cls, maxClass(16381));
  // Removing one backend keeps the size; growing past the bound moves up.
  t.is(chooseTableSize(9, 16381, s10.cls).cls, s10.cls);
  t.true(chooseTableSize(11, 16381, s10.cls).m >= 1100);
  // Shrinking by far more than 4× moves down.
  const s100 = chooseTableSize(100, 16381);
  t.true(chooseTableSize(1, 16381, s100.cls).cls < s100.cls);
  t.is(primeForClass(14, 10007), 10007);
});
