// The lab's option-mangling fabric hop (bpf/lab_strip_options.c): strip
// turns a packet with options (IPv4) or a leading Destination Options
// header (IPv6) into exactly the same packet without them; drop drops it;
// packets without them are untouched by both.
import test from 'ava';
import { BpfObject } from '../../src/datapath/loader.js';
import { bpfObjectPath } from '../../src/assets.js';
import { buildPacket, dsrOption, verifyIpv4Checksum, verifyL4Checksum, type PacketSpec } from '../lib/packets.js';
import { buildPacket6, dsr6Header, fragHeader, padHeader, verifyL4Checksum6, NH_DSTOPTS, NH_HOPOPTS, type ExtHeader } from '../lib/packets6.js';

const TC_ACT_OK = 0;
const TC_ACT_SHOT = 2;
let obj: BpfObject;
test.before(() => {
  obj = BpfObject.load(bpfObjectPath('lab_strip_options'));
});
test.after.always(() => obj?.close());

const spec = (options?: Buffer): PacketSpec => ({
  eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' },
  ip: { src: '198.51.100.7', dst: '10.244.1.5', ttl: 62, id: 4242, ...(options ? { options } : {}) },
  tcp: { sport: 51000, dport: 8080, seq: 1, flags: { syn: true }, window: 64240 },
});

test('strip: the output is the same packet built without options', (t) => {
  const r = obj.program('lab_strip_options').testRun({ data: buildPacket(spec(dsrOption('203.0.113.10', 80))) });
  t.is(r.retval, TC_ACT_OK);
  const want = buildPacket(spec());
  t.deepEqual(r.dataOut, want);
  t.true(verifyIpv4Checksum(r.dataOut.subarray(14, 34)));
  t.true(verifyL4Checksum(r.dataOut.subarray(14)));
});

test('drop: packets with options are dropped, others pass', (t) => {
  const prog = obj.program('lab_drop_options');
  t.is(prog.testRun({ data: buildPacket(spec(dsrOption('203.0.113.10', 80))) }).retval, TC_ACT_SHOT);
  const plain = buildPacket(spec());
  const r = prog.testRun({ data: plain });
  t.is(r.retval, TC_ACT_OK);
  t.deepEqual(r.dataOut, plain);
});

test('strip leaves packets without options untouched', (t) => {
  const plain = buildPacket(spec());
  const r = obj.program('lab_strip_options').testRun({ data: plain });
  t.is(r.retval, TC_ACT_OK);
  t.deepEqual(r.dataOut, plain);
});

// IPv6: the same hop for the Destination Options header that carries
// edgelb's IPv6 DSR header (and the probe marker).
const v6 = (ext: ExtHeader[] = [], l4: 'tcp' | 'udp' = 'tcp'): Buffer => buildPacket6({
  eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' },
  ip: { src: '2001:db8:1::7', dst: 'fd00:244::5', hopLimit: 62, flowLabel: 0xabcde },
  ext,
  ...(l4 === 'tcp'
    ? { tcp: { sport: 51000, dport: 8080, seq: 1, flags: { syn: true }, window: 64240 } }
    : { udp: { sport: 40000, dport: 4790, payload: Buffer.from('ELBPROBE12345678\x00') } }),
});

test('IPv6 strip: the Destination Options header after the fixed header is cut out — exactly the packet built without it', (t) => {
  const prog = obj.program('lab_strip_dstopts');
  for (const l4 of ['tcp', 'udp'] as const) {
    for (const [what, h] of [['DSR header', dsr6Header('2001:db8:100::10', 80)], ['probe marker', dsr6Header('::', 0)], ['8-byte padding header', padHeader(NH_DSTOPTS)]] as const) {
      const r = prog.testRun({ data: v6([h], l4) });
      t.is(r.retval, TC_ACT_OK, `${l4} ${what}`);
      t.deepEqual(r.dataOut, v6([], l4), `${l4} ${what}`);
      t.true(verifyL4Checksum6(r.dataOut.subarray(14)), `${l4} ${what}`);
    }
  }
});

test('IPv6 drop: packets whose first extension header is Destination Options are dropped; others pass untouched', (t) => {
  const prog = obj.program('lab_drop_dstopts');
  t.is(prog.testRun({ data: v6([dsr6Header('2001:db8:100::10', 80)]) }).retval, TC_ACT_SHOT);
  t.is(prog.testRun({ data: v6([dsr6Header('::', 0)], 'udp') }).retval, TC_ACT_SHOT);
  for (const data of [v6(), v6([], 'udp'), v6([padHeader(NH_HOPOPTS), dsr6Header('::', 0)]), v6([fragHeader(0, false)]), buildPacket(spec(dsrOption('203.0.113.10', 80)))]) {
    const r = prog.testRun({ data });
    t.is(r.retval, TC_ACT_OK);
    t.deepEqual(r.dataOut, data);
  }
});

test('IPv6 strip leaves alone: no Destination Options first, a header longer than the payload, truncated frames; IPv4 options', (t) => {
  const prog = obj.program('lab_strip_dstopts');
  const lying = v6([dsr6Header('::', 0)], 'udp');
  lying[14 + 41] = 30; // hdr ext len 30: 248 bytes, past the payload
  const whole = v6([dsr6Header('::', 0)]);
  const cases = [v6(), v6([padHeader(NH_HOPOPTS), dsr6Header('::', 0)]), lying, buildPacket(spec(dsrOption('203.0.113.10', 80)))];
  // Cut inside the header (the kernel refuses tc test runs of an IPv6 frame shorter than Ethernet + 40).
  for (let n = 54; n < 54 + 24; n++) cases.push(whole.subarray(0, n));
  for (const data of cases) {
    const r = prog.testRun({ data });
    t.is(r.retval, TC_ACT_OK, `${data.length} bytes`);
    t.deepEqual(r.dataOut, data, `${data.length} bytes`);
  }
});

test('the IPv4 programs pass IPv6 with the header untouched', (t) => {
  const data = v6([dsr6Header('2001:db8:100::10', 80)]);
  for (const sec of ['lab_strip_options', 'lab_drop_options']) {
    const r = obj.program(sec).testRun({ data });
    t.is(r.retval, TC_ACT_OK, sec);
    t.deepEqual(r.dataOut, data, sec);
  }
});
