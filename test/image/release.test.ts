// The downgrade check's ordering of releases (src/image/release.ts); the
// refusals on real (small) disks are in upgrade.test.ts.
import test from 'ava';
import { compareVersions, upgradeVerdict } from '../../src/image/release.js';

const sign = (n: number | null) => (n === null ? null : Math.sign(n));

test('versions order by semver precedence; build metadata does not order', (t) => {
  t.is(sign(compareVersions('1.2.0', '1.10.0')), -1);
  t.is(sign(compareVersions('2.0.0+aaaa', '1.9.9+zzzz')), 1);
  t.is(sign(compareVersions('0.1.0+aaaa', '0.1.0+bbbb.dirty+broken-agent')), 0);
  t.is(sign(compareVersions('1.0.0-rc.1', '1.0.0')), -1, 'a pre-release precedes its release');
  t.is(sign(compareVersions('1.0.0-rc.2', '1.0.0-rc.10')), -1);
  t.is(sign(compareVersions('1.0.0-alpha', '1.0.0-1')), 1, 'alphanumeric after numeric identifiers');
  t.is(sign(compareVersions('1', '0')), 1);
  t.is(compareVersions('unknown', '1.0.0'), null);
});

test('verdicts: newer version or build allowed, same build a reinstall, anything else refused naming both', (t) => {
  const at = 1_790_000_000;
  const run = { version: '0.2.0+aaaa', built: at };
  t.deepEqual(upgradeVerdict(run, { version: '0.3.0+bbbb', built: at - 1000 }), { allowed: true, why: 'newer version' });
  t.deepEqual(upgradeVerdict(run, { version: '0.2.0+bbbb', built: at + 1 }), { allowed: true, why: 'newer build' });
  t.deepEqual(upgradeVerdict(run, { ...run }), { allowed: true, why: 'reinstall' });
  const older = upgradeVerdict(run, { version: '0.1.9+cccc', built: at + 1000 });
  t.false(older.allowed);
  t.regex(older.why, /edgelb 0\.1\.9\+cccc \(built 2026-09-21T.*\) is an older version than the installed edgelb 0\.2\.0\+aaaa \(built 2026-09-21T/);
  t.regex(upgradeVerdict(run, { version: '0.2.0+cccc', built: at - 1 }).why, /not a newer build/);
  t.false(upgradeVerdict(run, { version: '0.2.0+aaaa+variant', built: at }).allowed, 'same time, another build');
  t.false(upgradeVerdict(run, { version: 'unknown', built: at + 1 }).allowed);
});
