// End to end, one lab: the attacks of issue 13, sent from the client
// namespace with scapy the way a user outside the Service's
// loadBalancerSourceRanges would — and what must (not) happen:
//   1. a SYN straight to a pod carrying our DSR option naming the VIP: no
//      answer from the VIP (or anyone), the node drops it as untrusted;
//   2. IPIP straight to a node (outer destination the node, inner SYN to
//      the VIP), from the attacker's own address and with an edge's address
//      forged as the outer source: no answer, dropped as untrusted;
//   3. a blind RST (wrong sequence number) with a live keep-alive
//      connection's 5-tuple: the connection survives it, and a silence
//      longer than the RST grace, and answers its next request from the VIP.
// Then the edge's health follows its real attachment: an XDP program
// detached by hand takes the edge's BFD session down within a second, and a
// bfdd restarted meanwhile does not come back healthy.
import test from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { bringUp, need, tearDown, type LabHolder } from './helpers.js';
import { buildPacket, dsrOption } from '../lib/packets.js';
import { inject } from '../lib/inject.js';
import { nsRun, sleep } from '../lib/netns.js';
import { pinnedNodeCounters } from '../../src/datapath/node-datapath.js';
import type { NodeCounterName } from '../../src/datapath/node-maps.js';
import { livePidFrom } from '../../src/bgp/daemon-files.js';
import type { Lab } from '../../src/lab/lab.js';

let h: LabHolder | undefined;
let vip = '';

test.before(async () => {
  h = await bringUp();
  if (h.lab && !h.error) {
    try {
      const lab = h.lab;
      // Only the client's first address may use the Service; the attacker is its second one.
      await lab.applyService({ name: 'guarded', udpPort: null, sourceRanges: [`${lab.plan.client.address}/32`], annotations: { 'edgelb.io/dispatch': 'ip-option' } });
      vip = await lab.waitForVip('guarded');
      await lab.waitForGateways(vip, lab.plan.edges.map((e) => e.address));
      await lab.waitServing(vip);
    } catch (e) {
      h.error = e as Error;
    }
  }
});

test.after.always(async () => {
  await tearDown(h);
});

function untrusted(lab: Lab): number {
  return lab.state.nodes.reduce((n, node) => n + pinnedNodeCounters(node.pinDir).drop_untrusted_source, 0);
}

function nodeCounter(lab: Lab, name: NodeCounterName): number {
  return lab.state.nodes.reduce((n, node) => n + pinnedNodeCounters(node.pinDir)[name], 0);
}

test.serial('attack 1: a SYN straight to a pod carrying our option gets no answer; the node drops it as untrusted', async (t) => {
  const lab = need(t, h);
  const attacker = lab.plan.client.otherAddress;
  const pod = lab.plan.nodes[0]!.pods[0]!;
  const before = untrusted(lab);
  const syns = [0, 1, 2].map((i) => buildPacket({ eth: false, ip: { src: attacker, dst: pod.ip, ttl: 64, id: 100 + i, options: dsrOption(vip, 80) }, tcp: { sport: 41000 + i, dport: lab.plan.ports.http, seq: 1000, flags: { syn: true } } }));
  const r = await inject(lab.plan.client.ns, { iface: lab.plan.client.ifname, frames: syns, l3: true, sniff: `ip and dst host ${attacker} and (src host ${vip} or src host ${pod.ip})`, waitSeconds: 2 });
  t.is(r.sent, 3);
  t.is(r.captured.length, 0, `answers to the attacker: ${r.captured.map((b) => b.toString('hex')).join(' ')}`);
  t.is(untrusted(lab) - before, 3, 'each forged SYN reached a node and was dropped there');
});

test.serial('attack 2: IPIP straight to a node (own or forged edge outer source) gets no answer; dropped as untrusted', async (t) => {
  const lab = need(t, h);
  const attacker = lab.plan.client.otherAddress;
  const node = lab.plan.nodes[0]!;
  const before = untrusted(lab);
  const frames = [attacker, lab.plan.edges[0]!.address].map((outerSrc, i) =>
    buildPacket({ eth: false, ip: { src: outerSrc, dst: node.address, ttl: 64, id: 200 + i }, inner: { ip: { src: attacker, dst: vip, ttl: 64, id: 300 + i }, tcp: { sport: 42000 + i, dport: 80, seq: 1, flags: { syn: true } } } }),
  );
  const r = await inject(lab.plan.client.ns, { iface: lab.plan.client.ifname, frames, l3: true, sniff: `ip and dst host ${attacker} and not arp`, waitSeconds: 2 });
  t.is(r.captured.length, 0, `answers to the attacker: ${r.captured.map((b) => b.toString('hex')).join(' ')}`);
  t.is(untrusted(lab) - before, 2, 'both tunnels reached the node and were dropped there');
});

/** A keep-alive HTTP connection from the client, driven line by line. */
function keepAliveClient(lab: Lab): { ready: Promise<{ port: number; status: string }>; next: () => Promise<string>; stop: () => void } {
  const script = `
import socket, sys
s = socket.create_connection((${JSON.stringify(vip)}, 80), timeout=5, source_address=(${JSON.stringify(lab.plan.client.address)}, 0))
def req():
    s.sendall(b'GET / HTTP/1.1\\r\\nHost: lab\\r\\nConnection: keep-alive\\r\\n\\r\\n')
    data = b''
    while b'\\r\\n\\r\\n' not in data:
        chunk = s.recv(4096)
        if not chunk: raise EOFError('closed')
        data += chunk
    head, _, body = data.partition(b'\\r\\n\\r\\n')
    n = 0
    for line in head.split(b'\\r\\n'):
        if line.lower().startswith(b'content-length:'): n = int(line.split(b':')[1])
    while len(body) < n:
        chunk = s.recv(4096)
        if not chunk: raise EOFError('closed')
        body += chunk
    return head.split(b'\\r\\n')[0].decode()
print('READY', s.getsockname()[1], req(), flush=True)
sys.stdin.readline()
try:
    print('AFTER', req(), flush=True)
except Exception as e:
    print('BROKEN', repr(e), flush=True)
`;
  const child = spawn('ip', ['netns', 'exec', lab.plan.client.ns, '/usr/bin/python3', '-c', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines = createInterface({ input: child.stdout });
  const queue: string[] = [];
  const waiters: ((l: string) => void)[] = [];
  lines.on('line', (l) => (waiters.length ? waiters.shift()!(l) : queue.push(l)));
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const line = (): Promise<string> =>
    new Promise((resolve, reject) => {
      if (queue.length) return resolve(queue.shift()!);
      const timer = setTimeout(() => reject(new Error(`keep-alive client said nothing: ${err}`)), 15_000);
      waiters.push((l) => {
        clearTimeout(timer);
        resolve(l);
      });
    });
  const ready = line().then((l) => {
    const m = /^READY (\d+) (.*)$/.exec(l);
    if (!m) throw new Error(`keep-alive client: ${l} ${err}`);
    return { port: Number(m[1]), status: m[2]! };
  });
  return {
    ready,
    next: () => {
      child.stdin.write('go\n');
      return line();
    },
    stop: () => child.kill('SIGTERM'),
  };
}

test.serial('attack 3: a blind RST with a live keep-alive connection\'s tuple does not kill it, not even after a silence', async (t) => {
  const lab = need(t, h);
  const c = keepAliveClient(lab);
  t.teardown(() => c.stop());
  const { port, status } = await c.ready;
  t.regex(status, /^HTTP\/1\.1 200/);
  const rstBefore = nodeCounter(lab, 'in_rst');
  // Sequence numbers out of the connection's window: the pod's stack ignores them.
  const rsts = [0x12345678, 0x9abcdef0, 0x0badf00d].map((seq, i) => buildPacket({ eth: false, ip: { src: lab.plan.client.address, dst: vip, ttl: 64, id: 400 + i }, tcp: { sport: port, dport: 80, seq, flags: { rst: true } } }));
  await inject(lab.plan.client.ns, { iface: lab.plan.client.ifname, frames: rsts, l3: true });
  // Longer than the node's RST grace (2 s): a RST and silence must still not end a live connection.
  await sleep(3500);
  t.true(nodeCounter(lab, 'in_rst') - rstBefore >= 1, 'the RSTs reached the node of the flow');
  const after = await c.next();
  t.regex(after, /^AFTER HTTP\/1\.1 200/, `the connection after the blind RST: ${after}`);
});

test.serial('BFD follows the real attachment: XDP detached by hand, the agent takes BFD down within a second and the edge leaves the router; a restarted bfdd stays down', async (t) => {
  const lab = need(t, h);
  const [e1, e2] = lab.plan.edges;
  const bfdDown = async (): Promise<boolean> => {
    const peers = JSON.parse(await lab.vtysh('show bfd peers json')) as { peer: string; status: string }[];
    return peers.find((p) => p.peer === e1!.address)?.status === 'down';
  };
  t.false(await bfdDown(), 'BFD is up before');
  const t0 = Date.now();
  await nsRun(e1!.ns, ['ip', 'link', 'set', 'dev', e1!.uplink, 'xdpdrv', 'off']);
  let downMs = -1;
  while (Date.now() - t0 < 10_000) {
    if (await bfdDown()) {
      downMs = Date.now() - t0;
      break;
    }
    await sleep(20);
  }
  const routeMs = await lab.waitForGateways(vip, [e2!.address], 10_000);
  const agentLog = readFileSync(lab.state.agents.find((a) => a.edge === e1!.name)!.log, 'utf8').split('\n').filter((l) => l.includes('BFD sessions'));
  const saw = agentLog.map((l) => (JSON.parse(l) as { time: number }).time - t0).filter((d) => d >= 0);
  t.log(`${e1!.name}: the agent took BFD down ${saw[0] ?? '?'} ms after the detach, the router saw it at ${downMs} ms, the VIP left its nexthops at ${Date.now() - t0} ms`);
  // The agent's part — noticing and shutting its sessions — within a second; the router's view adds
  // a vtysh round trip on each side (hundreds of ms each on a loaded 2-core machine).
  t.true(saw[0] !== undefined && saw[0] < 1000, `the agent took BFD down after ${saw[0]} ms`);
  t.true(downMs >= 0 && downMs < 2500, `the router saw BFD down after ${downMs} ms`);
  t.true(routeMs >= 0);
  // bfdd dies and is started again (from the agent's bfdd.conf) while the program is still detached.
  const pid = livePidFrom(join(lab.state.dir, e1!.name, 'bfdd', 'bfdd.pid'));
  t.truthy(pid, 'bfdd runs on the edge');
  process.kill(pid!, 'SIGKILL');
  await sleep(4000);
  t.not(livePidFrom(join(lab.state.dir, e1!.name, 'bfdd', 'bfdd.pid')), undefined, 'bfdd is back');
  t.deepEqual(await lab.routerGateways(vip), [e2!.address], 'and the edge is still out');
  t.regex(await lab.vtysh('show bfd peers brief'), new RegExp(`${e1!.address.replace(/\./g, '\\.')}.*down`, 'i'));
  // Attached again (a fresh agent attaches): back in.
  await lab.stopAgent(e1!.name, 'SIGTERM');
  await lab.startAgent(e1!.name);
  await lab.waitForGateways(vip, [e1!.address, e2!.address].sort(), 20_000);
});
