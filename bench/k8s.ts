// bench:k8s — 10 000 LoadBalancer Services with 100 000 endpoints (10 per
// EndpointSlice, 100 nodes) in a real kube-apiserver + etcd (test/lib/kube.ts;
// the slices are hand-made — selector-less Services, managed-by
// edgelb-bench — since no pods run; no controller manager, so only the
// agent loads the API server). The agent side (KubernetesController + a
// counting sink, with the edgelb-edge ServiceAccount's token) runs in a
// child process so its peak RSS is its own. Measured from the controller's start: time until
// every Service has its address in status (as read back from the server)
// and until the sink holds every frontend and every VIP ("programmed").
// Before it, where the agent's memory is at its highest RSS sampled and at
// the end (process.memoryUsage() and V8's heap spaces, committed/used MB).
// Last line: {"services","endpoints","program_s","rss_mb"}.
//
//   npm run bench:k8s [-- --services N --per-service M --round-size R]
// (--round-size: Services computed per controller round, default ROUND_SIZE)
// BENCH_SURVIVAL_PROFILE=file writes a sampling heap profile of the agent's
// allocations that outlived a young-generation collection (DevTools format);
// with BENCH_PROFILE_ALL=1, of every allocation (what makes it collect);
// with BENCH_SURVIVAL_FROM=programmed, only from the moment the sink holds
// everything (what the status-writing phase adds).
import { fork } from 'node:child_process';
import { cpus, loadavg } from 'node:os';
import { getHeapSpaceStatistics, setFlagsFromString, writeHeapSnapshot } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { fileURLToPath } from 'node:url';
import { KubernetesController, ROUND_SIZE, type DesiredStateSink } from '../src/k8s/controller.js';
import { silentLogger } from '../src/log/logger.js';
import type { DesiredService, DesiredVip } from '../src/model/types.js';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { TestCluster, apiRequestCount, collectionPath, pool } from '../test/lib/kube.js';
import { testConfig } from '../test/k8s/helpers.js';
import { EDGE_SERVICE_ACCOUNT, EDGELB_NAMESPACE } from '../src/lab/kube/rbac.js';
import type { KubeHttp } from '../src/lab/kube/http.js';
import { readUnitNodeSettings } from './lib/unit-env.js';

/** Where the agent's memory is (MB): process.memoryUsage() and each V8 heap space's committed / used size. */
interface MemoryBreakdown {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  spaces: Record<string, { committed: number; used: number }>;
}

const MB = 1048576;

function memoryBreakdown(): MemoryBreakdown {
  const m = process.memoryUsage();
  const spaces: MemoryBreakdown['spaces'] = {};
  for (const s of getHeapSpaceStatistics()) spaces[s.space_name.replace(/_space$/, '')] = { committed: s.physical_space_size / MB, used: s.space_used_size / MB };
  return { rss: m.rss / MB, heapTotal: m.heapTotal / MB, heapUsed: m.heapUsed / MB, external: m.external / MB, arrayBuffers: m.arrayBuffers / MB, spaces };
}

function formatBreakdown(b: MemoryBreakdown): string {
  const spaces = Object.entries(b.spaces)
    .filter(([, s]) => s.committed >= 0.05)
    .map(([n, s]) => `${n} ${s.committed.toFixed(1)}/${s.used.toFixed(1)}`)
    .join(', ');
  return `rss ${b.rss.toFixed(1)}: V8 heap committed ${b.heapTotal.toFixed(1)} (used ${b.heapUsed.toFixed(1)}; per space committed/used: ${spaces}), external ${b.external.toFixed(1)} (ArrayBuffers ${b.arrayBuffers.toFixed(1)}), rest (Node, code, malloc) ${(b.rss - b.heapTotal - b.external).toFixed(1)}`;
}

interface AgentMsg {
  type: 'started' | 'programmed' | 'rss' | 'status';
  at?: number;
  rssMb?: number;
  detail?: unknown;
}

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
}

const POOL = ['10.128.0.0/16'];
/**
 * V8 heap sizing for the agent process: by default the shipped unit's
 * (systemd/edgelb.service: NODE_OPTIONS and MALLOC_ARENA_MAX), so the figure
 * is the appliance's. Without them V8 sizes the heap for the host: the young
 * generation grows to 2 × 64 MB while the caches are built and old space to
 * several times the live set before it collects — peak RSS ~300 MB for a
 * live heap of ~55 MB at 10 000 Services (359–367 MB before status echoes
 * stopped being recomputed; src/k8s/README.md "Performance notes").
 * Override with BENCH_AGENT_FLAGS="..." and BENCH_AGENT_ENV="..." (empty:
 * Node's defaults).
 */
const UNIT = readUnitNodeSettings(fileURLToPath(new URL('../../systemd/edgelb.service', import.meta.url)));
const AGENT_ENV: Record<string, string> = process.env.BENCH_AGENT_ENV !== undefined ? Object.fromEntries(process.env.BENCH_AGENT_ENV.split(' ').filter(Boolean).map((kv) => kv.split('=') as [string, string])) : UNIT.env;
const AGENT_NODE_FLAGS = process.env.BENCH_AGENT_FLAGS !== undefined ? process.env.BENCH_AGENT_FLAGS.split(' ').filter(Boolean) : UNIT.flags;

async function agent(kubeconfigPath: string, services: number, roundSize: number): Promise<void> {
  const send = (m: AgentMsg) => process.send!(m);
  let frontends = 0;
  let vips = 0;
  let done = false;
  const sink: DesiredStateSink = {
    upsert(changed: DesiredService[]) {
      frontends += changed.length; // changed entries are new here: nothing is re-sent in this run
      check();
    },
    remove(removed: string[]) {
      frontends -= removed.length;
    },
    applyVips(v: DesiredVip[]) {
      vips = v.length;
      check();
    },
  };
  function check() {
    if (!done && frontends >= services && vips >= services) {
      done = true;
      if (survival && process.env.BENCH_SURVIVAL_FROM === 'programmed') startSampling();
      send({ type: 'programmed', at: Date.now() });
    }
  }
  const base = testConfig([{ cidrs: POOL }], 10);
  const config = { ...base, kubernetes: { ...base.kubernetes, leaseNamespace: EDGELB_NAMESPACE } };
  const c = new KubernetesController({ config, kubeconfigPath, nodeName: 'bench-edge', logger: silentLogger(), sink, debounceMs: 20, roundSize });
  // BENCH_SURVIVAL_PROFILE=file: a sampling heap profile of what survived the
  // young generation (objects a scavenge freed are left out), from start to
  // the end of the run (or from "programmed") — where the promoted bytes that grow V8's heap come from.
  const survival = process.env.BENCH_SURVIVAL_PROFILE ? new Session() : null;
  const startSampling = () => survival!.post('HeapProfiler.startSampling', { samplingInterval: 8192, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: process.env.BENCH_PROFILE_ALL === '1' });
  if (survival) {
    survival.connect();
    if (process.env.BENCH_SURVIVAL_FROM !== 'programmed') startSampling();
  }
  process.on('message', (m: { type: string }) => {
    if (m.type === 'rss' && survival) {
      // Two scavenges first: what is still in the young generation then is
      // live, not the last second's garbage.
      setFlagsFromString('--expose-gc');
      const gcNow = runInNewContext('gc') as (o: { type: string }) => void;
      gcNow({ type: 'minor' });
      gcNow({ type: 'minor' });
      survival.post('HeapProfiler.stopSampling', (err, r) => {
        if (!err) writeFileSync(process.env.BENCH_SURVIVAL_PROFILE!, JSON.stringify(r.profile));
      });
    }
    if (m.type === 'rss') {
      clearInterval(sampler);
      const atEnd = memoryBreakdown();
      const ru = process.resourceUsage();
      const g = (globalThis as { gc?: () => void }).gc;
      g?.();
      const live = g ? process.memoryUsage().heapUsed / MB : NaN;
      if (process.env.BENCH_HEAPSNAPSHOT) writeHeapSnapshot(process.env.BENCH_HEAPSNAPSHOT);
      send({ type: 'rss', rssMb: ru.maxRSS / 1024, detail: { cpuS: (ru.userCPUTime + ru.systemCPUTime) / 1e6, liveHeapMb: live, peak, atEnd, newSpace, status: c.status() } });
    }
    if (m.type === 'stop') void c.stop().then(() => process.exit(0));
  });
  // The breakdown at the highest RSS seen (sampled every 100 ms: the peak
  // itself may fall between samples, ru_maxrss is the exact figure).
  // And when the young generation (V8's new space) grew: its committed size,
  // seconds after start, the first time each size was seen.
  const t0 = Date.now();
  let peak = memoryBreakdown();
  const newSpace: [number, number][] = [];
  const sampler = setInterval(() => {
    const b = memoryBreakdown();
    if (b.rss > peak.rss) peak = b;
    const ns = Math.round(b.spaces.new?.committed ?? 0);
    if (newSpace.length === 0 || ns > newSpace.at(-1)![1]) newSpace.push([(Date.now() - t0) / 1000, ns]);
  }, 100);
  sampler.unref();
  send({ type: 'started', at: Date.now() });
  if (process.env.BENCH_DEBUG) {
    const t0 = Date.now();
    setInterval(() => {
      const st = c.status();
      console.error(`[agent +${Date.now() - t0} ms] leader=${st.leader} services=${st.services} frontends=${st.frontends} vips=${st.vips} statusWrites=${st.statusWrites} pending=${st.statusWritesPending} events=${st.eventsPending} rss=${(process.memoryUsage().rss / 1048576).toFixed(0)}MB heap=${(process.memoryUsage().heapUsed / 1048576).toFixed(0)}/${(process.memoryUsage().heapTotal / 1048576).toFixed(0)}MB ext=${(process.memoryUsage().external / 1048576).toFixed(0)}MB`);
    }, 250).unref();
  }
  await c.start();
}

async function main(): Promise<void> {
  if (process.argv[2] === '--agent') {
    await agent(process.argv[3]!, Number(process.argv[4]), Number(process.argv[5]));
    return;
  }
  const nSvc = arg('services', 10_000);
  const perSvc = arg('per-service', 10);
  const roundSize = arg('round-size', ROUND_SIZE);
  const nNodes = 100;
  const server = await TestCluster.start({ tag: 'bench-k8s', controllerManager: false });
  try {
    const tSetup = Date.now();
    const api = server.admin;
    const post = (obj: Record<string, unknown>) => {
      const md = obj.metadata as { namespace?: string };
      return api.ok('POST', collectionPath(obj.kind === 'Service' ? 'services' : obj.kind === 'Node' ? 'nodes' : obj.kind === 'Namespace' ? 'namespaces' : 'endpointslices', md.namespace), obj);
    };
    for (let n = 0; n < 10; n++) await post({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: `bench-${n}` } });
    await pool(nNodes, 16, (n) => post({ apiVersion: 'v1', kind: 'Node', metadata: { name: `node-${n}` }, status: { addresses: [{ type: 'InternalIP', address: `10.0.${n >> 8}.${n & 255}` }] } }));
    await pool(nSvc, 16, async (i) => {
      const ns = `bench-${i % 10}`;
      const name = `svc-${i}`;
      await post({
        apiVersion: 'v1', kind: 'Service', metadata: { namespace: ns, name },
        // No selector: the slices below are ours, not the EndpointSlice controller's.
        spec: { type: 'LoadBalancer', loadBalancerClass: 'edgelb.io/dsr', allocateLoadBalancerNodePorts: false, ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }] },
      });
      const endpoints = [];
      for (let j = 0; j < perSvc; j++) {
        const ep = i * perSvc + j;
        endpoints.push({ addresses: [`10.${64 + (ep >> 16)}.${(ep >> 8) & 255}.${ep & 255}`], nodeName: `node-${ep % nNodes}`, conditions: { ready: true, serving: true, terminating: false } });
      }
      await post({
        apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
        metadata: { namespace: ns, name: `${name}-abc`, labels: { 'kubernetes.io/service-name': name, 'endpointslice.kubernetes.io/managed-by': 'edgelb-bench' } },
        addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }], endpoints,
      });
    });
    const setupS = (Date.now() - tSetup) / 1000;
    const kubeconfig = await server.kubeconfigFor(EDGE_SERVICE_ACCOUNT);

    const child = fork(fileURLToPath(import.meta.url), ['--agent', kubeconfig, String(nSvc), String(roundSize)], { stdio: 'inherit', env: { ...process.env, ...AGENT_ENV }, execArgv: [...process.execArgv, ...AGENT_NODE_FLAGS, ...(process.env.BENCH_DEBUG ? ['--expose-gc'] : [])] });
    const msgs: AgentMsg[] = [];
    let wake: (() => void) | null = null;
    child.on('message', (m: AgentMsg) => {
      msgs.push(m);
      wake?.();
    });
    const next = (type: AgentMsg['type'], ms: number) => new Promise<AgentMsg>((resolve, reject) => {
      const deadline = setTimeout(() => reject(new Error(`agent did not report ${type} within ${ms} ms`)), ms);
      const look = () => {
        const i = msgs.findIndex((m) => m.type === type);
        if (i >= 0) {
          clearTimeout(deadline);
          wake = null;
          resolve(msgs.splice(i, 1)[0]!);
        } else wake = look;
      };
      look();
    });
    try {
      const started = (await next('started', 30_000)).at!;
      const serverCpu0 = serverCpu(server);
      const load0 = loadavg()[0]!;
      // In status: poll the server's request counter cheaply, then verify with one list.
      let statusAt = 0;
      const limitMs = 180_000;
      while (Date.now() - started < limitMs) {
        if ((await apiRequestCount(api, { resource: 'services', subresource: 'status', verb: 'PATCH', successfulOnly: true })) >= nSvc) {
          // (the `kubernetes` Service in default is not a LoadBalancer)
          const lbs = (await listAll(api, '/api/v1/services')).filter((s) => (s.spec as { type?: string }).type === 'LoadBalancer');
          const missing = nSvc - lbs.filter((s) => (s.status as { loadBalancer?: { ingress?: unknown[] } }).loadBalancer?.ingress?.length).length;
          if (missing === 0) {
            statusAt = Date.now();
            break;
          }
        }
        await new Promise((r) => setTimeout(r, 500));
      }
      if (statusAt === 0) throw new Error('not every Service got an address in status');
      const programmedAt = (await next('programmed', limitMs)).at!;
      const serverCpuS = serverCpu(server) - serverCpu0;
      child.send({ type: 'rss' });
      const rss = await next('rss', process.env.BENCH_HEAPSNAPSHOT ? 300_000 : 10_000);
      child.send({ type: 'stop' });
      const statusS = (statusAt - started) / 1000;
      const programmedS = (programmedAt - started) / 1000;
      const programS = Math.max(statusS, programmedS);
      const endpoints = nSvc * perSvc;
      const rows: [string, string][] = [
        ['services', String(nSvc)],
        ['endpoints (EndpointSlices)', `${endpoints} (${nSvc})`],
        ['nodes', String(nNodes)],
        ['Services per controller round', String(roundSize)],
        ['objects created in API server (s)', setupS.toFixed(2)],
        ['agent start → all programmed in sink (s)', programmedS.toFixed(2)],
        ['agent start → all addresses in status (s)', statusS.toFixed(2)],
        ['status writes (API server metric)', String(await apiRequestCount(api, { resource: 'services', subresource: 'status', verb: 'PATCH', successfulOnly: true }))],
        ['events created (API server metric)', String(await apiRequestCount(api, { resource: 'events', subresource: '', verb: 'POST', successfulOnly: true }))],
        ['agent CPU time (s)', (rss.detail as { cpuS: number }).cpuS.toFixed(2)],
        ['agent peak RSS (MB)', rss.rssMb!.toFixed(1)],
        ['kube-apiserver + etcd CPU time (s)', serverCpuS.toFixed(2)],
        ['host load average (1 min) at start / vCPUs', `${load0.toFixed(1)} / ${cpus().length}`],
        ['agent node flags / env', `${AGENT_NODE_FLAGS.join(' ') || '(none)'} / ${Object.entries(AGENT_ENV).map(([k, v]) => `${k}=${v}`).join(' ') || '(none)'}`],
      ];
      const w = Math.max(...rows.map((r) => r[0].length));
      console.log(`bench:k8s (kube-apiserver ${await serverVersion(api)} + etcd, agent in a child process with the edgelb-edge token)`);
      for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);
      const detail = rss.detail as { peak: MemoryBreakdown; atEnd: MemoryBreakdown; newSpace: [number, number][] };
      console.log(`  agent memory (MB) at the highest RSS sampled (every 100 ms):\n    ${formatBreakdown(detail.peak)}`);
      console.log(`  agent memory (MB) at the end (all programmed):\n    ${formatBreakdown(detail.atEnd)}`);
      console.log(`  agent young generation committed (s after start → MB): ${detail.newSpace.map(([t, mb]) => `${t.toFixed(1)} → ${mb}`).join(', ')}`);
      console.log('  targets: program_s ≤ 30, rss_mb ≤ 250');
      if (process.env.BENCH_DEBUG) console.log(JSON.stringify(rss.detail));
      console.log(JSON.stringify({ services: nSvc, endpoints, program_s: Number(programS.toFixed(2)), rss_mb: Number(rss.rssMb!.toFixed(1)) }));
    } finally {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        setTimeout(() => child.kill('SIGKILL'), 5000).unref();
        await exited;
      }
    }
  } finally {
    await server.close();
  }
}

async function listAll(api: KubeHttp, path: string): Promise<Record<string, unknown>[]> {
  const items: Record<string, unknown>[] = [];
  let cont = '';
  for (;;) {
    const r = await api.ok<{ items: Record<string, unknown>[]; metadata: { continue?: string } }>('GET', `${path}?limit=1000${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`);
    items.push(...r.items);
    cont = r.metadata.continue ?? '';
    if (!cont) return items;
  }
}

async function serverVersion(api: KubeHttp): Promise<string> {
  return (await api.ok<{ gitVersion: string }>('GET', '/version')).gitVersion;
}

/** CPU seconds used so far by the control plane's processes (utime + stime from /proc). */
function serverCpu(c: TestCluster): number {
  let ticks = 0;
  for (const p of Object.values(c.st.processes)) {
    try {
      const f = readFileSync(`/proc/${p.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      /* gone */
    }
  }
  return ticks / 100;
}

await main();
