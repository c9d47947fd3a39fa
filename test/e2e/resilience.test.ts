// End to end, one lab: what happens to traffic while things change —
// drain, ECMP rehash, agent restart, rolling update, edge failure
// (issue 6: tests 5, 6, 9, 7, 4, in that order; failover last because it
// leaves edge1 cut off).
import test from 'ava';
import { blackhole } from '../../test/lib/netns.js';
import { bringUpServing, need, sampleWhile, summary, tearDown, type LabHolder } from './helpers.js';
import type { EndpointSpec, LabServiceSpec } from '../../src/lab/manifests.js';
import { allEndpoints, POD_LABEL } from '../../src/lab/manifests.js';
import type { Lab } from '../../src/lab/handle.js';

let h: LabHolder | undefined;
const svc: LabServiceSpec = { name: 'steady', udpPort: null };
let vip = '';

test.before(async () => {
  ({ h, vip } = await bringUpServing(svc));
});

test.after.always(async () => {
  await tearDown(h);
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Every node agent's datapath counters and every edge's datapath drops, by node and edge. */
async function datapathCounters(lab: Lab): Promise<Record<string, Record<string, number>>> {
  return Object.fromEntries(await Promise.all([
    ...lab.plan.nodes.map(async (n) => [n.name, await lab.nodeCounters(n.name)] as const),
    ...lab.plan.edges.map(async (e) => [e.name, await lab.edgeDrops(e.name)] as const),
  ]));
}

/** What moved between two snapshots (only counters that changed). */
function diffCounters(a: Record<string, Record<string, number>>, b: Record<string, Record<string, number>>): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const [node, c] of Object.entries(b)) {
    for (const [k, v] of Object.entries(c)) {
      const d = v - (a[node]?.[k] ?? 0);
      if (d) (out[node] ??= {})[k] = d;
    }
  }
  return out;
}

test.serial('drain one edge under load: zero failed requests, then only the other edge carries the VIP', async (t) => {
  const lab = need(t, h);
  const [e1, e2] = lab.plan.edges;
  const load = lab.load({ kind: 'http', target: vip, port: 80, durationMs: 7000, concurrency: 4, timeoutMs: 2000 });
  await sleep(1000);
  const t0 = Date.now();
  const out = await lab.edgelb(e1!.name, ['drain']);
  const drainMs = Date.now() - t0;
  const gone = await lab.waitForGateways(vip, [e2!.address], 10000);
  const r = await load;
  t.log(`drain: "${out.stdout.trim()}" took ${drainMs} ms; route via ${e2!.name} only ${gone} ms later; ${summary(r)}`);
  t.is(r.failed, 0, summary(r));
  t.true(r.ok > 100, summary(r));
  await lab.edgelb(e1!.name, ['undrain']);
  await lab.waitForGateways(vip, [e1!.address, e2!.address], 15000);
});

test.serial('ECMP rehash: 50 long-lived connections survive one edge leaving the router\'s nexthops and coming back', async (t) => {
  const lab = need(t, h);
  const [e1, e2] = lab.plan.edges;
  const load = lab.load({ kind: 'keep', target: vip, port: 80, durationMs: 14000, connections: 50, intervalMs: 250, timeoutMs: 3000 });
  await sleep(2000);
  await lab.router().vtysh('configure terminal', `router bgp ${lab.plan.router.asn}`, `neighbor ${e1!.address} shutdown`);
  const down = await lab.waitForGateways(vip, [e2!.address], 10000);
  await sleep(2000);
  await lab.router().vtysh('configure terminal', `router bgp ${lab.plan.router.asn}`, `no neighbor ${e1!.address} shutdown`);
  const back = await lab.waitForGateways(vip, [e1!.address, e2!.address], 15000);
  const r = await load;
  t.log(`rehash: ${e1!.name} out of the nexthops after ${down} ms, back after ${back} ms; ${summary(r)}; broken connections ${r.brokenConnections}`);
  t.is(r.brokenConnections, 0, summary(r));
  t.is(r.failed, 0, summary(r));
  t.true(r.ok >= 50 * 10, summary(r));
});

test.serial('agent restart on an edge under load: zero failed requests, its route never leaves the router', async (t) => {
  const lab = need(t, h);
  const [e1, e2] = lab.plan.edges;
  const load = lab.load({ kind: 'http', target: vip, port: 80, durationMs: 9000, concurrency: 4, timeoutMs: 2000 });
  const samples = sampleWhile(load, () => lab.routerGateways(vip), 50);
  await sleep(1000);
  const t0 = Date.now();
  await lab.stopAgent(e1!.name, 'SIGQUIT', 15000);
  const stopped = Date.now() - t0;
  await lab.startAgent(e1!.name);
  const restarted = Date.now() - t0;
  const r = await load;
  const s = await samples;
  const without = s.filter((g) => !g.includes(e1!.address)).length;
  const none = s.filter((g) => g.length === 0).length;
  t.log(`restart: agent stopped (SIGQUIT, handover) in ${stopped} ms, ready again ${restarted} ms after the stop began; ${s.length} route samples, ${without} without ${e1!.name}, ${none} without any nexthop; ${summary(r)}`);
  t.is(r.failed, 0, summary(r));
  t.is(none, 0, 'the VIP route was always there');
  t.is(without, 0, `${e1!.name}'s nexthop stayed during the restart`);
  await lab.waitForGateways(vip, [e1!.address, e2!.address], 15000);
});

test.serial('rolling update: pods replaced gracefully under load, zero failed requests', async (t) => {
  const lab = need(t, h);
  const old = allEndpoints(lab.plan);
  const t0 = Date.now();
  const marks: string[] = [];
  const mark = (what: string): void => void marks.push(`${Date.now() - t0} ms ${what}`);
  const nodesBefore = await datapathCounters(lab);
  const load = lab.load({ kind: 'http', target: vip, port: 80, durationMs: 10000, concurrency: 4, timeoutMs: 2000 });
  await sleep(1000);
  // New pods come up (one per node) as members of the Service; once the
  // kubelet reports them Ready the EndpointSlice controller lists them.
  const fresh: EndpointSpec[] = [];
  for (const n of lab.plan.nodes) {
    const base = n.podCidr.split('.').slice(0, 3).join('.');
    const pod = await lab.addPod(n.name, `echo-${n.name.slice(4)}new`, `${base}.20`, [svc.name]);
    fresh.push({ pod, node: n.name });
  }
  mark('new pods serving');
  const nodesAdded = diffCounters(nodesBefore, await datapathCounters(lab));
  await sleep(1000);
  // The old Pod objects are deleted as a rollout does: their endpoints turn
  // terminating at once; the kubelet keeps them serving for the preStop
  // time (1.5 s), then SIGTERM (finish in flight), then the objects go.
  await Promise.all(old.map((e) => lab.deletePod(e.pod.name)));
  mark('old pods deleted (terminating)');
  const r = await load;
  const nodes = diffCounters(nodesBefore, await datapathCounters(lab));
  t.log(`rolling update: ${marks.join('; ')}; ${summary(r)} (a failure's time is when it failed; a timeout started ${2000} ms earlier); node counters and edge drops during the load: ${JSON.stringify(nodes)}, of which until the new pods served: ${JSON.stringify(nodesAdded)}`);
  t.is(r.failed, 0, `${summary(r)}; steps: ${marks.join('; ')}; node counters and edge drops: ${JSON.stringify(nodes)}`);
  const after = await lab.load({ kind: 'http', target: vip, port: 80, count: 40, concurrency: 2 });
  t.deepEqual(Object.keys(after.pods).sort(), fresh.map((f) => f.pod.name).sort(), `after the update only new pods answer: ${summary(after)}`);
  // A deleted pod goes once its process ended: preStop (1.5 s), SIGTERM, the
  // echo finishing what is in flight (bounded at 10 s), the kubelet's next sync.
  const oldLeft = async (): Promise<number> => (await lab.kubectlJson<{ items: unknown[] }>(['get', 'pods', '-l', `${POD_LABEL} in (${old.map((e) => e.pod.name).join(',')})`])).items.length;
  const removeBy = Date.now() + 20_000;
  let left = await oldLeft();
  while (left > 0 && Date.now() < removeBy) {
    await sleep(250);
    left = await oldLeft();
  }
  t.is(left, 0, 'the kubelet removed the old Pod objects (within 20 s of the update)');
});

test.serial('failover: blackholing an edge\'s uplink, BFD takes it out of the router within a second; failed requests counted', async (t) => {
  const lab = need(t, h);
  const [e1, e2] = lab.plan.edges;
  const load = lab.load({ kind: 'http', target: vip, port: 80, durationMs: 6000, concurrency: 4, timeoutMs: 1000 });
  await sleep(1500);
  // Cut the wire on the fabric side of edge1's uplink (both directions).
  const t0 = Date.now();
  await blackhole(lab.plan.fabric.ns, e1!.fabricPort, true);
  let detectMs = -1;
  try {
    detectMs = await lab.waitForGateways(vip, [e2!.address], 10000);
  } finally {
    const r = await load;
    const failWindow = r.failures.length ? `${Math.min(...r.failures.map((f) => f.t))}–${Math.max(...r.failures.map((f) => f.t))} ms into the run` : 'none';
    t.log(`failover: router dropped ${e1!.name} ${detectMs} ms after the blackhole (${Date.now() - t0} ms total); requests: ${r.ok} ok, ${r.failed} failed (${failWindow}); ${summary(r)}`);
    t.true(r.ok > 0, summary(r));
  }
  t.true(detectMs >= 0 && detectMs < 3000, `BFD (150 ms × 5) should take ${e1!.name} out well before the 9 s hold timer: took ${detectMs} ms`);
  const bfd = await lab.vtysh('show bfd peers brief');
  t.regex(bfd, new RegExp(`${e1!.address.replace(/\./g, '\\.')}.*down`, 'i'), bfd);
  const after = await lab.load({ kind: 'http', target: vip, port: 80, count: 40, concurrency: 2, timeoutMs: 1000 });
  t.is(after.failed, 0, `after failover everything goes through ${e2!.name}: ${summary(after)}`);
});
