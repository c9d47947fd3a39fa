// tc mode (`datapath.xdp: off`) on real skbs: client namespace → edge
// namespace (edge_tc on the client-facing veth) → node namespace (the node
// program, a "pod" address with a TCP echo). The client's TCP stack sends
// TSO segments and the veth hands them over as they are: GSO skbs whose
// payload lies outside the linear head, with CHECKSUM_PARTIAL — what a
// GRO'd stream from a NIC looks like to a tc program. The edge must parse
// them by skb->len, DNAT them with skb-aware checksum updates and forward
// them unsegmented; the echo only completes if every segment arrives
// intact and every reply comes back from the VIP. Both families: IPv6 runs
// through edge_tc6 (the Destination Options header, IPv6-in-IPv6, ICMPv6
// Packet Too Big built from a pending-checksum skb).
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { inNetns } from '../../src/datapath/loader.js';
import { NodeDatapath } from '../../src/datapath/node-datapath.js';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';
import { type Cleanup, nsRun, waitFor } from '../lib/netns.js';
import { RIG_CLIENT, RIG_CLIENT6, RIG_EDGE6, RIG_NODE6, RIG_POD6, clientEdgeNode } from './client-edge-node.js';
import { inject } from '../lib/inject.js';
import { buildPacket } from '../lib/packets.js';
import { buildPacket6 } from '../lib/packets6.js';
import { openEdge, service, backend } from './edge-helpers.js';
import { NODE_NAME, backend as nodeBackend, service as nodeService } from './node-fixtures.js';

const VIP = '203.0.113.10';
const POD = '10.244.1.1';
const UDP_VIP = '203.0.113.11';
const VIP6 = '2001:db8:100::10';
const UDP_VIP6 = '2001:db8:100::11';

/** The addresses of one family's run. */
const FAMILY = {
  4: { vip: VIP, udpVip: UDP_VIP, pod: POD, nodeIp: '10.0.0.11', socat: 'TCP4', bracket: (a: string) => a, ipFlag: '-4', tunnelMtu: 1480 },
  6: { vip: VIP6, udpVip: UDP_VIP6, pod: RIG_POD6, nodeIp: RIG_NODE6, socat: 'TCP6', bracket: (a: string) => `[${a}]`, ipFlag: '-6', tunnelMtu: 1460 },
} as const;

/** How the client's segments reach the edge. */
interface Variant {
  family: 4 | 6;
  dispatch: 'ip-option' | 'ipip';
  /** TSO/GSO on the client: GSO skbs (true), or one wire-sized skb per segment (false). */
  clientTso: boolean;
  /** Checksum offload on the edge's client-facing veth: off makes the kernel complete a pending
   * checksum of what the edge sends back out of it (skb_checksum_help), so the client verifies it. */
  edgeTxCsum: boolean;
}

interface Lab {
  C: string;
  E: string;
  N: string;
  dp: EdgeDatapath;
  node: NodeDatapath;
  cleanup: Cleanup;
}

/** client C → edge E (edge_tc on e0, facing the client) → node N (the node program, the pod address). */
async function lab(t: ExecutionContext, v: Variant): Promise<Lab> {
  const { dispatch } = v;
  const { C, E, N, cleanup } = await clientEdgeNode(t, 'et', POD);
  // The client keeps checksum offload on (its segments carry a pending checksum, CHECKSUM_PARTIAL);
  // with TSO they reach the edge as GSO skbs, without it as one full-sized skb per segment.
  if (!v.clientTso) await nsRun(C, ['ethtool', '-K', 'c0', 'tso', 'off', 'gso', 'off']);
  if (!v.edgeTxCsum) await nsRun(E, ['ethtool', '-K', 'e0', 'tx', 'off']);

  const f = FAMILY[v.family];
  const dp = openEdge(t, { forward: { kind: 'fib' }, address: '10.0.0.1', hooks: ['tc'], ...(v.family === 6 ? { ipv6: true, address6: RIG_EDGE6 } : {}) });
  const be = [backend(1, { ip: f.pod, port: 8080, nodeIp: f.nodeIp })];
  dp.applyServices([
    service({ frontend: { vip: f.vip, port: 80, protocol: 'TCP' }, dispatch, backends: be }),
    service({ service: 'default/dns', frontend: { vip: f.udpVip, port: 53, protocol: 'UDP' }, dispatch, backends: be }),
  ]);
  inNetns(E, () => dp.attach('e0', 'tc'));
  cleanup.add('detach edge', () => inNetns(E, () => dp.detach()));

  const node = NodeDatapath.open({ maxFlows: 4096, nodeIp: '10.0.0.11', nodeIp6: RIG_NODE6, edgeSources: ['10.0.0.1', RIG_EDGE6] });
  cleanup.add('node datapath', () => node.close());
  node.applyServices([nodeService(f.vip, 80, 'TCP', [nodeBackend(f.pod, 8080)])], { name: NODE_NAME });
  inNetns(N, () => node.attach('n0'));
  cleanup.add('detach node', () => inNetns(N, () => node.detach()));
  // The edge knows the node's link-layer address (in service its probes and traffic resolve it): an
  // IPIP packet handed to the stack while it resolves carries the edge's own source and is a martian there.
  // (The node program learns the edge from that ARP, or Neighbor Solicitation.)
  await nsRun(E, ['ping', f.ipFlag, '-c', '1', '-W', '2', f.nodeIp]);
  return { C, E, N, dp, node, cleanup };
}

async function echoThroughEdge(t: ExecutionContext, v: Variant): Promise<void> {
  t.timeout(60_000);
  const { C, N, dp, node, cleanup } = await lab(t, v);
  const f = FAMILY[v.family];

  // socat's PIPE is a pipe it both writes and reads: with its default 8 KiB blocks a write into a pipe
  // with one free page blocks, and nothing drains the pipe while it does (server Recv-Q full, window 0,
  // the stream stalls with nothing dropped). Blocks of one page always fit a pipe poll() calls writable.
  const echo = spawn('ip', ['netns', 'exec', N, 'socat', '-b4096', `${f.socat}-LISTEN:8080,bind=${f.bracket(f.pod)},reuseaddr,fork`, 'PIPE'], { stdio: 'ignore' });
  cleanup.add('echo', () => echo.kill('SIGTERM'));
  await waitFor(async () => (await nsRun(N, ['ss', '-ltnH', 'sport = :8080'])).stdout.trim() !== '', 5000);

  const payload = Buffer.alloc(4 << 20);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7 + (i >> 10)) & 255;
  // socat's inactivity limit must outlast TCP's retransmission backoff while
  // the path MTU is learnt (a lost or late first segment after
  // fragmentation-needed waits 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s on a busy host);
  // every byte must still come back, in order, within the 30 s below.
  // -t: after stdin's EOF socat waits only 0.5 s (its default) for the rest of the echo; give it the test's time.
  const client = spawn('ip', ['netns', 'exec', C, 'socat', '-T15', '-t30', '-', `${f.socat}:${f.bracket(f.vip)}:80,connect-timeout=3`], { stdio: ['pipe', 'pipe', 'pipe'] });
  const got: Buffer[] = [];
  let gotLen = 0;
  client.stdout.on('data', (d: Buffer) => {
    got.push(d);
    gotLen += d.length;
    if (gotLen >= payload.length) client.kill('SIGTERM');
  });
  let clientErr = '';
  client.stderr.on('data', (d: Buffer) => (clientErr += d.toString()));
  client.stdin.on('error', () => undefined); // socat may give up before it read everything
  client.stdin.end(payload);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      client.kill('SIGKILL');
      resolve();
    }, 30_000);
    client.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  const echoed = Buffer.concat(got);
  const c = dp.counters();
  t.log(`echoed ${echoed.length} of ${payload.length} bytes ${clientErr.trim()}; node ${JSON.stringify(node.counters())}; edge ${JSON.stringify(c.stats)}; service packets ${c.services[0]?.packets}, bytes ${c.services[0]?.bytes}`);
  t.is(echoed.length, payload.length);
  t.true(echoed.equals(payload), 'every byte came back in order');
  t.true((c.services[0]?.bytes ?? 0) >= payload.length, 'the bytes went through the edge program');
  if (v.clientTso) {
    // Segments were merged: fewer packets than a 1500-byte MTU would need for the bytes counted.
    t.true((c.services[0]?.packets ?? 0) < payload.length / 1448, `${c.services[0]?.packets} packets: GSO skbs, not wire-sized segments`);
  } else {
    // 1500-byte segments do not fit the tunnel (1500 + 20, or + 40): the edge answered
    // fragmentation-needed (MTU 1480) / Packet Too Big (MTU 1460), the client's kernel took it (its
    // route to the VIP now says so) and sent smaller ones.
    t.true(c.stats.icmp_too_big_sent >= 1, 'fragmentation-needed / Packet Too Big sent');
    t.is(c.stats.drop_too_big_icmp_fail, 0);
    t.regex((await nsRun(C, ['ip', f.ipFlag, 'route', 'get', f.vip])).stdout, new RegExp(`\\bmtu ${f.tunnelMtu}\\b`));
  }
  t.is(node.counters().drop_untrusted_source, 0);
}

for (const family of [4, 6] as const) {
  for (const dispatch of ['ip-option', 'ipip'] as const) {
    test.serial(`tc mode, IPv${family} (${dispatch}): a TSO/GSO stream whose payload is outside the linear head is forwarded intact both ways`, (t) =>
      echoThroughEdge(t, { family, dispatch, clientTso: true, edgeTxCsum: true }));
  }
}

// A sender on the same host (over a veth) hands the edge skbs whose L4 checksum is still pending
// (CHECKSUM_PARTIAL). Full-sized ones do not fit the IPIP tunnel: the fragmentation-needed built
// from them must reach the client, whether or not the kernel completes that pending checksum on the
// way out (edge_icmp.h; for IPv6 the Packet Too Big of edge_dsr6.h).
for (const family of [4, 6] as const) {
  for (const edgeTxCsum of [true, false]) {
    test.serial(`tc mode, IPv${family} (ipip), client without TSO${edgeTxCsum ? '' : ', edge veth without checksum offload'}: full-sized segments from a local sender get ${family === 4 ? 'fragmentation-needed' : 'Packet Too Big'} and the stream continues at the tunnel's MTU`, (t) =>
      echoThroughEdge(t, { family, dispatch: 'ipip', clientTso: false, edgeTxCsum }));
  }
}

// The same for UDP: a datagram from a local sender carries a pending checksum too (its quote's 8 bytes
// end with the UDP checksum field, which the kernel may complete on the way out).
// (IPv6: a 1500-byte datagram leaves the client whole; the edge's Packet Too Big quotes 128 bytes,
// the UDP checksum field among them.)
// The socket stays open until the kernel has the new path MTU (or 5 s): an ICMP error that arrives
// after the sender closed finds no socket, and the kernel then discards it without touching the
// path MTU (IPv6 always; under load the error can be late) — a flaky "the client took the error".
const holdUntilMtu = (level: number, opt: number, mtu: number): string =>
  `import time\nd = time.time() + 5\nwhile time.time() < d and s.getsockopt(${level}, ${opt}) > ${mtu}: time.sleep(0.02)\nprint(s.getsockopt(${level}, ${opt}), round(5 - (d - time.time()), 2))`;
const UDP_SEND = {
  // 1472 bytes of payload: a 1500-byte datagram, DF (IP_PMTUDISC_DO), sent through the kernel's UDP socket; IP_MTU (14).
  4: `import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.IPPROTO_IP, 10, 2); s.connect(('${UDP_VIP}', 53)); s.send(bytes(1472))\n${holdUntilMtu(0, 14, 1480)}`,
  // 1452 bytes of payload: a 1500-byte datagram, IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DO (never fragmented by the sender); IPV6_MTU (24).
  6: `import socket; s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.setsockopt(socket.IPPROTO_IPV6, 23, 2); s.connect(('${UDP_VIP6}', 53)); s.send(bytes(1452))\n${holdUntilMtu(41, 24, 1460)}`,
};
for (const family of [4, 6] as const) {
  for (const edgeTxCsum of [true, false]) {
    test.serial(`tc mode, IPv${family} (ipip): a full-sized UDP datagram${family === 4 ? ' with DF' : ''} from a local sender gets ${family === 4 ? 'fragmentation-needed' : 'Packet Too Big'}${edgeTxCsum ? '' : ' (edge veth without checksum offload)'}`, async (t) => {
      t.timeout(30_000);
      const f = FAMILY[family];
      const { C, dp } = await lab(t, { family, dispatch: 'ipip', clientTso: true, edgeTxCsum });
      const mtu = new RegExp(`\\bmtu ${f.tunnelMtu}\\b`);
      t.log('sender: path MTU, seconds held', (await nsRun(C, ['/usr/bin/python3', '-c', UDP_SEND[family]])).stdout.trim());
      await waitFor(async () => mtu.test((await nsRun(C, ['ip', f.ipFlag, 'route', 'get', f.udpVip])).stdout), 5000);
      const c = dp.counters().stats;
      t.log(`edge icmp_too_big_sent ${c.icmp_too_big_sent}, drop_too_big_icmp_fail ${c.drop_too_big_icmp_fail}`);
      t.is(c.icmp_too_big_sent, 1);
      t.regex((await nsRun(C, ['ip', f.ipFlag, 'route', 'get', f.udpVip])).stdout, mtu, 'the client took the error');
    });
  }
}

// A tagged frame reaches tc without its tag: the kernel moved it to skb->vlan_tci before tc ingress
// runs. It is still a tagged packet to a VIP, dropped and counted as in XDP, where the tag is in the
// frame (DROP_VLAN; the uplink is untagged, attach to the VLAN device instead) — never dispatched.
for (const family of [4, 6] as const) {
  test.serial(`tc mode, IPv${family}: a VLAN-tagged datagram to a VIP is dropped (drop_vlan), never forwarded`, async (t) => {
    t.timeout(30_000);
    const f = FAMILY[family];
    const { C, E, dp } = await lab(t, { family, dispatch: 'ip-option', clientTso: true, edgeTxCsum: true });
    const macOf = async (ns: string, dev: string): Promise<string> => (JSON.parse((await nsRun(ns, ['ip', '-j', 'link', 'show', dev])).stdout) as Array<{ address: string }>)[0]!.address;
    const eth = { src: await macOf(C, 'c0'), dst: await macOf(E, 'e0') };
    const untagged =
      family === 4
        ? buildPacket({ eth, ip: { src: RIG_CLIENT, dst: f.udpVip }, udp: { sport: 5353, dport: 53, payload: Buffer.from('tagged') } })
        : buildPacket6({ eth, ip: { src: RIG_CLIENT6, dst: f.udpVip }, udp: { sport: 5353, dport: 53, payload: Buffer.from('tagged') } });
    // VLAN 10 (802.1Q) between the MAC addresses and the EtherType; the same frame untagged is forwarded.
    const tagged = Buffer.concat([untagged.subarray(0, 12), Buffer.from('8100000a', 'hex'), untagged.subarray(12)]);
    await inject(C, { iface: 'c0', frames: [tagged], waitSeconds: 0 });
    await waitFor(async () => dp.counters().stats.drop_vlan > 0, 5000);
    const c = dp.counters();
    t.is(c.stats.drop_vlan, 1);
    t.is(c.services.reduce((n, s) => n + s.packets, 0), 0, 'nothing dispatched');
    await inject(C, { iface: 'c0', frames: [untagged], waitSeconds: 0 });
    await waitFor(async () => dp.counters().services.reduce((n, s) => n + s.packets, 0) > 0, 5000);
    t.is(dp.counters().stats.drop_vlan, 1);
  });
}
