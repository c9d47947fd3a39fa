// Live path: client namespace → edge namespace (edge_xdp attached natively
// on the client-facing veth) → node namespace. Real frames, real FIB and
// neighbour resolution, XDP_REDIRECT between veths. The node side captures
// what arrives (tcpdump) and a UDP socket on the pod address receives the
// datagrams (the kernel ignores the unknown DSR option).
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BpfObject, inNetns } from '../../src/datapath/loader.js';
import { bpfObjectPath } from '../../src/assets.js';
import { findDsrOption, parsePacket, verifyIpv4Checksum, verifyL4Checksum, type ParsedPacket } from '../lib/packets.js';
import { nsRun, sleep, waitFor } from '../lib/netns.js';
import { clientEdgeNode } from './client-edge-node.js';
import { openEdge, service, backend } from './edge-helpers.js';

const VIP = '203.0.113.10';

function readPcap(path: string): Buffer[] {
  const b = readFileSync(path);
  if (b.length < 24) return [];
  const le = b.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const out: Buffer[] = [];
  for (let o = 24; o + 16 <= b.length; ) {
    const incl = u32(o + 8);
    out.push(b.subarray(o + 16, o + 16 + incl));
    o += 16 + incl;
  }
  return out;
}

test('live: UDP and TCP SYN from a client reach the node with DNAT + option, IPIP encapsulated; XDP_REDIRECT once the neighbour is known', async (t) => {
  const { C, E, N, cleanup } = await clientEdgeNode(t, 'el', '10.244.1.1');
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-live-'));
  cleanup.add('tmpdir', () => rmSync(dir, { recursive: true, force: true }));
  // Frames from a wire carry complete checksums; a veth would otherwise hand
  // over CHECKSUM_PARTIAL ones, which XDP cannot tell from broken ones.
  await nsRun(C, ['ethtool', '-K', 'c0', 'tx', 'off']);

  const dp = openEdge(t, { forward: { kind: 'fib' }, address: '10.0.0.1' });
  dp.applyServices([
    service({ frontend: { vip: VIP, port: 53, protocol: 'UDP' }, backends: [backend(1, { port: 5353, nodeIp: '10.0.0.11' })] }),
    service({ frontend: { vip: VIP, port: 80, protocol: 'TCP' }, dispatch: 'ipip', backends: [backend(1, { port: 8080, nodeIp: '10.0.0.11' })] }),
  ]);
  inNetns(E, () => dp.attach('e0', 'native'));
  cleanup.add('detach edge', () => inNetns(E, () => dp.detach()));
  // veth delivers XDP_REDIRECTed frames only to a peer with an XDP program.
  const pass = BpfObject.load(bpfObjectPath('xdp_pass'));
  cleanup.add('xdp_pass', () => pass.close());
  inNetns(N, () => pass.program('xdp_pass').attachXdp('n0', 'native'));

  const pcap = join(dir, 'n0.pcap');
  const dump = spawn('ip', ['netns', 'exec', N, 'tcpdump', '--immediate-mode', '-U', '-n', '-i', 'n0', '-w', pcap], { stdio: ['ignore', 'ignore', 'pipe'] });
  cleanup.add('tcpdump', () => dump.kill('SIGTERM'));
  let dumpErr = '';
  dump.stderr.on('data', (d: Buffer) => (dumpErr += d.toString()));
  await waitFor(() => dumpErr.includes('listening'), 5000);

  const got = join(dir, 'udp.out');
  const recv = spawn('ip', ['netns', 'exec', N, 'socat', '-u', 'UDP-RECV:5353,bind=10.244.1.1', `OPEN:${got},creat,append`], { stdio: 'ignore' });
  cleanup.add('socat', () => recv.kill('SIGTERM'));
  await sleep(300);

  for (let i = 0; i < 5; i++) {
    await nsRun(C, ['sh', '-c', `printf 'ping${i}\\n' | socat -u - UDP-SENDTO:${VIP}:53,sourceport=5300`]);
    await sleep(100);
  }
  // A TCP SYN towards the IPIP service (nothing answers; one SYN suffices).
  await nsRun(C, ['sh', '-c', `socat -u - TCP:${VIP}:80,connect-timeout=0.3,sourceport=40100 </dev/null || true`]);
  const ipv4Frames = (): ParsedPacket[] =>
    readPcap(pcap)
      .filter((f) => f.length >= 34 && f.readUInt16BE(12) === 0x0800)
      .map((f) => parsePacket(f));
  // Capture is asynchronous: wait (bounded) until what was sent shows up.
  await waitFor(() => {
    const fr = ipv4Frames();
    return fr.filter((p) => p.udp).length >= 5 && fr.some((p) => p.ip.protocol === 4);
  }, 5000);
  if (process.env.EDGE_LIVE_DEBUG) {
    for (const [ns, dev] of [[E, 'e0'], [E, 'e1'], [N, 'n0']] as const) t.log(ns, dev, (await nsRun(ns, ['ip', '-s', 'link', 'show', dev])).stdout);
    t.log((await nsRun(E, ['ip', 'neigh'])).stdout);
  }
  dump.kill('SIGTERM');
  await new Promise((r) => dump.once('exit', r));

  const frames = ipv4Frames();
  t.log(`stats ${JSON.stringify(dp.counters().stats)} svcs ${JSON.stringify(dp.counters().services.map((s) => [s.port, s.packets]))} frames ${frames.map((f) => `${f.ip.protocol}:${f.ip.src}>${f.ip.dst}`).join(' ')}`);
  const udp = frames.filter((p: ParsedPacket) => p.udp);
  t.true(udp.length >= 5, `captured ${udp.length} UDP frames`);
  for (const p of udp) {
    t.is(p.ip.dst, '10.244.1.1');
    t.is(p.ip.src, '198.51.100.7');
    t.is(p.udp!.dport, 5353);
    t.deepEqual(findDsrOption(p.ip), { vip: VIP, port: 53 });
    t.true(verifyIpv4Checksum(p.ipBytes), 'IPv4 checksum');
    t.true(verifyL4Checksum(p.ipBytes), 'UDP checksum');
  }
  const ipip = frames.filter((p) => p.ip.protocol === 4);
  t.true(ipip.length >= 1, 'the SYN arrived IPIP-encapsulated');
  for (const p of ipip) {
    t.is(p.ip.dst, '10.0.0.11');
    t.is(p.inner!.ip.dst, VIP);
    t.true(p.inner!.tcp!.flags.syn, 'inner SYN');
  }
  t.regex(readFileSync(got, 'utf8'), /ping0[\s\S]*ping4/);
  const c = dp.counters();
  const stats = c.stats;
  // The first packet may go through the stack while the neighbour resolves;
  // the rest were redirected by XDP itself.
  t.true(stats.fib_pass <= 2, `fib_pass ${stats.fib_pass}`);
  t.is(c.services.find((s) => s.port === 53)!.packets, 5);
});
