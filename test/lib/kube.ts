// A real control plane for a test file or a benchmark (src/lab/kube): etcd,
// kube-apiserver and kube-controller-manager on a random loopback address
// of this namespace (127.x.y.z: the fixed ports never collide with another
// run's), the admin's client for creating and reading objects, ServiceAccount
// kubeconfigs with edgelb's RBAC from deploy/rbac.yaml, and the faults the
// tests need: restart or stop the API server, stop etcd, compact etcd.
//
// Start one per test file (test.before) and close it in test.after.always;
// a run killed half-way leaves a record under /run/edgelb-kube that the
// next TestCluster.start() uses to stop the orphaned processes (by pid).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import {
  adminHttp,
  compactEtcd,
  serviceAccountKubeconfig,
  startComponent,
  startControlPlane,
  stopComponent,
  stopControlPlane,
  type Component,
  type ControlPlaneState,
} from '../../src/lab/kube/control-plane.js';
import type { KubeHttp } from '../../src/lab/kube/http.js';
import { alive, sameProcess, stopPid, type LabProcess } from '../../src/lab/procs.js';
import { KUBECTL, root } from '../../src/lab/paths.js';
import { run } from '../../src/lab/netns.js';
import { EDGELB_NAMESPACE } from '../../src/lab/kube/rbac.js';

export type Obj = Record<string, unknown>;

const RECORDS = '/run/edgelb-kube';

/** Plural → collection path (namespaced when `ns` is given). */
const GROUPS: Record<string, string> = {
  services: '/api/v1',
  pods: '/api/v1',
  nodes: '/api/v1',
  namespaces: '/api/v1',
  serviceaccounts: '/api/v1',
  events: '/apis/events.k8s.io/v1',
  endpointslices: '/apis/discovery.k8s.io/v1',
  leases: '/apis/coordination.k8s.io/v1',
};

export function collectionPath(resource: string, ns?: string): string {
  const base = GROUPS[resource];
  if (!base) throw new Error(`collectionPath: unknown resource ${resource}`);
  return ns ? `${base}/namespaces/${ns}/${resource}` : `${base}/${resource}`;
}

const PLURAL: Record<string, string> = { Service: 'services', Pod: 'pods', Node: 'nodes', Namespace: 'namespaces', EndpointSlice: 'endpointslices', Lease: 'leases', ServiceAccount: 'serviceaccounts' };

export interface TestClusterOptions {
  tag: string;
  /** Listen on this address (it must be this namespace's and unique to the run); default a random 127.x.y.z. */
  host?: string;
  /** Start kube-controller-manager (default true). */
  controllerManager?: boolean;
  /** Run the node lifecycle controller (only when something renews node Leases). */
  nodeLifecycle?: boolean;
}

export class TestCluster {
  readonly admin: KubeHttp;
  private readonly record: string;

  private constructor(
    readonly st: ControlPlaneState,
    readonly dir: string,
  ) {
    this.admin = adminHttp(st);
    this.record = join(RECORDS, `${st.host}.json`);
  }

  static async start(o: TestClusterOptions): Promise<TestCluster> {
    await removeOrphans();
    mkdirSync(RECORDS, { recursive: true });
    let host = o.host ?? '';
    // A caller's address is where its clients look (an agent in another
    // namespace): taken, it is an error, never silently swapped for a
    // loopback address those clients cannot reach.
    if (host && existsSync(join(RECORDS, `${host}.json`))) throw new Error(`TestCluster ${o.tag}: ${host} is in use by another control plane (${join(RECORDS, `${host}.json`)})`);
    for (let i = 0; i < 20 && (!host || existsSync(join(RECORDS, `${host}.json`))); i++) host = `127.${randomInt(100, 250)}.${randomInt(1, 250)}.${randomInt(1, 250)}`;
    const dir = join(RECORDS, host);
    rmSync(dir, { recursive: true, force: true });
    const procs: LabProcess[] = [];
    const recordFile = join(RECORDS, `${host}.json`);
    const save = (): void => writeFileSync(recordFile, JSON.stringify({ owner: process.pid, tag: o.tag, dir, processes: procs }));
    save();
    let st: ControlPlaneState;
    try {
      st = await startControlPlane({ dir, host, nodeLifecycle: o.nodeLifecycle ?? false, controllerManager: o.controllerManager ?? true, onProcess: (p) => (procs.push(p), save()) });
    } catch (e) {
      for (const p of procs) await stopPid(p.pid, 'SIGTERM', 10_000);
      rmSync(dir, { recursive: true, force: true });
      rmSync(recordFile, { force: true });
      throw e;
    }
    const c = new TestCluster(st, dir);
    c.onProcess = (p) => (procs.push(p), save());
    try {
      await c.kubectl(['apply', '-f', join(root, 'deploy/rbac.yaml')]);
    } catch (e) {
      await c.close();
      throw e;
    }
    return c;
  }

  private onProcess: (p: LabProcess) => void = () => undefined;

  get server(): string {
    return this.st.server;
  }

  get adminKubeconfig(): string {
    return this.st.adminKubeconfig;
  }

  /** kubectl of the pinned release as the admin (fresh cache dir). */
  async kubectl(args: string[], input?: string): Promise<string> {
    const cache = join(this.dir, `kcache-${Date.now()}-${randomInt(1e9)}`);
    try {
      return (await run([KUBECTL, '--kubeconfig', this.st.adminKubeconfig, '--cache-dir', cache, ...args], { timeoutMs: 30_000, ...(input === undefined ? {} : { input }) })).stdout;
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  }

  /** A kubeconfig with a token of ServiceAccount `ns/name` (edgelb-system by default). */
  async kubeconfigFor(name: string, ns = EDGELB_NAMESPACE): Promise<string> {
    return serviceAccountKubeconfig(this.st, ns, name, join(this.dir, `${ns}-${name}-${randomInt(1e9)}.kubeconfig`));
  }

  async create(obj: Obj): Promise<Obj> {
    const md = obj.metadata as { namespace?: string };
    const plural = PLURAL[obj.kind as string];
    if (!plural) throw new Error(`create: unknown kind ${String(obj.kind)}`);
    return this.admin.ok<Obj>('POST', collectionPath(plural, md.namespace), obj);
  }

  async get(resource: string, ns: string | undefined, name: string): Promise<Obj | null> {
    const r = await this.admin.request('GET', `${collectionPath(resource, ns)}/${name}`);
    if (r.code === 404) return null;
    if (r.code !== 200) throw new Error(`GET ${resource} ${ns}/${name}: HTTP ${r.code}`);
    return r.body as Obj;
  }

  async list(resource: string, ns?: string, query = ''): Promise<Obj[]> {
    return (await this.admin.ok<{ items: Obj[] }>('GET', `${collectionPath(resource, ns)}${query ? `?${query}` : ''}`)).items;
  }

  async delete(resource: string, ns: string | undefined, name: string): Promise<void> {
    const r = await this.admin.request('DELETE', `${collectionPath(resource, ns)}/${name}`);
    if (r.code !== 200 && r.code !== 202 && r.code !== 404) throw new Error(`DELETE ${resource} ${ns}/${name}: HTTP ${r.code}`);
  }

  /** A JSON merge patch of an object (spec, labels, …). */
  async patch(resource: string, ns: string | undefined, name: string, body: Obj): Promise<Obj> {
    return this.admin.ok<Obj>('PATCH', `${collectionPath(resource, ns)}/${name}`, body, 'application/merge-patch+json');
  }

  /** A merge patch of an object's status subresource (the way a kubelet or a controller writes status). */
  async patchStatus(resource: string, ns: string | undefined, name: string, status: Obj): Promise<Obj> {
    return this.admin.ok<Obj>('PATCH', `${collectionPath(resource, ns)}/${name}/status`, { status }, 'application/merge-patch+json');
  }

  /**
   * A Pod bound to `node` and reported Running and Ready at `ip` (what the
   * kubelet would write), so the EndpointSlice controller lists it.
   */
  async readyPod(ns: string, name: string, labels: Record<string, string>, ip: string, node: string, ready = true): Promise<void> {
    await this.create({ apiVersion: 'v1', kind: 'Pod', metadata: { namespace: ns, name, labels }, spec: { nodeName: node, containers: [{ name: 'app', image: 'edgelb.local/test' }] } });
    await this.setPodReady(ns, name, ip, node, ready);
  }

  async setPodReady(ns: string, name: string, ip: string, hostIp: string, ready: boolean): Promise<void> {
    const s = ready ? 'True' : 'False';
    await this.patchStatus('pods', ns, name, {
      phase: 'Running',
      podIP: ip,
      podIPs: [{ ip }],
      hostIP: hostIp.includes('.') ? hostIp : undefined,
      conditions: [
        { type: 'PodScheduled', status: 'True' },
        { type: 'Initialized', status: 'True' },
        { type: 'ContainersReady', status: s },
        { type: 'Ready', status: s },
      ],
    });
  }

  async stop(c: Component): Promise<void> {
    await stopComponent(this.st, c);
  }

  async start(c: Component): Promise<void> {
    await startComponent(this.st, c, this.onProcess);
  }

  async restart(c: Component): Promise<void> {
    await stopComponent(this.st, c);
    await startComponent(this.st, c, this.onProcess);
  }

  /**
   * A second kube-apiserver on the same etcd (port 6444), as in an HA
   * control plane: writes through it while the first is down.
   */
  async secondApiServer(): Promise<{ create(obj: Obj): Promise<Obj>; close(): Promise<void> }> {
    const st2: ControlPlaneState = { ...this.st, ports: { ...this.st.ports, apiserver: 6444 }, server: `https://${this.st.host}:6444`, processes: {} };
    await startComponent(st2, 'kube-apiserver', this.onProcess);
    const http = adminHttp(st2);
    return {
      create: (obj: Obj) => {
        const md = obj.metadata as { namespace?: string };
        return http.ok<Obj>('POST', collectionPath(PLURAL[obj.kind as string]!, md.namespace), obj);
      },
      close: async () => {
        http.close();
        await stopComponent(st2, 'kube-apiserver');
      },
    };
  }

  /** `etcdctl compact` at the current revision; returns it. */
  compact(): Promise<number> {
    return compactEtcd(this.st);
  }

  async close(): Promise<void> {
    this.admin.close();
    await stopControlPlane(this.st);
    rmSync(this.dir, { recursive: true, force: true });
    rmSync(this.record, { force: true });
  }
}

/**
 * Runs fn(0..n-1) with at most `width` in flight: thousands of objects are
 * created against the real API server concurrently but bounded. The admin
 * client keeps 8 connections; on two busy cores more than 8 in flight was
 * slower, not faster (kube-apiserver spends ≈ 6–9 ms of CPU per Service
 * create — its ClusterIP allocation included — and is CPU-bound).
 */
/** What to count of kube-apiserver's apiserver_request_total. */
export interface ApiRequestFilter {
  resource: string;
  /** '' for the resource itself. */
  subresource: string;
  verb: string;
  /** Only answers with a 2xx code (default: every code, so a refused request counts too). */
  successfulOnly?: boolean;
}

/** apiserver_request_total summed over the series matching `f`, read from the server's /metrics. */
export async function apiRequestCount(api: KubeHttp, f: ApiRequestFilter): Promise<number> {
  const text = String(await api.ok<string>('GET', '/metrics'));
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    if (f.successfulOnly && !/code="2\d\d"/.test(line)) continue;
    if (line.includes(`resource="${f.resource}"`) && line.includes(`subresource="${f.subresource}"`) && line.includes(`verb="${f.verb}"`)) sum += Number(line.split(' ').at(-1));
  }
  return sum;
}

export async function pool(n: number, width: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** Stops the processes of control planes whose test process is gone. */
export async function removeOrphans(): Promise<void> {
  let files: string[];
  try {
    files = readdirSync(RECORDS).filter((f) => f.endsWith('.json'));
  } catch {
    return;
  }
  for (const f of files) {
    try {
      const rec = JSON.parse(readFileSync(join(RECORDS, f), 'utf8')) as { owner: number; dir: string; processes: LabProcess[] };
      if (alive(rec.owner)) continue;
      for (const p of rec.processes) if (alive(p.pid) && sameProcess(p)) await stopPid(p.pid, 'SIGTERM', 10_000);
      rmSync(rec.dir, { recursive: true, force: true });
      rmSync(join(RECORDS, f), { force: true });
    } catch {
      /* another run is cleaning it */
    }
  }
}
