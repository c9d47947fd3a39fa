// `edgelb node run` as an operator runs it: the edge sources it must be
// given, the neighbour sync that tells the program which link-layer senders
// are edges, and the Prometheus metrics (--metrics-listen) — drops by reason,
// flows remembered, and whether the kernel really runs the programs.
//
//   edge ns (e0, the edge) ── veth ── node ns (n0, `edgelb node run`)
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { addAddress, Cleanup, createNetns, nsRun, sleep, uniqueId, vethPair, waitFor } from '../lib/netns.js';
import { testBpffs } from '../lib/test-bpffs.js';
import { buildPacket, dsrOption } from '../lib/packets.js';
import { inject } from '../lib/inject.js';
import { parseEdgeRouters, parseEdgeSources } from '../../src/cli/node.js';
import { edgeNeighbourEntries, nudStateNames, parseProcArp, readNeighbours6, unresolvedEdges } from '../../src/node-agent/edge-neighbours.js';
import { inNetns } from '../../src/datapath/loader/netns.js';
import { parseListen } from '../../src/node-agent/metrics.js';
import { NODE_DEFAULTS } from '../../src/datapath/node-datapath.js';
import { probePayload, PROBE_PORT } from '../../src/probe/wire.js';

test('--edge-sources is required and every entry is checked', (t) => {
  t.throws(() => parseEdgeSources(undefined), { message: /--edge-sources is required/ });
  t.throws(() => parseEdgeSources(' '), { message: /--edge-sources is required/ });
  t.throws(() => parseEdgeSources('10.0.0.11,10.0.0.1/24'), { message: /--edge-sources: edge source '10.0.0.1\/24': host bits are set \(did you mean 10.0.0.0\/24\?\)/ });
  t.throws(() => parseEdgeSources('10.0.0.11,edge2'), { message: /edge source 'edge2'/ });
  t.deepEqual(parseEdgeSources('10.0.0.11, 10.0.0.12,192.0.2.0/28'), ['10.0.0.11', '10.0.0.12', '192.0.2.0/28']);
  // Trust given to everyone, or to a block no edge sends from, is refused.
  t.throws(() => parseEdgeSources('10.0.0.11,0.0.0.0/0'), { message: /edge source '0.0.0.0\/0' holds every address: the DSR option and IPIP from anyone would be trusted; list the edges' own addresses/ });
  t.throws(() => parseEdgeSources('::/0'), { message: /edge source '::\/0' holds every address/ });
  t.throws(() => parseEdgeSources('127.0.0.1'), { message: /edge source '127.0.0.1' overlaps loopback \(127.0.0.0\/8\), which no edge sends from/ });
  t.throws(() => parseEdgeSources('10.0.0.11,224.0.0.0/4'), { message: /overlaps multicast \(224.0.0.0\/4\)/ });
  t.throws(() => parseEdgeSources('0.0.0.0/1'), { message: /overlaps "this network" \(0.0.0.0\/8\)/ });
  t.throws(() => parseListen('9101'), { message: /not ADDRESS:PORT/ });
  t.deepEqual(parseListen('[::1]:9101'), { host: '::1', port: 9101 });
  const r = spawnSync('bin/edgelb', ['node', 'run', '--interface', 'lo'], { encoding: 'utf8' });
  t.is(r.status, 2);
  t.regex(r.stderr, /--edge-sources is required/);
});

test('--edge-routers is optional, checked as edge sources are, and never overlaps them', (t) => {
  const edges = ['10.0.0.11', '192.0.2.0/28'];
  t.deepEqual(parseEdgeRouters(undefined, edges), []);
  t.deepEqual(parseEdgeRouters('10.0.0.254, fd00::fe', edges), ['10.0.0.254', 'fd00::fe']);
  t.throws(() => parseEdgeRouters('0.0.0.0/0', edges), { message: /--edge-routers: '0.0.0.0\/0' holds every address/ });
  t.throws(() => parseEdgeRouters('192.0.2.1', edges), { message: /--edge-routers: '192.0.2.1' overlaps edge source '192.0.2.0\/28': a router is trusted for IPIP only/ });
  t.throws(() => parseEdgeRouters('router1', edges), { message: /--edge-routers: edge source 'router1'/ });
});

test('neighbour table → trusted edges: only edge-source addresses with a usable link-layer address; single edges without an entry are resolved', (t) => {
  const rows = [
    { dst: '10.0.0.11', lladdr: '02:AA:00:00:00:11', state: ['REACHABLE'] },
    { dst: '10.0.0.12', lladdr: '02:aa:00:00:00:12', state: ['STALE'] },
    { dst: '10.0.0.13', state: ['FAILED'] },
    { dst: '10.0.0.1', lladdr: '02:aa:00:00:00:01', state: ['REACHABLE'] }, // the router: no edge
    { dst: '192.0.2.5', lladdr: '02:aa:00:00:00:05', state: ['PERMANENT'] },
    { dst: 'fe80::1', lladdr: '02:aa:00:00:00:11', state: ['REACHABLE'] },
  ];
  const sources = ['10.0.0.11', '10.0.0.12', '10.0.0.13', '10.0.0.14/32', '192.0.2.0/29'];
  t.deepEqual(edgeNeighbourEntries(rows, sources), [
    { ip: '10.0.0.11', mac: '02:aa:00:00:00:11' },
    { ip: '10.0.0.12', mac: '02:aa:00:00:00:12' },
    { ip: '192.0.2.5', mac: '02:aa:00:00:00:05' },
  ]);
  t.deepEqual(unresolvedEdges(rows, sources), ['10.0.0.13', '10.0.0.14']);
  // IPv6 rows (a table of both families) match IPv6 sources only; a single IPv6 edge address
  // without an entry is asked too (its Neighbor Advertisement confirms it to the program).
  const rows6 = [...rows, { dst: '2001:db8:e::1', lladdr: '02:aa:00:00:00:61', state: ['REACHABLE'] }, { dst: '2001:db8:e::2', state: ['FAILED'] }];
  t.deepEqual(edgeNeighbourEntries(rows6, [...sources, '2001:db8:e::/126']).slice(3), [{ ip: '2001:db8:e::1', mac: '02:aa:00:00:00:61' }]);
  t.deepEqual(unresolvedEdges(rows6, [...sources, '2001:db8:e::1', '2001:db8:e::2', '2001:db8:e::/126']), ['10.0.0.13', '10.0.0.14', '2001:db8:e::2']);
  t.deepEqual(parseEdgeSources('10.0.0.11,2001:db8:e::1'), ['10.0.0.11', '2001:db8:e::1']);
});

test('the kernel\'s IPv6 neighbour table (netlink) → neighbour rows of one interface, states named; edge entries become trusted edges', async (t) => {
  t.deepEqual(nudStateNames(0x80), ['PERMANENT']);
  t.deepEqual(nudStateNames(0x04), ['STALE']);
  t.deepEqual(nudStateNames(0x20), ['FAILED']);
  t.deepEqual(nudStateNames(0x41), ['INCOMPLETE', 'NOARP']);
  const cleanup = new Cleanup();
  t.teardown(() => cleanup.run());
  const ns = await createNetns(`elb-n6-${uniqueId()}`, cleanup);
  await vethPair(ns, 'fab0', ns, 'fab1');
  await vethPair(ns, 'oth0', ns, 'oth1');
  await addAddress(ns, 'fab0', '2001:db8:e::10/64');
  await nsRun(ns, ['ip', '-6', 'neigh', 'add', '2001:db8:e::1', 'lladdr', '02:aa:00:00:00:61', 'dev', 'fab0', 'nud', 'permanent']);
  await nsRun(ns, ['ip', '-6', 'neigh', 'add', '2001:db8:e::2', 'lladdr', '02:AA:00:00:00:62', 'dev', 'fab0', 'nud', 'stale']);
  await nsRun(ns, ['ip', '-6', 'neigh', 'add', '2001:db8:7::1', 'lladdr', '02:aa:00:00:00:07', 'dev', 'fab0', 'nud', 'permanent']);
  await nsRun(ns, ['ip', '-6', 'neigh', 'add', '2001:db8:e::3', 'lladdr', '02:aa:00:00:00:63', 'dev', 'oth0', 'nud', 'permanent']);
  await nsRun(ns, ['ip', '-4', 'neigh', 'add', '10.0.0.11', 'lladdr', '02:aa:00:00:00:11', 'dev', 'fab0', 'nud', 'permanent']);
  const rows = inNetns(ns, () => readNeighbours6('fab0'));
  const byDst = new Map(rows.map((r) => [r.dst, r]));
  t.like(byDst.get('2001:db8:e::1'), { lladdr: '02:aa:00:00:00:61', state: ['PERMANENT'] });
  t.like(byDst.get('2001:db8:e::2'), { lladdr: '02:aa:00:00:00:62', state: ['STALE'] });
  t.true(byDst.has('2001:db8:7::1'));
  t.false(byDst.has('2001:db8:e::3'), 'another interface\'s entry is not this one\'s');
  t.false(rows.some((r) => !r.dst.includes(':')), 'IPv6 only');
  t.deepEqual(edgeNeighbourEntries(rows, ['2001:db8:e::/126']).sort((a, b) => a.ip.localeCompare(b.ip)), [
    { ip: '2001:db8:e::1', mac: '02:aa:00:00:00:61' },
    { ip: '2001:db8:e::2', mac: '02:aa:00:00:00:62' },
  ]);
  t.throws(() => inNetns(ns, () => readNeighbours6('nope0')), { message: /nope0/ });
  t.throws(() => readNeighbours6('../x'), { message: /not an interface name/ });
});

async function scrape(ns: string, port: number, path = '/metrics'): Promise<{ status: number; body: string }> {
  const r = await nsRun(ns, ['curl', '-s', '-o', '-', '-w', '\n%{http_code}', `http://127.0.0.1:${port}${path}`]);
  const lines = r.stdout.trimEnd().split('\n');
  return { status: Number(lines.pop()), body: lines.join('\n') };
}

function metric(body: string, name: string, labels = ''): number | null {
  const line = body.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').pop()) : null;
}

test('/proc/net/arp → neighbour rows of one interface: complete, permanent and incomplete entries told apart', (t) => {
  const text = [
    'IP address       HW type     Flags       HW address            Mask     Device',
    '10.0.0.11        0x1         0x2         be:22:f2:5f:cb:4b     *        eth0',
    '10.0.0.12        0x1         0x0         00:00:00:00:00:00     *        eth0',
    '10.0.0.13        0x1         0x6         2e:b9:29:12:28:a1     *        eth0',
    '10.0.0.14        0x1         0x2         aa:bb:cc:dd:ee:ff     *        eth1',
    'garbage',
    '',
  ].join('\n');
  const rows = parseProcArp(text, 'eth0');
  t.deepEqual(rows, [
    { dst: '10.0.0.11', lladdr: 'be:22:f2:5f:cb:4b', state: ['REACHABLE'] },
    { dst: '10.0.0.12', lladdr: '00:00:00:00:00:00', state: ['INCOMPLETE'] },
    { dst: '10.0.0.13', lladdr: '2e:b9:29:12:28:a1', state: ['PERMANENT'] },
  ]);
  t.deepEqual(edgeNeighbourEntries(rows, ['10.0.0.0/24']), [
    { ip: '10.0.0.11', mac: 'be:22:f2:5f:cb:4b' },
    { ip: '10.0.0.13', mac: '2e:b9:29:12:28:a1' },
  ]);
});

/**
 * An edge namespace and a node namespace on one veth (e0 ↔ n0), and `edgelb node run` on n0,
 * started as often as a test likes; whatever runs at the end gets SIGTERM, then everything goes.
 */
async function nodeRig(t: { teardown: (fn: () => Promise<void>) => void; true: (v: boolean, m?: string) => void }, tag: string, subnet: number) {
  const id = uniqueId();
  const E = `elb${tag}-e-${id}`;
  const N = `elb${tag}-n-${id}`;
  const o = 16 + ((parseInt(id, 16) + subnet) % 200);
  const EDGE = `10.${o}.${subnet}.2`;
  const NODE = `10.${o}.${subnet}.10`;
  const PIN = `${testBpffs()}/edgelb-test-node-${tag}-${id}`;
  const cleanup = new Cleanup();
  const rig = { E, N, o, EDGE, NODE, PIN, log: '', child: null as ChildProcess | null };
  t.teardown(async () => {
    const c = rig.child;
    if (c && c.exitCode === null && c.signalCode === null) {
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
      await exited(c);
      clearTimeout(timer);
    }
    rmSync(PIN, { recursive: true, force: true });
    await cleanup.run();
  });
  await createNetns(E, cleanup);
  await createNetns(N, cleanup);
  await vethPair(E, 'e0', N, 'n0');
  await addAddress(E, 'e0', `${EDGE}/24`);
  await addAddress(N, 'n0', `${NODE}/24`);
  /** Starts the node agent (after the previous one exited) and waits for its READY line. */
  const start = async (...extra: string[]): Promise<ChildProcess> => {
    rig.log = '';
    const c = spawn('ip', ['netns', 'exec', N, 'bin/edgelb', 'node', 'run', '--interface', 'n0', '--node-name', 'node-1', '--node-ip', NODE, '--edge-sources', EDGE, '--pin-path', PIN, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    rig.child = c;
    c.stdout!.on('data', (d: Buffer) => (rig.log += d.toString()));
    c.stderr!.on('data', (d: Buffer) => (rig.log += d.toString()));
    t.true(await waitFor(() => rig.log.includes('EDGELB NODE READY') || c.exitCode !== null, 20_000), rig.log.slice(-1500));
    return c;
  };
  return Object.assign(rig, { start });
}

const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));

test.serial('edgelb node run: resolves its edges, drops a forged option as untrusted_source, and its metrics follow the kernel when a program is detached by hand', async (t) => {
  t.timeout(90_000);
  const rig = await nodeRig(t, 'na', 31);
  const { E, N, o, EDGE, NODE } = rig;
  const PORT = 9101;
  await rig.start('--metrics-listen', `127.0.0.1:${PORT}`);
  t.regex(rig.log, /EDGELB NODE READY/, rig.log.slice(-1500));

  // The agent asked its edge (it had no neighbour entry for it): the edge's ARP reply taught the program.
  const m0 = await scrape(N, PORT);
  t.is(m0.status, 200);
  t.is(metric(m0.body, 'edgelb_node_edge_neighbours'), 1, m0.body);
  t.is(metric(m0.body, 'edgelb_node_program_attached', 'program="node_ingress",interface="n0"'), 1);
  t.is(metric(m0.body, 'edgelb_node_program_attached', 'program="node_egress",interface="n0"'), 1);
  t.is(metric(m0.body, 'edgelb_node_drops', 'reason="untrusted_source"'), 0);
  t.is(metric(m0.body, 'edgelb_node_flows'), 0);
  t.is(metric(m0.body, 'edgelb_node_frontends_unprogrammed'), 0, m0.body);
  t.is(metric(m0.body, 'edgelb_node_frontend_conflicts'), 0);

  // Path probes: the edge's is answered; one from an address outside --edge-sources (a forged
  // source, a would-be reflection) is not.
  const OTHER = `10.${o}.31.3`;
  await addAddress(E, 'e0', `${OTHER}/24`);
  const probe = probePayload(Buffer.from('0011223344556677', 'hex')).toString('hex');
  const ask = (src: string) => nsRun(E, ['/usr/bin/python3', '-c', `import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("${src}",0)); s.settimeout(1)
s.sendto(bytes.fromhex("${probe}"),("${NODE}",${PROBE_PORT}))
try: s.recv(64); print("answered")
except socket.timeout: print("silent")`]);
  t.is((await ask(EDGE)).stdout.trim(), 'answered');
  t.is((await ask(OTHER)).stdout.trim(), 'silent');
  const mp = await scrape(N, PORT);
  t.is(metric(mp.body, 'edgelb_node_probes', 'result="answered"'), 1, mp.body);
  t.is(metric(mp.body, 'edgelb_node_probes', 'result="refused"'), 1);

  // A forged option SYN whose link-layer sender is not the edge (what a router forwards from a client).
  const nodeMac = (JSON.parse((await nsRun(N, ['ip', '-j', 'link', 'show', 'n0'])).stdout) as { address: string }[])[0]!.address;
  const forged = buildPacket({ eth: { src: '02:00:00:00:99:99', dst: nodeMac }, ip: { src: '172.16.0.20', dst: NODE, options: dsrOption('198.51.100.1', 80) }, tcp: { sport: 40000, dport: 8080, flags: { syn: true } } });
  await inject(E, { iface: 'e0', frames: [forged, forged] });
  const m1 = await scrape(N, PORT);
  t.is(metric(m1.body, 'edgelb_node_drops', 'reason="untrusted_source"'), 2, m1.body);
  t.is(metric(m1.body, 'edgelb_node_flows'), 0);

  // Detached behind the agent's back: the metric and /healthz say so at once.
  await nsRun(N, ['tc', 'filter', 'del', 'dev', 'n0', 'ingress', 'pref', String(NODE_DEFAULTS.tcPriority), 'handle', `0x${NODE_DEFAULTS.tcHandle.toString(16)}`, 'bpf']);
  const m2 = await scrape(N, PORT);
  t.is(metric(m2.body, 'edgelb_node_program_attached', 'program="node_ingress",interface="n0"'), 0, m2.body);
  t.is(metric(m2.body, 'edgelb_node_program_attached', 'program="node_egress",interface="n0"'), 1);
  const h = await scrape(N, PORT, '/healthz');
  t.is(h.status, 503);
  t.regex(h.body, /not attached: node_ingress on n0/);
  await sleep(10);
});

// A DaemonSet's node agent is replaced by handover (SIGQUIT: programs stay attached for the next
// one) on every upgrade, and may crash. Each start attached the probe marker anew under a handle
// the kernel picked, so every restart left one more node_probe filter behind, still answering.
test.serial('edgelb node run restarted by handover and after a crash: one probe filter, not one per start; SIGTERM removes it', async (t) => {
  t.timeout(90_000);
  const rig = await nodeRig(t, 'nr', 32);
  const { N } = rig;
  const start = rig.start;
  let child: ChildProcess;
  const probeFilters = async () => (await nsRun(N, ['tc', 'filter', 'show', 'dev', 'n0', 'ingress'])).stdout.split('\n').filter((l) => / node_probe/.test(l)).length;

  child = await start();
  t.is(await probeFilters(), 1);
  child.kill('SIGQUIT'); // handover: everything stays for the next agent
  await exited(child);
  t.is(await probeFilters(), 1, 'left for the next agent');
  child = await start();
  t.is(await probeFilters(), 1, 'after a handover restart');
  child.kill('SIGKILL'); // a crash: no cleanup at all
  await exited(child);
  child = await start();
  t.is(await probeFilters(), 1, 'after a crash and a restart');
  child.kill('SIGTERM');
  await exited(child);
  t.is(await probeFilters(), 0, 'SIGTERM detaches it');
});
