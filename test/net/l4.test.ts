import test from 'ava';
import { checkPort, IPPROTO_TCP, IPPROTO_UDP, parseHostPort, protoName, protoNumber, type L4Proto } from '../../src/net/l4.js';

test('protocols: names and numbers both ways, anything else refused', (t) => {
  t.is(protoNumber('TCP'), IPPROTO_TCP);
  t.is(protoNumber('UDP'), IPPROTO_UDP);
  t.is(IPPROTO_TCP, 6);
  t.is(IPPROTO_UDP, 17);
  t.is(protoName(6), 'TCP');
  t.is(protoName(17), 'UDP');
  t.throws(() => protoNumber('SCTP' as L4Proto), { message: "protocol 'SCTP' is not TCP or UDP" });
  t.throws(() => protoName(132), { message: 'IP protocol 132 is not TCP or UDP' });
});

test('ports: 0..65535 integers pass through, the rest is named', (t) => {
  t.is(checkPort(0, 'p'), 0);
  t.is(checkPort(65535, 'p'), 65535);
  for (const bad of [-1, 65536, 1.5, NaN]) t.throws(() => checkPort(bad, 'backend port'), { instanceOf: RangeError, message: `backend port ${bad} is not a port number (0..65535)` });
});

test('ADDRESS:PORT endpoints: IPv6 in brackets, port 1..65535, anything else null', (t) => {
  t.deepEqual(parseHostPort('127.0.0.1:9472'), { address: '127.0.0.1', port: 9472 });
  t.deepEqual(parseHostPort('[::1]:9472'), { address: '::1', port: 9472 });
  t.deepEqual(parseHostPort('0.0.0.0:65535'), { address: '0.0.0.0', port: 65535 });
  for (const bad of ['9472', '127.0.0.1', '127.0.0.1:0', '127.0.0.1:65536', '127.0.0.1:123456', '::1:9472', '[::1]9472', 'localhost:80', '010.0.0.1:80', '[10.0.0.1:80', '']) {
    t.is(parseHostPort(bad), null, bad);
  }
});
