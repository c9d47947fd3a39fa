// The edge's second chance (docs/second-chance.md) through
// BPF_PROG_TEST_RUN: after a backend change, a TCP non-SYN without a
// connection-table entry goes to the new table's backend naming the old
// table's backend in the 20-byte option; SYNs and table hits are untouched.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { XDP_PASS, TC_ACT_OK } from '../../src/datapath/loader.js';
import { buildPacket, dsrOption, parsePacket, verifyIpv4Checksum, verifyL4Checksum } from '../lib/packets.js';
import { EDGE, SEC, VIP, backend, clientEth, openEdge, service, setEdgeClock, tcpPacket, tcpSpec, udpPacket } from './edge-helpers.js';
import { scOption } from './second-chance-helpers.js';
import { mergePrevious } from '../../src/datapath/second-chance.js';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';
import type { Backend } from '../../src/model/types.js';
import { pinDirFor } from '../lib/bpffs.js';

const SYN = { syn: true };
const ACK = { ack: true };
const T0 = 1000n * SEC;

function run(dp: EdgeDatapath, data: Buffer, hook: 'xdp' | 'tc' = 'xdp'): { retval: number; out: Buffer } {
  const r = dp.program(hook).testRun({ data });
  return { retval: r.retval, out: r.dataOut };
}

function hex(b: Buffer): string {
  return b.toString('hex');
}

/** An edge whose program clock and whose agent clock are one test clock. */
function openClocked(t: ExecutionContext, window = 600): { dp: EdgeDatapath; set: (ns: bigint) => void } {
  let now = T0;
  const dp = openEdge(t, { clockNs: () => now, secondChanceSeconds: window });
  setEdgeClock(dp, now);
  return {
    dp,
    set: (ns) => {
      now = ns;
      setEdgeClock(dp, ns);
    },
  };
}

/** Backend a SYN from `sport` goes to (SYNs never touch the tables). */
function synTarget(dp: EdgeDatapath, sport: number): string {
  return parsePacket(run(dp, tcpPacket({ flags: SYN, sport })).out).ip.dst;
}

const THREE = [backend(1), backend(2), backend(3)];
const FOUR = [...THREE, backend(4)];

/** Ports whose backend moved from the 3-backend table to the 4-backend one, and ports that stayed. */
function movedAndKept(t: ExecutionContext, dp: EdgeDatapath, before: Backend[], after: Backend[], from = 45000, n = 400): { moved: Array<{ port: number; old: Backend; now: Backend }>; kept: number[] } {
  dp.applyServices([service({ backends: before })]);
  const old = new Map<number, string>();
  for (let p = from; p < from + n; p++) old.set(p, synTarget(dp, p));
  dp.applyServices([service({ backends: after })]);
  const moved: Array<{ port: number; old: Backend; now: Backend }> = [];
  const kept: number[] = [];
  for (let p = from; p < from + n; p++) {
    const now = synTarget(dp, p);
    if (now === old.get(p)) kept.push(p);
    else moved.push({ port: p, old: before.find((b) => b.ip === old.get(p))!, now: after.find((b) => b.ip === now)! });
  }
  t.true(moved.length > 0 && kept.length > 0, 'the change moved some slots and kept others');
  return { moved, kept };
}

function ctHas(dp: EdgeDatapath, sport: number): boolean {
  const k = Buffer.alloc(16);
  Buffer.from([198, 51, 100, 7]).copy(k, 0);
  Buffer.from([203, 0, 113, 10]).copy(k, 4);
  k.writeUInt16BE(sport, 8);
  k.writeUInt16BE(80, 10);
  k[12] = 6;
  return dp.map('edge_ct').lookup(k) !== null;
}

test('after a change: a non-SYN without an entry goes to the new backend and names the old one, exact bytes; remembered, not in edge_ct', (t) => {
  const { dp } = openClocked(t);
  const { moved } = movedAndKept(t, dp, THREE, FOUR);
  const { port, old, now } = moved[0]!;
  const payload = Buffer.from('GET / HTTP/1.1\r\n\r\n');
  const ack = tcpPacket({ flags: ACK, sport: port, payload });
  const spec = tcpSpec({ flags: ACK, sport: port, payload });
  const expected = buildPacket({
    ...spec,
    ip: { ...spec.ip, dst: now.ip, ttl: 63, options: scOption({ vip: VIP, port: 80, secIp: old.ip, secPort: old.port, secNode: old.nodeIp }) },
    tcp: { ...spec.tcp!, dport: now.port },
  });
  for (let i = 0; i < 3; i++) {
    const r = run(dp, ack);
    t.is(r.retval, XDP_PASS);
    t.is(hex(r.out), hex(expected));
    t.true(verifyIpv4Checksum(r.out.subarray(14)));
    t.true(verifyL4Checksum(r.out.subarray(14)));
  }
  t.is(parsePacket(expected).ip.ihl, 40);
  t.false(ctHas(dp, port), 'a second-chance flow never enters edge_ct (its entry would name the primary alone)');
  const sc = dp.secondChance();
  t.is(sc.stats.sc_remembered, 1);
  t.is(sc.stats.sc_sent, 3);
  t.is(sc.open, 1);
  // The tc program writes the same bytes.
  const viaTc = run(dp, ack, 'tc');
  t.is(viaTc.retval, TC_ACT_OK);
  t.is(hex(viaTc.out), hex(expected));
});

test('SYNs and connection-table hits are untouched by a change: exact bytes as without the second chance', (t) => {
  const { dp } = openClocked(t);
  dp.applyServices([service({ backends: THREE })]);
  // Flows established before the change, on this edge: in edge_ct.
  const established = Array.from({ length: 40 }, (_, i) => 46000 + i);
  const before = new Map<number, string>();
  for (const p of established) before.set(p, parsePacket(run(dp, tcpPacket({ flags: ACK, sport: p })).out).ip.dst);
  dp.applyServices([service({ backends: FOUR })]);
  for (const p of established) {
    const r = run(dp, tcpPacket({ flags: ACK, sport: p }));
    const spec = tcpSpec({ flags: ACK, sport: p });
    t.is(hex(r.out), hex(buildPacket({ ...spec, ip: { ...spec.ip, dst: before.get(p)!, ttl: 63 }, tcp: { ...spec.tcp!, dport: 8080 } })));
  }
  // A SYN: the new table's backend with the 8-byte option, as always.
  for (let p = 47000; p < 47040; p++) {
    const r = run(dp, tcpPacket({ flags: SYN, sport: p }));
    const spec = tcpSpec({ flags: SYN, sport: p });
    const to = parsePacket(r.out).ip.dst;
    t.true(FOUR.some((b) => b.ip === to));
    t.is(hex(r.out), hex(buildPacket({ ...spec, ip: { ...spec.ip, dst: to, ttl: 63, options: dsrOption(VIP, 80) }, tcp: { ...spec.tcp!, dport: 8080 } })));
  }
  t.is(dp.secondChance().stats.sc_sent, 0);
});

test('both tables agree, or no change in the window: a plain flow, pinned in edge_ct', (t) => {
  const { dp, set } = openClocked(t, 60);
  const { kept, moved } = movedAndKept(t, dp, THREE, FOUR, 48000);
  const k = kept[0]!;
  const r = run(dp, tcpPacket({ flags: ACK, sport: k }));
  t.is(parsePacket(r.out).ip.ihl, 20, 'no option');
  t.true(ctHas(dp, k));
  t.is(dp.secondChance().stats.sc_same_backend, 1);
  // Window over: a moved slot's flow without an entry is balanced as before the feature.
  set(T0 + 61n * SEC);
  const m = moved[0]!;
  const late = parsePacket(run(dp, tcpPacket({ flags: ACK, sport: m.port })).out);
  t.is(late.ip.ihl, 20);
  t.is(late.ip.dst, m.now.ip);
  t.true(ctHas(dp, m.port));
  t.is(dp.expireSecondChance(), 1, 'the agent closes the window');
  t.is(dp.secondChance().open, 0);
});

test('a flow sent with a secondary keeps it after the window closed (long-lived connections)', (t) => {
  const { dp, set } = openClocked(t, 60);
  const { moved } = movedAndKept(t, dp, THREE, FOUR, 49000);
  const m = moved[0]!;
  const first = run(dp, tcpPacket({ flags: ACK, sport: m.port })).out;
  set(T0 + 3600n * SEC);
  dp.expireSecondChance();
  const later = run(dp, tcpPacket({ flags: ACK, sport: m.port })).out;
  t.is(hex(later), hex(first));
  t.is(parsePacket(later).ip.ihl, 40);
});

test('the old backend removed by the change: its flows get no secondary (they end with it)', (t) => {
  const { dp } = openClocked(t);
  // 3 → {1, 2, 4}: backend 3 is gone.
  const after = [backend(1), backend(2), backend(4)];
  const { moved } = movedAndKept(t, dp, THREE, after, 50000);
  const fromGone = moved.filter((x) => x.old.ip === backend(3).ip);
  const fromLive = moved.filter((x) => x.old.ip !== backend(3).ip);
  t.true(fromGone.length > 0);
  for (const x of fromGone) {
    const p = parsePacket(run(dp, tcpPacket({ flags: ACK, sport: x.port })).out);
    t.is(p.ip.ihl, 20);
    t.is(p.ip.dst, x.now.ip);
  }
  for (const x of fromLive) {
    const p = parsePacket(run(dp, tcpPacket({ flags: ACK, sport: x.port })).out);
    t.is(p.ip.ihl, 40);
    t.is(hex(p.ip.options), hex(scOption({ vip: VIP, port: 80, secIp: x.old.ip, secPort: 8080, secNode: x.old.nodeIp })));
  }
});

test('a terminating old backend is still named (its connections live on)', (t) => {
  const { dp } = openClocked(t);
  const after = [backend(1), backend(2), backend(3, { state: 'terminating' }), backend(4)];
  const { moved } = movedAndKept(t, dp, THREE, after, 51000);
  const fromTerm = moved.find((x) => x.old.ip === backend(3).ip)!;
  t.truthy(fromTerm);
  const p = parsePacket(run(dp, tcpPacket({ flags: ACK, sport: fromTerm.port })).out);
  t.is(p.ip.dst, fromTerm.now.ip);
  t.is(hex(p.ip.options), hex(scOption({ vip: VIP, port: 80, secIp: backend(3).ip, secPort: 8080, secNode: backend(3).nodeIp })));
});

test('ipip: the outer header carries the option (IHL 10), the inner packet is untouched but for the TTL; exact bytes', (t) => {
  const { dp } = openClocked(t);
  const ipip = (bs: Backend[]) => service({ dispatch: 'ipip', backends: bs });
  dp.applyServices([ipip(THREE)]);
  const old = new Map<number, string>();
  for (let p = 52000; p < 52200; p++) old.set(p, synTarget(dp, p)); // outer dst: node
  dp.applyServices([ipip(FOUR)]);
  // With ipip the pod is chosen on the node; the outer destination names the node.
  let port = 0;
  let oldNode = '';
  let newNode = '';
  for (let p = 52000; p < 52200; p++) {
    const n = synTarget(dp, p);
    if (n !== old.get(p)) {
      port = p;
      oldNode = old.get(p)!;
      newNode = n;
      break;
    }
  }
  t.not(port, 0);
  const oldBe = THREE.find((b) => b.nodeIp === oldNode)!;
  const r = run(dp, tcpPacket({ flags: ACK, sport: port, tos: 0x28 }));
  const spec = tcpSpec({ flags: ACK, sport: port, tos: 0x28 });
  const inner = buildPacket({ ...spec, ip: { ...spec.ip, ttl: 63 } });
  const exp = buildPacket({
    eth: clientEth,
    ip: { src: EDGE, dst: newNode, tos: 0x28, ttl: 64, df: true, id: 0, protocol: 4, options: scOption({ vip: VIP, port: 80, secIp: oldBe.ip, secPort: 8080, secNode: oldBe.nodeIp }) },
    payload: inner.subarray(14),
  });
  t.is(hex(r.out), hex(exp));
  t.true(verifyIpv4Checksum(r.out.subarray(14)));
  t.is(hex(run(dp, tcpPacket({ flags: ACK, sport: port, tos: 0x28 }), 'tc').out), hex(exp));
});

test('UDP gets no second chance (docs/second-chance.md: a node cannot tell a new UDP flow from a moved one)', (t) => {
  const { dp } = openClocked(t);
  const udp = (bs: Backend[]) => service({ frontend: { vip: VIP, port: 53, protocol: 'UDP' }, backends: bs });
  dp.applyServices([udp(THREE)]);
  dp.applyServices([udp(FOUR)]);
  for (let p = 53000; p < 53100; p++) {
    const o = parsePacket(run(dp, udpPacket({ sport: p })).out);
    t.is(o.ip.ihl, 28, 'the 8-byte option only');
  }
  t.is(dp.secondChance().stats.sc_sent, 0);
});

test('too big with DF after the 20-byte option: fragmentation-needed names the MTU less 20', (t) => {
  const now = T0;
  const dp = openEdge(t, { clockNs: () => now, mtu: 600 });
  setEdgeClock(dp, now);
  const { moved } = movedAndKept(t, dp, THREE, FOUR, 54000);
  const m = moved[0]!;
  const fits = run(dp, tcpPacket({ flags: ACK, sport: m.port, payload: Buffer.alloc(600 - 40 - 20) }));
  t.is(parsePacket(fits.out).ip.ihl, 40);
  const tooBig = run(dp, tcpPacket({ flags: ACK, sport: m.port, payload: Buffer.alloc(600 - 40 - 19) }));
  const icmp = parsePacket(tooBig.out);
  t.is(icmp.ip.protocol, 1);
  t.is(icmp.icmp!.type, 3);
  t.is(icmp.icmp!.code, 4);
  t.is(tooBig.out.readUInt16BE(14 + 20 + 6), 580);
});

test('two quick changes: per slot the oldest backend still alive that differs from the new one', (t) => {
  const alive = new Set([1, 2, 3, 4, 5]);
  const prev = Uint32Array.from([1, 1, 2, 9, 3, 4]); // 9: removed since
  const cur = Uint32Array.from([1, 4, 2, 3, 3, 4]);
  const next = Uint32Array.from([5, 4, 2, 5, 4, 4]);
  t.deepEqual([...mergePrevious(prev, cur, next, 6, alive)], [1, 1, 2, 3, 3, 4]);
  // slot 0: pre-burst 1 ≠ 5 → 1; slot 1: pre-burst 1 ≠ 4 → 1; slot 2: all 2 → 2 (same);
  // slot 3: 9 gone → cur 3; slot 4: pre-burst 3 ≠ 4 → 3; slot 5: all 4 → 4.
  t.deepEqual([...mergePrevious(null, cur, next, 6, new Set([2, 4, 5]))], [5, 4, 2, 5, 4, 4], 'gone backends name no secondary');
});

test('two quick changes through the datapath: a flow made before both still names its backend', (t) => {
  const { dp, set } = openClocked(t);
  const FIVE = [...FOUR, backend(5)];
  dp.applyServices([service({ backends: THREE })]);
  const ring0 = new Map<number, string>();
  for (let p = 55000; p < 55400; p++) ring0.set(p, synTarget(dp, p));
  dp.applyServices([service({ backends: FOUR })]);
  set(T0 + 30n * SEC);
  dp.applyServices([service({ backends: FIVE })]);
  let checked = 0;
  for (let p = 55000; p < 55400; p++) {
    const now = synTarget(dp, p);
    if (now === ring0.get(p)) continue;
    const o = parsePacket(run(dp, tcpPacket({ flags: ACK, sport: p })).out);
    t.is(o.ip.dst, now);
    const sec = THREE.find((b) => b.ip === ring0.get(p))!;
    t.is(hex(o.ip.options), hex(scOption({ vip: VIP, port: 80, secIp: sec.ip, secPort: 8080, secNode: sec.nodeIp })), `port ${p}`);
    checked++;
  }
  t.true(checked > 0);
  t.is(dp.secondChance().open, 1, 'one previous table per service, not one per change');
});

test('previous tables are bounded: released when the window ends or the service goes; off with secondChanceSeconds 0', (t) => {
  const { dp, set } = openClocked(t, 10);
  const base = dp.ringSlotsUsed();
  dp.applyServices([service({ backends: THREE })]);
  const one = dp.ringSlotsUsed() - base;
  dp.applyServices([service({ backends: FOUR })]);
  t.is(dp.ringSlotsUsed() - base, 2 * one, 'the previous table takes one region of the same size');
  set(T0 + 11n * SEC);
  dp.applyServices([service({ backends: FOUR })]); // apply also closes ended windows
  t.is(dp.ringSlotsUsed() - base, one);
  dp.applyServices([service({ backends: THREE })]);
  t.is(dp.secondChance().open, 1);
  dp.applyServices([]);
  t.is(dp.secondChance().open, 0);
  t.is(dp.ringSlotsUsed(), base);

  const off = openEdge(t, { secondChanceSeconds: 0 });
  const r = movedAndKept(t, off, THREE, FOUR, 56000);
  t.is(parsePacket(run(off, tcpPacket({ flags: ACK, sport: r.moved[0]!.port })).out).ip.ihl, 20);
  t.is(off.secondChance().open, 0);
});

test('restart with pinned maps: previous tables and their regions survive, and the first change after a restart keeps one', (t) => {
  const pin = pinDirFor(t, 'edge-sc');
  const now = T0;
  const open = () => {
    const dp = openEdge(t, { pinPath: pin, clockNs: () => now });
    setEdgeClock(dp, now);
    return dp;
  };
  const first = open();
  const { moved } = movedAndKept(t, first, THREE, FOUR, 57000);
  const m = moved[0]!;
  const sent = hex(run(first, tcpPacket({ flags: ACK, sport: m.port })).out);
  const used = first.ringSlotsUsed();
  first.close();

  const second = open();
  t.is(second.secondChance().open, 1, 'the previous table is known again');
  t.is(second.ringSlotsUsed(), used, 'its region is reserved, not handed out again');
  t.is(hex(run(second, tcpPacket({ flags: ACK, sport: m.port })).out), sent);
  // Another moved flow, first seen after the restart.
  const other = moved[1]!;
  t.is(parsePacket(run(second, tcpPacket({ flags: ACK, sport: other.port })).out).ip.ihl, 40);
  second.close();

  // A fresh pin: the first change after a restart reads the current table from the map.
  const pin2 = pinDirFor(t, 'edge-sc2');
  const a = openEdge(t, { pinPath: pin2, clockNs: () => now });
  setEdgeClock(a, now);
  a.applyServices([service({ backends: THREE })]);
  const old = new Map<number, string>();
  for (let p = 58000; p < 58200; p++) old.set(p, synTarget(a, p));
  a.close();
  const b = openEdge(t, { pinPath: pin2, clockNs: () => now });
  setEdgeClock(b, now);
  b.applyServices([service({ backends: FOUR })]);
  let n = 0;
  for (let p = 58000; p < 58200; p++) {
    const to = synTarget(b, p);
    if (to === old.get(p)) continue;
    const o = parsePacket(run(b, tcpPacket({ flags: ACK, sport: p })).out);
    t.is(o.ip.dst, to);
    t.is(hex(o.ip.options.subarray(8, 12)), hex(Buffer.from(old.get(p)!.split('.').map(Number))));
    n++;
  }
  t.true(n > 0);
});

test('a remembered flow keeps both its backends through a later change and a blind SYN (sent to its secondary); once its client sent a FIN, or a RST and then fell silent, a SYN on the reused port forgets them (it goes where Maglev says now)', (t) => {
  // A rolling update is two changes in a row: pods added (a connection made
  // then is remembered with the new table's backend as primary), then the
  // old ones retired. The connection lives on one of the two remembered
  // backends; sending it to the current pick instead reset it.
  const { dp, set } = openClocked(t);
  const { moved } = movedAndKept(t, dp, THREE, FOUR, 59000);
  for (const m of moved) run(dp, tcpPacket({ flags: ACK, sport: m.port })); // remembered: (new, old)
  dp.applyServices([service({ backends: [...FOUR, backend(5), backend(6)] })]);
  const viaPair = (m: (typeof moved)[number], what: string): void => {
    const o = parsePacket(run(dp, tcpPacket({ flags: ACK, sport: m.port })).out);
    t.is(o.ip.dst, m.now.ip, `port ${m.port}: the remembered primary, not the current pick (${what})`);
    t.is(hex(o.ip.options.subarray(8, 12)), hex(Buffer.from(m.old.ip.split('.').map(Number))), `the remembered secondary (${what})`);
  };
  let i = 0;
  for (const m of moved) {
    viaPair(m, 'after the second change');
    // A SYN while the connection lives (someone else's): the pair stays, and
    // the SYN goes to the secondary, never to the primary's node (which
    // would claim the tuple from the pod holding it).
    t.is(synTarget(dp, m.port), m.old.ip, `port ${m.port}: a SYN on a live remembered tuple goes to its secondary`);
    viaPair(m, 'after a blind SYN');
    // The client ends the connection: a FIN, or a RST (half of them each).
    if (i++ % 2 === 0) {
      run(dp, tcpPacket({ flags: { fin: true, ack: true }, sport: m.port }));
    } else {
      run(dp, tcpPacket({ flags: { rst: true }, sport: m.port }));
      // Right after a RST, a SYN does not yet forget: the RST may be blind.
      t.is(synTarget(dp, m.port), m.old.ip, `port ${m.port}: a SYN right after a RST still keeps the pair`);
      viaPair(m, 'a packet after a RST');
      run(dp, tcpPacket({ flags: { rst: true }, sport: m.port }));
    }
  }
  t.is(dp.secondChance().stats.sc_syn_kept, moved.length + Math.floor(moved.length / 2));
  // Silence after the RSTs (≈ 3 s), then the clients reuse their ports:
  // each SYN forgets the pair, and the new connection's packets follow it.
  set(T0 + 10n * SEC);
  let again = 0;
  for (const m of moved) {
    const now = synTarget(dp, m.port);
    t.is(parsePacket(run(dp, tcpPacket({ flags: ACK, sport: m.port })).out).ip.dst, now, `port ${m.port}: a reused port's connection is where its SYN went`);
    if (now !== m.now.ip) again++;
  }
  t.true(again > 0, 'the second change moved some remembered flows\' slots again');
});

test('a remembered flow whose primary is gone is its secondary\'s, plainly (pinned); one whose secondary is gone, its primary\'s', (t) => {
  const B4 = backend(4).ip;
  const B1 = backend(1).ip;
  for (const gone of [B4, B1]) {
    const { dp } = openClocked(t);
    const { moved } = movedAndKept(t, dp, THREE, FOUR, 61000);
    for (const m of moved) run(dp, tcpPacket({ flags: ACK, sport: m.port }));
    dp.applyServices([service({ backends: FOUR.filter((b) => b.ip !== gone) })]);
    let plain = 0;
    for (const m of moved) {
      const o = parsePacket(run(dp, tcpPacket({ flags: ACK, sport: m.port })).out);
      if (m.now.ip === gone || m.old.ip === gone) {
        const owner = m.now.ip === gone ? m.old.ip : m.now.ip;
        t.is(o.ip.dst, owner, `port ${m.port}: ${gone} is gone, the flow is ${owner}'s`);
        t.is(o.ip.ihl, 20, 'plainly, no option');
        t.true(ctHas(dp, m.port), 'pinned in edge_ct');
        plain++;
      } else {
        t.is(o.ip.dst, m.now.ip, `port ${m.port}: both remembered backends live: the pair stands`);
        t.is(o.ip.ihl, 40);
      }
    }
    t.true(plain > 0, `some remembered flows had ${gone}`);
  }
});
