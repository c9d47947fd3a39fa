// Golden files for generated daemon configs (test/lib/golden.ts: UPDATE_GOLDEN=1 rewrites them).
import test from 'ava';
import { generateBfddConfig, bfdVtyCommands, type BfdPeer } from '../../src/bgp/bfdd.js';
import { generateFrrConfig } from '../../src/lab/frr.js';
import { golden } from '../lib/golden.js';

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
