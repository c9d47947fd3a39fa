// End to end, one lab: long-lived connections through an ECMP move *and* a
// backend change at once (issue 19, docs/second-chance.md). The edge that
// inherits a drained edge's connections has no entries for them and a new
// Maglev table; the second chance gets each one to the pod that owns it.
import test from 'ava';
import { bringUpServing, edgeSc, need, nodeSc, openPreviousTables, summary, tearDown, type LabHolder } from './helpers.js';
import { allEndpoints, type LabServiceSpec } from '../../src/lab/manifests.js';
import type { Lab } from '../../src/lab/lab.js';

let h: LabHolder | undefined;
const svc: LabServiceSpec = { name: 'second', udpPort: null };
let vip = '';

// A short window, so each scenario starts with none open: two changes in
// one window are a documented limit (one secondary per slot), not what
// these scenarios measure.
const WINDOW_S = 20;
const deleted = new Set<string>();

test.before(async () => {
  ({ h, vip } = await bringUpServing(svc, { secondChanceSeconds: WINDOW_S }));
});

test.after.always(async () => {
  await tearDown(h);
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until no edge holds a previous table (every window closed and collected). */
async function windowsClosed(lab: Lab, timeoutMs = (WINDOW_S + 30) * 1000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = openPreviousTables(lab).reduce((a, b) => a + b, 0);
    if (open === 0) return;
    if (Date.now() > deadline) throw new Error(`${open} previous tables still open after ${timeoutMs} ms`);
    await sleep(1000);
  }
}

const CONNECTIONS = 120;

test.serial('a backend added, then one edge drained: zero of 120 long-lived connections break', async (t) => {
  const lab = need(t, h);
  const [e1, e2] = lab.plan.edges;
  const load = lab.load({ kind: 'keep', target: vip, port: 80, durationMs: 22000, connections: CONNECTIONS, intervalMs: 300, timeoutMs: 3000 });
  await sleep(3000);
  // Scale up: a fifth pod, on node1.
  const n1 = lab.plan.nodes[0]!;
  const base = n1.podCidr.split('.').slice(0, 3).join('.');
  await lab.addPod(n1.name, 'echo-1scale', `${base}.30`, [svc.name]);
  await sleep(4000); // the EndpointSlice, both edges' tables, the nodes' maps
  const t0 = Date.now();
  try {
    await lab.edgelb(e1!.name, ['drain']);
    const gone = await lab.waitForGateways(vip, [e2!.address], 15000);
    const r = await load;
    const sc = edgeSc(lab);
    const nsc = nodeSc(lab);
    t.log(`scale-up then drain of ${e1!.name} (route gone ${gone} ms after the drain began): ${summary(r)}; broken ${r.brokenConnections}/${CONNECTIONS}; edge ${JSON.stringify(sc)}; nodes ${JSON.stringify(nsc)}`);
    t.is(r.brokenConnections, 0, summary(r));
    t.is(r.failed, 0, summary(r));
    t.true(r.ok >= CONNECTIONS * 20, summary(r));
    // Every connection was made before the change, so the new pod owns none:
    // the moved ones whose slot changed were all handed to their pod.
    t.true(sc.sc_sent > 0, 'moved connections took the second chance');
    t.true(nsc.sc_handed + nsc.sc_handed_local > 0, 'and were handed to the pod that owns them');
  } finally {
    await load.catch(() => undefined);
    await lab.edgelb(e1!.name, ['undrain']);
    await lab.waitForGateways(vip, [e1!.address, e2!.address], 20000);
    t.log(`back to both edges ${Date.now() - t0} ms after the drain began`);
  }
});

test.serial('a backend removed, then one edge drained: only the removed pod\'s connections end', async (t) => {
  const lab = need(t, h);
  const [e1, e2] = lab.plan.edges;
  await windowsClosed(lab);
  const load = lab.load({ kind: 'keep', target: vip, port: 80, durationMs: 22000, connections: CONNECTIONS, intervalMs: 300, timeoutMs: 3000 });
  await sleep(3000);
  const victim = lab.plan.nodes[1]!.pods[0]!.name;
  deleted.add(victim);
  await lab.deletePod(victim);
  await sleep(4000);
  try {
    await lab.edgelb(e2!.name, ['drain']);
    await lab.waitForGateways(vip, [e1!.address], 15000);
    const r = await load;
    const onVictim = new Set(r.connectionPods!.flatMap((p, i) => (p === victim ? [i] : [])));
    const wrongly = r.broken!.filter((i) => !onVictim.has(i));
    t.log(`removed ${victim} (${onVictim.size} connections on it), then drained ${e2!.name}: broken ${r.brokenConnections}/${CONNECTIONS}, of them not on ${victim}: ${wrongly.length}; ${summary(r)}; edge ${JSON.stringify(edgeSc(lab))}; nodes ${JSON.stringify(nodeSc(lab))}`);
    t.true(onVictim.size > 0, 'the removed pod had connections');
    t.deepEqual(wrongly, [], 'no connection on a pod that stayed broke');
  } finally {
    await load.catch(() => undefined);
    await lab.edgelb(e2!.name, ['undrain']);
    await lab.waitForGateways(vip, [e1!.address, e2!.address], 20000);
  }
});

test.serial('a rolling update under load while one edge is drained: zero failed requests', async (t) => {
  const lab = need(t, h);
  const [e1, e2] = lab.plan.edges;
  await windowsClosed(lab);
  const old = allEndpoints(lab.plan).filter((e) => !e.pod.name.endsWith('roll') && !deleted.has(e.pod.name));
  const t0 = Date.now();
  const marks: string[] = [];
  const mark = (what: string): void => void marks.push(`${Date.now() - t0} ms ${what}`);
  // The new pods first (starting one takes seconds here); then, under load,
  // the old ones turn terminating and go, and an edge is drained.
  for (const n of lab.plan.nodes) {
    const base = n.podCidr.split('.').slice(0, 3).join('.');
    await lab.addPod(n.name, `echo-${n.name.slice(4)}roll`, `${base}.40`, [svc.name]);
  }
  mark('new pods serving');
  const LOAD_MS = 30000; // deleting pods through the API takes seconds on a busy machine
  const loadStart = Date.now();
  const load = lab.load({ kind: 'http', target: vip, port: 80, durationMs: LOAD_MS, concurrency: 4, timeoutMs: 2000 });
  await sleep(1500);
  await Promise.all(old.map((e) => lab.deletePod(e.pod.name)));
  mark('old pods deleted (terminating)');
  await sleep(500);
  try {
    await lab.edgelb(e1!.name, ['drain']);
    mark(`${e1!.name} drained`);
    await lab.waitForGateways(vip, [e2!.address], 15000);
    mark('router uses only ' + e2!.name);
    const movedAt = Date.now() - loadStart;
    const r = await load;
    t.log(`rolling update + drain: ${marks.join('; ')}; the router moved ${movedAt} ms into the ${LOAD_MS} ms load; ${summary(r)}; edge ${JSON.stringify(edgeSc(lab))}; nodes ${JSON.stringify(nodeSc(lab))}`);
    t.true(movedAt < LOAD_MS - 2000, `the drain happened under load (${movedAt} ms into ${LOAD_MS})`);
    t.is(r.failed, 0, `${summary(r)}; steps: ${marks.join('; ')}`);
    t.true(r.ok > 100, summary(r));
  } finally {
    await load.catch(() => undefined);
    await lab.edgelb(e1!.name, ['undrain']);
  }
});
