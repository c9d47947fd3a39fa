// Edge program through BPF_PROG_TEST_RUN: exact output bytes, every
// checksum recomputed independently (test/lib/packets.ts builds the
// expected packet from scratch; verify* re-sum it a second way).
import test from 'ava';
import { XDP_DROP, XDP_PASS, XDP_TX, TC_ACT_OK, TC_ACT_SHOT, possibleCpus } from '../../src/datapath/loader.js';
import {
  buildPacket,
  dsrOption,
  icmpFragNeeded,
  internetChecksum,
  parsePacket,
  verifyIpv4Checksum,
  verifyL4Checksum,
} from '../lib/packets.js';
import { CLIENT, CLIENT_MAC, EDGE, EDGE_MAC, SEC, VIP, backend, clientEth, openEdge, service, setEdgeClock, tcpPacket, tcpSpec, udpPacket } from './edge-helpers.js';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';
import { buildPacket6 } from '../lib/packets6.js';

function run(dp: EdgeDatapath, data: Buffer, hook: 'xdp' | 'tc' = 'xdp'): { retval: number; out: Buffer } {
  const r = dp.program(hook).testRun({ data });
  return { retval: r.retval, out: r.dataOut };
}

function hex(b: Buffer): string {
  return b.toString('hex');
}

function checkSums(t: import('ava').ExecutionContext, frame: Buffer): void {
  const ip = frame.subarray(14);
  t.true(verifyIpv4Checksum(ip), 'IPv4 header checksum');
  t.true(verifyL4Checksum(ip), 'L4 checksum');
}

const SYN = { syn: true };
const ACK = { ack: true };

test('non-VIP traffic passes untouched and is not counted', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service()]);
  for (const pkt of [
    tcpPacket({ dst: '203.0.113.99' }),
    tcpPacket({ dport: 81 }),
    udpPacket({ dport: 80 }), // TCP service, UDP packet
    buildPacket({ eth: clientEth, ip: { src: CLIENT, dst: VIP, protocol: 47 }, payload: Buffer.alloc(8) }), // GRE to the VIP
  ]) {
    const r = run(dp, pkt);
    t.is(r.retval, XDP_PASS);
    t.is(hex(r.out), hex(pkt));
  }
  const c = dp.counters();
  t.is(c.services[0]!.packets, 0);
  t.true(Object.values(c.stats).every((v) => v === 0));
});

test('TCP SYN: DNAT to the pod and the DSR option, exact bytes', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service()]);
  const syn = tcpPacket({ flags: SYN });
  const r = run(dp, syn);
  t.is(r.retval, XDP_PASS); // FIB bypassed: rewritten and handed to the stack
  const spec = tcpSpec({ flags: SYN });
  const expected = buildPacket({
    ...spec,
    ip: { ...spec.ip, dst: '10.244.1.1', ttl: 63, options: dsrOption(VIP, 80) },
    tcp: { ...spec.tcp!, dport: 8080 },
  });
  t.is(hex(r.out), hex(expected));
  checkSums(t, r.out);
  const p = parsePacket(r.out);
  t.is(p.ip.ihl, 28);
  t.is(p.ip.totalLength, syn.length - 14 + 8);
  const c = dp.counters();
  t.is(c.stats.fib_bypass, 1);
  t.is(c.services[0]!.packets, 1);
  t.is(c.services[0]!.bytes, syn.length);
  t.is(c.services[0]!.backends[0]!.packets, 1);
});

test('tc program: same rewrite as XDP', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service()]);
  const syn = tcpPacket({ flags: SYN });
  const x = run(dp, syn, 'xdp');
  const c = run(dp, syn, 'tc');
  t.is(c.retval, TC_ACT_OK);
  t.is(hex(c.out), hex(x.out));
});

test('hooks: only the program the agent attaches is loaded (and verified); asking for the other names the reason', async (t) => {
  const dp = openEdge(t, { hooks: ['xdp'] });
  dp.applyServices([service()]);
  const viaXdp = run(dp, tcpPacket({ flags: SYN }), 'xdp');
  t.is(viaXdp.retval, XDP_PASS);
  t.throws(() => dp.program('tc'), { message: /edge_tc.*was not loaded \(autoload off\)/ });
  const { EdgeDatapath } = await import('../../src/datapath/edge-datapath.js');
  const tcOnly = await EdgeDatapath.openAsync({ maglevTableSize: 251, mtu: 1500, address: EDGE, forward: { kind: 'bypass' }, hooks: ['tc'] });
  t.teardown(() => tcOnly.close());
  tcOnly.applyServices([service()]);
  const viaTc = run(tcOnly, tcpPacket({ flags: SYN }), 'tc');
  t.is(viaTc.retval, TC_ACT_OK);
  t.is(hex(viaTc.out), hex(viaXdp.out), 'the same rewrite from either program');
  t.throws(() => tcOnly.program('xdp'), { message: /edge_xdp.*was not loaded/ });
});

test('established ACK: DNAT only, and keeps its backend after the backend set changes', (t) => {
  const dp = openEdge(t);
  const initial = [backend(1), backend(2), backend(3)];
  dp.applyServices([service({ backends: initial })]);
  const syn = run(dp, tcpPacket({ flags: SYN, sport: 41000 }));
  const chosen = parsePacket(syn.out).ip.dst;
  t.true(initial.some((b) => b.ip === chosen));

  const ack = tcpPacket({ flags: ACK, sport: 41000, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') });
  const r1 = run(dp, ack);
  const p1 = parsePacket(r1.out);
  t.is(p1.ip.dst, chosen);
  t.is(p1.ip.ihl, 20, 'no option on a non-SYN segment');
  t.is(p1.tcp!.dport, 8080);
  checkSums(t, r1.out);
  const spec = tcpSpec({ flags: ACK, sport: 41000, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') });
  t.is(hex(r1.out), hex(buildPacket({ ...spec, ip: { ...spec.ip, dst: chosen, ttl: 63 }, tcp: { ...spec.tcp!, dport: 8080 } })));

  // New backend set: the chosen one is terminating, many new ones arrive.
  const next = [...initial.map((b) => (b.ip === chosen ? { ...b, state: 'terminating' as const } : b)), ...Array.from({ length: 20 }, (_, i) => backend(10 + i))];
  const res = dp.applyServices([service({ backends: next })]);
  t.deepEqual(res, { added: 0, updated: 1, removed: 0, unchanged: 0 });
  for (let i = 0; i < 3; i++) t.is(parsePacket(run(dp, ack).out).ip.dst, chosen);
  // New flows never go to the terminating backend.
  for (let port = 42000; port < 42200; port++) {
    t.not(parsePacket(run(dp, tcpPacket({ flags: SYN, sport: port })).out).ip.dst, chosen);
  }
  // Removing it entirely: the flow is re-balanced, never sent to a stale slot.
  dp.applyServices([service({ backends: next.filter((b) => b.ip !== chosen) })]);
  const moved = parsePacket(run(dp, ack).out).ip.dst;
  t.not(moved, chosen);
  t.is(dp.counters().stats.ct_stale, 1);
});

test('a reused client port during a rolling update: the new SYN replaces the old connection, its ACK follows the SYN', (t) => {
  const dp = openEdge(t);
  const first = Array.from({ length: 4 }, (_, i) => backend(i + 1));
  dp.applyServices([service({ backends: first })]);
  const sport = 45123;
  const old = parsePacket(run(dp, tcpPacket({ flags: SYN, sport })).out).ip.dst;
  t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, sport })).out).ip.dst, old, 'pinned by its ACK');
  // Rolling update: the old pod is terminating (still valid for its flows,
  // never chosen for new ones). The client closes and reuses its port.
  dp.applyServices([service({ backends: first.map((b) => (b.ip === old ? { ...b, state: 'terminating' as const } : b)) })]);
  t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, sport })).out).ip.dst, old, 'the existing connection stays on the terminating pod');
  // The client closes (its FIN, then the last ACK) and, seconds later, reuses its port.
  const t0 = 1000n * SEC;
  setEdgeClock(dp, t0);
  run(dp, tcpPacket({ flags: { fin: true, ack: true }, sport }));
  run(dp, tcpPacket({ flags: ACK, sport }));
  setEdgeClock(dp, t0 + 5n * SEC);
  const syn = parsePacket(run(dp, tcpPacket({ flags: SYN, sport })).out).ip.dst;
  t.not(syn, old);
  t.is(dp.map('edge_ct').keys().length, 0, 'the SYN removed the previous connection');
  t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, sport })).out).ip.dst, syn, 'the ACK goes where the SYN went');
});

test('a SYN with a live tuple never re-routes it: blind RST, terminating backend; a RST followed by traffic is forgotten; after the client\'s FIN a SYN is a new connection', (t) => {
  const dp = openEdge(t);
  const first = Array.from({ length: 4 }, (_, i) => backend(i + 1));
  dp.applyServices([service({ backends: first })]);
  const t0 = 1000n * SEC;
  setEdgeClock(dp, t0);
  const dst = (flags: Parameters<typeof tcpPacket>[0]['flags'], sport: number): string => parsePacket(run(dp, tcpPacket({ flags, sport })).out).ip.dst;
  const live = (sport: number): string => {
    const b = dst(SYN, sport);
    dst(ACK, sport);
    return b;
  };
  // Many new pods arrive, the old ones terminate: Maglev now sends every new tuple elsewhere.
  const a = live(46001);
  const b = live(46002);
  const c = live(46003);
  dp.applyServices([service({ backends: [...first.map((x) => ({ ...x, state: 'terminating' as const })), ...Array.from({ length: 8 }, (_, i) => backend(20 + i))] })]);
  // Someone else's SYN with a live connection's tuple (nothing before it; a RST) follows the connection.
  t.is(dst(SYN, 46001), a);
  run(dp, tcpPacket({ flags: { rst: true }, sport: 46002 }));
  t.is(dst(SYN, 46002), b);
  // ... also seconds later while the connection keeps talking.
  for (let i = 1; i <= 6; i++) {
    setEdgeClock(dp, t0 + BigInt(i) * SEC);
    t.is(dst(ACK, 46002), b);
  }
  t.is(dst(SYN, 46002), b, 'not silent: still live');
  // The client's FIN, then (within the silence) a SYN: a client reuses a port only after closing
  // it, and a terminating pod is about to stop listening — a new connection, balanced anew.
  run(dp, tcpPacket({ flags: { fin: true, ack: true }, sport: 46003 }));
  run(dp, tcpPacket({ flags: ACK, sport: 46003 }));
  const fresh = dst(SYN, 46003);
  t.not(fresh, c, 'not kept on the terminating pod');
  t.is(dst(ACK, 46003), fresh, 'the ACK follows the SYN');
  // A RST the backend ignored, then traffic: the mark is gone, a late SYN still stays.
  run(dp, tcpPacket({ flags: { rst: true }, sport: 46001 }));
  t.is(dst(ACK, 46001), a);
  setEdgeClock(dp, t0 + 30n * SEC);
  t.is(dst(SYN, 46001), a);
  t.is(dp.map('edge_ct').keys().length, 2, 'the two live connections; the reused tuple\'s ACK came inside the change\'s second-chance window (remembered in edge_sc_flows, not edge_ct)');
});

test('port reuse on an active backend stays on it (SYN and ACK agree); after a RST and silence a reused port on a terminating backend is balanced anew', (t) => {
  const dp = openEdge(t);
  const bs = Array.from({ length: 4 }, (_, i) => backend(i + 1));
  dp.applyServices([service({ backends: bs })]);
  const t0 = 1000n * SEC;
  setEdgeClock(dp, t0);
  const sport = 47001;
  const old = parsePacket(run(dp, tcpPacket({ flags: SYN, sport })).out).ip.dst;
  run(dp, tcpPacket({ flags: ACK, sport }));
  // New backends change the Maglev answer for many tuples; the pinned one stays active.
  dp.applyServices([service({ backends: [...bs, ...Array.from({ length: 8 }, (_, i) => backend(30 + i))] })]);
  run(dp, tcpPacket({ flags: { rst: true }, sport }));
  setEdgeClock(dp, t0 + 5n * SEC);
  t.is(parsePacket(run(dp, tcpPacket({ flags: SYN, sport })).out).ip.dst, old, 'an active backend keeps the reused port');
  t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, sport })).out).ip.dst, old);
  // The same after the backend turns terminating: a RST and silence end the old connection.
  dp.applyServices([service({ backends: [...bs.map((b) => (b.ip === old ? { ...b, state: 'terminating' as const } : b)), ...Array.from({ length: 8 }, (_, i) => backend(30 + i))] })]);
  run(dp, tcpPacket({ flags: { rst: true }, sport }));
  setEdgeClock(dp, t0 + 7n * SEC);
  t.is(parsePacket(run(dp, tcpPacket({ flags: SYN, sport })).out).ip.dst, old, 'RST then a SYN within the silence: still live');
  setEdgeClock(dp, t0 + 12n * SEC);
  const fresh = parsePacket(run(dp, tcpPacket({ flags: SYN, sport })).out).ip.dst;
  t.not(fresh, old);
  t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, sport })).out).ip.dst, fresh);
});

test('non-SYN without state is balanced like its SYN (edge restart / ECMP move)', (t) => {
  const dp = openEdge(t);
  const bs = Array.from({ length: 8 }, (_, i) => backend(i + 1));
  dp.applyServices([service({ backends: bs })]);
  for (let port = 43000; port < 43040; port++) {
    const ackFirst = parsePacket(run(dp, tcpPacket({ flags: ACK, sport: port })).out).ip.dst;
    const dp2syn = parsePacket(run(dp, tcpPacket({ flags: SYN, sport: port })).out).ip.dst;
    t.is(ackFirst, dp2syn);
  }
});

test('UDP: every packet gets DNAT and the option', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service({ frontend: { vip: VIP, port: 53, protocol: 'UDP' }, backends: [backend(1, { port: 5353 })] })]);
  for (let i = 0; i < 3; i++) {
    const payload = Buffer.from(`query ${i}`);
    const r = run(dp, udpPacket({ payload }));
    const expected = buildPacket({
      eth: clientEth,
      ip: { src: CLIENT, dst: '10.244.1.1', df: false, id: 0x4321, ttl: 63, options: dsrOption(VIP, 53) },
      udp: { sport: 5353, dport: 5353, payload },
    });
    t.is(hex(r.out), hex(expected));
    checkSums(t, r.out);
  }
  // A datagram without a checksum keeps "no checksum".
  const r = run(dp, udpPacket({ checksum: 0 }));
  t.is(parsePacket(r.out).udp!.checksum, 0);
});

test('IPIP: outer header to the node, inner packet untouched but for the hop\'s TTL', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service({ dispatch: 'ipip' })]);
  for (const flags of [SYN, ACK]) {
    const inner = tcpPacket({ flags, tos: 0x28 });
    const r = run(dp, inner);
    t.is(r.retval, XDP_PASS);
    const spec = tcpSpec({ flags, tos: 0x28 });
    const forwarded = buildPacket({ ...spec, ip: { ...spec.ip, ttl: 63 } });
    const exp = buildPacket({ eth: clientEth, ip: { src: EDGE, dst: '10.0.0.11', tos: 0x28, ttl: 64, df: true, id: 0, protocol: 4 }, payload: forwarded.subarray(14) });
    t.is(hex(r.out), hex(exp));
    t.true(verifyIpv4Checksum(r.out.subarray(14)));
  }
});

test('IPIP: outer source from a configured block spreads flows (RSS), DF clear gets a non-fixed id', (t) => {
  const dp = openEdge(t, { ipipSource: { network: '192.0.2.0', bits: 8 } });
  dp.applyServices([service({ dispatch: 'ipip' })]);
  const sources = new Set<string>();
  for (let port = 44000; port < 44064; port++) {
    const p = parsePacket(run(dp, tcpPacket({ flags: SYN, sport: port })).out);
    t.regex(p.ip.src, /^192\.0\.2\.\d+$/);
    t.true(verifyIpv4Checksum(p.ipBytes));
    sources.add(p.ip.src);
    t.is(p.inner!.ip.dst, VIP);
  }
  t.true(sources.size > 16, `only ${sources.size} distinct outer sources`);
  // Same flow → same outer source.
  const a = parsePacket(run(dp, tcpPacket({ flags: ACK, sport: 44000 })).out).ip.src;
  const b = parsePacket(run(dp, tcpPacket({ flags: ACK, sport: 44000 })).out).ip.src;
  t.is(a, b);
});

test('auto dispatch follows setPathDispatch per node', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service({ dispatch: 'auto' })]);
  t.is(parsePacket(run(dp, tcpPacket({ flags: SYN })).out).ip.protocol, 4, 'default for auto is ipip');
  dp.setPathDispatch('10.0.0.11', 'ip-option');
  const p = parsePacket(run(dp, tcpPacket({ flags: SYN })).out);
  t.is(p.ip.protocol, 6);
  t.is(p.ip.ihl, 28);
  t.deepEqual(dp.applyServices([service({ dispatch: 'auto' })]), { added: 0, updated: 1, removed: 0, unchanged: 0 });
  t.is(parsePacket(run(dp, tcpPacket({ flags: SYN })).out).ip.ihl, 28);
});

test('SNAT: forward to the backend from the edge, reply back from the VIP, exact bytes both ways', (t) => {
  const dp = openEdge(t, { snatPorts: { min: 20000, max: 20003 } });
  dp.applyServices([service({ mode: 'snat' })]);
  const payload = Buffer.from('hello');
  const fwd = run(dp, tcpPacket({ flags: SYN, payload }));
  const pf = parsePacket(fwd.out);
  t.is(pf.ip.src, EDGE);
  t.is(pf.ip.dst, '10.244.1.1');
  t.is(pf.ip.ihl, 20);
  t.true(pf.tcp!.sport >= 20000 && pf.tcp!.sport <= 20003);
  const port = pf.tcp!.sport;
  const spec = tcpSpec({ flags: SYN, payload });
  t.is(hex(fwd.out), hex(buildPacket({ ...spec, ip: { ...spec.ip, src: EDGE, dst: '10.244.1.1', ttl: 63 }, tcp: { ...spec.tcp!, sport: port, dport: 8080 } })));
  checkSums(t, fwd.out);
  // Same flow keeps its port.
  t.is(parsePacket(run(dp, tcpPacket({ flags: ACK })).out).tcp!.sport, port);

  const reply = buildPacket({
    eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC },
    ip: { src: '10.244.1.1', dst: EDGE, df: true, id: 7 },
    tcp: { sport: 8080, dport: port, flags: { syn: true, ack: true }, seq: 5, ack: 1001, payload: Buffer.from('hi') },
  });
  const rev = run(dp, reply);
  t.is(rev.retval, XDP_PASS);
  const expected = buildPacket({
    eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC },
    ip: { src: VIP, dst: CLIENT, df: true, id: 7, ttl: 63 },
    tcp: { sport: 80, dport: 40000, flags: { syn: true, ack: true }, seq: 5, ack: 1001, payload: Buffer.from('hi') },
  });
  t.is(hex(rev.out), hex(expected));
  checkSums(t, rev.out);
  t.is(dp.counters().stats.snat_reverse, 1);
  // The edge's own traffic to its address is untouched.
  const own = buildPacket({ eth: clientEth, ip: { src: '10.244.1.1', dst: EDGE }, tcp: { sport: 8080, dport: 22, flags: ACK } });
  t.is(hex(run(dp, own).out), hex(own));
  // Exhaustion: 4 ports towards one backend, the 5th flow is dropped.
  for (let sp = 1; sp <= 3; sp++) t.is(run(dp, tcpPacket({ flags: SYN, sport: 40000 + sp })).retval, XDP_PASS);
  t.is(run(dp, tcpPacket({ flags: SYN, sport: 40100 })).retval, XDP_DROP);
  t.true(dp.counters().stats.drop_snat_ports >= 1);
});

/**
 * `original` with its addresses and ports replaced and its IPv4 header
 * checksum summed afresh: what a quote looks like once the edge translated
 * it (the quoted L4 checksum stays as it was).
 */
function requoted(original: Buffer, src: string, sport: number, dst: string, dport: number): Buffer {
  const q = Buffer.from(original);
  const ip4 = (a: string) => Buffer.from(a.split('.').map(Number));
  ip4(src).copy(q, 12);
  ip4(dst).copy(q, 16);
  q.writeUInt16BE(sport, 20);
  q.writeUInt16BE(dport, 22);
  q.writeUInt16BE(0, 10);
  q.writeUInt16BE(internetChecksum(q.subarray(0, 20)), 10);
  return q;
}

test('ICMP errors about a SNAT flow are translated for the other leg: exact bytes both ways, nothing for a flow this edge does not hold', (t) => {
  const dp = openEdge(t, { snatPorts: { min: 20000, max: 20003 } });
  dp.applyServices([service({ mode: 'snat', sourceRanges: ['198.51.100.0/24'] })]);
  const fwd = parsePacket(run(dp, tcpPacket({ flags: SYN })).out);
  const port = fwd.tcp!.sport;
  const router = '10.0.0.254';
  const atEdge = { src: '02:00:00:00:00:09', dst: EDGE_MAC };

  // Backend leg: a router between edge and backend cannot forward the
  // client's 1 400-byte segment (as the edge sent it) and tells the edge.
  // The client must hear it about its own packet, from the VIP. The longer
  // quote carries the TCP checksum: left as it was, the ICMP sum still right.
  for (const embedBytes of [28, 48]) {
    const sent = buildPacket({ eth: false, ip: { src: EDGE, dst: '10.244.1.1', df: true, id: 42, ttl: 62 }, tcp: { sport: port, dport: 8080, flags: ACK, seq: 1001, payload: Buffer.alloc(1400) } });
    const err = buildPacket({ eth: atEdge, ip: { src: router, dst: EDGE }, icmp: icmpFragNeeded({ mtu: 1280, original: sent, embedBytes }) });
    const r = run(dp, err);
    t.is(r.retval, XDP_PASS);
    const quote = requoted(sent.subarray(0, embedBytes), CLIENT, 40000, VIP, 80);
    t.is(hex(r.out), hex(buildPacket({ eth: atEdge, ip: { src: VIP, dst: CLIENT, ttl: 63 }, icmp: icmpFragNeeded({ mtu: 1280, original: quote, embedBytes }) })), `quote of ${embedBytes} bytes`);
    t.true(verifyIpv4Checksum(r.out.subarray(14)));
    t.true(verifyL4Checksum(r.out.subarray(14)));
  }
  t.is(dp.counters().stats.snat_icmp, 2);
  // The tc program (an uplink without native XDP) translates the same way.
  const sentTc = buildPacket({ eth: false, ip: { src: EDGE, dst: '10.244.1.1', df: true, id: 43 }, tcp: { sport: port, dport: 8080, flags: ACK, seq: 2401, payload: Buffer.alloc(1400) } });
  const viaTc = run(dp, buildPacket({ eth: atEdge, ip: { src: router, dst: EDGE }, icmp: icmpFragNeeded({ mtu: 1280, original: sentTc }) }), 'tc');
  t.is(viaTc.retval, TC_ACT_OK);
  t.is(hex(viaTc.out), hex(buildPacket({ eth: atEdge, ip: { src: VIP, dst: CLIENT, ttl: 63 }, icmp: icmpFragNeeded({ mtu: 1280, original: requoted(sentTc.subarray(0, 28), CLIENT, 40000, VIP, 80) }) })));
  t.is(dp.counters().stats.snat_icmp, 3);

  // Client leg: a router towards the client cannot forward the backend's
  // reply (VIP:80 → client) and tells the VIP. The backend must hear it
  // about its own reply (backend:8080 → edge:port), from the edge address.
  const reply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, df: true, id: 7, ttl: 60 }, tcp: { sport: 80, dport: 40000, flags: ACK, seq: 5, payload: Buffer.alloc(1400) } });
  const back = run(dp, buildPacket({ eth: clientEth, ip: { src: '198.51.100.254', dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: reply }) }));
  t.is(back.retval, XDP_PASS);
  t.is(hex(back.out), hex(buildPacket({ eth: clientEth, ip: { src: EDGE, dst: '10.244.1.1', ttl: 63 }, icmp: icmpFragNeeded({ mtu: 1280, original: requoted(reply.subarray(0, 28), '10.244.1.1', 8080, EDGE, port) }) })));
  t.true(verifyL4Checksum(back.out.subarray(14)));
  t.is(dp.counters().stats.snat_icmp, 4);

  // What names no flow of this edge passes untouched: another edge port,
  // another client's reply (its flow is on another edge), an error about a
  // packet that is not from the edge address.
  const untouched = [
    buildPacket({ eth: atEdge, ip: { src: router, dst: EDGE }, icmp: icmpFragNeeded({ mtu: 1280, original: buildPacket({ eth: false, ip: { src: EDGE, dst: '10.244.1.1' }, tcp: { sport: port === 20000 ? 20001 : 20000, dport: 8080, flags: ACK } }) }) }),
    buildPacket({ eth: clientEth, ip: { src: '198.51.100.254', dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT }, tcp: { sport: 80, dport: 40001, flags: ACK } }) }) }),
    buildPacket({ eth: atEdge, ip: { src: router, dst: EDGE }, icmp: icmpFragNeeded({ mtu: 1280, original: buildPacket({ eth: false, ip: { src: '10.0.0.5', dst: '10.244.1.1' }, tcp: { sport: port, dport: 8080, flags: ACK } }) }) }),
  ];
  for (const u of untouched) t.is(hex(run(dp, u).out), hex(u));
  t.is(dp.counters().stats.snat_icmp, 4);
  // The sender of a client-leg error passes the service's source ranges.
  t.is(run(dp, buildPacket({ eth: clientEth, ip: { src: '203.0.113.200', dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: reply }) })).retval, XDP_DROP);
  t.is(dp.counters().stats.drop_src_range, 1);
  t.is(dp.counters().stats.snat_icmp, 4);
});

test('SNAT: a backend\'s fragmented reply reaches the client fragment by fragment, rewritten as the whole reply would be (exact bytes); a later fragment before its first, or of no flow, passes untouched', (t) => {
  const dp = openEdge(t, { snatPorts: { min: 20000, max: 20003 } });
  dp.applyServices([service({ service: 'default/dns', mode: 'snat', frontend: { vip: VIP, port: 53, protocol: 'UDP' }, backends: [backend(1, { port: 5353 })] })]);
  const port = parsePacket(run(dp, udpPacket({ sport: 5353, dport: 53 })).out).udp!.sport;
  const atEdge = { src: '02:00:00:00:00:09', dst: EDGE_MAC };
  // A 1 200-byte answer: the whole reply as the backend sent it, and as the client must reassemble it.
  const answer = Buffer.from(Array.from({ length: 1200 }, (_, i) => (i * 7) & 255));
  const sent = buildPacket({ eth: false, ip: { src: '10.244.1.1', dst: EDGE, id: 777 }, udp: { sport: 5353, dport: port, payload: answer } }).subarray(20);
  const wanted = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, id: 777 }, udp: { sport: 53, dport: 5353, payload: answer } }).subarray(20);
  const frag = (src: string, dst: string, l4: Buffer, at: number, more: boolean, ttl = 64, id = 777): Buffer =>
    buildPacket({ eth: atEdge, ip: { src, dst, id, mf: more, fragOffset: at, protocol: 17, ttl }, payload: l4 });
  const first = frag('10.244.1.1', EDGE, sent.subarray(0, 608), 0, true);
  const second = frag('10.244.1.1', EDGE, sent.subarray(608), 608, false);
  t.is(hex(run(dp, second).out), hex(second), 'a later fragment before its first: to the stack, untouched');
  const r1 = run(dp, first);
  t.is(r1.retval, XDP_PASS);
  t.is(hex(r1.out), hex(frag(VIP, CLIENT, wanted.subarray(0, 608), 0, true, 63)), 'the first: addresses, ports and the whole datagram\'s UDP checksum');
  const r2 = run(dp, second);
  t.is(hex(r2.out), hex(frag(VIP, CLIENT, wanted.subarray(608), 608, false, 63)), 'the later one: addresses');
  t.true(verifyIpv4Checksum(r2.out.subarray(14)));
  // The tc program (an uplink without native XDP) does the same.
  const third = frag('10.244.1.1', EDGE, sent.subarray(0, 608), 0, true, 64, 778);
  const viaTc = run(dp, third, 'tc');
  t.is(viaTc.retval, TC_ACT_OK);
  t.is(hex(viaTc.out), hex(frag(VIP, CLIENT, wanted.subarray(0, 608), 0, true, 63, 778)));
  t.is(dp.counters().stats.snat_fragment, 3);
  // No flow: another edge port, another backend, a later fragment of another datagram.
  const otherPort = port === 20000 ? 20001 : 20000;
  const stranger = Buffer.from(sent.subarray(0, 608));
  stranger.writeUInt16BE(otherPort, 2);
  for (const f of [
    frag('10.244.1.1', EDGE, stranger, 0, true),
    frag('10.244.1.2', EDGE, sent.subarray(0, 608), 0, true),
    frag('10.244.1.1', EDGE, sent.subarray(608), 608, false, 64, 999),
  ]) t.is(hex(run(dp, f).out), hex(f));
  t.is(dp.counters().stats.snat_fragment, 3);
});

// ---------------------------------------------------------------- SNAT reply fragments, hostile (edge_snat_frag.h)

const BE_ETH = { src: '02:00:00:00:00:09', dst: EDGE_MAC };
const FRAG_ANSWER = Buffer.from(Array.from({ length: 1200 }, (_, i) => (i * 7) & 255));
const PASS = { xdp: XDP_PASS, tc: TC_ACT_OK } as const;
const DROP = { xdp: XDP_DROP, tc: TC_ACT_SHOT } as const;

/** An IPv4 fragment from the backend's router: `l4` the fragment's bytes of the TCP/UDP datagram, `at` their byte offset in it. */
function frag4(src: string, dst: string, l4: Buffer, at: number, more: boolean, o: { id?: number; proto?: number; ttl?: number } = {}): Buffer {
  return buildPacket({ eth: BE_ETH, ip: { src, dst, id: o.id ?? 0x5eed, mf: more, fragOffset: at, protocol: o.proto ?? 17, ttl: o.ttl ?? 64 }, payload: l4 });
}

/** A UDP datagram's bytes (header and payload, its checksum over the pseudo-header of src → dst). */
function udpBytes(src: string, dst: string, sport: number, dport: number, payload: Buffer, checksum?: number): Buffer {
  return buildPacket({ eth: false, ip: { src, dst }, udp: { sport, dport, payload, ...(checksum !== undefined ? { checksum } : {}) } }).subarray(20);
}

function tcpBytes(src: string, dst: string, sport: number, dport: number, payload: Buffer): Buffer {
  return buildPacket({ eth: false, ip: { src, dst }, tcp: { sport, dport, seq: 5, ack: 1006, flags: { ack: true, psh: true }, payload } }).subarray(20);
}

/** The datagram the client reassembles from forwarded fragments (bare IPv4 packets, any order): the unfragmented packet, for verifyL4Checksum. */
function reassembled4(frags: Buffer[]): Buffer {
  const parts = frags.map((f) => ({ at: (f.readUInt16BE(6) & 0x1fff) * 8, bytes: f.subarray(20, f.readUInt16BE(2)) })).sort((a, b) => a.at - b.at);
  const l4 = Buffer.concat(parts.map((p) => p.bytes));
  const ip = Buffer.from(frags[0]!.subarray(0, 20));
  ip.writeUInt16BE(20 + l4.length, 2);
  ip.writeUInt16BE(0, 6);
  return Buffer.concat([ip, l4]);
}

/** An edge with the DNS service (VIP:53/UDP → backend 1 :5353) and the web one (VIP:80/TCP → backend 1 :8080) in mode snat, one flow of CLIENT on each: their edge ports. */
function fragEdge4(t: import('ava').ExecutionContext): { dp: EdgeDatapath; be: string; up: number; tp: number } {
  const dp = openEdge(t, { snatPorts: { min: 20000, max: 20999 } });
  dp.applyServices([
    service({ service: 'default/dns', mode: 'snat', frontend: { vip: VIP, port: 53, protocol: 'UDP' }, backends: [backend(1, { port: 5353 })] }),
    service({ mode: 'snat' }),
  ]);
  setEdgeClock(dp, 10_000n * SEC);
  const up = parsePacket(run(dp, udpPacket({ sport: 5353, dport: 53 })).out).udp!.sport;
  const tp = parsePacket(run(dp, tcpPacket({ flags: SYN })).out).tcp!.sport;
  return { dp, be: backend(1).ip, up, tp };
}

for (const hook of ['xdp', 'tc'] as const) test(`${hook}: SNAT fragments, hostile: tiny and malformed first fragments (whole L4 header, UDP length, a multiple of 8, TTL), later fragments overlapping the TCP header — never translated wrongly; a UDP checksum of 0 stays 0; what names no flow passes untouched`, (t) => {
  const { dp, be, up, tp } = fragEdge4(t);
  const r = (f: Buffer): { retval: number; out: Buffer } => run(dp, f, hook);
  const stats = (): Record<string, number> => dp.counters().stats;
  const seg = tcpBytes(be, EDGE, 8080, tp, FRAG_ANSWER.subarray(0, 300));
  const segWanted = tcpBytes(VIP, CLIENT, 80, 40000, FRAG_ANSWER.subarray(0, 300));
  const T = { proto: 6, id: 0x1001 };
  // A tiny first fragment: the ports, not the whole TCP header (RFC 1858's
  // flags in the next fragment). It names the flow: dropped, and its later
  // fragments have nothing to follow.
  t.is(r(frag4(be, EDGE, seg.subarray(0, 8), 0, true, T)).retval, DROP[hook]);
  t.is(stats().drop_malformed, 1);
  const rest = frag4(be, EDGE, seg.subarray(8), 8, false, T);
  t.is(hex(r(rest).out), hex(rest));
  // Tinier: not even the ports — nothing to match, untouched; also when the
  // frame's padding past the IP length holds the flow's ports (they are no
  // part of the packet).
  for (const n of [0, 2]) {
    const f = frag4(be, EDGE, seg.subarray(0, n), 0, true, T);
    t.is(hex(r(f).out), hex(f), `${n} bytes`);
  }
  const padded = Buffer.concat([frag4(be, EDGE, seg.subarray(0, 2), 0, true, T), seg.subarray(2, 20)]);
  const rp = r(padded);
  t.is(rp.retval, PASS[hook], 'ports in the padding: no ports');
  t.is(hex(rp.out), hex(padded));
  // UDP first fragments that cannot be a datagram's first: a UDP length that
  // does not reach past the fragment, a header cut short, a length not a
  // multiple of 8 (RFC 791: every fragment but the last carries a multiple
  // of 8 bytes).
  const sent = udpBytes(be, EDGE, 5353, up, FRAG_ANSWER);
  const short = Buffer.from(sent.subarray(0, 608));
  short.writeUInt16BE(600, 4);
  for (const [i, bad] of [short, sent.subarray(0, 4), sent.subarray(0, 604)].entries()) {
    t.is(r(frag4(be, EDGE, bad, 0, true, { id: 0x1002 })).retval, DROP[hook], `malformed UDP first #${i}`);
  }
  t.is(stats().drop_malformed, 4);
  const later = frag4(be, EDGE, sent.subarray(608), 608, false, { id: 0x1002 });
  t.is(hex(r(later).out), hex(later), 'no first was translated: the later one passes');
  // No UDP checksum (0: "none", valid over IPv4, RFC 768): translated, and it stays 0.
  const bare = udpBytes(be, EDGE, 5353, up, FRAG_ANSWER, 0);
  const bareWanted = udpBytes(VIP, CLIENT, 53, 5353, FRAG_ANSWER, 0);
  t.is(hex(r(frag4(be, EDGE, bare.subarray(0, 608), 0, true, { id: 0x1003 })).out), hex(frag4(VIP, CLIENT, bareWanted.subarray(0, 608), 0, true, { id: 0x1003, ttl: 63 })));
  // A good first, then later fragments that overlap the TCP header the first
  // one's translation wrote (offsets 8 and 16): dropped; beyond it, translated.
  const first = r(frag4(be, EDGE, seg.subarray(0, 48), 0, true, T));
  t.is(hex(first.out), hex(frag4(VIP, CLIENT, segWanted.subarray(0, 48), 0, true, { ...T, ttl: 63 })));
  for (const at of [8, 16]) t.is(r(frag4(be, EDGE, seg.subarray(at, at + 40), at, true, T)).retval, DROP[hook], `offset ${at}`);
  t.is(stats().drop_malformed, 6);
  // A repeated first fragment of the same flow (an overlap the client will
  // judge) is translated as the first was; a tiny one is dropped; one whose
  // ports name no flow passes untouched — the later fragments still follow the flow.
  t.is(hex(r(frag4(be, EDGE, seg.subarray(0, 48), 0, true, T)).out), hex(first.out));
  t.is(r(frag4(be, EDGE, seg.subarray(0, 8), 0, true, T)).retval, DROP[hook]);
  const stranger = Buffer.from(seg.subarray(0, 48));
  stranger.writeUInt16BE(tp === 20500 ? 20501 : 20500, 2);
  const sf = frag4(be, EDGE, stranger, 0, true, T);
  t.is(hex(r(sf).out), hex(sf));
  const last = r(frag4(be, EDGE, seg.subarray(48), 48, false, T));
  t.is(hex(last.out), hex(frag4(VIP, CLIENT, segWanted.subarray(48), 48, false, { ...T, ttl: 63 })));
  t.true(verifyL4Checksum(reassembled4([last.out.subarray(14), first.out.subarray(14)])), 'the client\'s reassembly checks out');
  // Out of hops: dropped as a reply would be — and a first dropped so arms
  // nothing for its later fragments.
  t.is(r(frag4(be, EDGE, seg.subarray(0, 48), 0, true, { proto: 6, id: 0x1004, ttl: 1 })).retval, DROP[hook]);
  const unarmed = frag4(be, EDGE, seg.subarray(48), 48, false, { proto: 6, id: 0x1004 });
  t.is(hex(r(unarmed).out), hex(unarmed), 'a first dropped for its TTL arms nothing');
  t.is(r(frag4(be, EDGE, seg.subarray(48), 48, false, { ...T, ttl: 1 })).retval, DROP[hook]);
  t.is(stats().drop_ttl, 2);
  t.is(stats().drop_malformed, 7);
  t.is(stats().snat_fragment, 4);
});

for (const hook of ['xdp', 'tc'] as const) test(`${hook}: SNAT fragments: an IP id reused by another flow's first fragment makes its later fragments pass, until 2 s after the last first with that id; fragments that only look like an armed id's pass untouched`, (t) => {
  const { dp, be, up } = fragEdge4(t);
  const r = (f: Buffer): { retval: number; out: Buffer } => run(dp, f, hook);
  const other = '198.51.100.99';
  const op = parsePacket(run(dp, udpPacket({ src: other, sport: 5353, dport: 53 })).out).udp!.sport;
  t.not(op, up);
  const X = { id: 0xabcd };
  const sentA = udpBytes(be, EDGE, 5353, up, FRAG_ANSWER);
  const sentB = udpBytes(be, EDGE, 5353, op, FRAG_ANSWER);
  const wantA = udpBytes(VIP, CLIENT, 53, 5353, FRAG_ANSWER);
  const wantB = udpBytes(VIP, other, 53, 5353, FRAG_ANSWER);
  const firstA = frag4(be, EDGE, sentA.subarray(0, 608), 0, true, X);
  const firstB = frag4(be, EDGE, sentB.subarray(0, 608), 0, true, X);
  const laterA = frag4(be, EDGE, sentA.subarray(608), 608, false, X);
  const laterB = frag4(be, EDGE, sentB.subarray(608), 608, false, X);
  // Flow A's first fragment, then flow B's with the same id (a colliding id,
  // or a forged first): each first is its own flow's, but the later
  // fragments could be either's — they pass, to neither client.
  t.is(hex(r(firstA).out), hex(frag4(VIP, CLIENT, wantA.subarray(0, 608), 0, true, { ...X, ttl: 63 })));
  t.is(hex(r(firstB).out), hex(frag4(VIP, other, wantB.subarray(0, 608), 0, true, { ...X, ttl: 63 })));
  const amb = r(laterA);
  t.is(amb.retval, PASS[hook]);
  t.is(hex(amb.out), hex(laterA), 'ambiguous: untouched');
  // Flow A's first again within the 2 s: still ambiguous.
  setEdgeClock(dp, 10_001n * SEC);
  r(firstA);
  t.is(hex(r(laterA).out), hex(laterA));
  // 2 s after the last first fragment with that id, a new first arms it again…
  setEdgeClock(dp, 10_003n * SEC + 1n);
  r(firstB);
  t.is(hex(r(laterB).out), hex(frag4(VIP, other, wantB.subarray(608), 608, false, { ...X, ttl: 63 })));
  // …only for 2 s.
  setEdgeClock(dp, 10_005n * SEC + 2n);
  t.is(hex(r(laterB).out), hex(laterB), 'expired: untouched');
  t.is(dp.counters().stats.snat_fragment, 5);
  // An armed id, and fragments that only look like its: another backend,
  // another protocol, another destination; to a VIP — dropped as ever.
  const Y = { id: 0x4242 };
  r(frag4(be, EDGE, sentA.subarray(0, 608), 0, true, Y));
  for (const f of [
    frag4(backend(2).ip, EDGE, sentA.subarray(608), 608, false, Y),
    frag4(be, EDGE, sentA.subarray(608), 608, false, { ...Y, proto: 6 }),
    frag4(be, '192.0.2.2', sentA.subarray(608), 608, false, Y),
  ]) {
    const o = r(f);
    t.is(o.retval, PASS[hook]);
    t.is(hex(o.out), hex(f));
  }
  t.is(r(frag4(be, VIP, sentA.subarray(608), 608, false, Y)).retval, DROP[hook]);
  t.is(dp.counters().stats.drop_fragment, 1);
  t.is(hex(r(frag4(be, EDGE, sentA.subarray(608), 608, false, Y)).out), hex(frag4(VIP, CLIENT, wantA.subarray(608), 608, false, { ...Y, ttl: 63 })));
  t.is(dp.counters().stats.snat_fragment, 7);
});

test('a frame to another host\'s MAC (a promiscuous uplink sees another edge\'s flooded frames) is left to the stack, counted, on both hooks and both families; without the uplink\'s MAC nothing is checked', (t) => {
  const dp = openEdge(t, { uplinkMac: EDGE_MAC, ipv6: true, address6: '2001:db8::1' });
  dp.applyServices([service()]);
  t.is(parsePacket(run(dp, tcpPacket({ flags: SYN })).out).ip.dst.startsWith('10.244.'), true, 'to this edge\'s MAC: served');
  const elsewhere = (f: Buffer): Buffer => {
    const o = Buffer.from(f);
    Buffer.from('020000000077', 'hex').copy(o, 0);
    return o;
  };
  const syn = elsewhere(tcpPacket({ flags: SYN, sport: 41000 }));
  const r = run(dp, syn);
  t.is(r.retval, XDP_PASS);
  t.is(hex(r.out), hex(syn), 'untouched');
  const viaTc = run(dp, syn, 'tc');
  t.is(viaTc.retval, TC_ACT_OK);
  t.is(hex(viaTc.out), hex(syn));
  // IPv6 takes the same door (checked before the IPv6 program is called).
  const v6 = elsewhere(buildPacket6({ eth: { src: CLIENT_MAC, dst: EDGE_MAC }, ip: { src: '2001:db8:1::7', dst: '2001:db8:100::10' }, tcp: { sport: 40000, dport: 80, flags: SYN } }));
  t.is(hex(run(dp, v6).out), hex(v6));
  t.is(dp.counters().stats.other_host, 3);
  // An edge opened without its uplink's MAC (tests, tools) checks nothing.
  const plain = openEdge(t);
  plain.applyServices([service()]);
  t.true(parsePacket(run(plain, syn).out).ip.dst.startsWith('10.244.'));
  t.is(plain.counters().stats.other_host, 0);
});

test('hybrid: TCP goes DSR, UDP goes SNAT', (t) => {
  const dp = openEdge(t);
  dp.applyServices([
    service({ mode: 'hybrid' }),
    service({ mode: 'hybrid', frontend: { vip: VIP, port: 80, protocol: 'UDP' } }),
  ]);
  const tcp = parsePacket(run(dp, tcpPacket({ flags: SYN })).out);
  t.is(tcp.ip.src, CLIENT);
  t.is(tcp.ip.ihl, 28);
  const udp = parsePacket(run(dp, udpPacket({ dport: 80 })).out);
  t.is(udp.ip.src, EDGE);
  t.is(udp.ip.ihl, 20);
  t.is(udp.ip.dst, '10.244.1.1');
});

test('source ranges: outside dropped and counted, inside forwarded; ranges are per service', (t) => {
  const dp = openEdge(t);
  dp.applyServices([
    service({ sourceRanges: ['198.51.100.0/28', '192.0.2.128/25'] }),
    service({ service: 'default/other', frontend: { vip: VIP, port: 443, protocol: 'TCP' } }),
  ]);
  t.is(run(dp, tcpPacket({ flags: SYN, src: '198.51.100.7' })).retval, XDP_PASS);
  t.is(run(dp, tcpPacket({ flags: SYN, src: '192.0.2.200' })).retval, XDP_PASS);
  t.is(run(dp, tcpPacket({ flags: SYN, src: '198.51.100.77' })).retval, XDP_DROP);
  t.is(run(dp, tcpPacket({ flags: ACK, src: '8.8.8.8' })).retval, XDP_DROP);
  t.is(dp.counters().stats.drop_src_range, 2);
  t.is(run(dp, tcpPacket({ flags: SYN, src: '8.8.8.8', dport: 443 })).retval, XDP_PASS);
  // Removing the ranges opens the service.
  dp.applyServices([service(), service({ service: 'default/other', frontend: { vip: VIP, port: 443, protocol: 'TCP' } })]);
  t.is(run(dp, tcpPacket({ flags: SYN, src: '8.8.8.8' })).retval, XDP_PASS);
});

test('more source ranges than the table holds: that frontend is rejected with its reason, nothing of it is written, the others of the same change are served; space freed is used again', (t) => {
  // A Service may list tens of thousands of loadBalancerSourceRanges (the
  // API server sets no limit); edge_src_ranges holds 1024 here.
  const dp = openEdge(t);
  const many = Array.from({ length: 1100 }, (_, i) => `10.${i >> 8}.${i & 255}.0/24`);
  const big = service({ service: 'default/big', frontend: { vip: VIP, port: 443, protocol: 'TCP' }, sourceRanges: many });
  const small = service({ sourceRanges: ['198.51.100.0/28'] });
  const r = dp.upsert([big, small]);
  t.is(r.added, 1);
  t.deepEqual(r.rejected.map((x) => [x.key, x.reason]), [[`${VIP}:443/TCP`, 'OutOfSourceRanges']]);
  t.regex(r.rejected[0]!.message, /1100 source ranges \(1100 new\) do not fit: edge_src_ranges has 1024 free entries \(0 of 1024 in use\)/);
  t.deepEqual(dp.keys(), [`${VIP}:80/TCP`]);
  t.is(dp.map('edge_src_ranges').keys().length, 1, 'nothing of the rejected frontend was written');
  t.is(run(dp, tcpPacket({ flags: SYN, src: '198.51.100.7' })).retval, XDP_PASS);
  t.is(run(dp, tcpPacket({ flags: SYN, src: '8.8.8.8', dport: 443 })).retval, XDP_PASS, 'no VIP entry for the rejected port: passed, not served open');
  // A frontend that grows past the table keeps nothing of its old shape open to everyone.
  const grown = dp.upsert([{ ...small, sourceRanges: [...many, '198.51.100.0/28'] }]);
  t.deepEqual(grown.rejected.map((x) => x.reason), ['OutOfSourceRanges']);
  t.deepEqual(dp.keys(), []);
  t.is(dp.map('edge_src_ranges').keys().length, 0);
  // Within the table: served.
  const fits = dp.upsert([{ ...big, sourceRanges: many.slice(0, 1000) }, small]);
  t.is(fits.added, 2);
  t.is(dp.map('edge_src_ranges').keys().length, 1001);
});

test('edge_services holds frontends and one marker per VIP: a frontend on a new VIP that would not fit is rejected (OutOfServiceIds), the rest of the change applies', (t) => {
  // edge_services and edge_svc_stats hold 4096 here: 4095 service ids, but
  // every VIP also takes a marker entry in edge_services.
  const dp = openEdge(t);
  const vip = (i: number) => `203.0.${112 + (i >> 8)}.${i & 255}`;
  // No backends: no Maglev region, so ring slots do not run out first.
  const many = Array.from({ length: 2100 }, (_, i) => service({ service: `default/s${i}`, frontend: { vip: vip(i), port: 80, protocol: 'TCP' }, backends: [] }));
  const r = dp.upsert(many);
  t.is(r.added + r.rejected.length, 2100);
  t.true(r.rejected.length > 0 && r.rejected.every((x) => x.reason === 'OutOfServiceIds'), JSON.stringify(r.rejected.slice(0, 2)));
  t.regex(r.rejected[0]!.message, /edge_services/);
  t.is(dp.map('edge_services').keys().length, 2 * r.added);
  // Another port on a VIP that already has its marker still fits in the last free entry.
  const free = 4096 - 2 * r.added;
  const more = dp.upsert(Array.from({ length: free }, (_, i) => service({ service: `default/p${i}`, frontend: { vip: vip(0), port: 1000 + i, protocol: 'TCP' }, backends: [] })));
  t.is(more.added, free);
  t.deepEqual(more.rejected, []);
});

test('session affinity: a client keeps its backend for new connections after the backend set changes', (t) => {
  const dp = openEdge(t);
  const bs = Array.from({ length: 6 }, (_, i) => backend(i + 1));
  dp.applyServices([service({ affinityTimeoutSeconds: 600, backends: bs })]);
  const first = parsePacket(run(dp, tcpPacket({ flags: SYN, sport: 45000 })).out).ip.dst;
  t.is(dp.map('edge_affinity').keys().length, 0, 'a SYN writes no affinity entry (a spoofed SYN flood would wash the table out)');
  t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, sport: 45000 })).out).ip.dst, first);
  t.is(dp.map('edge_affinity').keys().length, 1, 'the ACK that pins the flow writes it');
  for (let port = 45001; port < 45020; port++) t.is(parsePacket(run(dp, tcpPacket({ flags: SYN, sport: port })).out).ip.dst, first);
  const more = [...bs, ...Array.from({ length: 30 }, (_, i) => backend(100 + i))];
  dp.applyServices([service({ affinityTimeoutSeconds: 600, backends: more })]);
  for (let port = 46000; port < 46020; port++) t.is(parsePacket(run(dp, tcpPacket({ flags: SYN, sport: port })).out).ip.dst, first);
  t.true(dp.counters().stats.affinity_hit >= 19);
  // Different clients spread.
  const seen = new Set<string>();
  for (let i = 1; i < 60; i++) seen.add(parsePacket(run(dp, tcpPacket({ flags: SYN, src: `198.51.100.${i}` })).out).ip.dst);
  t.true(seen.size > 5);
});

test('too big with DF: ICMP fragmentation-needed back to the client, exact bytes', (t) => {
  const dp = openEdge(t, { mtu: 1400 });
  dp.applyServices([service(), service({ frontend: { vip: VIP, port: 81, protocol: 'TCP' }, dispatch: 'ipip' })]);
  // 1396-byte IP packet: fits 1400 alone, not with the 8-byte option.
  const big = tcpPacket({ flags: SYN, payload: Buffer.alloc(1396 - 20 - 24, 0xab) });
  const r = run(dp, big);
  t.is(r.retval, XDP_TX);
  // The quote is the packet's header as forwarded (TTL − 1, checksum updated) and 8 bytes.
  const spec = tcpSpec({ flags: SYN, payload: Buffer.alloc(1396 - 20 - 24, 0xab) });
  const quote = buildPacket({ ...spec, ip: { ...spec.ip, ttl: 63 } }).subarray(14, 14 + 28);
  const expected = buildPacket({
    eth: { src: EDGE_MAC, dst: CLIENT_MAC },
    ip: { src: VIP, dst: CLIENT, tos: 0xc0, ttl: 64, id: 0 },
    icmp: icmpFragNeeded({ mtu: 1392, original: quote }),
  });
  t.is(hex(r.out), hex(expected));
  t.true(verifyIpv4Checksum(r.out.subarray(14)));
  t.true(verifyL4Checksum(r.out.subarray(14)));
  // IPIP: MTU − 20.
  const r2 = run(dp, tcpPacket({ flags: SYN, dport: 81, payload: Buffer.alloc(1390 - 44) }));
  t.is(r2.retval, XDP_TX);
  t.is(parsePacket(r2.out).icmp!.mtu, 1380);
  // The same size without the option (established) is forwarded.
  t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, payload: Buffer.alloc(1396 - 40) })).out).ip.dst, '10.244.1.1');
  // Without DF: rewritten and handed to the stack to fragment.
  const r3 = run(dp, tcpPacket({ flags: SYN, df: false, payload: Buffer.alloc(1396 - 44) }));
  t.is(r3.retval, XDP_PASS);
  t.is(parsePacket(r3.out).ip.ihl, 28);
  const c = dp.counters().stats;
  t.is(c.icmp_too_big_sent, 2);
  t.is(c.too_big_pass, 1);
});

test('ICMP frag-needed for a VIP flow is steered to the flow\'s backend', (t) => {
  const dp = openEdge(t);
  const bs = Array.from({ length: 5 }, (_, i) => backend(i + 1));
  dp.applyServices([service({ backends: bs })]);
  const chosen = parsePacket(run(dp, tcpPacket({ flags: SYN, sport: 47000 })).out);
  // The backend's reply (VIP:80 → client:47000), as a router quotes it.
  const reply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, df: true, id: 99 }, tcp: { sport: 80, dport: 47000, flags: ACK, seq: 1, payload: Buffer.alloc(1400) } });
  const icmp = buildPacket({ eth: clientEth, ip: { src: '198.51.100.254', dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: reply }) });
  const r = run(dp, icmp);
  t.is(r.retval, XDP_PASS);
  const quotedRewritten = Buffer.from(reply.subarray(0, 28));
  quotedRewritten.write(chosen.ip.dst.split('.').map((x) => Number(x).toString(16).padStart(2, '0')).join(''), 12, 'hex');
  quotedRewritten.writeUInt16BE(8080, 20);
  quotedRewritten.writeUInt16BE(0, 10);
  const ihSum = (() => {
    let s = 0;
    for (let i = 0; i < 20; i += 2) s += quotedRewritten.readUInt16BE(i);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    return ~s & 0xffff;
  })();
  quotedRewritten.writeUInt16BE(ihSum, 10);
  const expected = buildPacket({ eth: clientEth, ip: { src: '198.51.100.254', dst: chosen.ip.dst, ttl: 63 }, icmp: icmpFragNeeded({ mtu: 1280, original: quotedRewritten }) });
  t.is(hex(r.out), hex(expected));
  t.true(verifyL4Checksum(r.out.subarray(14)));
  t.is(dp.counters().stats.icmp_steered, 1);
  // Echo to the VIP and errors about unknown services pass untouched.
  const echo = buildPacket({ eth: clientEth, ip: { src: CLIENT, dst: VIP }, icmp: { type: 8, rest: Buffer.from([0, 1, 0, 1]) } });
  t.is(hex(run(dp, echo).out), hex(echo));
  const other = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT }, udp: { sport: 9999, dport: 1 } });
  const icmp2 = buildPacket({ eth: clientEth, ip: { src: '198.51.100.254', dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: other }) });
  t.is(hex(run(dp, icmp2).out), hex(icmp2));
});

test('fragments: to a VIP dropped and counted, to anything else passed', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service()]);
  const first = buildPacket({ eth: clientEth, ip: { src: CLIENT, dst: VIP, mf: true }, udp: { sport: 1, dport: 80, payload: Buffer.alloc(64) } });
  const later = buildPacket({ eth: clientEth, ip: { src: CLIENT, dst: VIP, fragOffset: 72, protocol: 6 }, payload: Buffer.alloc(64) });
  const tcpFirst = buildPacket({ eth: clientEth, ip: { src: CLIENT, dst: VIP, mf: true }, tcp: { sport: 40000, dport: 80, flags: ACK } });
  for (const f of [first, later, tcpFirst]) t.is(run(dp, f).retval, XDP_DROP);
  t.is(dp.counters().stats.drop_fragment, 3);
  const elsewhere = buildPacket({ eth: clientEth, ip: { src: CLIENT, dst: '203.0.113.77', fragOffset: 72, protocol: 6 }, payload: Buffer.alloc(64) });
  const r = run(dp, elsewhere);
  t.is(r.retval, XDP_PASS);
  t.is(hex(r.out), hex(elsewhere));
  // Once the VIP has no service left, its fragments pass too.
  dp.applyServices([]);
  t.is(run(dp, later).retval, XDP_PASS);
});

test('packets that already carry IP options are dropped (never forwarded with a forged option)', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service()]);
  const forged = tcpPacket({ flags: SYN, options: dsrOption('10.9.9.9', 22) });
  t.is(run(dp, forged).retval, XDP_DROP);
  const nop = tcpPacket({ flags: ACK, options: Buffer.from([1, 1, 1, 0]) });
  t.is(run(dp, nop).retval, XDP_DROP);
  t.is(dp.counters().stats.drop_ip_options, 2);
  const elsewhere = tcpPacket({ flags: SYN, dst: '203.0.113.77', options: Buffer.from([1, 1, 1, 0]) });
  t.is(hex(run(dp, elsewhere).out), hex(elsewhere));
});

test('a service without active backends drops and counts', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service({ backends: [backend(1, { state: 'terminating' })] })]);
  t.is(run(dp, tcpPacket({ flags: SYN })).retval, XDP_DROP);
  dp.applyServices([service({ backends: [] })]);
  t.is(run(dp, tcpPacket({ flags: SYN })).retval, XDP_DROP);
  t.is(dp.counters().stats.drop_no_backend, 2);
});

test('truncated at every length: no crash, untouched verdicts, never forwarded', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service(), service({ frontend: { vip: VIP, port: 53, protocol: 'UDP' } })]);
  const reply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT }, tcp: { sport: 80, dport: 40000, flags: ACK } });
  const packets = [
    tcpPacket({ flags: SYN }),
    tcpPacket({ flags: ACK, payload: Buffer.alloc(10) }),
    udpPacket({ dport: 53 }),
    buildPacket({ eth: clientEth, ip: { src: '1.2.3.4', dst: VIP }, icmp: icmpFragNeeded({ mtu: 1000, original: reply }) }),
  ];
  for (const full of packets) {
    for (let len = 0; len <= full.length; len++) {
      const cut = Buffer.from(full.subarray(0, len));
      // Also with the IP total length shrunk to what is there.
      const variants = [cut];
      if (len >= 34) {
        const fixed = Buffer.from(cut);
        fixed.writeUInt16BE(len - 14, 16);
        fixed.writeUInt16BE(0, 24);
        fixed.writeUInt16BE(internetChecksum(fixed.subarray(14, 34)), 24);
        variants.push(fixed);
      }
      for (const v of variants) {
        let r: { retval: number; out: Buffer };
        try {
          r = run(dp, v);
        } catch (e) {
          // The kernel refuses frames shorter than an Ethernet header.
          t.true(len < 14, `len ${len}: ${(e as Error).message}`);
          continue;
        }
        if (len === full.length) continue; // the complete packet is forwarded
        t.true(r.retval === XDP_PASS || r.retval === XDP_DROP, `len ${len}: verdict ${r.retval}`);
        if (r.retval !== XDP_PASS || r.out.equals(v)) continue;
        // Rewritten: only a packet that is complete by its own lengths may
        // be (e.g. an ACK cut right after its header), and it must be
        // addressed to the backend with whole headers.
        t.true(v === variants[1], `len ${len}: a packet shorter than its IP length was rewritten`);
        const p = parsePacket(r.out);
        t.false(p.truncated, `len ${len}: truncated`);
        t.true(verifyIpv4Checksum(r.out.subarray(14)), `len ${len}: ip checksum`);
        t.true(p.ip.dst === '10.244.1.1', `len ${len}: to ${p.ip.dst}`);
      }
    }
  }
});

test('SYNs never enter the connection table; first-ACK inserts stop at the per-CPU limit; flows still work', (t) => {
  const dp = openEdge(t, { ctInsertLimit: 5 });
  dp.applyServices([service({ backends: [backend(1), backend(2)] })]);
  const n = 200;
  const chosen = new Map<number, string>();
  for (let p = 48000; p < 48000 + n; p++) {
    const r = run(dp, tcpPacket({ flags: SYN, sport: p }));
    t.is(r.retval, XDP_PASS);
    chosen.set(p, parsePacket(r.out).ip.dst);
  }
  // A SYN flood (spoofed or not) leaves no trace in the table.
  t.is(dp.map('edge_ct').keys().length, 0);
  t.is(dp.counters().stats.ct_insert_skipped, 0);
  // The handshakes' ACKs pin their flows, up to the limit.
  for (let p = 48000; p < 48000 + n; p++) t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, sport: p })).out).ip.dst, chosen.get(p)!);
  const inserted = dp.map('edge_ct').keys().length;
  const skipped = dp.counters().stats.ct_insert_skipped;
  t.is(inserted + skipped, n);
  // 5 per CPU per ~1 s window; the runs may spread over every CPU and straddle a window.
  t.true(inserted <= 5 * possibleCpus() * 2, `inserted ${inserted}`);
  // Forgotten flows still reach the same backend (Maglev is deterministic).
  for (let p = 48000; p < 48000 + n; p += 17) t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, sport: p })).out).ip.dst, chosen.get(p)!);
});

test('applyServices is incremental: unchanged services are not rewritten', (t) => {
  const dp = openEdge(t);
  const svcs = Array.from({ length: 20 }, (_, i) => service({ service: `ns/s${i}`, frontend: { vip: VIP, port: 1000 + i, protocol: 'TCP' }, backends: [backend(i + 1), backend(i + 100)] }));
  t.deepEqual(dp.applyServices(svcs), { added: 20, updated: 0, removed: 0, unchanged: 0 });
  t.deepEqual(dp.applyServices(svcs), { added: 0, updated: 0, removed: 0, unchanged: 20 });
  const changed = [...svcs];
  changed[3] = { ...svcs[3]!, backends: [...svcs[3]!.backends, backend(300)] };
  changed.pop();
  t.deepEqual(dp.applyServices(changed), { added: 0, updated: 1, removed: 1, unchanged: 18 });
  t.is(dp.map('edge_services').keys().length, 19 + 1); // + the VIP marker
  // Everything removed: maps empty, slots released.
  dp.applyServices([]);
  t.is(dp.map('edge_services').keys().length, 0);
  t.is(dp.ringSlotsUsed(), 0);
});

test('bad desired state is rejected naming the service', (t) => {
  const dp = openEdge(t);
  t.throws(() => dp.applyServices([service({ backends: [backend(1, { ip: '10.0.0.300' })] })]), { message: /default\/web .*backend IP '10.0.0.300'/ });
  t.throws(() => dp.applyServices([service({ sourceRanges: ['10.0.0.0/33'] })]), { message: /default\/web.*33/ });
  t.throws(() => dp.applyServices([service(), service({ service: 'x/dup' })]), { message: /both claim/ });
});

test('upsert/remove by frontendKey: a frontend the datapath cannot serve is rejected with its reason, the rest of the call is served', (t) => {
  const dp = openEdge(t);
  const r = dp.upsert([
    service(),
    service({ service: 'ns/ranges6', frontend: { vip: VIP, port: 81, protocol: 'TCP' }, sourceRanges: ['2001:db8::/32'] }),
    service({ service: 'ns/vip6', frontend: { vip: '2001:db8::10', port: 80, protocol: 'TCP' } }),
    service({ service: 'ns/nonode', frontend: { vip: VIP, port: 82, protocol: 'TCP' }, backends: [backend(1, { nodeIp: '' })] }),
  ]);
  t.like(r, { added: 1, updated: 0, unchanged: 0 });
  t.deepEqual(r.rejected.map((x) => [x.key, x.service, x.reason]), [
    [`${VIP}:81/TCP`, 'ns/ranges6', 'UnsupportedFamily'],
    ['[2001:db8::10]:80/TCP', 'ns/vip6', 'UnsupportedFamily'],
    [`${VIP}:82/TCP`, 'ns/nonode', 'InvalidFrontend'],
  ]);
  const syn = (dport: number) => run(dp, tcpPacket({ flags: SYN, dport }));
  t.not(parsePacket(syn(80).out).ip.dst, VIP, 'the servable frontend forwards');
  for (const port of [81, 82]) t.is(hex(syn(port).out), hex(tcpPacket({ flags: SYN, dport: port })), `port ${port} is not a frontend`);
  t.deepEqual(dp.keys(), [`${VIP}:80/TCP`]);
  t.like(dp.upsert([service()]), { added: 0, updated: 0, unchanged: 1, rejected: [] });
  t.is(dp.remove([`${VIP}:80/TCP`, `${VIP}:99/TCP`]), 1);
  t.is(hex(syn(80).out), hex(tcpPacket({ flags: SYN, dport: 80 })));
  t.deepEqual(dp.keys(), []);
  t.is(dp.map('edge_services').keys().length, 0, 'VIP marker gone with its last frontend');
  t.like(dp.capacity(), { ringSlots: { used: 0 }, backendIds: { used: 0 }, serviceIds: { used: 0 } });
});

test('slot exhaustion: the failing service is named, the others are applied, a later apply recovers', (t) => {
  const dp = openEdge(t); // 65 536 ring slots: four services of 100 backends (16 384 slots each)
  const mk = (i: number) =>
    service({ service: `ns/big${i}`, frontend: { vip: VIP, port: 2000 + i, protocol: 'TCP' }, backends: Array.from({ length: 100 }, (_, j) => backend(i * 100 + j + 1)) });
  const err = t.throws(() => dp.applyServices([0, 1, 2, 3, 4].map(mk)));
  t.regex(err!.message, /1 service\(s\) not fully applied: ns\/big\d .*slot array full/);
  const served = (i: number): boolean => parsePacket(run(dp, tcpPacket({ flags: SYN, dport: 2000 + i })).out).ip.dst !== VIP;
  const ok = [0, 1, 2, 3, 4].filter(served);
  t.is(ok.length, 4);
  const failedIdx = [0, 1, 2, 3, 4].find((i) => !ok.includes(i))!;
  const keep = [0, 1, 2, 3, 4].filter((i) => i !== ok[0]);
  t.notThrows(() => dp.applyServices(keep.map(mk)));
  t.true(served(failedIdx));
  t.false(served(ok[0]!), 'a removed service is plain non-VIP traffic');
});

test('session affinity expires after its timeout', async (t) => {
  const dp = openEdge(t);
  const bs = Array.from({ length: 3 }, (_, i) => backend(i + 1));
  const more = [...bs, ...Array.from({ length: 30 }, (_, i) => backend(200 + i))];
  // Find a client whose Maglev choice moves when the backends are added.
  const probe = openEdge(t);
  probe.applyServices([service({ affinityTimeoutSeconds: 1, backends: more })]);
  dp.applyServices([service({ affinityTimeoutSeconds: 1, backends: bs })]);
  let client = '';
  let before = '';
  for (let i = 1; i < 250 && !client; i++) {
    const src = `198.51.100.${i}`;
    const a = parsePacket(run(dp, tcpPacket({ flags: SYN, src })).out).ip.dst;
    const b = parsePacket(run(probe, tcpPacket({ flags: SYN, src })).out).ip.dst;
    if (a !== b) {
      client = src;
      before = a;
    }
  }
  t.truthy(client);
  run(dp, tcpPacket({ flags: ACK, src: client })); // the handshake's ACK confirms the flow: the affinity entry
  dp.applyServices([service({ affinityTimeoutSeconds: 1, backends: more })]);
  t.is(parsePacket(run(dp, tcpPacket({ flags: SYN, src: client, sport: 51000 })).out).ip.dst, before, 'within the timeout');
  await new Promise((r) => setTimeout(r, 2300));
  t.not(parsePacket(run(dp, tcpPacket({ flags: SYN, src: client, sport: 51001 })).out).ip.dst, before, 'after the timeout');
});

test('session affinity: a SYN that finds its client\'s entry keeps it fresh, so the handshake\'s ACK near the timeout still agrees with its SYN', (t) => {
  // The entry is written by a flow's first ACK, not its SYN; had the SYN not
  // restarted the timeout, an entry about to expire sent the SYN to the
  // client's old backend and its ACK, a moment later, to Maglev's new one.
  const dp = openEdge(t);
  const bs = Array.from({ length: 3 }, (_, i) => backend(i + 1));
  const more = [...bs, ...Array.from({ length: 30 }, (_, i) => backend(200 + i))];
  const probe = openEdge(t);
  probe.applyServices([service({ affinityTimeoutSeconds: 2, backends: more })]);
  dp.applyServices([service({ affinityTimeoutSeconds: 2, backends: bs })]);
  let client = '';
  for (let i = 1; i < 250 && !client; i++) {
    const src = `198.51.100.${i}`;
    if (parsePacket(run(dp, tcpPacket({ flags: SYN, src })).out).ip.dst !== parsePacket(run(probe, tcpPacket({ flags: SYN, src })).out).ip.dst) client = src;
  }
  t.truthy(client);
  setEdgeClock(dp, 1000n * SEC);
  const home = parsePacket(run(dp, tcpPacket({ flags: ACK, src: client })).out).ip.dst; // confirmed: the entry
  dp.applyServices([service({ affinityTimeoutSeconds: 2, backends: more })]);
  setEdgeClock(dp, 1001n * SEC + SEC / 2n);
  t.is(parsePacket(run(dp, tcpPacket({ flags: SYN, src: client, sport: 51000 })).out).ip.dst, home, 'the SYN, 1.5 s after the entry was written');
  setEdgeClock(dp, 1003n * SEC + SEC / 10n);
  t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, src: client, sport: 51000 })).out).ip.dst, home, 'its ACK, 3.1 s after the entry was written');
  setEdgeClock(dp, 1006n * SEC);
  t.not(parsePacket(run(dp, tcpPacket({ flags: SYN, src: client, sport: 51001 })).out).ip.dst, home, 'the entry expires 2 s after its last use');
});

// ---------------------------------------------------------------- SNAT ports (issue 13.4)

/** A backend's reply to the edge's SNAT port. */
function snatReply(port: number, flags: Parameters<typeof tcpPacket>[0]['flags'], be = '10.244.1.1', seq = 0, ack = 0): Buffer {
  return buildPacket({ eth: { src: '02:00:00:00:00:09', dst: EDGE_MAC }, ip: { src: be, dst: EDGE, df: true }, tcp: { sport: 8080, dport: port, flags: flags ?? ACK, seq, ack } });
}

test('SNAT TCP with session affinity: the entry is written when the handshake completes (the client\'s ACK after the backend\'s SYN-ACK), never by a SYN; clients keep their backend across a change', (t) => {
  const dp = openEdge(t);
  const bs = Array.from({ length: 4 }, (_, i) => backend(i + 1));
  dp.applyServices([service({ mode: 'snat', affinityTimeoutSeconds: 3600, backends: bs })]);
  // Spoofed SYNs: ports are taken (half-open, given back after a minute), no affinity.
  for (let i = 0; i < 200; i++) run(dp, tcpPacket({ flags: SYN, src: `198.18.0.${i + 1}` }));
  t.is(dp.map('edge_affinity').keys().length, 0, 'no SYN wrote an affinity entry');
  const home = new Map<string, string>();
  for (let i = 1; i <= 40; i++) {
    const src = `198.51.100.${i}`;
    const f = parsePacket(run(dp, tcpPacket({ flags: SYN, src })).out);
    run(dp, snatReply(f.tcp!.sport, { syn: true, ack: true }, f.ip.dst, 5000, 1001));
    t.is(dp.map('edge_affinity').keys().length, i - 1, 'nor the SYN-ACK');
    t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, src, seq: 1001, ack: 5001 })).out).ip.dst, f.ip.dst);
    t.is(dp.map('edge_affinity').keys().length, i, 'the client\'s ACK completing the handshake did');
    home.set(src, f.ip.dst);
  }
  dp.applyServices([service({ mode: 'snat', affinityTimeoutSeconds: 3600, backends: [...bs, ...Array.from({ length: 12 }, (_, i) => backend(20 + i))] })]);
  for (const [src, b] of home) t.is(parsePacket(run(dp, tcpPacket({ flags: SYN, src, sport: 41000 })).out).ip.dst, b, src);
});

test('SNAT capacity: one backend holds at most the port range in live flows; beyond it new flows are dropped and counted', (t) => {
  // The default range 20000–32767 (12 768 ports), and a reverse map big enough not to evict.
  const dp = openEdge(t, { maxEntries: { edge_snat_rev: 1 << 16, edge_ct: 1 << 16 } });
  dp.applyServices([service({ mode: 'snat' })]);
  const n = 13_500;
  const ports = new Set<number>();
  let firstDrop = -1;
  for (let i = 0; i < n; i++) {
    const r = run(dp, tcpPacket({ flags: SYN, src: `198.18.${i >> 8}.${i & 255}`, sport: 40000 }));
    if (r.retval === XDP_DROP) {
      if (firstDrop < 0) firstDrop = i;
      continue;
    }
    ports.add(parsePacket(r.out).tcp!.sport);
  }
  const drops = dp.counters().stats.drop_snat_ports;
  t.log(`${ports.size} flows got a port of 12 768; the first drop came at flow ${firstDrop + 1}; ${drops} of ${n} dropped`);
  t.true(ports.size <= 12_768);
  t.is(ports.size + drops, n, 'every flow either has its own port or was dropped');
  t.true(drops >= n - 12_768, `${drops} dropped`);
});

test('SNAT ports are reclaimed once a flow has ended (both FINs or a RST with the sequence number its receiver expects, then a hold) or idled out; live flows keep theirs, blind RSTs end nothing', (t) => {
  const dp = openEdge(t, { snatPorts: { min: 21000, max: 21063 } });
  dp.applyServices([service({ mode: 'snat' }), service({ service: 'default/dns', mode: 'snat', frontend: { vip: VIP, port: 53, protocol: 'UDP' }, backends: [backend(1, { port: 5353 })] })]);
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  const client = (i: number): string => `198.18.${i >> 8}.${i & 255}`;
  // Fill the 64 ports (a few attempts more: probes are hashed).
  const open = (from: number, count: number): Map<number, number> => {
    const got = new Map<number, number>();
    for (let i = from; i < from + count; i++) {
      const r = run(dp, tcpPacket({ flags: SYN, src: client(i), sport: 40000 }));
      if (r.retval !== XDP_DROP) got.set(i, parsePacket(r.out).tcp!.sport);
    }
    return got;
  };
  const first = open(0, 400);
  t.true(first.size >= 60 && first.size <= 64, `${first.size} ports`);
  t.is(open(400, 50).size, 0, 'the range is full');

  // One flow stays live, talking every few seconds.
  const [liveClient, livePort] = [...first.entries()][0]!;
  const talk = (s: bigint): void => {
    setEdgeClock(dp, t0 + s * SEC);
    t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, src: client(liveClient), sport: 40000 })).out).tcp!.sport, livePort);
    t.is(parsePacket(run(dp, snatReply(livePort, ACK)).out).ip.dst, client(liveClient));
  };
  // The others: a third end with both FINs; a third are established
  // (client ISN 1000, backend ISN 5000) and end with a RST from either side
  // carrying the number its receiver expects (the backend's ACK 1001 / the
  // client's ACK 5001), after a blind one that is ignored; a third are
  // established and only get blind RSTs (wrong numbers, both sides): they
  // live on, their ports kept until their idle end.
  const finPorts = new Set<number>();
  const rstPorts = new Set<number>();
  const blindPorts = new Set<number>();
  let k = 0;
  for (const [i, port] of first) {
    if (i === liveClient) continue;
    const group = k++ % 3;
    if (group === 0) {
      // (The client's FIN acknowledges 2000: the backend's FIN carries that
      // number, as a receiver's window check wants — snat_fin_ok.)
      run(dp, tcpPacket({ flags: { fin: true, ack: true }, src: client(i), sport: 40000, seq: 1001, ack: 2000 }));
      run(dp, snatReply(port, { fin: true, ack: true }, undefined, 2000, 1002));
      finPorts.add(port);
      continue;
    }
    run(dp, snatReply(port, { syn: true, ack: true }, undefined, 5000, 1001));
    run(dp, tcpPacket({ flags: ACK, src: client(i), sport: 40000, seq: 1001, ack: 5001 }));
    const fromClient = k % 2 === 0;
    const rst = (seq: number): Buffer => (fromClient ? tcpPacket({ flags: { rst: true }, src: client(i), sport: 40000, seq }) : snatReply(port, { rst: true }, undefined, seq));
    run(dp, rst(fromClient ? 1000 : 5000));
    if (group === 1) {
      run(dp, rst(fromClient ? 1001 : 5001));
      rstPorts.add(port);
    } else {
      run(dp, rst(fromClient ? 0x7fff : 4999));
      blindPorts.add(port);
    }
  }
  t.is(dp.counters().stats.snat_rst_ignored, rstPorts.size + 2 * blindPorts.size);
  talk(1n);
  t.is(open(500, 50).size, 0, 'just ended: nothing is reused yet');
  // A few seconds after a RST its port is free; after both FINs the backend may
  // hold TIME_WAIT for the old tuple, so those ports wait about a minute.
  talk(20n);
  const afterRst = [...open(600, 400).values()];
  t.true(afterRst.length >= rstPorts.size - 4 && afterRst.every((p) => rstPorts.has(p)), `reused ${afterRst.length} ports, ${rstPorts.size} were reset`);
  talk(40n);
  talk(62n);
  const afterFin = [...open(1000, 400).values()];
  t.true(afterFin.length >= finPorts.size - 4 && afterFin.every((p) => finPorts.has(p) || rstPorts.has(p)), `reused ${afterFin.length} ports, ${finPorts.size} were closed`);
  t.false([...afterRst, ...afterFin].includes(livePort), 'a live flow\'s port is never taken');
  t.false([...afterRst, ...afterFin].some((p) => blindPorts.has(p)), 'nor one of a flow that only got blind RSTs');
  talk(63n);
  t.true(dp.counters().stats.snat_reclaimed >= afterRst.length + afterFin.length);

  // Idle flows: after the idle time (TCP one hour, UDP a minute) their ports come back too.
  setEdgeClock(dp, t0 + 63n * SEC + 3700n * SEC);
  t.true(open(1400, 400).size >= 55, 'TCP ports of idle flows reclaimed');
  const udp = (i: number): number => {
    const r = run(dp, udpPacket({ src: client(i), sport: 5353, dport: 53 }));
    return r.retval === XDP_DROP ? -1 : parsePacket(r.out).udp!.sport;
  };
  const u1 = Array.from({ length: 300 }, (_, i) => udp(2000 + i)).filter((p) => p >= 0);
  t.true(u1.length >= 55 && u1.length <= 64, `${u1.length} UDP ports`);
  setEdgeClock(dp, t0 + 63n * SEC + 3700n * SEC + 70n * SEC);
  t.true(Array.from({ length: 300 }, (_, i) => udp(3000 + i)).filter((p) => p >= 0).length >= 55, 'UDP ports of idle flows reclaimed');
});

test('SNAT replies are accepted only on the interface their flow came in on (the uplink)', async (t) => {
  const { Cleanup, createNetns, nsRun, uniqueId } = await import('../lib/netns.js');
  const { inNetns } = await import('../../src/datapath/loader.js');
  const cleanup = new Cleanup();
  t.teardown(async () => {
    await cleanup.run();
  });
  const ns = await createNetns(`edgelb-snatif-${uniqueId()}`, cleanup);
  for (const d of ['up', 'other']) {
    await nsRun(ns, ['ip', 'link', 'add', `${d}0`, 'type', 'veth', 'peer', 'name', `${d}1`]);
    await nsRun(ns, ['ip', 'link', 'set', `${d}0`, 'up']);
  }
  const ifindex = async (d: string): Promise<number> => (JSON.parse((await nsRun(ns, ['ip', '-j', 'link', 'show', d])).stdout) as { ifindex: number }[])[0]!.ifindex;
  const up = await ifindex('up0');
  const other = await ifindex('other0');
  const dp = openEdge(t, { snatPorts: { min: 20000, max: 20003 } });
  dp.applyServices([service({ mode: 'snat' })]);
  // struct __sk_buff with only ifindex (offset 40) set: the interface the packet arrived on.
  const on = (dev: number): Buffer => {
    const ctx = Buffer.alloc(192);
    ctx.writeUInt32LE(dev, 40);
    return ctx;
  };
  const tc = (data: Buffer, dev: number): { retval: number; out: Buffer } => {
    const r = inNetns(ns, () => dp.program('tc').testRun({ data, ctxIn: on(dev) }));
    return { retval: r.retval, out: r.dataOut };
  };
  const port = parsePacket(tc(tcpPacket({ flags: SYN }), up).out).tcp!.sport;
  const reply = snatReply(port, { syn: true, ack: true });
  t.is(tc(reply, other).retval, TC_ACT_SHOT, 'a reply on another interface is no reply of this flow');
  t.is(dp.counters().stats.drop_snat_iface, 1);
  const back = tc(reply, up);
  t.is(back.retval, TC_ACT_OK);
  t.is(parsePacket(back.out).ip.dst, CLIENT);
  // The reply in fragments: the first is held to the flow's interface as the
  // reply is, the later ones to the interface their first came in on — on
  // both hooks (struct xdp_md: data 0, data_end = length, ingress_ifindex at 12).
  const xdp = (data: Buffer, dev: number): { retval: number; out: Buffer } => {
    const ctx = Buffer.alloc(24);
    ctx.writeUInt32LE(data.length, 4);
    ctx.writeUInt32LE(dev, 12);
    const r = inNetns(ns, () => dp.program('xdp').testRun({ data, ctxIn: ctx }));
    return { retval: r.retval, out: r.dataOut };
  };
  const seg = tcpBytes(backend(1).ip, EDGE, 8080, port, Buffer.alloc(100, 1));
  let drops = 1;
  for (const [hook, send, id] of [['tc', tc, 1], ['xdp', xdp, 2]] as const) {
    const first = frag4(backend(1).ip, EDGE, seg.subarray(0, 48), 0, true, { proto: 6, id });
    const later = frag4(backend(1).ip, EDGE, seg.subarray(48), 48, false, { proto: 6, id });
    t.is(send(first, other).retval, DROP[hook], `${hook}: a first fragment on another interface`);
    t.is(dp.counters().stats.drop_snat_iface, ++drops);
    t.is(parsePacket(send(first, up).out).ip.dst, CLIENT);
    t.is(send(later, other).retval, DROP[hook], `${hook}: a later fragment on another interface than its first`);
    t.is(dp.counters().stats.drop_snat_iface, ++drops);
    const l = send(later, up);
    t.is(l.retval, PASS[hook]);
    t.is(parsePacket(l.out).ip.dst, CLIENT);
  }
  t.is(dp.counters().stats.snat_fragment, 4);
});

test('ICMP errors about a VIP flow pass the service\'s source-range check first: from outside the ranges they are dropped, never steered', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service({ backends: [backend(1), backend(2)], sourceRanges: ['198.51.100.0/24'] })]);
  run(dp, tcpPacket({ flags: SYN, sport: 47000 }));
  const reply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, df: true, id: 99 }, tcp: { sport: 80, dport: 47000, flags: ACK, seq: 1, payload: Buffer.alloc(1400) } });
  const from = (src: string): Buffer => buildPacket({ eth: clientEth, ip: { src, dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: reply }) });
  t.is(run(dp, from('203.0.113.200')).retval, XDP_DROP);
  t.like(dp.counters().stats, { drop_src_range: 1, icmp_steered: 0 });
  t.is(parsePacket(run(dp, from('198.51.100.254')).out).ip.dst.startsWith('10.244.'), true, 'from inside the ranges: steered');
  t.is(dp.counters().stats.icmp_steered, 1);
});

test('packets whose source is a VIP or the edge itself are dropped and counted (new flows and ICMP errors alike)', (t) => {
  const dp = openEdge(t);
  const VIP2 = '203.0.113.11';
  dp.applyServices([service(), service({ service: 'default/two', frontend: { vip: VIP2, port: 443, protocol: 'TCP' } })]);
  for (const src of [VIP, VIP2, EDGE]) {
    t.is(run(dp, tcpPacket({ flags: SYN, src })).retval, XDP_DROP, `SYN from ${src}`);
    t.is(run(dp, tcpPacket({ flags: ACK, src })).retval, XDP_DROP, `ACK from ${src}`);
    t.is(run(dp, udpPacket({ src, dport: 80 })).retval, XDP_PASS, 'no UDP service: not ours');
  }
  const reply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, df: true }, tcp: { sport: 80, dport: 47000, flags: ACK } });
  t.is(run(dp, buildPacket({ eth: clientEth, ip: { src: VIP2, dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: reply }) })).retval, XDP_DROP);
  t.is(dp.counters().stats.drop_bad_source, 7);
  t.is(dp.map('edge_ct').keys().length, 0);
  t.is(run(dp, tcpPacket({ flags: SYN })).retval, XDP_PASS, 'a client is fine');
});

test('a routing hop: forwarded packets leave with TTL − 1; one that arrives with TTL 1 is answered with time-exceeded from the edge', (t) => {
  const dp = openEdge(t);
  dp.applyServices([service(), service({ frontend: { vip: VIP, port: 81, protocol: 'TCP' }, dispatch: 'ipip' })]);
  for (const ttl of [64, 2, 255]) {
    const spec = tcpSpec({ flags: SYN });
    const p = parsePacket(run(dp, buildPacket({ ...spec, ip: { ...spec.ip, ttl } })).out);
    t.is(p.ip.ttl, ttl - 1);
    t.true(verifyIpv4Checksum(p.ipBytes));
  }
  // traceroute -T -p 80: the probe whose TTL runs out here gets the edge's answer.
  for (const dport of [80, 81]) {
    const spec = tcpSpec({ flags: SYN, dport });
    const probe = buildPacket({ ...spec, ip: { ...spec.ip, ttl: 1 } });
    const r = run(dp, probe);
    t.is(r.retval, XDP_TX);
    const expected = buildPacket({
      eth: { src: EDGE_MAC, dst: CLIENT_MAC },
      ip: { src: EDGE, dst: CLIENT, tos: 0xc0, ttl: 64, id: 0 },
      icmp: { type: 11, code: 0, rest: Buffer.alloc(4), payload: probe.subarray(14, 14 + 28) },
    });
    t.is(hex(r.out), hex(expected));
    t.true(verifyL4Checksum(r.out.subarray(14)));
  }
  t.is(dp.counters().stats.ttl_exceeded, 2);
  // TTL 0 (never valid on the wire) is treated the same; nothing with TTL ≤ 1 is forwarded.
  const spec0 = tcpSpec({ flags: ACK });
  t.is(run(dp, buildPacket({ ...spec0, ip: { ...spec0.ip, ttl: 0 } })).retval, XDP_TX);
});

test("the program's coarse clock is the kernel's monotonic one: a SNAT flow's last-seen stamp matches CLOCK_MONOTONIC", (t) => {
  const dp = openEdge(t);
  dp.applyServices([service({ mode: 'snat' })]);
  const before = process.hrtime.bigint() >> 30n;
  t.is(run(dp, tcpPacket({ flags: SYN, sport: 47111 })).retval, XDP_PASS);
  const after = process.hrtime.bigint() >> 30n;
  const rev = dp.map('edge_snat_rev').entries();
  t.is(rev.length, 1);
  // edge_snat_val.last: the edge clock >> 30 (≈ 1.07 s units), at offset 16.
  const last = BigInt(rev[0]![1].readUInt32LE(16));
  t.true(last >= before - 1n && last <= after + 1n, `last ${last}, CLOCK_MONOTONIC >> 30 between ${before} and ${after}`);
});
