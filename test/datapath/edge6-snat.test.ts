// SNAT and hybrid on the edge's IPv6 path (bpf/include/edge_snat6.h)
// through BPF_PROG_TEST_RUN, the packet cases on both hooks (edge_xdp6 and
// edge_tc6, whose checksums go through the skb helpers): exact output bytes against frames built from
// scratch in TypeScript (test/lib/packets6.ts sums every checksum itself,
// verifyL4Checksum6 re-sums the output a second way), the backend named by
// the independent flow hash and Maglev of edge6-helpers, and the edge port
// by an independent model of the port search (first free of eight
// hash-derived probes), so every byte of both directions is predicted.
import test, { type ExecutionContext } from 'ava';
import { TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_TX, inNetns } from '../../src/datapath/loader.js';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';
import type { DesiredService } from '../../src/model/types.js';
import { decodeCtValue, encodeCt6Key, sumPacketsBytes, u32Key } from '../../src/datapath/edge-maps.js';
import type { TcpFlags } from '../lib/packets.js';
import { pinDirFor } from '../lib/bpffs.js';
import { buildPacket6, dsr6Header, fragHeader, ip6Bytes, parse6, verifyL4Checksum6, NH_DSTOPTS } from '../lib/packets6.js';
import { Cleanup, createNetns, nsRun, uniqueId } from '../lib/netns.js';
import { EDGE_MAC, SEC, openEdge, setEdgeClock } from './edge-helpers.js';
import { BE6_ID0, CLIENT6, EDGE6, SVC6_ID, VIP6, apply6, backend6, eth6, flowHash6, maglevPick, service6, tcp6, udp6 } from './edge6-helpers.js';

const LO = 20000;
const HI = 20003;
const THREE = [backend6(1), backend6(2), backend6(3)];
/** The backend's frames arrive from its node's router. */
const BE_ETH = { src: '02:00:00:00:00:09', dst: EDGE_MAC };
const SYN_OPTS = Buffer.from([2, 4, 0x05, 0xa0]); // tcp6's MSS option on a SYN

type Hook = 'xdp' | 'tc';
const hookOf = new WeakMap<EdgeDatapath, Hook>();

/** An edge with only `hook`'s programs loaded (SNAT runs in edge_xdp6 and edge_tc6 alike). */
function openSnat6(t: ExecutionContext, ports = { min: LO, max: HI }, hook: Hook = 'xdp'): EdgeDatapath {
  const dp = openEdge(t, { hooks: [hook], ipv6: true, address6: EDGE6, snatPorts: ports });
  hookOf.set(dp, hook);
  return dp;
}

/** One test run on the edge's hook, tc's verdicts named as XDP's (pass, drop, back out = TX). */
function run(dp: EdgeDatapath, data: Buffer): { retval: number; out: Buffer } {
  const hook = hookOf.get(dp) ?? 'xdp';
  const r = dp.program(hook).testRun({ data });
  if (hook === 'xdp') return { retval: r.retval, out: r.dataOut };
  const as: Record<number, number> = { [TC_ACT_OK]: XDP_PASS, [TC_ACT_SHOT]: XDP_DROP, [TC_ACT_REDIRECT]: XDP_TX };
  return { retval: as[r.retval] ?? -1, out: r.dataOut };
}

/** run(), or null where tc's test run refuses a frame shorter than its fixed IPv6 header. */
function runOrRefused(dp: EdgeDatapath, data: Buffer): { retval: number; out: Buffer } | null {
  try {
    return run(dp, data);
  } catch (e) {
    if (hookOf.get(dp) === 'tc' && data.length < 14 + 40 && (e as { code?: string }).code === 'EINVAL') return null;
    throw e;
  }
}

/** The case once per hook. */
function testBoth(title: string, fn: (t: ExecutionContext, hook: Hook) => void): void {
  for (const hook of ['xdp', 'tc'] as const) test(`${hook}: ${title}`, (t) => fn(t, hook));
}

const hex = (b: Buffer): string => b.toString('hex');

function nonZero(dp: EdgeDatapath): Record<string, number> {
  return Object.fromEntries(Object.entries(dp.counters().stats).filter(([, v]) => v !== 0));
}

/** Probe i of the port search for a flow of `hash` (edge_snat.h's snat_probe), in [lo, hi]. */
function probePort(hash: number, i: number, lo = LO, hi = HI): number {
  return lo + ((hash + i * 0x9e3779b1) % 2 ** 32) % (hi - lo + 1);
}

/** The port the search gives a flow when `taken` ports (of its backend) are held by live flows; null = none of the eight probes is free. */
function firstFree(hash: number, taken: ReadonlySet<number>, lo = LO, hi = HI): number | null {
  for (let i = 0; i < 8; i++) {
    const p = probePort(hash, i, lo, hi);
    if (!taken.has(p)) return p;
  }
  return null;
}

/** The backend's TCP reply to the edge's port. */
function tcpReply(be: string, port: number, o: { flags?: TcpFlags; payload?: Buffer; hopLimit?: number; sport?: number; src?: string; dst?: string; seq?: number } = {}): Buffer {
  return buildPacket6({
    eth: BE_ETH,
    ip: { src: o.src ?? be, dst: o.dst ?? EDGE6, hopLimit: o.hopLimit ?? 64, tclass: 0x10, flowLabel: 0x777 },
    tcp: { sport: o.sport ?? 8080, dport: port, seq: o.seq ?? 5, ack: 1006, flags: o.flags ?? { syn: true, ack: true }, payload: o.payload ?? Buffer.from('hi') },
  });
}

function udpReply(be: string, port: number, o: { payload?: Buffer; checksum?: number; sport?: number } = {}): Buffer {
  return buildPacket6({
    eth: BE_ETH,
    ip: { src: be, dst: EDGE6, hopLimit: 64 },
    udp: { sport: o.sport ?? 5353, dport: port, payload: o.payload ?? Buffer.from('answer'), ...(o.checksum !== undefined ? { checksum: o.checksum } : {}) },
  });
}

testBoth('IPv6 SNAT, TCP: the SYN leaves from the edge\'s IPv6 address and the predicted port to the backend, the reply returns as VIP:port → client; exact bytes both ways', (t, hook) => {
  const dp = openSnat6(t, undefined, hook);
  const d = service6({ mode: 'snat', backends: THREE });
  apply6(dp, d);
  const hash = flowHash6(CLIENT6, VIP6, 40000, 80, 6);
  const k = maglevPick(d, hash);
  const be = d.backends[k]!;
  const port = probePort(hash, 0);
  const syn = tcp6({ payload: Buffer.from('hello'), tclass: 0x28, flowLabel: 0xabcde });
  const r = run(dp, syn);
  t.is(r.retval, XDP_PASS); // FIB bypassed: rewritten and handed to the stack
  const want = buildPacket6({
    eth: eth6,
    ip: { src: EDGE6, dst: be.ip, hopLimit: 63, tclass: 0x28, flowLabel: 0xabcde },
    tcp: { sport: port, dport: 8080, seq: 1000, ack: 0, flags: { syn: true }, options: SYN_OPTS, payload: Buffer.from('hello') },
  });
  t.is(hex(r.out), hex(want));
  t.is(r.out.length, syn.length, 'SNAT adds nothing');
  t.true(verifyL4Checksum6(r.out.subarray(14)));
  // A SNAT flow is remembered from its SYN on, with its port.
  const ct = dp.map('edge_ct6').lookup(encodeCt6Key({ saddr: CLIENT6, daddr: VIP6, sport: 40000, dport: 80, proto: 6 }));
  t.deepEqual(decodeCtValue(ct!), { backendId: BE6_ID0 + k, snatPort: port, flags: 0 });
  // The rest of the flow keeps its port (and its backend).
  const ack = run(dp, tcp6({ flags: { ack: true, psh: true }, payload: Buffer.from('GET /') }));
  t.is(
    hex(ack.out),
    hex(buildPacket6({ eth: eth6, ip: { src: EDGE6, dst: be.ip, hopLimit: 63, flowLabel: 0x12345 }, tcp: { sport: port, dport: 8080, seq: 1000, ack: 2000, flags: { ack: true, psh: true }, payload: Buffer.from('GET /') } })),
  );

  const rev = run(dp, tcpReply(be.ip, port));
  t.is(rev.retval, XDP_PASS);
  const back = buildPacket6({
    eth: BE_ETH,
    ip: { src: VIP6, dst: CLIENT6, hopLimit: 63, tclass: 0x10, flowLabel: 0x777 },
    tcp: { sport: 80, dport: 40000, seq: 5, ack: 1006, flags: { syn: true, ack: true }, payload: Buffer.from('hi') },
  });
  t.is(hex(rev.out), hex(back));
  t.true(verifyL4Checksum6(rev.out.subarray(14)));
  t.deepEqual(nonZero(dp), { fib_bypass: 3, snat_reverse: 1 });
  // The service's counters see both directions.
  t.is(sumPacketsBytes(dp.map('edge_svc_stats').lookup(u32Key(SVC6_ID))!).packets, 3);
});

testBoth('IPv6 SNAT, UDP: datagram and reply exact bytes; a translated checksum of 0 is sent as 0xffff; a reply without a checksum is malformed', (t, hook) => {
  const dp = openSnat6(t, undefined, hook);
  const d = service6({ mode: 'snat', frontend: { vip: VIP6, port: 53, protocol: 'UDP' }, backends: THREE.map((b) => ({ ...b, port: 5353 })) });
  apply6(dp, d);
  const hash = flowHash6(CLIENT6, VIP6, 5353, 53, 17);
  const be = d.backends[maglevPick(d, hash)]!;
  const port = probePort(hash, 0);
  const r = run(dp, udp6());
  t.is(r.retval, XDP_PASS);
  t.is(hex(r.out), hex(buildPacket6({ eth: eth6, ip: { src: EDGE6, dst: be.ip, hopLimit: 63 }, udp: { sport: port, dport: 5353, payload: Buffer.from('hello edge6') } })));
  t.true(verifyL4Checksum6(r.out.subarray(14)));
  const rev = run(dp, udpReply(be.ip, port));
  t.is(hex(rev.out), hex(buildPacket6({ eth: BE_ETH, ip: { src: VIP6, dst: CLIENT6, hopLimit: 63 }, udp: { sport: 53, dport: 5353, payload: Buffer.from('answer') } })));
  t.true(verifyL4Checksum6(rev.out.subarray(14)));

  // A reply whose translation sums to 0: RFC 8200 wants 0xffff (0 means "none", invalid over IPv6).
  // Two payload bytes chosen so that the expected output's checksum is that case.
  let payload: Buffer | null = null;
  for (let x = 0; x < 0x10000 && !payload; x++) {
    const p = Buffer.alloc(2);
    p.writeUInt16BE(x);
    const out = buildPacket6({ eth: false, ip: { src: VIP6, dst: CLIENT6 }, udp: { sport: 53, dport: 5353, payload: p } });
    if (out.readUInt16BE(46) === 0xffff) payload = p;
  }
  t.truthy(payload);
  const zero = run(dp, udpReply(be.ip, port, { payload: payload! }));
  t.is(zero.out.readUInt16BE(14 + 46), 0xffff);
  t.is(hex(zero.out), hex(buildPacket6({ eth: BE_ETH, ip: { src: VIP6, dst: CLIENT6, hopLimit: 63 }, udp: { sport: 53, dport: 5353, payload: payload! } })));
  t.true(verifyL4Checksum6(zero.out.subarray(14)));
  // Checksum 0 (none) is invalid over IPv6: dropped as malformed, never translated.
  t.is(run(dp, udpReply(be.ip, port, { checksum: 0 })).retval, XDP_DROP);
  t.deepEqual(nonZero(dp), { fib_bypass: 3, snat_reverse: 2, drop_malformed: 1 });
});

testBoth('IPv6 SNAT port exhaustion: the range towards one backend is shared by live flows only; beyond it new flows are dropped and counted; ended flows give their ports back', (t, hook) => {
  const dp = openSnat6(t, undefined, hook);
  const d = service6({ mode: 'snat', backends: [backend6(1)] });
  apply6(dp, d);
  const be = d.backends[0]!;
  const t0 = 10_000n * SEC;
  setEdgeClock(dp, t0);
  const client = (i: number): string => `2001:db8:1::${(0x100 + i).toString(16)}`;
  // Four flows take the four ports, each the first free of its probes (the model).
  const taken = new Map<number, number>();
  for (let i = 0; i < 4; i++) {
    const want = firstFree(flowHash6(client(i), VIP6, 40000, 80, 6), new Set(taken.keys()));
    const r = run(dp, tcp6({ src: client(i) }));
    t.is(r.retval, XDP_PASS);
    t.is(r.out.readUInt16BE(54), want ?? -1, `flow ${i}`);
    taken.set(want!, i);
  }
  t.deepEqual([...taken.keys()].sort(), [20000, 20001, 20002, 20003]);
  // The fifth: no port, dropped and counted; the live flows keep theirs.
  t.is(run(dp, tcp6({ src: client(4) })).retval, XDP_DROP);
  t.is(nonZero(dp).drop_snat_ports, 1);
  // Their handshakes complete (the backend's SYN-ACK, the client's ACK): a
  // flow whose handshake never completes holds its port only ≈ 60 s
  // (edge_snat.h: a forged SYN's), not the idle hour.
  for (const [port, i] of taken) {
    run(dp, tcpReply(be.ip, port));
    t.is(run(dp, tcp6({ src: client(i), flags: { ack: true } })).out.readUInt16BE(54), port);
  }
  const portOf = (i: number): number => [...taken].find(([, c]) => c === i)![0];
  // The backend resets flow 1 — with the number the client acknowledged
  // (its ACK said 2000; a RST with another number is ignored, RFC 5961);
  // flows 2 and 3 close with both FINs.
  run(dp, tcpReply(be.ip, portOf(1), { flags: { rst: true } }));
  t.is(nonZero(dp).snat_rst_ignored, 1);
  run(dp, tcpReply(be.ip, portOf(1), { flags: { rst: true }, seq: 2000 }));
  run(dp, tcp6({ src: client(2), flags: { fin: true, ack: true } }));
  run(dp, tcpReply(be.ip, portOf(2), { flags: { fin: true, ack: true } }));
  run(dp, tcp6({ src: client(3), flags: { fin: true, ack: true } }));
  run(dp, tcpReply(be.ip, portOf(3), { flags: { fin: true, ack: true } }));
  // Just ended: nothing is reused yet.
  setEdgeClock(dp, t0 + 2n * SEC);
  t.is(run(dp, tcp6({ src: client(4) })).retval, XDP_DROP);
  // A few seconds after the RST its port is free; the closed ones wait for the backend's TIME_WAIT (≈ 60 s).
  setEdgeClock(dp, t0 + 6n * SEC);
  const r1 = run(dp, tcp6({ src: client(4) }));
  t.is(r1.retval, XDP_PASS);
  t.is(r1.out.readUInt16BE(54), portOf(1));
  run(dp, tcpReply(be.ip, portOf(1)));
  run(dp, tcp6({ src: client(4), flags: { ack: true } })); // its handshake completes: a live connection
  t.is(run(dp, tcp6({ src: client(5) })).retval, XDP_DROP);
  setEdgeClock(dp, t0 + 70n * SEC);
  const got = [run(dp, tcp6({ src: client(5) })), run(dp, tcp6({ src: client(6) }))].map((r) => r.out.readUInt16BE(54));
  t.deepEqual(got.sort(), [portOf(2), portOf(3)].sort());
  t.false(got.includes(portOf(0)), 'a live flow\'s port is never taken');
  t.is(nonZero(dp).snat_reclaimed, 3);
  // The reclaimed port now belongs to its new flow: the backend's reply goes to the new client.
  const rev = run(dp, tcpReply(be.ip, portOf(1), { flags: { ack: true } }));
  t.is(parse6(rev.out.subarray(14)).dst, '2001:db8:1:0:0:0:0:104');
  // The reset flow coming back (its connection-table entry still names that
  // port, of the same client port) does not share it: it needs a new one,
  // and the range is full.
  t.is(run(dp, tcp6({ src: client(1), flags: { ack: true } })).retval, XDP_DROP);
  t.is(nonZero(dp).drop_snat_ports, 4);
  t.is(parse6(run(dp, tcpReply(be.ip, portOf(1), { flags: { ack: true } })).out.subarray(14)).dst, '2001:db8:1:0:0:0:0:104');
});

testBoth('IPv6 SNAT: Packet Too Big about either leg is translated for the other leg\'s receiver (exact bytes, the quoted checksum left alone); nothing for a flow this edge does not hold', (t, hook) => {
  const dp = openSnat6(t, undefined, hook);
  const d = service6({ mode: 'snat', backends: THREE });
  apply6(dp, d);
  const hash = flowHash6(CLIENT6, VIP6, 40000, 80, 6);
  const be = d.backends[maglevPick(d, hash)]!;
  const port = probePort(hash, 0);
  run(dp, tcp6());
  const ROUTER = '2001:db8:ff::1';
  const QUOTE = 40 + 20 + 32;
  const segment = (src: string, sport: number, dst: string, dport: number, hopLimit: number): Buffer =>
    buildPacket6({ eth: false, ip: { src, dst, hopLimit }, tcp: { sport, dport, seq: 1000, ack: 2000, flags: { ack: true }, payload: Buffer.alloc(1400, 9) } }).subarray(0, QUOTE);
  /** `quote` as the receiver must see it: other addresses and ports, the L4 checksum as it was in `was`. */
  const requote = (quote: Buffer, was: Buffer): Buffer => {
    const q = Buffer.from(quote);
    was.copy(q, 40 + 16, 40 + 16, 40 + 18);
    return q;
  };
  const ptb = (eth: typeof BE_ETH, src: string, dst: string, quote: Buffer, hopLimit = 62): Buffer =>
    buildPacket6({ eth, ip: { src, dst, hopLimit }, icmp6: { type: 2, body: Buffer.concat([Buffer.from('00000500', 'hex'), quote]) } });

  // Backend leg: the client's segment as the edge sent it does not fit a
  // link between edge and backend. The client hears it about its own
  // segment, from the VIP.
  const sent = segment(EDGE6, port, be.ip, 8080, 62);
  const toClient = run(dp, ptb(BE_ETH, ROUTER, EDGE6, sent));
  t.is(toClient.retval, XDP_PASS);
  t.is(hex(toClient.out), hex(ptb(BE_ETH, VIP6, CLIENT6, requote(segment(CLIENT6, 40000, VIP6, 80, 62), sent), 61)));
  t.true(verifyL4Checksum6(toClient.out.subarray(14)), 'ICMPv6 checksum (pseudo-header included)');

  // Client leg: the backend's reply as the edge sent it (from the VIP) does
  // not fit a link towards the client. The backend hears it about its own
  // reply, from the edge's address.
  const reply = segment(VIP6, 80, CLIENT6, 40000, 60);
  const toBackend = run(dp, ptb(eth6, ROUTER, VIP6, reply));
  t.is(toBackend.retval, XDP_PASS);
  t.is(hex(toBackend.out), hex(ptb(eth6, EDGE6, be.ip, requote(segment(be.ip, 8080, EDGE6, port, 60), reply), 61)));
  t.true(verifyL4Checksum6(toBackend.out.subarray(14)));
  t.deepEqual(nonZero(dp), { fib_bypass: 3, snat_icmp: 2 });

  // No flow of this edge: another edge port, another client's reply, a
  // quote not from the address the error went to — untouched.
  const other = port === LO ? LO + 1 : LO;
  for (const f of [
    ptb(BE_ETH, ROUTER, EDGE6, segment(EDGE6, other, be.ip, 8080, 62)),
    ptb(eth6, ROUTER, VIP6, segment(VIP6, 80, CLIENT6, 40001, 60)),
    ptb(BE_ETH, ROUTER, EDGE6, segment('2001:db8::99', port, be.ip, 8080, 62)),
  ]) {
    const o = run(dp, f);
    t.is(o.retval, XDP_PASS);
    t.is(hex(o.out), hex(f));
  }
  t.deepEqual(nonZero(dp), { fib_bypass: 3, snat_icmp: 2, icmp_not_steered: 1 });
  // Out of hops: dropped, no error about an error.
  t.is(run(dp, ptb(BE_ETH, ROUTER, EDGE6, sent, 1)).retval, XDP_DROP);
  t.is(nonZero(dp).drop_ttl, 1);
});

testBoth('IPv6 hybrid: TCP goes DSR (the Destination Options header, the client\'s address), UDP goes SNAT (the edge\'s address)', (t, hook) => {
  const dp = openSnat6(t, undefined, hook);
  const tcp = service6({ mode: 'hybrid', backends: THREE });
  const udp = service6({ service: 'default/web6-udp', mode: 'hybrid', frontend: { vip: VIP6, port: 80, protocol: 'UDP' }, backends: THREE });
  apply6(dp, tcp);
  apply6(dp, udp, { svcId: 3001, ringOff: 65536 - 32768, backendIds: [3010, 3011, 3012] });
  const th = flowHash6(CLIENT6, VIP6, 40000, 80, 6);
  const r = run(dp, tcp6());
  const want = buildPacket6({
    eth: eth6,
    ip: { src: CLIENT6, dst: tcp.backends[maglevPick(tcp, th)]!.ip, hopLimit: 63, flowLabel: 0x12345 },
    ext: [dsr6Header(VIP6, 80)],
    tcp: { sport: 40000, dport: 8080, seq: 1000, ack: 0, flags: { syn: true }, options: SYN_OPTS, payload: Buffer.alloc(0) },
  });
  t.is(hex(r.out), hex(want));
  t.deepEqual(parse6(r.out.subarray(14)).chain, [NH_DSTOPTS, 6]);
  const uh = flowHash6(CLIENT6, VIP6, 5353, 80, 17);
  const u = run(dp, udp6({ dport: 80 }));
  t.is(hex(u.out), hex(buildPacket6({ eth: eth6, ip: { src: EDGE6, dst: udp.backends[maglevPick(udp, uh)]!.ip, hopLimit: 63 }, udp: { sport: probePort(uh, 0), dport: 8080, payload: Buffer.from('hello edge6') } })));
  t.true(verifyL4Checksum6(u.out.subarray(14)));
  t.deepEqual(nonZero(dp), { fib_bypass: 2 });
});

testBoth('IPv6 SNAT: replies that match no flow are never translated — wrong backend, port, protocol, address, or a port outside the range pass untouched', (t, hook) => {
  const dp = openSnat6(t, { min: LO, max: LO + 63 }, hook);
  const d = service6({ mode: 'snat', backends: THREE });
  apply6(dp, d);
  const hash = flowHash6(CLIENT6, VIP6, 40000, 80, 6);
  const be = d.backends[maglevPick(d, hash)]!;
  const other = d.backends.find((b) => b.ip !== be.ip)!;
  const port = probePort(hash, 0, LO, LO + 63);
  // Before any flow: a "reply" to a SNAT port is just a packet to the edge.
  const early = tcpReply(be.ip, port);
  t.is(hex(run(dp, early).out), hex(early));
  run(dp, tcp6());
  const free = port === LO ? LO + 1 : LO;
  const forged = [
    tcpReply(other.ip, port), // another backend
    tcpReply('2001:db8:666::1', port), // an outsider
    tcpReply(be.ip, port, { sport: 8081 }), // another backend port
    tcpReply(be.ip, free), // a port of the range no flow holds
    tcpReply(be.ip, port, { dst: '2001:db8::2' }), // not to the edge's address
    tcpReply(be.ip, LO - 1), // outside the range
    udpReply(be.ip, port, { sport: 8080 }), // UDP on the TCP flow's key
    tcpReply(be.ip, port, { dst: VIP6 }), // to the VIP (no such service port): not a reply at all
  ];
  for (const f of forged) {
    const r = run(dp, f);
    t.is(r.retval, XDP_PASS);
    t.is(hex(r.out), hex(f));
  }
  t.deepEqual(nonZero(dp), { fib_bypass: 1 });
  // The right key with a TCP header that contradicts the payload length: dropped, not translated.
  const bad = tcpReply(be.ip, port);
  bad[14 + 40 + 12] = 0xf0; // data offset 60 > segment
  t.is(run(dp, bad).retval, XDP_DROP);
  t.is(nonZero(dp).drop_malformed, 1);
  // A reply out of hops is dropped (no error about it); a client's packet out of hops gets Time Exceeded.
  t.is(run(dp, tcpReply(be.ip, port, { hopLimit: 1 })).retval, XDP_DROP);
  t.is(nonZero(dp).drop_ttl, 1);
  t.is(nonZero(dp).snat_reverse, undefined);
});

testBoth('IPv6 SNAT: a new flow from the edge\'s own address or a VIP is a forgery; without an edge IPv6 address SNAT is not served', (t, hook) => {
  const dp = openSnat6(t, undefined, hook);
  apply6(dp, service6({ mode: 'snat', backends: THREE }));
  t.is(run(dp, tcp6({ src: EDGE6 })).retval, XDP_DROP);
  t.is(run(dp, tcp6({ src: VIP6 })).retval, XDP_DROP);
  t.deepEqual(nonZero(dp), { drop_bad_source: 2 });
  dp.map('edge_config6').update(u32Key(0), Buffer.alloc(16));
  t.is(run(dp, tcp6()).retval, XDP_DROP);
  t.is(nonZero(dp).drop_unsupported6, 1);
  // …and nothing to the (absent) address is taken for a reply.
  const f = tcpReply(backend6(1).ip, LO, { dst: '::' });
  t.is(hex(run(dp, f).out), hex(f));
});

testBoth('IPv6 SNAT: truncation at every length of the SYN, the datagram and both replies — never translated malformed; Ethernet padding is not part of the packet', (t, hook) => {
  const dp = openSnat6(t, undefined, hook);
  const d = service6({ mode: 'snat', backends: [backend6(1)] });
  const du = service6({ service: 'default/dns6', mode: 'snat', frontend: { vip: VIP6, port: 53, protocol: 'UDP' }, backends: [backend6(1, { port: 5353 })] });
  apply6(dp, d);
  apply6(dp, du, { svcId: 3001, ringOff: 65536 - 32768, backendIds: [3010] });
  const be = d.backends[0]!;
  const tp = probePort(flowHash6(CLIENT6, VIP6, 40000, 80, 6), 0);
  const up = probePort(flowHash6(CLIENT6, VIP6, 5353, 53, 17), 0);
  const syn = tcp6({ payload: Buffer.from('abcdefgh') });
  const dgram = udp6({ dport: 53 });
  t.is(run(dp, syn).out.readUInt16BE(54), tp);
  t.is(run(dp, dgram).out.readUInt16BE(54), up);
  const before = dp.counters().stats;
  for (const full of [syn, dgram, tcpReply(be.ip, tp), udpReply(be.ip, up)]) {
    for (let len = 14; len < full.length; len++) {
      const cut = full.subarray(0, len);
      const r = runOrRefused(dp, cut);
      if (!r) continue;
      t.true(r.retval === XDP_DROP || (r.retval === XDP_PASS && r.out.equals(cut)), `length ${len}: ${r.retval}`);
    }
  }
  t.deepEqual(dp.counters().stats, before, 'no truncated frame was translated or counted');
  // Trailing bytes after the packet (Ethernet padding): translated as the packet claims, checksum right.
  for (const f of [tcpReply(be.ip, tp), udpReply(be.ip, up)]) {
    const r = run(dp, Buffer.concat([f, Buffer.alloc(6, 0xee)]));
    t.is(r.retval, XDP_PASS);
    t.is(parse6(r.out.subarray(14)).dst, '2001:db8:1:0:0:0:0:7');
    t.true(verifyL4Checksum6(r.out.subarray(14, 14 + 40 + r.out.readUInt16BE(18))));
  }
});

// ---------------------------------------------------------------- fragments (edge_snat_frag6.h)

/** An IPv6 fragment from the backend's router: Fragment header right behind the fixed header, `l4` the fragment's bytes of the TCP/UDP datagram, `at` their byte offset in it. */
function frag6(src: string, dst: string, l4: Buffer, at: number, more: boolean, o: { id?: number; nh?: number; hopLimit?: number } = {}): Buffer {
  return buildPacket6({
    eth: BE_ETH,
    ip: { src, dst, hopLimit: o.hopLimit ?? 64, tclass: 0x10, flowLabel: 0x777 },
    ext: [fragHeader(at / 8, more, o.id ?? 0x5eed)],
    raw: { nh: o.nh ?? 17, bytes: l4 },
  });
}

/** The datagram the client reassembles from forwarded fragments (bare packets, in any order): the unfragmented packet, for verifyL4Checksum6. */
function reassembled(frags: Buffer[]): Buffer {
  const parts = frags.map((f) => ({ at: f.readUInt16BE(40 + 2) & 0xfff8, bytes: f.subarray(48, 40 + f.readUInt16BE(4)) })).sort((a, b) => a.at - b.at);
  const l4 = Buffer.concat(parts.map((p) => p.bytes));
  const ip = Buffer.from(frags[0]!.subarray(0, 40));
  ip.writeUInt16BE(l4.length, 4);
  ip[6] = frags[0]![40]!;
  return Buffer.concat([ip, l4]);
}

/** A UDP datagram's bytes (header and payload, checksum over the pseudo-header of src → dst). */
function udpBytes(src: string, dst: string, sport: number, dport: number, payload: Buffer, checksum?: number): Buffer {
  return buildPacket6({ eth: false, ip: { src, dst }, udp: { sport, dport, payload, ...(checksum !== undefined ? { checksum } : {}) } }).subarray(40);
}

function tcpBytes(src: string, dst: string, sport: number, dport: number, payload: Buffer): Buffer {
  return buildPacket6({ eth: false, ip: { src, dst }, tcp: { sport, dport, seq: 5, ack: 1006, flags: { ack: true, psh: true }, payload } }).subarray(40);
}

const ANSWER = Buffer.from(Array.from({ length: 1200 }, (_, i) => (i * 7) & 255));

/** An edge with the DNS service (VIP6:53/UDP → backend 1 :5353) and the web one (VIP6:80/TCP → backend 1 :8080), and one flow of CLIENT6 on each: their edge ports. */
function fragEdge(t: ExecutionContext, hook: Hook): { dp: EdgeDatapath; be: string; up: number; tp: number } {
  const dp = openSnat6(t, undefined, hook);
  const du = service6({ service: 'default/dns6', mode: 'snat', frontend: { vip: VIP6, port: 53, protocol: 'UDP' }, backends: [backend6(1, { port: 5353 })] });
  apply6(dp, du);
  apply6(dp, service6({ mode: 'snat', backends: [backend6(1)] }), { svcId: 3001, ringOff: 65536 - 32768, backendIds: [3010] });
  setEdgeClock(dp, 10_000n * SEC);
  const up = run(dp, udp6({ dport: 53 })).out.readUInt16BE(54);
  const tp = run(dp, tcp6()).out.readUInt16BE(54);
  t.is(up, probePort(flowHash6(CLIENT6, VIP6, 5353, 53, 17), 0));
  t.is(tp, probePort(flowHash6(CLIENT6, VIP6, 40000, 80, 6), 0));
  return { dp, be: du.backends[0]!.ip, up, tp };
}

testBoth('IPv6 SNAT: a backend\'s fragmented reply reaches the client fragment by fragment, rewritten as the whole reply would be — exact bytes, Fragment header kept, the first fragment\'s checksum right for the whole datagram; a later fragment before its first passes untouched', (t, hook) => {
  const { dp, be, up, tp } = fragEdge(t, hook);
  // UDP: a 1 200-byte answer, as the backend sent it and as the client must reassemble it.
  const sent = udpBytes(be, EDGE6, 5353, up, ANSWER);
  const wanted = udpBytes(VIP6, CLIENT6, 53, 5353, ANSWER);
  const first = frag6(be, EDGE6, sent.subarray(0, 608), 0, true);
  const second = frag6(be, EDGE6, sent.subarray(608), 608, false);
  const early = run(dp, second);
  t.is(early.retval, XDP_PASS);
  t.is(hex(early.out), hex(second), 'a later fragment before its first: to the stack, untouched');
  const r1 = run(dp, first);
  t.is(r1.retval, XDP_PASS); // FIB bypassed: rewritten and handed to the stack
  t.is(hex(r1.out), hex(frag6(VIP6, CLIENT6, wanted.subarray(0, 608), 0, true, { hopLimit: 63 })), 'the first: addresses, ports, the whole datagram\'s UDP checksum');
  const r2 = run(dp, second);
  t.is(r2.retval, XDP_PASS);
  t.is(hex(r2.out), hex(frag6(VIP6, CLIENT6, wanted.subarray(608), 608, false, { hopLimit: 63 })), 'the later one: addresses');
  t.true(verifyL4Checksum6(reassembled([r2.out.subarray(14), r1.out.subarray(14)])), 'the client\'s reassembly checks out');
  // TCP: the first fragment carries the whole header and 28 bytes of data.
  const seg = tcpBytes(be, EDGE6, 8080, tp, ANSWER.subarray(0, 300));
  const segWanted = tcpBytes(VIP6, CLIENT6, 80, 40000, ANSWER.subarray(0, 300));
  const outs = [frag6(be, EDGE6, seg.subarray(0, 48), 0, true, { nh: 6, id: 7 }), frag6(be, EDGE6, seg.subarray(48, 200), 48, true, { nh: 6, id: 7 }), frag6(be, EDGE6, seg.subarray(200), 200, false, { nh: 6, id: 7 })].map((f) => run(dp, f).out);
  t.is(hex(outs[0]!), hex(frag6(VIP6, CLIENT6, segWanted.subarray(0, 48), 0, true, { nh: 6, id: 7, hopLimit: 63 })));
  t.is(hex(outs[1]!), hex(frag6(VIP6, CLIENT6, segWanted.subarray(48, 200), 48, true, { nh: 6, id: 7, hopLimit: 63 })));
  t.is(hex(outs[2]!), hex(frag6(VIP6, CLIENT6, segWanted.subarray(200), 200, false, { nh: 6, id: 7, hopLimit: 63 })));
  t.true(verifyL4Checksum6(reassembled(outs.map((o) => o.subarray(14)))));
  t.deepEqual(nonZero(dp), { fib_bypass: 7, snat_fragment: 5 });
});

testBoth('IPv6 SNAT fragments, hostile: tiny and malformed first fragments, later fragments overlapping the TCP header, a repeated first — never translated wrongly; what names no flow passes untouched', (t, hook) => {
  const { dp, be, up, tp } = fragEdge(t, hook);
  const seg = tcpBytes(be, EDGE6, 8080, tp, ANSWER.subarray(0, 300));
  const segWanted = tcpBytes(VIP6, CLIENT6, 80, 40000, ANSWER.subarray(0, 300));
  const T = { nh: 6, id: 0x1001 };
  // A tiny first fragment: the ports, not the whole TCP header (RFC 1858's
  // flags in the next fragment). It names the flow: dropped, and its later
  // fragments have nothing to follow.
  t.is(run(dp, frag6(be, EDGE6, seg.subarray(0, 8), 0, true, T)).retval, XDP_DROP);
  t.is(nonZero(dp).drop_malformed, 1);
  const rest = frag6(be, EDGE6, seg.subarray(8), 8, false, T);
  t.is(hex(run(dp, rest).out), hex(rest));
  // Tinier: not even the ports — nothing to match, untouched.
  for (const n of [0, 2]) {
    const f = frag6(be, EDGE6, seg.subarray(0, n), 0, true, T);
    t.is(hex(run(dp, f).out), hex(f), `${n} bytes`);
  }
  // UDP first fragments that cannot be a datagram's first: a UDP length that
  // does not reach past the fragment, a length not a multiple of 8, no
  // checksum (invalid over IPv6).
  const sent = udpBytes(be, EDGE6, 5353, up, ANSWER);
  const short = Buffer.from(sent.subarray(0, 608));
  short.writeUInt16BE(600, 4);
  for (const bad of [short, sent.subarray(0, 604), udpBytes(be, EDGE6, 5353, up, ANSWER, 0).subarray(0, 608)]) {
    t.is(run(dp, frag6(be, EDGE6, bad, 0, true, { id: 0x1002 })).retval, XDP_DROP);
  }
  t.is(nonZero(dp).drop_malformed, 4);
  const later = frag6(be, EDGE6, sent.subarray(608), 608, false, { id: 0x1002 });
  t.is(hex(run(dp, later).out), hex(later), 'no first was translated: the later one passes');
  // A good first, then later fragments that overlap the TCP header the first
  // one's translation wrote (offsets 8 and 16): dropped; beyond it, translated.
  const first = run(dp, frag6(be, EDGE6, seg.subarray(0, 48), 0, true, T));
  t.is(hex(first.out), hex(frag6(VIP6, CLIENT6, segWanted.subarray(0, 48), 0, true, { ...T, hopLimit: 63 })));
  for (const at of [8, 16]) t.is(run(dp, frag6(be, EDGE6, seg.subarray(at, at + 40), at, true, T)).retval, XDP_DROP, `offset ${at}`);
  t.is(nonZero(dp).drop_malformed, 6);
  // A repeated first fragment of the same flow (an overlap the client will
  // judge) is translated as the first was; a tiny one is dropped; one whose
  // ports name no flow passes untouched — the later fragments still follow the flow.
  t.is(hex(run(dp, frag6(be, EDGE6, seg.subarray(0, 48), 0, true, T)).out), hex(first.out));
  t.is(run(dp, frag6(be, EDGE6, seg.subarray(0, 8), 0, true, T)).retval, XDP_DROP);
  const stranger = Buffer.from(seg.subarray(0, 48));
  stranger.writeUInt16BE(tp === LO ? LO + 1 : LO, 2);
  const sf = frag6(be, EDGE6, stranger, 0, true, T);
  t.is(hex(run(dp, sf).out), hex(sf));
  const last = run(dp, frag6(be, EDGE6, seg.subarray(48), 48, false, T));
  t.is(hex(last.out), hex(frag6(VIP6, CLIENT6, segWanted.subarray(48), 48, false, { ...T, hopLimit: 63 })));
  t.true(verifyL4Checksum6(reassembled([first.out.subarray(14), last.out.subarray(14)])));
  // Out of hops: dropped, as a reply would be.
  t.is(run(dp, frag6(be, EDGE6, seg.subarray(0, 48), 0, true, { ...T, hopLimit: 1 })).retval, XDP_DROP);
  t.is(run(dp, frag6(be, EDGE6, seg.subarray(48), 48, false, { ...T, hopLimit: 1 })).retval, XDP_DROP);
  t.deepEqual(nonZero(dp), { fib_bypass: 5, snat_fragment: 3, drop_malformed: 7, drop_ttl: 2 });
});

testBoth('IPv6 SNAT fragments: an id reused by another flow makes its later fragments pass until it expires; atomic fragments are translated whole and remembered nowhere; fragments of other traffic, other backends, other protocols or out of time pass untouched', (t, hook) => {
  const { dp, be, up } = fragEdge(t, hook);
  const other = '2001:db8:1::99';
  const op = run(dp, udp6({ src: other, dport: 53 })).out.readUInt16BE(54);
  t.not(op, up);
  const X = { id: 0xabcd };
  const sentA = udpBytes(be, EDGE6, 5353, up, ANSWER);
  const sentB = udpBytes(be, EDGE6, 5353, op, ANSWER);
  const wantA = udpBytes(VIP6, CLIENT6, 53, 5353, ANSWER);
  const wantB = udpBytes(VIP6, other, 53, 5353, ANSWER);
  const laterA = frag6(be, EDGE6, sentA.subarray(608), 608, false, X);
  // Flow A's first fragment, then flow B's with the same id: each first is its
  // own flow's, but the later fragments could be either's — they pass.
  t.is(hex(run(dp, frag6(be, EDGE6, sentA.subarray(0, 608), 0, true, X)).out), hex(frag6(VIP6, CLIENT6, wantA.subarray(0, 608), 0, true, { ...X, hopLimit: 63 })));
  t.is(hex(run(dp, frag6(be, EDGE6, sentB.subarray(0, 608), 0, true, X)).out), hex(frag6(VIP6, other, wantB.subarray(0, 608), 0, true, { ...X, hopLimit: 63 })));
  t.is(hex(run(dp, laterA).out), hex(laterA), 'ambiguous: untouched');
  // Flow A's first again within the 2 s: still ambiguous.
  setEdgeClock(dp, 10_001n * SEC);
  run(dp, frag6(be, EDGE6, sentA.subarray(0, 608), 0, true, X));
  t.is(hex(run(dp, laterA).out), hex(laterA));
  // 2 s after the last first fragment with that id, a new first arms it again.
  setEdgeClock(dp, 10_003n * SEC + 1n);
  run(dp, frag6(be, EDGE6, sentB.subarray(0, 608), 0, true, X));
  const laterB = frag6(be, EDGE6, sentB.subarray(608), 608, false, X);
  t.is(hex(run(dp, laterB).out), hex(frag6(VIP6, other, wantB.subarray(608), 608, false, { ...X, hopLimit: 63 })));
  // …only for 2 s.
  setEdgeClock(dp, 10_005n * SEC + 2n);
  t.is(hex(run(dp, laterB).out), hex(laterB), 'expired: untouched');
  t.is(nonZero(dp).snat_fragment, 5);

  // An atomic fragment (offset 0, M clear) is a whole datagram: translated as
  // the reply would be, its Fragment header kept, and its id armed for nothing.
  const small = udpBytes(be, EDGE6, 5353, up, Buffer.from('answer'));
  const atomic = run(dp, frag6(be, EDGE6, small, 0, false, { id: 0x77 }));
  t.is(hex(atomic.out), hex(frag6(VIP6, CLIENT6, udpBytes(VIP6, CLIENT6, 53, 5353, Buffer.from('answer')), 0, false, { id: 0x77, hopLimit: 63 })));
  t.true(verifyL4Checksum6(atomic.out.subarray(14)));
  const after = frag6(be, EDGE6, sentA.subarray(608), 608, false, { id: 0x77 });
  t.is(hex(run(dp, after).out), hex(after), 'an atomic fragment arms no id');
  // …and one that claims less than its UDP length is malformed, as the reply would be.
  t.is(run(dp, frag6(be, EDGE6, sentA.subarray(0, 608), 0, false, { id: 0x78 })).retval, XDP_DROP);
  t.is(nonZero(dp).snat_fragment, 6);
  t.is(nonZero(dp).drop_malformed, 1);

  // An armed id, and fragments that only look like its: another backend,
  // another protocol, another destination. And fragments of other traffic:
  // outside the SNAT range, to an address that is neither the edge's nor a
  // VIP's — untouched; to a VIP — dropped as ever.
  const Y = { id: 0x4242 };
  run(dp, frag6(be, EDGE6, sentA.subarray(0, 608), 0, true, Y));
  const outside = Buffer.from(sentA.subarray(0, 608));
  outside.writeUInt16BE(HI + 1, 2);
  for (const f of [
    frag6(backend6(2).ip, EDGE6, sentA.subarray(608), 608, false, Y),
    frag6(be, EDGE6, sentA.subarray(608), 608, false, { ...Y, nh: 6 }),
    frag6(be, '2001:db8::2', sentA.subarray(608), 608, false, Y),
    frag6(be, EDGE6, outside, 0, true, Y),
    frag6(be, '2001:db8::2', sentA.subarray(0, 608), 0, true, { id: 0x4343 }),
    frag6(be, EDGE6, sentA.subarray(0, 608), 0, true, { id: 0x4343, nh: 59 }),
  ]) {
    const r = run(dp, f);
    t.is(r.retval, XDP_PASS);
    t.is(hex(r.out), hex(f));
  }
  t.is(run(dp, frag6(be, VIP6, sentA.subarray(608), 608, false, Y)).retval, XDP_DROP);
  t.is(nonZero(dp).drop_fragment, 1);
  t.is(hex(run(dp, frag6(be, EDGE6, sentA.subarray(608), 608, false, Y)).out), hex(frag6(VIP6, CLIENT6, wantA.subarray(608), 608, false, { ...Y, hopLimit: 63 })));
  t.is(nonZero(dp).snat_fragment, 8);
});

test('IPv6 SNAT replies are accepted only on the interface their flow came in on', async (t) => {
  const cleanup = new Cleanup();
  t.teardown(async () => {
    await cleanup.run();
  });
  const ns = await createNetns(`edgelb-snat6if-${uniqueId()}`, cleanup);
  for (const dev of ['up', 'other']) {
    await nsRun(ns, ['ip', 'link', 'add', `${dev}0`, 'type', 'veth', 'peer', 'name', `${dev}1`]);
    await nsRun(ns, ['ip', 'link', 'set', `${dev}0`, 'up']);
  }
  const ifindex = async (dev: string): Promise<number> => (JSON.parse((await nsRun(ns, ['ip', '-j', 'link', 'show', dev])).stdout) as { ifindex: number }[])[0]!.ifindex;
  const up = await ifindex('up0');
  const other = await ifindex('other0');
  const dp = openSnat6(t);
  const d = service6({ mode: 'snat', backends: [backend6(1)] });
  apply6(dp, d);
  // struct xdp_md: data 0, data_end = length, data_meta 0, ingress_ifindex, rx_queue_index 0.
  const on = (data: Buffer, dev: number): { retval: number; out: Buffer } => {
    const ctx = Buffer.alloc(24);
    ctx.writeUInt32LE(data.length, 4);
    ctx.writeUInt32LE(dev, 12);
    const r = inNetns(ns, () => dp.program('xdp').testRun({ data, ctxIn: ctx }));
    return { retval: r.retval, out: r.dataOut };
  };
  const port = on(tcp6(), up).out.readUInt16BE(54);
  const reply = tcpReply(d.backends[0]!.ip, port);
  t.is(on(reply, other).retval, XDP_DROP, 'a reply on another interface is no reply of this flow');
  t.is(nonZero(dp).drop_snat_iface, 1);
  const back = on(reply, up);
  t.is(back.retval, XDP_PASS);
  t.is(parse6(back.out.subarray(14)).dst, '2001:db8:1:0:0:0:0:7');
  // The reply in fragments: the first is held to the flow's interface as the
  // reply is, the later ones to the interface their first came in on.
  const seg = tcpBytes(d.backends[0]!.ip, EDGE6, 8080, port, Buffer.alloc(100, 1));
  const first = frag6(d.backends[0]!.ip, EDGE6, seg.subarray(0, 48), 0, true, { nh: 6 });
  const later = frag6(d.backends[0]!.ip, EDGE6, seg.subarray(48), 48, false, { nh: 6 });
  t.is(on(first, other).retval, XDP_DROP);
  t.is(nonZero(dp).drop_snat_iface, 2);
  t.is(parse6(on(first, up).out.subarray(14)).dst, '2001:db8:1:0:0:0:0:7');
  t.is(on(later, other).retval, XDP_DROP);
  t.is(nonZero(dp).drop_snat_iface, 3);
  const l = on(later, up);
  t.is(l.retval, XDP_PASS);
  t.is(parse6(l.out.subarray(14)).dst, '2001:db8:1:0:0:0:0:7');
  t.is(nonZero(dp).snat_fragment, 2);
});

test('through the planner: IPv6 snat and hybrid frontends are accepted, programmed and listed; a restart adopts them and keeps the flows\' ports', (t) => {
  const pin = pinDirFor(t, 'edge6-snat');
  const open = () => openEdge(t, { hooks: ['xdp'], ipv6: true, address6: EDGE6, snatPorts: { min: LO, max: HI }, pinPath: pin });
  const first = open();
  const snat: DesiredService = service6({ mode: 'snat', backends: THREE });
  const hybridTcp = service6({ service: 'default/hy6', mode: 'hybrid', frontend: { vip: VIP6, port: 443, protocol: 'TCP' }, backends: THREE });
  const hybridUdp = service6({ service: 'default/hy6', mode: 'hybrid', frontend: { vip: VIP6, port: 443, protocol: 'UDP' }, backends: THREE });
  const r = first.applyServices([snat, hybridTcp, hybridUdp]);
  t.deepEqual(r, { added: 3, updated: 0, removed: 0, unchanged: 0 });
  const listed = [...first.frontends()].map((f) => [f.key, f.mode, f.snat]).sort();
  t.deepEqual(listed, [
    [`[${VIP6}]:443/TCP`, 'hybrid', false],
    [`[${VIP6}]:443/UDP`, 'hybrid', true],
    [`[${VIP6}]:80/TCP`, 'snat', true],
  ]);
  const hash = flowHash6(CLIENT6, VIP6, 40000, 80, 6);
  const be = snat.backends[maglevPick(snat, hash)]!;
  const out = run(first, tcp6());
  t.is(parse6(out.out.subarray(14)).src, '2001:db8:0:0:0:0:0:1');
  t.is(hex(out.out.subarray(38, 54)), hex(ip6Bytes(be.ip)));
  const port = out.out.readUInt16BE(54);
  t.is(port, probePort(hash, 0));
  t.is(run(first, tcp6({ dport: 443 })).out[20], NH_DSTOPTS, 'hybrid TCP: DSR');
  t.is(parse6(run(first, udp6({ dport: 443 })).out.subarray(14)).src, '2001:db8:0:0:0:0:0:1', 'hybrid UDP: SNAT');
  first.close();
  // Restart on the pinned maps: the frontends are adopted (the maps keep the SNAT flag) and the flow keeps its port.
  const second = open();
  t.deepEqual([...second.frontends()].map((f) => [f.key, f.snat]).sort(), [
    [`[${VIP6}]:443/TCP`, false],
    [`[${VIP6}]:443/UDP`, true],
    [`[${VIP6}]:80/TCP`, true],
  ]);
  t.is(run(second, tcp6({ flags: { ack: true } })).out.readUInt16BE(54), port);
  t.is(parse6(run(second, tcpReply(be.ip, port, { flags: { ack: true } })).out.subarray(14)).dst, '2001:db8:1:0:0:0:0:7');
  const again = second.applyServices([snat, hybridTcp, hybridUdp]);
  t.is(again.added, 0);
  t.is(again.updated + again.unchanged, 3);
  t.is([...second.frontends()].find((f) => f.key === `[${VIP6}]:80/TCP`)?.mode, 'snat');
});

testBoth('IPv6 SNAT after a backend change: a TCP segment of a flow this edge has not seen is SNATed to its backend in the new table — no second chance for SNAT flows (as for IPv4: the backend holds the edge\'s port, not the client\'s tuple)', (t, hook) => {
  const dp = openSnat6(t, { min: LO, max: LO + 255 }, hook);
  const before = service6({ mode: 'snat', backends: THREE });
  const after = service6({ mode: 'snat', backends: [...THREE, backend6(4), backend6(5)] });
  dp.applyServices([before]);
  dp.applyServices([after]);
  // Flows whose Maglev slot moved with the change: a DSR service would try their previous backend first.
  const moved = Array.from({ length: 400 }, (_, i) => 42000 + i).filter((sport) => {
    const h = flowHash6(CLIENT6, VIP6, sport, 80, 6);
    return before.backends[maglevPick(before, h)]!.ip !== after.backends[maglevPick(after, h)]!.ip;
  });
  t.true(moved.length >= 20, `${moved.length} moved flows`);
  for (const sport of moved.slice(0, 20)) {
    const h = flowHash6(CLIENT6, VIP6, sport, 80, 6);
    const r = run(dp, tcp6({ sport, flags: { ack: true }, payload: Buffer.from('x') }));
    t.is(r.retval, XDP_PASS);
    const p = parse6(r.out.subarray(14));
    t.deepEqual(p.chain, [6], 'no header: SNAT, not a DSR dispatch');
    t.is(p.src, '2001:db8:0:0:0:0:0:1');
    t.is(hex(r.out.subarray(38, 54)), hex(ip6Bytes(after.backends[maglevPick(after, h)]!.ip)), `flow ${sport}`);
  }
});
