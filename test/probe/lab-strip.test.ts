// The lab's option-mangling fabric hop (bpf/lab_strip_options.c): strip
// turns a packet with options into exactly the same packet without them;
// drop drops it; packets without options are untouched by both.
import test from 'ava';
import { BpfObject } from '../../src/datapath/loader.js';
import { bpfObjectPath } from '../../src/assets.js';
import { buildPacket, dsrOption, verifyIpv4Checksum, verifyL4Checksum, type PacketSpec } from '../lib/packets.js';

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
