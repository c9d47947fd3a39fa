import test from 'ava';
import { bigIntToIp, canonicalIp, ipFamily, ipToBigInt, ipv4ToU32, isIp, isIpv4, isIpv6, u32ToIpv4 } from '../../src/net/ip.js';

test('addresses: one rule for what IPv4 and IPv6 are', (t) => {
  t.true(isIpv4('192.0.2.1'));
  t.true(isIpv4('0.0.0.0'));
  for (const bad of ['010.0.0.1', '1.2.3.04', '1.2.3', '1.2.3.4.5', '256.0.0.1', ' 1.2.3.4', '1.2.3.4 ', '', '::1', 7]) t.false(isIpv4(bad), String(bad));
  t.true(isIpv6('2001:db8::1'));
  t.true(isIpv6('::ffff:10.0.0.1'));
  t.false(isIpv6('2001:db8::g'));
  t.true(isIp('::'));
  t.false(isIp('example.com'));
  t.is(ipFamily('192.0.2.1'), 4);
  t.is(ipFamily('2001:db8::1'), 6);
  t.is(ipFamily('010.0.0.1'), null);
});

test('canonical text: v4 as written, v6 compressed lower case (RFC 5952)', (t) => {
  t.is(canonicalIp('2001:db8:0:0:0:0:0:1'), '2001:db8::1');
  t.is(canonicalIp('2001:0db8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
  t.is(canonicalIp('2001:DB8::A'), '2001:db8::a');
  t.is(canonicalIp('::ffff:10.0.0.1'), '::ffff:a00:1');
  t.is(canonicalIp('fe80::1%eth0'), 'fe80::1');
  t.is(canonicalIp('192.0.2.1'), '192.0.2.1');
  t.is(canonicalIp('nonsense'), null);
  t.is(bigIntToIp(ipToBigInt('2001:0:0:1:0:0:0:1').value, 6), '2001:0:0:1::1');
  t.is(bigIntToIp(ipToBigInt('1:0:0:2:0:0:0:3').value, 6), '1:0:0:2::3', 'the longest zero run is compressed');
  t.is(bigIntToIp(ipToBigInt('1:0:2:3:4:5:6:7').value, 6), '1:0:2:3:4:5:6:7', 'a single zero group is not');
  t.deepEqual(ipToBigInt('10.0.0.1'), { family: 4, value: 0x0a000001n });
  t.throws(() => ipToBigInt('10.0.0'), { message: /not an IP address: "10\.0\.0"/ });
});

test('IPv4 as a 32-bit number: exact values, bad input named', (t) => {
  t.is(ipv4ToU32('0.0.0.0'), 0);
  t.is(ipv4ToU32('255.255.255.255'), 0xffffffff);
  t.is(ipv4ToU32('10.1.2.3'), 0x0a010203);
  t.is(ipv4ToU32('192.0.2.0'), 0xc0000200);
  for (const bad of ['', '1.2.3', '1.2.3.4.', '.1.2.3', '1..2.3', '256.1.1.1', '1.2.3.1000', '01.2.3.4', '1.2.3.00', '1.2.3.4 ', 'a.b.c.d', '::1']) {
    t.throws(() => ipv4ToU32(bad, 'backend IP'), { message: `backend IP '${bad}' is not an IPv4 address` }, bad);
  }
  t.is(u32ToIpv4(0x0a010203), '10.1.2.3');
  t.is(u32ToIpv4(0xffffffff), '255.255.255.255');
  for (let i = 0; i < 1000; i++) {
    const n = (Math.random() * 2 ** 32) >>> 0;
    t.is(ipv4ToU32(u32ToIpv4(n)), n);
  }
});
