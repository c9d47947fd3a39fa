// The node program's IPv6 paths (bpf/include/node_ingress6.h,
// node_egress6.h) through BPF_PROG_TEST_RUN with real frames: exact output
// bytes (expected frames built from scratch with test/lib/packets6.ts,
// checksums verified by an independent naive sum), map state and counters.
// Wire format: bpf/include/dsr_option.h (Destination Options header, 24
// bytes, option 0x5e carrying port + VIP).
import test from 'ava';
import type { TcpSpec, UdpSpec } from '../lib/packets.js';
import {
  ip6Bytes,
  buildNd6,
  buildPacket6,
  dsr6Header,
  fragHeader,
  NH_DSTOPTS,
  NH_HOPOPTS,
  NH_TCP,
  padHeader,
  parse6,
  verifyL4Checksum6,
  type ExtHeader,
  type Packet6Spec,
} from '../lib/packets6.js';
import {
  decodeFlow6Key,
  decodeFlow6Value,
  decodeFwd6Key,
  decodeFwd6Value,
  decodeSvc6Key,
  decodeSvc6Pick,
  decodeSvc6Value,
  encodeEdgeSourceKey,
  encodeFlow6Key,
  encodeFlow6Value,
  encodeFwd6Key,
  encodeFwd6Value,
  encodeSvc6Key,
  encodeSvc6Value,
  FLOW_CLOSING,
  FLOW_FIN_CLIENT,
  FLOW_FIN_POD,
  FLOW_RST,
  localBackendSlot,
  nodeTupleHash6,
  parseEdgeSource,
} from '../../src/datapath/node-maps.js';
import { localServiceEntries, NodeDatapath } from '../../src/datapath/node-datapath.js';
import { possibleCpus } from '../../src/datapath/loader.js';
import { parseEdgeSources, parseNodeIps } from '../../src/cli/node.js';
import {
  backend,
  CLIENT6,
  EDGE6,
  fromSender,
  loadNode6,
  MAC_A,
  MAC_B,
  MAC_ROUTER,
  NODE_NAME,
  OTHER_NODE_POD6,
  POD6_1,
  POD6_2,
  POD6_3,
  run,
  standardServices as standardServicesV4,
  standardServices6,
  TC_SHOT,
  TC_UNSPEC,
  VIP6,
  VIP6_ELSEWHERE,
} from './node-fixtures.js';

const SEC = 1_000_000_000n;
const eth = { src: MAC_A, dst: MAC_B };
const ethBack = { src: MAC_B, dst: MAC_A };

/** What the edge sends with the Destination Options dispatch: client → pod (DNATed), header = VIP:port. */
function optionSpec(l4: { tcp?: Partial<TcpSpec>; udp?: Partial<UdpSpec> } = {}, o: { src?: string; dst?: string; vip?: string; vport?: number; header?: ExtHeader; ext?: ExtHeader[] } = {}): Packet6Spec {
  const spec: Packet6Spec = {
    eth,
    ip: { src: o.src ?? CLIENT6, dst: o.dst ?? POD6_1, hopLimit: 61, flowLabel: 0x12345 },
    ext: [o.header ?? dsr6Header(o.vip ?? VIP6, o.vport ?? (l4.udp ? 53 : 80)), ...(o.ext ?? [])],
  };
  if (l4.udp) spec.udp = { sport: 40000, dport: 5353, payload: Buffer.from('query'), ...l4.udp };
  else spec.tcp = { sport: 40000, dport: 8080, seq: 1000, flags: { syn: true }, ...l4.tcp };
  return spec;
}

function withoutHeader(spec: Packet6Spec): Buffer {
  return buildPacket6({ ...spec, ext: (spec.ext ?? []).slice(1) });
}

/** A pod's reply: pod → client. */
function reply(l4: { tcp?: Partial<TcpSpec>; udp?: Partial<UdpSpec> } = {}, o: { src?: string; dst?: string } = {}): Packet6Spec {
  const spec: Packet6Spec = { eth: ethBack, ip: { src: o.src ?? POD6_1, dst: o.dst ?? CLIENT6, hopLimit: 64 } };
  if (l4.udp) spec.udp = { sport: 5353, dport: 40000, payload: Buffer.from('answer!'), ...l4.udp };
  else spec.tcp = { sport: 8080, dport: 40000, seq: 5000, ack: 1001, flags: { syn: true, ack: true }, ...l4.tcp };
  return spec;
}

function fromVip(spec: Packet6Spec, vip = VIP6, port = 80): Buffer {
  const out: Packet6Spec = { ...spec, ip: { ...spec.ip, src: vip } };
  if (spec.tcp) out.tcp = { ...spec.tcp, sport: port };
  if (spec.udp) out.udp = { ...spec.udp, sport: port };
  return buildPacket6(out);
}

function wellFormed(t: import('ava').ExecutionContext, frame: Buffer): void {
  const ip = frame.subarray(14);
  const p = parse6(ip);
  t.is(p.payloadLength, ip.length - 40, 'payload length matches the frame');
  t.true(verifyL4Checksum6(ip), 'upper-layer checksum over the IPv6 pseudo-header');
}

// ---------------------------------------------------------------- Destination Options dispatch

test('IPv6 option TCP SYN: flow recorded, the 24-byte header stripped (Next Header, payload length), packet otherwise unchanged', (t) => {
  const dp = loadNode6(t);
  const spec = optionSpec();
  const frame = buildPacket6(spec);
  t.is(frame.length, 14 + 40 + 24 + 20);
  const r = run(dp.ingress, frame);
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, withoutHeader(spec));
  t.deepEqual(parse6(r.out.subarray(14)).chain, [NH_TCP]);
  wellFormed(t, r.out);
  const flows = dp.flows();
  t.is(flows.length, 1);
  t.like(flows[0], { podIp: POD6_1, podPort: 8080, clientIp: CLIENT6, clientPort: 40000, proto: 'TCP', vip: VIP6, vipPort: 80, origin: 'option', flags: 0, expired: false });
  t.like(dp.counters(), { in_opt_flow: 1, in_opt_stripped: 1, in_pass: 0 });
});

test('IPv6 option: headers behind ours stay, only ours is removed', (t) => {
  const dp = loadNode6(t);
  const spec = optionSpec({}, { ext: [padHeader(NH_DSTOPTS)] });
  const r = run(dp.ingress, buildPacket6(spec));
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, withoutHeader(spec));
  t.deepEqual(parse6(r.out.subarray(14)).chain, [NH_DSTOPTS, NH_TCP]);
  t.is(dp.flows().length, 1);
});

test('IPv6 UDP: every datagram carries the header; each stripped, one flow, replies leave from VIP6:53 (exact bytes, checksum)', (t) => {
  const dp = loadNode6(t);
  for (let i = 0; i < 3; i++) {
    const spec = optionSpec({ udp: { payload: Buffer.from(`query ${i}`) } });
    const r = run(dp.ingress, buildPacket6(spec));
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, withoutHeader(spec));
    wellFormed(t, r.out);
  }
  t.is(dp.flows().length, 1);
  const rs = reply({ udp: {} });
  const out = run(dp.egress, buildPacket6(rs));
  t.is(out.retval, TC_UNSPEC);
  t.deepEqual(out.out, fromVip(rs, VIP6, 53));
  wellFormed(t, out.out);
  t.like(dp.counters(), { in_opt_stripped: 3, eg_rewrite: 1 });
});

test('IPv6 egress: a matching reply leaves from VIP6:80 with an exact checksum; other tuples and families pass untouched', (t) => {
  const dp = loadNode6(t);
  run(dp.ingress, buildPacket6(optionSpec()));
  const rs = reply();
  const r = run(dp.egress, buildPacket6(rs));
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, fromVip(rs));
  wellFormed(t, r.out);
  for (const other of [reply({}, { src: POD6_2 }), reply({ tcp: { dport: 40001 } }), reply({ udp: { sport: 8080 } })]) {
    const f = buildPacket6(other);
    t.deepEqual(run(dp.egress, f).out, f);
  }
  // A payload of every length keeps the checksum exact (odd lengths, a sum that folds to 0).
  for (let n = 0; n < 64; n++) {
    const s = reply({ tcp: { flags: { ack: true }, payload: Buffer.alloc(n, n * 37) } });
    const o = run(dp.egress, buildPacket6(s)).out;
    t.deepEqual(o, fromVip(s));
  }
  t.like(dp.counters(), { eg_rewrite: 65, eg_pass: 3 });
});

test('IPv6 egress: the direct read of a reply and the general parse agree at every edge — lengths, data offset, jumbo, padding, truncation', (t) => {
  const dp = loadNode6(t);
  run(dp.ingress, buildPacket6(optionSpec()));
  run(dp.ingress, buildPacket6(optionSpec({ udp: {} })));
  const tcp = reply({ tcp: { flags: { ack: true }, payload: Buffer.from('hello') } });
  const udp = reply({ udp: {} });
  const withPlen = (f: Buffer, plen: number): Buffer => {
    const g = Buffer.from(f);
    g.writeUInt16BE(plen, 14 + 4);
    return g;
  };
  for (const [spec, port] of [[tcp, 80], [udp, 53]] as const) {
    const f = buildPacket6(spec);
    const want = fromVip(spec, VIP6, port);
    // Ethernet padding behind the packet: rewritten, the padding kept.
    const padded = Buffer.concat([f, Buffer.alloc(6, 0xee)]);
    t.deepEqual(run(dp.egress, padded).out, Buffer.concat([want, Buffer.alloc(6, 0xee)]));
    // Payload length 0 with bytes behind the header (jumbogram / BIG TCP): the general parse takes it.
    t.deepEqual(run(dp.egress, withPlen(f, 0)).out, withPlen(want, 0));
    // A payload length past the frame, or too short for the upper-layer header: untouched.
    for (const bad of [withPlen(f, f.length - 14 - 40 + 1), withPlen(f, spec.tcp ? 19 : 7)]) t.deepEqual(run(dp.egress, bad).out, bad);
    // Truncated at every length: never rewritten.
    for (let len = 14; len < f.length; len++) {
      const cut = Buffer.from(f.subarray(0, len));
      let r;
      try {
        r = run(dp.egress, cut);
      } catch {
        continue; // shorter than the kernel's minimum frame
      }
      t.deepEqual(r.out, cut, `length ${len}`);
    }
  }
  // A TCP data offset below 5 cannot be a header: untouched.
  const f = buildPacket6(tcp);
  const doff4 = Buffer.from(f);
  doff4[14 + 40 + 12] = 4 << 4;
  t.deepEqual(run(dp.egress, doff4).out, doff4);
});

test('IPv6 egress: a pod\'s fragmented UDP reply leaves from the VIP in every fragment, not only the first (the later ones carry no ports)', (t) => {
  const dp = loadNode6(t);
  run(dp.ingress, buildPacket6(optionSpec({ udp: {} })));
  const first = reply({ udp: { payload: Buffer.alloc(48, 1) } });
  first.ext = [fragHeader(0, true, 0xabcd)];
  t.deepEqual(run(dp.egress, buildPacket6(first)).out, fromVip(first, VIP6, 53));
  const piece = (src: string, offset: number, more: boolean, id = 0xabcd): Packet6Spec => ({
    eth: ethBack,
    ip: { src, dst: CLIENT6, hopLimit: 64 },
    ext: [fragHeader(offset, more, id)],
    raw: { nh: 17, bytes: Buffer.alloc(64, offset) },
  });
  for (const spec of [piece(POD6_1, 7, true), piece(POD6_1, 15, false)]) {
    const r = run(dp.egress, buildPacket6(spec));
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, buildPacket6({ ...spec, ip: { ...spec.ip, src: VIP6 } }), `fragment at ${spec.ext![0]!.bytes.readUInt16BE(2) >> 3} leaves from the VIP`);
  }
  // A fragment after the last one, another datagram's, another pod's: untouched.
  for (const spec of [piece(POD6_1, 7, true), piece(POD6_1, 7, true, 0xabce), piece(POD6_2, 7, true)]) {
    const f = buildPacket6(spec);
    t.deepEqual(run(dp.egress, f).out, f);
  }
  t.like(dp.counters(), { eg_rewrite: 1, eg_frag: 2, eg_pass: 3 });
});

test('IPv6 egress: a second Fragment header (RFC 8200 allows one) is not read as a later fragment of a rewritten reply: untouched', (t) => {
  const dp = loadNode6(t);
  run(dp.ingress, buildPacket6(optionSpec({ udp: {} })));
  const first = reply({ udp: { payload: Buffer.alloc(48, 1) } });
  first.ext = [fragHeader(0, true, 0xabcd)];
  t.deepEqual(run(dp.egress, buildPacket6(first)).out, fromVip(first, VIP6, 53));
  // An "atomic" first header, then one at offset 7 of the same datagram:
  // no receiver reassembles that, and its second header's offset is not
  // this packet's place in any datagram the flow sent.
  for (const ext of [[fragHeader(0, true, 0xabcd), fragHeader(7, true, 0xabcd)], [fragHeader(0, false, 0xabcd), fragHeader(7, false, 0xabcd)]]) {
    const f = buildPacket6({ eth: ethBack, ip: { src: POD6_1, dst: CLIENT6, hopLimit: 64 }, ext, raw: { nh: 17, bytes: Buffer.alloc(64, 7) } });
    t.deepEqual(run(dp.egress, f).out, f);
  }
  t.like(dp.counters(), { eg_rewrite: 1, eg_frag: 0 });
});

test('IPv6 UDP reply with checksum 0 (invalid over IPv6) keeps 0, so the client still drops it', (t) => {
  const dp = loadNode6(t);
  run(dp.ingress, buildPacket6(optionSpec({ udp: {} })));
  const rs = reply({ udp: { checksum: 0 } });
  const r = run(dp.egress, buildPacket6(rs));
  t.deepEqual(r.out, fromVip(rs, VIP6, 53));
  t.is(r.out.readUInt16BE(14 + 40 + 6), 0);
});

// ---------------------------------------------------------------- ICMPv6 errors

/** The client's datagram as the pod received it (header stripped): client:40000 → pod:5353. */
function quotedQuery(): Buffer {
  return buildPacket6({ eth: false, ip: { src: CLIENT6, dst: POD6_1, hopLimit: 61 }, udp: { sport: 40000, dport: 5353, payload: Buffer.from('query') } });
}

/** A quote re-addressed by hand: `field` ('src' | 'dst') becomes addr:port; its own checksum left as it was. */
function readdressed(quote: Buffer, field: 'src' | 'dst', addr: string, port: number): Buffer {
  const q = Buffer.from(quote);
  ip6Bytes(addr).copy(q, field === 'src' ? 8 : 24);
  q.writeUInt16BE(port, field === 'src' ? 40 : 42);
  return q;
}

/** An ICMPv6 error (type, code, 4-byte word 0 or the MTU) quoting `quote`; its checksum computed from scratch. */
function icmp6Error(src: string, dst: string, quote: Buffer, type = 1, code = 4, word = 0, ethSpec = ethBack): Buffer {
  const body = Buffer.alloc(4 + quote.length);
  body.writeUInt32BE(word, 0);
  quote.copy(body, 4);
  return buildPacket6({ eth: ethSpec, ip: { src, dst, hopLimit: 64 }, icmp6: { type, code, body } });
}

test('IPv6: a pod\'s ICMPv6 error about a VIP flow leaves as the VIP\'s (source and quoted destination VIP6:53, ICMPv6 checksum recomputed independently); others pass untouched', (t) => {
  const dp = loadNode6(t);
  run(dp.ingress, buildPacket6(optionSpec({ udp: {} })));
  const quote = quotedQuery();
  for (const [type, code, word] of [[1, 4, 0], [2, 0, 1400], [3, 0, 0], [4, 0, 6]] as const) {
    const r = run(dp.egress, icmp6Error(POD6_1, CLIENT6, quote, type, code, word));
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, icmp6Error(VIP6, CLIENT6, readdressed(quote, 'dst', VIP6, 53), type, code, word), `type ${type}`);
    t.true(verifyL4Checksum6(r.out.subarray(14)));
  }
  t.like(dp.counters(), { eg_icmp: 4 });
  const untouched = [
    icmp6Error(POD6_1, CLIENT6, readdressed(quote, 'dst', POD6_1, 5354)), // no such flow
    icmp6Error(POD6_1, '2001:db8:c::8', quote), // quote's source is not the error's destination
    icmp6Error(POD6_2, CLIENT6, quote), // quote's destination is not the error's source
    icmp6Error(POD6_1, CLIENT6, quote.subarray(0, 40 + 4)), // too short a quote
    icmp6Error(POD6_1, CLIENT6, quote, 129, 0), // an echo reply is no error
    buildPacket6({ eth: ethBack, ip: { src: POD6_1, dst: CLIENT6 }, ext: [padHeader(NH_DSTOPTS)], icmp6: { type: 1, code: 4, body: Buffer.concat([Buffer.alloc(4), quote]) } }), // extension header
  ];
  for (const f of untouched) t.deepEqual(run(dp.egress, f).out, f);
  t.like(dp.counters(), { eg_icmp: 4 });
  // Truncated at every length: never rewritten.
  const full = icmp6Error(POD6_1, CLIENT6, quote);
  for (let len = 54; len < full.length; len++) {
    const cut = Buffer.from(full.subarray(0, len));
    t.deepEqual(run(dp.egress, cut).out, cut, `length ${len}`);
  }
});

// ---------------------------------------------------------------- attacks and malformed headers

test('IPv6 attack: the header from a link-layer sender that is no edge is dropped and counted, nothing recorded', (t) => {
  const dp = loadNode6(t);
  const r = run(dp.ingress, fromSender(buildPacket6(optionSpec()), MAC_ROUTER));
  t.is(r.retval, TC_SHOT);
  t.is(dp.flows().length, 0);
  t.like(dp.counters(), { drop_untrusted_source: 1, in_opt_flow: 0 });
  // With no neighbour trusted at all, the edge's own frame is refused too.
  const dp2 = loadNode6(t, {}, { edgeMac: null });
  t.is(run(dp2.ingress, buildPacket6(optionSpec())).retval, TC_SHOT);
  t.like(dp2.counters(), { drop_untrusted_source: 1 });
});

test('IPv6 attack: a header naming a VIP:port that is no frontend, or a destination that is none of its pods here, is dropped', (t) => {
  const dp = loadNode6(t);
  const cases: Array<[Packet6Spec, string]> = [
    [optionSpec({}, { vip: '2001:db8:f::99' }), 'drop_unknown_vip'],
    [optionSpec({}, { vport: 81 }), 'drop_unknown_vip'],
    [optionSpec({}, { dst: OTHER_NODE_POD6 }), 'drop_wrong_backend'],
    [optionSpec({ tcp: { dport: 22 } }), 'drop_wrong_backend'],
    [optionSpec({}, { vip: VIP6_ELSEWHERE }), 'drop_wrong_backend'],
  ];
  for (const [spec, reason] of cases) {
    dp.resetCounters();
    t.is(run(dp.ingress, buildPacket6(spec)).retval, TC_SHOT, reason);
    t.is(dp.counters()[reason as 'drop_unknown_vip'], 1, reason);
  }
  t.is(dp.flows().length, 0);
});

test('IPv6 malformed headers: wrong lengths or padding, our option not first, a fragment, truncated TCP — dropped and counted', (t) => {
  const dp = loadNode6(t);
  const bad: Array<[Buffer, string]> = [
    [buildPacket6(optionSpec({}, { header: dsr6Header(VIP6, 80, { optLen: 17 }) })), 'drop_bad_option'],
    [buildPacket6(optionSpec({}, { header: dsr6Header(VIP6, 80, { pad: [1, 1] }) })), 'drop_bad_option'],
    [buildPacket6(optionSpec({}, { header: dsr6Header(VIP6, 80, { pad: [0, 0] }) })), 'drop_bad_option'],
    // hdrlen 3 (32 bytes): the whole header must be our 24.
    [buildPacket6(optionSpec({}, { header: { type: NH_DSTOPTS, bytes: Buffer.concat([dsr6Header(VIP6, 80, { hdrlen: 3 }).bytes, Buffer.from([1, 6, 0, 0, 0, 0, 0, 0])]) } })), 'drop_bad_option'],
    // Our option behind a Hop-by-Hop header (not the first extension header).
    [buildPacket6({ ...optionSpec(), ext: [padHeader(NH_HOPOPTS), dsr6Header(VIP6, 80)] }), 'drop_bad_option'],
    // Our option second in a Destination Options header.
    [buildPacket6({ ...optionSpec(), ext: [{ type: NH_DSTOPTS, bytes: Buffer.from([0, 3, 1, 2, 0, 0, ...dsr6Header(VIP6, 80).bytes.subarray(2, 22), 1, 0]) }] }), 'drop_bad_option'],
    [buildPacket6(optionSpec({}, { ext: [fragHeader(0, true)] })), 'drop_malformed'],
    // Payload length 0 (a jumbogram / BIG TCP packet): never sent with the header; shrinking it would wrap.
    [buildPacket6({ ...optionSpec(), ip: { ...optionSpec().ip, payloadLength: 0 } }), 'drop_malformed'],
    [buildPacket6(optionSpec({}, { ext: [fragHeader(8, false)] })), 'drop_malformed'],
  ];
  for (const [frame, reason] of bad) {
    dp.resetCounters();
    t.is(run(dp.ingress, frame).retval, TC_SHOT, reason);
    t.is(dp.counters()[reason as 'drop_bad_option'], 1, reason);
  }
  // Truncated TCP behind an intact header: payload length says 24 + 10.
  const full = buildPacket6(optionSpec());
  const cut = Buffer.from(full.subarray(0, 14 + 40 + 24 + 10));
  cut.writeUInt16BE(24 + 10, 14 + 4);
  dp.resetCounters();
  t.is(run(dp.ingress, cut).retval, TC_SHOT);
  t.like(dp.counters(), { drop_malformed: 1 });
  t.is(dp.flows().length, 0);
});

test('IPv6 blind RST: a client RST (no header) marks the flow but does not end it; replies keep leaving from the VIP, traffic clears the mark', (t) => {
  const dp = loadNode6(t);
  dp.setTestClock(1000n * SEC);
  run(dp.ingress, buildPacket6(optionSpec()));
  const rst: Packet6Spec = { eth, ip: { src: CLIENT6, dst: POD6_1 }, tcp: { sport: 40000, dport: 8080, seq: 999999, flags: { rst: true } } };
  const f = buildPacket6(rst);
  const r = run(dp.ingress, f);
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, f, 'the RST itself passes untouched (the pod judges its sequence number)');
  t.is(dp.flows()[0]!.flags & FLOW_RST, FLOW_RST);
  t.like(dp.counters(), { in_rst: 1 });
  dp.setTestClock(1010n * SEC);
  const rs = reply({ tcp: { flags: { ack: true } } });
  t.deepEqual(run(dp.egress, buildPacket6(rs)).out, fromVip(rs), 'still rewritten after the RST and a long silence');
  t.is(dp.flows()[0]!.flags & FLOW_RST, 0, 'the reply proved the connection alive');
});

test('IPv6: a packet that is not a SYN never re-points a live flow at another VIP', (t) => {
  const dp = loadNode6(t);
  dp.setTestClock(1000n * SEC);
  run(dp.ingress, buildPacket6(optionSpec({ udp: {} })));
  dp.applyServices([...standardServices6(), { ...standardServices6()[1]!, service: 'ns/other', frontend: { vip: '2001:db8:f::12', port: 53, protocol: 'UDP' } }], { name: NODE_NAME });
  t.is(run(dp.ingress, buildPacket6(optionSpec({ udp: {} }, { vip: '2001:db8:f::12' }))).retval, TC_SHOT);
  t.like(dp.counters(), { drop_vip_conflict: 1 });
  t.like(dp.flows()[0], { vip: VIP6, vipPort: 53 });
});

test('IPv6 flood: new flows beyond the per-CPU insert limit are dropped and counted; the established one keeps being rewritten', (t) => {
  const dp = loadNode6(t, { flowInsertLimit: 3 });
  dp.setTestClock(5000n * SEC);
  let dropped = 0;
  for (let i = 0; i < 10; i++) {
    const r = run(dp.ingress, buildPacket6(optionSpec({ tcp: { sport: 41000 + i } })));
    if (r.retval === TC_SHOT) dropped++;
  }
  // 3 per CPU per window (the test clock stands still: one window); the runs may spread over every CPU.
  t.true(dropped <= 7 && dropped >= 10 - 3 * possibleCpus(), `dropped ${dropped}`);
  t.like(dp.counters(), { drop_insert_limit: dropped });
  const rs = reply({ tcp: { dport: 41000 } });
  t.deepEqual(run(dp.egress, buildPacket6(rs)).out, fromVip(rs));
});

// ---------------------------------------------------------------- IP6IP6

function tunnel(inner: Omit<Packet6Spec, 'eth'>, outer: { src?: string; dst?: string } = {}): Packet6Spec {
  return { eth, ip: { src: outer.src ?? EDGE6, dst: outer.dst ?? 'fd00::21', hopLimit: 64, flowLabel: 0xabcde }, inner };
}

test('IP6IP6: decapsulated, DNATed to the hashed local pod (exact bytes, checksum), flow and pin remembered, the reply leaves from the VIP', (t) => {
  const dp = loadNode6(t);
  const inner: Omit<Packet6Spec, 'eth'> = { ip: { src: CLIENT6, dst: VIP6, hopLimit: 60 }, tcp: { sport: 40000, dport: 80, seq: 7, flags: { syn: true } } };
  const r = run(dp.ingress, buildPacket6(tunnel(inner)));
  t.is(r.retval, TC_UNSPEC);
  const pods = [POD6_1, POD6_2, POD6_3];
  const pod = pods[localBackendSlot(CLIENT6, VIP6, 40000, 80, 'TCP', 3)]!;
  const expected = buildPacket6({ eth, ip: { ...inner.ip, dst: pod }, tcp: { ...inner.tcp!, dport: 8080 } });
  t.deepEqual(r.out, expected);
  wellFormed(t, r.out);
  t.like(dp.flows()[0], { podIp: pod, clientIp: CLIENT6, vip: VIP6, vipPort: 80, origin: 'ipip' });
  t.like(dp.fwdEntries()[0], { clientIp: CLIENT6, vip: VIP6, podIp: pod, podPort: 8080 });
  t.like(dp.counters(), { in_ipip_dnat: 1, in_ipip_new_flow: 1 });
  const rs = reply({}, { src: pod });
  t.deepEqual(run(dp.egress, buildPacket6(rs)).out, fromVip(rs));
  // The next segment follows the pin.
  const again = run(dp.ingress, buildPacket6(tunnel({ ...inner, tcp: { ...inner.tcp!, flags: { ack: true } } })));
  t.deepEqual(again.out, buildPacket6({ eth, ip: { ...inner.ip, dst: pod }, tcp: { ...inner.tcp!, flags: { ack: true }, dport: 8080 } }));
});

test('IP6IP6 UDP: a flow pinned to a pod that left this node moves to a pod that is here, within a second, even while the client keeps sending', (t) => {
  const dp = loadNode6(t);
  const t0 = 1000n * SEC;
  dp.setTestClock(t0);
  const datagram = buildPacket6(tunnel({ ip: { src: CLIENT6, dst: VIP6, hopLimit: 60 }, udp: { sport: 5001, dport: 53, payload: Buffer.from('q') } }));
  const podOf = (): string => {
    const dst = run(dp.ingress, datagram).out.subarray(14 + 24, 14 + 40);
    return [POD6_1, POD6_2].find((p) => ip6Bytes(p).equals(dst)) ?? 'another address';
  };
  const first = podOf();
  t.not(first, 'another address');
  const other = first === POD6_1 ? POD6_2 : POD6_1;
  const [svc80, svc53, ...rest] = standardServices6();
  dp.applyServices([...standardServicesV4(), svc80!, { ...svc53!, backends: [backend(first, 5353, NODE_NAME, 'terminating'), backend(other, 5353)] }, ...rest], { name: NODE_NAME });
  dp.setTestClock(t0 + 2n * SEC);
  t.is(podOf(), first, 'a terminating pod keeps its flow');
  dp.applyServices([...standardServicesV4(), svc80!, { ...svc53!, backends: [backend(other, 5353)] }, ...rest], { name: NODE_NAME });
  for (const ms of [3500n, 3600n, 5000n]) {
    dp.setTestClock(t0 + ms * 1_000_000n);
    t.is(podOf(), other, `datagram at +${ms} ms goes to a pod that is here`);
  }
});

test('a FIN or RST outside the tunnel never moves an IP6IP6 flow towards its end (as for IPv4)', (t) => {
  const dp = loadNode6(t, { closeSeconds: 10 });
  const t0 = 1000n * SEC;
  dp.setTestClock(t0);
  const seg = (flags: TcpSpec['flags']): Buffer => buildPacket6(tunnel({ ip: { src: CLIENT6, dst: VIP6, hopLimit: 60 }, tcp: { sport: 41000, dport: 80, flags } }));
  run(dp.ingress, seg({ syn: true }));
  const pod = dp.fwdEntries()[0]!.podIp;
  const key = { podIp: pod, podPort: 8080, clientIp: CLIENT6, clientPort: 41000, proto: 'TCP' as const };
  for (const [flags, sender] of [[{ fin: true, ack: true }, MAC_ROUTER], [{ rst: true }, MAC_ROUTER], [{ fin: true, ack: true }, MAC_A]] as const) {
    const forged = fromSender(buildPacket6({ eth, ip: { src: CLIENT6, dst: pod, hopLimit: 60 }, tcp: { sport: 41000, dport: 8080, seq: 99, flags } }), sender);
    const r = run(dp.ingress, forged);
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, forged);
    t.is(dp.flow(key)!.flags, 0, `${JSON.stringify(flags)} from ${sender} left the flow alone`);
  }
  run(dp.egress, buildPacket6(reply({ tcp: { dport: 41000, flags: { fin: true, ack: true } } }, { src: pod })));
  dp.setTestClock(t0 + 11n * SEC);
  const later = reply({ tcp: { dport: 41000, flags: { ack: true, psh: true }, payload: Buffer.from('tail') } }, { src: pod });
  t.deepEqual(run(dp.egress, buildPacket6(later)).out, fromVip(later));
  run(dp.ingress, seg({ fin: true, ack: true }));
  t.is(dp.flow(key)!.flags, FLOW_FIN_POD | FLOW_FIN_CLIENT | FLOW_CLOSING);
});

test('IP6IP6 carrying an ICMPv6 error about a VIP flow (Packet Too Big from a router on the client\'s path): decapsulated and steered to the flow\'s pod, destination and quoted source pod:8080, checksum recomputed independently', (t) => {
  const dp = loadNode6(t);
  const ROUTER6 = '2001:db8:7::1';
  const syn: Omit<Packet6Spec, 'eth'> = { ip: { src: CLIENT6, dst: VIP6, hopLimit: 60 }, tcp: { sport: 40000, dport: 80, seq: 7, flags: { syn: true } } };
  t.is(run(dp.ingress, buildPacket6(tunnel(syn))).retval, TC_UNSPEC);
  const pod = [POD6_1, POD6_2, POD6_3][localBackendSlot(CLIENT6, VIP6, 40000, 80, 'TCP', 3)]!;
  // The pod's reply as it left the node (from the VIP), quoted by the router.
  const quote = buildPacket6({ eth: false, ip: { src: VIP6, dst: CLIENT6 }, tcp: { sport: 80, dport: 40000, seq: 5000, ack: 8, flags: { syn: true, ack: true }, payload: Buffer.alloc(32, 7) } });
  const ptb = (dst: string, q: Buffer): Omit<Packet6Spec, 'eth'> => ({ ip: { src: ROUTER6, dst, hopLimit: 62 }, icmp6: { type: 2, code: 0, body: Buffer.concat([Buffer.from([0, 0, 0x05, 0x00]), q]) } });
  const r = run(dp.ingress, buildPacket6(tunnel(ptb(VIP6, quote))));
  t.is(r.retval, TC_UNSPEC);
  const want = buildPacket6({ eth, ...ptb(pod, readdressed(quote, 'src', pod, 8080)) });
  t.deepEqual(r.out, want);
  t.true(verifyL4Checksum6(r.out.subarray(14)));
  t.like(dp.counters(), { in_ipip_icmp: 1 });
  // From a sender that is no edge: dropped. About no flow of ours, or to another of the node's addresses: untouched.
  t.is(run(dp.ingress, fromSender(buildPacket6(tunnel(ptb(VIP6, quote))), MAC_ROUTER)).retval, TC_SHOT);
  t.like(dp.counters(), { drop_untrusted_source: 1 });
  for (const f of [
    buildPacket6(tunnel(ptb(VIP6, readdressed(quote, 'dst', CLIENT6, 40001)))),
    buildPacket6(tunnel(ptb(VIP6, quote.subarray(0, 40 + 4)))),
    buildPacket6(tunnel(ptb(VIP6_ELSEWHERE, readdressed(quote, 'src', VIP6_ELSEWHERE, 80)))),
    buildPacket6(tunnel({ ...ptb(VIP6, quote), icmp6: { type: 128, code: 0, body: Buffer.alloc(8) } })),
  ]) {
    const o = run(dp.ingress, f);
    t.is(o.retval, TC_UNSPEC);
    t.deepEqual(o.out, f);
  }
  t.like(dp.counters(), { in_ipip_icmp: 1 });
  const pinned = loadNode6(t, { nodeIp6: 'fd00::21' });
  run(pinned.ingress, buildPacket6(tunnel(syn)));
  const elsewhere = buildPacket6(tunnel(ptb(VIP6, quote), { dst: 'fd00::22' }));
  t.deepEqual(run(pinned.ingress, elsewhere).out, elsewhere);
});

// The edge's IP6IP6 has no extension header on its outer packet, and the
// node passed any other IP6IP6 untouched — with a Hop-by-Hop, Destination
// Options or Fragment header in front, a stranger's tunnel to a frontend
// too. The kernel processes those headers (reassembles the fragments) and an
// ip6tnl device decapsulates the inner packet to the VIP all the same: past
// the trust boundary.
test('IP6IP6 trust: a stranger\'s tunnel to a frontend behind an outer extension or Fragment header is dropped; an edge\'s, the CNI\'s and a later fragment pass', (t) => {
  const dp = loadNode6(t);
  const innerSpec: Omit<Packet6Spec, 'eth'> = { ip: { src: CLIENT6, dst: VIP6 }, tcp: { sport: 40000, dport: 80, flags: { syn: true }, payload: Buffer.alloc(1200, 1) } };
  const inner = buildPacket6({ ...innerSpec, eth: false });
  const outer = (src: string, ext: ExtHeader[], bytes: Buffer): Buffer => buildPacket6({ eth, ip: { src, dst: 'fd00::21' }, ext, raw: { nh: 41, bytes } });
  const stranger = '2001:db8:bad::1';
  const forged = [
    outer(stranger, [padHeader(NH_HOPOPTS)], inner),
    fromSender(outer(EDGE6, [padHeader(NH_DSTOPTS)], inner), MAC_ROUTER),
    outer(stranger, [fragHeader(0, true)], inner.subarray(0, 600)), // the first fragment
    outer(stranger, [fragHeader(0, true)], inner.subarray(0, 40)), // cut before the inner ports
  ];
  for (const f of forged) t.is(run(dp.ingress, f).retval, TC_SHOT); // before: TC_UNSPEC, untouched
  t.like(dp.counters(), { drop_untrusted_source: forged.length });
  const cni = buildPacket6({ ...innerSpec, ip: { src: CLIENT6, dst: 'fd00:10:244:1::99' }, eth: false });
  const pass = [
    outer(stranger, [fragHeader(75, false)], inner.subarray(600)), // no inner header in it
    outer(EDGE6, [fragHeader(0, true)], inner.subarray(0, 600)), // an edge's
    outer(stranger, [fragHeader(0, true)], cni.subarray(0, 600)), // no frontend inside
    outer(stranger, [padHeader(NH_DSTOPTS)], cni),
  ];
  for (const f of pass) t.deepEqual(run(dp.ingress, f), { retval: TC_UNSPEC, out: f });
  t.like(dp.counters(), { drop_untrusted_source: forged.length, in_ipip_dnat: 0 });
  t.is(dp.flows().length, 0);
});

// The node took IP6IP6 whose inner packet carries a Fragment header for no
// packet of ours and passed it on, trust unchecked: the kernel decapsulates
// it (ip6tnl) and reassembles the inner datagram to the VIP.
test('IP6IP6 trust: a stranger\'s tunnel around an inner first fragment to a frontend (or one cut before its ports) is dropped; an edge\'s, the CNI\'s and later fragments pass', (t) => {
  const dp = loadNode6(t);
  const seg = buildPacket6({ eth: false, ip: { src: CLIENT6, dst: VIP6 }, tcp: { sport: 40000, dport: 80, flags: { syn: true }, payload: Buffer.alloc(64, 1) } }).subarray(40);
  /** IP6IP6 from `src` around the client's fragment at `offset` (8-byte units) holding `bytes` of the segment. */
  const around = (src: string, bytes: Buffer, offset = 0, more = true, dst = VIP6): Buffer =>
    buildPacket6(tunnel({ ip: { src: CLIENT6, dst }, ext: [fragHeader(offset, more)], raw: { nh: NH_TCP, bytes } }, { src }));
  const stranger = '2001:db8:bad::1';
  const forged = [
    around(stranger, seg.subarray(0, 48)), // a first fragment, its TCP header whole
    fromSender(around(EDGE6, seg.subarray(0, 48)), MAC_ROUTER),
    around(stranger, seg.subarray(0, 8)), // cut inside the TCP header (RFC 1858)
    around(stranger, seg, 0, false), // an atomic fragment: the whole segment
  ];
  for (const f of forged) t.is(run(dp.ingress, f).retval, TC_SHOT); // before: TC_UNSPEC, untouched
  t.like(dp.counters(), { drop_untrusted_source: forged.length });
  const pass = [
    around(stranger, seg.subarray(48), 6, false), // a later fragment: no ports in it
    around(EDGE6, seg.subarray(0, 48)), // an edge's
    around(stranger, seg.subarray(0, 48), 0, true, 'fd00:10:244:1::99'), // no frontend inside
  ];
  for (const f of pass) t.deepEqual(run(dp.ingress, f), { retval: TC_UNSPEC, out: f });
  t.like(dp.counters(), { drop_untrusted_source: forged.length, in_ipip_dnat: 0 });
  t.is(dp.flows().length, 0);
});

test('IP6IP6 trust: from outside the edge sources or from an unknown neighbour it is dropped; to no local frontend it passes untouched', (t) => {
  const dp = loadNode6(t);
  const inner: Omit<Packet6Spec, 'eth'> = { ip: { src: CLIENT6, dst: VIP6 }, udp: { sport: 1, dport: 53 } };
  t.is(run(dp.ingress, buildPacket6(tunnel(inner, { src: '2001:db8:bad::1' }))).retval, TC_SHOT);
  t.is(run(dp.ingress, fromSender(buildPacket6(tunnel(inner)), MAC_ROUTER)).retval, TC_SHOT);
  t.like(dp.counters(), { drop_untrusted_source: 2 });
  t.is(dp.flows().length, 0);
  const cni = buildPacket6(tunnel({ ip: { src: CLIENT6, dst: 'fd00:10:244:1::99' }, udp: { sport: 1, dport: 53 } }, { src: '2001:db8:bad::1' }));
  const r = run(dp.ingress, cni);
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, cni);
  t.like(dp.counters(), { in_ipip_not_ours: 1 });
});

test('IP6IP6 with --node-ip naming an IPv6 address: decapsulated only when the outer destination is that address; tunnels to the node\'s other addresses pass untouched', (t) => {
  const NODE_IP6 = 'fd00::21';
  const dp = loadNode6(t, { nodeIp6: NODE_IP6 });
  t.is(dp.nodeIp6(), NODE_IP6);
  const inner: Omit<Packet6Spec, 'eth'> = { ip: { src: CLIENT6, dst: VIP6, hopLimit: 60 }, tcp: { sport: 40000, dport: 80, seq: 7, flags: { syn: true } } };
  for (const other of ['fd00::22', 'fd00::21:0', '::']) {
    const f = buildPacket6(tunnel(inner, { dst: other }));
    const r = run(dp.ingress, f);
    t.is(r.retval, TC_UNSPEC, other);
    t.deepEqual(r.out, f, `to ${other}: untouched`);
  }
  t.like(dp.counters(), { in_ipip_not_ours: 3, in_ipip_dnat: 0 });
  t.is(dp.flows().length, 0);
  const r = run(dp.ingress, buildPacket6(tunnel(inner, { dst: NODE_IP6 })));
  t.is(r.retval, TC_UNSPEC);
  t.like(dp.counters(), { in_ipip_dnat: 1 });
  t.is(r.out.length, 14 + 40 + 20, 'decapsulated');
  // Without an IPv6 node address, the outer destination is not checked (as before).
  const open = loadNode6(t);
  t.is(open.nodeIp6(), null);
  t.is(run(open.ingress, buildPacket6(tunnel(inner, { dst: 'fd00::22' }))).out.length, 14 + 40 + 20);
});

test('IP6IP6 with --node-ip: a stranger\'s tunnel to a frontend addressed to another of the node\'s addresses is dropped, not passed to the kernel\'s decapsulation', (t) => {
  const dp = loadNode6(t, { nodeIp6: 'fd00::21' });
  const inner: Omit<Packet6Spec, 'eth'> = { ip: { src: CLIENT6, dst: VIP6 }, tcp: { sport: 40000, dport: 80, flags: { syn: true } } };
  const forged = [buildPacket6(tunnel(inner, { src: '2001:db8:bad::1', dst: 'fd00::22' })), fromSender(buildPacket6(tunnel(inner, { dst: 'fd00::22' })), MAC_ROUTER)];
  for (const f of forged) t.is(run(dp.ingress, f).retval, TC_SHOT); // before: TC_UNSPEC, untouched
  t.like(dp.counters(), { drop_untrusted_source: forged.length, in_ipip_dnat: 0 });
  // The CNI's (no frontend inside) passes untouched; an edge's too (the test above).
  const cni = buildPacket6(tunnel({ ip: { src: CLIENT6, dst: 'fd00:10:244:1::99' }, udp: { sport: 1, dport: 53 } }, { src: '2001:db8:bad::1', dst: 'fd00::22' }));
  t.deepEqual(run(dp.ingress, cni), { retval: TC_UNSPEC, out: cni });
  t.is(dp.flows().length, 0);
});

test('--node-ip takes one address or one of each family; anything else is refused naming the flag and the value', (t) => {
  t.deepEqual(parseNodeIps(undefined), {});
  t.deepEqual(parseNodeIps('192.0.2.21'), { nodeIp: '192.0.2.21' });
  t.deepEqual(parseNodeIps('fd00::21'), { nodeIp6: 'fd00::21' });
  t.deepEqual(parseNodeIps('fd00::21, 192.0.2.21'), { nodeIp: '192.0.2.21', nodeIp6: 'fd00::21' });
  t.throws(() => parseNodeIps('192.0.2.21,192.0.2.22'), { message: /--node-ip: two IPv4 addresses \('192.0.2.21', '192.0.2.22'\)/ });
  t.throws(() => parseNodeIps('fd00::21,fd00::22'), { message: /--node-ip: two IPv6 addresses/ });
  t.throws(() => parseNodeIps('fd00::/64'), { message: /--node-ip: 'fd00::\/64' is not an IPv4 or IPv6 address/ });
  t.throws(() => parseNodeIps('192.0.2.21,'), { message: /--node-ip takes one address or one of each family/ });
  t.throws(() => parseNodeIps('a,b,c'), { message: /--node-ip takes one address or one of each family/ });
});

test('IPv6 rolling update: a header naming a terminating pod is accepted, new IP6IP6 flows never pick it', (t) => {
  // The IPv4 rule (node.test.ts, "rolling update"): an edge keeps a
  // terminating pod's flows, and a SYN it pinned just before the pod turned
  // terminating still arrives; new tunnelled flows go to ready pods only.
  const dp = loadNode6(t);
  const [svc80, ...rest] = standardServices6();
  const next = [backend(POD6_1, 8080, NODE_NAME, 'terminating'), backend(POD6_2, 8080, NODE_NAME, 'terminating'), backend(POD6_3, 8080)];
  dp.applyServices([...standardServicesV4(), { ...svc80!, backends: next }, ...rest], { name: NODE_NAME });
  t.like(dp.localServices().find((e) => e.port === 80 && e.vip === VIP6), { backends: [{ ip: POD6_3, port: 8080 }, { ip: POD6_1, port: 8080 }, { ip: POD6_2, port: 8080 }], pick: 1 });
  for (const pod of [POD6_1, POD6_2, POD6_3]) {
    const spec = optionSpec({}, { dst: pod });
    const r = run(dp.ingress, buildPacket6(spec));
    t.is(r.retval, TC_UNSPEC, `header SYN to ${pod}`);
    t.deepEqual(r.out, withoutHeader(spec), `header SYN to ${pod}: stripped, otherwise unchanged`);
  }
  t.like(dp.counters(), { in_opt_flow: 3 });
  t.is(dp.counters().drop_wrong_backend ?? 0, 0);
  const tunnelled = (sport: number): Buffer => buildPacket6(tunnel({ ip: { src: CLIENT6, dst: VIP6, hopLimit: 60 }, tcp: { sport, dport: 80, seq: 7, flags: { syn: true } } }));
  const expected = (sport: number, pod: string): Buffer => buildPacket6({ eth, ip: { src: CLIENT6, dst: pod, hopLimit: 60 }, tcp: { sport, dport: 8080, seq: 7, flags: { syn: true } } });
  for (let port = 43000; port < 43030; port++) {
    const r = run(dp.ingress, tunnelled(port));
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, expected(port, POD6_3), `new IP6IP6 flow from port ${port} to the one ready pod`);
  }
  // No ready pod left: the terminating ones take new flows rather than none.
  dp.applyServices([...standardServicesV4(), { ...svc80!, backends: next.slice(0, 2) }, ...rest], { name: NODE_NAME });
  const picked = new Set<string>();
  for (let port = 44000; port < 44030; port++) {
    const pod = [POD6_1, POD6_2][localBackendSlot(CLIENT6, VIP6, port, 80, 'TCP', 2)]!;
    const r = run(dp.ingress, tunnelled(port));
    t.deepEqual(r.out, expected(port, pod), `port ${port}`);
    picked.add(pod);
  }
  t.deepEqual([...picked].sort(), [POD6_1, POD6_2]);
});

// ---------------------------------------------------------------- trust learning (NS/NA)

test('IPv6 trust boundary: once the IPv6 edge sources change, neighbours trusted as IPv6 edges (their entry keeps no address) must be trusted again before their headers count', (t) => {
  const dp = loadNode6(t);
  t.is(run(dp.ingress, buildPacket6(optionSpec({ tcp: { sport: 1 } }))).retval, TC_UNSPEC);
  // EDGE6 taken out of the edge sources: MAC_A, trusted as EDGE6's, is no edge any more.
  dp.setEdgeSources(['192.0.2.1', '2001:db8:e::2']);
  t.is(run(dp.ingress, buildPacket6(optionSpec({ tcp: { sport: 2 } }))).retval, TC_SHOT, 'the removed edge\'s header is refused');
  t.deepEqual(dp.edgeNeighbours(), []);
  t.like(dp.counters(), { drop_untrusted_source: 1 });
  // The remaining edge is learnt again from its next Neighbor Solicitation.
  run(dp.ingress, buildNd6({ kind: 'ns', src: '2001:db8:e::2', dst: 'ff02::1:ff00:21', target: 'fd00::21', lladdr: MAC_A, ethSrc: MAC_A }));
  t.is(run(dp.ingress, buildPacket6(optionSpec({ tcp: { sport: 3 } }))).retval, TC_UNSPEC);
});

test('IPv6 trust boundary: a router the edges\' IP6IP6 crosses (edgeRouters) is trusted for IP6IP6 only — a client behind it cannot forge the header', (t) => {
  const ROUTER6 = '2001:db8:e::fe';
  const dp = NodeDatapath.open({ maxFlows: 4096, edgeSources: [EDGE6], edgeRouters: [ROUTER6] });
  t.teardown(() => dp.close());
  dp.applyServices(standardServices6(), { name: NODE_NAME });
  run(dp.ingress, buildNd6({ kind: 'ns', src: ROUTER6, dst: 'ff02::1:ff00:21', target: 'fd00::21', lladdr: MAC_ROUTER, ethSrc: MAC_ROUTER }));
  t.like(dp.edgeNeighbours(), [{ mac: MAC_ROUTER, how: 'ndp', router: true }]);
  t.is(run(dp.ingress, fromSender(buildPacket6(optionSpec()), MAC_ROUTER)).retval, TC_SHOT, 'a forged header from behind the router');
  t.is(dp.flows().length, 0);
  const r = run(dp.ingress, fromSender(buildPacket6(tunnel({ ip: { src: CLIENT6, dst: VIP6, hopLimit: 60 }, tcp: { sport: 40000, dport: 80, flags: { syn: true } } })), MAC_ROUTER));
  t.is(r.retval, TC_UNSPEC);
  t.like(dp.counters(), { in_ipip_dnat: 1, drop_untrusted_source: 1 });
});

test('IPv6 edges are learnt from their Neighbor Solicitations and Advertisements; forwarded, mismatched or foreign ones teach nothing', (t) => {
  const dp = loadNode6(t, {}, { edgeMac: null });
  const other = '02:00:00:00:00:0e';
  const ignored = [
    buildNd6({ kind: 'ns', src: EDGE6, dst: 'ff02::1:ff00:21', target: 'fd00::21', lladdr: other, ethSrc: MAC_A }), // option names another MAC
    buildNd6({ kind: 'ns', src: EDGE6, dst: 'ff02::1:ff00:21', target: 'fd00::21', lladdr: MAC_A, ethSrc: MAC_A, hopLimit: 64 }), // forwarded
    buildNd6({ kind: 'ns', src: '2001:db8:bad::1', dst: 'ff02::1:ff00:21', target: 'fd00::21', lladdr: MAC_A, ethSrc: MAC_A }), // not an edge
    buildNd6({ kind: 'na', src: EDGE6, dst: 'fd00::21', target: '2001:db8:e::2', lladdr: MAC_A, ethSrc: MAC_A }), // answering for another address
    buildNd6({ kind: 'ns', src: EDGE6, dst: 'ff02::1:ff00:21', target: 'fd00::21', ethSrc: MAC_A }), // no option
  ];
  for (const f of ignored) t.is(run(dp.ingress, f).retval, TC_UNSPEC);
  t.deepEqual(dp.edgeNeighbours(), []);
  t.is(run(dp.ingress, buildPacket6(optionSpec())).retval, TC_SHOT, 'not trusted yet');
  const ns = buildNd6({ kind: 'ns', src: EDGE6, dst: 'ff02::1:ff00:21', target: 'fd00::21', lladdr: MAC_A, ethSrc: MAC_A });
  const r = run(dp.ingress, ns);
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, ns);
  t.deepEqual(dp.edgeNeighbours().map((n) => [n.mac, n.ip, n.how]), [[MAC_A, null, 'ndp']]);
  t.is(run(dp.ingress, buildPacket6(optionSpec())).retval, TC_UNSPEC, 'trusted now');
  const na = buildNd6({ kind: 'na', src: EDGE6, dst: 'fd00::21', target: EDGE6, lladdr: other, ethSrc: other });
  run(dp.ingress, na);
  // The edge's address answered from another MAC: that one replaces MAC_A (see the MAC-change test below).
  t.deepEqual(dp.edgeNeighbours().map((n) => n.mac), [other]);
  t.like(dp.counters(), { edge_learnt: 2 });
});

test('IPv6: an edge whose MAC changed is trusted under its new MAC only (its NS/NA, or the agent); an unconfirmed MAC expires', (t) => {
  // As over IPv4: the new MAC was learnt beside the old one (or, already
  // holding an entry, not refreshed at all), and the old stayed trusted.
  const dp = loadNode6(t, {}, { edgeMac: null });
  const other = '02:00:00:00:00:0e';
  const TTL = 600n * SEC;
  let now = 1000n * SEC;
  dp.setTestClock(now);
  const ns = (mac: string): Buffer => buildNd6({ kind: 'ns', src: EDGE6, dst: 'ff02::1:ff00:21', target: 'fd00::21', lladdr: mac, ethSrc: mac });
  let sport = 1;
  const option = (mac: string): number => run(dp.ingress, fromSender(buildPacket6(optionSpec({ tcp: { sport: sport++ } })), mac)).retval;
  run(dp.ingress, ns(MAC_A));
  t.is(option(MAC_A), TC_UNSPEC);
  run(dp.ingress, buildNd6({ kind: 'na', src: EDGE6, dst: 'fd00::21', target: EDGE6, lladdr: other, ethSrc: other }));
  t.is(option(other), TC_UNSPEC);
  t.is(option(MAC_A), TC_SHOT, 'the old MAC is trusted no more');
  t.deepEqual(dp.edgeNeighbours().map((n) => n.mac), [other]);
  dp.trustEdgeNeighbour(EDGE6, MAC_A);
  t.deepEqual(dp.edgeNeighbours().map((n) => n.mac), [MAC_A]);
  t.is(option(other), TC_SHOT);
  // Expiry: an NS confirms the MAC; data packets do not.
  now += TTL - SEC;
  dp.setTestClock(now);
  run(dp.ingress, ns(MAC_A));
  now += 2n * SEC;
  dp.setTestClock(now);
  t.is(option(MAC_A), TC_UNSPEC, 'confirmed by its NS');
  now += TTL;
  dp.setTestClock(now);
  t.is(option(MAC_A), TC_SHOT, 'unconfirmed for a TTL');
});

// ---------------------------------------------------------------- hostile chains, truncation

test('IPv6 hostile extension chains pass untouched or are dropped, never mis-rewritten: too many headers, a header past the end, a fragment', (t) => {
  const dp = loadNode6(t);
  run(dp.ingress, buildPacket6(optionSpec()));
  const rs = reply();
  // Nine Destination Options headers before TCP: beyond the walk's limit (8): passed untouched.
  const long = buildPacket6({ ...rs, ext: Array.from({ length: 9 }, () => padHeader(NH_DSTOPTS)) });
  t.deepEqual(run(dp.egress, long).out, long);
  // Up to the limit, the walk reaches TCP and the reply is rewritten.
  const ok = { ...rs, ext: Array.from({ length: 7 }, () => padHeader(NH_DSTOPTS)) };
  t.deepEqual(run(dp.egress, buildPacket6(ok)).out, fromVip(ok));
  // A header claiming 2 KiB in a short packet.
  const past = buildPacket6({ ...rs, ext: [{ type: NH_DSTOPTS, bytes: Buffer.from([0, 255, 1, 4, 0, 0, 0, 0]) }] });
  t.deepEqual(run(dp.egress, past).out, past);
  // A non-first fragment of a reply has no ports: untouched.
  const frag = buildPacket6({ ...rs, ext: [fragHeader(100, false)] });
  t.deepEqual(run(dp.egress, frag).out, frag);
  // The same chains on ingress, without our header: untouched.
  for (const f of [long, past, frag]) {
    const i = fromSender(f, MAC_A);
    t.deepEqual(run(dp.ingress, i).out, i);
  }
});

test('IPv6 truncated frames at every length: no crash; option frames dropped, others untouched (or refused by the kernel)', (t) => {
  const dp = loadNode6(t);
  const frames = [
    buildPacket6(optionSpec()),
    buildPacket6(optionSpec({ udp: {} })),
    buildPacket6(tunnel({ ip: { src: CLIENT6, dst: VIP6 }, tcp: { sport: 40000, dport: 80, flags: { syn: true } } })),
    buildNd6({ kind: 'ns', src: EDGE6, dst: 'ff02::1:ff00:21', target: 'fd00::21', lladdr: MAC_A, ethSrc: MAC_A }),
  ];
  let runs = 0;
  for (const full of frames) {
    for (let len = 14; len < full.length; len++) {
      const f = Buffer.from(full.subarray(0, len));
      let r;
      try {
        r = run(dp.ingress, f);
      } catch {
        continue; // the kernel refuses frames shorter than its minimum
      }
      runs++;
      t.true(r.retval === TC_UNSPEC || r.retval === TC_SHOT);
      if (r.retval === TC_UNSPEC) t.deepEqual(r.out, f, `length ${len} passed changed`);
    }
  }
  t.true(runs > 100);
  t.is(dp.flows().length, 0, 'no truncated frame recorded a flow');
});

// ---------------------------------------------------------------- TS side

test('IPv6 map encoders round-trip and match the kernel maps\' sizes; hash and slot choice agree with the program', (t) => {
  const fk = { podIp: POD6_1, podPort: 8080, clientIp: CLIENT6, clientPort: 40000, proto: 'TCP' as const };
  t.deepEqual(decodeFlow6Key(encodeFlow6Key(fk)), fk);
  t.is(encodeFlow6Key(fk).toString('hex'), 'fd000010024400010000000000000005' + '20010db8000c00000000000000000007' + '1f909c40' + '06000000');
  const fv = { vip: VIP6, vipPort: 80, flags: 5, origin: 'ipip' as const, lastSeenNs: 123456789012345n, createdNs: 1n };
  t.deepEqual(decodeFlow6Value(encodeFlow6Value(fv)), fv);
  const wk = { clientIp: CLIENT6, clientPort: 1, vip: VIP6, vipPort: 53, proto: 'UDP' as const };
  t.deepEqual(decodeFwd6Key(encodeFwd6Key(wk)), wk);
  const wv = { podIp: POD6_2, podPort: 5353, lastSeenNs: 9n };
  t.deepEqual(decodeFwd6Value(encodeFwd6Value(wv)), wv);
  const sk = { vip: VIP6, port: 443, proto: 'TCP' as const };
  t.deepEqual(decodeSvc6Key(encodeSvc6Key(sk)), sk);
  t.deepEqual(decodeSvc6Value(encodeSvc6Value([{ ip: POD6_1, port: 1 }, { ip: POD6_3, port: 65535 }])), [{ ip: POD6_1, port: 1 }, { ip: POD6_3, port: 65535 }]);
  t.is(decodeSvc6Pick(encodeSvc6Value([{ ip: POD6_1, port: 1 }, { ip: POD6_3, port: 65535 }], 1)), 1);
  t.is(decodeSvc6Pick(encodeSvc6Value([{ ip: POD6_1, port: 1 }, { ip: POD6_3, port: 65535 }])), 2);
  t.throws(() => encodeSvc6Value([{ ip: POD6_1, port: 1 }], 2), { message: /pick 2/ });
  t.throws(() => encodeFlow6Key({ ...fk, podIp: '10.0.0.1' }), { message: /flow podIp/ });
  t.not(nodeTupleHash6(CLIENT6, VIP6, 1, 80, 'TCP'), nodeTupleHash6(CLIENT6, VIP6, 1, 80, 'UDP'));
  const dp = loadNode6(t);
  t.is(dp.flows6Map.keySize, 40);
  t.is(dp.flows6Map.valueSize, 40);
  t.is(dp.fwd6Map.keySize, 40);
  t.is(dp.fwd6Map.valueSize, 32);
  t.is(dp.services6Map.keySize, 20);
  t.is(dp.services6Map.valueSize, 8 + 20 * 32);
  t.is(dp.edgeSources6Map.keySize, 20);
  // The program's pod choice is the TS one for many tuples (four pods: every slot used).
  const [s0, ...rest] = standardServices6();
  const four = [{ ...s0!, backends: [...s0!.backends, backend('fd00:10:244:1::8', 8080)] }, ...rest];
  dp.applyServices(four, { name: NODE_NAME });
  const pods = localServiceEntries(four, { name: NODE_NAME }).entries[0]!.backends;
  t.is(pods.length, 4);
  const seen = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const client = `2001:db8:c:${i}::${((i * 7919) & 0xffff).toString(16)}`;
    const r = run(dp.ingress, buildPacket6(tunnel({ ip: { src: client, dst: VIP6 }, tcp: { sport: 1024 + i * 13, dport: 80, flags: { syn: true } } })));
    const want = pods[localBackendSlot(client, VIP6, 1024 + i * 13, 80, 'TCP', 4)]!;
    seen.add(want.ip);
    t.deepEqual(r.out.subarray(14 + 24, 14 + 40), ip6Bytes(want.ip), `tuple ${i}`);
  }
  t.is(seen.size, 4);
});

test('edge sources and local services of both families: IPv6 CIDRs accepted and checked, IPv6 frontends keep their IPv6 pods', (t) => {
  t.deepEqual(parseEdgeSources('10.0.0.11,2001:db8:e::1, 2001:db8:e::/64'), ['10.0.0.11', '2001:db8:e::1', '2001:db8:e::/64']);
  t.throws(() => parseEdgeSources('2001:db8:e::1/64'), { message: /--edge-sources: edge source '2001:db8:e::1\/64': host bits are set \(did you mean 2001:db8:e::\/64\?\)/ });
  t.throws(() => parseEdgeSources('2001:db8:e::/129'), { message: /prefix length 129 exceeds 128/ });
  t.like(parseEdgeSource('2001:DB8:E::1'), { family: 6, addr: '2001:db8:e::1', bits: 128 });
  t.is(encodeEdgeSourceKey('2001:db8:e::/48').key.toString('hex'), '30000000' + '20010db8000e00000000000000000000');
  const dp = loadNode6(t);
  t.deepEqual(dp.edgeSources(), ['192.0.2.1/32', '2001:db8:e::1/128']);
  t.deepEqual(dp.setEdgeSources(['2001:db8:e::/64']), ['2001:db8:e::/64']);
  t.throws(() => dp.setEdgeSources(['2001:db8:e::/64', 'nope']), { message: /edge source 'nope'/ });
  t.deepEqual(dp.edgeSources(), ['2001:db8:e::/64'], 'nothing half-applied');
  t.throws(() => dp.trustEdgeNeighbour('2001:db8:bad::1', MAC_A), { message: /not inside any edge source/ });
  const { entries } = localServiceEntries([...standardServices6(), { ...standardServices6()[0]!, service: 'ns/mixed', frontend: { vip: '2001:db8:f::12', port: 80, protocol: 'TCP' }, backends: [...standardServices6()[0]!.backends, { ...standardServices6()[0]!.backends[0]!, ip: '10.244.1.5' }] }], { name: NODE_NAME });
  t.deepEqual(entries.map((e) => [e.vip, e.port, e.backends.map((b) => b.ip)]), [
    [VIP6, 80, [POD6_1, POD6_2, POD6_3]],
    [VIP6, 53, [POD6_1, POD6_2]],
    [VIP6_ELSEWHERE, 80, []],
    ['2001:db8:f::12', 80, [POD6_1, POD6_2, POD6_3]],
  ]);
  t.deepEqual(
    dp.localServices().filter((s) => s.vip.includes(':')).map((s) => `${s.vip}:${s.port}/${s.proto}=${s.backends.length}`).sort(),
    [`${VIP6}:53/UDP=2`, `${VIP6}:80/TCP=3`, `${VIP6_ELSEWHERE}:80/TCP=0`],
  );
});
