// The addresses an edge calls its own (src/agent/k8s-part.ts): the
// controller refuses endpoints at any of them and tells the other edges.
import test from 'ava';
import type { NetworkInterfaceInfo } from 'node:os';
import { edgeOwnAddresses } from '../../src/agent/k8s-part.js';
import type { EdgelbConfig } from '../../src/config/types.js';

const info = (address: string, family: 'IPv4' | 'IPv6', internal = false): NetworkInterfaceInfo =>
  ({ address, family, internal, netmask: '', mac: '00:00:00:00:00:00', cidr: null, ...(family === 'IPv6' ? { scopeid: 0 } : {}) }) as NetworkInterfaceInfo;

test('an edge\'s own addresses: node.address, node.address6 and its interfaces\' addresses, not loopback or link-local', (t) => {
  const config = { node: { address: '198.51.100.1', address6: '2001:db8:e::1' } } as EdgelbConfig;
  const interfaces = {
    lo: [info('127.0.0.1', 'IPv4', true), info('::1', 'IPv6', true)],
    uplink: [info('203.0.113.5', 'IPv4'), info('fe80::1', 'IPv6'), info('2001:db8:f::5', 'IPv6')],
    second: [info('10.20.0.1', 'IPv4')],
  };
  t.deepEqual(edgeOwnAddresses(config, interfaces), ['198.51.100.1', '2001:db8:e::1', '203.0.113.5', '2001:db8:f::5', '10.20.0.1']);
  t.deepEqual(edgeOwnAddresses({ node: { address: '', address6: '' } } as EdgelbConfig, {}), []);
});
