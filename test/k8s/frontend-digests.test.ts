// A Service's accepted frontends, kept without a Map for the first one:
// they must read as the Map they replace did — size, lookups, and keys in
// the order they were added, a digest set again replacing the first.
import test from 'ava';
import { FrontendDigests } from '../../src/k8s/frontend-digests.js';

test('reads like a Map of frontendKey → digest, in insertion order', (t) => {
  const d = new FrontendDigests();
  const m = new Map<string, string>();
  const check = () => {
    t.is(d.size, m.size);
    t.deepEqual([...d.keys()], [...m.keys()]);
    for (const k of ['a', 'b', 'c', 'x']) {
      t.is(d.get(k), m.get(k));
      t.is(d.has(k), m.has(k));
    }
  };
  check();
  for (const [k, v] of [['a', '1'], ['b', '2'], ['a', '3'], ['c', '4'], ['b', '5']] as const) {
    d.set(k, v);
    m.set(k, v);
    check();
  }
});
