// End to end, one lab: client → FRR router (ECMP) → two edges (gobgpd +
// edgelb agent, XDP) → two Kubernetes nodes (tc program) → echo pods, with
// the real kubectl against the test API server. Forwarding modes and
// per-service policy (issue 6: tests 1, 3 and 8).
import test from 'ava';
import { bringUp, captureEdges, need, nodeCounterDeltas, stopAll, summary, tearDown, quietForUdpTakeover, type LabHolder } from './helpers.js';
import type { LabServiceSpec } from '../../src/lab/manifests.js';

let h: LabHolder | undefined;

test.before(async () => {
  h = await bringUp();
});

test.after.always(async () => {
  await tearDown(h);
});

async function serviceUp(t: import('ava').ExecutionContext, spec: LabServiceSpec): Promise<string> {
  const lab = need(t, h);
  await lab.applyService(spec);
  const vip = await lab.waitForVip(spec.name);
  await lab.waitForGateways(vip, lab.plan.edges.map((e) => e.address));
  await lab.waitServing(vip, spec.tcpPort ?? 80);
  return vip;
}

for (const dispatch of ['ip-option', 'ipip'] as const) {
  test.serial(`DSR ${dispatch}: TCP and UDP answered from the VIP, pods see the client, no replies cross the edges`, async (t) => {
    const lab = need(t, h);
    const name = `echo-${dispatch.replace('-', '')}`;
    const vip = await serviceUp(t, { name, annotations: { 'edgelb.io/mode': 'dsr', 'edgelb.io/dispatch': dispatch } });
    const replies = await captureEdges(lab, h!.dir, `src host ${vip}`, `${name}-replies`);
    const requests = await captureEdges(lab, h!.dir, `dst host ${vip}`, `${name}-requests`);
    const tcp = await lab.load({ kind: 'http', target: vip, port: 80, count: 200, concurrency: 4, timeoutMs: 2000 });
    // An answer is waited for 3 s: under CI's load (2 cores, another test file beside this one) a
    // datagram's answer once came after the 1 s this used to allow, counted as failed. A lost one still fails.
    await quietForUdpTakeover();
    const { result: udp, deltas } = await nodeCounterDeltas(lab, () => lab.load({ kind: 'udp', target: vip, port: 9090, count: 200, concurrency: 2, timeoutMs: 3000 }));
    // 200 kB answers: many segments, GSO and page fragments on the node's egress.
    const big = await lab.load({ kind: 'http', target: vip, port: 80, count: 20, concurrency: 2, timeoutMs: 5000, path: '/?size=200000' });
    const replyCounts = await stopAll(replies);
    const requestCounts = await stopAll(requests);
    t.is(tcp.failed, 0, summary(tcp));
    t.is(udp.failed, 0, `${summary(udp)}; node counters during it: ${deltas}`);
    t.is(big.failed, 0, `200 kB answers: ${summary(big)}`);
    // Every TCP connection completed, so every SYN-ACK came from VIP:80 (the client resets anything else).
    t.is(tcp.ok, 200, summary(tcp));
    t.is(udp.wrongSource, 0, `UDP answers from an address other than ${vip}: ${summary(udp)}`);
    t.deepEqual(Object.keys(tcp.clients), [lab.plan.client.address], `pods saw ${JSON.stringify(tcp.clients)}`);
    t.deepEqual(Object.keys(udp.clients), [lab.plan.client.address], `pods saw ${JSON.stringify(udp.clients)}`);
    t.is(Object.keys(tcp.pods).length, 4, `all four pods serve: ${JSON.stringify(tcp.pods)}`);
    t.deepEqual(replyCounts, [0, 0], `packets from ${vip} on the edges' uplinks (edge1, edge2)`);
    t.true(requestCounts.every((n) => n > 0), `requests reached both edges: ${requestCounts.join(', ')}`);
    t.log(`${dispatch}: ${summary(tcp)}; requests seen on edge uplinks ${requestCounts.join('/')}, replies ${replyCounts.join('/')}`);
  });
}

test.serial('loadBalancerSourceRanges: a client outside the range gets nothing, one inside is served', async (t) => {
  const lab = need(t, h);
  const vip = await serviceUp(t, { name: 'ranges', sourceRanges: [`${lab.plan.client.address}/32`], udpPort: null });
  const inside = await lab.load({ kind: 'http', target: vip, port: 80, count: 20, concurrency: 2, bind: lab.plan.client.address, timeoutMs: 1500 });
  const outside = await lab.load({ kind: 'http', target: vip, port: 80, count: 4, concurrency: 2, bind: lab.plan.client.otherAddress, timeoutMs: 1000 });
  t.is(inside.ok, 20, summary(inside));
  t.is(outside.ok, 0, summary(outside));
  t.is(outside.failed, 4, summary(outside));
});

test.serial('sessionAffinity ClientIP: every new connection of one client lands on one pod', async (t) => {
  const lab = need(t, h);
  const vip = await serviceUp(t, { name: 'sticky', sessionAffinity: { timeoutSeconds: 600 }, udpPort: null });
  const a = await lab.load({ kind: 'http', target: vip, port: 80, count: 60, concurrency: 3, bind: lab.plan.client.address });
  const b = await lab.load({ kind: 'http', target: vip, port: 80, count: 60, concurrency: 3, bind: lab.plan.client.otherAddress });
  t.is(a.ok, 60, summary(a));
  t.is(b.ok, 60, summary(b));
  t.is(Object.keys(a.pods).length, 1, `client ${lab.plan.client.address} went to ${JSON.stringify(a.pods)}`);
  t.is(Object.keys(b.pods).length, 1, `client ${lab.plan.client.otherAddress} went to ${JSON.stringify(b.pods)}`);
});

test.serial('snat: the pod sees an edge address and answers go back through the edge', async (t) => {
  const lab = need(t, h);
  const vip = await serviceUp(t, { name: 'snat', annotations: { 'edgelb.io/mode': 'snat' } });
  const replies = await captureEdges(lab, h!.dir, `src host ${vip}`, 'snat-replies');
  const tcp = await lab.load({ kind: 'http', target: vip, port: 80, count: 100, concurrency: 4 });
  const udp = await lab.load({ kind: 'udp', target: vip, port: 9090, count: 100, concurrency: 2 });
  const replyCounts = await stopAll(replies);
  t.is(tcp.failed, 0, summary(tcp));
  t.is(udp.failed, 0, summary(udp));
  t.is(udp.wrongSource, 0, summary(udp));
  const edges = lab.plan.edges.map((e) => e.address);
  t.true(Object.keys(tcp.clients).every((c) => edges.includes(c)), `TCP pods saw ${JSON.stringify(tcp.clients)}, want edge addresses ${edges.join(', ')}`);
  t.true(Object.keys(udp.clients).every((c) => edges.includes(c)), `UDP pods saw ${JSON.stringify(udp.clients)}`);
  t.true(replyCounts.reduce((a, b) => a + b, 0) > 0, `replies (from ${vip}) leave through the edges: ${replyCounts.join('/')}`);
});

test.serial('hybrid: TCP is DSR (pod sees the client), UDP is SNAT (pod sees an edge)', async (t) => {
  const lab = need(t, h);
  const vip = await serviceUp(t, { name: 'hybrid', annotations: { 'edgelb.io/mode': 'hybrid' } });
  const tcp = await lab.load({ kind: 'http', target: vip, port: 80, count: 60, concurrency: 3 });
  const udp = await lab.load({ kind: 'udp', target: vip, port: 9090, count: 60, concurrency: 2 });
  t.is(tcp.failed, 0, summary(tcp));
  t.is(udp.failed, 0, summary(udp));
  t.deepEqual(Object.keys(tcp.clients), [lab.plan.client.address], `TCP pods saw ${JSON.stringify(tcp.clients)}`);
  const edges = lab.plan.edges.map((e) => e.address);
  t.true(Object.keys(udp.clients).every((c) => edges.includes(c)), `UDP pods saw ${JSON.stringify(udp.clients)}`);
});

for (const how of ['drop', 'strip'] as const) {
  test.serial(`dispatch auto: a fabric hop that ${how}s IPv4 options in front of node2; ip-option fails there, auto probes and switches that path to IPIP`, async (t) => {
  const lab = need(t, h);
  const [n1, n2] = lab.plan.nodes;
  lab.optionHop(n2!.name, how);
  // ip-option service: requests whose pod is on node2 are lost.
  const fixedVip = await (async () => {
    await lab.applyService({ name: `fixed-${how}`, annotations: { 'edgelb.io/dispatch': 'ip-option' }, udpPort: null }, lab.plan.nodes[0]!.pods.map((pod) => ({ pod, node: n1!.name })).concat(n2!.pods.map((pod) => ({ pod, node: n2!.name }))));
    const v = await lab.waitForVip(`fixed-${how}`);
    await lab.waitForGateways(v, lab.plan.edges.map((e) => e.address));
    return v;
  })();
  const broken = await lab.load({ kind: 'http', target: fixedVip, port: 80, count: 40, concurrency: 4, timeoutMs: 800 });
  t.true(broken.failed > 0, `with options mangled before ${n2!.name}, ip-option must lose requests: ${summary(broken)}`);
  t.true(Object.keys(broken.pods).every((p) => p.startsWith('echo-1')), `only ${n1!.name}'s pods answer: ${summary(broken)}`);
  // dispatch auto: the edges probe each node path and send node2's traffic as IPIP.
  await lab.applyService({ name: `auto-${how}`, annotations: { 'edgelb.io/dispatch': 'auto' } });
  const vip = await lab.waitForVip(`auto-${how}`);
  await lab.waitForGateways(vip, lab.plan.edges.map((e) => e.address));
  const deadline = Date.now() + 20000;
  let paths: { nodeIp: string; dispatch: string; reason: string }[][];
  for (;;) {
    paths = await Promise.all(lab.plan.edges.map(async (e) => ((await lab.agentStatus(e.name)).datapath as { paths: { nodeIp: string; dispatch: string; reason: string }[] }).paths));
    const ok = paths.every((ps) => ps.find((p) => p.nodeIp === n2!.address)?.dispatch === 'ipip' && ps.find((p) => p.nodeIp === n1!.address)?.dispatch === 'ip-option');
    if (ok || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  t.log(`path verdicts: ${JSON.stringify(paths)}`);
  for (const ps of paths) {
    t.is(ps.find((p) => p.nodeIp === n2!.address)?.dispatch, 'ipip', `path to ${n2!.name}: ${JSON.stringify(ps)}`);
    t.is(ps.find((p) => p.nodeIp === n1!.address)?.dispatch, 'ip-option', `path to ${n1!.name}: ${JSON.stringify(ps)}`);
  }
  const tcp = await lab.load({ kind: 'http', target: vip, port: 80, count: 200, concurrency: 4, timeoutMs: 2000 });
  await quietForUdpTakeover(); // DSR UDP to the same pods as the test before
  const udp = await lab.load({ kind: 'udp', target: vip, port: 9090, count: 100, concurrency: 2, timeoutMs: 1000 });
  t.is(tcp.failed, 0, summary(tcp));
  t.is(udp.failed, 0, summary(udp));
  t.is(Object.keys(tcp.pods).length, 4, `every pod serves: ${summary(tcp)}`);
  t.deepEqual(Object.keys(tcp.clients), [lab.plan.client.address], summary(tcp));
  t.deepEqual(Object.keys(udp.clients), [lab.plan.client.address], summary(udp));
  // Hop gone: the path recovers to ip-option (the prober needs a streak of good probes).
  lab.optionHop(n2!.name, 'off');
  const until = Date.now() + 30000;
  let back = false;
  while (!back && Date.now() < until) {
    const st = await lab.agentStatus(lab.plan.edges[0]!.name);
    back = (st.datapath as { paths: { nodeIp: string; dispatch: string }[] }).paths.find((p) => p.nodeIp === n2!.address)?.dispatch === 'ip-option';
    if (!back) await new Promise((r) => setTimeout(r, 250));
  }
  t.true(back, `the path to ${n2!.name} went back to ip-option once the hop was removed`);
});
}
