// The per-path decision (src/probe/decide.ts), for both families: what a
// probe result does to a path's dispatch and the reason status shows.
import test from 'ava';
import { decidePath, initialPathState, type PathState, type ProbeResult } from '../../src/probe/decide.js';
import type { Family } from '../../src/net/ip.js';

const seen = (family: Family): ProbeResult => ({ family, optionReply: true, optionSeen: true, plainReply: null, rttUs: 120 });
const stripped = (family: Family): ProbeResult => ({ family, optionReply: true, optionSeen: false, plainReply: null, rttUs: 110 });
const dropped = (family: Family): ProbeResult => ({ family, optionReply: false, optionSeen: false, plainReply: true, rttUs: 100 });
const silent = (family: Family): ProbeResult => ({ family, optionReply: false, optionSeen: false, plainReply: false, rttUs: 0 });
const proven = (dispatch: 'ip-option' | 'ipip'): PathState => ({ ...initialPathState(dispatch, 0), probes: 5, goodStreak: dispatch === 'ip-option' ? 5 : 0 });

const reasons = {
  4: { seen: 'option arrives (rtt 120 µs)', strips: 'the fabric strips IPv4 options on this path', drops: 'the fabric drops packets carrying IPv4 options on this path', again: 'option arrives again' },
  6: {
    seen: 'Destination Options header arrives (rtt 120 µs)',
    strips: 'the fabric strips the IPv6 Destination Options header on this path',
    drops: 'the fabric drops packets carrying the IPv6 Destination Options header on this path',
    again: 'Destination Options header arrives again',
  },
} as const;

for (const family of [4, 6] as const) {
  const r = reasons[family];
  test(`IPv${family}: the first proof of the marker sets ip-option at once`, (t) => {
    const s = decidePath(initialPathState('ipip', 0), seen(family), 1000);
    t.is(s.dispatch, 'ip-option');
    t.is(s.reason, r.seen);
    t.is(s.changedAt, 1000);
    t.is(s.probes, 1);
  });

  test(`IPv${family}: marker stripped → ipip at once, with the reason`, (t) => {
    const s = decidePath(proven('ip-option'), stripped(family), 2000);
    t.is(s.dispatch, 'ipip');
    t.is(s.reason, r.strips);
    t.is(s.goodStreak, 0);
    t.is(s.changedAt, 2000);
  });

  test(`IPv${family}: marked probes lost, plain answered → ipip at once, with the reason`, (t) => {
    const s = decidePath(proven('ip-option'), dropped(family), 2000);
    t.is(s.dispatch, 'ipip');
    t.is(s.reason, r.drops);
  });

  test(`IPv${family}: the way the fabric breaks the path can change without a switch (strips, then drops)`, (t) => {
    const a = decidePath(proven('ip-option'), stripped(family), 2000);
    const b = decidePath(a, dropped(family), 3000);
    t.is(b.dispatch, 'ipip');
    t.is(b.reason, r.drops);
    t.is(b.changedAt, 2000, 'still the switch time');
  });

  test(`IPv${family}: coming back from ipip needs 3 good probes in a row; a bad one restarts the count`, (t) => {
    let s = proven('ipip');
    s = decidePath(s, seen(family), 1);
    s = decidePath(s, seen(family), 2);
    t.is(s.dispatch, 'ipip');
    t.is(s.reason, `${r.again} (2/3 before switching back)`);
    s = decidePath(s, stripped(family), 3);
    s = decidePath(s, seen(family), 4);
    s = decidePath(s, seen(family), 5);
    t.is(s.dispatch, 'ipip');
    s = decidePath(s, seen(family), 6);
    t.is(s.dispatch, 'ip-option');
    t.is(s.changedAt, 6);
  });

  test(`IPv${family}: a node that answers nothing changes nothing`, (t) => {
    for (const d of ['ip-option', 'ipip'] as const) {
      const s = decidePath(proven(d), silent(family), 9);
      t.is(s.dispatch, d);
      t.is(s.reason, `node not answering probes (keeping ${d})`);
      t.is(s.probes, 6);
    }
  });
}
