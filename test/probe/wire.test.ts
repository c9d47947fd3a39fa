// The path probe's wire format (src/probe/wire.ts) against the layouts
// written out byte by byte here and in the shared test builders: the IPv4
// DSR option and the IPv6 Destination Options DSR header, each naming no
// service (VIP unspecified, port 0).
import test from 'ava';
import { isProbePayload, markerName, PROBE_PAYLOAD_LEN, probeMarker, probePayload } from '../../src/probe/wire.js';
import { dsrOption } from '../lib/packets.js';
import { dsr6Header, NH_UDP } from '../lib/packets6.js';

test('IPv4 marker: option 0x9e, length 8, port 0, address 0.0.0.0 — the DSR option naming no VIP', (t) => {
  t.is(probeMarker(4).toString('hex'), '9e08000000000000');
  t.deepEqual(probeMarker(4), dsrOption('0.0.0.0', 0));
});

test('IPv6 marker: the 24-byte Destination Options DSR header, next header UDP, VIP ::, port 0, PadN 01 00', (t) => {
  const m = probeMarker(6);
  t.is(m.toString('hex'), [
    '11', // next header: UDP
    '02', // hdr ext len: (2 + 1) × 8 = 24 bytes
    '5e', // option type: act 01 (discard if unknown), chg 0, number 30
    '12', // option data length 18
    '0000', // port 0
    '00000000000000000000000000000000', // address ::
    '0100', // PadN, no data
  ].join(''));
  const h = dsr6Header('::', 0).bytes;
  h[0] = NH_UDP; // the builder leaves next header to the chain
  t.deepEqual(m, h);
});

test('markers are fresh copies: changing one does not change the next', (t) => {
  probeMarker(6).fill(0xff);
  probeMarker(4).fill(0xff);
  t.is(probeMarker(6)[2], 0x5e);
  t.is(probeMarker(4)[0], 0x9e);
});

test('payload: ELBPROBE | nonce | flag, exact bytes; nonce length checked; recognised only whole', (t) => {
  const nonce = Buffer.from('0102030405060708', 'hex');
  const p = probePayload(nonce, 1);
  t.is(p.toString('hex'), `${Buffer.from('ELBPROBE').toString('hex')}010203040506070801`);
  t.is(p.length, PROBE_PAYLOAD_LEN);
  t.true(isProbePayload(p));
  t.false(isProbePayload(p.subarray(0, 16)));
  t.false(isProbePayload(Buffer.concat([p, Buffer.alloc(1)])));
  t.throws(() => probePayload(Buffer.alloc(7)), { instanceOf: RangeError });
});

test('what carries the marker, by family', (t) => {
  t.is(markerName(4), 'IPv4 options');
  t.is(markerName(6), 'the IPv6 Destination Options header');
});
