// The edge's IPv6 path (bpf/include/edge_ip6.h) through BPF_PROG_TEST_RUN,
// on both hooks — XDP (edge_xdp → edge_xdp6) and the tc fallback (edge_tc →
// edge_tc6), every case once per hook: exact output bytes against frames
// built from scratch in TypeScript (test/lib/packets6.ts computes every
// checksum itself; verifyL4Checksum6 re-sums the output a second way), the
// backend each flow must reach named by an independent copy of the flow
// hash and Maglev, truncation at every length, and the defined drops.
import test, { type ExecutionContext } from 'ava';
import { TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX, inNetns } from '../../src/datapath/loader.js';
import { Cleanup, createNetns, nsRun, uniqueId } from '../lib/netns.js';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';
import { encodeCt6Key, decodeBackend6, decodeCtValue, u32Key } from '../../src/datapath/edge-maps.js';
import { buildPacket6, dsr6Header, fragHeader, padHeader, parse6, verifyL4Checksum6, NH_DSTOPTS, NH_HOPOPTS, NH_ROUTING, ip6Bytes } from '../lib/packets6.js';
import { CLIENT_MAC, EDGE_MAC, SMALL_MAPS, openEdge, tcpPacket, service } from './edge-helpers.js';
import { loadNode6 } from './node-fixtures.js';
import { pinDirFor } from '../lib/bpffs.js';
import * as N from './node-fixtures.js';
import { BE6_ID0, CLIENT6, EDGE6, RING6_OFF, SVC6_ID, VIP6, apply6, backend6, eth6, flowHash6, maglevPick, service6, settledQuote6, tcp6, udp6 } from './edge6-helpers.js';

type Hook = 'xdp' | 'tc';

/** One hook's view of the edge: how to open and run it, and its verdict for each of the program's actions (edge_verdict). */
interface Hooked {
  hook: Hook;
  /** The program IPv6 frames are tail-called into. */
  prog6: 'edge_xdp6' | 'edge_tc6';
  V: { pass: number; drop: number; tx: number; redirect: number };
  open(t: ExecutionContext, over?: { mtu?: number; address6?: string }): EdgeDatapath;
  run(dp: EdgeDatapath, data: Buffer): { retval: number; out: Buffer };
  /** The quote an ICMPv6 error built on this hook carries of `q` (tc: its L4 checksum settled, edge_dsr6.h). */
  quote(q: Buffer): Buffer;
}

function hooked(hook: Hook): Hooked {
  return {
    hook,
    prog6: hook === 'xdp' ? 'edge_xdp6' : 'edge_tc6',
    // tc sends back out of the ingress interface (ACT_TX) by a redirect too.
    V: hook === 'xdp' ? { pass: XDP_PASS, drop: XDP_DROP, tx: XDP_TX, redirect: XDP_REDIRECT } : { pass: TC_ACT_OK, drop: TC_ACT_SHOT, tx: TC_ACT_REDIRECT, redirect: TC_ACT_REDIRECT },
    open: (t, over = {}) =>
      openEdge(t, {
        hooks: [hook],
        ipv6: true,
        ...(over.mtu ? { mtu: over.mtu } : {}),
        address6: over.address6 ?? EDGE6,
      }),
    run: (dp, data) => {
      const r = dp.program(hook).testRun({ data });
      return { retval: r.retval, out: r.dataOut };
    },
    quote: (q) => (hook === 'xdp' ? q : settledQuote6(q)),
  };
}

/** The case once per hook. */
function test6(title: string, fn: (t: ExecutionContext, h: Hooked) => void | Promise<void>): void {
  for (const hook of ['xdp', 'tc'] as const) test(`${hook}: ${title}`, (t) => fn(t, hooked(hook)));
}

const hex = (b: Buffer): string => b.toString('hex');
/** The destination address of an output frame (untagged, fixed header at 14), as hex. */
const dst6 = (frame: Buffer): string => hex(frame.subarray(38, 54));
const addr = (a: string): string => hex(ip6Bytes(a));

function stats(dp: EdgeDatapath): Record<string, number> {
  return dp.counters().stats;
}

function nonZero(dp: EdgeDatapath): Record<string, number> {
  return Object.fromEntries(Object.entries(stats(dp)).filter(([, v]) => v !== 0));
}

const THREE = [backend6(1), backend6(2), backend6(3)];

test6('non-VIP IPv6 passes untouched, uncounted', (t, h) => {
  const dp = h.open(t);
  apply6(dp, service6());
  const frames = [
    tcp6({ dst: '2001:db8:100::99' }),
    tcp6({ dport: 81 }),
    udp6({ dport: 80 }), // TCP service, UDP packet
    tcp6({ dst: '2001:db8:100::99', ext: [fragHeader(0, true)] }),
    tcp6({ dst: '2001:db8:100::99', ext: [padHeader(NH_HOPOPTS)] }),
    udp6({ dst: '2001:db8:100::99', ext: [dsr6Header(VIP6, 80)] }),
    buildPacket6({ eth: eth6, ip: { src: CLIENT6, dst: VIP6 }, icmp6: { type: 128, body: Buffer.from('00010001', 'hex') } }), // echo to the VIP
    buildPacket6({ eth: eth6, ip: { src: CLIENT6, dst: VIP6 }, raw: { nh: 47, bytes: Buffer.alloc(8) } }), // GRE to the VIP
  ];
  for (const f of frames) {
    const r = h.run(dp, f);
    t.is(r.retval, h.V.pass);
    t.is(hex(r.out), hex(f));
  }
  t.deepEqual(nonZero(dp), {});
});

test6('TCP SYN: DNAT to the pod and the 24-byte Destination Options header, exact bytes', (t, h) => {
  const dp = h.open(t);
  const d = service6({ backends: THREE });
  apply6(dp, d);
  const syn = tcp6({ flags: { syn: true }, tclass: 0x28, flowLabel: 0xabcde });
  const r = h.run(dp, syn);
  t.is(r.retval, h.V.pass); // FIB bypassed: rewritten and handed to the stack
  const be = d.backends[maglevPick(d, flowHash6(CLIENT6, VIP6, 40000, 80, 6))]!;
  const want = buildPacket6({
    eth: eth6,
    ip: { src: CLIENT6, dst: be.ip, hopLimit: 63, tclass: 0x28, flowLabel: 0xabcde },
    ext: [dsr6Header(VIP6, 80)],
    tcp: { sport: 40000, dport: 8080, seq: 1000, ack: 0, flags: { syn: true }, options: Buffer.from([2, 4, 0x05, 0xa0]), payload: Buffer.alloc(0) },
  });
  t.is(hex(r.out), hex(want));
  t.is(r.out.length, syn.length + 24);
  const p = parse6(r.out.subarray(14));
  t.deepEqual(p.chain, [NH_DSTOPTS, 6]);
  t.true(verifyL4Checksum6(r.out.subarray(14)));
  // The header, byte by byte as IPV6-WIRE.md has it.
  const opt = r.out.subarray(54, 78);
  t.is(hex(opt.subarray(0, 6)), '06025e120050');
  t.is(hex(opt.subarray(6, 22)), hex(ip6Bytes(VIP6)));
  t.is(hex(opt.subarray(22)), '0100');
  // A SYN is not remembered (the handshake's ACK pins the flow).
  t.is(dp.map('edge_ct6').lookup(encodeCt6Key({ saddr: CLIENT6, daddr: VIP6, sport: 40000, dport: 80, proto: 6 })), null);
  t.is(dp.counters().stats.fib_bypass, 1);
});

test6('established TCP: DNAT only, the flow pinned in edge_ct6 and kept across a backend-set change', (t, h) => {
  const dp = h.open(t);
  const d = service6({ backends: THREE });
  apply6(dp, d);
  const payload = Buffer.from('GET / HTTP/1.1\r\n\r\n');
  const flows = Array.from({ length: 24 }, (_, i) => 41000 + i);
  const seen = new Set<string>();
  for (const sport of flows) {
    const ack = tcp6({ sport, flags: { ack: true, psh: true }, payload });
    const r = h.run(dp, ack);
    t.is(r.retval, h.V.pass);
    const k = maglevPick(d, flowHash6(CLIENT6, VIP6, sport, 80, 6));
    const be = d.backends[k]!;
    seen.add(be.ip);
    const want = buildPacket6({ eth: eth6, ip: { src: CLIENT6, dst: be.ip, hopLimit: 63, flowLabel: 0x12345 }, tcp: { sport, dport: 8080, seq: 1000, ack: 2000, flags: { ack: true, psh: true }, payload } });
    t.is(hex(r.out), hex(want), `flow ${sport}`);
    t.true(verifyL4Checksum6(r.out.subarray(14)));
    const cv = dp.map('edge_ct6').lookup(encodeCt6Key({ saddr: CLIENT6, daddr: VIP6, sport, dport: 80, proto: 6 }));
    t.truthy(cv);
    t.is(decodeCtValue(cv!).backendId, BE6_ID0 + k);
  }
  t.true(seen.size > 1, 'flows spread over the backends');
  // A fourth backend changes the Maglev table; pinned flows stay.
  const d4 = service6({ backends: [...THREE, backend6(4)] });
  apply6(dp, d4);
  for (const sport of flows) {
    const k = maglevPick(d, flowHash6(CLIENT6, VIP6, sport, 80, 6));
    const r = h.run(dp, tcp6({ sport, flags: { ack: true }, payload }));
    t.is(dst6(r.out), addr(d.backends[k]!.ip));
  }
});

test6('UDP: the header on every datagram, checksum follows the DNAT; checksum 0 is malformed', (t, h) => {
  const dp = h.open(t);
  const d = service6({ frontend: { vip: VIP6, port: 53, protocol: 'UDP' }, backends: THREE });
  apply6(dp, d);
  const be = d.backends[maglevPick(d, flowHash6(CLIENT6, VIP6, 5353, 53, 17))]!;
  for (let i = 0; i < 3; i++) {
    const r = h.run(dp, udp6());
    t.is(r.retval, h.V.pass);
    const want = buildPacket6({ eth: eth6, ip: { src: CLIENT6, dst: be.ip, hopLimit: 63 }, ext: [dsr6Header(VIP6, 53)], udp: { sport: 5353, dport: 8080, payload: Buffer.from('hello edge6') } });
    t.is(hex(r.out), hex(want));
    t.true(verifyL4Checksum6(r.out.subarray(14)));
  }
  const bad = udp6({ checksum: 0 });
  t.is(h.run(dp, bad).retval, h.V.drop);
  t.is(stats(dp).drop_malformed, 1);
});

test6('IPv6-in-IPv6: outer header per IPV6-WIRE.md, inner untouched but for its hop limit', (t, h) => {
  const dp = h.open(t);
  const d = service6({ dispatch: 'ipip', backends: THREE });
  apply6(dp, d);
  const ack = tcp6({ flags: { ack: true }, payload: Buffer.from('x'.repeat(100)), tclass: 0xb8, flowLabel: 0x54321 });
  const r = h.run(dp, ack);
  t.is(r.retval, h.V.pass);
  const hash = flowHash6(CLIENT6, VIP6, 40000, 80, 6);
  const be = d.backends[maglevPick(d, hash)]!;
  const inner = Buffer.from(ack.subarray(14));
  inner[7] = 63;
  const outer = Buffer.alloc(40);
  outer.writeUInt32BE(((6 << 28) | (0xb8 << 20) | (hash & 0xfffff)) >>> 0, 0);
  outer.writeUInt16BE(inner.length, 4);
  outer[6] = 41;
  outer[7] = 64;
  ip6Bytes(EDGE6).copy(outer, 8);
  ip6Bytes(be.nodeIp).copy(outer, 24);
  t.is(hex(r.out), hex(Buffer.concat([ack.subarray(0, 14), outer, inner])));
  t.true(verifyL4Checksum6(inner));
  // Without an edge IPv6 address (EdgeDatapath refuses ipv6 without one;
  // the program guards on its own) there is no outer source: dropped, counted.
  const dp2 = h.open(t);
  dp2.map('edge_config6').update(u32Key(0), Buffer.alloc(16));
  apply6(dp2, d);
  t.is(h.run(dp2, ack).retval, h.V.drop);
  t.is(stats(dp2).drop_unsupported6, 1);
});

test6('Fragment header to a VIP: dropped and counted, wherever it sits in the chain', (t, h) => {
  const dp = h.open(t);
  apply6(dp, service6());
  const frames = [
    tcp6({ ext: [fragHeader(0, true)] }),
    tcp6({ ext: [fragHeader(0, false)] }), // atomic fragment
    buildPacket6({ eth: eth6, ip: { src: CLIENT6, dst: VIP6 }, ext: [fragHeader(185, false)], raw: { nh: 6, bytes: Buffer.alloc(64) } }),
    tcp6({ ext: [padHeader(NH_HOPOPTS), fragHeader(0, true)] }),
    tcp6({ dport: 9999, ext: [fragHeader(0, true)] }), // no such port: still a fragment to a VIP
  ];
  for (const f of frames) t.is(h.run(dp, f).retval, h.V.drop);
  t.deepEqual(nonZero(dp), { drop_fragment: frames.length });
});

test6('extension headers, VLAN tags and hop limit 1 towards a service: defined drops, Time Exceeded from the edge', (t, h) => {
  const dp = h.open(t);
  apply6(dp, service6());
  // A client's own Destination Options header (even a forged DSR one), Hop-by-Hop, Routing.
  for (const ext of [[dsr6Header('2001:db8:100::66', 443)], [padHeader(NH_HOPOPTS)], [padHeader(NH_ROUTING)]]) t.is(h.run(dp, tcp6({ ext })).retval, h.V.drop);
  const syn = tcp6();
  const tagged = Buffer.concat([syn.subarray(0, 12), Buffer.from('8100000a86dd', 'hex'), syn.subarray(14)]);
  t.is(h.run(dp, tagged).retval, h.V.drop);
  const otherTagged = Buffer.concat([syn.subarray(0, 12), Buffer.from('8100000a86dd', 'hex'), tcp6({ dst: '2001:db8:100::99' }).subarray(14)]);
  t.is(hex(h.run(dp, otherTagged).out), hex(otherTagged));
  // Hop limit 1 (or 0): ICMPv6 Time Exceeded from the edge, quoting the packet as received (exact bytes).
  for (const hopLimit of [1, 0]) {
    const f = tcp6({ hopLimit });
    const r = h.run(dp, f);
    t.is(r.retval, h.V.tx);
    const q = h.quote(f.subarray(14, 14 + ((f.length - 14) & ~3)));
    const want = buildPacket6({ eth: { src: EDGE_MAC, dst: CLIENT_MAC }, ip: { src: EDGE6, dst: CLIENT6, hopLimit: 64 }, icmp6: { type: 3, body: Buffer.concat([Buffer.alloc(4), q]) } });
    t.is(hex(r.out), hex(want));
    t.true(verifyL4Checksum6(r.out.subarray(14)));
  }
  t.is(h.run(dp, tcp6({ hopLimit: 2 })).retval, h.V.pass);
  t.deepEqual(nonZero(dp), { drop_ip_options: 3, drop_vlan: 1, ttl_exceeded: 2, fib_bypass: 1 });
  // Without an IPv6 address of its own the edge cannot answer: dropped, counted.
  dp.map('edge_config6').update(u32Key(0), Buffer.alloc(16));
  t.is(h.run(dp, tcp6({ hopLimit: 1 })).retval, h.V.drop);
  t.is(stats(dp).drop_ttl, 1);
});

test6('malformed TCP/UDP to a service: dropped, never forwarded', (t, h) => {
  const dp = h.open(t);
  apply6(dp, service6());
  apply6(dp, service6({ service: 'default/dns6', frontend: { vip: VIP6, port: 53, protocol: 'UDP' } }), { svcId: SVC6_ID + 1, backendIds: [BE6_ID0 + 10], ringOff: RING6_OFF - 16384 });
  const syn = tcp6();
  const doffBig = Buffer.from(syn);
  doffBig[54 + 12] = 0xf0; // data offset 60 > segment
  const doffSmall = Buffer.from(syn);
  doffSmall[54 + 12] = 0x40; // data offset 16 < 20
  const udp = udp6();
  const ulenBig = Buffer.from(udp);
  ulenBig.writeUInt16BE(200, 54 + 4);
  const ulenSmall = Buffer.from(udp);
  ulenSmall.writeUInt16BE(7, 54 + 4);
  for (const f of [doffBig, doffSmall, ulenBig, ulenSmall]) t.is(h.run(dp, f).retval, h.V.drop);
  t.deepEqual(nonZero(dp), { drop_malformed: 4 });
});

test6('truncation at every length of a v6 SYN and a v6 UDP datagram: never forwarded malformed', (t, h) => {
  const dp = h.open(t);
  apply6(dp, service6());
  apply6(dp, service6({ service: 'default/dns6', frontend: { vip: VIP6, port: 53, protocol: 'UDP' } }), { svcId: SVC6_ID + 1, backendIds: [BE6_ID0 + 10], ringOff: RING6_OFF - 16384 });
  for (const full of [tcp6({ payload: Buffer.from('abcdefgh') }), udp6()]) {
    for (let len = 0; len < full.length; len++) {
      const cut = full.subarray(0, len);
      if (len < 14) continue; // BPF_PROG_TEST_RUN refuses frames shorter than Ethernet
      let r: { retval: number; out: Buffer };
      try {
        r = h.run(dp, cut);
      } catch (e) {
        // tc's test run also refuses IPv6 frames without a whole fixed header.
        t.true(h.hook === 'tc' && len < 14 + 40 && (e as { code?: string }).code === 'EINVAL', `length ${len}: ${(e as Error).message}`);
        continue;
      }
      t.true(r.retval === h.V.drop || (r.retval === h.V.pass && r.out.equals(cut)), `length ${len}: ${r.retval}`);
    }
    // The payload length shortened (the packet claims less than it carries
    // — Ethernet padding): forwarded only as the claimed packet, checksums right.
    const r = h.run(dp, full);
    t.is(r.retval, h.V.pass);
    t.true(verifyL4Checksum6(r.out.subarray(14, 14 + 40 + r.out.readUInt16BE(18))));
  }
  // Only the well-formed ones were dispatched.
  t.is(stats(dp).fib_bypass, 2);
});

test6('too big after the +24: Packet Too Big with MTU − 24 to the client, exact bytes; below 1280 dropped and counted', (t, h) => {
  const dp = h.open(t, { mtu: 1400 });
  apply6(dp, service6({ frontend: { vip: VIP6, port: 53, protocol: 'UDP' } }));
  const big = udp6({ payload: Buffer.alloc(1400 - 40 - 8 - 23, 0x5a) }); // 1377 + 24 > 1400
  const r = h.run(dp, big);
  t.is(r.retval, h.V.tx);
  const quote = h.quote(big.subarray(14, 14 + 128));
  const body = Buffer.alloc(4 + 128);
  body.writeUInt32BE(1376, 0);
  quote.copy(body, 4);
  const want = buildPacket6({ eth: { src: EDGE_MAC, dst: CLIENT_MAC }, ip: { src: VIP6, dst: CLIENT6, hopLimit: 64 }, icmp6: { type: 2, body } });
  t.is(hex(r.out), hex(want));
  t.true(verifyL4Checksum6(r.out.subarray(14)));
  t.is(stats(dp).icmp_too_big_sent, 1);
  // One byte less fits.
  const fits = udp6({ payload: Buffer.alloc(1400 - 40 - 8 - 24, 0x5a) });
  t.is(h.run(dp, fits).retval, h.V.pass);
  // MTU 1300: 1300 − 24 < 1280 cannot be announced.
  const dp2 = h.open(t, { mtu: 1300 });
  apply6(dp2, service6({ frontend: { vip: VIP6, port: 53, protocol: 'UDP' } }));
  t.is(h.run(dp2, udp6({ payload: Buffer.alloc(1300, 1) })).retval, h.V.drop);
  t.deepEqual(nonZero(dp2), { drop_too_big_icmp_fail: 1 });
  // IP6IP6: + 40.
  const dp3 = h.open(t, { mtu: 1400 });
  apply6(dp3, service6({ dispatch: 'ipip', frontend: { vip: VIP6, port: 53, protocol: 'UDP' } }));
  const r3 = h.run(dp3, udp6({ payload: Buffer.alloc(1400 - 40 - 8 - 39, 1) }));
  t.is(r3.retval, h.V.tx);
  t.is(r3.out.readUInt32BE(14 + 40 + 4), 1360);
});

test6('source ranges, forged sources, terminating backends, no backend', (t, h) => {
  const dp = h.open(t);
  apply6(dp, service6({ sourceRanges: ['2001:db8:1::/64'] }));
  t.is(h.run(dp, tcp6()).retval, h.V.pass);
  t.is(h.run(dp, tcp6({ src: '2001:db8:2::7' })).retval, h.V.drop);
  t.is(stats(dp).drop_src_range, 1);
  // From the VIP itself, or from the edge: a forgery or a loop.
  const dp2 = h.open(t);
  apply6(dp2, service6());
  t.is(h.run(dp2, tcp6({ src: VIP6 })).retval, h.V.drop);
  t.is(h.run(dp2, tcp6({ src: EDGE6 })).retval, h.V.drop);
  t.is(stats(dp2).drop_bad_source, 2);
  // Terminating: a pinned flow stays, a new one goes elsewhere.
  const d = service6({ backends: [backend6(1), backend6(2)] });
  apply6(dp2, d);
  const sport = 43000;
  const k = maglevPick(d, flowHash6(CLIENT6, VIP6, sport, 80, 6));
  h.run(dp2, tcp6({ sport, flags: { ack: true } }));
  const term = service6({ backends: d.backends.map((b, i) => (i === k ? { ...b, state: 'terminating' as const } : b)) });
  apply6(dp2, term);
  t.is(dst6(h.run(dp2, tcp6({ sport, flags: { ack: true } })).out), addr(d.backends[k]!.ip));
  for (let s = 44000; s < 44020; s++) {
    t.is(dst6(h.run(dp2, tcp6({ sport: s })).out), addr(d.backends[1 - k]!.ip));
  }
  // Every backend terminating: new flows have nowhere to go.
  apply6(dp2, service6({ backends: d.backends.map((b) => ({ ...b, state: 'terminating' as const })) }));
  t.is(h.run(dp2, tcp6({ sport: 45000 })).retval, h.V.drop);
  t.is(stats(dp2).drop_no_backend, 1);
});

test6('IPv4 and IPv6 frontends side by side: each family keeps its own path', (t, h) => {
  const dp = h.open(t);
  dp.applyServices([service()]);
  apply6(dp, service6());
  const v4 = tcpPacket({});
  const r4 = h.run(dp, v4);
  t.is(r4.retval, h.V.pass);
  t.is(r4.out.length, v4.length + 8); // the IPv4 option
  const r6 = h.run(dp, tcp6());
  t.is(r6.out.length, tcp6().length + 24);
  t.is(decodeBackend6(dp.map('edge_backends6').lookup(u32Key(BE6_ID0))!).ip, backend6(1).ip);
});

test6('edge → node, IPv6: the node program accepts what the edge sends (header SYN, UDP, IP6IP6) and hands the pod the client\'s packet', (t, h) => {
  // The node of node6.test (node-fixtures): VIP6:80/TCP and :53/UDP with
  // three local pods, EDGE6 a trusted edge whose link-layer address is MAC_A.
  const node = loadNode6(t);
  node.applyServices([...N.standardServices(), ...N.standardServices6(), N.service(N.VIP6, 81, 'TCP', [N.POD6_1, N.POD6_2, N.POD6_3].map((ip) => N.backend(ip, 8080)))], { name: N.NODE_NAME });
  const edge = openEdge(t, { hooks: [h.hook], ipv6: true, address6: N.EDGE6, forward: { kind: 'gateway', gatewayMac: '02:00:00:00:00:99', ownMac: N.MAC_A } });
  const pods = [N.POD6_1, N.POD6_2, N.POD6_3].map((ip) => backend6(0, { ip, nodeIp: '2001:db8:e::21' }));
  apply6(edge, service6({ frontend: { vip: N.VIP6, port: 80, protocol: 'TCP' }, backends: pods.map((b) => ({ ...b, port: 8080 })) }));
  // The node serves VIP6:53 from its first two pods only (a pod the node does not know for that frontend is dropped: drop_wrong_backend).
  apply6(edge, service6({ frontend: { vip: N.VIP6, port: 53, protocol: 'UDP' }, backends: pods.slice(0, 2).map((b) => ({ ...b, port: 5353 })) }), { svcId: SVC6_ID + 1, ringOff: RING6_OFF - 16384, backendIds: [BE6_ID0 + 10, BE6_ID0 + 11] });
  apply6(edge, service6({ dispatch: 'ipip', frontend: { vip: N.VIP6, port: 81, protocol: 'TCP' }, backends: pods.map((b) => ({ ...b, port: 8080 })) }), { svcId: SVC6_ID + 2, ringOff: RING6_OFF - 32768, backendIds: [BE6_ID0 + 20, BE6_ID0 + 21, BE6_ID0 + 22] });
  const podSet = new Set(pods.map((p) => addr(p.ip)));

  const syn = tcp6({ dst: N.VIP6, src: N.CLIENT6 });
  const e = h.run(edge, syn);
  t.is(e.retval, h.V.tx);
  const n = node.ingress.testRun({ data: e.out });
  t.is(n.retval, N.TC_UNSPEC, `the node passes it on to the pod (${JSON.stringify(Object.fromEntries(Object.entries(node.counters()).filter(([, v]) => v !== 0)))})`);
  t.deepEqual(parse6(n.dataOut.subarray(14)).chain, [6], 'the header is stripped');
  t.true(podSet.has(dst6(n.dataOut)));
  t.true(verifyL4Checksum6(n.dataOut.subarray(14)));
  t.like(node.flows()[0], { clientIp: N.CLIENT6, vip: N.VIP6, vipPort: 80, origin: 'option' });

  const u = h.run(edge, udp6({ src: N.CLIENT6, dst: N.VIP6, dport: 53 }));
  t.is(u.retval, h.V.tx);
  const nu = node.ingress.testRun({ data: u.out });
  t.is(nu.retval, N.TC_UNSPEC, `UDP (${JSON.stringify(Object.fromEntries(Object.entries(node.counters()).filter(([, v]) => v !== 0)))})`);
  t.deepEqual(parse6(nu.dataOut.subarray(14)).chain, [17]);
  t.true(verifyL4Checksum6(nu.dataOut.subarray(14)));

  const tun = h.run(edge, tcp6({ src: N.CLIENT6, dst: N.VIP6, dport: 81, sport: 40100 }));
  t.is(tun.retval, h.V.tx);
  t.is(tun.out[20], 41);
  const nt = node.ingress.testRun({ data: tun.out });
  t.is(nt.retval, N.TC_UNSPEC, `IP6IP6 (${JSON.stringify(Object.fromEntries(Object.entries(node.counters()).filter(([, v]) => v !== 0)))})`);
  t.is(nt.dataOut.readUInt16BE(12), 0x86dd);
  t.deepEqual(parse6(nt.dataOut.subarray(14)).chain, [6], 'decapsulated');
  t.true(verifyL4Checksum6(nt.dataOut.subarray(14)));
  t.is(node.counters().drop_untrusted_source ?? 0, 0);
});

test6('incoming Packet Too Big about a VIP flow: steered to that flow\'s backend, rewritten for the pod\'s stack (exact bytes); others pass or drop as defined', (t, h) => {
  const dp = h.open(t);
  const d = service6({ backends: THREE });
  apply6(dp, d);
  const sport = 43210;
  const k = maglevPick(d, flowHash6(CLIENT6, VIP6, sport, 80, 6));
  const pod = d.backends[k]!;
  // The pod's reply as it left the node (from the VIP), quoted by a router.
  const replyTo = (src: string, sp: number): Buffer =>
    buildPacket6({ eth: false, ip: { src, dst: CLIENT6, hopLimit: 60 }, tcp: { sport: sp, dport: sport, seq: 5000, ack: 1001, flags: { ack: true }, payload: Buffer.alloc(60, 7) } });
  const ROUTER = '2001:db8:ff::1';
  const ptb = (quote: Buffer, o: { src?: string; dst?: string } = {}): Buffer => {
    const body = Buffer.concat([Buffer.from('00000500', 'hex'), quote]); // MTU 1280
    return buildPacket6({ eth: eth6, ip: { src: o.src ?? ROUTER, dst: o.dst ?? VIP6, hopLimit: 62 }, icmp6: { type: 2, body } });
  };
  const r = h.run(dp, ptb(replyTo(VIP6, 80)));
  t.is(r.retval, h.V.pass); // FIB bypassed
  // What the pod's own stack expects: about its own packet, pod:8080 → client.
  const quote = replyTo(pod.ip, 8080);
  quote.writeUInt16BE(replyTo(VIP6, 80).readUInt16BE(40 + 16), 40 + 16); // the quoted L4 checksum is left alone
  const want = buildPacket6({ eth: eth6, ip: { src: ROUTER, dst: pod.ip, hopLimit: 61 }, icmp6: { type: 2, body: Buffer.concat([Buffer.from('00000500', 'hex'), quote]) } });
  t.is(hex(r.out), hex(want));
  t.true(verifyL4Checksum6(r.out.subarray(14)), 'ICMPv6 checksum (pseudo-header included)');
  t.is(stats(dp).icmp_steered, 1);
  // The same flow pinned to another backend after a change: the pin wins.
  h.run(dp, tcp6({ sport, flags: { ack: true } }));
  apply6(dp, service6({ backends: [...THREE, backend6(4), backend6(5)] }));
  t.is(dst6(h.run(dp, ptb(replyTo(VIP6, 80))).out), addr(pod.ip));
  // Not about a service, or a quote from another address than the error's destination: untouched.
  for (const f of [ptb(replyTo(VIP6, 9999)), ptb(replyTo('2001:db8:100::99', 80)), ptb(replyTo(VIP6, 80), { dst: '2001:db8:100::99' })]) {
    const o = h.run(dp, f);
    t.is(o.retval, h.V.pass);
    t.is(hex(o.out), hex(f));
  }
  // From a VIP or the edge itself: a forgery.
  t.is(h.run(dp, ptb(replyTo(VIP6, 80), { src: VIP6 })).retval, h.V.drop);
  t.is(stats(dp).drop_bad_source, 1);
  // IP6IP6 services: the rewritten error inside the tunnel to the pod's node.
  const dp2 = h.open(t);
  const di = service6({ dispatch: 'ipip', backends: THREE });
  apply6(dp2, di);
  const r2 = h.run(dp2, ptb(replyTo(VIP6, 80)));
  t.is(r2.out[20], 41);
  t.is(hex(r2.out.subarray(14 + 24, 14 + 40)), addr(pod.nodeIp));
  t.is(hex(r2.out.subarray(14 + 40)), hex(want.subarray(14)));
});

test6('through the planner: applyServices programs IPv6 frontends (ipv6 on) — Maglev picks as the independent model, counters per service, removal, a restart that adopts them', (t, h) => {
  const pin = pinDirFor(t, 'edge6');
  const first = openEdge(t, { hooks: [h.hook], ipv6: true, address6: EDGE6, pinPath: pin });
  t.true(first.servesIpv6());
  const d = service6({ backends: [...THREE, backend6(4), backend6(5, { state: 'terminating' })], sourceRanges: ['2001:db8:1::/48'] });
  const udp = service6({ service: 'default/dns6', frontend: { vip: VIP6, port: 53, protocol: 'UDP' }, dispatch: 'ipip', backends: THREE.map((b) => ({ ...b, port: 5353 })) });
  const r = first.applyServices([service(), d, udp]);
  t.is(r.added, 3);
  const flows = Array.from({ length: 16 }, (_, i) => 47000 + i);
  const want = new Map(flows.map((sport) => [sport, d.backends[maglevPick(d, flowHash6(CLIENT6, VIP6, sport, 80, 6))]!.ip]));
  for (const sport of flows) {
    const o = h.run(first, tcp6({ sport, flags: { ack: true } }));
    t.is(o.retval, h.V.pass);
    t.is(dst6(o.out), addr(want.get(sport)!), `flow ${sport}`);
  }
  t.is(h.run(first, tcp6({ src: '2001:db8:2::7' })).retval, h.V.drop, 'outside the source ranges');
  const u = h.run(first, udp6({ dport: 53 }));
  t.is(u.out[20], 41, 'the UDP frontend is ipip: IP6IP6');
  const c = first.counters().services.find((s) => s.frontend === `[${VIP6}]:80/TCP`)!;
  t.truthy(c);
  t.is(c.packets, 16);
  first.close();
  // Restart on the pinned maps: the planner adopts the IPv6 frontends, ids and regions; flows keep their backends.
  const second = openEdge(t, { hooks: [h.hook], ipv6: true, address6: EDGE6, pinPath: pin });
  for (const sport of flows) t.is(dst6(h.run(second, tcp6({ sport, flags: { ack: true } })).out), addr(want.get(sport)!));
  const again = second.applyServices([service(), d, udp]);
  t.is(again.added + again.updated + again.unchanged, 3);
  for (const sport of flows) t.is(dst6(h.run(second, tcp6({ sport, flags: { ack: true }, payload: Buffer.from('more') })).out), addr(want.get(sport)!));
  // Removal: the frontend's entries go; its traffic passes untouched, the other family is unaffected.
  second.applyServices([service()]);
  const syn = tcp6();
  t.is(hex(h.run(second, syn).out), hex(syn));
  t.is(second.map('edge_services6').entries().length, 0, 'service and VIP marker removed');
  t.is(h.run(second, tcpPacket({})).out.length, tcpPacket({}).length + 8);
});

test('through the planner: IPv6 frontends the datapath does not serve are rejected with a reason, nothing written', (t) => {
  const off = openEdge(t, { hooks: ['xdp'] });
  const r = off.upsert([service6()]);
  t.is(r.rejected[0]?.reason, 'UnsupportedFamily');
  t.regex(r.rejected[0]!.message, /IPv6 maps are off/);
  const on = openEdge(t, { hooks: ['xdp'], ipv6: true, address6: EDGE6 });
  const bad = on.upsert([
    service6({ service: 'a/mixed', frontend: { vip: VIP6, port: 8443, protocol: 'TCP' }, backends: [backend6(1), { ...backend6(2), ip: '10.244.1.2' }] }),
    service6({ service: 'a/mixed-node', frontend: { vip: VIP6, port: 8444, protocol: 'TCP' }, backends: [{ ...backend6(1), nodeIp: '10.0.0.10' }] }),
    service6({ service: 'a/range', frontend: { vip: VIP6, port: 8445, protocol: 'TCP' }, sourceRanges: ['10.0.0.0/8'] }),
    service({ service: 'a/v4-with-v6-pod', backends: [backend6(1)] }),
  ]);
  t.deepEqual(bad.rejected.map((x) => [x.service, x.reason]), [
    ['a/mixed', 'UnsupportedFamily'],
    ['a/mixed-node', 'UnsupportedFamily'],
    ['a/range', 'UnsupportedFamily'],
    ['a/v4-with-v6-pod', 'UnsupportedFamily'],
  ]);
  t.is(on.map('edge_services6').entries().length, 0);
  t.is(on.map('edge_services').entries().length, 0);
});

test6('ClientIP affinity for IPv6: every flow of a client on one backend, refreshed while used; other clients spread', (t, h) => {
  const dp = h.open(t);
  const d = service6({ backends: [...THREE, backend6(4), backend6(5)], affinityTimeoutSeconds: 30 });
  apply6(dp, d);
  const one = new Set<string>();
  for (let sport = 48000; sport < 48020; sport++) {
    one.add(dst6(h.run(dp, tcp6({ sport })).out));
    if (sport === 48000) t.is(dp.map('edge_affinity6').keys().length, 0, 'a SYN writes no affinity entry');
    one.add(dst6(h.run(dp, tcp6({ sport, flags: { ack: true } })).out));
  }
  t.is(one.size, 1, 'one backend for all flows of the client');
  t.is(dp.map('edge_affinity6').keys().length, 1, 'the first ACK wrote it');
  t.is(stats(dp).affinity_hit, 19 * 2, 'every later SYN and first ACK found it');
  const many = new Set<string>();
  for (let i = 1; i < 40; i++) many.add(dst6(h.run(dp, tcp6({ src: `2001:db8:1::${(0x100 + i).toString(16)}` })).out));
  t.true(many.size > 2, 'clients spread over the backends');
  t.throws(() => openEdge(t, { hooks: [h.hook], ipv6: true }), { message: /ipv6 needs address6/ });
});

test6('FIB, IPv6: the SYN is redirected to the node\'s neighbour MAC (exact bytes), the result cached; an unroutable node: rewritten packet to the stack, counted', async (t, h) => {
  const cleanup = new Cleanup();
  t.teardown(async () => {
    await cleanup.run();
  });
  const ns = await createNetns(`edgelb-edge6-${uniqueId()}`, cleanup);
  const NODE6 = 'fd00:10::11';
  const NODE_MAC = '02:00:00:00:01:11';
  await nsRun(ns, ['ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1']);
  await nsRun(ns, ['ip', '-6', 'addr', 'add', 'fd00:10::1/64', 'dev', 'up0', 'nodad']);
  await nsRun(ns, ['ip', 'link', 'set', 'up0', 'up']);
  await nsRun(ns, ['ip', 'link', 'set', 'up1', 'up']);
  await nsRun(ns, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  await nsRun(ns, ['ip', '-6', 'neigh', 'replace', NODE6, 'lladdr', NODE_MAC, 'dev', 'up0', 'nud', 'permanent']);
  const upMac = (JSON.parse((await nsRun(ns, ['ip', '-j', 'link', 'show', 'up0'])).stdout) as Array<{ address: string }>)[0]!.address;
  const dp = openEdge(t, { hooks: [h.hook], ipv6: true, address6: EDGE6, forward: { kind: 'fib' } });
  const d = service6({ backends: [backend6(1, { nodeIp: NODE6 })] });
  apply6(dp, d);
  const r = inNetns(ns, () => dp.program(h.hook).testRun({ data: tcp6() }));
  t.is(r.retval, h.V.redirect);
  const want = buildPacket6({
    eth: { src: upMac, dst: NODE_MAC },
    ip: { src: CLIENT6, dst: d.backends[0]!.ip, hopLimit: 63, flowLabel: 0x12345 },
    ext: [dsr6Header(VIP6, 80)],
    tcp: { sport: 40000, dport: 8080, seq: 1000, ack: 0, flags: { syn: true }, options: Buffer.from([2, 4, 0x05, 0xa0]), payload: Buffer.alloc(0) },
  });
  t.is(hex(r.dataOut), hex(want));
  // Cached per CPU, direct-mapped by the destination's words (edge_dsr6.h).
  const n = ip6Bytes(NODE6);
  const x = (n.readUInt32BE(12) ^ n.readUInt32BE(8) ^ n.readUInt32BE(4)) >>> 0;
  const slot = Buffer.alloc(4);
  slot.writeUInt32LE(((x ^ (x >>> 8)) & 255) >>> 0);
  const cached = dp.map('edge_fib_cache6').lookupPerCpu(slot)!;
  t.true(cached.some((v) => v.subarray(0, 16).equals(n)));
  // No route to the node: the rewritten packet goes to the stack, counted.
  const dp2 = openEdge(t, { hooks: [h.hook], ipv6: true, address6: EDGE6, forward: { kind: 'fib' } });
  apply6(dp2, service6({ backends: [backend6(1, { nodeIp: 'fd00:99::1' })] }));
  const r2 = inNetns(ns, () => dp2.program(h.hook).testRun({ data: tcp6() }));
  t.is(r2.retval, h.V.pass);
  t.is(dst6(r2.dataOut), addr(backend6(1).ip));
  t.is(stats(dp2).fib_pass, 1);
});

test6('IPv6 off: the IPv6 program is not loaded and IPv6 passes untouched; toggling IPv6 across restarts on pinned maps recreates only the IPv6 maps', (t, h) => {
  const pin = pinDirFor(t, 'edge6-toggle');
  // The test-size maps would hide the size change: only the IPv4 ones are shrunk here.
  const v4Small = Object.fromEntries(Object.entries(SMALL_MAPS).filter(([n]) => !n.endsWith('6')));
  const open = (ipv6: boolean) => openEdge(t, { hooks: [h.hook], pinPath: pin, maxEntries: v4Small, ...(ipv6 ? { ipv6: true, address6: EDGE6 } : {}) });
  const on = open(true);
  on.applyServices([service(), service6()]);
  t.is(h.run(on, tcp6()).out.length, tcp6().length + 24);
  on.close();
  const off = open(false);
  t.throws(() => off.obj.program(h.prog6), { message: /not loaded/ });
  t.is(off.map('edge_ct6').maxEntries, 64);
  const syn6 = tcp6();
  const before = stats(off); // pinned: the counters of the run before
  const r = h.run(off, syn6);
  t.is(r.retval, h.V.pass);
  t.is(hex(r.out), hex(syn6));
  t.deepEqual(stats(off), before);
  // IPv4 state survived the toggle: the frontend was adopted from the pinned maps.
  t.is(h.run(off, tcpPacket({})).out.length, tcpPacket({}).length + 8);
  off.close();
  const again = open(true);
  t.true(again.map('edge_ct6').maxEntries > 64);
  t.is(hex(h.run(again, tcp6()).out), hex(tcp6()), 'IPv6 frontends are gone until planned again');
  again.applyServices([service(), service6()]);
  t.is(h.run(again, tcp6()).out.length, tcp6().length + 24);
});

test('one flow budget for both families: with IPv6 served the IPv4 flow tables load at 3/4 (second-chance pairs at 1/2) and map memory stays within 256 MiB; a pinned table of the other size is replaced at the toggle, frontends stay', (t) => {
  const pin = pinDirFor(t, 'edge6-budget');
  // Full-size maps (no test overrides): the sizes are the point.
  const open = (ipv6: boolean) => openEdge(t, { pinPath: pin, maxEntries: {}, ...(ipv6 ? { ipv6: true, address6: EDGE6 } : {}) });
  const on = open(true);
  t.deepEqual((['edge_ct', 'edge_ct6', 'edge_affinity', 'edge_affinity6', 'edge_snat_rev', 'edge_snat_rev6', 'edge_sc_flows', 'edge_sc_flows6'] as const).map((n) => on.map(n).maxEntries), [3 * 2 ** 18, 2 ** 18, 3 * 2 ** 15, 2 ** 15, 3 * 2 ** 16, 2 ** 16, 2 ** 16, 2 ** 15]);
  const mib = on.memlockBytes() / 2 ** 20;
  t.true(mib <= 256, `map memory with IPv6 on: ${mib.toFixed(1)} MiB`);
  on.applyServices([service()]);
  on.close();
  const off = open(false);
  t.is(off.map('edge_ct').maxEntries, 2 ** 20);
  t.is(off.map('edge_sc_flows').maxEntries, 2 ** 17);
  t.is(off.map('edge_ct6').maxEntries, 64);
  t.true(off.map('edge_services').keys().length > 0, 'the IPv4 frontend was adopted from the pinned maps');
  off.close();
});
