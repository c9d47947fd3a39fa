// bpf/node_probe.c through BPF_PROG_TEST_RUN: a probe whose option arrived
// is marked (flag byte 1, option → NOPs, UDP checksum 0, IP checksum valid);
// everything else continues untouched.
import test from 'ava';
import { BpfObject, type BpfProgram } from '../../src/datapath/loader.js';
import { bpfObjectPath } from '../../src/assets.js';
import { buildPacket, dsrOption, parsePacket, verifyIpv4Checksum, type PacketSpec } from '../lib/packets.js';
import { PROBE_MAGIC, PROBE_PAYLOAD_LEN, probePayload } from '../../src/probe/wire.js';

const TC_ACT_UNSPEC = 0xffffffff; // -1 as the u32 the kernel returns
let obj: BpfObject;
let prog: BpfProgram;

test.before(() => {
  obj = BpfObject.load(bpfObjectPath('node_probe'));
  prog = obj.program('node_probe');
});
test.after.always(() => obj?.close());

const EDGE = '10.1.0.2';
const NODE = '10.2.0.10';

function probe(opts: { option?: Buffer | null; port?: number; payload?: Buffer } = {}): Buffer {
  const spec: PacketSpec = {
    eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' },
    ip: { src: EDGE, dst: NODE, ttl: 63, ...(opts.option === null ? {} : { options: opts.option ?? dsrOption('0.0.0.0', 0) }) },
    udp: { sport: 40000, dport: opts.port ?? 4790, payload: opts.payload ?? probePayload(Buffer.from('0123456789abcdef', 'hex')) },
  };
  return buildPacket(spec);
}

function run(frame: Buffer): { retval: number; out: Buffer } {
  const r = prog.testRun({ data: frame });
  return { retval: r.retval, out: r.dataOut };
}

test('a probe carrying the option is marked: flag 1, option → NOPs, checksums valid', (t) => {
  const input = probe();
  const { retval, out } = run(input);
  t.is(retval, TC_ACT_UNSPEC, 'continues to the node program');
  t.is(out.length, input.length);
  const p = parsePacket(out);
  t.deepEqual([...p.ip!.options], [1, 1, 1, 1, 1, 1, 1, 1]);
  t.true(verifyIpv4Checksum(out.subarray(14, 14 + 28)), 'IP header checksum after the rewrite');
  t.is(p.udp!.checksum, 0, 'UDP checksum disabled (payload changed)');
  const payload = p.udp!.payload;
  t.is(payload.length, PROBE_PAYLOAD_LEN);
  t.deepEqual(payload.subarray(0, 8), PROBE_MAGIC);
  t.is(payload[16], 1);
  // Nothing else changed: same bytes outside option, UDP checksum and flag.
  const mask = (b: Buffer) => {
    const c = Buffer.from(b);
    c.fill(0, 14 + 10, 14 + 12); // IP checksum
    c.fill(0, 14 + 20, 14 + 28); // option
    c.fill(0, 14 + 28 + 6, 14 + 28 + 8); // UDP checksum
    c[c.length - 1] = 0; // flag
    return c;
  };
  t.deepEqual(mask(out), mask(input));
});

test('a probe whose option was stripped on the way is left alone (flag stays 0)', (t) => {
  const input = probe({ option: null });
  const { retval, out } = run(input);
  t.is(retval, TC_ACT_UNSPEC);
  t.deepEqual(out, input);
});

test('the real DSR option (a VIP) on the probe port, other ports and non-probe payloads are not touched', (t) => {
  for (const input of [
    probe({ option: dsrOption('198.51.100.1', 80) }),
    probe({ port: 4791 }),
    probe({ payload: Buffer.from('NOTAPROBE-0123456') }),
    probe({ payload: Buffer.from('ELBPROBE') }),
  ]) {
    const { retval, out } = run(input);
    t.is(retval, TC_ACT_UNSPEC);
    t.deepEqual(out, input);
  }
});

test('truncated probes at every length are left alone', (t) => {
  const full = probe();
  for (let len = 0; len < full.length; len++) {
    const input = full.subarray(0, len);
    // The kernel refuses tc test runs of an IPv4 frame shorter than
    // Ethernet + a 20-byte IP header; such a frame never reaches tc.
    if (len < 34) {
      t.throws(() => run(input), { message: /EINVAL/ }, `length ${len}`);
      continue;
    }
    const { retval, out } = run(input);
    t.is(retval, TC_ACT_UNSPEC, `length ${len}`);
    t.deepEqual(out, input, `length ${len}`);
  }
});
