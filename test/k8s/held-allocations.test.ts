import test from 'ava';
import { heldAddresses, type HeldFrontend } from '../../src/k8s/held-allocations.js';

const held = (vip: string, port: number, backends: string[], protocol = 'TCP'): HeldFrontend => ({ vip, port, protocol, backends });

test('an unwritten Service gets back the held address whose ports and backends are its own', (t) => {
  const got = heldAddresses(
    [{ key: 'ns/a', ports: ['80/TCP', '443/TCP'], backends: ['10.244.0.1', '10.244.0.2'] }, { key: 'ns/b', ports: ['80/TCP'], backends: ['10.244.0.9'] }],
    [held('192.0.2.7', 443, ['10.244.0.2', '10.244.0.1']), held('192.0.2.7', 80, ['10.244.0.1', '10.244.0.2']), held('192.0.2.1', 80, ['10.244.0.9']), held('192.0.2.2', 80, ['10.244.0.5'])],
    new Set(),
  );
  t.deepEqual([...got], [['ns/a', ['192.0.2.7']], ['ns/b', ['192.0.2.1']]]);
});

test('no guess: two Services alike, two held VIPs alike, a VIP some status claims, different ports or no backends get nothing', (t) => {
  const same = { ports: ['80/TCP'], backends: ['10.244.0.1'] };
  t.deepEqual([...heldAddresses([{ key: 'ns/a', ...same }, { key: 'ns/b', ...same }], [held('192.0.2.1', 80, ['10.244.0.1'])], new Set())], []);
  t.deepEqual([...heldAddresses([{ key: 'ns/a', ...same }], [held('192.0.2.1', 80, ['10.244.0.1']), held('192.0.2.2', 80, ['10.244.0.1'])], new Set())], []);
  t.deepEqual([...heldAddresses([{ key: 'ns/a', ...same }], [held('192.0.2.1', 80, ['10.244.0.1'])], new Set(['192.0.2.1']))], []);
  t.deepEqual([...heldAddresses([{ key: 'ns/a', ...same }], [held('192.0.2.1', 80, ['10.244.0.1'], 'UDP')], new Set())], []);
  t.deepEqual([...heldAddresses([{ key: 'ns/a', ports: ['80/TCP'], backends: [] }], [held('192.0.2.1', 80, [])], new Set())], []);
});

test('dual stack: one address per family, each matched on its own family\'s backends', (t) => {
  const got = heldAddresses(
    [{ key: 'ns/d', ports: ['80/TCP'], backends: ['10.244.0.1', 'fd00::1'] }],
    [held('192.0.2.1', 80, ['10.244.0.1']), held('2001:db8::0:1', 80, ['fd00:0::1'])],
    new Set(),
  );
  t.deepEqual(got.get('ns/d'), ['192.0.2.1', '2001:db8::1']);
});
