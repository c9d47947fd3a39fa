// Shared pieces of the end-to-end tests: one lab per test file, always torn
// down; captures on the fabric side of the edges' uplinks.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { Lab, labDown, labUp, removeOrphanLabs, type UpOptions } from '../../src/lab/lab.js';
import { startCapture, type Capture } from '../../src/lab/capture.js';
import { STATE_DIR } from '../../src/lab/state.js';
import { alive } from '../../src/lab/procs.js';
import type { LoadResult } from '../../src/lab/load.js';
import type { LabServiceSpec } from '../../src/lab/manifests.js';
import { BpfMap } from '../../src/datapath/loader.js';
import { EDGE_SC_STAT_NAMES, decodeScPrev, type EdgeScStatName } from '../../src/datapath/second-chance.js';
import { NODE_SC_STATS_MAP, sumScCounters, type NodeScStatName } from '../../src/datapath/node-second-chance.js';
import { NODE_DEFAULTS } from '../../src/datapath/node-datapath.js';
import { sleep } from '../../src/lab/netns.js';

export interface LabHolder {
  lab: Lab | null;
  error: Error | null;
  dir: string;
}

// One e2e lab at a time: ava runs test files in parallel, and two labs (plus
// their load) on 2 vCPUs starve BFD and the veth queues enough to lose
// packets — the tests would then measure the machine, not edgelb.
const LOCK = join(STATE_DIR, '.e2e-lock');

async function acquireLock(timeoutMs = 12 * 60_000): Promise<void> {
  mkdirSync(STATE_DIR, { recursive: true });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(LOCK);
      writeFileSync(join(LOCK, 'pid'), String(process.pid));
      return;
    } catch {
      // Held: by a live process, wait; by a dead one, take it over.
      let owner = 0;
      try {
        owner = Number(readFileSync(join(LOCK, 'pid'), 'utf8'));
      } catch {
        /* being created */
      }
      if (owner > 0 && !alive(owner)) rmSync(LOCK, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`e2e lock ${LOCK} still held by pid ${owner} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

function releaseLock(): void {
  try {
    if (Number(readFileSync(join(LOCK, 'pid'), 'utf8')) === process.pid) rmSync(LOCK, { recursive: true, force: true });
  } catch {
    /* not ours or gone */
  }
}

export async function bringUp(opts: UpOptions = {}): Promise<LabHolder> {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-e2e-'));
  chmodSync(dir, 0o755);
  try {
    await acquireLock();
  } catch (e) {
    return { lab: null, error: e as Error, dir };
  }
  try {
    await removeOrphanLabs();
    const lab = await labUp({ agentTimeoutSeconds: 60, ownerKind: 'test', ...opts });
    if (lab.state.phase !== 'up') return { lab, error: new Error(`lab is ${lab.state.phase}: ${lab.state.problems.join('; ')}`), dir };
    return { lab, error: null, dir };
  } catch (e) {
    return { lab: null, error: e as Error, dir };
  }
}

export async function tearDown(h: LabHolder | undefined): Promise<void> {
  try {
    if (!h) return;
    if (h.lab) await labDown(h.lab.prefix);
    rmSync(h.dir, { recursive: true, force: true });
  } finally {
    releaseLock();
  }
}

/** A lab serving `svc` through every edge; its VIP ('' when the lab is not usable: h.error says why). */
export async function bringUpServing(svc: LabServiceSpec, opts: UpOptions = {}): Promise<{ h: LabHolder; vip: string }> {
  const h = await bringUp(opts);
  let vip = '';
  if (h.lab && !h.error) {
    try {
      await h.lab.applyService(svc);
      vip = await h.lab.waitForVip(svc.name);
      await h.lab.waitForGateways(vip, h.lab.plan.edges.map((e) => e.address));
      await h.lab.waitServing(vip);
    } catch (e) {
      h.error = e as Error;
    }
  }
  return { h, vip };
}

/** The lab, or fail the test with the reason it is missing. */
export function need(t: ExecutionContext, h: LabHolder | undefined): Lab {
  if (!h?.lab || h.error) {
    t.fail(`lab not available: ${h?.error?.message ?? 'not started'}`);
    throw new Error('lab not available');
  }
  return h.lab;
}

/** Captures on the fabric-side port of every edge (the wire of each edge's uplink). */
export async function captureEdges(lab: Lab, dir: string, filter: string, tag: string): Promise<Capture[]> {
  return Promise.all(lab.plan.edges.map((e) => startCapture(lab.plan.fabric.ns, e.fabricPort, filter, join(dir, `${tag}-${e.name}.pcap`))));
}

export async function stopAll(caps: Capture[]): Promise<number[]> {
  return Promise.all(caps.map((c) => c.stop()));
}

/** A short description of a load result for assertion messages. */
export function summary(r: LoadResult): string {
  const f = r.failures.slice(0, 5).map((x) => `${x.t}ms ${x.error}`).join('; ');
  return `${r.kind}: sent ${r.sent}, ok ${r.ok}, failed ${r.failed}${f ? ` (${f})` : ''}, pods ${JSON.stringify(r.pods)}, clients ${JSON.stringify(r.clients)}${r.wrongSource ? `, wrong source ${r.wrongSource}` : ''}`;
}

/** Polls `fn` every `intervalMs` while `during` runs; returns every sample. */
export async function sampleWhile<T>(during: Promise<unknown>, fn: () => Promise<T>, intervalMs = 50): Promise<T[]> {
  const out: T[] = [];
  let done = false;
  void during.finally(() => (done = true)).catch(() => undefined);
  while (!done) {
    out.push(await fn());
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  return out;
}

/** The edges' second-chance counters (edge_sc_stats, both families), summed over the edges. */
export function edgeSc(lab: Lab): Record<EdgeScStatName, number> {
  const out = Object.fromEntries(EDGE_SC_STAT_NAMES.map((n) => [n, 0])) as Record<EdgeScStatName, number>;
  for (const e of lab.plan.edges) {
    const m = BpfMap.openPinned(join(lab.state.bpffsDir, e.name, 'edge_sc_stats'));
    try {
      EDGE_SC_STAT_NAMES.forEach((name, i) => {
        const k = Buffer.alloc(4);
        k.writeUInt32LE(i);
        out[name] += Number((m.lookupPerCpu(k) ?? []).reduce((a, b) => a + b.readBigUInt64LE(0), 0n));
      });
    } finally {
      m.close();
    }
  }
  return out;
}

/** The nodes' second-chance counters (node_sc_stats, both families), summed over the nodes. */
export function nodeSc(lab: Lab): Record<NodeScStatName, number> {
  const out = {} as Record<NodeScStatName, number>;
  for (const n of lab.state.nodes) {
    const m = BpfMap.openPinned(join(n.pinDir, NODE_SC_STATS_MAP));
    try {
      for (const [k, v] of Object.entries(sumScCounters(m))) out[k as NodeScStatName] = (out[k as NodeScStatName] ?? 0) + v;
    } finally {
      m.close();
    }
  }
  return out;
}

/** Per edge: how many services have a previous Maglev table in its window (edge_sc_prev entries with a ring). */
export function openPreviousTables(lab: Lab): number[] {
  return openPreviousTableKeys(lab).map((keys) => keys.size);
}

/**
 * Per edge, the services whose previous table is kept: edge_sc_prev key →
 * value (hex). A window opened since a snapshot is a key that was not there
 * or whose value changed (a service whose window was already open gets a
 * new previous table): counts alone miss both, and another service's window
 * closing meanwhile.
 */
export function openPreviousTableKeys(lab: Lab): Map<string, string>[] {
  return lab.plan.edges.map((e) => {
    const m = BpfMap.openPinned(join(lab.state.bpffsDir, e.name, 'edge_sc_prev'));
    try {
      const open = new Map<string, string>();
      for (const [k, v] of m.entries()) if (decodeScPrev(v).ringSize > 0) open.set(k.toString('hex'), v.toString('hex'));
      return open;
    } finally {
      m.close();
    }
  });
}

/** Whether every edge opened a window since `before` (openPreviousTableKeys). */
export function newWindowOnEveryEdge(lab: Lab, before: Map<string, string>[]): boolean {
  return openPreviousTableKeys(lab).every((now, i) => [...now].some(([k, v]) => before[i]!.get(k) !== v));
}

/**
 * Lets the previous test's UDP flows go quiet for the node's takeover rule
 * (bpf/include/node_flow.h: a datagram to another VIP may take over a live
 * reply tuple only after rst_ns of silence, 2 s, counted from the flow's
 * last_seen less its once-a-second refresh: udp_quiet). These tests reuse one
 * client and the same pods within a second or two, and the client's kernel
 * picks ephemeral source ports at random: one that a test a moment earlier
 * used towards another VIP's same pod was dropped as a conflict
 * (drop_vip_conflict) — twice in CI, as the first datagrams of a UDP phase.
 * That is the node doing what it promises, not a fault of the path under
 * test.
 */
export async function quietForUdpTakeover(): Promise<void> {
  await sleep(NODE_DEFAULTS.rstSeconds * 1000 + 1000 + 500);
}

/** The nodes' datapath counters that changed while `during` ran: what a lost datagram did at the nodes. */
export async function nodeCounterDeltas<T>(lab: Lab, during: () => Promise<T>): Promise<{ result: T; deltas: string }> {
  const read = () => Promise.all(lab.plan.nodes.map((n) => lab.nodeCounters(n.name)));
  const before = await read();
  const result = await during();
  const after = await read();
  const deltas = after.map((a, i) => `${lab.plan.nodes[i]!.name} ${JSON.stringify(Object.fromEntries(Object.entries(a).filter(([k, v]) => v !== (before[i]![k] ?? 0)).map(([k, v]) => [k, v - (before[i]![k] ?? 0)])))}`);
  return { result, deltas: deltas.join('; ') };
}
