// The node program on real interfaces: three namespaces
//
//   client (198.51.100.7; bpf/node_test_client.o at tc egress plays the edge)
//     ── veth ── node (198.51.100.1 fabric | 10.244.1.1 pods; node.o on the fabric side)
//     ── veth ── pod (10.244.1.5: UDP echo on 5353, TCP echo on 8080)
//
// The client talks to VIP:53/UDP and VIP:80/TCP; the fixture turns its
// packets into what an edge sends (ip-option: DNAT to the pod + the DSR
// option on SYN/UDP; ipip: wrapped to the node). The node strips the option
// or decapsulates and DNATs, and the pod's replies leave the node from the
// VIP straight to the client, whose sockets accept them only if the address,
// port and checksums are right. Run with checksum offload off at the pod
// (software checksums: the client verifies our incremental updates) and on
// (CHECKSUM_PARTIAL, scatter-gather/TSO replies far beyond the linear head).
// Also: pinned maps survive a reload, and a second attach replaces the
// filters in place.
import test from 'ava';
import { spawn } from 'node:child_process';
import { BpfObject, inNetns, tcQuery } from '../../src/datapath/loader.js';
import { bpfObjectPath } from '../../src/assets.js';
import { NodeDatapath, NODE_DEFAULTS } from '../../src/datapath/node-datapath.js';
import { pinDirFor } from '../lib/bpffs.js';
import { addAddress, Cleanup, createNetns, nsRun, sysctl, uniqueId, vethPair } from '../lib/netns.js';
import { backend, NODE_NAME, service } from './node-fixtures.js';

const VIP = '203.0.113.10';
const CLIENT = '198.51.100.7';
const NODE_FABRIC = '198.51.100.1';
const POD = '10.244.1.5';

interface Lab {
  client: string;
  node: string;
  pod: string;
}

async function buildLab(cleanup: Cleanup, podOffload: boolean): Promise<Lab> {
  const id = uniqueId(3);
  const lab = { client: `nlc-${id}`, node: `nln-${id}`, pod: `nlp-${id}` };
  for (const ns of Object.values(lab)) await createNetns(ns, cleanup);
  await vethPair(lab.client, 'c0', lab.node, 'n0');
  await vethPair(lab.node, 'p0', lab.pod, 'e0');
  await addAddress(lab.client, 'c0', `${CLIENT}/24`);
  await addAddress(lab.node, 'n0', `${NODE_FABRIC}/24`);
  await addAddress(lab.node, 'p0', '10.244.1.1/24');
  await addAddress(lab.pod, 'e0', `${POD}/24`);
  await nsRun(lab.pod, ['ip', 'route', 'add', 'default', 'via', '10.244.1.1']);
  await sysctl(lab.node, 'net.ipv4.ip_forward', '1');
  for (const k of ['net.ipv4.conf.all.rp_filter', 'net.ipv4.conf.default.rp_filter', 'net.ipv4.conf.c0.rp_filter']) await sysctl(lab.client, k, '0');
  await nsRun(lab.client, ['ip', 'route', 'add', `${VIP}/32`, 'via', NODE_FABRIC, 'src', CLIENT]);
  await nsRun(lab.node, ['ip', 'route', 'add', `${CLIENT}/32`, 'dev', 'n0']);
  if (!podOffload) await nsRun(lab.pod, ['ethtool', '-K', 'e0', 'tx', 'off']);
  return lab;
}

/** Starts a process inside a namespace; stopped by PID at cleanup. */
function startIn(cleanup: Cleanup, ns: string, cmd: string[]): void {
  const child = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: 'ignore' });
  cleanup.add(`${cmd[0]} in ${ns}`, () => {
    if (child.exitCode === null) child.kill('SIGTERM');
  });
}

async function waitListening(ns: string, proto: 'tcp' | 'udp', port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const { stdout } = await nsRun(ns, ['ss', proto === 'tcp' ? '-ltnH' : '-lunH', `sport = :${port}`]);
    if (stdout.trim() !== '') return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${proto}/${port} in ${ns}`);
}

async function echoThrough(lab: Lab, proto: 'udp' | 'tcp', payload: string): Promise<string> {
  const target = proto === 'udp' ? `UDP4:${VIP}:53` : `TCP4:${VIP}:80,connect-timeout=3`;
  const child = spawn('ip', ['netns', 'exec', lab.client, 'socat', '-T3', '-', target], { stdio: ['pipe', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (c: Buffer) => chunks.push(c));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const want = Buffer.byteLength(payload);
  return await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`${proto} echo timed out after ${Buffer.concat(chunks).length}/${want} bytes ${err}`));
    }, 8000);
    child.stdout.on('data', () => {
      if (Buffer.concat(chunks).length >= want) {
        clearTimeout(timer);
        child.kill('SIGTERM');
        resolve(Buffer.concat(chunks).toString());
      }
    });
    child.on('exit', () => {
      clearTimeout(timer);
      const got = Buffer.concat(chunks).toString();
      if (got.length >= want) resolve(got);
      else reject(new Error(`${proto} echo ended after ${got.length}/${want} bytes: ${err}`));
    });
    child.stdin.end(payload);
  });
}

/** The edge stand-in on the client's c0 egress: mode 1 ip-option, 2 ipip. */
function attachEdgeStandIn(cleanup: Cleanup, lab: Lab, mode: 1 | 2, vip: string, vport: number, pod: string, pport: number): BpfObject {
  const obj = BpfObject.load(bpfObjectPath('node_test_client'));
  cleanup.add('edge stand-in object', () => obj.close());
  const cfg = Buffer.alloc(24);
  Buffer.from(vip.split('.').map(Number)).copy(cfg, 0);
  cfg.writeUInt16BE(vport, 4);
  cfg[6] = mode;
  Buffer.from(pod.split('.').map(Number)).copy(cfg, 8);
  cfg.writeUInt16BE(pport, 12);
  Buffer.from(CLIENT.split('.').map(Number)).copy(cfg, 16);
  Buffer.from(NODE_FABRIC.split('.').map(Number)).copy(cfg, 20);
  obj.map('ntc_config').update(Buffer.alloc(4), cfg);
  inNetns(lab.client, () => obj.program('ntc_egress').attachTc('c0', 'egress'));
  return obj;
}

for (const [podOffload, mode] of [[false, 'ipip'], [true, 'ipip'], [false, 'ip-option'], [true, 'ip-option']] as const) {
  test.serial(`live ${mode}: the node delivers to the pod, replies leave from the VIP (pod tx offload ${podOffload ? 'on' : 'off'})`, async (t) => {
    const cleanup = new Cleanup();
    t.teardown(async () => {
      const errors = await cleanup.run();
      if (errors.length > 0) t.log(errors.map((e) => e.message).join('\n'));
    });
    const lab = await buildLab(cleanup, podOffload);
    const pinPath = pinDirFor(t, 'node-live');
    // The client stands in for the edge: its address is the edge source, and
    // the node learns its link-layer address from its ARP for the node.
    const dp = NodeDatapath.open({ pinPath, nodeIp: NODE_FABRIC, maxFlows: 4096, edgeSources: [CLIENT] });
    cleanup.add('node datapath object', () => dp.close());
    dp.applyServices(
      [service(VIP, 53, 'UDP', [backend(POD, 5353)]), service(VIP, 80, 'TCP', [backend(POD, 8080)])],
      { name: NODE_NAME },
    );
    inNetns(lab.node, () => dp.attach('n0'));
    const stand = attachEdgeStandIn(cleanup, lab, mode === 'ipip' ? 2 : 1, VIP, 53, POD, 5353);
    const cfg = stand.map('ntc_config');

    startIn(cleanup, lab.pod, ['socat', 'UDP4-RECVFROM:5353,reuseaddr,fork', 'PIPE']);
    startIn(cleanup, lab.pod, ['socat', 'TCP4-LISTEN:8080,reuseaddr,fork', 'PIPE']);
    await waitListening(lab.pod, 'udp', 5353);
    await waitListening(lab.pod, 'tcp', 8080);

    t.is(await echoThrough(lab, 'udp', `hello over ${mode}\n`), `hello over ${mode}\n`);
    // The stand-in handles one frontend at a time: now VIP:80/TCP → POD:8080.
    const c80 = cfg.lookup(Buffer.alloc(4))!;
    c80.writeUInt16BE(80, 4);
    c80.writeUInt16BE(8080, 12);
    cfg.update(Buffer.alloc(4), c80);
    // Large enough for TSO/GSO replies (with offload on) far beyond the linear head.
    const big = Array.from({ length: 4000 }, (_, i) => `line ${i} ${'x'.repeat(40)}\n`).join('');
    t.is(await echoThrough(lab, 'tcp', big), big);

    const flows = dp.flows();
    t.true(flows.some((f) => f.proto === 'UDP' && f.vip === VIP && f.vipPort === 53 && f.podIp === POD && f.clientIp === CLIENT));
    t.true(flows.some((f) => f.proto === 'TCP' && f.vip === VIP && f.vipPort === 80 && f.podPort === 8080));
    const c = dp.counters();
    if (mode === 'ipip') t.true(c.in_ipip_dnat >= 2 && c.eg_rewrite >= 2, JSON.stringify(c));
    else t.true(c.in_opt_stripped >= 2 && c.eg_rewrite >= 2, JSON.stringify(c));
    t.is(c.drop_rewrite + c.drop_decap + c.drop_malformed + c.drop_bad_option + c.drop_unknown_vip + c.drop_untrusted_source, 0, JSON.stringify(c));
    t.deepEqual(dp.edgeNeighbours().map((n) => [n.ip, n.how]), [[CLIENT, 'arp']], 'the stand-in edge was learnt from its ARP');
    t.log(JSON.stringify(c));

    // Restart: a new object reuses the pinned maps (flows kept) and replaces
    // the filters in place; traffic keeps working.
    const dp2 = NodeDatapath.open({ pinPath, nodeIp: NODE_FABRIC, maxFlows: 4096, edgeSources: [CLIENT] });
    cleanup.add('second node datapath object', () => dp2.close());
    t.is(dp2.flows().length, flows.length);
    inNetns(lab.node, () => dp2.attach('n0'));
    const filter = { priority: NODE_DEFAULTS.tcPriority, handle: NODE_DEFAULTS.tcHandle };
    t.is(inNetns(lab.node, () => tcQuery('n0', 'ingress', filter)), dp2.ingress.info().id);
    t.is(inNetns(lab.node, () => tcQuery('n0', 'egress', filter)), dp2.egress.info().id);
    c80.writeUInt16BE(53, 4);
    c80.writeUInt16BE(5353, 12);
    cfg.update(Buffer.alloc(4), c80);
    t.is(await echoThrough(lab, 'udp', 'after restart\n'), 'after restart\n');
    // The first instance's filters were replaced: its detach() must leave them.
    dp.detach();
    t.is(inNetns(lab.node, () => tcQuery('n0', 'ingress', filter)), dp2.ingress.info().id);
    // detach() from outside the namespace finds the attach's namespace.
    dp2.detach();
    t.is(inNetns(lab.node, () => tcQuery('n0', 'ingress', filter)), null);
    t.is(inNetns(lab.node, () => tcQuery('n0', 'egress', filter)), null);
  });
}
