// The timed boot's wait for a quiet host (src/image/quiet-host.ts), on a
// scripted /proc/stat and clock.
import test from 'ava';
import { describeQuiet, idleBetween, parseProcStat, waitForQuietHost } from '../../src/image/quiet-host.js';

const stat = (user: number, system: number, idle: number, iowait = 0) =>
  `cpu  ${user} 0 ${system} ${idle} ${iowait} 0 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\nintr 1\n`;

test('/proc/stat: idle and iowait count as idle, over every CPU; a file without the aggregate line is an error', (t) => {
  t.deepEqual(parseProcStat(stat(100, 50, 800, 50)), { idle: 850, total: 1000 });
  t.is(idleBetween(parseProcStat(stat(100, 50, 800)), parseProcStat(stat(110, 50, 990))), 0.95);
  t.throws(() => parseProcStat('cpu0 1 2 3 4\n'), { message: /no aggregate "cpu" line/ });
});

/** A host whose CPUs are busy for the first `busyWindows` windows, then idle. */
function scripted(busyWindows: number) {
  let clock = 0;
  let reads = 0;
  let user = 0;
  let idle = 0;
  return {
    readStat: () => {
      if (reads++ > 0) {
        const busy = reads - 1 <= busyWindows;
        user += busy ? 350 : 10;
        idle += busy ? 50 : 390;
      }
      return stat(user, 0, idle);
    },
    sleep: async (ms: number) => {
      clock += ms;
    },
    now: () => clock,
  };
}

test('waits through busy windows until one is idle enough, and says how long', async (t) => {
  const q = await waitForQuietHost({ minIdle: 0.9, windowMs: 2000, maxWaitMs: 90_000, ...scripted(3) });
  t.deepEqual(q, { quiet: true, waitedMs: 8000, idle: 390 / 400 });
  t.is(describeQuiet(q), 'host quiet (98% idle) after 8.0 s');
  t.deepEqual(await waitForQuietHost({ minIdle: 0.9, windowMs: 2000, maxWaitMs: 90_000, ...scripted(0) }), { quiet: true, waitedMs: 2000, idle: 390 / 400 });
});

test('a host that never quiets down is waited for up to the bound, then the boot goes ahead and says so', async (t) => {
  const q = await waitForQuietHost({ minIdle: 0.9, windowMs: 2000, maxWaitMs: 10_000, ...scripted(1000) });
  t.deepEqual(q, { quiet: false, waitedMs: 10_000, idle: 50 / 400 });
  t.regex(describeQuiet(q), /host still busy \(13% idle\) after 10\.0 s: booting anyway/);
});
