// The node's second chance (docs/second-chance.md) through
// BPF_PROG_TEST_RUN: a packet an edge sent with a secondary backend is
// delivered when this node's pod owns the flow, handed to the secondary's
// node when it does not, and dropped (counted) when it is forged.
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { buildPacket, dsrOption, parsePacket, verifyIpv4Checksum, verifyL4Checksum, type PacketSpec, type TcpSpec } from '../lib/packets.js';
import { FLOW_CLOSING, FLOW_FIN_CLIENT, FLOW_FIN_POD, localBackendSlot } from '../../src/datapath/node-maps.js';
import { macBytes } from '../../src/datapath/node-maps.js';
import { scBackendEntries } from '../../src/datapath/node-second-chance.js';
import type { NodeDatapath, NodeDatapathOptions } from '../../src/datapath/node-datapath.js';
import { CLIENT, EDGE_IP, MAC_A, MAC_B, MAC_OTHER, MAC_ROUTER, NODE_IP, OTHER_NODE_POD, POD1, POD2, TC_SHOT, TC_UNSPEC, VIP, VIP2, fromSender, loadNode, run, standardServices } from './node-fixtures.js';
import { NODE_B_MAC, TC_REDIRECT, bypassScFib, fuzzHandOvers, scFabric, scOption } from './second-chance-helpers.js';
import { inNetns } from '../../src/datapath/loader.js';
import { nsRun } from '../lib/netns.js';

const NODE_B_IP = '192.0.2.99'; // OTHER_NODE_POD's node in the fixtures
const eth = { src: MAC_A, dst: MAC_B };
const ACK = { ack: true };
const secB = { vip: VIP, port: 80, secIp: OTHER_NODE_POD, secPort: 8080, secNode: NODE_B_IP };

function hex(b: Buffer): string {
  return b.toString('hex');
}

/** A node whose hand-overs come back from the program as bytes (FIB bypassed). */
function loadBypassed(t: ExecutionContext, opts: NodeDatapathOptions = {}, trust: { edgeMac?: string | null } = {}): NodeDatapath {
  return bypassScFib(loadNode(t, { nodeIp: NODE_IP, ...opts }, trust));
}

/** ip-option dispatch: client → primary pod (DNATed), with an option. */
function optSpec(option: Buffer, tcp: Partial<TcpSpec> = {}, ip: { dst?: string; src?: string } = {}, ethr = eth): PacketSpec {
  return {
    eth: ethr,
    ip: { src: ip.src ?? CLIENT, dst: ip.dst ?? POD1, ttl: 61, id: 0x1234, df: true, options: option },
    tcp: { sport: 40000, dport: 8080, seq: 1000, ack: 2000, flags: ACK, payload: Buffer.from('data'), ...tcp },
  };
}

function plain(spec: PacketSpec, over: { dst?: string; dport?: number; ttl?: number } = {}): Buffer {
  const { options: _o, ...ip } = spec.ip;
  return buildPacket({ ...spec, ip: { ...ip, ...(over.dst ? { dst: over.dst } : {}), ...(over.ttl ? { ttl: over.ttl } : {}) }, tcp: { ...spec.tcp!, ...(over.dport ? { dport: over.dport } : {}) } });
}

function wellFormed(t: ExecutionContext, frame: Buffer): void {
  const ip = frame.subarray(14);
  t.true(verifyIpv4Checksum(ip), 'IPv4 header checksum');
  t.true(verifyL4Checksum(ip), 'L4 checksum');
  t.is(parsePacket(frame).ip.totalLength, frame.length - 14);
}

test('ip-option, the pod owns the flow (it saw the SYN): delivered, option removed, exact bytes', (t) => {
  const dp = loadBypassed(t);
  const syn = optSpec(dsrOption(VIP, 80), { flags: { syn: true }, ack: 0, payload: Buffer.alloc(0) });
  t.is(run(dp.ingress, buildPacket(syn)).retval, TC_UNSPEC);
  const spec = optSpec(scOption(secB));
  const r = run(dp.ingress, buildPacket(spec));
  t.is(r.retval, TC_UNSPEC);
  t.is(hex(r.out), hex(plain(spec)));
  wellFormed(t, r.out);
  t.like(dp.secondChanceCounters(), { sc_owned: 1, sc_handed: 0 });
});

test('ip-option, the pod does not own the flow: handed to the secondary pod on its node, no option, TTL − 1, exact bytes', (t) => {
  const dp = loadBypassed(t);
  const spec = optSpec(scOption(secB));
  const r = run(dp.ingress, buildPacket(spec));
  t.is(r.retval, TC_UNSPEC); // FIB bypassed: the rewritten packet goes to the stack
  t.is(hex(r.out), hex(plain(spec, { dst: OTHER_NODE_POD, dport: 8080, ttl: 60 })));
  wellFormed(t, r.out);
  t.like(dp.secondChanceCounters(), { sc_owned: 0, sc_handed: 1, sc_fib_bypass: 1 });
  t.is(dp.flows().length, 0, 'a hand-over creates no state');
  // The handed packet, were it to come back to a node, carries no option: it is a plain segment.
  const again = run(dp.ingress, r.out);
  t.is(again.retval, TC_UNSPEC);
  t.is(hex(again.out), hex(r.out));
  t.is(dp.secondChanceCounters().sc_handed, 1, 'never handed twice');
});

test('ip-option, the secondary is another pod of this node: re-addressed to it locally', (t) => {
  const dp = loadBypassed(t);
  const spec = optSpec(scOption({ vip: VIP, port: 80, secIp: POD2, secPort: 8080, secNode: NODE_IP }));
  const r = run(dp.ingress, buildPacket(spec));
  t.is(r.retval, TC_UNSPEC);
  t.is(hex(r.out), hex(plain(spec, { dst: POD2, dport: 8080 })));
  wellFormed(t, r.out);
  t.like(dp.secondChanceCounters(), { sc_handed_local: 1, sc_handed: 0 });
});

test('forged or malformed second-chance packets are dropped and counted, never handed', (t) => {
  const dp = loadBypassed(t);
  const drop = (frame: Buffer, what: string) => t.is(run(dp.ingress, frame).retval, TC_SHOT, what);
  // Not from an edge's link-layer address (a client behind a router, another host).
  for (const src of [MAC_ROUTER, MAC_OTHER]) drop(buildPacket(optSpec(scOption(secB), {}, {}, { src, dst: MAC_B })), `sender ${src}`);
  t.is(dp.counters().drop_untrusted_source, 2);
  // A secondary that is no backend of the frontend: an arbitrary address, a host port, another frontend's pod.
  drop(buildPacket(optSpec(scOption({ ...secB, secIp: '10.9.9.9' }))), 'arbitrary address');
  drop(buildPacket(optSpec(scOption({ ...secB, secPort: 22 }))), 'another port of the pod');
  drop(buildPacket(optSpec(scOption({ ...secB, secIp: POD1, secPort: 5353 }))), 'a pod of another frontend (VIP:53/UDP)');
  drop(buildPacket(optSpec(scOption({ ...secB, vip: VIP2 }), {}, {})), 'VIP2 has no pod here: wrong backend for the primary');
  // Named on the wrong node.
  drop(buildPacket(optSpec(scOption({ ...secB, secNode: '192.0.2.50' }))), 'wrong node');
  t.like(dp.secondChanceCounters(), { sc_drop_not_backend: 4, sc_handed: 0 });
  t.is(dp.counters().drop_wrong_backend, 1);
  // Shapes an edge never sends: on a SYN, on UDP, with HANDED, to a pod that is no backend here.
  drop(buildPacket(optSpec(scOption(secB), { flags: { syn: true }, ack: 0 })), 'SYN');
  drop(buildPacket({ eth, ip: { src: CLIENT, dst: POD1, options: scOption(secB) }, udp: { sport: 5353, dport: 5353, payload: Buffer.from('x') } }), 'UDP');
  drop(buildPacket(optSpec(scOption({ ...secB, flags: 1 }))), 'HANDED on ip-option');
  drop(buildPacket(optSpec(scOption(secB), {}, { dst: '10.244.1.77' })), 'primary no pod of ours');
  t.like(dp.secondChanceCounters(), { sc_drop_malformed: 2, sc_drop_handed: 1, sc_handed: 0, sc_owned: 0 });
  t.is(dp.counters().drop_wrong_backend, 2);
  t.is(dp.flows().length, 0);
});

test('node_sc_backends: every backend of the DSR TCP frontends, with its node; UDP and SNAT frontends none', (t) => {
  const entries = scBackendEntries([...standardServices(), { ...standardServices()[2]!, service: 'ns/snat', mode: 'snat', frontend: { vip: '203.0.113.50', port: 80, protocol: 'TCP' } }]);
  t.deepEqual(
    entries.map((e) => `${e.vip}:${e.port} ${e.podIp}:${e.podPort}@${e.nodeIp}`),
    [
      `${VIP}:80 10.244.1.5:8080@${NODE_IP}`,
      `${VIP}:80 10.244.1.6:8080@${NODE_IP}`,
      `${VIP}:80 10.244.1.7:8080@${NODE_IP}`,
      `${VIP}:80 ${OTHER_NODE_POD}:8080@${NODE_B_IP}`,
      `${VIP2}:80 ${OTHER_NODE_POD}:8080@${NODE_B_IP}`,
    ],
  );
});

test('node_sc_backends: an endpoint whose node has no known address (nodeIp empty) or an IPv6 one is left out, not thrown on', (t) => {
  const base = standardServices()[0]!;
  const svc = { ...base, backends: [{ ...base.backends[0]!, nodeIp: '' }, { ...base.backends[0]!, ip: '10.244.9.9', nodeIp: '2001:db8::9' }, base.backends[1]!] };
  const entries = scBackendEntries([svc]);
  t.deepEqual(entries.map((e) => `${e.podIp}@${e.nodeIp}`), [`${base.backends[1]!.ip}@${base.backends[1]!.nodeIp}`]);
});

// ---------------------------------------------------------------- ipip

function inner(flags: { syn?: boolean; ack?: boolean }, sport = 41000): Omit<PacketSpec, 'eth'> {
  return { ip: { src: CLIENT, dst: VIP, ttl: 60, id: 77 }, tcp: { sport, dport: 80, seq: 9, ack: flags.ack ? 10 : 0, flags } };
}

function ipipFrame(i: Omit<PacketSpec, 'eth'>, o: { option?: Buffer; dst?: string; src?: string; ttl?: number; eth?: PacketSpec['eth'] } = {}): Buffer {
  return buildPacket({ eth: o.eth ?? eth, ip: { src: o.src ?? EDGE_IP, dst: o.dst ?? NODE_IP, ttl: o.ttl ?? 63, ...(o.option ? { options: o.option } : {}) }, inner: i });
}

test('ipip, the node owns the flow (its pin from the SYN): decapsulated and DNATed as always, exact bytes', (t) => {
  const dp = loadBypassed(t);
  const pods = ['10.244.1.5', '10.244.1.6', '10.244.1.7'];
  const pod = pods[localBackendSlot(CLIENT, VIP, 41000, 80, 'TCP', 3)]!;
  t.is(run(dp.ingress, ipipFrame(inner({ syn: true }))).retval, TC_UNSPEC);
  const i = inner(ACK);
  const r = run(dp.ingress, ipipFrame(i, { option: scOption(secB) }));
  t.is(r.retval, TC_UNSPEC);
  t.is(hex(r.out), hex(buildPacket({ eth, ip: { ...i.ip, dst: pod }, tcp: { ...i.tcp!, dport: 8080 } })));
  wellFormed(t, r.out);
  t.like(dp.secondChanceCounters(), { sc_owned: 1, sc_handed: 0 });
});

test('ipip, no pin here: the outer header goes on to the secondary node with HANDED, TTL − 1; that node delivers it into its flow', (t) => {
  const a = loadBypassed(t);
  const i = inner(ACK);
  const r = run(a.ingress, ipipFrame(i, { option: scOption(secB) }));
  t.is(r.retval, TC_UNSPEC);
  const handed = ipipFrame(i, { option: scOption({ ...secB, flags: 1 }), dst: NODE_B_IP, ttl: 62 });
  t.is(hex(r.out), hex(handed));
  t.true(verifyIpv4Checksum(r.out.subarray(14)));
  t.like(a.secondChanceCounters(), { sc_handed: 1 });
  t.is(a.fwdEntries().length, 0, 'no pin is created on the primary');

  // Node B: OTHER_NODE_POD's node; it pinned the flow at the SYN the old edge sent it.
  const b = loadNode(t, { nodeIp: NODE_B_IP });
  b.applyServices(standardServices(), { name: 'node-b' });
  t.is(run(b.ingress, ipipFrame(inner({ syn: true }), { dst: NODE_B_IP })).retval, TC_UNSPEC);
  // The hand-over arrives from node A's MAC, which is no edge.
  const d = run(b.ingress, fromSender(r.out, MAC_OTHER));
  t.is(d.retval, TC_UNSPEC);
  t.is(hex(d.out), hex(buildPacket({ eth: { src: MAC_OTHER, dst: MAC_B }, ip: { ...i.ip, dst: OTHER_NODE_POD }, tcp: { ...i.tcp!, dport: 8080 } })));
  wellFormed(t, d.out);
  t.like(b.secondChanceCounters(), { sc_handed_in: 1, sc_handed: 0 });
});

test('ipip hand-overs are never handed again and never create a flow; forged ones are dropped', (t) => {
  const b = loadNode(t, { nodeIp: NODE_B_IP });
  b.applyServices(standardServices(), { name: 'node-b' });
  const i = inner(ACK, 42000);
  const handedEth = { src: MAC_OTHER, dst: MAC_B };
  // HANDED for a flow node B does not own: dropped (not handed on: no loop).
  const noPin = run(b.ingress, ipipFrame(i, { option: scOption({ ...secB, flags: 1 }), dst: NODE_B_IP, eth: handedEth }));
  t.is(noPin.retval, TC_SHOT);
  t.like(b.secondChanceCounters(), { sc_drop_handed: 1, sc_handed: 0, sc_handed_in: 0 });
  t.is(b.fwdEntries().length, 0);
  // HANDED with an outer source that is no edge: untrusted.
  t.is(run(b.ingress, ipipFrame(i, { option: scOption({ ...secB, flags: 1 }), dst: NODE_B_IP, src: '192.0.2.200', eth: handedEth })).retval, TC_SHOT);
  t.is(b.counters().drop_untrusted_source, 1);
  // Not HANDED, not from an edge's MAC: untrusted (a forger on the link cannot start a hand-over).
  t.is(run(b.ingress, ipipFrame(i, { option: scOption(secB), eth: handedEth })).retval, TC_SHOT);
  t.is(b.counters().drop_untrusted_source, 2);
  // From the edge, but naming a secondary that is no backend of the frontend.
  const a = loadBypassed(t);
  t.is(run(a.ingress, ipipFrame(i, { option: scOption({ ...secB, secIp: '10.9.9.9' }) })).retval, TC_SHOT);
  t.is(run(a.ingress, ipipFrame(i, { option: scOption({ ...secB, secNode: '192.0.2.50' }) })).retval, TC_SHOT);
  // An inner packet to another frontend than the option names, or a SYN: malformed.
  t.is(run(a.ingress, ipipFrame({ ...i, ip: { ...i.ip, dst: VIP2 } }, { option: scOption(secB) })).retval, TC_SHOT);
  t.is(run(a.ingress, ipipFrame(inner({ syn: true }, 42001), { option: scOption(secB) })).retval, TC_SHOT);
  t.like(a.secondChanceCounters(), { sc_drop_not_backend: 2, sc_drop_malformed: 2, sc_handed: 0 });
  // TTL runs out: dropped, not handed.
  t.is(run(a.ingress, ipipFrame(i, { option: scOption(secB), ttl: 1 })).retval, TC_SHOT);
  t.like(a.secondChanceCounters(), { sc_drop_ttl: 1, sc_handed: 0 });
});

test('a hand-over from a sender that could not bring the edges\' IPIP (its outer source the only sign of an edge) never moves the flow towards its end', (t) => {
  // A hand-over keeps the edge's outer source and comes from a node's MAC,
  // which no node trusts: anyone who can send an edge's address as outer
  // source (a pod on another node on this link, say) could wrap the
  // client's FIN in a forged HANDED header. It marked the flow, the pod's
  // own FIN (a half-close) then made it CLOSING, and after the close timeout
  // of quiet the pod's replies left from its own address — what a bare FIN
  // may not do to an ipip flow.
  const SEC = 1_000_000_000n;
  const b = loadNode(t, { nodeIp: NODE_B_IP, closeSeconds: 10 });
  b.applyServices(standardServices(), { name: 'node-b' });
  const t0 = 1000n * SEC;
  b.setTestClock(t0);
  t.is(run(b.ingress, ipipFrame(inner({ syn: true }), { dst: NODE_B_IP })).retval, TC_UNSPEC);
  const key = { podIp: OTHER_NODE_POD, podPort: 8080, clientIp: CLIENT, clientPort: 41000, proto: 'TCP' as const };
  const handedFrom = (flags: TcpSpec['flags'], src: string): Buffer => {
    const i = inner({});
    return ipipFrame({ ...i, tcp: { ...i.tcp!, flags } }, { option: scOption({ ...secB, flags: 1 }), dst: NODE_B_IP, eth: { src, dst: MAC_B } });
  };
  for (const flags of [{ fin: true, ack: true }, { rst: true }]) {
    const r = run(b.ingress, handedFrom(flags, MAC_OTHER));
    t.is(r.retval, TC_UNSPEC, 'still delivered: the pod\'s stack judges it');
    t.is(parsePacket(r.out).ip.dst, OTHER_NODE_POD);
    t.is(b.flow(key)!.flags, 0, `${JSON.stringify(flags)} handed from a non-edge MAC left the flow alone`);
  }
  // The pod half-closes; after a quiet spell its next segment still leaves as the VIP.
  const reply = (flags: TcpSpec['flags'], payload = Buffer.alloc(0)): PacketSpec => ({
    eth: { src: MAC_B, dst: MAC_A },
    ip: { src: OTHER_NODE_POD, dst: CLIENT, ttl: 64, id: 0x4321, df: true },
    tcp: { sport: 8080, dport: 41000, seq: 5000, ack: 10, flags, payload },
  });
  run(b.egress, buildPacket(reply({ fin: true, ack: true })));
  b.setTestClock(t0 + 11n * SEC);
  const later = reply({ ack: true, psh: true }, Buffer.from('tail'));
  t.is(hex(run(b.egress, buildPacket(later)).out), hex(buildPacket({ ...later, ip: { ...later.ip, src: VIP }, tcp: { ...later.tcp!, sport: 80 } })));
  // The same hand-over from a sender that may bring the edges' IPIP itself counts.
  run(b.ingress, handedFrom({ fin: true, ack: true }, MAC_A));
  t.is(b.flow(key)!.flags, FLOW_FIN_POD | FLOW_FIN_CLIENT | FLOW_CLOSING);
});

// ---------------------------------------------------------------- real FIB

/** A namespace where node B (192.0.2.99) is on fab0; `neigh`: its MAC is known. */
function fabric(t: ExecutionContext, neigh: boolean): Promise<{ ns: string; mac: string }> {
  return scFabric(t, { nodeIp: NODE_IP, nodeB: NODE_B_IP, neigh });
}

test('hand-over through the FIB: redirected to the secondary node\'s MAC (ip-option and ipip); unresolved neighbour: redirected for the kernel to resolve', async (t) => {
  const { ns, mac } = await fabric(t, true);
  const dp = loadNode(t, { nodeIp: NODE_IP });
  const spec = optSpec(scOption(secB));
  const r = inNetns(ns, () => dp.ingress.testRun({ data: buildPacket(spec) }));
  t.is(r.retval, TC_REDIRECT);
  const handed = plain(spec, { dst: OTHER_NODE_POD, dport: 8080, ttl: 60 });
  t.is(hex(r.dataOut), hex(Buffer.concat([macBytes(NODE_B_MAC), macBytes(mac), handed.subarray(12)])));
  const ipip = inNetns(ns, () => dp.ingress.testRun({ data: ipipFrame(inner(ACK, 43000), { option: scOption(secB) }) }));
  t.is(ipip.retval, TC_REDIRECT);
  t.is(parsePacket(ipip.dataOut).eth!.dst, NODE_B_MAC);
  t.like(dp.secondChanceCounters(), { sc_handed: 2, sc_drop_no_route: 0 });

  const unresolved = await fabric(t, false);
  const u = inNetns(unresolved.ns, () => dp.ingress.testRun({ data: buildPacket(spec) }));
  t.is(u.retval, TC_REDIRECT, 'bpf_redirect_neigh: the neighbour subsystem resolves node B');
  t.is(hex(u.dataOut.subarray(14)), hex(handed.subarray(14)));
  // No route at all to node B: dropped and counted, never sent somewhere else.
  await nsRun(unresolved.ns, ['ip', 'addr', 'flush', 'dev', 'fab0']);
  const none = inNetns(unresolved.ns, () => dp.ingress.testRun({ data: buildPacket(spec) }));
  t.is(none.retval, TC_SHOT);
  t.is(dp.secondChanceCounters().sc_drop_no_route, 1);
});

test('fuzz: 3000 mutated second-chance packets from an edge never reach an address that is no backend of the frontend', (t) => {
  // Mutated: the IP header, the option or the first L4 bytes; the IPv4 destination read at 30.
  fuzzHandOvers(t, loadBypassed(t), {
    bases: [buildPacket(optSpec(scOption(secB))), ipipFrame(inner(ACK, 44000), { option: scOption(secB) })],
    span: 80,
    dst: [30, 4],
    show: (a) => a.join('.'),
    allowed: new Set(['10.244.1.5', '10.244.1.6', '10.244.1.7', OTHER_NODE_POD, NODE_B_IP]),
  });
});
