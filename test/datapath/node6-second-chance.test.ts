// The node's second chance for IPv6 flows (bpf/include/node_second_chance6.h,
// docs/second-chance.md) through BPF_PROG_TEST_RUN: a packet an edge sent
// with the 64-byte header (sc_option.h) is delivered when this node's pod
// owns the flow, handed to the secondary's node when it does not, and
// dropped (counted) when it is forged, malformed or truncated. Expected
// frames are built from scratch (test/lib/packets6.ts, sc6Header); every
// upper-layer checksum is re-summed independently.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import type { TcpSpec } from '../lib/packets.js';
import { buildPacket6, dsr6Header, ip6Bytes, padHeader, parse6, verifyL4Checksum6, NH_HOPOPTS, NH_DSTOPTS, type ExtHeader, type Packet6Spec } from '../lib/packets6.js';
import { NodeDatapath } from '../../src/datapath/node-datapath.js';
import { FLOW_CLOSING, FLOW_FIN_CLIENT, FLOW_FIN_POD, localBackendSlot } from '../../src/datapath/node-maps.js';
import { macBytes } from '../../src/datapath/node-maps.js';
import { NODE_SC6_MAP, encodeScBackendKey, scBackendEntries } from '../../src/datapath/node-second-chance.js';
import { inNetns } from '../../src/datapath/loader.js';
import type { Backend, DesiredService } from '../../src/model/types.js';
import { CLIENT6, EDGE6, EDGE_IP, MAC_A, MAC_B, MAC_OTHER, MAC_ROUTER, NODE_IP, NODE_NAME, OTHER_NODE_POD6, POD6_1, POD6_2, POD6_3, TC_SHOT, TC_UNSPEC, VIP6, VIP6_ELSEWHERE, fromSender, run, service } from './node-fixtures.js';
import { NODE_B_MAC, TC_REDIRECT, bypassScFib, fuzzHandOvers, scFabric, sc6Header } from './second-chance-helpers.js';
import { openEdge, setEdgeClock } from './edge-helpers.js';
import { service6, tcp6 } from './edge6-helpers.js';
import { nsRun } from '../lib/netns.js';

const NODE6 = 'fd00:10::21'; // this node
const NODE6_B = 'fd00:10::99'; // OTHER_NODE_POD6's node
const eth = { src: MAC_A, dst: MAC_B };
const ACK = { ack: true };
const secB = { vip: VIP6, port: 80, secIp: OTHER_NODE_POD6, secPort: 8080, secNode: NODE6_B };
const hex = (b: Buffer): string => b.toString('hex');

function be(ip: string, port: number, onB = false): Backend {
  return { ip, port, nodeIp: onB ? NODE6_B : NODE6, nodeName: onB ? 'node-b' : NODE_NAME, weight: 1, state: 'active' };
}

/** IPv6 frontends whose backends' nodes have IPv6 addresses (as the agent's desired state has them). */
function services6(): DesiredService[] {
  return [
    service(VIP6, 80, 'TCP', [be(POD6_1, 8080), be(POD6_2, 8080), be(POD6_3, 8080), be(OTHER_NODE_POD6, 8080, true)]),
    service(VIP6, 53, 'UDP', [be(POD6_1, 5353), be(POD6_2, 5353)]),
    service(VIP6_ELSEWHERE, 80, 'TCP', [be(OTHER_NODE_POD6, 8080, true)]),
  ];
}

function load(t: ExecutionContext, o: { nodeIp6?: string; name?: string; bypass?: boolean } = {}): NodeDatapath {
  const dp = NodeDatapath.open({ maxFlows: 4096, edgeSources: [EDGE_IP, EDGE6], nodeIp: NODE_IP, nodeIp6: o.nodeIp6 ?? NODE6 });
  t.teardown(() => dp.close());
  dp.applyServices(services6(), { name: o.name ?? NODE_NAME });
  dp.trustEdgeNeighbour(EDGE6, MAC_A);
  return o.bypass === false ? dp : bypassScFib(dp);
}

/** Header dispatch: client → primary pod (DNATed), our header first. */
function optSpec(header: ExtHeader, tcp: Partial<TcpSpec> = {}, ip: { src?: string; dst?: string } = {}, ethr = eth, more: ExtHeader[] = []): Packet6Spec {
  return {
    eth: ethr,
    ip: { src: ip.src ?? CLIENT6, dst: ip.dst ?? POD6_1, hopLimit: 61, flowLabel: 0x12345 },
    ext: [header, ...more],
    tcp: { sport: 40000, dport: 8080, seq: 1000, ack: 2000, flags: ACK, payload: Buffer.from('data'), ...tcp },
  };
}

function plain(spec: Packet6Spec, over: { dst?: string; dport?: number; hopLimit?: number } = {}): Buffer {
  return buildPacket6({
    ...spec,
    ext: [],
    ip: { ...spec.ip, ...(over.dst ? { dst: over.dst } : {}), ...(over.hopLimit ? { hopLimit: over.hopLimit } : {}) },
    tcp: { ...spec.tcp!, ...(over.dport ? { dport: over.dport } : {}) },
  });
}

function wellFormed(t: ExecutionContext, frame: Buffer): void {
  const ip = frame.subarray(14);
  t.is(parse6(ip).payloadLength, ip.length - 40, 'payload length matches the frame');
  t.true(verifyL4Checksum6(ip), 'upper-layer checksum over the pseudo-header');
}

// ---------------------------------------------------------------- header dispatch

test('IPv6 header dispatch, the pod owns the flow (it saw the SYN): delivered, the 64 bytes removed, exact bytes', (t) => {
  const dp = load(t);
  const syn = buildPacket6(optSpec(dsr6Header(VIP6, 80), { flags: { syn: true }, ack: 0, payload: Buffer.alloc(0) }));
  t.is(run(dp.ingress, syn).retval, TC_UNSPEC);
  const spec = optSpec(sc6Header(secB));
  const frame = buildPacket6(spec);
  t.is(frame.length, 14 + 40 + 64 + 20 + 4);
  const r = run(dp.ingress, frame);
  t.is(r.retval, TC_UNSPEC);
  t.is(hex(r.out), hex(plain(spec)));
  wellFormed(t, r.out);
  t.like(dp.secondChanceCounters(), { sc_owned: 1, sc_handed: 0 });
  // FIN through the second chance marks the flow as the client's end.
  const fin = run(dp.ingress, buildPacket6(optSpec(sc6Header(secB), { flags: { fin: true, ack: true } })));
  t.is(fin.retval, TC_UNSPEC);
  t.is(dp.secondChanceCounters().sc_owned, 2);
});

test('IPv6 header dispatch, the pod does not own the flow: handed to the secondary pod on its node, no header, hop limit − 1, exact bytes; never handed twice', (t) => {
  const dp = load(t);
  const spec = optSpec(sc6Header(secB));
  const r = run(dp.ingress, buildPacket6(spec));
  t.is(r.retval, TC_UNSPEC); // FIB bypassed: the rewritten packet goes to the stack
  t.is(hex(r.out), hex(plain(spec, { dst: OTHER_NODE_POD6, dport: 8080, hopLimit: 60 })));
  wellFormed(t, r.out);
  t.like(dp.secondChanceCounters(), { sc_owned: 0, sc_handed: 1, sc_fib_bypass: 1 });
  t.is(dp.flows().length, 0, 'a hand-over creates no state');
  const again = run(dp.ingress, r.out);
  t.is(again.retval, TC_UNSPEC);
  t.is(hex(again.out), hex(r.out), 'a plain segment: passed untouched');
  t.is(dp.secondChanceCounters().sc_handed, 1);
});

test('IPv6 header dispatch, the secondary is another pod of this node: re-addressed to it locally (hop limit unchanged)', (t) => {
  const dp = load(t);
  const spec = optSpec(sc6Header({ ...secB, secIp: POD6_2, secNode: NODE6 }));
  const r = run(dp.ingress, buildPacket6(spec));
  t.is(r.retval, TC_UNSPEC);
  t.is(hex(r.out), hex(plain(spec, { dst: POD6_2, dport: 8080 })));
  wellFormed(t, r.out);
  t.like(dp.secondChanceCounters(), { sc_handed_local: 1, sc_handed: 0 });
});

test('IPv6: forged, malformed or misplaced second-chance headers are dropped and counted, never handed', (t) => {
  const dp = load(t);
  const drop = (frame: Buffer, what: string) => t.is(run(dp.ingress, frame).retval, TC_SHOT, what);
  // Not from an edge's link-layer address.
  for (const src of [MAC_ROUTER, MAC_OTHER]) drop(buildPacket6(optSpec(sc6Header(secB), {}, {}, { src, dst: MAC_B })), `sender ${src}`);
  t.is(dp.counters().drop_untrusted_source, 2);
  // A secondary that is no backend of the frontend, or on another node.
  drop(buildPacket6(optSpec(sc6Header({ ...secB, secIp: 'fd00:10:244:9::9' }))), 'arbitrary address');
  drop(buildPacket6(optSpec(sc6Header({ ...secB, secPort: 22 }))), 'another port of the pod');
  drop(buildPacket6(optSpec(sc6Header({ ...secB, secIp: POD6_1, secPort: 5353 }))), 'a pod of another frontend (VIP6:53/UDP)');
  drop(buildPacket6(optSpec(sc6Header({ ...secB, secNode: 'fd00:10::50' }))), 'wrong node');
  t.like(dp.secondChanceCounters(), { sc_drop_not_backend: 4, sc_handed: 0 });
  drop(buildPacket6(optSpec(sc6Header({ ...secB, vip: VIP6_ELSEWHERE }))), 'VIP6_ELSEWHERE has no pod here');
  drop(buildPacket6(optSpec(sc6Header(secB), {}, { dst: 'fd00:10:244:1::77' })), 'primary no pod of ours');
  t.is(dp.counters().drop_wrong_backend, 2);
  // Shapes an edge never sends.
  drop(buildPacket6(optSpec(sc6Header(secB), { flags: { syn: true }, ack: 0 })), 'SYN');
  drop(buildPacket6({ eth, ip: { src: CLIENT6, dst: POD6_1 }, ext: [sc6Header(secB)], udp: { sport: 5353, dport: 5353, payload: Buffer.from('x') } }), 'UDP');
  drop(buildPacket6(optSpec(sc6Header(secB), {}, {}, eth, [padHeader(NH_DSTOPTS)])), 'another extension header behind ours');
  drop(buildPacket6(optSpec(sc6Header({ ...secB, flags: 1 }))), 'HANDED on the header dispatch');
  t.like(dp.secondChanceCounters(), { sc_drop_malformed: 3, sc_drop_handed: 1, sc_handed: 0, sc_owned: 0 });
  // Not the layout in every byte: reserved, PadN type/length/contents, option lengths.
  const bad0 = dp.counters().drop_bad_option;
  drop(buildPacket6(optSpec(sc6Header(secB, { reserved: 1 }))), 'reserved byte');
  drop(buildPacket6(optSpec(sc6Header(secB, { pad: [1, 4, 0, 0, 0, 1] }))), 'PadN contents');
  drop(buildPacket6(optSpec(sc6Header(secB, { pad: [0, 0, 0, 0, 0, 0] }))), 'Pad1s instead of PadN');
  drop(buildPacket6(optSpec(sc6Header(secB, { optLen: 52, pad: [1, 6, 0, 0, 0, 0] }))), 'option data length 52');
  drop(buildPacket6(optSpec(sc6Header(secB, { hdrlen: 2 }))), 'header length 2 (cut at 24 bytes)');
  t.is(dp.counters().drop_bad_option - bad0, 5);
  // Ours, but not the first extension header: not where the edge puts it.
  drop(buildPacket6(optSpec(padHeader(NH_HOPOPTS), {}, {}, eth, [sc6Header(secB)])), 'behind a Hop-by-Hop header');
  t.is(dp.flows().length, 0);
  t.like(dp.secondChanceCounters(), { sc_handed: 0, sc_owned: 0, sc_handed_local: 0 });
});

// ---------------------------------------------------------------- IP6IP6

function inner(flags: { syn?: boolean; ack?: boolean; fin?: boolean }, sport = 41000, dst = VIP6): Omit<Packet6Spec, 'eth'> {
  return { ip: { src: CLIENT6, dst, hopLimit: 60, flowLabel: 0x777 }, tcp: { sport, dport: 80, seq: 9, ack: flags.ack ? 10 : 0, flags } };
}

function tunnel(i: Omit<Packet6Spec, 'eth'>, o: { header?: ExtHeader; dst?: string; src?: string; hopLimit?: number; eth?: Packet6Spec['eth'] } = {}): Buffer {
  return buildPacket6({
    eth: o.eth ?? eth,
    ip: { src: o.src ?? EDGE6, dst: o.dst ?? NODE6, hopLimit: o.hopLimit ?? 63, flowLabel: 0xabc },
    ...(o.header ? { ext: [o.header] } : {}),
    inner: i,
  });
}

const LOCAL_PODS = [POD6_1, POD6_2, POD6_3];

test('IP6IP6, the node owns the flow (its pin from the SYN): our header removed, decapsulated and DNATed as always, exact bytes', (t) => {
  const dp = load(t);
  const pod = LOCAL_PODS[localBackendSlot(CLIENT6, VIP6, 41000, 80, 'TCP', 3)]!;
  t.is(run(dp.ingress, tunnel(inner({ syn: true }))).retval, TC_UNSPEC);
  const i = inner(ACK);
  const r = run(dp.ingress, tunnel(i, { header: sc6Header(secB) }));
  t.is(r.retval, TC_UNSPEC);
  t.is(hex(r.out), hex(buildPacket6({ eth, ip: { ...i.ip, dst: pod }, tcp: { ...i.tcp!, dport: 8080 } })));
  wellFormed(t, r.out);
  t.like(dp.secondChanceCounters(), { sc_owned: 1, sc_handed: 0 });
});

test('IP6IP6, no pin here: on to the secondary node with HANDED, hop limit − 1; that node delivers it into its flow', (t) => {
  const a = load(t);
  const i = inner(ACK);
  const r = run(a.ingress, tunnel(i, { header: sc6Header(secB) }));
  t.is(r.retval, TC_UNSPEC);
  const handed = tunnel(i, { header: sc6Header({ ...secB, flags: 1 }), dst: NODE6_B, hopLimit: 62 });
  t.is(hex(r.out), hex(handed));
  t.like(a.secondChanceCounters(), { sc_handed: 1 });
  t.is(a.fwdEntries().length, 0, 'no pin on the primary');

  // Node B pinned the flow at the SYN the old edge sent it.
  const b = load(t, { nodeIp6: NODE6_B, name: 'node-b' });
  t.is(run(b.ingress, tunnel(inner({ syn: true }), { dst: NODE6_B })).retval, TC_UNSPEC);
  const d = run(b.ingress, fromSender(r.out, MAC_OTHER)); // node A's MAC: no edge
  t.is(d.retval, TC_UNSPEC);
  t.is(hex(d.out), hex(buildPacket6({ eth: { src: MAC_OTHER, dst: MAC_B }, ip: { ...i.ip, dst: OTHER_NODE_POD6 }, tcp: { ...i.tcp!, dport: 8080 } })));
  wellFormed(t, d.out);
  t.like(b.secondChanceCounters(), { sc_handed_in: 1, sc_handed: 0 });
});

test('IP6IP6 hand-overs are never handed again and never create a flow; forged ones are dropped', (t) => {
  const b = load(t, { nodeIp6: NODE6_B, name: 'node-b' });
  const i = inner(ACK, 42000);
  const nodeEth = { src: MAC_OTHER, dst: MAC_B };
  t.is(run(b.ingress, tunnel(i, { header: sc6Header({ ...secB, flags: 1 }), dst: NODE6_B, eth: nodeEth })).retval, TC_SHOT, 'HANDED without a pin');
  t.like(b.secondChanceCounters(), { sc_drop_handed: 1, sc_handed: 0, sc_handed_in: 0 });
  t.is(b.fwdEntries().length, 0);
  t.is(run(b.ingress, tunnel(i, { header: sc6Header({ ...secB, flags: 1 }), dst: NODE6_B, src: 'fd00:10::200', eth: nodeEth })).retval, TC_SHOT, 'HANDED from no edge source');
  t.is(b.counters().drop_untrusted_source, 1);
  t.is(run(b.ingress, tunnel(i, { header: sc6Header(secB), dst: NODE6_B, eth: nodeEth })).retval, TC_SHOT, 'not HANDED, not from an edge MAC');
  t.is(b.counters().drop_untrusted_source, 2);
  const a = load(t);
  t.is(run(a.ingress, tunnel(i, { header: sc6Header({ ...secB, secIp: 'fd00:10:244:9::9' }) })).retval, TC_SHOT);
  t.is(run(a.ingress, tunnel(i, { header: sc6Header({ ...secB, secNode: 'fd00:10::50' }) })).retval, TC_SHOT);
  t.is(run(a.ingress, tunnel(inner(ACK, 42000, VIP6_ELSEWHERE), { header: sc6Header(secB) })).retval, TC_SHOT, 'inner VIP is not the header\'s');
  t.is(run(a.ingress, tunnel(inner({ syn: true }, 42001), { header: sc6Header(secB) })).retval, TC_SHOT, 'SYN');
  t.like(a.secondChanceCounters(), { sc_drop_not_backend: 2, sc_drop_malformed: 2, sc_handed: 0 });
  t.is(run(a.ingress, tunnel(i, { header: sc6Header(secB), hopLimit: 1 })).retval, TC_SHOT);
  t.like(a.secondChanceCounters(), { sc_drop_ttl: 1, sc_handed: 0 });
  t.is(a.fwdEntries().length + a.flows().length, 0);
});

test('IP6IP6: a hand-over from a sender that could not bring the edges\' IP6IP6 never moves the flow towards its end', (t) => {
  // As for IPv4: a hand-over comes from a node's MAC with an edge's outer
  // source, all anyone who can send that address needs to forge one. Its
  // FIN marked the flow, the pod's half-close made it CLOSING, and after the
  // close timeout the pod's replies left from its own address.
  const b = load(t, { nodeIp6: NODE6_B, name: 'node-b' });
  const t0 = b.nowNs();
  b.setTestClock(t0);
  t.is(run(b.ingress, tunnel(inner({ syn: true }), { dst: NODE6_B })).retval, TC_UNSPEC);
  const key = { podIp: OTHER_NODE_POD6, podPort: 8080, clientIp: CLIENT6, clientPort: 41000, proto: 'TCP' as const };
  const handedFrom = (flags: TcpSpec['flags'], src: string): Buffer => {
    const i = inner({});
    return tunnel({ ...i, tcp: { ...i.tcp!, flags } }, { header: sc6Header({ ...secB, flags: 1 }), dst: NODE6_B, eth: { src, dst: MAC_B } });
  };
  for (const flags of [{ fin: true, ack: true }, { rst: true }]) {
    const r = run(b.ingress, handedFrom(flags, MAC_OTHER));
    t.is(r.retval, TC_UNSPEC, 'still delivered: the pod\'s stack judges it');
    t.is(hex(r.out.subarray(14 + 24, 14 + 40)), hex(ip6Bytes(OTHER_NODE_POD6)), 'to the pinned pod');
    t.is(b.flow(key)!.flags, 0, `${JSON.stringify(flags)} handed from a non-edge MAC left the flow alone`);
  }
  const reply = (flags: TcpSpec['flags'], payload = Buffer.alloc(0)): Packet6Spec => ({
    eth: { src: MAC_B, dst: MAC_A },
    ip: { src: OTHER_NODE_POD6, dst: CLIENT6, hopLimit: 64 },
    tcp: { sport: 8080, dport: 41000, seq: 5000, ack: 10, flags, payload },
  });
  run(b.egress, buildPacket6(reply({ fin: true, ack: true })));
  b.setTestClock(t0 + 11_000_000_000n);
  const later = reply({ ack: true, psh: true }, Buffer.from('tail'));
  t.is(hex(run(b.egress, buildPacket6(later)).out), hex(buildPacket6({ ...later, ip: { ...later.ip, src: VIP6 }, tcp: { ...later.tcp!, sport: 80 } })));
  // From a sender that may bring the edges' IP6IP6 itself, it counts.
  run(b.ingress, handedFrom({ fin: true, ack: true }, MAC_A));
  t.is(b.flow(key)!.flags, FLOW_FIN_POD | FLOW_FIN_CLIENT | FLOW_CLOSING);
});

test('IPv6 second-chance frames cut at every length: dropped or passed untouched, never delivered, handed or remembered', (t) => {
  const dp = load(t);
  const frames = [buildPacket6(optSpec(sc6Header(secB))), tunnel(inner(ACK, 43000), { header: sc6Header(secB) })];
  for (const whole of frames) {
    // From 54: the kernel's test run builds no skb for an IPv6 frame without its fixed header.
    for (let len = 54; len < whole.length; len++) {
      const cut = whole.subarray(0, len);
      const r = run(dp.ingress, cut);
      t.true(r.retval === TC_SHOT || (r.retval === TC_UNSPEC && r.out.equals(cut)), `length ${len}: ${r.retval}`);
    }
  }
  t.like(dp.secondChanceCounters(), { sc_owned: 0, sc_handed: 0, sc_handed_local: 0, sc_handed_in: 0 });
  t.is(dp.flows().length + dp.fwdEntries().length, 0);
  // The whole frames still work.
  t.is(run(dp.ingress, frames[0]!).retval, TC_UNSPEC);
  t.is(dp.secondChanceCounters().sc_handed, 1);
});

test('fuzz: 3000 mutated IPv6 second-chance frames from an edge never reach an address that is no backend of the frontend', (t) => {
  // Mutated: the fixed header, our header or the first inner/L4 bytes; the IPv6 destination read at 38.
  const hexOf = (a: string): string => hex(buildPacket6({ eth: false, ip: { src: a, dst: a } }).subarray(8, 24));
  fuzzHandOvers(t, load(t), {
    bases: [buildPacket6(optSpec(sc6Header(secB))), tunnel(inner(ACK, 44000), { header: sc6Header(secB) })],
    span: 150,
    dst: [38, 16],
    show: hex,
    allowed: new Set([...LOCAL_PODS, OTHER_NODE_POD6, NODE6_B].map(hexOf)),
  });
});

test('node_sc_backends6: every backend of the IPv6 DSR TCP frontends with its node\'s IPv6 address; written to the IPv6 map only', (t) => {
  const base = services6()[0]!;
  const mixed = { ...base, backends: [...base.backends, { ...be(POD6_3, 9090), nodeIp: NODE_IP }, { ...be(POD6_3, 9191), nodeIp: '' }] };
  const entries = scBackendEntries([mixed, services6()[1]!]);
  t.deepEqual(
    entries.map((e) => `[${e.vip}]:${e.port} [${e.podIp}]:${e.podPort}@${e.nodeIp}`),
    [POD6_1, POD6_2, POD6_3].map((p) => `[${VIP6}]:80 [${p}]:8080@${NODE6}`).concat(`[${VIP6}]:80 [${OTHER_NODE_POD6}]:8080@${NODE6_B}`),
    'an IPv4 or unknown node address cannot be handed to; UDP frontends have none',
  );
  const k = encodeScBackendKey(entries[3]!);
  t.is(k.length, 40);
  const dp = load(t);
  const m = dp.obj.map(NODE_SC6_MAP);
  t.is(m.keys().length, 4, 'VIP6:80 (4); VIP6_ELSEWHERE:80 has no pod here, so no hand-over can start here');
  t.is(hex(m.lookup(k)!), hex(buildPacket6({ eth: false, ip: { src: NODE6_B, dst: NODE6_B } }).subarray(8, 24)));
  t.is(dp.obj.map('node_sc_backends').keys().length, 0, 'no IPv4 frontend: the IPv4 map is empty');
});

// ---------------------------------------------------------------- real FIB

test('IPv6 hand-over through the FIB: redirected to the secondary node\'s MAC (header dispatch and IP6IP6); no route: dropped and counted', async (t) => {
  const { ns, mac } = await scFabric(t, { nodeIp: NODE6, nodeB: NODE6_B, neigh: true });
  const dp = load(t, { bypass: false });
  const spec = optSpec(sc6Header(secB));
  const r = inNetns(ns, () => dp.ingress.testRun({ data: buildPacket6(spec) }));
  t.is(r.retval, TC_REDIRECT);
  const handed = plain(spec, { dst: OTHER_NODE_POD6, dport: 8080, hopLimit: 60 });
  t.is(hex(r.dataOut), hex(Buffer.concat([macBytes(NODE_B_MAC), macBytes(mac), handed.subarray(12)])));
  const ip6ip6 = inNetns(ns, () => dp.ingress.testRun({ data: tunnel(inner(ACK, 45000), { header: sc6Header(secB) }) }));
  t.is(ip6ip6.retval, TC_REDIRECT);
  t.is(hex(ip6ip6.dataOut.subarray(0, 6)), hex(macBytes(NODE_B_MAC)));
  t.like(dp.secondChanceCounters(), { sc_handed: 2, sc_drop_no_route: 0 });
  await nsRun(ns, ['ip', '-6', 'addr', 'flush', 'dev', 'fab0']);
  await nsRun(ns, ['ip', '-6', 'route', 'flush', 'dev', 'fab0']);
  const none = inNetns(ns, () => dp.ingress.testRun({ data: buildPacket6(spec) }));
  t.is(none.retval, TC_SHOT);
  t.is(dp.secondChanceCounters().sc_drop_no_route, 1);
});

// ---------------------------------------------------------------- edge → node A → node B

test('edge → node A → node B, IPv6: a flow whose SYN node B\'s pod saw, moved by a backend change, reaches that pod through node A (header dispatch and IP6IP6)', (t) => {
  for (const dispatch of ['ip-option', 'ipip'] as const) {
    let now = 1000n * 1_000_000_000n;
    const edge = openEdge(t, { hooks: ['xdp'], ipv6: true, address6: EDGE6, clockNs: () => now, secondChanceSeconds: 600, forward: { kind: 'gateway', gatewayMac: '02:00:00:00:00:99', ownMac: MAC_A } });
    setEdgeClock(edge, now);
    const a = load(t);
    const b = load(t, { nodeIp6: NODE6_B, name: 'node-b' });
    const before = [be(POD6_1, 8080), be(OTHER_NODE_POD6, 8080, true)];
    const after = [...before, be(POD6_2, 8080), be(POD6_3, 8080)];
    const svc = (bs: Backend[]) => service6({ frontend: { vip: VIP6, port: 80, protocol: 'TCP' }, dispatch, backends: bs });
    const target = (f: Buffer): string => hex(f.subarray(38, 54));
    const onB = hex(buildPacket6({ eth: false, ip: { src: dispatch === 'ipip' ? NODE6_B : OTHER_NODE_POD6, dst: '::' } }).subarray(8, 24));
    edge.applyServices([svc(before)]);
    // Clients whose SYN went to node B's pod under the old set: node B saw it.
    const ports: number[] = [];
    for (let p = 46000; p < 46400 && ports.length < 60; p++) {
      const syn = run(edge.program('xdp'), tcp6({ src: CLIENT6, dst: VIP6, sport: p }));
      if (target(syn.out) !== onB) continue;
      t.is(run(b.ingress, syn.out).retval, TC_UNSPEC);
      ports.push(p);
    }
    now += 5n * 1_000_000_000n;
    setEdgeClock(edge, now);
    edge.applyServices([svc(after)]);
    let viaA = 0;
    for (const p of ports) {
      // The ACK reaches this edge without an entry (an ECMP move).
      const ack = buildPacket6({ eth: { src: MAC_ROUTER, dst: MAC_B }, ip: { src: CLIENT6, dst: VIP6, hopLimit: 64 }, tcp: { sport: p, dport: 80, seq: 1, ack: 1, flags: ACK, payload: Buffer.from('x') } });
      const e = run(edge.program('xdp'), ack);
      if (target(e.out) === onB) continue; // the slot did not move: node B directly, as always
      viaA++;
      const ra = run(a.ingress, e.out);
      t.is(ra.retval, TC_UNSPEC, `port ${p}: node A hands it on (${JSON.stringify(a.secondChanceCounters())})`);
      const rb = run(b.ingress, fromSender(ra.out, MAC_OTHER));
      t.is(rb.retval, TC_UNSPEC);
      const ip = rb.out.subarray(14);
      t.deepEqual(parse6(ip).chain, [6], 'the pod gets a plain segment');
      t.is(hex(ip.subarray(24, 40)), hex(buildPacket6({ eth: false, ip: { src: OTHER_NODE_POD6, dst: '::' } }).subarray(8, 24)), `port ${p}: node B's pod, which owns it`);
      t.is(ip.readUInt16BE(40 + 2), 8080);
      t.true(verifyL4Checksum6(ip));
    }
    t.true(viaA > 0, `${dispatch}: some flows moved to node A's pods`);
    t.like(a.secondChanceCounters(), { sc_handed: viaA, sc_owned: 0 });
    t.is(edge.secondChance().stats.sc_sent, viaA);
  }
});
