// The handle on a lab that is up: run things in its namespaces (kubectl,
// vtysh, the CLI, load), start and stop agents and pods, wait for VIPs,
// routes and service, and describe it. Building is startup.ts, removing is
// teardown.ts.
import { join } from 'node:path';
import { createNetns, gatewaysOf, kernelRoutes, nsRun, run, scaled, sleep, type RunResult } from './netns.js';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { FrrRouter } from './frr.js';
import { BpfObject, detachTc, inNetns, tcQuery } from '../datapath/loader.js';
import { bpfObjectPath } from '../assets.js';
import { allNamespaces, allPods, checkPrefix, EDGE_METRICS_PORT, NODE_METRICS_PORT, type EdgePlan, type LabPlan, type PodPlan } from './topology.js';
import type { LoadOptions, LoadResult } from './load.js';
import { allEndpoints, memberLabel, podObject, serviceObject, toYaml, type EndpointSpec, type LabServiceSpec } from './manifests.js';
import { serviceAccountKubeconfig } from './kube/control-plane.js';
import { EDGELB_NAMESPACE } from './kube/rbac.js';
import { loadState, saveState, type AgentRecord, type ApplianceRecord, type LabOptions, type LabState } from './state.js';
import { alive, readSize, spawnInNs, stopPid, waitForLog, waitForLogAfter, type LabProcess } from './procs.js';
import { echoArgv, plugPod } from './network.js';
import { dist, KUBECTL, nodeBin } from './paths.js';

export type Say = (line: string) => void;

export interface UpOptions extends Partial<LabOptions> {
  prefix?: string;
  say?: Say;
}

export class Lab {
  constructor(public state: LabState) {}

  get plan(): LabPlan {
    return this.state.plan;
  }

  get prefix(): string {
    return this.state.prefix;
  }

  static load(prefix: string): Lab {
    return new Lab(loadState(checkPrefix(prefix)));
  }

  save(): void {
    saveState(this.state);
  }

  // ------------------------------------------------------------------ running things

  exec(ns: string, argv: string[], timeoutMs = 15000): Promise<RunResult> {
    return nsRun(ns, argv, { timeoutMs });
  }

  /** The real kubectl (the pinned release) in the mgmt namespace, fresh cache dir, the lab admin's kubeconfig. */
  async kubectl(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    const cache = join(this.state.dir, `kcache-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2, 6)}`);
    try {
      const argv = ['ip', 'netns', 'exec', this.plan.mgmt.ns, KUBECTL, '--kubeconfig', this.state.kubeconfig, '--cache-dir', cache, ...args];
      return await run(argv, { timeoutMs: opts.timeoutMs ?? 20000, ...(opts.input === undefined ? {} : { input: opts.input }) });
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  }

  async kubectlJson<T>(args: string[]): Promise<T> {
    return JSON.parse((await this.kubectl([...args, '-o', 'json'])).stdout) as T;
  }

  router(): FrrRouter {
    return new FrrRouter(this.plan.router.ns, this.state.frrDir, { hostname: 'router', asn: this.plan.router.asn, routerId: this.plan.router.address, neighbors: [] });
  }

  vtysh(cmd: string): Promise<string> {
    return this.router().vtysh(cmd);
  }

  /** Gateways of the router's kernel route to `vip` (sorted; [] when absent). */
  async routerGateways(vip: string): Promise<string[]> {
    return gatewaysOf(await kernelRoutes(this.plan.router.ns), vip);
  }

  edge(name: string): EdgePlan {
    const e = this.plan.edges.find((x) => x.name === name);
    if (!e) throw new Error(`no edge ${name} in lab ${this.prefix} (edges: ${this.plan.edges.map((x) => x.name).join(', ')})`);
    return e;
  }

  agent(name: string): AgentRecord {
    const a = this.state.agents.find((x) => x.edge === name);
    if (!a) throw new Error(`no agent record for ${name}`);
    return a;
  }

  agentProcess(name: string): LabProcess | undefined {
    return this.state.processes.find((p) => p.name === `agent-${name}` && alive(p.pid));
  }

  /** `edgelb ARGS --socket <edge's control socket>` run from the root namespace (the socket is a path). */
  edgelb(edge: string, args: string[], timeoutMs = 20000): Promise<RunResult> {
    return run([nodeBin, dist('src/cli/main.js'), ...args, '--socket', this.agent(edge).socket], { timeoutMs });
  }

  /** A node agent's datapath counters (`edgelb_node_drops` as drop_REASON, `edgelb_node_packets` by action), scraped from its metrics. */
  async nodeCounters(nodeName: string): Promise<Record<string, number>> {
    const n = this.plan.nodes.find((x) => x.name === nodeName);
    if (!n) throw new Error(`no node ${nodeName} in lab ${this.prefix}`);
    return scrapeNonZero(n.ns, `http://127.0.0.1:${NODE_METRICS_PORT}/metrics`, /^edgelb_node_(drops|packets)\{(?:reason|action)="([^"]+)"\} (\S+)$/gm, (m) =>
      m[1] === 'drops' ? `drop_${m[2]}` : m[2]!,
    );
  }

  /** An edge's datapath drops by reason (`edgelb_datapath_drops`), scraped from its agent's metrics. */
  async edgeDrops(edge: string): Promise<Record<string, number>> {
    const e = this.edge(edge);
    return scrapeNonZero(e.ns, `http://${e.address}:${EDGE_METRICS_PORT}/metrics`, /^edgelb_datapath_drops\{reason="([^"]+)"\} (\S+)$/gm, (m) => m[1]!);
  }

  async agentStatus(edge: string): Promise<Record<string, unknown>> {
    return JSON.parse((await this.edgelb(edge, ['status', '-o', 'json'])).stdout) as Record<string, unknown>;
  }

  /** Starts (or restarts) the agent of one edge; resolves when it printed EDGELB READY, throws otherwise. */
  async startAgent(name: string, timeoutMs = this.state.options.agentTimeoutSeconds * 1000): Promise<void> {
    timeoutMs = scaled(timeoutMs);
    const e = this.edge(name);
    const rec = this.agent(name);
    const p = spawnInNs(`agent-${name}`, e.ns, [nodeBin, dist('src/cli/main.js'), 'run', '--config', rec.config], rec.log);
    this.state.processes = this.state.processes.filter((x) => x.name !== p.name || alive(x.pid));
    this.state.processes.push(p);
    rec.state = 'starting';
    this.save();
    const mark = readSize(rec.log);
    try {
      await waitForLogAfter(p, rec.log, mark, /EDGELB READY/, timeoutMs);
      rec.state = 'ready';
      rec.detail = `pid ${p.pid}`;
    } catch (err) {
      rec.state = 'failed';
      rec.detail = (err as Error).message;
      throw err;
    } finally {
      this.save();
    }
  }

  /** Stops an edge's agent: SIGTERM drains and withdraws, SIGQUIT hands over (routes stay), SIGKILL crashes. */
  async stopAgent(name: string, signal: NodeJS.Signals = 'SIGTERM', graceMs = 20000): Promise<void> {
    const p = this.agentProcess(name);
    if (p) await stopPid(p.pid, signal, graceMs);
    this.agent(name).state = 'stopped';
    this.save();
  }

  /**
   * kubectl apply of a Service whose selector picks `endpoints` (their Pod
   * objects get the Service's membership label); the EndpointSlice
   * controller then lists the ready ones.
   */
  async applyService(spec: LabServiceSpec, endpoints: EndpointSpec[] = allEndpoints(this.plan)): Promise<string> {
    await this.setEndpoints(spec, endpoints);
    const r = await this.kubectl(['apply', '-f', '-'], { input: toYaml([serviceObject(this.plan, spec)]) });
    return r.stdout;
  }

  /** Makes exactly `endpoints` members of the Service (labels added and removed on the Pod objects). */
  async setEndpoints(spec: LabServiceSpec, endpoints: EndpointSpec[]): Promise<void> {
    const key = memberLabel(spec.name);
    const want = new Set(endpoints.map((e) => e.pod.name));
    const all = allPods(this.plan).map((x) => x.name);
    const add = all.filter((n) => want.has(n));
    const drop = all.filter((n) => !want.has(n));
    if (add.length) await this.kubectl(['label', '--overwrite', 'pods', ...add, `${key}=true`]);
    if (drop.length) await this.kubectl(['label', 'pods', ...drop, `${key}-`]);
  }

  /**
   * Deletes a Pod object the way a rollout does: the EndpointSlice
   * controller marks it terminating at once, the lab's kubelet keeps it
   * serving for its preStop time, then SIGTERMs it and removes the object.
   */
  async deletePod(podName: string): Promise<void> {
    await this.kubectl(['delete', 'pod', podName, '--wait=false']);
  }

  /**
   * A kubeconfig with a bound token of the ServiceAccount an agent runs as
   * (edgelb-system/edgelb-edge for an edge, edgelb-node for a node; RBAC
   * from deploy/rbac.yaml), minted on first use. The server address is the
   * API server's on the mgmt network.
   */
  async kubeconfigFor(agent: string): Promise<string> {
    const cp = this.state.controlPlane;
    if (!cp) throw new Error(`lab ${this.prefix} has no control plane`);
    const sa = this.plan.edges.some((e) => e.name === agent) ? 'edgelb-edge' : this.plan.nodes.some((n) => n.name === agent) ? 'edgelb-node' : null;
    if (!sa) throw new Error(`no edge or node ${agent} in lab ${this.prefix}`);
    const dir = join(this.state.dir, 'kubeconfigs');
    mkdirSync(dir, { recursive: true });
    const path = join(dir, `${agent}.kubeconfig`);
    if (!existsSync(path)) await serviceAccountKubeconfig(cp, EDGELB_NAMESPACE, sa, path);
    return path;
  }

  /** The Service's first LoadBalancer address, once the agents allocated it. */
  async waitForVip(name: string, timeoutMs = 20000, namespace = 'default'): Promise<string> {
    timeoutMs = scaled(timeoutMs);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const svc = await this.kubectlJson<{ status?: { loadBalancer?: { ingress?: { ip?: string }[] } } }>(['get', 'service', name, '-n', namespace]);
      const ip = svc.status?.loadBalancer?.ingress?.[0]?.ip;
      if (ip) return ip;
      if (Date.now() > deadline) throw new Error(`service ${namespace}/${name} got no EXTERNAL-IP within ${timeoutMs} ms`);
      await sleep(200);
    }
  }

  /** Waits until the router's kernel route to `vip` has exactly `gateways` (sorted); returns ms waited. */
  async waitForGateways(vip: string, gateways: string[], timeoutMs = 20000): Promise<number> {
    timeoutMs = scaled(timeoutMs);
    const want = [...gateways].sort().join(',');
    const t0 = Date.now();
    for (;;) {
      const got = (await this.routerGateways(vip)).join(',');
      if (got === want) return Date.now() - t0;
      if (Date.now() - t0 > timeoutMs) throw new Error(`router route to ${vip}: want nexthops [${want}], have [${got}] after ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  /** Waits until one HTTP request through the VIP succeeds (bounded). */
  async waitServing(vip: string, port = 80, timeoutMs = 20000): Promise<void> {
    timeoutMs = scaled(timeoutMs);
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const r = await this.load({ kind: 'http', target: vip, port, count: 4, concurrency: 1, timeoutMs: 1000 });
      if (r.ok === 4) return;
      last = r.failures[0]?.error ?? '';
      await sleep(200);
    }
    throw new Error(`${vip}:${port} did not serve within ${timeoutMs} ms (last error: ${last})`);
  }

  /**
   * Puts a misbehaving fabric hop in front of a node: bpf/lab_strip_options.c
   * at tc egress of the node's port on the fabric bridge (every frame the
   * fabric hands to the node passes it): `drop` discards packets carrying
   * IPv4 options (family 6: a leading IPv6 Destination Options header),
   * `strip` removes them, `off` removes the hop. One hop per node: a new one
   * replaces the last, of either family. (Not on the node's own interface:
   * the fixture answers TC_ACT_OK, which would end the tc chain before the
   * node's programs.)
   */
  optionHop(nodeName: string, how: 'drop' | 'strip' | 'off', family: 4 | 6 = 4): void {
    const n = this.plan.nodes.find((x) => x.name === nodeName);
    if (!n) throw new Error(`no node ${nodeName}`);
    const filter = { priority: 1, handle: 0x1ab };
    const ns = this.plan.fabric.ns;
    if (how === 'off') {
      inNetns(ns, () => {
        if (tcQuery(n.fabricPort, 'egress', filter) !== null) detachTc(n.fabricPort, 'egress', filter);
      });
      return;
    }
    const section = family === 4 ? (how === 'drop' ? 'lab_drop_options' : 'lab_strip_options') : how === 'drop' ? 'lab_drop_dstopts' : 'lab_strip_dstopts';
    const obj = BpfObject.load(bpfObjectPath('lab_strip_options'));
    try {
      inNetns(ns, () => obj.program(section).attachTc(n.fabricPort, 'egress', { ...filter, replace: true }));
    } finally {
      obj.close();
    }
  }

  /** Runs the load generator in the client namespace; resolves with its result. */
  load(o: LoadOptions): Promise<LoadResult> {
    const args = ['--kind', o.kind, '--target', o.target, '--port', String(o.port)];
    const opt = (flag: string, v: string | number | undefined): void => {
      if (v !== undefined) args.push(flag, String(v));
    };
    opt('--bind', o.bind);
    opt('--duration-ms', o.durationMs);
    opt('--count', o.count);
    opt('--concurrency', o.concurrency);
    opt('--connections', o.connections);
    opt('--interval-ms', o.intervalMs);
    opt('--timeout-ms', o.timeoutMs);
    opt('--path', o.path);
    const limit = Math.min(o.durationMs ?? 600_000, 600_000) + 30_000;
    return run(['nsenter', `--net=/run/netns/${this.plan.client.ns}`, '--', nodeBin, dist('src/lab/load-main.js'), ...args], { timeoutMs: limit }).then(
      (r) => JSON.parse(r.stdout) as LoadResult,
    );
  }

  /** Adds a pod (namespace, veth on the node's bridge, echo servers, its Pod object, a member of `services`) to a node; resolves when it serves. */
  async addPod(nodeName: string, podName: string, ip: string, services: string[] = []): Promise<PodPlan> {
    const n = this.plan.nodes.find((x) => x.name === nodeName);
    if (!n) throw new Error(`no node ${nodeName}`);
    const idx = n.pods.length;
    const pod: PodPlan = { name: podName, ns: `${this.prefix}pod${n.name.slice(4)}${String.fromCharCode(97 + idx)}`, ip, ip6: `fd44:${n.name.slice(4)}::${10 + idx}`, hostIf: `veth${String.fromCharCode(97 + idx)}` };
    await createNetns(pod.ns);
    this.state.namespaces.push(pod.ns);
    n.pods.push(pod);
    this.save();
    await plugPod(n, pod, this.state.options.ipv6);
    const proc = spawnInNs(`pod-${podName}`, pod.ns, echoArgv(podName, this.plan, this.state.options.ipv6), join(this.state.dir, `${podName}.log`));
    this.state.processes.push(proc);
    this.save();
    await waitForLog(proc, /ECHO READY/, 15000);
    await this.kubectl(['apply', '-f', '-'], { input: toYaml([podObject(pod, n.name, this.plan, services)]) });
    return pod;
  }

  /** Stops a pod's echo servers (SIGTERM: finish what is in flight); its kubelet then reports it not ready. */
  async stopPod(podName: string): Promise<void> {
    const p = this.state.processes.find((x) => x.name === `pod-${podName}` && alive(x.pid));
    if (p) await stopPid(p.pid, 'SIGTERM', 12000);
  }

  // ------------------------------------------------------------------ description

  /** Every LoadBalancer Service with its addresses (empty when the API server is unreachable). */
  async vips(): Promise<{ service: string; ips: string[]; ports: string[] }[]> {
    type L = { items: { metadata: { namespace: string; name: string }; spec?: { type?: string; ports?: { port: number; protocol?: string }[] }; status?: { loadBalancer?: { ingress?: { ip?: string }[] } } }[] };
    const list = await this.kubectlJson<L>(['get', 'services', '--all-namespaces']);
    return list.items
      .filter((s) => s.spec?.type === 'LoadBalancer')
      .map((s) => ({
        service: `${s.metadata.namespace}/${s.metadata.name}`,
        ips: (s.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? '').filter(Boolean),
        ports: (s.spec?.ports ?? []).map((p) => `${p.port}/${p.protocol ?? 'TCP'}`),
      }));
  }

  async describe(): Promise<LabDescription> {
    const p = this.plan;
    let vips: LabDescription['vips'] = [];
    let vipError: string | null = null;
    try {
      vips = await this.vips();
    } catch (e) {
      vipError = (e as Error).message.split('\n')[0] ?? 'unknown';
    }
    return {
      prefix: this.prefix,
      phase: this.state.phase,
      createdAt: this.state.createdAt,
      dir: this.state.dir,
      kubeconfig: this.state.kubeconfig,
      kubectl: `ip netns exec ${p.mgmt.ns} ${KUBECTL} --kubeconfig ${this.state.kubeconfig} --cache-dir $(mktemp -d)`,
      apiServer: this.state.controlPlane?.server ?? '',
      options: this.state.options,
      namespaces: allNamespaces(p),
      client: { ns: p.client.ns, addresses: [p.client.address, p.client.otherAddress], gateway: p.client.gateway },
      router: { ns: p.router.ns, address: p.router.address, clientSide: p.router.clientAddress, asn: p.router.asn, vtysh: `ip netns exec ${p.router.ns} vtysh --vty_socket ${join(this.state.frrDir, 'run')} --config_dir ${this.state.frrDir}` },
      edges: p.edges.map((e) => {
        const a = this.state.agents.find((x) => x.edge === e.name);
        const proc = this.agentProcess(e.name);
        const vm = this.state.appliance?.edge === e.name ? this.state.appliance : undefined;
        if (vm) return { name: e.name, ns: e.ns, address: e.address, asn: e.asn, uplink: e.uplink, mgmt: e.mgmtAddress, config: '', socket: '', log: vm.serialLog, agent: vm.pid && alive(vm.pid) ? vm.state : 'exited', detail: vm.detail, appliance: vm };
        return { name: e.name, ns: e.ns, address: e.address, asn: e.asn, uplink: e.uplink, mgmt: e.mgmtAddress, config: a?.config ?? '', socket: a?.socket ?? '', log: a?.log ?? '', agent: proc ? a?.state ?? 'unknown' : a?.state === 'ready' ? 'exited' : a?.state ?? 'not started', detail: a?.detail ?? '' };
      }),
      nodes: p.nodes.map((n) => ({
        name: n.name, ns: n.ns, address: n.address, podCidr: n.podCidr,
        datapath: this.state.nodes.find((x) => x.node === n.name) ?? null,
        pods: n.pods.map((x) => ({ name: x.name, ns: x.ns, ip: x.ip })),
      })),
      pool: p.pool,
      ports: p.ports,
      vips,
      vipError,
      problems: this.state.problems,
      workarounds: this.state.workarounds ?? [],
    };
  }
}

export interface LabDescription {
  prefix: string;
  phase: LabState['phase'];
  createdAt: string;
  dir: string;
  kubeconfig: string;
  kubectl: string;
  apiServer: string;
  options: LabOptions;
  namespaces: string[];
  client: { ns: string; addresses: string[]; gateway: string };
  router: { ns: string; address: string; clientSide: string; asn: number; vtysh: string };
  edges: { name: string; ns: string; address: string; asn: number; uplink: string; mgmt: string; config: string; socket: string; log: string; agent: string; detail: string; appliance?: ApplianceRecord }[];
  nodes: { name: string; ns: string; address: string; podCidr: string; datapath: LabState['nodes'][number] | null; pods: { name: string; ns: string; ip: string }[] }[];
  pool: string;
  ports: { http: number; udp: number };
  vips: { service: string; ips: string[]; ports: string[] }[];
  vipError: string | null;
  problems: string[];
  workarounds: string[];
}

/** A multi-line error as one line: its first line and the last line of the log tail it quotes. */
export function oneLine(msg: string): string {
  const lines = msg.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.length <= 1 ? lines[0] ?? '' : `${lines[0]} … ${lines[lines.length - 1]}`;
}

/** The non-zero samples of a metrics page fetched inside a namespace: `line` matches one sample with
 * its value as the last group; `key` names it. */
async function scrapeNonZero(ns: string, url: string, line: RegExp, key: (m: RegExpMatchArray) => string): Promise<Record<string, number>> {
  const r = await nsRun(ns, ['curl', '-sf', '--max-time', '5', url]);
  const out: Record<string, number> = {};
  for (const m of r.stdout.matchAll(line)) {
    const v = Number(m[m.length - 1]);
    if (v) out[key(m)] = v;
  }
  return out;
}
