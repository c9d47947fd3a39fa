// Edge program against hostile packets from the wire (BPF_PROG_TEST_RUN):
// forged ICMP errors, fragments, malformed headers. Each test names the
// defect it pins down; exact verdicts, bytes and counters.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { TC_ACT_OK, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_TX } from '../../src/datapath/loader.js';
import { buildPacket, icmpFragNeeded, parsePacket, verifyIpv4Checksum, verifyL4Checksum } from '../lib/packets.js';
import { CLIENT, CLIENT_MAC, EDGE, EDGE_MAC, SEC, VIP, backend, clientEth, openEdge, service, setEdgeClock, tcpPacket, tcpSpec, udpPacket } from './edge-helpers.js';
import { BE6_ID0, CLIENT6, EDGE6, RING6_OFF, SVC6_ID, VIP6, apply6, backend6, eth6, service6, tcp6, udp6 } from './edge6-helpers.js';
import { buildPacket6, ip6Bytes, parse6, verifyL4Checksum6 } from '../lib/packets6.js';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';

function run(dp: EdgeDatapath, data: Buffer, hook: 'xdp' | 'tc' = 'xdp'): { retval: number; out: Buffer } {
  const r = dp.program(hook).testRun({ data });
  return { retval: r.retval, out: r.dataOut };
}

const hex = (b: Buffer): string => b.toString('hex');
const ACK = { ack: true };

test('an ICMP error about an IPIP flow too big to encapsulate is never answered with an ICMP error (RFC 1122 3.2.2.1), nor one from the pod\'s address', (t) => {
  const dp = openEdge(t, { mtu: 1500 });
  dp.applyServices([service({ frontend: { vip: VIP, port: 81, protocol: 'TCP' }, dispatch: 'ipip', backends: [backend(1)] })]);
  // A "router" (anyone) quotes VIP:81 → client and pads the error to 1490
  // bytes with DF: 1490 + 20 (IPIP) > 1500.
  const reply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, df: true }, tcp: { sport: 81, dport: 47000, flags: ACK, seq: 1, payload: Buffer.alloc(1600) } });
  const err = buildPacket({
    eth: clientEth,
    ip: { src: '198.51.100.254', dst: VIP, df: true },
    icmp: icmpFragNeeded({ mtu: 1280, original: reply, embedBytes: 1490 - 28 }),
  });
  t.is(err.length, 14 + 1490);
  for (const hook of ['xdp', 'tc'] as const) {
    const r = run(dp, err, hook);
    // Left to the stack untouched, as edge_steer6.h does for IPv6 (before:
    // XDP_TX of a fragmentation-needed from 10.244.1.1, the pod, to the sender).
    t.is(r.retval, hook === 'xdp' ? XDP_PASS : TC_ACT_OK, hook);
    t.is(hex(r.out), hex(err), `${hook}: untouched`);
  }
  t.like(dp.counters().stats, { icmp_too_big_sent: 0, icmp_steered: 0, icmp_not_steered: 2 });
  // One that fits the tunnel is still steered (IPIP to the node).
  const small = buildPacket({ eth: clientEth, ip: { src: '198.51.100.254', dst: VIP, df: true }, icmp: icmpFragNeeded({ mtu: 1280, original: reply, embedBytes: 1480 - 28 }) });
  const r = run(dp, small);
  t.is(r.retval, XDP_PASS);
  const out = parsePacket(r.out);
  t.is(out.ip.protocol, 4);
  t.is(out.inner!.ip.dst, '10.244.1.1');
  t.true(verifyIpv4Checksum(out.ipBytes));
  t.true(verifyL4Checksum(out.inner!.ipBytes));
});

test('a first fragment to a VIP too short for its L4 header (RFC 1858 tiny fragment) or with a bogus TCP data offset is dropped like any fragment, never passed', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service()]);
  // MF, 8 bytes of TCP: the ports, nothing else (the rest would follow at offset 8).
  const tiny = buildPacket({ eth: clientEth, ip: { src: CLIENT, dst: VIP, mf: true, protocol: 6 }, payload: Buffer.from([0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1]) });
  // MF, a whole TCP header whose data offset is 0.
  const doff0 = Buffer.from(buildPacket({ eth: clientEth, ip: { src: CLIENT, dst: VIP, mf: true }, tcp: { sport: 40000, dport: 80, flags: ACK } }));
  doff0[14 + 20 + 12] = 0;
  // MF, 4 bytes of UDP.
  const udp4 = buildPacket({ eth: clientEth, ip: { src: CLIENT, dst: VIP, mf: true, protocol: 17 }, payload: Buffer.from([0x14, 0xe9, 0x00, 0x50]) });
  for (const f of [tiny, doff0, udp4]) {
    t.is(run(dp, f).retval, XDP_DROP, 'xdp');
    t.is(run(dp, f, 'tc').retval, TC_ACT_SHOT, 'tc');
  }
  t.is(dp.counters().stats.drop_fragment, 6);
  // Not a fragment: a truncated header still passes untouched (the stack discards it).
  const cut = Buffer.from(tcpPacket({ flags: ACK }));
  cut[14 + 20 + 12] = 0x30;
  const r = run(dp, cut);
  t.is(r.retval, XDP_PASS);
  t.is(hex(r.out), hex(cut));
  // The same tiny fragment to another address passes untouched.
  const elsewhere = buildPacket({ eth: clientEth, ip: { src: CLIENT, dst: '203.0.113.77', mf: true, protocol: 6 }, payload: Buffer.alloc(8) });
  t.is(hex(run(dp, elsewhere).out), hex(elsewhere));
});

test('an ICMP error whose IP length ends before the quoted ports is not steered on bytes outside the packet (trailing frame bytes)', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service()]);
  const reply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, df: true }, tcp: { sport: 80, dport: 47000, flags: ACK, seq: 1 } });
  // The ICMP message is 8 + 20 bytes (the quoted IP header alone) by its IP
  // length; the quoted ports lie in the frame's trailing bytes.
  const quoteIp = reply.subarray(0, 20);
  const short = buildPacket({ eth: clientEth, ip: { src: '198.51.100.254', dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: quoteIp, embedBytes: 20 }) });
  t.is(short.length, 14 + 48);
  const frame = Buffer.concat([short, reply.subarray(20, 28), Buffer.alloc(4)]);
  for (const hook of ['xdp', 'tc'] as const) {
    const r = run(dp, frame, hook);
    t.is(r.retval, hook === 'xdp' ? XDP_PASS : TC_ACT_OK, hook);
    t.is(hex(r.out), hex(frame), `${hook}: untouched`);
  }
  t.is(dp.counters().stats.icmp_steered, 0);
  // With the ports inside the packet it is steered (its checksum stays right).
  const whole = buildPacket({ eth: clientEth, ip: { src: '198.51.100.254', dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: reply }) });
  const r = run(dp, whole);
  t.is(parsePacket(r.out).ip.dst, '10.244.1.1');
  t.true(verifyL4Checksum(r.out.subarray(14)));
  t.is(dp.counters().stats.icmp_steered, 1);
});

// The IPv6 twins of the two cases above (edge_steer6.h).

/** The pod's reply VIP6:80 → client as it left the node, `payload` bytes of TCP data. */
const reply6 = (payload: number): Buffer =>
  buildPacket6({ eth: false, ip: { src: VIP6, dst: CLIENT6, hopLimit: 60 }, tcp: { sport: 80, dport: 43210, seq: 5000, ack: 1001, flags: ACK, payload: Buffer.alloc(payload, 7) } });
/** A router's Packet Too Big (MTU 1280) to the VIP quoting `quote`. */
const ptb6 = (quote: Buffer): Buffer =>
  buildPacket6({ eth: eth6, ip: { src: '2001:db8:ff::1', dst: VIP6, hopLimit: 62 }, icmp6: { type: 2, body: Buffer.concat([Buffer.from('00000500', 'hex'), quote]) } });

test('IPv6: a Packet Too Big about an IP6IP6 flow too big to encapsulate is never answered with an ICMPv6 error, nor one from the pod\'s address', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, mtu: 1500 });
  apply6(dp, service6({ dispatch: 'ipip' }));
  // 1440 bytes of ICMPv6: 40 + 40 (IP6IP6) + 1440 > 1500.
  const big = ptb6(reply6(1500).subarray(0, 1440 - 8));
  t.is(big.length, 14 + 40 + 1440);
  for (const hook of ['xdp', 'tc'] as const) {
    const r = run(dp, big, hook);
    t.is(r.retval, hook === 'xdp' ? XDP_PASS : TC_ACT_OK, hook);
    t.is(hex(r.out), hex(big), `${hook}: untouched`);
  }
  t.like(dp.counters().stats, { icmp_too_big_sent: 0, ttl_exceeded: 0, icmp_steered: 0, icmp_not_steered: 2 });
  // One that fits the tunnel (40 + 40 + 1420 = 1500) is steered: IP6IP6 to the pod's node.
  const r = run(dp, ptb6(reply6(1500).subarray(0, 1420 - 8)));
  t.is(r.retval, XDP_PASS);
  t.is(r.out[14 + 6], 41, 'IPv6-in-IPv6');
  t.is(parse6(r.out.subarray(14 + 40)).dst, parse6(buildPacket6({ eth: false, ip: { src: CLIENT6, dst: 'fd00:244::2' }, udp: { sport: 1, dport: 2, payload: Buffer.alloc(0) } })).dst);
  t.true(verifyL4Checksum6(r.out.subarray(14 + 40)));
  t.is(dp.counters().stats.icmp_steered, 1);
});

test('IPv6: a Packet Too Big whose payload length ends before the quoted ports is not steered on bytes outside the packet (trailing frame bytes)', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6 });
  apply6(dp, service6());
  const reply = reply6(0);
  // By its payload length the ICMPv6 message is 8 + 40 bytes (the quoted
  // fixed header alone); the quoted ports lie in the frame's trailing bytes.
  const short = ptb6(reply.subarray(0, 40));
  t.is(short.length, 14 + 40 + 48);
  const frame = Buffer.concat([short, reply.subarray(40, 48), Buffer.alloc(4)]);
  for (const hook of ['xdp', 'tc'] as const) {
    const r = run(dp, frame, hook);
    t.is(r.retval, hook === 'xdp' ? XDP_PASS : TC_ACT_OK, hook);
    t.is(hex(r.out), hex(frame), `${hook}: untouched`);
  }
  t.is(dp.counters().stats.icmp_steered, 0);
  // With the ports inside the packet it is steered (its checksum stays right).
  const r = run(dp, ptb6(reply));
  t.is(parse6(r.out.subarray(14)).dst, parse6(buildPacket6({ eth: false, ip: { src: CLIENT6, dst: 'fd00:244::2' }, udp: { sport: 1, dport: 2, payload: Buffer.alloc(0) } })).dst);
  t.true(verifyL4Checksum6(r.out.subarray(14)));
  t.is(dp.counters().stats.icmp_steered, 1);
});

test('sources no single host sends from (0/8, 127/8, multicast, broadcast) open no flow and get no ICMP answer', (t) => {
  const dp = openEdge(t, { snatPorts: { min: 20000, max: 20003 } });
  dp.applyServices([service(), service({ service: 'default/dns', frontend: { vip: VIP, port: 53, protocol: 'UDP' }, mode: 'snat' })]);
  const martians = ['0.0.0.0', '0.1.2.3', '127.0.0.1', '224.0.0.1', '239.255.255.250', '255.255.255.255'];
  for (const src of martians) {
    t.is(run(dp, tcpPacket({ flags: { syn: true }, src })).retval, XDP_DROP, `SYN from ${src}`);
    t.is(run(dp, tcpPacket({ flags: ACK, src })).retval, XDP_DROP, `ACK from ${src}`);
    t.is(run(dp, udpPacket({ src, dport: 53 })).retval, XDP_DROP, `SNAT UDP from ${src}`);
    // TTL 1: before, an ICMP time-exceeded went to the broadcast / multicast / zero address.
    const spec = tcpSpec({ flags: { syn: true }, src });
    t.is(run(dp, buildPacket({ ...spec, ip: { ...spec.ip, ttl: 1 } })).retval, XDP_DROP, `TTL 1 from ${src}`);
    // An ICMP error from such a source is not steered either.
    const reply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, df: true }, tcp: { sport: 80, dport: 47000, flags: ACK } });
    t.is(run(dp, buildPacket({ eth: clientEth, ip: { src, dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: reply }) })).retval, XDP_DROP, `ICMP from ${src}`);
  }
  t.like(dp.counters().stats, { drop_bad_source: martians.length * 5, ttl_exceeded: 0, icmp_steered: 0 });
  t.is(dp.map('edge_ct').keys().length, 0);
  t.is(dp.map('edge_snat_rev').keys().length, 0);
  // Neighbours of those blocks are clients like any other.
  for (const src of ['1.0.0.1', '126.255.255.254', '128.0.0.1', '223.255.255.254']) {
    t.is(parsePacket(run(dp, tcpPacket({ flags: { syn: true }, src })).out).ip.dst, '10.244.1.1', src);
  }
});

test('IPv6: sources no single host sends from (::, ::1, multicast) open no flow and get no ICMPv6 answer', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6 });
  apply6(dp, service6());
  const martians = ['::', '::1', 'ff02::1', 'ff0e::1234'];
  for (const src of martians) {
    for (const hook of ['xdp', 'tc'] as const) {
      t.is(run(dp, tcp6({ src }), hook).retval, hook === 'xdp' ? XDP_DROP : TC_ACT_SHOT, `SYN from ${src} (${hook})`);
      t.is(run(dp, tcp6({ src, hopLimit: 1 }), hook).retval, hook === 'xdp' ? XDP_DROP : TC_ACT_SHOT, `hop limit 1 from ${src} (${hook})`);
    }
  }
  t.like(dp.counters().stats, { drop_bad_source: martians.length * 4, ttl_exceeded: 0 });
  t.is(dp.map('edge_ct6').keys().length, 0);
  // 2001:db8::ff00:1 and ::2 are unicast.
  for (const src of ['2001:db8::ff00:1', '::2']) t.is(run(dp, tcp6({ src })).retval, XDP_PASS, src);
});

test('IPv6: link-local (fe80::/10) and v4-mapped (::ffff:0:0/96) sources open no flow, no affinity and no SNAT port, and get no ICMPv6 answer; IPv4 link-local 169.254/16 likewise', (t) => {
  // Before: a link-local or v4-mapped source was balanced like a client's —
  // an ACK from fe80::1 entered edge_ct6, its SYN reached a pod whose reply
  // could go nowhere (no router forwards a link-local source; Linux drops a
  // v4-mapped one on receipt, RFC 4291 2.5.5.2). 169.254.169.254 is the
  // cloud metadata address: a pod's SYN-ACK to it went to the node's own link.
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, snatPorts: { min: 20000, max: 20003 } });
  apply6(dp, service6({ affinityTimeoutSeconds: 30 }));
  apply6(dp, service6({ service: 'default/dns6', frontend: { vip: VIP6, port: 53, protocol: 'UDP' }, mode: 'snat' }), { svcId: SVC6_ID + 1, backendIds: [BE6_ID0 + 10], ringOff: RING6_OFF - 16384 });
  const bogus6 = ['fe80::1', 'fe80::200:ff:fe00:1', 'febf:ffff::1', '::ffff:c633:6407', '::ffff:0:1'];
  for (const src of bogus6) {
    for (const hook of ['xdp', 'tc'] as const) {
      const drop = hook === 'xdp' ? XDP_DROP : TC_ACT_SHOT;
      t.is(run(dp, tcp6({ src }), hook).retval, drop, `SYN from ${src} (${hook})`);
      t.is(run(dp, tcp6({ src, flags: ACK }), hook).retval, drop, `ACK from ${src} (${hook})`);
      t.is(run(dp, udp6({ src, dport: 53 }), hook).retval, drop, `SNAT UDP from ${src} (${hook})`);
      t.is(run(dp, tcp6({ src, hopLimit: 1 }), hook).retval, drop, `hop limit 1 from ${src} (${hook})`);
    }
  }
  t.like(dp.counters().stats, { drop_bad_source: bogus6.length * 8, ttl_exceeded: 0 });
  t.is(dp.map('edge_ct6').keys().length, 0);
  t.is(dp.map('edge_affinity6').keys().length, 0);
  t.is(dp.map('edge_snat_rev6').keys().length, 0);
  // Their neighbours are clients like any other.
  for (const src of ['fe7f:ffff::1', 'fec0::1', '::fffe:c633:6407', '::1:ffff:c633:6407']) t.is(run(dp, tcp6({ src, flags: ACK })).retval, XDP_PASS, src);
  t.is(dp.map('edge_ct6').keys().length, 4);

  const dp4 = openEdge(t);
  dp4.applyServices([service()]);
  for (const src of ['169.254.169.254', '169.254.0.1', '169.254.255.255']) {
    t.is(run(dp4, tcpPacket({ flags: { syn: true }, src })).retval, XDP_DROP, `SYN from ${src}`);
    t.is(run(dp4, tcpPacket({ flags: ACK, src })).retval, XDP_DROP, `ACK from ${src}`);
    const reply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, df: true }, tcp: { sport: 80, dport: 47000, flags: ACK } });
    t.is(run(dp4, buildPacket({ eth: clientEth, ip: { src, dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: reply }) })).retval, XDP_DROP, `ICMP from ${src}`);
  }
  t.like(dp4.counters().stats, { drop_bad_source: 9, icmp_steered: 0 });
  t.is(dp4.map('edge_ct').keys().length, 0);
  for (const src of ['169.253.255.255', '169.255.0.1']) t.is(run(dp4, tcpPacket({ flags: ACK, src })).retval, XDP_PASS, src);
});

// An error about a reply to an address no client of ours can have — the
// edge's own, a VIP, a martian: edge_process drops every new flow from
// them — is a forgery. Steered, it reached a pod as a fragmentation-needed
// / Packet Too Big from "the path" to that address: a UDP server socket
// matches any quote to its port, so the pod's kernel lowered its path MTU
// towards that address (to 552 / 1280, for 10 minutes, renewable at will)
// for every flow — towards the edge's address, that is every SNAT reply the
// pod sends, whose fragments the edge cannot translate.
test('an ICMP error about a reply to the edge\'s own address, a VIP or a martian is dropped, never steered to a pod (it would lower the pod\'s path MTU towards that address)', (t) => {
  const VIP2 = '203.0.113.11';
  const dp = openEdge(t);
  dp.applyServices([
    service({ service: 'default/dns', frontend: { vip: VIP, port: 53, protocol: 'UDP' }, backends: [backend(1, { port: 5353 })] }),
    service({ frontend: { vip: VIP2, port: 80, protocol: 'TCP' }, backends: [backend(2)] }),
  ]);
  const error = (client: string): Buffer => {
    const reply = buildPacket({ eth: false, ip: { src: VIP, dst: client }, udp: { sport: 53, dport: 47000, payload: Buffer.alloc(1200) } });
    return buildPacket({ eth: clientEth, ip: { src: '198.51.100.254', dst: VIP }, icmp: icmpFragNeeded({ mtu: 552, original: reply }) });
  };
  const impossible = [EDGE, VIP, VIP2, '127.0.0.1', '0.0.0.0', '224.0.0.1', '255.255.255.255', '169.254.169.254'];
  for (const client of impossible) {
    const err = error(client);
    for (const hook of ['xdp', 'tc'] as const) {
      // Before: XDP_PASS / TC_ACT_OK with the error re-addressed to the pod 10.244.1.1.
      const r = run(dp, err, hook);
      t.is(r.retval, hook === 'xdp' ? XDP_DROP : TC_ACT_SHOT, `${client} (${hook})`);
    }
  }
  t.like(dp.counters().stats, { drop_bad_source: impossible.length * 2, icmp_steered: 0 });
  // A real client's error is still steered to the pod, quote and all.
  const r = run(dp, error(CLIENT));
  t.is(r.retval, XDP_PASS);
  const out = parsePacket(r.out);
  t.is(out.ip.dst, '10.244.1.1');
  t.is(out.ipBytes.subarray(28 + 12, 28 + 16).join('.'), '10.244.1.1', 'quoted source: the pod');
  t.is(out.ipBytes.subarray(28 + 16, 28 + 20).join('.'), CLIENT, 'quoted destination: the client');
  t.true(verifyL4Checksum(out.ipBytes));
  t.is(dp.counters().stats.icmp_steered, 1);
});

test('IPv6: a Packet Too Big about a reply to the edge\'s own address, a VIP or a martian is dropped, never steered to a pod', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6 });
  apply6(dp, service6({ service: 'default/dns6', frontend: { vip: VIP6, port: 53, protocol: 'UDP' } }));
  const error = (client: string): Buffer =>
    ptb6(buildPacket6({ eth: false, ip: { src: VIP6, dst: client, hopLimit: 60 }, udp: { sport: 53, dport: 43210, payload: Buffer.alloc(64, 7) } }).subarray(0, 40 + 8 + 16));
  const impossible = [EDGE6, VIP6, '::', '::1', 'ff02::1', 'fe80::1', '::ffff:c633:6407'];
  for (const client of impossible) {
    const err = error(client);
    for (const hook of ['xdp', 'tc'] as const) {
      // Before: passed on with the error re-addressed to the pod fd00:244::2.
      t.is(run(dp, err, hook).retval, hook === 'xdp' ? XDP_DROP : TC_ACT_SHOT, `${client} (${hook})`);
    }
  }
  t.like(dp.counters().stats, { drop_bad_source: impossible.length * 2, icmp_steered: 0 });
  const r = run(dp, error(CLIENT6));
  t.is(r.retval, XDP_PASS);
  t.is(parse6(r.out.subarray(14)).dst, parse6(buildPacket6({ eth: false, ip: { src: CLIENT6, dst: 'fd00:244::2' }, udp: { sport: 1, dport: 2, payload: Buffer.alloc(0) } })).dst);
  t.true(verifyL4Checksum6(r.out.subarray(14)));
  t.is(dp.counters().stats.icmp_steered, 1);
});

test('frames sent to a link-layer broadcast or multicast address (or from one) are not forwarded, remembered or answered — as Linux forwards and answers only frames addressed to it (IPv4 and IPv6)', (t) => {
  // Before: a frame to ff:ff:ff:ff:ff:ff with a VIP inside was balanced,
  // remembered and forwarded by every edge on the segment (one forged frame,
  // one copy per edge), and a TTL-1 one was answered with a time-exceeded
  // whose source MAC was the broadcast address; a frame *from* a group MAC
  // had its answer sent to that group.
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, snatPorts: { min: 20000, max: 20003 } });
  dp.applyServices([service(), service({ service: 'default/dns', frontend: { vip: VIP, port: 53, protocol: 'UDP' }, mode: 'snat' })]);
  apply6(dp, service6());
  const withMacs = (f: Buffer, dst: string | null, src: string | null): Buffer => {
    const g = Buffer.from(f);
    if (dst) Buffer.from(dst.replace(/:/g, ''), 'hex').copy(g, 0);
    if (src) Buffer.from(src.replace(/:/g, ''), 'hex').copy(g, 6);
    return g;
  };
  const group: Array<[string | null, string | null]> = [['ff:ff:ff:ff:ff:ff', null], ['01:00:5e:00:00:01', null], ['33:33:00:00:00:01', null], [null, '03:00:00:00:00:01']];
  const reply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, df: true }, tcp: { sport: 80, dport: 47000, flags: ACK } });
  const icmp = buildPacket({ eth: clientEth, ip: { src: '192.0.2.99', dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: reply }) });
  const spec = tcpSpec({ flags: { syn: true } });
  const ttl1 = buildPacket({ ...spec, ip: { ...spec.ip, ttl: 1 } });
  let drops = 0;
  for (const [dst, src] of group) {
    for (const hook of ['xdp', 'tc'] as const) {
      const drop = hook === 'xdp' ? XDP_DROP : TC_ACT_SHOT;
      const pass = hook === 'xdp' ? XDP_PASS : TC_ACT_OK;
      const what = `${dst ?? 'from ' + src} (${hook})`;
      for (const f of [tcpPacket({ flags: { syn: true } }), tcpPacket({ flags: ACK }), udpPacket({ dport: 53 }), ttl1, tcp6(), tcp6({ flags: ACK }), tcp6({ hopLimit: 1 })]) {
        t.is(run(dp, withMacs(f, dst, src), hook).retval, drop, what);
        drops++;
      }
      // An ICMP error in such a frame is left to the stack (which neither forwards nor answers it), untouched.
      const o = run(dp, withMacs(icmp, dst, src), hook);
      t.is(o.retval, pass, `ICMP ${what}`);
      t.is(hex(o.out), hex(withMacs(icmp, dst, src)));
    }
  }
  t.like(dp.counters().stats, { drop_l2_group: drops, ttl_exceeded: 0, icmp_steered: 0, icmp_too_big_sent: 0 });
  t.is(dp.map('edge_ct').keys().length, 0);
  t.is(dp.map('edge_ct6').keys().length, 0);
  t.is(dp.map('edge_snat_rev').keys().length, 0);
  // The same frames to the edge's own MAC are served.
  t.is(parsePacket(run(dp, tcpPacket({ flags: ACK })).out).ip.dst, '10.244.1.1');
  t.is(run(dp, tcp6({ flags: ACK })).retval, XDP_PASS);
  t.is(dp.map('edge_ct').keys().length + dp.map('edge_ct6').keys().length, 2);
});

// ---------------------------------------------------------------- blind RSTs on SNAT flows (RFC 5961 §3.2)

test('SNAT: a blind RST forged with a client\'s tuple does not hand that idle connection\'s port to another client (the backend\'s next segment still reaches its client); the client\'s own RST does', (t) => {
  // One port in the range makes the takeover deterministic; with a real
  // range the attacker opens flows until one lands on it.
  const dp = openEdge(t, { snatPorts: { min: 20000, max: 20000 } });
  dp.applyServices([service({ mode: 'snat' })]);
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  const A = CLIENT;
  const B = '198.51.100.66';
  const beSeg = (flags: Parameters<typeof tcpPacket>[0]['flags'], payload = Buffer.alloc(0), seq = 5000, ack = 1010): Buffer =>
    buildPacket({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src: '10.244.1.1', dst: EDGE, df: true }, tcp: { sport: 8080, dport: 20000, flags, seq, ack, payload } });
  // A's keep-alive connection: handshake (A's ISN 1000), a 9-byte request
  // (the backend acknowledges 1010), the answer; then idle.
  t.is(parsePacket(run(dp, tcpPacket({ flags: { syn: true }, src: A, seq: 1000 })).out).tcp!.sport, 20000);
  t.is(parsePacket(run(dp, beSeg({ syn: true, ack: true }, Buffer.alloc(0), 5000, 1001)).out).ip.dst, A);
  run(dp, tcpPacket({ flags: ACK, src: A, seq: 1001, ack: 5001, payload: Buffer.from('GET /poll') }));
  t.is(parsePacket(run(dp, beSeg(ACK, Buffer.from('ok'), 5001)).out).ip.dst, A);
  // The attacker forges A's RST (a blind guess: the backend discards an
  // out-of-window RST silently, and A's connection lives on), and the
  // backend's RST (any number but the client's acknowledged one).
  for (const seq of [1000, 1009, 1011, 0, 0x80000000]) run(dp, tcpPacket({ flags: { rst: true }, src: A, seq }));
  run(dp, beSeg({ rst: true }, Buffer.alloc(0), 5002));
  t.is(dp.counters().stats.snat_rst_ignored, 6);
  setEdgeClock(dp, t0 + 5n * SEC);
  // B asks for a connection: the only port is A's.
  const rb = run(dp, tcpPacket({ flags: { syn: true }, src: B, sport: 41000 }));
  // The long-poll answer for A (before: to B, port 41000).
  const answer = parsePacket(run(dp, beSeg(ACK, Buffer.from('secret for A'), 5003)).out);
  t.log(`B's SYN: verdict ${rb.retval}; the backend's answer on A's connection went to ${answer.ip.dst}:${answer.tcp!.dport}`);
  t.is(rb.retval, XDP_DROP, 'no port for B while A\'s connection lives');
  t.is(answer.ip.dst, A, 'the backend\'s segment on A\'s connection goes to A, not to B');
  t.is(answer.tcp!.dport, 40000);
  // A's own RST carries what the backend expects (its last ACK, 1010): the
  // flow ends, and after the hold the port is B's.
  run(dp, tcpPacket({ flags: { rst: true }, src: A, seq: 1010 }));
  t.is(dp.counters().stats.snat_rst_ignored, 6);
  setEdgeClock(dp, t0 + 10n * SEC);
  t.is(parsePacket(run(dp, tcpPacket({ flags: { syn: true }, src: B, sport: 41000 })).out).tcp!.sport, 20000);
  t.is(dp.counters().stats.snat_reclaimed, 1);
});

test('IPv6 SNAT: a blind RST from either side does not free a live connection\'s port; the client\'s RST with the acknowledged sequence number does', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, snatPorts: { min: 20000, max: 20000 } });
  apply6(dp, service6({ mode: 'snat' }));
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  const A = '2001:db8:1::a';
  const B = '2001:db8:1::b';
  const be = service6({ mode: 'snat' }).backends[0]!.ip;
  const beSeg = (flags: Parameters<typeof tcpPacket>[0]['flags'], seq: number, payload = Buffer.alloc(0)): Buffer =>
    buildPacket6({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src: be, dst: EDGE6, hopLimit: 64 }, tcp: { sport: 8080, dport: 20000, seq, ack: 1001, flags, payload } });
  t.is(run(dp, tcp6({ src: A })).out.readUInt16BE(54), 20000);
  t.is(parse6(run(dp, beSeg({ syn: true, ack: true }, 7000)).out.subarray(14)).dst, '2001:db8:1:0:0:0:0:a');
  run(dp, tcp6({ src: A, flags: ACK, seq: 1001, ack: 7001 }));
  run(dp, tcp6({ src: A, flags: { rst: true }, seq: 1000 }));
  run(dp, beSeg({ rst: true }, 7002));
  t.is(dp.counters().stats.snat_rst_ignored, 2);
  setEdgeClock(dp, t0 + 5n * SEC);
  t.is(run(dp, tcp6({ src: B })).retval, XDP_DROP, 'no port for B while A\'s connection lives');
  t.is(parse6(run(dp, beSeg(ACK, 7001, Buffer.from('for A'))).out.subarray(14)).dst, '2001:db8:1:0:0:0:0:a');
  // The backend's RST ends it with the number the client expects next: the
  // client acknowledged 7001, and the backend has sent 5 bytes since (RST
  // after unacknowledged data carries SND.NXT, 7006: the edge follows the
  // backend's in-order data from the acknowledged point).
  run(dp, beSeg({ rst: true }, 7001));
  t.is(dp.counters().stats.snat_rst_ignored, 3, 'a stale number is not the end either');
  run(dp, beSeg({ rst: true }, 7006));
  setEdgeClock(dp, t0 + 10n * SEC);
  t.is(run(dp, tcp6({ src: B })).out.readUInt16BE(54), 20000);
  t.like(dp.counters().stats, { snat_rst_ignored: 3, snat_reclaimed: 1 });
});

// ---------------------------------------------------------------- blind FINs on SNAT flows

/**
 * One SNAT connection's two sides, as packets of one family: client A
 * (CLIENT / 2001:db8:1::a), another client B's SYN, and the backend's
 * segments to the edge's only SNAT port (20000).
 */
interface SnatSides {
  a: (flags: Parameters<typeof tcpPacket>[0]['flags'], seq: number, ack: number, payload?: Buffer) => Buffer; // A's segment
  b: () => Buffer; // another client's SYN
  be: (flags: Parameters<typeof tcpPacket>[0]['flags'], seq: number, ack: number, payload?: Buffer) => Buffer; // the backend's segment to the edge's port
  sport: (out: Buffer) => number;
  dst: (out: Buffer) => string;
  aAddr: string;
}

function snatSides4(): SnatSides {
  return {
    a: (flags, seq, ack, payload) => tcpPacket({ flags, src: CLIENT, seq, ack, ...(payload ? { payload } : {}) }),
    b: () => tcpPacket({ flags: { syn: true }, src: '198.51.100.66', sport: 41000 }),
    be: (flags, seq, ack, payload = Buffer.alloc(0)) =>
      buildPacket({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src: '10.244.1.1', dst: EDGE, df: true }, tcp: { sport: 8080, dport: 20000, flags, seq, ack, payload } }),
    sport: (out) => parsePacket(out).tcp!.sport,
    dst: (out) => parsePacket(out).ip.dst,
    aAddr: CLIENT,
  };
}

function snatSides6(): SnatSides {
  const be = service6({ mode: 'snat' }).backends[0]!.ip;
  return {
    a: (flags, seq, ack, payload) => tcp6({ src: '2001:db8:1::a', flags: flags ?? ACK, seq, ack, ...(payload ? { payload } : {}) }),
    b: () => tcp6({ src: '2001:db8:1::b' }),
    be: (flags, seq, ack, payload = Buffer.alloc(0)) =>
      buildPacket6({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src: be, dst: EDGE6, hopLimit: 64 }, tcp: { sport: 8080, dport: 20000, seq, ack, flags: flags ?? ACK, payload } }),
    sport: (out) => out.readUInt16BE(54),
    dst: (out) => parse6(out.subarray(14)).dst,
    aAddr: '2001:db8:1:0:0:0:0:a',
  };
}

/**
 * Both families: A's keep-alive connection (A's ISN 1000, the backend's
 * 5000; a 9-byte request, a 2-byte answer: the backend expects 1010 next,
 * A 5003), then an attacker forges FINs from both sides — without the ACK
 * bit, or with sequence (or acknowledgement) numbers out of the window
 * around what the edge saw. Honoured, both FINs would free the port after
 * the close hold (≈ 60 s) and the backend's next segment on A's connection
 * would go to the client that got it. In-window FINs (the real close; A's
 * a retransmission after data the edge has not seen) end it.
 */
function blindFinCase(t: ExecutionContext, dp: EdgeDatapath, f: SnatSides, t0: bigint): void {
  t.is(f.sport(run(dp, f.a({ syn: true }, 1000, 0)).out), 20000);
  t.is(f.dst(run(dp, f.be({ syn: true, ack: true }, 5000, 1001)).out), f.aAddr);
  run(dp, f.a(ACK, 1001, 5001, Buffer.from('GET /poll')));
  t.is(f.dst(run(dp, f.be(ACK, 5001, 1010, Buffer.from('ok'))).out), f.aAddr);
  const FIN = { fin: true, ack: true };
  // A's side: far off in sequence (either way), no ACK bit, or an
  // acknowledgement of backend data far beyond what was sent.
  const forgedA = [f.a(FIN, 0x80001010, 5003), f.a(FIN, 1010 + 0x10000, 5003), f.a(FIN, (1010 - 0x10000) >>> 0, 5003), f.a({ fin: true }, 1010, 0), f.a(FIN, 1010, 5003 + 0x100000)];
  // The backend's: sequence off (its numbers are kept on 24 bits), no ACK
  // bit, or an acknowledgement of client data far beyond what A sent.
  const forgedBe = [f.be(FIN, 5003 + 0x4000, 1010), f.be(FIN, (5003 - 0x4000) >>> 0, 1010), f.be({ fin: true }, 5003, 0), f.be(FIN, 5003, 1010 + 0x100000)];
  for (const p of [...forgedA, ...forgedBe]) run(dp, p);
  t.is(dp.counters().stats.snat_fin_ignored, forgedA.length + forgedBe.length);
  // A idles past the close hold.
  setEdgeClock(dp, t0 + 70n * SEC);
  const rb = run(dp, f.b());
  const answer = run(dp, f.be(ACK, 5003, 1010, Buffer.from('secret for A')));
  t.log(`B's SYN: verdict ${rb.retval}; the backend's segment on A's connection went to ${f.dst(answer.out)}`);
  t.is(rb.retval, XDP_DROP, 'no port for B while A\'s connection lives');
  t.is(f.dst(answer.out), f.aAddr, 'the backend\'s segment on A\'s connection goes to A');
  t.is(dp.counters().stats.snat_reclaimed, 0);
  // The real close: A's FIN after 100 bytes the edge never saw (lost on
  // the way, or overtaken) — in the window — and the backend's, in order.
  run(dp, f.a(FIN, 1010 + 100, 5015));
  run(dp, f.be(FIN, 5015, 1111));
  t.is(dp.counters().stats.snat_fin_ignored, forgedA.length + forgedBe.length, 'in-window FINs count');
  setEdgeClock(dp, t0 + 140n * SEC);
  t.is(f.sport(run(dp, f.b()).out), 20000, 'after the close hold the port is B\'s');
  t.is(dp.counters().stats.snat_reclaimed, 1);
}

test('SNAT: blind FINs from both sides (out of window, or without ACK) do not end a live connection; in-window FINs do', (t) => {
  const dp = openEdge(t, { snatPorts: { min: 20000, max: 20000 } });
  dp.applyServices([service({ mode: 'snat' })]);
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  blindFinCase(t, dp, snatSides4(), t0);
});

test('IPv6 SNAT: blind FINs from both sides (out of window, or without ACK) do not end a live connection; in-window FINs do', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, snatPorts: { min: 20000, max: 20000 } });
  apply6(dp, service6({ mode: 'snat' }));
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  blindFinCase(t, dp, snatSides6(), t0);
});

// ---------------------------------------------------------------- half-open SNAT flows (a spoofed SYN flood)

/** A SYN flood from forged sources against a SNAT service, as the edge sees it: each SYN takes a port, the backend answers it with a SYN-ACK (to the forged address, which never answers). Returns the ports the flood got. */
function synFlood(dp: EdgeDatapath, syn: (i: number) => Buffer, portOf: (out: Buffer) => number, synAck: (port: number) => Buffer, from: number, n: number): number[] {
  const ports: number[] = [];
  for (let i = from; i < from + n; i++) {
    const r = run(dp, syn(i));
    if (r.retval === XDP_DROP) continue;
    const port = portOf(r.out);
    ports.push(port);
    run(dp, synAck(port));
  }
  return ports;
}

/**
 * The shared body of both families' cases: `real` is a client whose
 * handshake completes (SYN, the backend's SYN-ACK, its ACK), `newcomer` a
 * client that asks for a port after the flood.
 */
function halfOpenCase(t: ExecutionContext, dp: EdgeDatapath, f: {
  syn: (src: number) => Buffer; // a flood SYN from forged source i (i < 0: the real client, -2: the newcomer)
  ack: () => Buffer; // the real client's ACK of the backend's SYN-ACK
  blindSyn: () => Buffer; // a SYN with the real client's tuple, from someone else
  portOf: (out: Buffer) => number;
  synAck: (port: number) => Buffer;
}, t0: bigint): void {
  const realPort = f.portOf(run(dp, f.syn(-1)).out);
  run(dp, f.synAck(realPort));
  run(dp, f.ack());
  const held = synFlood(dp, f.syn, f.portOf, f.synAck, 0, 400);
  t.true(held.length >= 60, `the flood took ${held.length} ports`);
  setEdgeClock(dp, t0 + 30n * SEC);
  t.is(run(dp, f.syn(-2)).retval, XDP_DROP, 'while the flood\'s handshakes may still complete, the range is full');
  // About a minute after their last packet (Linux conntrack's SYN_RECV
  // timeout is 60 s) the half-open flows' ports are free; before, each was
  // held for the TCP idle hour, so a few thousand forged SYNs an hour per
  // backend (12 768 ports, eight probes: refusals from ≈ 5 000) kept a SNAT
  // service's new clients out.
  setEdgeClock(dp, t0 + 70n * SEC);
  const r = run(dp, f.syn(-2));
  t.is(r.retval, XDP_PASS, 'a new client gets a port a minute after the flood');
  t.not(f.portOf(r.out), realPort);
  // The completed connection keeps its port through the idle hour, also
  // after a blind SYN with its tuple (which must not make it half-open again).
  run(dp, f.blindSyn());
  const again = synFlood(dp, f.syn, f.portOf, f.synAck, 1000, 400);
  t.true(again.length >= 55, `the second flood took ${again.length} ports`);
  t.false(again.includes(realPort), 'the completed connection keeps its port');
  setEdgeClock(dp, t0 + 1000n * SEC);
  const third = synFlood(dp, f.syn, f.portOf, f.synAck, 2000, 400);
  t.true(third.length >= 55, `the third flood took ${third.length} ports`);
  t.false(third.includes(realPort), 'the idle completed connection keeps its port after a blind SYN');
}

test('SNAT: the half-open flows of a spoofed SYN flood (SYN, the backend\'s SYN-ACK, never an ACK) give their ports back after about a minute, not the idle hour; a completed handshake keeps its port', (t) => {
  const dp = openEdge(t, { snatPorts: { min: 21000, max: 21063 } });
  dp.applyServices([service({ mode: 'snat' })]);
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  const src = (i: number): string => (i === -1 ? CLIENT : i === -2 ? '198.51.100.99' : `198.18.${i >> 8}.${i & 255}`);
  halfOpenCase(t, dp, {
    syn: (i) => tcpPacket({ flags: { syn: true }, src: src(i), seq: 1000 }),
    ack: () => tcpPacket({ flags: ACK, src: CLIENT, seq: 1001, ack: 7001 }),
    blindSyn: () => tcpPacket({ flags: { syn: true }, src: CLIENT, seq: 0x12345678 }),
    portOf: (out) => parsePacket(out).tcp!.sport,
    synAck: (port) => buildPacket({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src: '10.244.1.1', dst: EDGE, df: true }, tcp: { sport: 8080, dport: port, flags: { syn: true, ack: true }, seq: 7000, ack: 1001 } }),
  }, t0);
});

test('IPv6 SNAT: the half-open flows of a spoofed SYN flood give their ports back after about a minute, not the idle hour; a completed handshake keeps its port', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, snatPorts: { min: 21000, max: 21063 } });
  apply6(dp, service6({ mode: 'snat' }));
  const be = service6({ mode: 'snat' }).backends[0]!.ip;
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  const src = (i: number): string => (i === -1 ? '2001:db8:1::a' : i === -2 ? '2001:db8:1::b' : `2001:db8:66::${(0x1000 + i).toString(16)}`);
  halfOpenCase(t, dp, {
    syn: (i) => tcp6({ src: src(i) }),
    ack: () => tcp6({ src: src(-1), flags: ACK, seq: 1001, ack: 7001 }),
    blindSyn: () => tcp6({ src: src(-1), seq: 0x12345678 }),
    portOf: (out) => out.readUInt16BE(54),
    synAck: (port) => buildPacket6({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src: be, dst: EDGE6, hopLimit: 64 }, tcp: { sport: 8080, dport: port, seq: 7000, ack: 1001, flags: { syn: true, ack: true } } }),
  }, t0);
});

// ---------------------------------------------------------------- a blind ACK does not complete a spoofed handshake

/**
 * Both families: a spoofed SYN flood whose every forged flow also gets a
 * blind ACK with the forged tuple — some before the backend's SYN-ACK
 * passes, some after it — acknowledging a guess, not the backend's SYN
 * (7000 + 1). The backend drops such an ACK silently when its checksum is
 * wrong, which the edge does not check (with a right one it answers with a
 * RST). The edge took any client ACK for the handshake's completion: each
 * forged flow became a connection, held for the TCP idle hour, and two
 * forged packets per port kept a backend's new clients out for that hour
 * (the half-open minute above was only for SYNs without an ACK). A real
 * client's ACK acknowledges the SYN-ACK and keeps its port.
 */
function blindAckCase(t: ExecutionContext, dp: EdgeDatapath, f: {
  syn: (src: number) => Buffer; // a flood SYN from forged source i (-1, -3: real clients, -2: the newcomer)
  ack: (src: number, ack: number) => Buffer; // source i's ACK acknowledging `ack`
  portOf: (out: Buffer) => number;
  synAck: (port: number) => Buffer; // the backend's SYN-ACK, ISN 7000
}, t0: bigint): void {
  const realPort = f.portOf(run(dp, f.syn(-1)).out);
  run(dp, f.synAck(realPort));
  run(dp, f.ack(-1, 7001));
  // A client whose first ACK also acknowledges data the backend sent
  // before it (TCP Fast Open: at most the SYN's window) completes it too.
  const tfoPort = f.portOf(run(dp, f.syn(-3)).out);
  run(dp, f.synAck(tfoPort));
  run(dp, f.ack(-3, 7001 + 1400));
  const held: number[] = [];
  for (let i = 0; i < 400; i++) {
    const r = run(dp, f.syn(i));
    if (r.retval === XDP_DROP) continue;
    const port = f.portOf(r.out);
    held.push(port);
    const guess = 0x4242 + i * 977;
    if (i % 2) run(dp, f.ack(i, guess));
    run(dp, f.synAck(port));
    if (!(i % 2)) run(dp, f.ack(i, guess));
  }
  t.true(held.length >= 60, `the flood took ${held.length} ports`);
  setEdgeClock(dp, t0 + 30n * SEC);
  t.is(run(dp, f.syn(-2)).retval, XDP_DROP, 'while the flood\'s handshakes may still complete, the range is full');
  setEdgeClock(dp, t0 + 70n * SEC);
  const r = run(dp, f.syn(-2));
  t.log(`a new client's SYN 70 s after the flood of SYNs and blind ACKs: verdict ${r.retval}`);
  t.is(r.retval, XDP_PASS, 'a new client gets a port a minute after the flood: blind ACKs completed no handshake');
  t.false([realPort, tfoPort].includes(f.portOf(r.out)), 'the real clients\' completed handshakes keep their ports');
  const again: number[] = [];
  for (let i = 1000; i < 1400; i++) {
    const s = run(dp, f.syn(i));
    if (s.retval !== XDP_DROP) again.push(f.portOf(s.out));
  }
  t.true(again.length >= 30, `a second flood took ${again.length} ports`);
  t.false(again.includes(realPort) || again.includes(tfoPort), 'nor does a second flood take them');
}

test('SNAT: a blind ACK with a spoofed SYN\'s tuple (before or after the backend\'s SYN-ACK, not acknowledging it) does not make the half-open flow a connection held for the idle hour', (t) => {
  const dp = openEdge(t, { snatPorts: { min: 21000, max: 21063 } });
  dp.applyServices([service({ mode: 'snat' })]);
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  const src = (i: number): string => (i === -1 ? CLIENT : i === -2 ? '198.51.100.99' : i === -3 ? '198.51.100.77' : `198.18.${i >> 8}.${i & 255}`);
  blindAckCase(t, dp, {
    syn: (i) => tcpPacket({ flags: { syn: true }, src: src(i), seq: 1000 }),
    ack: (i, ack) => tcpPacket({ flags: ACK, src: src(i), seq: 1001, ack }),
    portOf: (out) => parsePacket(out).tcp!.sport,
    synAck: (port) => buildPacket({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src: '10.244.1.1', dst: EDGE, df: true }, tcp: { sport: 8080, dport: port, flags: { syn: true, ack: true }, seq: 7000, ack: 1001 } }),
  }, t0);
});

test('IPv6 SNAT: a blind ACK with a spoofed SYN\'s tuple (before or after the backend\'s SYN-ACK, not acknowledging it) does not make the half-open flow a connection held for the idle hour', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, snatPorts: { min: 21000, max: 21063 } });
  apply6(dp, service6({ mode: 'snat' }));
  const be = service6({ mode: 'snat' }).backends[0]!.ip;
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  const src = (i: number): string => (i === -1 ? '2001:db8:1::a' : i === -2 ? '2001:db8:1::b' : i === -3 ? '2001:db8:1::c' : `2001:db8:66::${(0x1000 + i).toString(16)}`);
  blindAckCase(t, dp, {
    syn: (i) => tcp6({ src: src(i) }),
    ack: (i, ack) => tcp6({ src: src(i), flags: ACK, seq: 1001, ack }),
    portOf: (out) => out.readUInt16BE(54),
    synAck: (port) => buildPacket6({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src: be, dst: EDGE6, hopLimit: 64 }, tcp: { sport: 8080, dport: port, seq: 7000, ack: 1001, flags: { syn: true, ack: true } } }),
  }, t0);
});

// ---------------------------------------------------------------- a port reused after a close (both FINs)

/**
 * Both families: client A's connection ends with both FINs (the backend
 * closes first, so A holds no TIME_WAIT and may reuse its port at once); A
 * opens a new connection on the same tuple a few seconds later, which then
 * idles past the close hold (≈ 60 s). Its port must stay A's.
 */
function reusedTupleCase(t: ExecutionContext, dp: EdgeDatapath, f: SnatSides, t0: bigint): void {
  t.is(f.sport(run(dp, f.a({ syn: true }, 1000, 0)).out), 20000);
  run(dp, f.be({ syn: true, ack: true }, 5000, 1001));
  run(dp, f.a(ACK, 1001, 5001));
  run(dp, f.be({ fin: true, ack: true }, 5001, 1001));
  run(dp, f.a({ fin: true, ack: true }, 1001, 5002));
  run(dp, f.be(ACK, 5002, 1002));
  // Five seconds on: A's new connection on the same tuple (same edge port).
  setEdgeClock(dp, t0 + 5n * SEC);
  t.is(f.sport(run(dp, f.a({ syn: true }, 900_000, 0)).out), 20000);
  t.is(f.dst(run(dp, f.be({ syn: true, ack: true }, 8000, 900_001)).out), f.aAddr);
  run(dp, f.a(ACK, 900_001, 8001));
  // It idles 70 s (a keep-alive connection): still live, its port A's.
  setEdgeClock(dp, t0 + 75n * SEC);
  const rb = run(dp, f.b());
  const answer = run(dp, f.be(ACK, 8001, 900_001, Buffer.from('for A')));
  t.log(`B's SYN: verdict ${rb.retval}; the backend's segment on A's new connection went to ${f.dst(answer.out)}`);
  t.is(rb.retval, XDP_DROP, 'no port for B while A\'s new connection lives');
  t.is(f.dst(answer.out), f.aAddr, 'the backend\'s segment on A\'s new connection goes to A');
  t.is(dp.counters().stats.snat_reclaimed, 0);
}

test('SNAT: a connection that reuses a closed one\'s tuple (both FINs seen) is live — its port is not reclaimed after the close hold while it idles', (t) => {
  const dp = openEdge(t, { snatPorts: { min: 20000, max: 20000 } });
  dp.applyServices([service({ mode: 'snat' })]);
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  reusedTupleCase(t, dp, snatSides4(), t0);
});

test('IPv6 SNAT: a connection that reuses a closed one\'s tuple (both FINs seen) is live — its port is not reclaimed after the close hold while it idles', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, snatPorts: { min: 20000, max: 20000 } });
  apply6(dp, service6({ mode: 'snat' }));
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  reusedTupleCase(t, dp, snatSides6(), t0);
});

// ---------------------------------------------------------------- a live SNAT connection on a terminating backend

/** One family's packets for terminatingCase: A's segments, the backend's to the edge port, the edge's output read back. */
interface SnatTerminating {
  apply: (terminating: string | null) => void; // four backends (A's among them); with `terminating`, it terminates and eight new ones arrive
  a: (flags: Parameters<typeof tcpPacket>[0]['flags'], seq: number, ack: number, payload?: Buffer) => Buffer;
  be: (be: string, port: number, flags: Parameters<typeof tcpPacket>[0]['flags'], seq: number, ack: number, payload?: Buffer) => Buffer;
  dst: (out: Buffer) => string; // as the backend builders take it
  sport: (out: Buffer) => number;
}

/**
 * Both families: client A's keep-alive connection to a SNAT service, whose
 * backend then terminates (a rolling update: new pods arrive). An attacker
 * forges A's FIN (without ACK, or out of window) and A's RST (a wrong
 * number) — snat_seen ignores them — waits out the RST silence while A
 * idles, and sends a SYN with A's tuple. A SYN on a terminating backend's
 * tuple starts a new connection elsewhere once the old one is over or its
 * client closed it (edge_conn.h); the connection-table entry took the
 * forged FIN/RST for that, so the SYN was balanced anew, its new entry
 * replaced A's, and A's next segment went to another backend, which resets
 * the connection. Only what SNAT accepts counts: A's real FIN does.
 */
function terminatingCase(t: ExecutionContext, dp: EdgeDatapath, f: SnatTerminating, t0: bigint): void {
  f.apply(null);
  const syn = run(dp, f.a({ syn: true }, 1000, 0)).out;
  const be = f.dst(syn);
  const port = f.sport(syn);
  run(dp, f.be(be, port, { syn: true, ack: true }, 5000, 1001));
  run(dp, f.a(ACK, 1001, 5001, Buffer.from('GET /poll')));
  run(dp, f.be(be, port, ACK, 5001, 1010, Buffer.from('ok')));
  f.apply(be);
  run(dp, f.a({ fin: true }, 0x5555, 0));
  run(dp, f.a({ fin: true, ack: true }, 0x80001010, 5003));
  run(dp, f.a({ rst: true }, 0x1234, 0));
  t.like(dp.counters().stats, { snat_fin_ignored: 2, snat_rst_ignored: 1 });
  setEdgeClock(dp, t0 + 10n * SEC);
  const blind = run(dp, f.a({ syn: true }, 777_777, 0)).out;
  t.is(f.dst(blind), be, 'the blind SYN follows the live connection');
  const next = run(dp, f.a(ACK, 1010, 5003, Buffer.from('GET /more'))).out;
  t.log(`A's next segment after the blind FIN, RST and SYN went to ${f.dst(next)} from port ${f.sport(next)} (A's backend ${be}, port ${port})`);
  t.is(f.dst(next), be, 'A\'s next segment reaches the backend that holds its connection');
  t.is(f.sport(next), port);
  // A's own close (in window), then a SYN on the same tuple: a new
  // connection, balanced among the active backends.
  run(dp, f.a({ fin: true, ack: true }, 1019, 5003));
  t.like(dp.counters().stats, { snat_fin_ignored: 2, snat_rst_ignored: 1 });
  t.not(f.dst(run(dp, f.a({ syn: true }, 900_000, 0)).out), be, 'after A\'s FIN a reused tuple leaves the terminating backend');
}

test('SNAT: a blind FIN or RST (ignored by SNAT) and a blind SYN do not move a live connection off its terminating backend; the client\'s own FIN does', (t) => {
  const dp = openEdge(t, { snatPorts: { min: 20000, max: 20100 } });
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  const first = [1, 2, 3, 4].map((i) => backend(i));
  terminatingCase(t, dp, {
    apply: (term) => dp.applyServices([service({ mode: 'snat', backends: term === null ? first : [...first.map((b) => (b.ip === term ? { ...b, state: 'terminating' as const } : b)), ...[10, 11, 12, 13, 14, 15, 16, 17].map((i) => backend(i))] })]),
    a: (flags, seq, ack, payload) => tcpPacket({ flags, seq, ack, ...(payload ? { payload } : {}) }),
    be: (be, port, flags, seq, ack, payload = Buffer.alloc(0)) =>
      buildPacket({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src: be, dst: EDGE, df: true }, tcp: { sport: 8080, dport: port, flags, seq, ack, payload } }),
    dst: (out) => parsePacket(out).ip.dst,
    sport: (out) => parsePacket(out).tcp!.sport,
  }, t0);
});

/** An IPv6 address as parse6 writes it (eight groups, no compression). */
const parse6Addr = (a: string): string => Array.from({ length: 8 }, (_, i) => ip6Bytes(a).readUInt16BE(i * 2).toString(16)).join(':');

test('IPv6 SNAT: a blind FIN or RST (ignored by SNAT) and a blind SYN do not move a live connection off its terminating backend; the client\'s own FIN does', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, snatPorts: { min: 20000, max: 20100 } });
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  const first = [1, 2, 3, 4].map((i) => backend6(i));
  terminatingCase(t, dp, {
    apply: (term) => {
      apply6(dp, service6({ mode: 'snat', backends: term === null ? first : [...first.map((b) => (parse6Addr(b.ip) === term ? { ...b, state: 'terminating' as const } : b)), ...[10, 11, 12, 13, 14, 15, 16, 17].map((i) => backend6(i))] }));
    },
    a: (flags, seq, ack, payload) => tcp6({ flags: flags ?? ACK, seq, ack, ...(payload ? { payload } : {}) }),
    be: (be, port, flags, seq, ack, payload = Buffer.alloc(0)) =>
      buildPacket6({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src: be, dst: EDGE6, hopLimit: 64 }, tcp: { sport: 8080, dport: port, seq, ack, flags: flags ?? ACK, payload } }),
    dst: (out) => parse6(out.subarray(14)).dst,
    sport: (out) => out.readUInt16BE(54),
  }, t0);
});

// ---------------------------------------------------------------- blind SYNs on second-chance flows (edge_sc_syn)

test('second chance: a blind SYN with a remembered flow\'s tuple does not forget its backends once the window has closed (the next segment of the live connection still goes to the pod that holds it)', (t) => {
  let now = 1000n * SEC;
  const dp = openEdge(t, { clockNs: () => now, secondChanceSeconds: 60 });
  setEdgeClock(dp, now);
  const three = [backend(1), backend(2), backend(3)];
  const four = [...three, backend(4)];
  dp.applyServices([service({ backends: three })]);
  const synTo = (sport: number): string => parsePacket(run(dp, tcpPacket({ flags: { syn: true }, sport })).out).ip.dst;
  const before = new Map<number, string>();
  for (let p = 49000; p < 49400; p++) before.set(p, synTo(p));
  dp.applyServices([service({ backends: four })]);
  const port = [...before.keys()].find((p) => synTo(p) !== before.get(p))!;
  t.truthy(port, 'a slot moved');
  // The connection (made before the change on another edge) arrives here: sent with its secondary, remembered.
  const first = run(dp, tcpPacket({ flags: ACK, sport: port })).out;
  t.is(parsePacket(first).ip.ihl, 40);
  // The window closes; the flow keeps both backends (edge-second-chance.test.ts).
  now += 3600n * SEC;
  setEdgeClock(dp, now);
  dp.expireSecondChance();
  t.is(hex(run(dp, tcpPacket({ flags: ACK, sport: port })).out), hex(first));
  // Someone forges a SYN with the client's tuple (the client sent none: its
  // connection lives). It goes to the secondary (the pod of the table the
  // connection was made under), never to the primary's node, which would
  // claim the tuple.
  const secondary = before.get(port)!;
  t.is(parsePacket(run(dp, tcpPacket({ flags: { syn: true }, sport: port })).out).ip.dst, secondary);
  t.is(hex(run(dp, tcpPacket({ flags: ACK, sport: port })).out), hex(first), 'the live connection still reaches the pod that holds it');
  // A blind RST and a SYN right after it do not either (the RST needs silence).
  run(dp, tcpPacket({ flags: { rst: true }, sport: port }));
  run(dp, tcpPacket({ flags: { syn: true }, sport: port }));
  t.is(hex(run(dp, tcpPacket({ flags: ACK, sport: port })).out), hex(first), 'nor after a blind RST and SYN');
  t.is(dp.secondChance().stats.sc_syn_kept, 2);
});

// ---------------------------------------------------------------- ICMP errors are rate-limited (edge_icmp_limit.h)

// The bucket is per CPU and BPF_PROG_TEST_RUN runs on the caller's CPU: the
// test's thread (ava: a child process, its main thread) is pinned to one
// CPU while it counts answers, and let go again at its end.
function pinOneCpu(t: ExecutionContext): void {
  const tid = String(process.pid);
  const was = execFileSync('taskset', ['-pc', tid], { encoding: 'utf8' }).trim().split(': ')[1]!;
  const cpu = was.split(/[,-]/)[0]!;
  execFileSync('taskset', ['-pc', cpu, tid], { stdio: 'ignore' });
  t.teardown(() => {
    execFileSync('taskset', ['-pc', was, tid], { stdio: 'ignore' });
  });
}

const MS = 1_000_000n;
const BURST = 50; // EDGE_ICMP_BURST
const ttl1 = (sport: number): Buffer => {
  const spec = tcpSpec({ flags: { syn: true }, sport });
  return buildPacket({ ...spec, ip: { ...spec.ip, ttl: 1 } });
};

test('time-exceeded is rate-limited like Linux\'s ICMP (1000/s per CPU, burst 50): a spoofed TTL-1 flood is answered only up to the bucket, the rest dropped and counted', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service()]);
  let now = 1000n * SEC;
  setEdgeClock(dp, now);
  pinOneCpu(t);
  const verdicts = (n: number, from: number): number[] => Array.from({ length: n }, (_, i) => run(dp, ttl1(from + i)).retval);
  const answers = (n: number, drops: number): number[] => [...Array<number>(n).fill(XDP_TX), ...Array<number>(drops).fill(XDP_DROP)];

  // The first answer, exact bytes (as in edge.test.ts's routing-hop test).
  const probe = ttl1(40000);
  const r = run(dp, probe);
  t.is(r.retval, XDP_TX);
  t.is(hex(r.out), hex(buildPacket({
    eth: { src: EDGE_MAC, dst: CLIENT_MAC },
    ip: { src: EDGE, dst: CLIENT, tos: 0xc0, ttl: 64, id: 0 },
    icmp: { type: 11, code: 0, rest: Buffer.alloc(4), payload: probe.subarray(14, 14 + 28) },
  })));
  t.true(verifyL4Checksum(r.out.subarray(14)));
  // 60 probes at one instant: the burst (49 more) answered, the rest dropped.
  t.deepEqual(verdicts(59, 40001), answers(BURST - 1, 10));
  t.like(dp.counters().stats, { ttl_exceeded: BURST, drop_icmp_rate: 10, drop_ttl: 0 });
  // Forwarding is not limited: a packet with TTL to spare still goes through.
  t.is(parsePacket(run(dp, tcpPacket({ flags: { syn: true }, sport: 41000 })).out).ip.dst, '10.244.1.1');

  // 10 ms later: 10 tokens (one per ms), exactly 10 answers.
  now += 10n * MS;
  setEdgeClock(dp, now);
  const again = run(dp, probe);
  t.is(hex(again.out), hex(r.out), 'the answer after a refill is the same answer');
  t.deepEqual(verdicts(19, 40100), answers(9, 10));
  // Half a token's time later: none yet; the other half: one (nothing lost to rounding).
  now += MS / 2n;
  setEdgeClock(dp, now);
  t.is(run(dp, probe).retval, XDP_DROP);
  now += MS / 2n;
  setEdgeClock(dp, now);
  t.deepEqual(verdicts(2, 40200), answers(1, 1));
  // 100 ms later: 100 tokens' worth, but the bucket holds only the burst.
  now += 100n * MS;
  setEdgeClock(dp, now);
  t.deepEqual(verdicts(60, 40300), answers(BURST, 10));
  t.like(dp.counters().stats, { ttl_exceeded: BURST + 10 + 1 + BURST, drop_icmp_rate: 10 + 10 + 1 + 1 + 10, drop_ttl: 0 });
});

test('time-exceeded and too-big errors have a bucket each, shared by both families: a TTL-1 flood does not starve path MTU discovery, nor a too-big flood traceroute; none is sent while its bucket is empty (dropped, counted), one per refilled token after', (t) => {
  const dp = openEdge(t, { mtu: 1400, ipv6: true, address6: EDGE6 });
  dp.applyServices([service()]);
  apply6(dp, service6());
  apply6(dp, service6({ service: 'default/dns6', frontend: { vip: VIP6, port: 53, protocol: 'UDP' } }), { svcId: SVC6_ID + 1, backendIds: [BE6_ID0 + 10], ringOff: RING6_OFF - 16384 });
  let now = 2000n * SEC;
  setEdgeClock(dp, now);
  pinOneCpu(t);
  const big = tcpPacket({ flags: { syn: true }, payload: Buffer.alloc(1396 - 20 - 24, 0xab) }); // + 8 > 1400, DF
  const big6 = udp6({ payload: Buffer.alloc(1400 - 40 - 8 - 23, 0x5a) }); // + 24 > 1400
  const hop6 = tcp6({ hopLimit: 1 });
  // Drain the time-exceeded bucket with IPv4 probes: IPv6's Time Exceeded shares it ...
  for (let i = 0; i < BURST; i++) t.is(run(dp, ttl1(42000 + i)).retval, XDP_TX);
  t.is(run(dp, hop6).retval, XDP_DROP, 'IPv6 Time Exceeded: its bucket is empty');
  // ... but path MTU discovery has its own, full: fragmentation-needed and Packet Too Big are answered.
  const r = run(dp, big);
  t.is(r.retval, XDP_TX);
  t.is(parsePacket(r.out).icmp!.mtu, 1392);
  const p6 = run(dp, big6);
  t.is(p6.retval, XDP_TX);
  t.is(p6.out.readUInt32BE(14 + 40 + 4), 1376);
  // Drain the too-big bucket (both families share it): then neither kind is answered, on either hook.
  for (let i = 2; i < BURST; i++) t.is(run(dp, i % 2 ? big6 : big).retval, XDP_TX);
  t.is(run(dp, big).retval, XDP_DROP, 'fragmentation-needed: empty bucket');
  t.is(run(dp, big, 'tc').retval, TC_ACT_SHOT, 'the same on tc');
  t.is(run(dp, big6, 'tc').retval, TC_ACT_SHOT, 'IPv6 Packet Too Big: empty bucket');
  t.is(run(dp, ttl1(42100)).retval, XDP_DROP, 'time-exceeded: still empty');
  t.like(dp.counters().stats, { ttl_exceeded: BURST, icmp_too_big_sent: BURST, drop_icmp_rate: 5, drop_too_big_icmp_fail: 0, drop_ttl: 0 });
  // A millisecond later: one token in each bucket.
  now += MS;
  setEdgeClock(dp, now);
  const r6 = run(dp, hop6);
  t.is(r6.retval, XDP_TX);
  t.is(r6.out[14 + 40], 3, 'Time Exceeded');
  t.like(parse6(r6.out.subarray(14)), { src: '2001:db8:0:0:0:0:0:1', dst: '2001:db8:1:0:0:0:0:7' }); // EDGE6 → CLIENT6
  t.true(verifyL4Checksum6(r6.out.subarray(14)));
  t.is(run(dp, ttl1(42101)).retval, XDP_DROP);
  t.is(run(dp, big6).retval, XDP_TX);
  t.is(run(dp, big).retval, XDP_DROP);
  t.like(dp.counters().stats, { ttl_exceeded: BURST + 1, icmp_too_big_sent: BURST + 1, drop_icmp_rate: 7, drop_too_big_icmp_fail: 0 });
  // Not limited: an error the edge forwards rather than builds (steering) and a packet that fits.
  t.is(run(dp, udp6({ payload: Buffer.alloc(100) })).retval, XDP_PASS);
});

// ---------------------------------------------------------------- end-host ICMP errors about SNAT flows

/**
 * "Port unreachable" (and "protocol unreachable") is the destination host's
 * own answer (RFC 1122 3.2.2.1), so about the edge's packet to a backend
 * only the backend sends one. From any other address on the uplink it is
 * forged: translated, a sweep of the SNAT port range told every live UDP
 * client of that backend "connection refused" from the VIP (a connected UDP
 * socket — a resolver's — fails its next read). Errors routers send
 * (fragmentation needed, host unreachable) still come from anywhere on the
 * path, as path MTU discovery needs.
 */
test('SNAT: port unreachable about a packet to a backend counts only from that backend: from another address it is dropped, not translated for the client; from the backend it is', (t) => {
  const dp = openEdge(t, { snatPorts: { min: 20000, max: 20000 } });
  dp.applyServices([service({ mode: 'snat', frontend: { vip: VIP, port: 53, protocol: 'UDP' } })]);
  const fwd = parsePacket(run(dp, udpPacket({})).out);
  t.is(fwd.ip.dst, '10.244.1.1');
  const sent = buildPacket({ eth: false, ip: { src: EDGE, dst: '10.244.1.1', id: 9, ttl: 63 }, udp: { sport: fwd.udp!.sport, dport: 8080, payload: Buffer.from('hello edge') } });
  const unreach = (src: string, code: number): Buffer =>
    buildPacket({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src, dst: EDGE }, icmp: { type: 3, code, rest: Buffer.alloc(4), payload: sent.subarray(0, 28) } });
  for (const code of [3, 2]) {
    const forged = run(dp, unreach('10.0.0.254', code));
    t.is(forged.retval, XDP_DROP, `code ${code} from a router's address`);
    t.is(dp.counters().stats.snat_icmp, 0);
  }
  t.is(dp.counters().stats.drop_bad_source, 2);
  const real = run(dp, unreach('10.244.1.1', 3));
  t.is(real.retval, XDP_PASS);
  t.is(parsePacket(real.out).ip.src, VIP);
  t.is(parsePacket(real.out).ip.dst, CLIENT);
  t.is(dp.counters().stats.snat_icmp, 1);
  // A router's error about the same packet is still translated.
  t.is(parsePacket(run(dp, unreach('10.0.0.254', 1)).out).ip.dst, CLIENT, 'host unreachable from a router');
  t.is(dp.counters().stats.snat_icmp, 2);
});

test('IPv6 SNAT: port unreachable about a packet to a backend counts only from that backend: from another address it is dropped; from the backend it is translated', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, snatPorts: { min: 20000, max: 20000 } });
  const d = service6({ mode: 'snat', frontend: { vip: VIP6, port: 53, protocol: 'UDP' } });
  apply6(dp, d);
  const be = d.backends[0]!.ip;
  const fwd = run(dp, udp6());
  t.is(parse6(fwd.out.subarray(14)).dst, parse6Addr(be));
  const sent = buildPacket6({ eth: false, ip: { src: EDGE6, dst: be, hopLimit: 63 }, udp: { sport: fwd.out.readUInt16BE(54), dport: 8080, payload: Buffer.from('hello edge6') } });
  const unreach = (src: string, code: number): Buffer =>
    buildPacket6({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src, dst: EDGE6, hopLimit: 64 }, icmp6: { type: 1, code, body: Buffer.concat([Buffer.alloc(4), sent.subarray(0, 48)]) } });
  const forged = run(dp, unreach('2001:db8:ff::1', 4));
  t.is(forged.retval, XDP_DROP, 'port unreachable from a router\'s address');
  t.is(dp.counters().stats.drop_bad_source, 1);
  t.is(dp.counters().stats.snat_icmp, 0);
  const real = run(dp, unreach(be, 4));
  t.is(real.retval, XDP_PASS);
  t.is(parse6(real.out.subarray(14)).dst, parse6Addr(CLIENT6));
  t.is(dp.counters().stats.snat_icmp, 1);
  t.is(parse6(run(dp, unreach('2001:db8:ff::1', 3)).out.subarray(14)).dst, parse6Addr(CLIENT6), 'address unreachable from a router');
  t.is(dp.counters().stats.snat_icmp, 2);
});

/*
 * The other leg of the rule above: a port (or protocol) unreachable about a
 * reply from a VIP is the client host's own answer, so it comes from the
 * client — the quoted packet's destination. From any other address it was
 * forged, and it was steered (DSR) or translated (SNAT) to the backend
 * anyway: anyone on the uplink told a pod "connection refused" about any
 * client's flow.
 */
test('port unreachable about a reply from a VIP counts only from the client it was sent to: from another address it is dropped, neither steered (DSR) nor translated (SNAT); from the client it is, and a router\'s host unreachable still is', (t) => {
  const dp = openEdge(t, { snatPorts: { min: 20000, max: 20000 } });
  dp.applyServices([service(), service({ service: 'default/dns', mode: 'snat', frontend: { vip: VIP, port: 53, protocol: 'UDP' } })]);
  t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, sport: 47000 })).out).ip.dst, '10.244.1.1');
  t.is(parsePacket(run(dp, udpPacket({ sport: 5353 })).out).ip.dst, '10.244.1.1');
  const unreach = (src: string, code: number, reply: Buffer): Buffer =>
    buildPacket({ eth: clientEth, ip: { src, dst: VIP }, icmp: { type: 3, code, rest: Buffer.alloc(4), payload: reply.subarray(0, 28) } });
  const tcpReply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT }, tcp: { sport: 80, dport: 47000, flags: ACK, seq: 1 } });
  const udpReply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT }, udp: { sport: 53, dport: 5353, payload: Buffer.from('answer') } });
  for (const reply of [tcpReply, udpReply]) {
    for (const code of [3, 2]) t.is(run(dp, unreach('198.51.100.254', code, reply)).retval, XDP_DROP, `code ${code} from another address`);
  }
  t.like(dp.counters().stats, { drop_bad_source: 4, icmp_steered: 0, snat_icmp: 0 });
  t.is(parsePacket(run(dp, unreach(CLIENT, 3, tcpReply)).out).ip.dst, '10.244.1.1', 'DSR: from the client, steered');
  t.is(parsePacket(run(dp, unreach(CLIENT, 3, udpReply)).out).ip.dst, '10.244.1.1', 'SNAT: from the client, translated');
  t.like(dp.counters().stats, { icmp_steered: 1, snat_icmp: 1 });
  t.is(parsePacket(run(dp, unreach('198.51.100.254', 1, tcpReply)).out).ip.dst, '10.244.1.1', 'host unreachable from a router');
  t.is(dp.counters().stats.icmp_steered, 2);
});

test('IPv6: port unreachable about a reply from a VIP counts only from the client it was sent to: from another address it is dropped, neither steered (DSR) nor translated (SNAT); from the client it is, and a router\'s address unreachable still is', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, snatPorts: { min: 20000, max: 20000 } });
  const pod = parse6Addr(backend6(1).ip);
  apply6(dp, service6());
  apply6(dp, service6({ service: 'default/dns6', mode: 'snat', frontend: { vip: VIP6, port: 53, protocol: 'UDP' } }), { svcId: SVC6_ID + 1, backendIds: [BE6_ID0 + 10], ringOff: RING6_OFF - 16384 });
  for (const hook of ['xdp', 'tc'] as const) {
    const dead = hook === 'xdp' ? XDP_DROP : TC_ACT_SHOT;
    t.is(parse6(run(dp, tcp6({ flags: ACK }), hook).out.subarray(14)).dst, pod, hook);
    t.is(parse6(run(dp, udp6(), hook).out.subarray(14)).dst, pod, hook);
    const tcpReply = buildPacket6({ eth: false, ip: { src: VIP6, dst: CLIENT6, hopLimit: 60 }, tcp: { sport: 80, dport: 40000, seq: 5000, ack: 1001, flags: ACK } });
    const udpReply = buildPacket6({ eth: false, ip: { src: VIP6, dst: CLIENT6, hopLimit: 60 }, udp: { sport: 53, dport: 5353, payload: Buffer.from('answer') } });
    const unreach = (src: string, code: number, reply: Buffer): Buffer =>
      buildPacket6({ eth: eth6, ip: { src, dst: VIP6, hopLimit: 62 }, icmp6: { type: 1, code, body: Buffer.concat([Buffer.alloc(4), reply.subarray(0, 48)]) } });
    const before = dp.counters().stats;
    for (const reply of [tcpReply, udpReply]) t.is(run(dp, unreach('2001:db8:ff::1', 4, reply), hook).retval, dead, `${hook}: port unreachable from another address`);
    const after = dp.counters().stats;
    t.is(after.drop_bad_source - before.drop_bad_source, 2, hook);
    t.is(after.icmp_steered - before.icmp_steered, 0, hook);
    t.is(after.snat_icmp - before.snat_icmp, 0, hook);
    const dsr = run(dp, unreach(CLIENT6, 4, tcpReply), hook).out.subarray(14);
    t.is(parse6(dsr).dst, pod, `${hook}: DSR, from the client: steered`);
    t.true(verifyL4Checksum6(dsr));
    const snat = run(dp, unreach(CLIENT6, 4, udpReply), hook).out.subarray(14);
    t.is(parse6(snat).dst, pod, `${hook}: SNAT, from the client: translated`);
    t.true(verifyL4Checksum6(snat));
    t.is(parse6(run(dp, unreach('2001:db8:ff::1', 3, tcpReply), hook).out.subarray(14)).dst, pod, `${hook}: address unreachable from a router`);
    t.is(dp.counters().stats.icmp_steered - before.icmp_steered, 2, hook);
    t.is(dp.counters().stats.snat_icmp - before.snat_icmp, 1, hook);
  }
});
