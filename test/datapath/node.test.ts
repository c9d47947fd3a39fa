// The node program (bpf/node.c) through BPF_PROG_TEST_RUN with real frames:
// exact output bytes (expected frames are built from scratch with
// test/lib/packets.ts, checksums recomputed independently), map state and
// counters.
import test from 'ava';
import {
  buildArp,
  buildPacket,
  dsrOption,
  parsePacket,
  verifyIpv4Checksum,
  verifyL4Checksum,
  icmpEcho,
  internetChecksum,
  type PacketSpec,
  type TcpSpec,
} from '../lib/packets.js';
import * as packets from '../lib/packets.js';
import {
  decodeConfig,
  decodeFlowKey,
  decodeFlowValue,
  decodeFwdKey,
  decodeFwdValue,
  decodeSvcKey,
  decodeSvcPick,
  decodeSvcValue,
  encodeConfig,
  encodeEdgeAddrKey,
  encodeEdgeMacKey,
  encodeFlowKey,
  encodeFlowValue,
  encodeFwdKey,
  encodeFwdValue,
  encodeSvcKey,
  encodeSvcValue,
  FLOW_CLOSING,
  FLOW_FIN_CLIENT,
  FLOW_FIN_POD,
  FLOW_RST,
  localBackendSlot,
  nodeTupleHash,
} from '../../src/datapath/node-maps.js';
import { localServiceEntries, NodeDatapath } from '../../src/datapath/node-datapath.js';
import { BpfMap, possibleCpus } from '../../src/datapath/loader.js';
import { unlinkSync } from 'node:fs';
import { pinDirFor } from '../lib/bpffs.js';
import { createLogger } from '../../src/log/logger.js';
import {
  backend,
  CLIENT,
  CLIENT2,
  EDGE_IP,
  fromSender,
  loadNode,
  MAC_A,
  MAC_B,
  MAC_OTHER,
  MAC_ROUTER,
  NODE_IP,
  NODE_NAME,
  OTHER_NODE_POD,
  POD1,
  POD2,
  POD3,
  run,
  service,
  standardServices,
  TC_SHOT,
  TC_UNSPEC,
  VIP,
  VIP2,
} from './node-fixtures.js';

const SEC = 1_000_000_000n;
/** A third frontend served by the same pods (VIP:80's and VIP:53's). */
const VIP3 = '203.0.113.12';
const eth = { src: MAC_A, dst: MAC_B };
const ethBack = { src: MAC_B, dst: MAC_A };

/** What the edge sends in ip-option mode: client → pod (already DNATed), option = VIP:port. */
function optionTcp(tcp: Partial<TcpSpec> = {}, ip: { src?: string; dst?: string; vip?: string; vport?: number; id?: number } = {}): { spec: PacketSpec; frame: Buffer } {
  const spec: PacketSpec = {
    eth,
    ip: { src: ip.src ?? CLIENT, dst: ip.dst ?? POD1, ttl: 61, id: ip.id ?? 0x1234, df: true, options: dsrOption(ip.vip ?? VIP, ip.vport ?? 80) },
    tcp: { sport: 40000, dport: 8080, seq: 1000, flags: { syn: true }, ...tcp },
  };
  return { spec, frame: buildPacket(spec) };
}

function withoutOption(spec: PacketSpec): Buffer {
  const { options: _o, ...ip } = spec.ip;
  return buildPacket({ ...spec, ip });
}

/** A pod's reply: pod → client. */
function podReply(tcp: Partial<TcpSpec> = {}, ip: { src?: string; dst?: string } = {}): PacketSpec {
  return {
    eth: ethBack,
    ip: { src: ip.src ?? POD1, dst: ip.dst ?? CLIENT, ttl: 64, id: 0x4321, df: true },
    tcp: { sport: 8080, dport: 40000, seq: 5000, ack: 1001, flags: { syn: true, ack: true }, ...tcp },
  };
}

function asFromVip(spec: PacketSpec, vip = VIP, port = 80): Buffer {
  const out: PacketSpec = { ...spec, ip: { ...spec.ip, src: vip } };
  if (spec.tcp) out.tcp = { ...spec.tcp, sport: port };
  if (spec.udp) out.udp = { ...spec.udp, sport: port };
  return buildPacket(out);
}

function assertWellFormed(t: import('ava').ExecutionContext, frame: Buffer): void {
  const p = parsePacket(frame);
  t.true(verifyIpv4Checksum(p.ipBytes), 'IPv4 header checksum');
  t.true(verifyL4Checksum(p.ipBytes), 'L4 checksum');
  t.is(p.ip.totalLength, frame.length - 14, 'IP total length matches the frame');
}

// ---------------------------------------------------------------- ip-option

test('option TCP SYN: flow recorded, option stripped, packet otherwise unchanged', (t) => {
  const dp = loadNode(t);
  const { spec, frame } = optionTcp();
  const r = run(dp.ingress, frame);
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, withoutOption(spec));
  assertWellFormed(t, r.out);
  const flows = dp.flows();
  t.is(flows.length, 1);
  t.like(flows[0], { podIp: POD1, podPort: 8080, clientIp: CLIENT, clientPort: 40000, proto: 'TCP', vip: VIP, vipPort: 80, origin: 'option', flags: 0, expired: false });
  t.like(dp.counters(), { in_opt_flow: 1, in_opt_stripped: 1, in_pass: 0 });
});

test('option with other options behind it: only ours is removed', (t) => {
  const dp = loadNode(t);
  // Our option first, then a NOP-padded 4-byte block: IHL 8.
  const opts = Buffer.concat([dsrOption(VIP, 80), Buffer.from([0x01, 0x01, 0x01, 0x00])]);
  const spec: PacketSpec = { eth, ip: { src: CLIENT, dst: POD1, options: opts }, tcp: { sport: 1, dport: 8080, flags: { syn: true } } };
  const r = run(dp.ingress, buildPacket(spec));
  t.deepEqual(r.out, buildPacket({ ...spec, ip: { ...spec.ip, options: Buffer.from([0x01, 0x01, 0x01, 0x00]) } }));
  assertWellFormed(t, r.out);
  t.is(dp.flows().length, 1);
});

test('option kept when stripping is off: packet untouched, flow still recorded', (t) => {
  const dp = loadNode(t, { stripOption: false });
  const { frame } = optionTcp();
  const r = run(dp.ingress, frame);
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, frame);
  t.is(dp.flows().length, 1);
  t.like(dp.counters(), { in_opt_flow: 1, in_opt_kept: 1, in_opt_stripped: 0 });
});

test('option naming an unknown VIP or port is dropped and counted (verifyVip)', (t) => {
  const dp = loadNode(t);
  for (const [vip, vport] of [['203.0.113.99', 80], [VIP, 81], [VIP, 53]] as const) {
    const r = run(dp.ingress, optionTcp({}, { vip, vport }).frame);
    t.is(r.retval, TC_SHOT, `${vip}:${vport}/TCP`);
  }
  t.is(dp.flows().length, 0);
  t.like(dp.counters(), { drop_unknown_vip: 3 });
  dp.reconfigure({ verifyVip: false });
  t.is(run(dp.ingress, optionTcp({}, { vip: '203.0.113.99', vport: 80 }).frame).retval, TC_UNSPEC);
});

test('UDP: every packet carries the option; each is stripped, one flow, replies rewritten', (t) => {
  const dp = loadNode(t);
  for (let i = 0; i < 3; i++) {
    const spec: PacketSpec = {
      eth,
      ip: { src: CLIENT, dst: POD2, id: 100 + i, options: dsrOption(VIP, 53) },
      udp: { sport: 33333, dport: 5353, payload: Buffer.from(`query ${i} ${'x'.repeat(i * 7)}`) },
    };
    const r = run(dp.ingress, buildPacket(spec));
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, withoutOption(spec));
    assertWellFormed(t, r.out);
  }
  t.is(dp.flows().length, 1);
  t.like(dp.counters(), { in_opt_flow: 3, in_opt_stripped: 3 });
  const reply: PacketSpec = { eth: ethBack, ip: { src: POD2, dst: CLIENT, id: 7 }, udp: { sport: 5353, dport: 33333, payload: Buffer.from('answer') } };
  const r = run(dp.egress, buildPacket(reply));
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, asFromVip(reply, VIP, 53));
  assertWellFormed(t, r.out);
});

test('UDP reply without checksum (0) keeps 0 after the rewrite', (t) => {
  const dp = loadNode(t);
  run(dp.ingress, buildPacket({ eth, ip: { src: CLIENT, dst: POD1, options: dsrOption(VIP, 53) }, udp: { sport: 1000, dport: 5353, checksum: 0 } }));
  const reply: PacketSpec = { eth: ethBack, ip: { src: POD1, dst: CLIENT }, udp: { sport: 5353, dport: 1000, payload: Buffer.from('abc'), checksum: 0 } };
  const r = run(dp.egress, buildPacket(reply));
  t.deepEqual(r.out, buildPacket({ ...reply, ip: { ...reply.ip, src: VIP }, udp: { ...reply.udp!, sport: 53, checksum: 0 } }));
  t.true(verifyIpv4Checksum(parsePacket(r.out).ipBytes));
});

// ---------------------------------------------------------------- egress

test('egress: a pod\'s fragmented UDP reply leaves from the VIP in every fragment, not only the first (the later ones carry no ports)', (t) => {
  // A DNS answer larger than the pod's MTU leaves the pod as fragments. Only
  // the first has the ports the flow is found by; rewritten alone, the rest
  // left with the pod's address, so the client could never reassemble the
  // datagram (and learnt the pod's address from the pieces).
  const dp = loadNode(t);
  run(dp.ingress, buildPacket({ eth, ip: { src: CLIENT, dst: POD1, options: dsrOption(VIP, 53) }, udp: { sport: 3000, dport: 5353 } }));
  const piece = (src: string, fragOffset: number, mf: boolean, id = 0x777): PacketSpec => ({
    eth: ethBack,
    ip: { src, dst: CLIENT, id, mf, fragOffset, protocol: 17 },
    payload: Buffer.alloc(64, fragOffset & 0xff),
  });
  const fromVip = (spec: PacketSpec): Buffer => buildPacket({ ...spec, ip: { ...spec.ip, src: VIP } });
  const first: PacketSpec = { eth: ethBack, ip: { src: POD1, dst: CLIENT, id: 0x777, mf: true }, udp: { sport: 5353, dport: 3000, payload: Buffer.alloc(56, 1) } };
  t.deepEqual(run(dp.egress, buildPacket(first)).out, asFromVip(first, VIP, 53));
  for (const spec of [piece(POD1, 64, true), piece(POD1, 128, false)]) {
    const r = run(dp.egress, buildPacket(spec));
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, fromVip(spec), `fragment at ${spec.ip.fragOffset} leaves from the VIP`);
    t.true(verifyIpv4Checksum(parsePacket(r.out).ipBytes));
  }
  // Nothing else is taken for a piece of that datagram: a fragment after the
  // last one, another datagram's, another pod's.
  for (const spec of [piece(POD1, 64, true), piece(POD1, 64, true, 0x778), piece(POD2, 64, true)]) {
    const f = buildPacket(spec);
    t.deepEqual(run(dp.egress, f).out, f);
  }
  t.like(dp.counters(), { eg_rewrite: 1, eg_frag: 2, eg_pass: 3 });
  // The rest of a datagram follows its first fragment at once: an IP ID
  // seen again seconds later is another datagram's and inherits nothing.
  dp.setTestClock(1000n * SEC);
  run(dp.egress, buildPacket({ ...first, ip: { ...first.ip, id: 0x779 } }));
  dp.setTestClock(1003n * SEC);
  const late = buildPacket(piece(POD1, 64, false, 0x779));
  t.deepEqual(run(dp.egress, late).out, late);
  t.like(dp.counters(), { eg_rewrite: 2, eg_frag: 2 });
});


test('egress: a matching reply leaves from VIP:port with both checksums right (exact bytes)', (t) => {
  const dp = loadNode(t);
  run(dp.ingress, optionTcp().frame);
  for (const spec of [
    podReply(),
    podReply({ flags: { ack: true, psh: true }, payload: Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi') }),
    podReply({ flags: { ack: true }, payload: Buffer.alloc(1, 0xff), options: Buffer.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]) }),
  ]) {
    const r = run(dp.egress, buildPacket(spec));
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, asFromVip(spec));
    assertWellFormed(t, r.out);
  }
  t.like(dp.counters(), { eg_rewrite: 3, eg_pass: 0 });
});

test('egress: replies of other tuples, protocols and non-IP pass untouched', (t) => {
  const dp = loadNode(t);
  run(dp.ingress, optionTcp().frame);
  const frames = [
    buildPacket(podReply({ dport: 40001 })),
    buildPacket(podReply({ sport: 8081 })),
    buildPacket(podReply({}, { src: POD2 })),
    buildPacket(podReply({}, { dst: CLIENT2 })),
    buildPacket({ eth: ethBack, ip: { src: POD1, dst: CLIENT }, udp: { sport: 8080, dport: 40000 } }),
    buildPacket({ eth: ethBack, ip: { src: POD1, dst: CLIENT }, icmp: icmpEcho({ id: 8080, seq: 1 }) }),
    Buffer.concat([Buffer.from('0000000000010000000000020806', 'hex'), Buffer.alloc(28, 1)]),
    Buffer.concat([Buffer.from('00000000000100000000000286dd', 'hex'), Buffer.alloc(60, 2)]),
  ];
  for (const f of frames) {
    const r = run(dp.egress, f);
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, f);
  }
  t.like(dp.counters(), { eg_rewrite: 0, eg_pass: frames.length });
});

test('egress: a pod\'s ICMP port-unreachable about a flow is sent as the VIP\'s (source, quote, checksums)', (t) => {
  const dp = loadNode(t);
  run(dp.ingress, buildPacket({ eth, ip: { src: CLIENT, dst: POD1, options: dsrOption(VIP, 53) }, udp: { sport: 3333, dport: 5353, payload: Buffer.from('q') } }));
  // The datagram as the pod received it (option stripped), and as the client sent it.
  const asReceived = buildPacket({ eth: false, ip: { src: CLIENT, dst: POD1, id: 3 }, udp: { sport: 3333, dport: 5353, payload: Buffer.from('query') } });
  // The quoted UDP checksum is left as it was: receivers do not verify a quote's.
  const asSent = buildPacket({ eth: false, ip: { src: CLIENT, dst: VIP, id: 3 }, udp: { sport: 3333, dport: 53, payload: Buffer.from('query'), checksum: asReceived.readUInt16BE(26) } });
  const unreach = (src: string, quoted: Buffer): PacketSpec => ({ eth: ethBack, ip: { src, dst: CLIENT, ttl: 64, id: 1 }, icmp: { type: 3, code: 3, payload: quoted } });
  const r = run(dp.egress, buildPacket(unreach(POD1, asReceived)));
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, buildPacket(unreach(VIP, asSent)));
  const out = parsePacket(r.out);
  t.true(verifyIpv4Checksum(out.ipBytes));
  t.true(verifyL4Checksum(out.ipBytes), 'ICMP checksum');
  t.true(verifyIpv4Checksum(out.icmp!.embedded!.ipBytes.subarray(0, 20)), 'quoted IPv4 header checksum');
  t.like(dp.counters(), { eg_icmp: 1 });
  // About another flow, or not an error: untouched.
  for (const f of [
    buildPacket(unreach(POD1, buildPacket({ eth: false, ip: { src: CLIENT, dst: POD1 }, udp: { sport: 3334, dport: 5353 } }))),
    buildPacket({ eth: ethBack, ip: { src: POD1, dst: CLIENT }, icmp: icmpEcho({ id: 1, seq: 1, reply: true }) }),
  ]) {
    t.deepEqual(run(dp.egress, f).out, f);
  }
  t.like(dp.counters(), { eg_icmp: 1 });
});

test('ingress: ordinary traffic passes untouched', (t) => {
  const dp = loadNode(t);
  const frames = [
    buildPacket({ eth, ip: { src: CLIENT, dst: POD1 }, tcp: { sport: 1, dport: 8080, flags: { syn: true } } }),
    buildPacket({ eth, ip: { src: CLIENT, dst: POD1 }, tcp: { sport: 1, dport: 8080, flags: { fin: true, ack: true } } }),
    buildPacket({ eth, ip: { src: CLIENT, dst: POD1 }, udp: { sport: 1, dport: 53 } }),
    buildPacket({ eth, ip: { src: CLIENT, dst: POD1 }, icmp: icmpEcho({ id: 1, seq: 1 }) }),
    // Router-alert option (0x94): not ours.
    buildPacket({ eth, ip: { src: CLIENT, dst: POD1, options: Buffer.from([0x94, 4, 0, 0]) }, tcp: { sport: 1, dport: 8080, flags: { syn: true } } }),
    // ARP and IPv6 (not handled yet) frames.
    Buffer.concat([Buffer.from('0000000000010000000000020806', 'hex'), Buffer.alloc(28, 1)]),
    Buffer.concat([Buffer.from('00000000000100000000000286dd', 'hex'), Buffer.from('6000000000081140', 'hex'), Buffer.alloc(40, 2)]),
  ];
  for (const f of frames) {
    const r = run(dp.ingress, f);
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, f);
  }
  t.is(dp.flows().length, 0);
});

// ---------------------------------------------------------------- malformed option

test('malformed option: wrong length or past the header is dropped; truncated L4 is dropped', (t) => {
  const dp = loadNode(t);
  const base = { eth, tcp: { sport: 1, dport: 8080, flags: { syn: true } } };
  const bad = [
    // length 6 inside an 8-byte block
    Buffer.from([0x9e, 6, 0, 80, 203, 0, 113, 10]),
    // length 12 (also past the 8 bytes we own)
    Buffer.from([0x9e, 12, 0, 80, 203, 0, 113, 10]),
    // only 4 option bytes (IHL 6)
    Buffer.from([0x9e, 8, 0, 80]),
  ];
  for (const options of bad) {
    const r = run(dp.ingress, buildPacket({ ...base, ip: { src: CLIENT, dst: POD1, options } }));
    t.is(r.retval, TC_SHOT);
  }
  t.like(dp.counters(), { drop_bad_option: 3 });
  // Total length cutting the TCP header short.
  const full = optionTcp().frame;
  const ipLen = 28 + 10;
  const cut = Buffer.from(full.subarray(0, 14 + ipLen));
  cut.writeUInt16BE(ipLen, 16);
  cut.writeUInt16BE(0, 24);
  cut.writeUInt16BE(internetChecksum(cut.subarray(14, 14 + 28)), 24);
  t.is(run(dp.ingress, cut).retval, TC_SHOT);
  t.like(dp.counters(), { drop_malformed: 1 });
  t.is(dp.flows().length, 0);
});

test('option on a non-first fragment: stripped, nothing recorded', (t) => {
  const dp = loadNode(t);
  const spec: PacketSpec = { eth, ip: { src: CLIENT, dst: POD1, fragOffset: 1480, options: dsrOption(VIP, 53), protocol: 17 }, payload: Buffer.alloc(100, 7) };
  const r = run(dp.ingress, buildPacket(spec));
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, withoutOption(spec));
  t.true(verifyIpv4Checksum(parsePacket(r.out).ipBytes));
  t.is(dp.flows().length, 0);
  t.like(dp.counters(), { in_opt_fragment: 1, in_opt_stripped: 1 });
});

// The node passes a fragmented IPIP packet untouched: it cannot decapsulate
// and DNAT a datagram it sees in pieces. The kernel then reassembles it, and
// the tunnel device a CNI's IPIP mode loads (tunl0, which takes IPIP from
// anyone) hands the inner packet to the VIP on — so fragmenting the outer
// packet carried a stranger's IPIP to a frontend past the trust boundary.
test('trust boundary: a fragmented IPIP packet to a frontend from outside the edges is dropped (its first fragment, or one cut before the inner ports); the edges\' and the CNI\'s pass', (t) => {
  const dp = loadNode(t, { nodeIp: NODE_IP });
  const inner = buildPacket({ eth: false, ip: { src: CLIENT, dst: VIP }, tcp: { sport: 41000, dport: 80, flags: { syn: true }, payload: Buffer.alloc(1200, 1) } });
  /** The outer packet's fragments, cut after `first` bytes of the inner packet. */
  const fragments = (src: string, sender: string, packet: Buffer, first = 600): [Buffer, Buffer] => [
    fromSender(packets.buildEthernet(eth, packets.buildIpv4({ src, dst: NODE_IP, id: 7, mf: true }, packet.subarray(0, first), 4)), sender),
    fromSender(packets.buildEthernet(eth, packets.buildIpv4({ src, dst: NODE_IP, id: 7, fragOffset: first }, packet.subarray(first), 4)), sender),
  ];
  const withOptions = buildPacket({ eth: false, ip: { src: CLIENT, dst: VIP, options: Buffer.from([1, 1, 1, 1]) }, tcp: { sport: 41000, dport: 80, flags: { syn: true }, payload: Buffer.alloc(1200, 1) } });
  const forged = [
    fragments(CLIENT, MAC_A, inner)[0], // outer source no edge source
    fragments(EDGE_IP, MAC_ROUTER, inner)[0], // an edge's address from a router's MAC
    fragments(CLIENT, MAC_ROUTER, withOptions, 24)[0], // cut before the inner ports (RFC 1858)
    fragments(CLIENT, MAC_ROUTER, inner, 16)[0], // cut inside the inner header
  ];
  for (const f of forged) t.is(run(dp.ingress, f).retval, TC_SHOT); // before: TC_UNSPEC, untouched
  t.like(dp.counters(), { drop_untrusted_source: forged.length });
  // A later fragment has no inner header: without its first it never reassembles.
  const later = fragments(CLIENT, MAC_ROUTER, inner)[1];
  t.deepEqual(run(dp.ingress, later), { retval: TC_UNSPEC, out: later });
  // An edge's fragmented IPIP, and the CNI's (no frontend inside), pass untouched as before.
  const calicoInner = buildPacket({ eth: false, ip: { src: '10.244.3.3', dst: POD1 }, tcp: { sport: 1, dport: 8080, flags: { ack: true }, payload: Buffer.alloc(1200) } });
  for (const f of [...fragments(EDGE_IP, MAC_A, inner), ...fragments('192.0.2.22', MAC_OTHER, calicoInner)]) {
    t.deepEqual(run(dp.ingress, f), { retval: TC_UNSPEC, out: f });
  }
  t.like(dp.counters(), { drop_untrusted_source: forged.length, in_ipip_dnat: 0 });
  t.is(dp.flows().length + dp.fwdEntries().length, 0);
});

// Unfragmented outside, fragmented inside: the inner packet's first
// fragment cut after 8 bytes of TCP (RFC 1858's tiny fragment) has its
// ports but not a whole TCP header, and the node took it for no packet of
// ours and passed it on — for the kernel to decapsulate (tunl0) and
// reassemble with the rest, past the trust boundary.
test('trust boundary: a stranger\'s IPIP whose inner packet is a tiny first fragment (RFC 1858: cut inside its TCP header) is dropped; an edge\'s and a whole truncated one pass as before', (t) => {
  const dp = loadNode(t, { nodeIp: NODE_IP });
  const segment = buildPacket({ eth: false, ip: { src: CLIENT, dst: VIP }, tcp: { sport: 41000, dport: 80, flags: { syn: true } } }).subarray(20);
  /** IPIP from `src` (sent by `sender`) around the client's first fragment holding `n` bytes of the segment. */
  const tiny = (src: string, sender: string, n = 8, mf = true): Buffer =>
    fromSender(buildPacket({ eth, ip: { src, dst: NODE_IP }, inner: { ip: { src: CLIENT, dst: VIP, mf, id: 9, protocol: 6 }, payload: segment.subarray(0, n) } }), sender);
  const forged = [tiny(CLIENT, MAC_A), tiny(EDGE_IP, MAC_ROUTER), tiny(CLIENT, MAC_ROUTER, 16)];
  for (const f of forged) t.is(run(dp.ingress, f).retval, TC_SHOT); // before: TC_UNSPEC, untouched
  t.like(dp.counters(), { drop_untrusted_source: forged.length });
  // An edge's passes untouched (not ours to reassemble), and so does a
  // stranger's whole, unfragmented but truncated segment (the kernel drops it).
  for (const f of [tiny(EDGE_IP, MAC_A), tiny(CLIENT, MAC_ROUTER, 8, false)]) t.deepEqual(run(dp.ingress, f), { retval: TC_UNSPEC, out: f });
  t.like(dp.counters(), { drop_untrusted_source: forged.length, in_ipip_dnat: 0 });
  t.is(dp.flows().length + dp.fwdEntries().length, 0);
});

// With --node-ip, IPIP to another of the node's addresses is someone
// else's and passed untouched — before the trust check, so a stranger's
// tunnel to a frontend went on to the kernel, whose tunl0 takes IPIP to any
// local address and delivers the inner packet to the VIP.
test('trust boundary: a stranger\'s IPIP to a frontend addressed to another of the node\'s addresses is dropped; an edge\'s and the CNI\'s pass untouched', (t) => {
  const dp = loadNode(t, { nodeIp: NODE_IP });
  const syn: Omit<PacketSpec, 'eth'> = { ip: { src: CLIENT, dst: VIP }, tcp: { sport: 41000, dport: 80, flags: { syn: true } } };
  const to = (src: string, sender: string, inner = syn, dst = '192.0.2.22'): Buffer => fromSender(buildPacket({ eth, ip: { src, dst }, inner }), sender);
  const forged = [to(CLIENT, MAC_A), to(EDGE_IP, MAC_ROUTER), to(CLIENT, MAC_ROUTER, { ip: { src: CLIENT, dst: VIP }, udp: { sport: 5000, dport: 53 } }, '10.244.1.1')];
  for (const f of forged) t.is(run(dp.ingress, f).retval, TC_SHOT); // before: TC_UNSPEC, untouched
  t.like(dp.counters(), { drop_untrusted_source: forged.length });
  const calico = { ip: { src: '10.244.3.3', dst: POD1 }, tcp: { sport: 1, dport: 8080, flags: { syn: true } } };
  for (const f of [to(EDGE_IP, MAC_A), to('192.0.2.23', MAC_OTHER, calico)]) t.deepEqual(run(dp.ingress, f), { retval: TC_UNSPEC, out: f });
  t.like(dp.counters(), { drop_untrusted_source: forged.length, in_ipip_dnat: 0 });
  t.is(dp.flows().length + dp.fwdEntries().length, 0);
});

// ---------------------------------------------------------------- ipip

function ipipFrame(inner: Omit<PacketSpec, 'eth'>, outerDst = NODE_IP): Buffer {
  return buildPacket({ eth, ip: { src: EDGE_IP, dst: outerDst, ttl: 63, tos: inner.ip.tos ?? 0 }, inner });
}

test('ipip: decapsulate, DNAT to the hashed local pod, remember the flow, rewrite the reply', (t) => {
  const dp = loadNode(t, { nodeIp: NODE_IP });
  const pods = [POD1, POD2, POD3]; // sorted slot order of the local backends
  const inner: Omit<PacketSpec, 'eth'> = { ip: { src: CLIENT, dst: VIP, ttl: 60, id: 77, tos: 0x10 }, tcp: { sport: 41000, dport: 80, seq: 9, flags: { syn: true } } };
  const pod = pods[localBackendSlot(CLIENT, VIP, 41000, 80, 'TCP', 3)]!;
  const r = run(dp.ingress, ipipFrame(inner));
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, buildPacket({ eth, ip: { ...inner.ip, dst: pod }, tcp: { ...inner.tcp!, dport: 8080 } }));
  assertWellFormed(t, r.out);
  t.like(dp.flow({ podIp: pod, podPort: 8080, clientIp: CLIENT, clientPort: 41000, proto: 'TCP' }), { vip: VIP, vipPort: 80, origin: 'ipip' });
  t.deepEqual(
    dp.fwdEntries().map((f) => [f.clientIp, f.clientPort, f.vip, f.vipPort, f.podIp, f.podPort]),
    [[CLIENT, 41000, VIP, 80, pod, 8080]],
  );
  t.like(dp.counters(), { in_ipip_dnat: 1, in_ipip_new_flow: 1 });

  const reply = podReply({ dport: 41000 }, { src: pod });
  const e = run(dp.egress, buildPacket(reply));
  t.deepEqual(e.out, asFromVip(reply));
  assertWellFormed(t, e.out);
});

test('ipip: an established flow keeps its pod when the local backend set changes', (t) => {
  const dp = loadNode(t);
  const sent = new Map<number, string>();
  for (let port = 42000; port < 42040; port++) {
    const r = run(dp.ingress, ipipFrame({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: port, dport: 80, flags: { syn: true } } }));
    sent.set(port, parsePacket(r.out).ip.dst);
    // node-maps.ts predicts the program's choice exactly (same hash).
    t.is(sent.get(port), [POD1, POD2, POD3][localBackendSlot(CLIENT, VIP, port, 80, 'TCP', 3)]);
  }
  t.is(new Set(sent.values()).size, 3, '40 flows spread over the 3 local pods');
  // POD1 and POD3 go away, POD4 arrives: existing flows stay (even to removed pods: their
  // connections drain), new flows use the new set only.
  const [svc80, ...rest] = standardServices();
  dp.applyServices([{ ...svc80!, backends: [backend(POD2, 8080), backend('10.244.1.8', 8080)] }, ...rest], { name: NODE_NAME });
  for (const [port, pod] of sent) {
    const r = run(dp.ingress, ipipFrame({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: port, dport: 80, flags: { ack: true } } }));
    t.is(parsePacket(r.out).ip.dst, pod);
  }
  for (let port = 43000; port < 43020; port++) {
    const r = run(dp.ingress, ipipFrame({ ip: { src: CLIENT2, dst: VIP }, tcp: { sport: port, dport: 80, flags: { syn: true } } }));
    t.true([POD2, '10.244.1.8'].includes(parsePacket(r.out).ip.dst));
  }
});

test('ipip UDP: a flow pinned to a pod that left this node moves to a pod that is here, within a second, even while the client keeps sending', (t) => {
  // UDP has no SYN to start over with: a client that keeps talking kept its
  // pin, and every datagram went to the deleted pod's address (a black hole,
  // or whichever pod got the address next) for as long as it talked. A
  // terminating pod is still listed, so its flows still drain to it.
  const dp = loadNode(t);
  const t0 = 1000n * SEC;
  dp.setTestClock(t0);
  const datagram = ipipFrame({ ip: { src: CLIENT, dst: VIP }, udp: { sport: 5001, dport: 53, payload: Buffer.from('q') } });
  const podOf = (): string => parsePacket(run(dp.ingress, datagram).out).ip.dst;
  const first = podOf();
  const other = first === POD1 ? POD2 : POD1;
  const [svc80, svc53, ...rest] = standardServices();
  // The pod turns terminating: still listed, its flow stays with it.
  dp.applyServices([svc80!, { ...svc53!, backends: [backend(first, 5353, NODE_NAME, 'terminating'), backend(other, 5353)] }, ...rest], { name: NODE_NAME });
  dp.setTestClock(t0 + 2n * SEC);
  t.is(podOf(), first, 'a terminating pod keeps its flow');
  // The pod is gone: the pin's next refresh (a second after its last) moves it.
  dp.applyServices([svc80!, { ...svc53!, backends: [backend(other, 5353)] }, ...rest], { name: NODE_NAME });
  for (const ms of [3500n, 3600n, 5000n]) {
    dp.setTestClock(t0 + ms * 1_000_000n);
    t.is(podOf(), other, `datagram at +${ms} ms goes to a pod that is here`);
  }
  t.like(dp.fwdEntries()[0], { podIp: other, podPort: 5353 });
  // TCP keeps its pins (its connections drain; a SYN starts over: pin_released).
});

test('ipip UDP: every packet DNATed to the same pod; checksum-less datagrams stay so', (t) => {
  const dp = loadNode(t);
  const pod = [POD1, POD2][localBackendSlot(CLIENT, VIP, 5000, 53, 'UDP', 2)]!;
  for (const checksum of [undefined, 0]) {
    const inner: Omit<PacketSpec, 'eth'> = { ip: { src: CLIENT, dst: VIP }, udp: { sport: 5000, dport: 53, payload: Buffer.from('q'), ...(checksum === 0 ? { checksum: 0 } : {}) } };
    const r = run(dp.ingress, ipipFrame(inner));
    t.deepEqual(r.out, buildPacket({ eth, ip: { ...inner.ip, dst: pod }, udp: { ...inner.udp!, dport: 5353 } }));
  }
  t.is(dp.flows().length, 1);
});

test('ipip not for us passes untouched: other node address, unknown VIP, non-L4 inner, fragments', (t) => {
  const dp = loadNode(t, { nodeIp: NODE_IP });
  const frames = [
    ipipFrame({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: 1, dport: 80, flags: { syn: true } } }, '192.0.2.22'),
    ipipFrame({ ip: { src: CLIENT, dst: '203.0.113.99' }, tcp: { sport: 1, dport: 80, flags: { syn: true } } }),
    ipipFrame({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: 1, dport: 81, flags: { syn: true } } }),
    ipipFrame({ ip: { src: CLIENT, dst: VIP }, icmp: icmpEcho({ id: 1, seq: 1 }) }),
    // Calico-style pod-to-pod IPIP.
    ipipFrame({ ip: { src: '10.244.3.3', dst: POD1 }, tcp: { sport: 1, dport: 8080, flags: { syn: true } } }),
    buildPacket({ eth, ip: { src: EDGE_IP, dst: NODE_IP, mf: true, protocol: 4 }, payload: Buffer.alloc(40, 0x45) }),
  ];
  for (const f of frames) {
    const r = run(dp.ingress, f);
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, f);
  }
  t.is(dp.flows().length, 0);
  t.like(dp.counters(), { in_ipip_not_ours: frames.length, in_ipip_dnat: 0 });
});

test('ipip ICMP frag-needed about a flow: decapsulated, re-addressed to the pod, quote and checksums fixed', (t) => {
  const dp = loadNode(t, { nodeIp: NODE_IP });
  run(dp.ingress, ipipFrame({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: 41000, dport: 80, flags: { syn: true } } }));
  const pod = [POD1, POD2, POD3][localBackendSlot(CLIENT, VIP, 41000, 80, 'TCP', 3)]!;
  const ROUTER = '192.0.2.254';
  // What the router saw (a reply from the VIP, DF) and quoted back to the VIP.
  const replyAsSent = (src: string, sport: number): Buffer =>
    buildPacket({ eth: false, ip: { src, dst: CLIENT, df: true, id: 5, ttl: 60 }, tcp: { sport, dport: 41000, seq: 7, flags: { ack: true }, payload: Buffer.alloc(1400, 1) } });
  const { icmpFragNeeded } = packets;
  const errorTo = (dst: string, quoted: Buffer): Omit<PacketSpec, 'eth'> => ({ ip: { src: ROUTER, dst, ttl: 250, id: 9 }, icmp: icmpFragNeeded({ mtu: 1400, original: quoted }) });

  const r = run(dp.ingress, ipipFrame(errorTo(VIP, replyAsSent(VIP, 80))));
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, buildPacket({ eth, ...errorTo(pod, replyAsSent(pod, 8080)) }));
  const out = parsePacket(r.out);
  t.true(verifyIpv4Checksum(out.ipBytes));
  t.true(verifyL4Checksum(out.ipBytes), 'ICMP checksum');
  t.true(verifyIpv4Checksum(out.icmp!.embedded!.ipBytes.subarray(0, 20)), 'quoted IPv4 header checksum');
  t.like(dp.counters(), { in_ipip_icmp: 1 });

  // The quote already names our pod (an edge that rewrote it): decapsulate only.
  const already = errorTo(pod, replyAsSent(pod, 8080));
  t.deepEqual(run(dp.ingress, ipipFrame(already)).out, buildPacket({ eth, ...already }));
  // About no flow of ours: untouched.
  for (const other of [errorTo(VIP, replyAsSent(VIP, 81)), errorTo(VIP2, replyAsSent(VIP2, 80))]) {
    const f = ipipFrame(other);
    t.deepEqual(run(dp.ingress, f).out, f);
  }
  t.like(dp.counters(), { in_ipip_icmp: 2, in_ipip_not_ours: 2 });
});

test('ipip to a known frontend without local pods is dropped and counted', (t) => {
  const dp = loadNode(t);
  const r = run(dp.ingress, ipipFrame({ ip: { src: CLIENT, dst: VIP2 }, tcp: { sport: 1, dport: 80, flags: { syn: true } } }));
  t.is(r.retval, TC_SHOT);
  t.like(dp.counters(), { drop_no_backend: 1 });
  // A raw zero-count entry behaves the same.
  dp.servicesMap.update(encodeSvcKey({ vip: '203.0.113.50', port: 1, proto: 'UDP' }), encodeSvcValue([]));
  t.is(run(dp.ingress, ipipFrame({ ip: { src: CLIENT, dst: '203.0.113.50' }, udp: { sport: 1, dport: 1 } })).retval, TC_SHOT);
});

// ---------------------------------------------------------------- expiry

test('TCP: FIN from both sides closes the flow after the close timeout; the last ACK is still rewritten', (t) => {
  const dp = loadNode(t, { closeSeconds: 5 });
  const t0 = 1000n * SEC;
  dp.setTestClock(t0);
  run(dp.ingress, optionTcp().frame);
  const key = { podIp: POD1, podPort: 8080, clientIp: CLIENT, clientPort: 40000, proto: 'TCP' as const };

  const podFin = podReply({ flags: { fin: true, ack: true } });
  t.deepEqual(run(dp.egress, buildPacket(podFin)).out, asFromVip(podFin));
  t.is(dp.flow(key)!.flags, FLOW_FIN_POD);

  dp.setTestClock(t0 + SEC);
  const clientFin = buildPacket({ eth, ip: { src: CLIENT, dst: POD1 }, tcp: { sport: 40000, dport: 8080, flags: { fin: true, ack: true } } });
  t.deepEqual(run(dp.ingress, clientFin).out, clientFin);
  t.is(dp.flow(key)!.flags, FLOW_FIN_POD | FLOW_FIN_CLIENT | FLOW_CLOSING);

  dp.setTestClock(t0 + 3n * SEC);
  const lastAck = podReply({ flags: { ack: true } });
  t.deepEqual(run(dp.egress, buildPacket(lastAck)).out, asFromVip(lastAck));

  dp.setTestClock(t0 + 3n * SEC + 6n * SEC);
  t.true(dp.flows()[0]!.expired);
  const late = buildPacket(podReply({ flags: { ack: true } }));
  t.deepEqual(run(dp.egress, late).out, late, 'expired: untouched');
  t.is(dp.flow(key), null, 'deleted lazily');
  t.like(dp.counters(), { flow_closing: 1, flow_expired: 1, eg_fin: 1, in_fin: 1 });
});

test('TCP: a RST from the pod or the client marks the flow; the RST and late segments are still rewritten', (t) => {
  const dp = loadNode(t);
  run(dp.ingress, optionTcp().frame);
  const key = { podIp: POD1, podPort: 8080, clientIp: CLIENT, clientPort: 40000, proto: 'TCP' as const };
  const rst = podReply({ flags: { rst: true } });
  t.deepEqual(run(dp.egress, buildPacket(rst)).out, asFromVip(rst));
  t.is(dp.flow(key)!.flags, FLOW_RST);
  const late = podReply({ flags: { rst: true, ack: true } });
  t.deepEqual(run(dp.egress, buildPacket(late)).out, asFromVip(late), 'a retransmitted RST still leaves from the VIP');

  run(dp.ingress, optionTcp({ sport: 40002 }).frame);
  const crst = buildPacket({ eth, ip: { src: CLIENT, dst: POD1 }, tcp: { sport: 40002, dport: 8080, flags: { rst: true } } });
  t.deepEqual(run(dp.ingress, crst).out, crst);
  t.is(dp.flow({ ...key, clientPort: 40002 })!.flags, FLOW_RST);
  t.like(dp.counters(), { eg_rst: 2, in_rst: 1 });
});

test('a blind RST does not end a live connection: replies keep leaving from the VIP, traffic clears the mark, even after a long silence', (t) => {
  const dp = loadNode(t, { rstSeconds: 2 });
  const t0 = 1000n * SEC;
  dp.setTestClock(t0);
  run(dp.ingress, optionTcp().frame);
  const key = { podIp: POD1, podPort: 8080, clientIp: CLIENT, clientPort: 40000, proto: 'TCP' as const };
  // The attacker's RST (wrong sequence number: the pod ignores it) reaches the node like any client segment.
  const blind = buildPacket({ eth, ip: { src: CLIENT, dst: POD1 }, tcp: { sport: 40000, dport: 8080, seq: 123, flags: { rst: true } } });
  t.deepEqual(run(dp.ingress, blind).out, blind);
  t.is(dp.flow(key)!.flags, FLOW_RST);
  // The keep-alive connection is idle for a minute; then the pod answers the client's next request.
  dp.setTestClock(t0 + 60n * SEC);
  const reply = podReply({ flags: { ack: true, psh: true }, payload: Buffer.from('HTTP/1.1 200 OK\r\n\r\n') });
  t.deepEqual(run(dp.egress, buildPacket(reply)).out, asFromVip(reply), 'still sent as the VIP');
  t.is(dp.flow(key)!.flags, 0, 'the pod\'s reply proved the connection alive');
});

test('a SYN for a live tuple never re-routes it; after both FINs, or a RST and silence, the reused port reaches its new frontend', (t) => {
  const dp = loadNode(t, { rstSeconds: 2 });
  dp.applyServices([...standardServices(), service(VIP3, 80, 'TCP', [backend(POD1, 8080)])], { name: NODE_NAME });
  const t0 = 1000n * SEC;
  dp.setTestClock(t0);
  const key = (cp: number): { podIp: string; podPort: number; clientIp: string; clientPort: number; proto: 'TCP' } => ({ podIp: POD1, podPort: 8080, clientIp: CLIENT, clientPort: cp, proto: 'TCP' });
  // Live: a SYN naming VIP3 with the same tuple is refused, the flow stays on VIP.
  run(dp.ingress, optionTcp({ sport: 41000 }).frame);
  t.is(run(dp.ingress, optionTcp({ sport: 41000, seq: 5 }, { vip: VIP3 }).frame).retval, TC_SHOT);
  t.like(dp.flow(key(41000)), { vip: VIP });
  // A blind RST then at once a SYN: still live.
  run(dp.ingress, buildPacket({ eth, ip: { src: CLIENT, dst: POD1 }, tcp: { sport: 41000, dport: 8080, flags: { rst: true } } }));
  dp.setTestClock(t0 + 1n * SEC);
  t.is(run(dp.ingress, optionTcp({ sport: 41000, seq: 6 }, { vip: VIP3 }).frame).retval, TC_SHOT);
  t.like(dp.flow(key(41000)), { vip: VIP });
  // A RST and silence: the connection is over; the client's reused port goes to VIP3.
  dp.setTestClock(t0 + 4n * SEC);
  t.is(run(dp.ingress, optionTcp({ sport: 41000, seq: 7 }, { vip: VIP3 }).frame).retval, TC_UNSPEC);
  t.like(dp.flow(key(41000)), { vip: VIP3, flags: 0 });

  // Both FINs: over at once (no need to wait out the close timeout).
  run(dp.ingress, optionTcp({ sport: 41001 }).frame);
  run(dp.egress, buildPacket(podReply({ dport: 41001, flags: { fin: true, ack: true } })));
  t.is(run(dp.ingress, optionTcp({ sport: 41001, seq: 9 }, { vip: VIP3 }).frame).retval, TC_SHOT, 'one FIN is no end');
  run(dp.ingress, buildPacket({ eth, ip: { src: CLIENT, dst: POD1 }, tcp: { sport: 41001, dport: 8080, flags: { fin: true, ack: true } } }));
  t.is(run(dp.ingress, optionTcp({ sport: 41001, seq: 10 }, { vip: VIP3 }).frame).retval, TC_UNSPEC);
  t.like(dp.flow(key(41001)), { vip: VIP3, flags: 0 });
  t.like(dp.counters(), { drop_vip_conflict: 3 });
});

test('ipip: a client RST keeps the pin; a SYN for a live flow stays on its pod, a SYN after the end (or for a pod no longer here) picks afresh', (t) => {
  const dp = loadNode(t, { rstSeconds: 2 });
  const t0 = 1000n * SEC;
  dp.setTestClock(t0);
  const seg = (flags: TcpSpec['flags']): Buffer => ipipFrame({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: 7, dport: 80, flags } });
  const podOf = (f: Buffer): string => parsePacket(run(dp.ingress, f).out).ip.dst;
  const first = podOf(seg({ syn: true }));
  run(dp.ingress, seg({ rst: true }));
  t.is(dp.fwdEntries().length, 1, 'the pin stays');
  t.is(dp.flows().length, 1);
  // The pod set grows so that a fresh choice may differ; a SYN right after the RST stays.
  const pods = [POD1, POD2, POD3, '10.244.1.8', '10.244.1.9'];
  const withPods = (ps: string[]): void => void dp.applyServices([service(VIP, 80, 'TCP', ps.map((p) => backend(p, 8080))), ...standardServices().slice(1)], { name: NODE_NAME });
  withPods(pods);
  t.is(podOf(seg({ syn: true })), first, 'a SYN for a live flow keeps its pod');
  // After a RST and silence the SYN is a new connection: balanced over the current pods.
  run(dp.ingress, seg({ rst: true }));
  dp.setTestClock(t0 + 5n * SEC);
  t.is(podOf(seg({ syn: true })), pods[localBackendSlot(CLIENT, VIP, 7, 80, 'TCP', pods.length)]!);
  // A live pin to a pod that left this node: a SYN goes to a pod that is here.
  const pinned = dp.fwdEntries()[0]!.podIp;
  withPods(pods.filter((p) => p !== pinned));
  const moved = podOf(seg({ syn: true }));
  t.not(moved, pinned);
  t.is(podOf(seg({ ack: true })), moved, 'and the connection follows the new pin');
});

test('a FIN or RST outside the tunnel never moves an ipip flow towards its end: that client\'s segments only ever arrive inside IPIP', (t) => {
  // Anyone who can route a packet to a pod (from behind the router, say)
  // could send the client's FIN unencapsulated, from no edge: it marked the
  // flow, the pod's own FIN (a half-close) then made it CLOSING, and after
  // the close timeout of quiet the pod's replies left from its own address.
  const dp = loadNode(t, { closeSeconds: 10 });
  const t0 = 1000n * SEC;
  dp.setTestClock(t0);
  const seg = (flags: TcpSpec['flags']): Buffer => ipipFrame({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: 41000, dport: 80, flags } });
  const pod = parsePacket(run(dp.ingress, seg({ syn: true })).out).ip.dst;
  const key = { podIp: pod, podPort: 8080, clientIp: CLIENT, clientPort: 41000, proto: 'TCP' as const };
  for (const [flags, sender] of [[{ fin: true, ack: true }, MAC_ROUTER], [{ rst: true }, MAC_ROUTER], [{ fin: true, ack: true }, MAC_A]] as const) {
    const forged = fromSender(buildPacket({ eth, ip: { src: CLIENT, dst: pod }, tcp: { sport: 41000, dport: 8080, seq: 99, flags } }), sender);
    const r = run(dp.ingress, forged);
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, forged, 'passed on untouched (the pod\'s stack judges it)');
    t.is(dp.flow(key)!.flags, 0, `${JSON.stringify(flags)} from ${sender} left the flow alone`);
  }
  // The pod half-closes; after a quiet spell its next segment still leaves as the VIP.
  const half = podReply({ flags: { fin: true, ack: true } }, { src: pod });
  half.tcp = { ...half.tcp!, dport: 41000 };
  run(dp.egress, buildPacket(half));
  dp.setTestClock(t0 + 11n * SEC);
  const later = podReply({ flags: { ack: true, psh: true }, payload: Buffer.from('tail') }, { src: pod });
  later.tcp = { ...later.tcp!, dport: 41000 };
  t.deepEqual(run(dp.egress, buildPacket(later)).out, asFromVip(later));
  // The client's own FIN, inside IPIP, ends it as always.
  run(dp.ingress, seg({ fin: true, ack: true }));
  t.is(dp.flow(key)!.flags, FLOW_FIN_POD | FLOW_FIN_CLIENT | FLOW_CLOSING);
});

test('a SYN reusing a closing tuple starts a fresh flow', (t) => {
  const dp = loadNode(t);
  run(dp.ingress, optionTcp().frame);
  run(dp.egress, buildPacket(podReply({ flags: { fin: true, ack: true } })));
  run(dp.ingress, buildPacket({ eth, ip: { src: CLIENT, dst: POD1 }, tcp: { sport: 40000, dport: 8080, flags: { fin: true, ack: true } } }));
  t.is(dp.flows()[0]!.flags & FLOW_CLOSING, FLOW_CLOSING);
  run(dp.ingress, optionTcp({ seq: 99999 }).frame);
  t.is(dp.flows()[0]!.flags, 0);
});

test('idle timeout: refreshed by traffic, expired after the idle time, then ignored and deleted', (t) => {
  const dp = loadNode(t, { udpIdleSeconds: 5 });
  const t0 = 5000n * SEC;
  dp.setTestClock(t0);
  run(dp.ingress, buildPacket({ eth, ip: { src: CLIENT, dst: POD1, options: dsrOption(VIP, 53) }, udp: { sport: 999, dport: 5353 } }));
  const reply: PacketSpec = { eth: ethBack, ip: { src: POD1, dst: CLIENT }, udp: { sport: 5353, dport: 999, payload: Buffer.from('r') } };
  const rewritten = asFromVip(reply, VIP, 53);
  for (const dt of [4n, 8n, 12n]) {
    dp.setTestClock(t0 + dt * SEC);
    t.deepEqual(run(dp.egress, buildPacket(reply)).out, rewritten, `at +${dt}s`);
  }
  dp.setTestClock(t0 + 17n * SEC + 1n);
  t.deepEqual(run(dp.egress, buildPacket(reply)).out, buildPacket(reply));
  t.is(dp.flows().length, 0);
  t.like(dp.counters(), { flow_expired: 1 });
});

test('gc() removes expired flows and forward pins', (t) => {
  const dp = loadNode(t, { tcpIdleSeconds: 10 });
  dp.setTestClock(100n * SEC);
  run(dp.ingress, optionTcp().frame);
  run(dp.ingress, ipipFrame({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: 5, dport: 80, flags: { syn: true } } }));
  t.is(dp.gc(), 0);
  dp.setTestClock(111n * SEC);
  t.is(dp.gc(), 3);
  t.is(dp.flows().length + dp.fwdEntries().length, 0);
});

// ---------------------------------------------------------------- truncation

test('truncated frames at every length: no crash; untouched pass (or the kernel refuses to build the skb)', (t) => {
  const dp = loadNode(t);
  run(dp.ingress, optionTcp().frame); // a flow, so egress looks further
  const samples = [
    optionTcp().frame,
    ipipFrame({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: 1, dport: 80, flags: { syn: true } } }),
    buildPacket(podReply()),
    buildPacket({ eth, ip: { src: CLIENT, dst: POD1, options: dsrOption(VIP, 53) }, udp: { sport: 1, dport: 5353 } }),
    Buffer.concat([Buffer.from('000000000001000000000002810000640800', 'hex'), optionTcp().frame.subarray(14)]),
  ];
  let refused = 0;
  let ran = 0;
  for (const full of samples) {
    for (let len = 0; len < full.length; len++) {
      const f = Buffer.from(full.subarray(0, len));
      for (const prog of [dp.ingress, dp.egress]) {
        let r;
        try {
          r = run(prog, f);
        } catch (e) {
          // The kernel's test-run wants an Ethernet header, and for
          // EtherType IPv4 a whole 20-byte IPv4 header; the VLAN-tagged
          // sample reaches the program's own checks at those lengths.
          const ipv4 = full.readUInt16BE(12) === 0x0800;
          t.true(len < 14 || (ipv4 && len < 34), `only frames the kernel cannot build an skb from may be refused (len ${len}): ${(e as Error).message}`);
          refused++;
          continue;
        }
        ran++;
        t.is(r.retval, TC_UNSPEC, `len ${len}`);
        t.deepEqual(r.out, f, `len ${len} untouched`);
      }
    }
  }
  t.true(ran > 200, `${ran} runs`);
  t.log(`${ran} runs, ${refused} refused by the kernel (no Ethernet / IPv4 base header)`);
});

test('VLAN-tagged option packet: flow recorded, option kept (the kernel cannot shrink a tagged frame)', (t) => {
  const dp = loadNode(t);
  const plain = optionTcp().frame;
  const tagged = Buffer.concat([plain.subarray(0, 12), Buffer.from('810000640800', 'hex'), plain.subarray(14)]);
  const r = run(dp.ingress, tagged);
  t.is(r.retval, TC_UNSPEC);
  t.is(dp.flows().length, 1);
  const c = dp.counters();
  t.is(c.in_opt_kept + c.in_opt_stripped, 1);
  if (c.in_opt_kept === 1) t.deepEqual(r.out, tagged);
  else t.log('kernel stripped the option of a tagged frame');
});

// ---------------------------------------------------------------- pure parts

test('localServiceEntries: this node only, ready first then terminating, sorted, DSR only, known frontends kept', (t) => {
  const svcs = [
    service(VIP, 80, 'TCP', [backend(POD3, 80), backend(POD1, 80), backend(OTHER_NODE_POD, 80, 'node-b'), backend(POD2, 80, NODE_NAME, 'terminating')]),
    service(VIP, 81, 'TCP', [backend(POD2, 81, NODE_NAME, 'terminating')]),
    { ...service(VIP, 82, 'UDP', [backend(POD1, 82)]), mode: 'hybrid' as const },
    { ...service(VIP, 83, 'TCP', [backend(POD1, 83)]), mode: 'snat' as const },
    service(VIP2, 80, 'TCP', [backend(OTHER_NODE_POD, 80, 'node-b')]),
  ];
  const { entries } = localServiceEntries(svcs, { name: NODE_NAME });
  // Terminating pods are listed (an option may still name them) after the ready ones, which alone take new ipip flows.
  t.deepEqual(
    entries.map((e) => [e.vip, e.port, e.proto, e.backends.map((b) => b.ip), e.pick]),
    [
      [VIP, 80, 'TCP', [POD1, POD3, POD2], 2],
      [VIP, 81, 'TCP', [POD2], 1],
      [VIP2, 80, 'TCP', [], 0],
    ],
  );
  t.deepEqual(localServiceEntries(svcs, { ip: NODE_IP }).entries, entries);
  // Without a node, the caller already restricted the backends.
  t.deepEqual(localServiceEntries([svcs[1]!]).entries.map((e) => e.backends), [[{ ip: POD2, port: 81 }]]);
  t.deepEqual(localServiceEntries([svcs[0]!]).entries[0]!.backends.map((b) => b.ip), [POD1, POD3, OTHER_NODE_POD, POD2]);
  t.throws(() => localServiceEntries(svcs, {}), { message: /node name or IP/ });
});

test('two Services claiming one frontend (status names one VIP and port twice): the one with the smaller key is programmed, the other reported — never a throw, which would stop the node agent', (t) => {
  // The edges' leader hands a frontend to the first Service that claims it,
  // which after a restart is the first in the API server's (key-sorted) list.
  const a = service(VIP, 80, 'TCP', [backend(POD1, 80)], 'ns/b-second');
  const b = service(VIP, 80, 'TCP', [backend(POD2, 80)], 'ns/a-first');
  for (const order of [[a, b], [b, a]]) {
    const r = localServiceEntries(order, { name: NODE_NAME });
    t.deepEqual(r.entries.map((e) => [e.service, e.backends.map((x) => x.ip)]), [['ns/a-first', [POD2]]]);
    t.deepEqual(r.conflicts, [`${VIP}:80/TCP: ns/a-first programmed, ns/b-second not`]);
  }
  const dp = loadNode(t);
  const applied = dp.applyServices([a, b, ...standardServices().slice(1)], { name: NODE_NAME });
  t.deepEqual(applied.conflicts, [`${VIP}:80/TCP: ns/a-first programmed, ns/b-second not`]);
  t.deepEqual(dp.localServices().find((e) => e.port === 80 && e.vip === VIP)?.backends, [{ ip: POD2, port: 80 }]);
});

test('applyServices writes only differences and removes stale entries', (t) => {
  const dp = loadNode(t);
  t.is(dp.localServices().length, 3);
  t.deepEqual(dp.applyServices(standardServices(), { name: NODE_NAME }), { added: 0, updated: 0, removed: 0, truncated: [], unprogrammed: 0, secondChanceEntries: 4, secondChanceSkipped: 0, conflicts: [] });
  const [a, b] = standardServices();
  t.deepEqual(dp.applyServices([a!, { ...b!, backends: [backend(POD3, 5353)] }], { name: NODE_NAME }), { added: 0, updated: 1, removed: 1, truncated: [], unprogrammed: 0, secondChanceEntries: 4, secondChanceSkipped: 0, conflicts: [] });
  const many = Array.from({ length: 40 }, (_, i) => backend(`10.244.9.${i + 1}`, 80));
  const r = dp.applyServices([service(VIP, 80, 'TCP', many)], { name: NODE_NAME });
  t.deepEqual(r.truncated, [`ns/svc-${VIP}-80`]);
  t.is(dp.localServices()[0]!.backends.length, 32);
});

test('a cluster larger than the node\'s maps: never a throw; this node\'s frontends are programmed first, others fill what room is left; second-chance entries only for frontends with a pod here; local frontends beyond the map are counted', (t) => {
  // 20 000 DSR frontends of 4 pods each (80 000 second-chance entries
  // against node_sc_backends' 65 536; 20 000 frontends against
  // node_services' 4 096), 50 of them with a pod on this node.
  const dp = loadNode(t);
  const svcs = Array.from({ length: 20_000 }, (_, i) => {
    const vip = `203.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    const pods = [0, 1, 2, 3].map((j) => backend(`10.${100 + j}.${(i >> 8) & 255}.${i & 255}`, 8080, 'node-b'));
    if (i % 400 === 7) pods.push(backend(`10.244.${3 + (i >> 8)}.${i & 255}`, 8080));
    return service(vip, 80, 'TCP', pods);
  });
  const r = dp.applyServices(svcs, { name: NODE_NAME });
  const local = svcs.filter((_, i) => i % 400 === 7).map((s) => `${s.frontend.vip}:80/TCP`);
  const programmed = new Set(dp.localServices().map((e) => `${e.vip}:${e.port}/${e.proto}`));
  t.true(local.every((k) => programmed.has(k)), 'every frontend with a pod here is programmed');
  t.is(programmed.size, 4096, 'node_services full, not over');
  t.is(r.unprogrammed, 0, 'frontends without a pod here fill what room is left, silently');
  // Second chance hands over only to nodes of frontends with a pod here (the primary is here).
  t.is(r.secondChanceEntries, 50 * 5);
  t.is(r.secondChanceSkipped, 0);
  t.is(dp.localServices().filter((e) => e.backends.length > 0).length, 50);
  // More frontends with a pod here than node_services holds: what fits is programmed, the rest counted.
  const busy = Array.from({ length: 4100 }, (_, i) => service(`203.9.${i >> 8}.${i & 255}`, 80, 'TCP', [backend(`10.244.${3 + (i >> 8)}.${i & 255}`, 8080)]));
  const full = dp.applyServices(busy, { name: NODE_NAME });
  t.is(full.unprogrammed, 4);
  t.is(dp.localServices().length, 4096);
});

test('upgrade: a pinned node map of another layout is replaced (warning naming it); the others keep their contents', (t) => {
  const pinPath = pinDirFor(t, 'node-upgrade');
  const first = NodeDatapath.open({ pinPath, maxFlows: 4096, edgeSources: [EDGE_IP] });
  first.applyServices(standardServices(), { name: NODE_NAME });
  const services = first.localServices().length;
  const spec = { type: first.edgeMacsMap.type, keySize: first.edgeMacsMap.keySize, valueSize: first.edgeMacsMap.valueSize + 4, maxEntries: first.edgeMacsMap.maxEntries, flags: first.edgeMacsMap.flags };
  const macsName = first.edgeMacsMap.name;
  first.close();
  unlinkSync(`${pinPath}/${macsName}`);
  const other = BpfMap.create(spec);
  other.pin(`${pinPath}/${macsName}`);
  other.close();
  const lines: { level: number; msg: string; map?: string }[] = [];
  const logger = createLogger({ level: 'info', stream: { write: (l: string) => void lines.push(JSON.parse(l) as (typeof lines)[number]) } });
  const second = NodeDatapath.open({ pinPath, maxFlows: 4096, edgeSources: [EDGE_IP], logger });
  t.teardown(() => second.close());
  t.is(second.edgeMacsMap.valueSize, spec.valueSize - 4);
  t.true(lines.some((l) => l.level === 40 && l.map === macsName && /value size/.test(l.msg)));
  t.is(second.localServices().length, services, 'node_services kept its entries');
});

test('map encoders round-trip and match the kernel maps\' sizes', (t) => {
  const fk = { podIp: POD1, podPort: 8080, clientIp: CLIENT, clientPort: 40000, proto: 'TCP' as const };
  t.deepEqual(decodeFlowKey(encodeFlowKey(fk)), fk);
  t.is(encodeFlowKey(fk).toString('hex'), '0af40105c63364071f909c4006000000');
  const fv = { vip: VIP, vipPort: 80, flags: 5, origin: 'ipip' as const, lastSeenNs: 123456789012345n, createdNs: 1n };
  t.deepEqual(decodeFlowValue(encodeFlowValue(fv)), fv);
  const wk = { clientIp: CLIENT, clientPort: 1, vip: VIP, vipPort: 53, proto: 'UDP' as const };
  t.deepEqual(decodeFwdKey(encodeFwdKey(wk)), wk);
  const wv = { podIp: POD2, podPort: 5353, lastSeenNs: 9n };
  t.deepEqual(decodeFwdValue(encodeFwdValue(wv)), wv);
  const sk = { vip: VIP, port: 443, proto: 'TCP' as const };
  t.deepEqual(decodeSvcKey(encodeSvcKey(sk)), sk);
  t.deepEqual(decodeSvcValue(encodeSvcValue([{ ip: POD1, port: 1 }, { ip: POD3, port: 65535 }])), [{ ip: POD1, port: 1 }, { ip: POD3, port: 65535 }]);
  t.is(decodeSvcPick(encodeSvcValue([{ ip: POD1, port: 1 }, { ip: POD3, port: 65535 }], 1)), 1);
  t.is(decodeSvcPick(encodeSvcValue([{ ip: POD1, port: 1 }, { ip: POD3, port: 65535 }])), 2);
  t.throws(() => encodeSvcValue([{ ip: POD1, port: 1 }], 2), { message: /pick 2/ });
  const cfg = { tcpIdleNs: 1n, udpIdleNs: 2n, closeNs: 3n, nowNs: 4n, nodeIp: NODE_IP, stripOption: true, checkOuterDst: false, verifyVip: true, rstNs: 5n, insertLimit: 6 };
  t.deepEqual(decodeConfig(encodeConfig(cfg)), cfg);
  t.throws(() => encodeFlowKey({ ...fk, podIp: '10.0.0.256' }), { message: /flow podIp/ });
  t.throws(() => encodeSvcValue(Array.from({ length: 33 }, () => ({ ip: POD1, port: 1 }))), { message: /limit of 32/ });
  t.throws(() => localBackendSlot(CLIENT, VIP, 1, 1, 'TCP', 0), { instanceOf: RangeError });
  t.not(nodeTupleHash(CLIENT, VIP, 1, 80, 'TCP'), nodeTupleHash(CLIENT, VIP, 1, 80, 'UDP'));

  const dp = loadNode(t);
  t.is(dp.flowsMap.keySize, 16);
  t.is(dp.flowsMap.valueSize, 24);
  t.is(dp.fwdMap.keySize, 16);
  t.is(dp.fwdMap.valueSize, 16);
  t.is(dp.servicesMap.keySize, 8);
  t.is(dp.servicesMap.valueSize, 264);
  t.is(dp.configMap.valueSize, 56);
  t.is(dp.edgeAddrsMap.keySize, encodeEdgeAddrKey(EDGE_IP).length);
  t.is(dp.edgeAddrsMap.valueSize, encodeEdgeMacKey(MAC_A).length);
  t.is(encodeEdgeAddrKey(EDGE_IP).toString('hex'), '00000000000000000000ffffc0000201');
});

// ---------------------------------------------------------------- trust boundary (issue 13)

test('trust boundary: an option from a link-layer sender that is no edge is dropped and counted, never passed stripped', (t) => {
  const dp = loadNode(t);
  // A client beyond the router sends a SYN straight to a pod with our option.
  for (const frame of [optionTcp().frame, optionTcp({}, { vip: VIP2 }).frame, buildPacket({ eth, ip: { src: CLIENT, dst: POD2, options: dsrOption(VIP, 53) }, udp: { sport: 1, dport: 5353 } })]) {
    const r = run(dp.ingress, fromSender(frame, MAC_ROUTER));
    t.is(r.retval, TC_SHOT);
  }
  // Malformed options from a stranger are refused as untrusted too.
  t.is(run(dp.ingress, fromSender(buildPacket({ eth, ip: { src: CLIENT, dst: POD1, options: Buffer.from([0x9e, 6, 0, 80, 1, 2, 3, 4]) }, tcp: { sport: 1, dport: 8080 } }), MAC_ROUTER)).retval, TC_SHOT);
  t.is(dp.flows().length, 0);
  t.like(dp.counters(), { drop_untrusted_source: 4, in_opt_flow: 0, in_opt_stripped: 0, in_opt_kept: 0 });
  // The edge's own frame is accepted.
  t.is(run(dp.ingress, optionTcp().frame).retval, TC_UNSPEC);
  t.is(dp.flows().length, 1);
  // A node that trusts nobody (no edge sources) accepts no option at all.
  const none = loadNode(t, { edgeSources: [] }, { edgeMac: null });
  t.is(run(none.ingress, optionTcp().frame).retval, TC_SHOT);
  t.like(none.counters(), { drop_untrusted_source: 1 });
});

test('trust boundary: IPIP to a frontend from outside the edge sources or from an unknown neighbour is dropped; the CNI\'s IPIP passes', (t) => {
  const dp = loadNode(t, { nodeIp: NODE_IP });
  const syn: Omit<PacketSpec, 'eth'> = { ip: { src: CLIENT, dst: VIP }, tcp: { sport: 41000, dport: 80, flags: { syn: true } } };
  const attacks = [
    // Outer source outside the edge sources (a client tunnelling straight to the node).
    buildPacket({ eth, ip: { src: CLIENT, dst: NODE_IP }, inner: syn }),
    // The edge's address as outer source, but sent by a router (spoofed from beyond it).
    fromSender(buildPacket({ eth, ip: { src: EDGE_IP, dst: NODE_IP }, inner: syn }), MAC_ROUTER),
  ];
  for (const f of attacks) t.is(run(dp.ingress, f).retval, TC_SHOT);
  t.is(dp.flows().length + dp.fwdEntries().length, 0);
  t.like(dp.counters(), { drop_untrusted_source: 2, in_ipip_dnat: 0 });
  // A real flow, then an untrusted packet of that same flow and an ICMP error about it.
  t.is(run(dp.ingress, buildPacket({ eth, ip: { src: EDGE_IP, dst: NODE_IP }, inner: syn })).retval, TC_UNSPEC);
  const fwdBefore = dp.fwdEntries();
  t.is(run(dp.ingress, buildPacket({ eth, ip: { src: CLIENT2, dst: NODE_IP }, inner: { ...syn, tcp: { ...syn.tcp!, flags: { rst: true } } } })).retval, TC_SHOT);
  const quoted = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, df: true }, tcp: { sport: 80, dport: 41000, flags: { ack: true } } });
  const icmp = buildPacket({ eth, ip: { src: CLIENT2, dst: NODE_IP }, inner: { ip: { src: '192.0.2.254', dst: VIP }, icmp: packets.icmpFragNeeded({ mtu: 1000, original: quoted }) } });
  t.is(run(dp.ingress, icmp).retval, TC_SHOT);
  t.deepEqual(dp.fwdEntries(), fwdBefore);
  t.like(dp.counters(), { drop_untrusted_source: 4, in_ipip_icmp: 0 });
  // Pod-to-pod IPIP of the CNI (no frontend inside) from another node passes untouched.
  const calico = buildPacket({ eth: { src: MAC_OTHER, dst: MAC_B }, ip: { src: '192.0.2.22', dst: NODE_IP }, inner: { ip: { src: '10.244.3.3', dst: POD1 }, tcp: { sport: 1, dport: 8080, flags: { syn: true } } } });
  const r = run(dp.ingress, calico);
  t.is(r.retval, TC_UNSPEC);
  t.deepEqual(r.out, calico);
});

test('trust boundary: edge neighbours are learnt from their ARP; ARP for other addresses or for another sender teaches nothing', (t) => {
  const dp = loadNode(t, { edgeSources: ['192.0.2.0/29'] }, { edgeMac: null });
  t.is(run(dp.ingress, optionTcp().frame).retval, TC_SHOT, 'nobody trusted yet');
  const arp = (o: Partial<Parameters<typeof buildArp>[0]>): Buffer => buildArp({ op: 1, senderMac: MAC_A, senderIp: EDGE_IP, targetIp: NODE_IP, ...o });
  const teachNothing = [
    arp({ senderIp: '192.0.2.9' }), // outside the edge sources
    arp({ ethSrc: MAC_OTHER }), // claims another sender's address for its frame
    arp({ senderMac: '03:00:00:00:00:01', ethSrc: '03:00:00:00:00:01' }), // multicast sender
  ];
  for (const f of teachNothing) {
    const r = run(dp.ingress, f);
    t.is(r.retval, TC_UNSPEC);
    t.deepEqual(r.out, f, 'ARP passes untouched');
  }
  t.deepEqual(dp.edgeNeighbours(), []);
  t.is(run(dp.ingress, optionTcp().frame).retval, TC_SHOT);
  // The edge asks for the node's address (as it does before its first packet here).
  t.is(run(dp.ingress, arp({})).retval, TC_UNSPEC);
  t.deepEqual(dp.edgeNeighbours().map((n) => [n.mac, n.ip, n.how]), [[MAC_A, EDGE_IP, 'arp']]);
  t.is(run(dp.ingress, optionTcp().frame).retval, TC_UNSPEC);
  // A reply from another edge of the block teaches that one too.
  run(dp.ingress, buildArp({ op: 2, senderMac: MAC_OTHER, senderIp: '192.0.2.2', targetMac: MAC_B, targetIp: NODE_IP }));
  t.is(dp.edgeNeighbours().length, 2);
  t.like(dp.counters(), { edge_learnt: 2, drop_untrusted_source: 2 });
});

test('trust boundary: an edge taken out of the edge sources is trusted no more — at once, and after a restart over pinned maps', (t) => {
  // Its link-layer address stayed in node_edge_macs (pinned, so across the
  // agent's restart too): the IPIP check looks at the edge sources, but an
  // option packet is judged by its sender's MAC alone, so a decommissioned
  // (or compromised) edge removed from --edge-sources could still hand pods
  // flows with forged options.
  const pinPath = pinDirFor(t, 'node-revoke');
  const open = (edgeSources: string[]): NodeDatapath => {
    const dp = NodeDatapath.open({ pinPath, maxFlows: 4096, edgeSources });
    dp.applyServices(standardServices(), { name: NODE_NAME });
    return dp;
  };
  const EDGE2 = '192.0.2.2';
  const first = open([EDGE_IP, EDGE2]);
  first.trustEdgeNeighbour(EDGE_IP, MAC_A);
  first.trustEdgeNeighbour(EDGE2, MAC_OTHER);
  t.is(run(first.ingress, optionTcp({ sport: 1 }).frame).retval, TC_UNSPEC);
  first.close();
  // The agent restarts with EDGE_IP no longer among the edges.
  const dp = open([EDGE2]);
  t.teardown(() => dp.close());
  t.is(run(dp.ingress, optionTcp({ sport: 2 }).frame).retval, TC_SHOT, 'the removed edge\'s option is refused');
  t.deepEqual(dp.edgeNeighbours().map((n) => [n.mac, n.ip]), [[MAC_OTHER, EDGE2]], 'only the remaining edge is trusted');
  t.is(run(dp.ingress, fromSender(optionTcp({ sport: 3 }).frame, MAC_OTHER)).retval, TC_UNSPEC, 'the remaining edge\'s is accepted');
  t.like(dp.counters(), { drop_untrusted_source: 1 });
  // Taken out while running: the same.
  dp.setEdgeSources([EDGE_IP]);
  t.deepEqual(dp.edgeNeighbours(), []);
  t.is(run(dp.ingress, fromSender(optionTcp({ sport: 4 }).frame, MAC_OTHER)).retval, TC_SHOT);
});

test('trust boundary: an edge whose MAC changed (NIC replaced, VM re-created) is trusted under its new MAC only; an unconfirmed MAC expires', (t) => {
  // node_edge_macs is keyed by MAC: the edge's new MAC was added beside the
  // old one, which stayed trusted for good — whoever came to own the old
  // MAC (the NIC moved to another host, a VM re-created with it) could hand
  // pods flows with forged options.
  const dp = loadNode(t, { edgeSources: ['192.0.2.0/29'] }, { edgeMac: null });
  const EDGE2 = '192.0.2.2';
  const TTL = 600n * SEC; // README: a neighbour unconfirmed for 10 minutes is trusted no more
  let now = 1000n * SEC;
  dp.setTestClock(now);
  const arp = (mac: string, ip = EDGE_IP, ethSrc = mac): Buffer => buildArp({ op: 1, senderMac: mac, senderIp: ip, targetIp: NODE_IP, ethSrc });
  let sport = 1;
  const option = (mac: string): number => run(dp.ingress, fromSender(optionTcp({ sport: sport++ }).frame, mac)).retval;
  const trusted = (): string[][] => dp.edgeNeighbours().map((n) => [n.mac, n.ip ?? '']).sort();
  run(dp.ingress, arp(MAC_A));
  t.is(option(MAC_A), TC_UNSPEC);
  // The edge comes back with another MAC and resolves the node again.
  run(dp.ingress, arp(MAC_OTHER));
  t.is(option(MAC_OTHER), TC_UNSPEC);
  t.is(option(MAC_A), TC_SHOT, 'the old MAC is trusted no more');
  t.deepEqual(trusted(), [[MAC_OTHER, EDGE_IP]]);
  // The agent, from the kernel's neighbour table: the same.
  dp.trustEdgeNeighbour(EDGE_IP, MAC_A);
  t.deepEqual(trusted(), [[MAC_A, EDGE_IP]]);
  t.is(option(MAC_OTHER), TC_SHOT);
  // Only the edge's own ARP moves it: not one for a non-edge address, nor one
  // whose frame another sender sent, nor a data packet.
  for (const f of [arp(MAC_OTHER, '192.0.2.9'), arp(MAC_OTHER, EDGE_IP, MAC_ROUTER)]) run(dp.ingress, f);
  t.deepEqual(trusted(), [[MAC_A, EDGE_IP]]);
  t.is(option(MAC_A), TC_UNSPEC);
  // One NIC with two edge addresses: one of them moving leaves the MAC
  // trusted for the other.
  run(dp.ingress, arp(MAC_A, EDGE2));
  run(dp.ingress, arp(MAC_OTHER));
  t.deepEqual(trusted(), [[MAC_A, EDGE2], [MAC_OTHER, EDGE_IP]]);
  t.is(option(MAC_A), TC_UNSPEC);
  t.is(option(MAC_OTHER), TC_UNSPEC);
  // Expiry: the edge's ARP (or the agent) confirms its MAC; its own option
  // packets do not, so a MAC nobody confirms for the TTL is refused.
  now += TTL - SEC;
  dp.setTestClock(now);
  run(dp.ingress, arp(MAC_OTHER));
  now += 2n * SEC;
  dp.setTestClock(now);
  t.is(option(MAC_A), TC_SHOT, 'MAC_A was last confirmed a TTL ago');
  t.is(option(MAC_OTHER), TC_UNSPEC);
  now += TTL - 3n * SEC;
  dp.setTestClock(now);
  t.is(option(MAC_OTHER), TC_UNSPEC);
  now += 2n * SEC;
  dp.setTestClock(now);
  t.is(option(MAC_OTHER), TC_SHOT, 'its packets did not keep it trusted');
  t.deepEqual(trusted(), [], 'expired neighbours are not listed as trusted');
  dp.trustEdgeNeighbour(EDGE_IP, MAC_OTHER);
  t.is(option(MAC_OTHER), TC_UNSPEC, 'confirmed again by the agent');
});

test('trust boundary: the agent\'s copy of a neighbour table read before the edge\'s new MAC was learnt does not bring the old MAC back', (t) => {
  // The agent reads the kernel's table (the edge still at MAC_A), the edge's
  // ARP from its new MAC arrives, then the agent writes what it read: the
  // old MAC was trusted again, the new one not, until the next round.
  const dp = loadNode(t, {}, { edgeMac: null });
  dp.setTestClock(1000n * SEC);
  dp.trustEdgeNeighbour(EDGE_IP, MAC_A);
  const readAt = dp.nowNs();
  dp.setTestClock(1001n * SEC);
  run(dp.ingress, buildArp({ op: 1, senderMac: MAC_OTHER, senderIp: EDGE_IP, targetIp: NODE_IP }));
  dp.setTestClock(1002n * SEC);
  dp.trustEdgeNeighbour(EDGE_IP, MAC_A, readAt);
  t.deepEqual(dp.edgeNeighbours().map((n) => n.mac), [MAC_OTHER]);
  t.is(run(dp.ingress, optionTcp({ sport: 1 }).frame).retval, TC_SHOT);
  // A table read after it is believed (the edge went back to MAC_A).
  dp.trustEdgeNeighbour(EDGE_IP, MAC_A, dp.nowNs());
  t.deepEqual(dp.edgeNeighbours().map((n) => n.mac), [MAC_A]);
});

test('trust boundary: a router the edges\' IPIP crosses (edgeRouters) is trusted for IPIP only — a client behind it cannot forge an option', (t) => {
  // Across a routed hop every packet from behind the router arrives with the
  // router's MAC. Listed as an edge source (as the help advised), that MAC
  // was trusted for options too, and an option keeps the client's address:
  // anyone routed through it could hand a pod a flow (bypassing the edges).
  const ROUTER = '192.0.2.254';
  const dp = NodeDatapath.open({ maxFlows: 4096, edgeSources: [EDGE_IP], edgeRouters: [ROUTER], nodeIp: NODE_IP });
  t.teardown(() => dp.close());
  dp.applyServices(standardServices(), { name: NODE_NAME });
  t.deepEqual(dp.edgeRouters(), [`${ROUTER}/32`]);
  t.deepEqual(dp.edgeSources(), [`${EDGE_IP}/32`]);
  // The router resolves the node: learnt, as a router.
  run(dp.ingress, buildArp({ op: 1, senderMac: MAC_ROUTER, senderIp: ROUTER, targetIp: NODE_IP }));
  t.like(dp.edgeNeighbours(), [{ mac: MAC_ROUTER, ip: ROUTER, how: 'arp', router: true }]);
  // A client behind the router sends a SYN to a pod with a forged option: refused.
  const forged = fromSender(optionTcp({ sport: 1 }).frame, MAC_ROUTER);
  t.is(run(dp.ingress, forged).retval, TC_SHOT);
  t.is(dp.flows().length, 0);
  t.like(dp.counters(), { drop_untrusted_source: 1, in_opt_flow: 0 });
  // The edge's IPIP through the router: decapsulated as always.
  const syn: Omit<PacketSpec, 'eth'> = { ip: { src: CLIENT, dst: VIP }, tcp: { sport: 41000, dport: 80, flags: { syn: true } } };
  const r = run(dp.ingress, fromSender(buildPacket({ eth, ip: { src: EDGE_IP, dst: NODE_IP }, inner: syn }), MAC_ROUTER));
  t.is(r.retval, TC_UNSPEC);
  t.like(dp.counters(), { in_ipip_dnat: 1 });
  // IPIP whose outer source is the router's own address is no edge's.
  t.is(run(dp.ingress, fromSender(buildPacket({ eth, ip: { src: ROUTER, dst: NODE_IP }, inner: { ...syn, tcp: { ...syn.tcp!, sport: 41001 } } }), MAC_ROUTER)).retval, TC_SHOT);
  // Written by the agent from the neighbour table: a router too.
  dp.trustEdgeNeighbour(ROUTER, MAC_OTHER);
  t.like(dp.edgeNeighbours().find((n) => n.mac === MAC_OTHER), { router: true });
  t.is(run(dp.ingress, fromSender(optionTcp({ sport: 2 }).frame, MAC_OTHER)).retval, TC_SHOT);
  // The edge itself, on the link, still may.
  dp.trustEdgeNeighbour(EDGE_IP, MAC_A);
  t.is(run(dp.ingress, optionTcp({ sport: 3 }).frame).retval, TC_UNSPEC);
  t.like(dp.counters(), { drop_untrusted_source: 3 });
});

test('edge sources are validated before anything changes; a neighbour outside them is refused', (t) => {
  const dp = loadNode(t);
  t.throws(() => dp.setEdgeSources(['192.0.2.0/24', '10.0.0.1/24']), { message: /edge source '10.0.0.1\/24': host bits are set/ });
  t.throws(() => dp.setEdgeSources(['fd00::1/64']), { message: /edge source 'fd00::1\/64': host bits are set \(did you mean fd00::\/64\?\)/ });
  t.throws(() => dp.setEdgeSources(['10.0.0.300']), { message: /edge source '10.0.0.300'/ });
  t.deepEqual(dp.edgeSources(), [`${EDGE_IP}/32`]);
  t.deepEqual(dp.setEdgeSources(['192.0.2.0/28', '198.18.0.1']), ['192.0.2.0/28', '198.18.0.1/32']);
  t.throws(() => dp.trustEdgeNeighbour('10.9.9.9', MAC_OTHER), { message: /not inside any edge source/ });
  t.throws(() => NodeDatapath.open({ edgeSources: ['nonsense'] }), { message: /edge source 'nonsense'/ });
});

// ---------------------------------------------------------------- the option names a real backend (issue 13.2)


test('an option is accepted only when the destination is one of that frontend\'s backends on this node', (t) => {
  const dp = loadNode(t);
  const wrong = [
    optionTcp({ dport: 9999 }), // not the backend's port
    optionTcp({ dport: 5353 }), // a backend of VIP:53/UDP, not of VIP:80/TCP
    optionTcp({}, { dst: OTHER_NODE_POD }), // a backend of VIP:80, but not on this node
    optionTcp({}, { dst: '10.244.1.99' }), // no backend at all
    optionTcp({}, { vip: VIP2 }), // VIP2:80 has no pod on this node
  ];
  for (const { frame } of wrong) t.is(run(dp.ingress, frame).retval, TC_SHOT);
  t.is(dp.flows().length, 0);
  t.like(dp.counters(), { drop_wrong_backend: 5, in_opt_flow: 0 });
  for (const pod of [POD1, POD2, POD3]) t.is(run(dp.ingress, optionTcp({}, { dst: pod }).frame).retval, TC_UNSPEC);
  t.is(dp.flows().length, 3);
  // verifyVip off (debugging only) checks neither.
  dp.reconfigure({ verifyVip: false });
  t.is(run(dp.ingress, optionTcp({ dport: 9999 }).frame).retval, TC_UNSPEC);
});

test('rolling update: an option naming a terminating pod is accepted, new ipip flows never pick it', (t) => {
  // The edge keeps a terminating pod's flows, and a SYN it pinned (or a
  // client's retransmission of one) just before the pod turned terminating
  // arrives after this node learnt it: dropping it cost a client its
  // connection in every rolling update under load.
  const dp = loadNode(t);
  const [svc80, ...rest] = standardServices();
  const next = [backend(POD1, 8080, NODE_NAME, 'terminating'), backend(POD2, 8080, NODE_NAME, 'terminating'), backend(POD3, 8080)];
  dp.applyServices([{ ...svc80!, backends: next }, ...rest], { name: NODE_NAME });
  t.like(dp.localServices().find((e) => e.port === 80 && e.vip === VIP), { backends: [{ ip: POD3, port: 8080 }, { ip: POD1, port: 8080 }, { ip: POD2, port: 8080 }], pick: 1 });
  for (const pod of [POD1, POD2, POD3]) t.is(run(dp.ingress, optionTcp({}, { dst: pod }).frame).retval, TC_UNSPEC, `option SYN to ${pod}`);
  t.like(dp.counters(), { in_opt_flow: 3 });
  t.is(dp.counters().drop_wrong_backend ?? 0, 0);
  const picked = new Set<string>();
  for (let port = 43000; port < 43030; port++) {
    const r = run(dp.ingress, ipipFrame({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: port, dport: 80, flags: { syn: true } } }));
    picked.add(parsePacket(r.out).ip.dst);
  }
  t.deepEqual([...picked], [POD3], '30 new ipip flows all went to the one ready pod');
  // No ready pod left: the terminating ones take new ipip flows rather than none.
  dp.applyServices([{ ...svc80!, backends: next.slice(0, 2) }, ...rest], { name: NODE_NAME });
  picked.clear();
  for (let port = 44000; port < 44030; port++) {
    const r = run(dp.ingress, ipipFrame({ ip: { src: CLIENT, dst: VIP }, tcp: { sport: port, dport: 80, flags: { syn: true } } }));
    picked.add(parsePacket(r.out).ip.dst);
  }
  t.deepEqual([...picked].sort(), [POD1, POD2]);
});

test('a packet that is not a SYN never re-points a live flow at another VIP', (t) => {
  const dp = loadNode(t, { udpIdleSeconds: 60, rstSeconds: 2 });
  // VIP3 is served by the same pods: a second frontend whose option could name them.
  dp.applyServices([...standardServices(), service(VIP3, 80, 'TCP', [backend(POD1, 8080)]), service(VIP3, 53, 'UDP', [backend(POD2, 5353)])], { name: NODE_NAME });
  const t0 = 1000n * SEC;
  dp.setTestClock(t0);
  run(dp.ingress, optionTcp().frame);
  const key = { podIp: POD1, podPort: 8080, clientIp: CLIENT, clientPort: 40000, proto: 'TCP' as const };
  t.like(dp.flow(key), { vip: VIP });
  // An ACK carrying an option for VIP3 (the edge puts options on SYNs only).
  t.is(run(dp.ingress, optionTcp({ flags: { ack: true } }, { vip: VIP3 }).frame).retval, TC_SHOT);
  t.like(dp.flow(key), { vip: VIP, vipPort: 80 });
  const reply = podReply({ flags: { ack: true } });
  t.deepEqual(run(dp.egress, buildPacket(reply)).out, asFromVip(reply, VIP), 'replies still come from the flow\'s VIP');

  // UDP: every datagram carries the option; while the flow talks it stays on its VIP.
  const udp = (vip: string): Buffer => buildPacket({ eth, ip: { src: CLIENT, dst: POD2, options: dsrOption(vip, 53) }, udp: { sport: 3000, dport: 5353 } });
  const ukey = { podIp: POD2, podPort: 5353, clientIp: CLIENT, clientPort: 3000, proto: 'UDP' as const };
  run(dp.ingress, udp(VIP));
  t.is(run(dp.ingress, udp(VIP3)).retval, TC_SHOT);
  dp.setTestClock(t0 + 1n * SEC);
  t.is(run(dp.ingress, udp(VIP3)).retval, TC_SHOT);
  t.like(dp.flow(ukey), { vip: VIP });
  t.like(dp.counters(), { drop_vip_conflict: 3 });
  // Quiet for the RST grace (2 s; UDP has no handshake to tell a new flow by):
  // a client reusing its port for another frontend of the same pod takes the tuple.
  dp.setTestClock(t0 + 4n * SEC);
  t.is(run(dp.ingress, udp(VIP3)).retval, TC_UNSPEC);
  t.like(dp.flow(ukey), { vip: VIP3 });
});

test('a UDP datagram for another VIP takes a tuple over only after rst_ns since the flow\'s last datagram, not since its last refresh', (t) => {
  // last_seen moves at most once a second (touch): a datagram 1 s after the
  // one that set it leaves it behind, so 1.5 s after that datagram the flow
  // looked 2.5 s quiet — past rst_ns (2 s) — and a datagram naming another
  // frontend of the same pod (anyone's: its source is the client's) took
  // the tuple, the client's next replies leaving as that VIP.
  const dp = loadNode(t, { udpIdleSeconds: 60, rstSeconds: 2 });
  dp.applyServices([...standardServices(), service(VIP3, 53, 'UDP', [backend(POD2, 5353)])], { name: NODE_NAME });
  const udp = (vip: string): Buffer => buildPacket({ eth, ip: { src: CLIENT, dst: POD2, options: dsrOption(vip, 53) }, udp: { sport: 3000, dport: 5353 } });
  const ukey = { podIp: POD2, podPort: 5353, clientIp: CLIENT, clientPort: 3000, proto: 'UDP' as const };
  const t0 = 1000n * SEC;
  dp.setTestClock(t0);
  t.is(run(dp.ingress, udp(VIP)).retval, TC_UNSPEC);
  dp.setTestClock(t0 + SEC);
  t.is(run(dp.ingress, udp(VIP)).retval, TC_UNSPEC);
  dp.setTestClock(t0 + SEC + 1_500_000_000n);
  t.is(run(dp.ingress, udp(VIP3)).retval, TC_SHOT, '1.5 s after the flow\'s last datagram: still its own');
  t.like(dp.flow(ukey), { vip: VIP });
  // Quiet for rst_ns since that datagram (and a refresh's worth more): taken over.
  dp.setTestClock(t0 + SEC + 2n * SEC + SEC + 1n);
  t.is(run(dp.ingress, udp(VIP3)).retval, TC_UNSPEC);
  t.like(dp.flow(ukey), { vip: VIP3 });
});

// ---------------------------------------------------------------- floods (issue 13.4)

test('flood: new flows beyond the per-CPU insert limit are dropped and counted; established flows stay and are still rewritten', (t) => {
  const dp = loadNode(t, { flowInsertLimit: 20 });
  const t0 = 1000n * SEC;
  dp.setTestClock(t0);
  run(dp.ingress, optionTcp({ sport: 1000 }).frame);
  const established = podReply({ dport: 1000, flags: { ack: true } });
  // A SYN flood and a UDP flood from spoofed clients, through the edge.
  const n = 400;
  let passed = 0;
  for (let i = 0; i < n; i++) {
    const f = i % 2 === 0
      ? optionTcp({ sport: 20000 + i }, { src: `198.18.${i >> 8}.${i & 255}` }).frame
      : buildPacket({ eth, ip: { src: `198.19.${i >> 8}.${i & 255}`, dst: POD2, options: dsrOption(VIP, 53) }, udp: { sport: 20000 + i, dport: 5353 } });
    if (run(dp.ingress, f).retval === TC_UNSPEC) passed++;
  }
  const c = dp.counters();
  // 20 per CPU per window (the test clock stands still: one window); the runs may spread over every CPU.
  t.true(passed >= 19 && passed <= 20 * possibleCpus(), `passed ${passed}`);
  t.is(c.drop_insert_limit, n - passed);
  t.is(dp.flows().length, passed + 1);
  t.deepEqual(run(dp.egress, buildPacket(established)).out, asFromVip(established), 'the established flow is still there');
  // Packets of known flows are never limited.
  for (let i = 0; i < 50; i++) t.is(run(dp.ingress, optionTcp({ sport: 1000, seq: i }).frame).retval, TC_UNSPEC);
  // The next window admits new flows again.
  dp.setTestClock(t0 + 2n * SEC);
  t.is(run(dp.ingress, optionTcp({ sport: 30000 }).frame).retval, TC_UNSPEC);
  // ipip floods are limited the same way (one permit per flow for both maps).
  dp.setTestClock(t0 + 4n * SEC);
  let ipipPassed = 0;
  for (let i = 0; i < 200; i++) {
    if (run(dp.ingress, ipipFrame({ ip: { src: `198.20.0.${i}`, dst: VIP }, tcp: { sport: 5000 + i, dport: 80, flags: { syn: true } } })).retval === TC_UNSPEC) ipipPassed++;
  }
  t.true(ipipPassed >= 19 && ipipPassed <= 20 * possibleCpus(), `ipip passed ${ipipPassed}`);
  t.is(dp.fwdEntries().length, ipipPassed);
});
