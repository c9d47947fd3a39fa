// The node program's ICMP-error paths (both families) on non-linear skbs. tc hands
// the program an skb whose linear head may end anywhere (GRO, a NIC's header
// split); the program pulls what it reads. BPF_PROG_TEST_RUN builds tc skbs
// linear only (6.18 refuses a ctx_in with data_end set: EINVAL), so these
// frames cross a veth as real skbs whose head ends where the test says
// (test/lib/inject.py `linear`: an AF_PACKET socket with a virtio-net header),
// and the program's counters say what it made of them. Each frame is first
// sent with a head that holds all of it: the same bytes, linear, are handled.
import test from 'ava';
import { buildPacket, dsrOption } from '../lib/packets.js';
import { buildPacket6, type Packet6Spec } from '../lib/packets6.js';
import { inject } from '../lib/inject.js';
import { Cleanup, createNetns, nsRun, uniqueId, vethPair, waitFor } from '../lib/netns.js';
import { inNetns } from '../../src/datapath/loader.js';
import { localBackendSlot } from '../../src/datapath/node-maps.js';
import { CLIENT, CLIENT6, EDGE6, loadNode, loadNode6, MAC_A, MAC_B, POD1, POD6_1, POD6_2, POD6_3, run, TC_UNSPEC, VIP, VIP6 } from './node-fixtures.js';

const ROUTER6 = '2001:db8:7::1';
/** Bytes of an ICMPv6 error the program reads: its header, the quoted fixed header, the quoted ports. */
const ICMP6_READ = 8 + 40 + 4;
/** The kernel keeps a frame linear below a page: the quotes carry this much payload. */
const BIG = 4200;

async function lab(t: import('ava').ExecutionContext): Promise<{ E: string; N: string }> {
  const cleanup = new Cleanup();
  t.teardown(async () => {
    const errors = await cleanup.run();
    if (errors.length > 0) t.log(errors.map((e) => e.message).join('\n'));
  });
  const id = uniqueId(3);
  const E = `n6le-${id}`;
  const N = `n6ln-${id}`;
  await createNetns(E, cleanup);
  await createNetns(N, cleanup);
  await vethPair(E, 'e0', N, 'n0');
  for (const [ns, dev] of [[E, 'e0'], [N, 'n0']] as const) await nsRun(ns, ['ip', 'link', 'set', 'dev', dev, 'mtu', '9000']);
  return { E, N };
}

const syn: Omit<Packet6Spec, 'eth'> = { ip: { src: CLIENT6, dst: VIP6, hopLimit: 60 }, tcp: { sport: 40000, dport: 80, seq: 7, flags: { syn: true } } };

function tunnel(inner: Omit<Packet6Spec, 'eth'>): Buffer {
  return buildPacket6({ eth: { src: MAC_A, dst: MAC_B }, ip: { src: EDGE6, dst: 'fd00::21', hopLimit: 64 }, inner });
}

/** An ICMPv6 error (Packet Too Big, or with type 1 destination unreachable) quoting `quote`. */
function icmp6Error(src: string, dst: string, quote: Buffer, type = 2): Omit<Packet6Spec, 'eth'> {
  return { ip: { src, dst, hopLimit: 62 }, icmp6: { type, code: 0, body: Buffer.concat([Buffer.from([0, 0, 0x05, 0x00]), quote]) } };
}

test.serial('IP6IP6 carrying an ICMPv6 error, in a non-linear skb whose head ends inside what the program reads: steered to the flow\'s pod as a linear one is', async (t) => {
  t.timeout(60_000);
  const { E, N } = await lab(t);
  const dp = loadNode6(t);
  inNetns(N, () => dp.attach('n0'));
  t.teardown(() => inNetns(N, () => dp.detach()));
  t.is(run(dp.ingress, tunnel(syn)).retval, TC_UNSPEC, 'the flow and its pin');
  // The pod's reply as it left (from the VIP), quoted whole by a router on the client's path.
  const quote = buildPacket6({ eth: false, ip: { src: VIP6, dst: CLIENT6 }, tcp: { sport: 80, dport: 40000, seq: 5000, ack: 8, flags: { ack: true }, payload: Buffer.alloc(BIG, 7) } });
  const frame = tunnel(icmp6Error(ROUTER6, VIP6, quote));
  const icmpOff = 14 + 40 + 40; // Ethernet, outer and inner fixed headers
  dp.resetCounters();
  // Heads ending: after the whole frame (linear); inside the inner fixed
  // header; 8 bytes short of the quoted ports' end (past the 40 bytes once
  // pulled for an ICMPv6 header); 1 byte short.
  const heads = [frame.length, 60, icmpOff + ICMP6_READ - 8, icmpOff + ICMP6_READ - 1];
  let n = 0;
  for (const linear of heads) {
    await inject(E, { iface: 'e0', frames: [frame], linear });
    n++;
    await waitFor(() => dp.counters().in_ipip_icmp + dp.counters().in_ipip_not_ours >= n, 3000);
    t.like(dp.counters(), { in_ipip_icmp: n, in_ipip_not_ours: 0 }, `head of ${linear} bytes`);
  }
});

test.serial('a pod\'s ICMPv6 error in a non-linear skb whose head ends inside what the program reads: leaves as the VIP\'s, as a linear one does', async (t) => {
  t.timeout(60_000);
  const { N } = await lab(t);
  const dp = loadNode6(t);
  inNetns(N, () => dp.attach('n0'));
  t.teardown(() => inNetns(N, () => dp.detach()));
  t.is(run(dp.ingress, tunnel(syn)).retval, TC_UNSPEC, 'the flow');
  const pod = [POD6_1, POD6_2, POD6_3][localBackendSlot(CLIENT6, VIP6, 40000, 80, 'TCP', 3)]!;
  // What the pod received (DNATed), quoted whole in its destination unreachable.
  const quote = buildPacket6({ eth: false, ip: { src: CLIENT6, dst: pod }, tcp: { sport: 40000, dport: 8080, seq: 7, flags: { ack: true }, payload: Buffer.alloc(BIG, 7) } });
  const frame = buildPacket6({ eth: { src: MAC_B, dst: MAC_A }, ...icmp6Error(pod, CLIENT6, quote, 1) });
  const icmpOff = 14 + 40;
  dp.resetCounters();
  const heads = [frame.length, 30, icmpOff + ICMP6_READ - 8, icmpOff + ICMP6_READ - 1];
  let n = 0;
  for (const linear of heads) {
    // Sent from the node's own side of the link: through n0's tc egress.
    await inject(N, { iface: 'n0', frames: [frame], linear });
    n++;
    await waitFor(() => dp.counters().eg_icmp >= n, 3000);
    t.like(dp.counters(), { eg_icmp: n }, `head of ${linear} bytes`);
  }
});

test.serial('a pod\'s ICMP error (IPv4) in a non-linear skb whose head ends inside what the program reads: leaves as the VIP\'s, as a linear one does', async (t) => {
  // The IPv4 twin: 8 bytes of ICMP header were pulled, and the quoted
  // header and ports (20 + 4 more) that egress_icmp reads were not.
  t.timeout(60_000);
  const { N } = await lab(t);
  const dp = loadNode(t);
  inNetns(N, () => dp.attach('n0'));
  t.teardown(() => inNetns(N, () => dp.detach()));
  const opt = buildPacket({ eth: { src: MAC_A, dst: MAC_B }, ip: { src: CLIENT, dst: POD1, options: dsrOption(VIP, 53) }, udp: { sport: 3333, dport: 5353, payload: Buffer.from('q') } });
  t.is(run(dp.ingress, opt).retval, TC_UNSPEC, 'the flow');
  t.like(dp.flows()[0], { vip: VIP, vipPort: 53 });
  const quote = buildPacket({ eth: false, ip: { src: CLIENT, dst: POD1 }, udp: { sport: 3333, dport: 5353, payload: Buffer.alloc(BIG, 7) } });
  const frame = buildPacket({ eth: { src: MAC_B, dst: MAC_A }, ip: { src: POD1, dst: CLIENT, ttl: 64 }, icmp: { type: 3, code: 3, payload: quote } });
  const icmpOff = 14 + 20;
  dp.resetCounters();
  const heads = [frame.length, icmpOff + 8 + 20, icmpOff + 8 + 20 + 3];
  let n = 0;
  for (const linear of heads) {
    await inject(N, { iface: 'n0', frames: [frame], linear });
    n++;
    await waitFor(() => dp.counters().eg_icmp >= n, 3000);
    t.like(dp.counters(), { eg_icmp: n }, `head of ${linear} bytes`);
  }
});
