import test from 'ava';
import {
  attrsFromAdvertise,
  buildPath,
  canonicalAddress,
  decodeCommunity,
  encodeCommunity,
  encodeLargeCommunity,
  GRACEFUL_SHUTDOWN_VALUE,
  parseVipPrefix,
  peerGroupId,
  restrictMark,
  summarizePath,
  NO_ATTRS,
} from '../../src/bgp/attributes.js';

test('communities encode as ASN<<16|VALUE and round-trip', (t) => {
  t.is(encodeCommunity('65000:100'), 65000 * 65536 + 100);
  t.is(encodeCommunity('65535:0'), GRACEFUL_SHUTDOWN_VALUE);
  t.is(decodeCommunity(encodeCommunity('1:65535')), '1:65535');
  t.throws(() => encodeCommunity('65536:1'), { message: /65536/ });
  t.throws(() => encodeCommunity('1:2:3'), { message: /ASN:VALUE/ });
  t.throws(() => encodeCommunity('a:1'));
});

test('large communities parse three u32 fields', (t) => {
  t.deepEqual(encodeLargeCommunity('4294967295:0:7'), { global_admin: 4294967295, local_data1: 0, local_data2: 7 });
  t.throws(() => encodeLargeCommunity('4294967296:0:0'), { message: /4294967296/ });
  t.throws(() => encodeLargeCommunity('1:2'));
});

test('VIP prefixes must be host routes; v6 is canonicalised', (t) => {
  t.is(parseVipPrefix('10.0.0.1').len, 32);
  t.is(parseVipPrefix('2001:DB8:0:0::1/128').address, '2001:db8::1');
  t.is(canonicalAddress('2001:0DB8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
  t.is(canonicalAddress('10.0.0.1'), '10.0.0.1');
  t.throws(() => parseVipPrefix('10.0.0.0/24', 'pool x'), { message: /pool x.*host route/ });
  t.throws(() => parseVipPrefix('10.0.0.256/32'), { message: /not an IPv4\/IPv6/ });
});

test('buildPath carries every configured attribute', (t) => {
  const p = buildPath(
    {
      prefix: '10.1.2.3/32',
      attrs: { communities: ['65000:1', '65000:1'], largeCommunities: ['1:2:3'], localPref: 150, med: 20, asPathPrepend: 2, peers: [] },
    },
    { localAsn: 64512 },
  );
  t.deepEqual(p.family, { afi: 'AFI_IP', safi: 'SAFI_UNICAST' });
  t.deepEqual(p.nlri, { '@type': 'type.googleapis.com/apipb.IPAddressPrefix', prefix: '10.1.2.3', prefix_len: 32 });
  const s = summarizePath(p);
  t.deepEqual(s, {
    prefix: '10.1.2.3/32',
    nextHop: '0.0.0.0',
    communities: ['65000:1'],
    largeCommunities: ['1:2:3'],
    localPref: 150,
    med: 20,
    asPath: [64512, 64512],
  });
  t.is(p.pattrs[0]!['@type'], 'type.googleapis.com/apipb.OriginAttribute');
});

test('minimal path: origin + next hop only; v6 uses ::', (t) => {
  const p = buildPath({ prefix: '2001:db8::5/128', attrs: NO_ATTRS }, { localAsn: 1 });
  t.is(p.pattrs.length, 2);
  t.is(summarizePath(p).nextHop, '::');
  t.is(p.family.afi, 'AFI_IP6');
});

test('drain adds GRACEFUL_SHUTDOWN once', (t) => {
  const p = buildPath({ prefix: '10.0.0.1/32', attrs: { ...NO_ATTRS, communities: ['65535:0'] } }, { localAsn: 1, gracefulShutdown: true });
  t.deepEqual(summarizePath(p).communities, ['65535:0']);
  const q = buildPath({ prefix: '10.0.0.1/32', attrs: NO_ATTRS }, { localAsn: 1, gracefulShutdown: true });
  t.deepEqual(summarizePath(q).communities, ['65535:0']);
});

test('a peer subset adds the restriction mark, independent of order and duplicates', (t) => {
  t.is(peerGroupId(['10.0.0.2', '10.0.0.1']), peerGroupId(['10.0.0.1', '10.0.0.2', '10.0.0.1']));
  t.not(peerGroupId(['10.0.0.1']), peerGroupId(['10.0.0.2']));
  const p = buildPath({ prefix: '10.0.0.1/32', attrs: { ...NO_ATTRS, peers: ['10.0.0.9'] } }, { localAsn: 65001 });
  t.deepEqual(summarizePath(p).largeCommunities, [restrictMark(65001, ['10.0.0.9'])]);
});

test('bad attribute values name the VIP', (t) => {
  t.throws(() => buildPath({ prefix: '10.0.0.1/32', attrs: { ...NO_ATTRS, asPathPrepend: 11 } }, { localAsn: 1 }), { message: /10\.0\.0\.1\/32: asPathPrepend 11/ });
  t.throws(() => buildPath({ prefix: '10.0.0.1/32', attrs: { ...NO_ATTRS, med: -1 } }, { localAsn: 1 }), { message: /med/ });
});

test('an IPv6 path: IPv6 unicast family, :: next hop (gobgpd puts the session address), every pool attribute, GRACEFUL_SHUTDOWN on drain', (t) => {
  const attrs = { communities: ['65000:1'], largeCommunities: ['1:2:3'], localPref: 150, med: 20, asPathPrepend: 1, peers: ['2001:DB8::9'] };
  const p = buildPath({ prefix: '2001:DB8:0::7/128', attrs: { ...attrs, peers: attrsFromAdvertise(attrs).peers } }, { localAsn: 64512, gracefulShutdown: true });
  t.deepEqual(p.family, { afi: 'AFI_IP6', safi: 'SAFI_UNICAST' });
  t.deepEqual(p.nlri, { '@type': 'type.googleapis.com/apipb.IPAddressPrefix', prefix: '2001:db8::7', prefix_len: 128 });
  t.deepEqual(summarizePath(p), {
    prefix: '2001:db8::7/128',
    nextHop: '::',
    communities: ['65000:1', '65535:0'],
    largeCommunities: ['1:2:3', restrictMark(64512, ['2001:db8::9'])].sort(),
    localPref: 150,
    med: 20,
    asPath: [64512],
  });
  t.throws(() => buildPath({ prefix: '2001:db8::/64', attrs: NO_ATTRS }, { localAsn: 1 }), { message: /host route \(\/128\)/ });
});

test('a restriction names the same peer group however its IPv6 peers are spelt', (t) => {
  const a = attrsFromAdvertise({ ...NO_ATTRS, peers: ['2001:DB8:0:0::1', 'fd00::2'] });
  const b = attrsFromAdvertise({ ...NO_ATTRS, peers: ['fd00:0::2', '2001:db8::1'] });
  t.deepEqual(a.peers, ['2001:db8::1', 'fd00::2']);
  t.is(peerGroupId(a.peers), peerGroupId(b.peers));
});
