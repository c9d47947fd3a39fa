import test from 'ava';
import { checkCidr, cidrContains, cidrsOverlap, parseCidr, type Cidr } from '../../src/net/cidr.js';
import { ipToBigInt } from '../../src/net/ip.js';

const ok = (c: Cidr | string): Cidr => {
  if (typeof c === 'string') throw new Error(c);
  return c;
};

test('strict by default: address/prefix-length, no host bits, reasons say what is wrong', (t) => {
  t.like(ok(checkCidr('10.1.0.0/16')), { family: 4, base: 0x0a010000n, prefix: 16, size: 65536n, text: '10.1.0.0/16' });
  t.like(ok(checkCidr('2001:DB8::/32')), { family: 6, prefix: 32, text: '2001:db8::/32' });
  t.is(ok(checkCidr('0.0.0.0/0')).size, 2n ** 32n);
  t.is(checkCidr('10.0.0.5/24'), 'host bits are set (did you mean 10.0.0.0/24?)');
  t.is(checkCidr('10.1.0.0/33'), 'prefix length 33 exceeds 32');
  t.is(checkCidr('2001:db8::/129'), 'prefix length 129 exceeds 128');
  t.is(checkCidr('10.0.0.1'), 'must be a CIDR such as 192.0.2.0/24 (address/prefix-length)');
  t.is(checkCidr('10.0.0.0/'), 'must be a CIDR such as 192.0.2.0/24 (address/prefix-length)');
  t.is(checkCidr('10.0.0.0/1234'), 'must be a CIDR such as 192.0.2.0/24 (address/prefix-length)');
  t.is(checkCidr('10.0.0.0/8/8'), 'must be a CIDR such as 192.0.2.0/24 (address/prefix-length)');
  t.is(checkCidr('010.0.0.0/8'), '"010.0.0.0" is not an IP address');
  t.is(checkCidr('nonsense/8'), '"nonsense" is not an IP address');
  t.is(checkCidr(24), 'must be a CIDR string such as 192.0.2.0/24');
});

test('as a route: a bare address is a host route, host bits are cleared', (t) => {
  const route = { bareAddress: true, clearHostBits: true };
  t.is(parseCidr('10.1.2.7/24', route).text, '10.1.2.0/24');
  t.is(parseCidr('2001:DB8:0:0:1::/64', route).text, '2001:db8::/64');
  t.is(parseCidr('192.0.2.5', route).prefix, 32);
  t.is(parseCidr('2001:db8::5', route).text, '2001:db8::5/128');
  t.is(parseCidr('10.1.2.7/0', route).text, '0.0.0.0/0');
  t.throws(() => parseCidr('10.0.0.0/33', route), { message: 'CIDR "10.0.0.0/33": prefix length 33 exceeds 32' });
  t.throws(() => parseCidr('nonsense/8', route), { message: /not an IP address/ });
  t.throws(() => parseCidr('10.0.0.7/24'), { message: /host bits are set/ }, 'strict unless asked');
});

test('containment and overlap, per family', (t) => {
  const a = parseCidr('10.0.0.0/16');
  const v4 = (s: string) => ipToBigInt(s).value;
  t.true(cidrContains(a, 4, v4('10.0.255.255')));
  t.false(cidrContains(a, 4, v4('10.1.0.0')));
  t.false(cidrContains(a, 6, v4('10.0.0.1')), 'another family never matches');
  t.true(cidrsOverlap(a, parseCidr('10.0.5.0/24')));
  t.true(cidrsOverlap(parseCidr('10.0.5.0/24'), a));
  t.false(cidrsOverlap(a, parseCidr('10.1.0.0/16')));
  t.false(cidrsOverlap(parseCidr('::/0'), parseCidr('0.0.0.0/0')));
  t.true(cidrsOverlap(parseCidr('2001:db8::/32'), parseCidr('2001:db8:1::/48')));
});
