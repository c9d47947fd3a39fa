// Golden files for generated daemon configs (test/lib/golden.ts: UPDATE_GOLDEN=1 rewrites them).
import test from 'ava';
import { bfdPeersFromConfig, generateBfddConfig, bfdVtyCommands, type BfdPeer } from '../../src/bgp/bfdd.js';
import { generateFrrConfig } from '../../src/lab/frr.js';
import { golden } from '../lib/golden.js';
import { defaultPeer } from '../lib/gobgpd.js';

const peers: BfdPeer[] = [
  { address: '192.0.2.1', localAddress: '192.0.2.10', multihop: false, minRxMs: 100, minTxMs: 100, multiplier: 3 },
  { address: '198.51.100.1', localAddress: '203.0.113.5', multihop: true, minRxMs: 300, minTxMs: 200, multiplier: 5 },
];

test('bfdd config', (t) => {
  const conf = generateBfddConfig([peers[1]!, peers[0]!]);
  t.is(conf, golden('bgp/bfdd.conf', conf));
  t.is(generateBfddConfig(peers), conf, 'order-independent');
});

test('bfdd config, held down (unhealthy)', (t) => {
  const conf = generateBfddConfig(peers, { shutdown: true });
  t.is(conf, golden('bgp/bfdd-shutdown.conf', conf));
});

test('bfdd live changes: remove stale, (re)state the rest', (t) => {
  const cmds = bfdVtyCommands([peers[0]!, { ...peers[0]!, address: '192.0.2.2' }], [peers[0]!], false);
  t.deepEqual(cmds, [
    'configure terminal',
    'bfd',
    'no peer 192.0.2.2 local-address 192.0.2.10',
    'peer 192.0.2.1 local-address 192.0.2.10',
    'detect-multiplier 3',
    'receive-interval 100',
    'transmit-interval 100',
    'no shutdown',
    'exit',
    'end',
  ]);
});

test('bfdd rejects bad peers with the peer named', (t) => {
  t.throws(() => generateBfddConfig([{ ...peers[0]!, multiplier: 1 }]), { message: /192\.0\.2\.1: multiplier 1/ });
  t.throws(() => generateBfddConfig([{ ...peers[1]!, localAddress: '' }]), { message: /multihop BFD needs/ });
});

const peers6: BfdPeer[] = [
  { address: '2001:db8::1', localAddress: '2001:db8::10', multihop: false, minRxMs: 100, minTxMs: 100, multiplier: 3 },
  { address: '192.0.2.1', localAddress: '192.0.2.10', multihop: false, minRxMs: 100, minTxMs: 100, multiplier: 3 },
];

test('bfdd config with an IPv6 session next to an IPv4 one', (t) => {
  const conf = generateBfddConfig(peers6);
  t.is(conf, golden('bgp/bfdd-v6.conf', conf));
});

test('bfdd: a configured IPv6 peer, however spelt, is the session bfdd reports (no remove + re-add)', (t) => {
  const [peer] = bfdPeersFromConfig([defaultPeer('2001:DB8:0::1', { localAddress: '2001:db8:0:0::10', bfd: { enabled: true, minRxMs: 100, minTxMs: 100, multiplier: 3 } })]);
  // What bfdd's `show bfd peers json` gives back for that session.
  const reported: BfdPeer = { address: '2001:db8::1', localAddress: '2001:db8::10', multihop: false, minRxMs: 0, minTxMs: 0, multiplier: 0 };
  const cmds = bfdVtyCommands([reported], [peer!], false);
  t.false(cmds.some((c) => c.startsWith('no peer')), cmds.join('; '));
  t.true(cmds.includes('peer 2001:db8::1 local-address 2001:db8::10'));
});

test('FRR lab router config with IPv6 neighbors (BFD, a second IPv6 session from another router address)', (t) => {
  const files = generateFrrConfig({
    hostname: 'r6',
    asn: 65000,
    routerId: '10.1.0.1',
    neighbors: [
      { address: '10.1.0.10', asn: 65101, holdTime: 9, keepalive: 3, bfd: { minRxMs: 100, minTxMs: 100, multiplier: 3 } },
      { address: 'fd00:1::10', asn: 65101, holdTime: 9, keepalive: 3, bfd: { minRxMs: 100, minTxMs: 100, multiplier: 3 } },
      { address: 'fd00:1::30', asn: 65101, holdTime: 9, keepalive: 3, updateSource: 'fd00:1::2' },
      { address: 'fd00:1::11', asn: 65102, password: 'sekret6' },
    ],
  });
  t.is(files.bgpd, golden('bgp/frr-bgpd-v6.conf', files.bgpd));
});

test('FRR lab router config', (t) => {
  const files = generateFrrConfig({
    hostname: 'r1',
    asn: 65000,
    routerId: '10.1.0.1',
    neighbors: [
      { address: '10.1.0.10', asn: 65101, holdTime: 9, keepalive: 3 },
      { address: '10.1.0.11', asn: 65102, password: 'sekret', bfd: { minRxMs: 100, minTxMs: 100, multiplier: 3 } },
    ],
  });
  for (const d of ['zebra', 'bgpd', 'bfdd'] as const) t.is(files[d], golden(`bgp/frr-${d}.conf`, files[d]), d);
});
