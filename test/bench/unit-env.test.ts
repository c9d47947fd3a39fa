// bench/lib/unit-env.ts: bench:k8s takes the agent's heap flags from the
// shipped unit, so the figure it prints is the appliance's.
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { parseUnitNodeSettings, readUnitNodeSettings } from '../../bench/lib/unit-env.js';

test('the shipped unit yields its NODE_OPTIONS as flags and its allocator setting as env', (t) => {
  const unit = fileURLToPath(new URL('../../../systemd/edgelb.service', import.meta.url));
  const s = readUnitNodeSettings(unit);
  t.true(s.flags.some((f) => f.startsWith('--max-semi-space-size=')), s.flags.join(' '));
  t.true(s.flags.some((f) => f.startsWith('--max-old-space-size=')), s.flags.join(' '));
  t.deepEqual(Object.keys(s.env), ['MALLOC_ARENA_MAX']);
});

test('quoted and bare assignments, several per line; other variables left out', (t) => {
  const s = parseUnitNodeSettings([
    '[Service]',
    'Environment=NODE_COMPILE_CACHE=/opt/x MALLOC_ARENA_MAX=2',
    'Environment="NODE_OPTIONS=--a=1  --b" FOO=bar',
    '# Environment=NODE_OPTIONS=--commented',
  ].join('\n'), 'u');
  t.deepEqual(s, { flags: ['--a=1', '--b'], env: { MALLOC_ARENA_MAX: '2' } });
});

test('a unit without NODE_OPTIONS is an error naming the file', (t) => {
  t.throws(() => parseUnitNodeSettings('[Service]\nEnvironment=MALLOC_ARENA_MAX=2\n', 'x.service'), { message: /x\.service: no Environment=NODE_OPTIONS/ });
});
