// The edge's second chance for IPv6 flows (bpf/include/edge_second_chance6.h,
// docs/second-chance.md) through BPF_PROG_TEST_RUN: after a backend change,
// a TCP non-SYN without a connection-table entry goes to the new table's
// backend naming the old table's backend in the 64-byte Destination Options
// header (sc_option.h); SYNs, table hits and UDP are untouched. Expected
// frames are built from scratch (test/lib/packets6.ts, sc6Header).
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { TC_ACT_OK, XDP_DROP, XDP_PASS, XDP_TX } from '../../src/datapath/loader.js';
import { encodeCt6Key } from '../../src/datapath/edge-maps.js';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';
import type { Backend } from '../../src/model/types.js';
import { buildPacket6, ip6Bytes, parse6, verifyL4Checksum6, NH_DSTOPTS, NH_IPV6, NH_TCP, type Packet6Spec } from '../lib/packets6.js';
import { SEC, openEdge, setEdgeClock } from './edge-helpers.js';
import { CLIENT6, EDGE6, VIP6, backend6, eth6, service6, tcp6, udp6 } from './edge6-helpers.js';
import { sc6Header } from './second-chance-helpers.js';

const T0 = 1000n * SEC;
const ACK = { ack: true };
const hex = (b: Buffer): string => b.toString('hex');
/** Destination of an output frame's (outer) fixed header. */
const dst6 = (f: Buffer): string => hex(f.subarray(38, 54));
const addr = (a: string): string => hex(ip6Bytes(a));

function run(dp: EdgeDatapath, data: Buffer): { retval: number; out: Buffer } {
  const r = dp.program('xdp').testRun({ data });
  return { retval: r.retval, out: r.dataOut };
}

function openClocked(t: ExecutionContext, o: { window?: number; mtu?: number } = {}): { dp: EdgeDatapath; set: (ns: bigint) => void } {
  let now = T0;
  const dp = openEdge(t, { hooks: ['xdp'], ipv6: true, address6: EDGE6, clockNs: () => now, secondChanceSeconds: o.window ?? 600, ...(o.mtu ? { mtu: o.mtu } : {}) });
  setEdgeClock(dp, now);
  return {
    dp,
    set: (ns) => {
      now = ns;
      setEdgeClock(dp, ns);
    },
  };
}

const THREE = [backend6(1), backend6(2), backend6(3)];
const FOUR = [...THREE, backend6(4)];

/** Where a SYN from `sport` goes (pod, or node with IP6IP6); SYNs never touch the tables. */
function synTarget(dp: EdgeDatapath, sport: number): string {
  return dst6(run(dp, tcp6({ flags: { syn: true }, sport })).out);
}

interface Moved {
  port: number;
  old: Backend;
  now: Backend;
}

/** Ports whose backend moved between the two sets, and ports that stayed. */
function movedAndKept(t: ExecutionContext, dp: EdgeDatapath, before: Backend[], after: Backend[], from: number, over: Parameters<typeof service6>[0] = {}, n = 400): { moved: Moved[]; kept: number[] } {
  const by = (bs: Backend[], hexAddr: string): Backend => bs.find((b) => addr(b.ip) === hexAddr || addr(b.nodeIp) === hexAddr)!;
  dp.applyServices([service6({ ...over, backends: before })]);
  const old = new Map<number, string>();
  for (let p = from; p < from + n; p++) old.set(p, synTarget(dp, p));
  dp.applyServices([service6({ ...over, backends: after })]);
  const moved: Moved[] = [];
  const kept: number[] = [];
  for (let p = from; p < from + n; p++) {
    const now = synTarget(dp, p);
    if (now === old.get(p)) kept.push(p);
    else moved.push({ port: p, old: by(before, old.get(p)!), now: by(after, now) });
  }
  t.true(moved.length > 0 && kept.length > 0, 'the change moved some slots and kept others');
  return { moved, kept };
}

/** The client's ACK as tcp6 builds it, addressed and extended as given. */
function ackSpec(sport: number, o: { dst?: string; dport?: number; hopLimit?: number; payload?: Buffer } = {}): Packet6Spec {
  return {
    eth: eth6,
    ip: { src: CLIENT6, dst: o.dst ?? VIP6, hopLimit: o.hopLimit ?? 64, tclass: 0, flowLabel: 0x12345 },
    tcp: { sport, dport: o.dport ?? 80, seq: 1000, ack: 2000, flags: ACK, payload: o.payload ?? Buffer.alloc(0) },
  };
}

const secOf = (b: Backend) => ({ vip: VIP6, port: 80, secIp: b.ip, secPort: b.port, secNode: b.nodeIp });

function ct6Has(dp: EdgeDatapath, sport: number): boolean {
  return dp.map('edge_ct6').lookup(encodeCt6Key({ saddr: CLIENT6, daddr: VIP6, sport, dport: 80, proto: 6 })) !== null;
}

function sc6Has(dp: EdgeDatapath, sport: number): boolean {
  return dp.map('edge_sc_flows6').lookup(encodeCt6Key({ saddr: CLIENT6, daddr: VIP6, sport, dport: 80, proto: 6 })) !== null;
}

test('IPv6, after a change: a non-SYN without an entry goes to the new pod with the 64-byte header naming the old one, exact bytes; remembered, not in edge_ct6', (t) => {
  const { dp } = openClocked(t);
  const { moved } = movedAndKept(t, dp, THREE, FOUR, 45000);
  const { port, old, now } = moved[0]!;
  const payload = Buffer.from('GET / HTTP/1.1\r\n\r\n');
  const ack = buildPacket6(ackSpec(port, { payload }));
  const expected = buildPacket6({ ...ackSpec(port, { dst: now.ip, dport: now.port, hopLimit: 63, payload }), ext: [sc6Header(secOf(old))] });
  t.is(expected.length, ack.length + 64);
  for (let i = 0; i < 3; i++) {
    const r = run(dp, ack);
    t.is(r.retval, XDP_PASS); // FIB bypassed: the rewritten frame goes to the stack
    t.is(hex(r.out), hex(expected));
    t.true(verifyL4Checksum6(r.out.subarray(14)));
    t.deepEqual(parse6(r.out.subarray(14)).chain, [NH_DSTOPTS, NH_TCP]);
  }
  t.false(ct6Has(dp, port), 'a second-chance flow never enters edge_ct6');
  t.true(sc6Has(dp, port));
  const sc = dp.secondChance();
  t.like(sc.stats, { sc_remembered: 1, sc_sent: 3 });
  t.is(sc.open, 1, 'the IPv6 frontend\'s previous table is kept');
  // The tc fallback (edge_tc6) writes the same bytes.
  const tc = openEdge(t, { hooks: ['tc'], ipv6: true, address6: EDGE6, clockNs: () => T0, secondChanceSeconds: 600 });
  setEdgeClock(tc, T0);
  tc.applyServices([service6({ backends: THREE })]);
  tc.applyServices([service6({ backends: FOUR })]);
  const viaTc = tc.program('tc').testRun({ data: ack });
  t.is(viaTc.retval, TC_ACT_OK);
  t.is(hex(viaTc.dataOut), hex(expected));
  t.is(tc.secondChance().stats.sc_sent, 1);
});

test('IPv6: SYNs and connection-table hits are untouched by a change (exact bytes as without it); UDP gets no second chance', (t) => {
  const { dp } = openClocked(t);
  dp.applyServices([service6({ backends: THREE })]);
  const established = Array.from({ length: 40 }, (_, i) => 46000 + i);
  const before = new Map<number, Buffer>();
  for (const p of established) before.set(p, run(dp, buildPacket6(ackSpec(p))).out);
  dp.applyServices([service6({ backends: FOUR })]);
  for (const p of established) t.is(hex(run(dp, buildPacket6(ackSpec(p))).out), hex(before.get(p)!), `port ${p}: its entry wins`);
  for (let p = 47000; p < 47040; p++) {
    const o = run(dp, tcp6({ flags: { syn: true }, sport: p })).out;
    t.deepEqual(parse6(o.subarray(14)).chain, [NH_DSTOPTS, NH_TCP]);
    t.is(o.length, tcp6({ flags: { syn: true }, sport: p }).length + 24, 'the 24-byte header, not the 64-byte one');
  }
  t.is(dp.secondChance().stats.sc_sent, 0);

  const udp = (bs: Backend[]) => service6({ frontend: { vip: VIP6, port: 53, protocol: 'UDP' }, backends: bs });
  dp.applyServices([service6({ backends: FOUR }), udp(THREE)]);
  dp.applyServices([service6({ backends: FOUR }), udp(FOUR)]);
  for (let p = 53000; p < 53100; p++) {
    const f = udp6({ sport: p });
    t.is(run(dp, f).out.length, f.length + 24, 'the 24-byte header only');
  }
  t.is(dp.secondChance().stats.sc_sent, 0);
});

test('IPv6: both tables agree, or the window is over: a plain flow pinned in edge_ct6; a remembered flow keeps its pair after the window', (t) => {
  const { dp, set } = openClocked(t, { window: 60 });
  const { kept, moved } = movedAndKept(t, dp, THREE, FOUR, 48000);
  const k = kept[0]!;
  const plain = run(dp, buildPacket6(ackSpec(k))).out;
  t.deepEqual(parse6(plain.subarray(14)).chain, [NH_TCP], 'no header');
  t.true(ct6Has(dp, k));
  t.is(dp.secondChance().stats.sc_same_backend, 1);
  const [a, b] = moved;
  const first = run(dp, buildPacket6(ackSpec(a!.port))).out;
  set(T0 + 61n * SEC);
  t.is(dp.expireSecondChance(), 1, 'the agent closes the window');
  t.is(hex(run(dp, buildPacket6(ackSpec(a!.port))).out), hex(first), 'remembered: still sent with its secondary');
  const late = run(dp, buildPacket6(ackSpec(b!.port))).out;
  t.deepEqual(parse6(late.subarray(14)).chain, [NH_TCP], 'a flow first seen after the window: balanced as before the feature');
  t.is(dst6(late), addr(b!.now.ip));
  t.true(ct6Has(dp, b!.port));
});

test('IPv6: a blind SYN on a remembered tuple forgets nothing (it goes to the secondary); after the client\'s FIN, or its RST and silence, a SYN forgets the pair (a reused port goes where its SYN went); a pair whose backend left is the survivor\'s, plainly', (t) => {
  const { dp, set } = openClocked(t);
  const { moved } = movedAndKept(t, dp, THREE, FOUR, 49000);
  for (const m of moved) run(dp, buildPacket6(ackSpec(m.port)));
  const [m0, m1] = [moved[0]!, moved[1]!];
  t.true(sc6Has(dp, m0.port));
  // While the connection lives, a SYN on its tuple is someone else's: the
  // pair stays, the SYN goes to the secondary.
  t.is(dst6(run(dp, tcp6({ flags: { syn: true }, sport: m0.port })).out), addr(m0.old.ip));
  t.true(sc6Has(dp, m0.port), 'a blind SYN forgets nothing');
  t.is(dst6(run(dp, buildPacket6(ackSpec(m0.port))).out), addr(m0.now.ip), 'the live connection is still sent with its pair');
  t.is(dp.secondChance().stats.sc_syn_kept, 1);
  // The client closes (FIN), then reuses the port: its SYN forgets the pair.
  const fin = ackSpec(m0.port);
  run(dp, buildPacket6({ ...fin, tcp: { ...fin.tcp!, flags: { fin: true, ack: true } } }));
  run(dp, tcp6({ flags: { syn: true }, sport: m0.port }));
  t.false(sc6Has(dp, m0.port), 'the SYN after the client\'s FIN forgot it');
  const again = run(dp, buildPacket6(ackSpec(m0.port))).out;
  t.is(dst6(again), addr(m0.now.ip));
  // A RST: a SYN right after it keeps the pair (the RST may be blind); after ≈ 3 s of silence it forgets.
  run(dp, tcp6({ flags: { rst: true }, sport: m1.port }));
  run(dp, tcp6({ flags: { syn: true }, sport: m1.port }));
  t.true(sc6Has(dp, m1.port), 'right after a RST');
  set(T0 + 5n * SEC);
  run(dp, tcp6({ flags: { syn: true }, sport: m1.port }));
  t.false(sc6Has(dp, m1.port), 'a RST, then silence');
  // Backend 4 (a primary of every moved flow that went to it) leaves.
  const gone = backend6(4).ip;
  dp.applyServices([service6({ backends: THREE })]);
  let plain = 0;
  for (const m of moved.slice(2)) {
    const o = run(dp, buildPacket6(ackSpec(m.port))).out;
    if (m.now.ip === gone) {
      t.is(dst6(o), addr(m.old.ip), `port ${m.port}: its primary left, the secondary owns it`);
      t.deepEqual(parse6(o.subarray(14)).chain, [NH_TCP]);
      t.true(ct6Has(dp, m.port));
      plain++;
    } else {
      t.is(dst6(o), addr(m.now.ip), `port ${m.port}: the remembered primary`);
      t.is(hex(o.subarray(54, 118)), hex(Buffer.from([...[6], ...sc6Header(secOf(m.old)).bytes.subarray(1)])));
    }
  }
  t.true(plain > 0);
});

test('IPv6-in-IPv6: the outer fixed header, the 64-byte header (next header 41), the client\'s packet untouched but for its hop limit; exact bytes', (t) => {
  const { dp } = openClocked(t);
  const { moved } = movedAndKept(t, dp, THREE, FOUR, 52000, { dispatch: 'ipip' }, 200);
  // The outer destination names the node; find one whose node changed.
  const m = moved.find((x) => x.old.nodeIp !== x.now.nodeIp)!;
  t.truthy(m);
  const r = run(dp, buildPacket6({ ...ackSpec(m.port), ip: { ...ackSpec(m.port).ip, tclass: 0x28 } }));
  t.is(r.retval, XDP_PASS);
  const innerSpec = ackSpec(m.port, { hopLimit: 63 });
  const hash = r.out.readUInt32BE(14) & 0xfffff; // the flow label: 20 bits of the flow hash (edge6.test checks the hash)
  const want = buildPacket6({
    eth: eth6,
    ip: { src: EDGE6, dst: m.now.nodeIp, hopLimit: 64, tclass: 0x28, flowLabel: hash },
    ext: [sc6Header(secOf(m.old))],
    inner: { ...innerSpec, ip: { ...innerSpec.ip, tclass: 0x28 } },
  });
  t.is(hex(r.out), hex(want));
  t.deepEqual(parse6(r.out.subarray(14)).chain, [NH_DSTOPTS, NH_IPV6]);
  t.true(verifyL4Checksum6(r.out.subarray(14 + 40 + 64)), 'the inner checksum is the client\'s');
  // A SYN on the tuple while its connection lives goes to the secondary's
  // node (edge_sc_syn); once the client sent its FIN, a SYN on the reused
  // port is balanced as any (no second chance on a SYN).
  t.is(synTarget(dp, m.port), addr(m.old.nodeIp));
  const fin = ackSpec(m.port);
  run(dp, buildPacket6({ ...fin, tcp: { ...fin.tcp!, flags: { fin: true, ack: true } } }));
  t.is(synTarget(dp, m.port), addr(m.now.nodeIp));
});

test('IPv6: too big after the 64 bytes: Packet Too Big names the MTU less 64 (IP6IP6: less 104)', (t) => {
  const mtu = 1400;
  for (const [dispatch, overhead] of [['ip-option', 64], ['ipip', 104]] as const) {
    const { dp } = openClocked(t, { mtu });
    const { moved } = movedAndKept(t, dp, THREE, FOUR, 54000, { dispatch }, 200);
    const m = moved[0]!;
    const fits = run(dp, buildPacket6(ackSpec(m.port, { payload: Buffer.alloc(mtu - 40 - 20 - overhead) })));
    t.is(fits.retval, XDP_PASS, dispatch);
    t.is(fits.out.length, 14 + mtu);
    const tooBig = run(dp, buildPacket6(ackSpec(m.port, { payload: Buffer.alloc(mtu - 40 - 20 - overhead + 1) })));
    t.is(tooBig.retval, XDP_TX, dispatch);
    const ip = tooBig.out.subarray(14);
    t.is(ip[6], 58, 'ICMPv6');
    t.is(ip[40], 2, 'Packet Too Big');
    t.is(ip.readUInt32BE(44), mtu - overhead);
    t.true(verifyL4Checksum6(ip));
  }
});

test('IPv6: a client cannot send the header itself (dropped at the edge as any extension header to a VIP); truncated moved-flow packets never go out with one', (t) => {
  const { dp } = openClocked(t);
  const { moved } = movedAndKept(t, dp, THREE, FOUR, 56000, {}, 200);
  const m = moved[0]!;
  const forged = buildPacket6({ ...ackSpec(m.port), ext: [sc6Header(secOf(backend6(9)))] });
  t.is(run(dp, forged).retval, XDP_DROP);
  t.is(dp.counters().stats.drop_ip_options, 1);
  const whole = buildPacket6(ackSpec(m.port, { payload: Buffer.from('abcdefgh') }));
  for (let len = 14; len < whole.length; len++) { // BPF_PROG_TEST_RUN refuses frames shorter than Ethernet
    const cut = whole.subarray(0, len);
    const r = run(dp, cut);
    t.true(r.retval === XDP_PASS || r.retval === XDP_DROP, `length ${len}`);
    if (r.retval === XDP_PASS) t.is(hex(r.out), hex(cut), `length ${len}: untouched`);
  }
  t.is(dp.secondChance().stats.sc_sent, 0);
  t.is(run(dp, whole).out.length, whole.length + 64, 'the whole packet still gets its second chance');
});
