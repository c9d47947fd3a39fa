// PathProber's round at scale, with the probe replaced (no processes): a
// thousand nodes are probed a bounded number at a time — each probe is a
// process, and an edge in front of a large cluster must not fork one per node
// at once — and a failing callback stops neither the round nor the agent.
import test from 'ava';
import { PathProber } from '../../src/probe/prober.js';
import type { ProbeResult } from '../../src/probe/decide.js';

const seen: ProbeResult = { family: 4, optionReply: true, optionSeen: true, plainReply: null, rttUs: 100 };

test('a round over 1 000 nodes runs at most `concurrency` probes at a time and decides every path', async (t) => {
  let now = 0;
  let peak = 0;
  const decided: string[] = [];
  const prober = new PathProber({
    concurrency: 16,
    probe: async () => {
      peak = Math.max(peak, ++now);
      await new Promise((r) => setTimeout(r, 1));
      now--;
      return seen;
    },
    onChange: (ip) => decided.push(ip),
  });
  prober.setTargets(Array.from({ length: 1000 }, (_, i) => `10.${i >> 8}.${i & 255}.1`));
  await prober.round();
  t.is(decided.length, 1000);
  t.true(peak <= 16 && peak >= 8, `peak ${peak}`);
});

test('a callback that throws is logged; the other paths of the round are still decided and round() resolves', async (t) => {
  const warned: unknown[] = [];
  const decided: string[] = [];
  const prober = new PathProber({
    probe: async () => seen,
    logger: { info: () => undefined, warn: (o: unknown) => warned.push(o) } as never,
    onChange: (ip) => {
      if (ip === '10.0.0.2') throw new Error('map write failed');
      decided.push(ip);
    },
  });
  prober.setTargets(['10.0.0.1', '10.0.0.2', '10.0.0.3']);
  await t.notThrowsAsync(prober.round());
  t.deepEqual(decided.sort(), ['10.0.0.1', '10.0.0.3']);
  t.is(warned.length, 1);
});
