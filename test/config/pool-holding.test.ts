import test from 'ava';
import { poolHolding, uplinkAddressInPool } from '../../src/config/pool-holding.js';
import type { PoolConfig } from '../../src/config/types.js';

const pool = (name: string, cidrs: string[]): PoolConfig => ({ name, cidrs, namespaces: [], serviceSelector: {}, autoAssign: true, advertise: { communities: [], largeCommunities: [], peers: [] } } as unknown as PoolConfig);
const pools = [pool('public', ['198.51.100.0/24']), pool('v6', ['2001:db8:1::/64', '10.0.0.0/30'])];

test('the pool block that holds an address, in either family, or none', (t) => {
  t.deepEqual(poolHolding(pools, '198.51.100.7'), { index: 0, name: 'public', cidr: '198.51.100.0/24' });
  t.deepEqual(poolHolding(pools, '10.0.0.3'), { index: 1, name: 'v6', cidr: '10.0.0.0/30' });
  t.deepEqual(poolHolding(pools, '2001:db8:1::5'), { index: 1, name: 'v6', cidr: '2001:db8:1::/64' });
  t.is(poolHolding(pools, '10.0.0.4'), null);
  t.is(poolHolding(pools, 'eth0'), null);
});

test('the sentence names the pool, the address, the uplink and what to change', (t) => {
  t.is(uplinkAddressInPool('eth0', 'node.address', '10.0.0.3', { index: 1, name: 'v6', cidr: '10.0.0.0/30' }),
    "pools[1] (v6) 10.0.0.0/30 holds 10.0.0.3, node.uplink eth0's address (node.address is empty, so the edge uses it): allocated as a VIP, this edge's own address would be announced to the routers and its traffic drawn to the edges; change the pool, or the uplink's address");
});
