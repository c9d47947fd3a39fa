// bpf/node_probe.c through BPF_PROG_TEST_RUN: a probe whose option arrived
// is marked (flag byte 1, option → NOPs, UDP checksum 0, IP checksum valid);
// everything else continues untouched.
import test from 'ava';
import { BpfObject, type BpfProgram } from '../../src/datapath/loader.js';
import { bpfObjectPath } from '../../src/assets.js';
import { buildPacket, dsrOption, parsePacket, verifyIpv4Checksum, type PacketSpec } from '../lib/packets.js';
import { PROBE_MAGIC, PROBE_PAYLOAD_LEN, probePayload } from '../../src/probe/wire.js';
import { buildPacket6, dsr6Header, NH_DSTOPTS, NH_UDP, padHeader, parse6, verifyL4Checksum6, type ExtHeader } from '../lib/packets6.js';

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

// ---------------------------------------------------------------- IPv6 marker

const EDGE6 = '2001:db8:e::2';
const NODE6 = 'fd00::10';

function probe6(opts: { header?: ExtHeader | null; port?: number; payload?: Buffer; ext?: ExtHeader[] } = {}): Buffer {
  const head = opts.header === null ? [] : [opts.header ?? dsr6Header('::', 0)];
  return buildPacket6({
    eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' },
    ip: { src: EDGE6, dst: NODE6, hopLimit: 63 },
    ext: [...head, ...(opts.ext ?? [])],
    udp: { sport: 40000, dport: opts.port ?? 4790, payload: opts.payload ?? probePayload(Buffer.from('0123456789abcdef', 'hex')) },
  });
}

function stats(): [number, number] {
  const m = obj.map('node_probe_stats');
  const sum = (i: number): number => {
    const v = m.lookup(Buffer.from([i, 0, 0, 0]));
    if (!v) return 0;
    let s = 0;
    for (let o = 0; o + 8 <= v.length; o += 8) s += Number(v.readBigUInt64LE(o));
    return s;
  };
  return [sum(0), sum(1)];
}

test.serial('IPv6: a probe carrying the marker header is marked: flag 1, the option turned into one the stack skips (0x1e), UDP checksum exact', (t) => {
  const [marked0] = stats();
  const input = probe6();
  const { retval, out } = run(input);
  t.is(retval, TC_ACT_UNSPEC, 'continues to the node program');
  t.is(out.length, input.length);
  const ip = out.subarray(14);
  const p = parse6(ip);
  t.deepEqual(p.chain, [NH_DSTOPTS, NH_UDP], 'the header stays, lengths unchanged');
  t.deepEqual([...ip.subarray(40, 64)], [NH_UDP, 2, 0x1e, 18, ...Array<number>(18).fill(0), 1, 0], 'the option\'s action bits cleared (skip if unknown), the rest as sent');
  t.true(verifyL4Checksum6(ip), 'UDP checksum over the pseudo-header, recomputed independently');
  const payload = p.upper.subarray(8);
  t.deepEqual(payload.subarray(0, 8), PROBE_MAGIC);
  t.is(payload[16], 1);
  // The expected frame, built from scratch: option 0x1e, flag 1.
  const want = probe6({ header: dsr6Header('::', 0, { optType: 0x1e }), payload: Buffer.concat([probePayload(Buffer.from('0123456789abcdef', 'hex')).subarray(0, 16), Buffer.from([1])]) });
  t.deepEqual(out, want);
  t.is(stats()[0], marked0 + 1);
});

test.serial('IPv6: a probe whose marker was stripped is left alone and counted; a real VIP, other layouts, ports and payloads are not touched', (t) => {
  const [, unmarked0] = stats();
  const stripped = probe6({ header: null });
  t.deepEqual(run(stripped).out, stripped);
  t.is(stats()[1], unmarked0 + 1);
  for (const input of [
    probe6({ header: dsr6Header('2001:db8:f::10', 80) }),
    probe6({ header: dsr6Header('::', 7) }),
    probe6({ header: dsr6Header('::', 0, { pad: [1, 1] }) }),
    probe6({ header: dsr6Header('::', 0, { optType: 0x1e }) }),
    probe6({ header: padHeader(NH_DSTOPTS) }),
    probe6({ header: dsr6Header('::', 0), port: 4791 }),
    probe6({ header: dsr6Header('::', 0), payload: Buffer.from('NOTAPROBE-0123456') }),
    probe6({ header: dsr6Header('::', 0), payload: Buffer.from('ELBPROBE') }),
  ]) {
    const { retval, out } = run(input);
    t.is(retval, TC_ACT_UNSPEC);
    t.deepEqual(out, input);
  }
});

test('IPv6: truncated probes and a payload length past the frame are left alone', (t) => {
  const full = probe6();
  for (let len = 54; len < full.length; len++) {
    const input = Buffer.from(full.subarray(0, len));
    let r;
    try {
      r = run(input);
    } catch {
      continue; // shorter than the kernel's minimum frame
    }
    t.is(r.retval, TC_ACT_UNSPEC, `length ${len}`);
    t.deepEqual(r.out, input, `length ${len}`);
  }
  const long = Buffer.from(full);
  long.writeUInt16BE(long.length - 14 - 40 + 1, 14 + 4);
  t.deepEqual(run(long).out, long);
});
