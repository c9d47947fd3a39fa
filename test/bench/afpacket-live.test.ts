// bench/native/afpacket_tx.c and bench/lib/afpacket.ts: bench:datapath's
// live-traffic method for kernels that refuse live frames must really send
// every frame it reports, give each frame of a SYN flood a new tuple with
// both checksums right, and count at the sink only what the program under
// test sent back — for a bare XDP_TX, for edge.o configured as the
// benchmark configures it, and for the kernel's nftables DSR rig behind
// XDP_PASS.
//
// Every test has its own namespace (removed in teardown, even on failure);
// traffic never leaves it; each flood is bounded in count (≤ 10 000 frames)
// and in time (the sender is killed past its deadline, tcpdump by its pid).
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { cpus } from 'node:os';
import { inNetns } from '../../src/datapath/loader.js';
import { EdgeDatapath } from '../../src/datapath/edge-datapath.js';
import { bpfObjectPath } from '../../src/assets.js';
import type { Backend, DesiredService } from '../../src/model/types.js';
import { LiveHarness } from '../../bench/lib/live.js';
import { withKernelRig } from '../../bench/lib/kernel-rig.js';
import { AfPacketRig, sendFrames, type SendMethod } from '../../bench/lib/afpacket.js';
import { buildPacket } from '../lib/packets.js';
import { checkFreshFrame } from './fresh-tuples.js';
import { SMALL_MAPS } from '../datapath/edge-helpers.js';
import { Cleanup, createNetns, nsRun, uniqueId } from '../lib/netns.js';

const VIP = '203.0.113.10';
/** The sender's CPU: the last one, as bench:datapath pins itself. */
const CPU = Math.max(0, cpus().length - 1);

const SYN = buildPacket({
  eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' },
  ip: { src: '198.18.0.0', dst: VIP },
  tcp: { sport: 0, dport: 80, flags: { syn: true }, seq: 1 },
});
const ACK = buildPacket({
  eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' },
  ip: { src: '198.18.0.7', dst: VIP },
  tcp: { sport: 40004, dport: 80, flags: { ack: true }, seq: 1, payload: Buffer.alloc(64) },
});

/**
 * A namespace with the veth pair tx0 (sender, sink) ↔ rx0 (program under
 * test), no IPv6 (a veth coming up sends solicitations the sink would
 * count), and `setup` run inside before the sink is attached.
 */
async function makeRig(t: ExecutionContext, prefix: string, setup: (ns: string) => Promise<void> = async () => {}): Promise<{ ns: string; h: LiveHarness; rig: AfPacketRig; cleanup: Cleanup }> {
  const cleanup = new Cleanup();
  t.teardown(() => cleanup.run());
  const ns = await createNetns(`${prefix}-${uniqueId()}`, cleanup);
  await nsRun(ns, ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  await nsRun(ns, ['ip', 'link', 'add', 'tx0', 'type', 'veth', 'peer', 'name', 'rx0']);
  await nsRun(ns, ['ip', 'link', 'set', 'tx0', 'up']);
  await nsRun(ns, ['ip', 'link', 'set', 'rx0', 'up']);
  await setup(ns);
  const h = LiveHarness.load();
  cleanup.add('harness', () => h.close());
  inNetns(ns, () => h.attachSink('tx0'));
  const rig = new AfPacketRig(ns, 'rx0', 'tx0', h, CPU);
  cleanup.add('rx0 program', () => rig.detach());
  return { ns, h, rig, cleanup };
}

test('sender: 10 000 frames through a bare XDP_TX all come back to the sink, with either send method, fresh tuples or not', async (t) => {
  const { h, rig } = await makeRig(t, 'elbaf');
  const packets = 10_000;
  for (const method of ['mmsg', 'ring'] as SendMethod[]) {
    for (const fresh of [false, true]) {
      const r = new AfPacketRig(rig.ns, rig.rx, rig.tx, h, CPU, method).run({ target: h.txProgram, frame: SYN, fresh, packets });
      const what = `${method}, fresh=${fresh}`;
      t.is(r.sent, packets, `${what}: frames sent`);
      // A veth whose peer ring is full drops (unseen), and says so here.
      t.is(r.seen, packets, `${what}: frames live_tx ran on (${r.retries} retries)`);
      t.is(r.sunk, packets, `${what}: frames back at tx0`);
      t.true(r.mpps > 0 && Number.isFinite(r.mpps), `${what}: ${r.mpps} Mpps`);
    }
  }
  // The sink counts unicast only (a veth's own IPv6 MLD reports are multicast).
  const multicast = Buffer.from(SYN);
  Buffer.from('333300000016', 'hex').copy(multicast, 0);
  const ignored = h.ignoredTotal();
  const m = rig.run({ target: h.txProgram, frame: multicast, fresh: false, packets: 1000 });
  t.is(m.seen, 1000);
  t.is(m.sunk, 0, 'multicast frames are not counted as sunk');
  t.is(h.ignoredTotal() - ignored, 1000, 'but as ignored');
});

/** The frames of a classic pcap stream (tcpdump -w -). */
function pcapFrames(b: Buffer): Buffer[] {
  if (b.length < 24) return [];
  const le = b.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number): number => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const out: Buffer[] = [];
  for (let o = 24; o + 16 <= b.length; ) {
    const len = u32(o + 8);
    out.push(b.subarray(o + 16, o + 16 + len));
    o += 16 + len;
  }
  return out;
}

/**
 * tcpdump on `ifname` in `ns` until `count` frames (bounded: killed by pid
 * after `timeoutMs`). A small snap length: in immediate mode libpcap's ring
 * has one slot per snap length, and the default 256 KiB leaves 8 slots,
 * which dropped all but 32 of a 2000-frame burst.
 */
async function capture(ns: string, ifname: string, count: number, timeoutMs: number, during: () => void): Promise<Buffer[]> {
  const child = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-i', ifname, '-n', '-U', '--immediate-mode', '-s', '256', '-B', '8192', '-c', String(count), '-w', '-', 'tcp'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => chunks.push(c));
  let err = '';
  const listening = new Promise<void>((resolve) => child.stderr.on('data', (c: Buffer) => ((err += c.toString()), err.includes('listening on') && resolve())));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    await Promise.race([listening, exited]);
    during();
    await exited;
  } finally {
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  return pcapFrames(Buffer.concat(chunks));
}

test('fresh tuples: every frame a new source address and port, IP and TCP checksums valid, nothing else changed', async (t) => {
  // No XDP on rx0 here: the frames go up rx0's stack, where tcpdump sees them as sent.
  const cleanup = new Cleanup();
  t.teardown(() => cleanup.run());
  const ns = await createNetns(`elbaff-${uniqueId()}`, cleanup);
  await nsRun(ns, ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  await nsRun(ns, ['ip', 'link', 'add', 'tx0', 'type', 'veth', 'peer', 'name', 'rx0']);
  await nsRun(ns, ['ip', 'link', 'set', 'tx0', 'up']);
  await nsRun(ns, ['ip', 'link', 'set', 'rx0', 'up']);
  const packets = 2000;
  let sent = 0;
  const frames = await capture(ns, 'rx0', packets, 10_000, () => {
    sent = sendFrames({ ns, ifname: 'tx0', frame: SYN, count: packets, fresh: true, cpu: CPU }).sent;
  });
  t.is(sent, packets);
  t.is(frames.length, packets, 'every frame captured on rx0');
  const tuples = new Set<string>();
  for (const [i, f] of frames.entries()) tuples.add(checkFreshFrame(t, f, SYN, i));
  t.is(tuples.size, packets, 'distinct (source, port) tuples');
});

/** The bench's node neighbours and service (bench/datapath.ts: NODE_IPS, BENCH_SERVICES' bench/opt). */
const NODE_IPS = ['10.0.0.10', '10.0.0.11', '10.0.0.12', '10.0.0.13', '10.0.0.14'];
const SERVICE: DesiredService = {
  service: 'bench/opt',
  frontend: { vip: VIP, port: 80, protocol: 'TCP' },
  mode: 'dsr',
  dispatch: 'ip-option',
  sourceRanges: [],
  affinityTimeoutSeconds: 0,
  backends: Array.from({ length: 10 }, (_, j): Backend => ({ ip: `10.64.1.${j + 1}`, port: 8080, nodeIp: NODE_IPS[j % 5]!, nodeName: `node${j % 5}`, weight: 1, state: 'active' })),
};

test('edge.o as bench:datapath configures it (FIB forwarding) runs on every frame and the sink counts its XDP_REDIRECT output; non-VIP frames pass and are not counted', async (t) => {
  // rx0 is the bench's up0: 10.0.0.1/24, forwarding, permanent neighbours for the nodes.
  const { rig } = await makeRig(t, 'elbafe', async (n) => {
    await nsRun(n, ['ip', 'addr', 'add', '10.0.0.1/24', 'dev', 'rx0']);
    await nsRun(n, ['sysctl', '-qw', 'net.ipv4.conf.all.forwarding=1']);
    for (const [i, ip] of NODE_IPS.entries()) await nsRun(n, ['ip', 'neigh', 'replace', ip, 'lladdr', `02:00:00:00:01:${(16 + i).toString(16)}`, 'dev', 'rx0', 'nud', 'permanent']);
  });
  // Map sizes small (the test's memory); options, service and forwarding as the bench's.
  const dp = EdgeDatapath.open({ maglevTableSize: 16381, mtu: 1500, address: '10.0.0.1', objectPath: bpfObjectPath('edge'), maxEntries: SMALL_MAPS });
  t.teardown(() => dp.close());
  dp.applyServices([SERVICE]);
  dp.reconfigure({ forward: { kind: 'fib' }, ctInsertLimit: 200000 });
  const packets = 5000;
  const svcPackets = (): number => dp.counters().services.find((s) => s.service === 'bench/opt')?.packets ?? 0;
  for (const [what, frame, fresh] of [
    ['established', ACK, false],
    ['SYN flood, fresh tuples', SYN, true],
  ] as const) {
    const before = svcPackets();
    const r = rig.run({ target: dp.program('xdp'), frame, fresh, packets });
    t.is(r.sent, packets, `${what}: sent`);
    t.is(r.seen, packets, `${what}: frames edge_xdp ran on`);
    t.is(svcPackets() - before, packets, `${what}: frames the service counted`);
    t.is(r.sunk, packets, `${what}: frames edge_xdp redirected out of rx0 that reached tx0's sink`);
  }
  const other = Buffer.from(ACK);
  other.writeUInt8(99, 33); // destination 203.0.113.99: no VIP
  other.writeUInt16BE(0, 24);
  const ihl = other.subarray(14, 34);
  let s = 0;
  for (let i = 0; i < 20; i += 2) s += ihl.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  other.writeUInt16BE(~s & 0xffff, 24);
  const pass = rig.run({ target: dp.program('xdp'), frame: other, fresh: false, packets: 1000 });
  t.is(pass.seen, 1000);
  t.is(pass.sunk, 0, 'XDP_PASS frames go up rx0\'s stack, not back to the sink');
});

test('the sender refuses by name a frame it cannot give fresh tuples, and a missing interface', async (t) => {
  const cleanup = new Cleanup();
  t.teardown(() => cleanup.run());
  const ns = await createNetns(`elbafu-${uniqueId()}`, cleanup);
  const udpish = Buffer.from(SYN);
  udpish[23] = 17;
  t.throws(() => sendFrames({ ns, ifname: 'lo', frame: udpish, count: 1, fresh: true, cpu: CPU }), { message: /--fresh needs an Ethernet \+ IPv4 \(no options\) \+ TCP frame/ });
  t.throws(() => sendFrames({ ns, ifname: 'nosuch0', frame: SYN, count: 1, fresh: false, cpu: CPU }), { message: /nosuch0/ });
});

test('kernel rig fed by the AF_PACKET sender: nftables DSR forwards every frame out of the uplink, and without its rules nothing comes back', (t) => {
  const h = LiveHarness.load();
  t.teardown(() => h.close());
  const through = (vip: string): ReturnType<AfPacketRig['run']> => {
    const ns = `elbafk-${uniqueId()}`;
    // withKernelRig removes its namespace itself, also when fn throws.
    return withKernelRig('nftdsr', { ns, vip, port: 80 }, h, (_up0, addressed) => {
      const rig = new AfPacketRig(ns, 'up0', 'up1', h, CPU);
      return rig.run({ target: h.passProgram, frame: addressed(ACK), fresh: false, packets: 2000 });
    });
  };
  const r = through(VIP);
  t.is(r.seen, 2000, 'frames live_pass handed to up0\'s stack');
  t.is(r.sunk, 2000, 'frames nftables forwarded to up1');
  t.is(through('203.0.113.99').sunk, 0, 'no rules for the VIP: no route, nothing forwarded (the count above is not the sender\'s own)');
});
