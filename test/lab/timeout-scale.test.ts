// The lab's time bounds stretch under EDGELB_LAB_TIMEOUT_SCALE (bench:e2e:vm
// runs the lab under QEMU TCG, where a curl with TLS takes over 15 s).
import test from 'ava';
import { timeoutScale } from '../../src/lab/netns.js';

test('timeoutScale: 1 by default, the variable when it is a number ≥ 1', (t) => {
  t.is(timeoutScale({}), 1);
  t.is(timeoutScale({ EDGELB_LAB_TIMEOUT_SCALE: '4' }), 4);
  t.is(timeoutScale({ EDGELB_LAB_TIMEOUT_SCALE: '2.5' }), 2.5);
});

test('timeoutScale: never shortens a bound, ignores junk', (t) => {
  t.is(timeoutScale({ EDGELB_LAB_TIMEOUT_SCALE: '0.1' }), 1);
  t.is(timeoutScale({ EDGELB_LAB_TIMEOUT_SCALE: 'fast' }), 1);
  t.is(timeoutScale({ EDGELB_LAB_TIMEOUT_SCALE: '' }), 1);
});
