// Builds, describes and removes the lab (see topology.ts for the picture).
// Every step records what it made in the state file first, so `down` (or a
// test's teardown) removes exactly that, even after a failure half-way.
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { addAddress, addBridge, createNetns, gatewaysOf, kernelRoutes, nsRun, run, setMaster, sleep, sysctl, vethPair, type RunResult } from '../../test/lib/netns.js';
import { FrrRouter, type FrrNeighbor } from '../../test/lib/frr.js';
import { ensureBpffs } from '../../test/lib/bpffs.js';
import { BpfObject, bpfObjectPath, detachTc, inNetns, repoRoot, tcQuery } from '../datapath/loader.js';
import { allNamespaces, allPods, checkPrefix, newPrefix, planLab, type EdgePlan, type LabPlan, type NodePlan, type PodPlan } from './topology.js';
import type { LoadOptions, LoadResult } from './load.js';
import { allEndpoints, endpointSliceObject, serviceObject, toYaml, type EndpointSpec, type LabServiceSpec } from './manifests.js';
import { DEFAULT_OPTIONS, listLabs, loadState, removeState, saveState, STATE_DIR, type AgentRecord, type LabOptions, type LabState } from './state.js';
import { alive, sameProcess, spawnInNs, stopPid, tail, waitForLog, type LabProcess } from './procs.js';
import { edgeConfig } from './agent-config.js';
import { userIds } from '../bgp/daemon-files.js';
import { attachNodeDatapath, nodePinDir } from './node-side.js';

export type Say = (line: string) => void;

const node = process.execPath;
const root = repoRoot();
const dist = (p: string): string => join(root, 'dist', p);
export const KUBECTL = process.env.KUBECTL ?? join(root, '.tools/kubectl/usr/bin/kubectl');

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

  /** The real kubectl (1.20) in the mgmt namespace, fresh cache dir, this lab's kubeconfig. */
  async kubectl(args: string[], opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    const cache = join(this.state.dir, `kcache-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2, 6)}`);
    try {
      const argv = ['ip', 'netns', 'exec', this.plan.mgmt.ns, KUBECTL, '--kubeconfig', this.state.kubeconfig, '--cache-dir', cache, ...args];
      if (opts.input === undefined) return await run(argv, { timeoutMs: opts.timeoutMs ?? 20000 });
      return await runWithInput(argv, opts.input, opts.timeoutMs ?? 20000);
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
    return run([node, dist('src/cli/main.js'), ...args, '--socket', this.agent(edge).socket], { timeoutMs });
  }

  async agentStatus(edge: string): Promise<Record<string, unknown>> {
    return JSON.parse((await this.edgelb(edge, ['status', '-o', 'json'])).stdout) as Record<string, unknown>;
  }

  /** Starts (or restarts) the agent of one edge; resolves when it printed EDGELB READY, throws otherwise. */
  async startAgent(name: string, timeoutMs = this.state.options.agentTimeoutSeconds * 1000): Promise<void> {
    const e = this.edge(name);
    const rec = this.agent(name);
    const p = spawnInNs(`agent-${name}`, e.ns, [node, dist('src/cli/main.js'), 'run', '--config', rec.config], rec.log);
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

  /** kubectl apply of a Service and its EndpointSlice. */
  async applyService(spec: LabServiceSpec, endpoints: EndpointSpec[] = allEndpoints(this.plan)): Promise<string> {
    const r = await this.kubectl(['apply', '-f', '-'], { input: toYaml([serviceObject(this.plan, spec), endpointSliceObject(this.plan, spec, endpoints)]) });
    return r.stdout;
  }

  async setEndpoints(spec: LabServiceSpec, endpoints: EndpointSpec[]): Promise<void> {
    await this.kubectl(['apply', '-f', '-'], { input: toYaml([endpointSliceObject(this.plan, spec, endpoints)]) });
  }

  /** The Service's first LoadBalancer address, once the agents allocated it. */
  async waitForVip(name: string, timeoutMs = 20000, namespace = 'default'): Promise<string> {
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
   * fabric hands to the node passes it): `drop` discards IPv4 packets with
   * options, `strip` removes the options, `off` removes the hop. (Not on the
   * node's own interface: the fixture answers TC_ACT_OK, which would end
   * the tc chain before the node's programs.)
   */
  optionHop(nodeName: string, how: 'drop' | 'strip' | 'off'): void {
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
    const obj = BpfObject.load(bpfObjectPath('lab_strip_options'));
    try {
      inNetns(ns, () => obj.program(how === 'drop' ? 'lab_drop_options' : 'lab_strip_options').attachTc(n.fabricPort, 'egress', { ...filter, replace: true }));
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
    return run(['nsenter', `--net=/run/netns/${this.plan.client.ns}`, '--', node, dist('src/lab/load-main.js'), ...args], { timeoutMs: limit }).then(
      (r) => JSON.parse(r.stdout) as LoadResult,
    );
  }

  /** Adds a pod (namespace, veth on the node's bridge, echo servers) to a node; resolves when it serves. */
  async addPod(nodeName: string, podName: string, ip: string): Promise<PodPlan> {
    const n = this.plan.nodes.find((x) => x.name === nodeName);
    if (!n) throw new Error(`no node ${nodeName}`);
    const idx = n.pods.length;
    const pod: PodPlan = { name: podName, ns: `${this.prefix}pod${n.name.slice(4)}${String.fromCharCode(97 + idx)}`, ip, hostIf: `veth${String.fromCharCode(97 + idx)}` };
    await createNetns(pod.ns);
    this.state.namespaces.push(pod.ns);
    n.pods.push(pod);
    this.save();
    await vethPair(pod.ns, 'eth0', n.ns, pod.hostIf);
    await setMaster(n.ns, pod.hostIf, n.bridge);
    await addAddress(pod.ns, 'eth0', `${ip}/24`);
    await nsRun(pod.ns, ['ip', 'route', 'add', 'default', 'via', n.gateway]);
    await txChecksumOff(pod.ns, 'eth0');
    const proc = spawnInNs(`pod-${podName}`, pod.ns, [node, dist('src/lab/echo-main.js'), '--name', podName, '--http', String(this.plan.ports.http), '--udp', String(this.plan.ports.udp)], join(this.state.dir, `${podName}.log`));
    this.state.processes.push(proc);
    this.save();
    await waitForLog(proc, /ECHO READY/, 15000);
    return pod;
  }

  /** Stops a pod's echo servers the way a kubelet does (SIGTERM: finish what is in flight). */
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
      apiServer: `http://${p.mgmt.address}:${p.mgmt.apiPort}`,
      options: this.state.options,
      namespaces: allNamespaces(p),
      client: { ns: p.client.ns, addresses: [p.client.address, p.client.otherAddress], gateway: p.client.gateway },
      router: { ns: p.router.ns, address: p.router.address, clientSide: p.router.clientAddress, asn: p.router.asn, vtysh: `ip netns exec ${p.router.ns} vtysh --vty_socket ${join(this.state.frrDir, 'run')} --config_dir ${this.state.frrDir}` },
      edges: p.edges.map((e) => {
        const a = this.state.agents.find((x) => x.edge === e.name);
        const proc = this.agentProcess(e.name);
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
  edges: { name: string; ns: string; address: string; asn: number; uplink: string; mgmt: string; config: string; socket: string; log: string; agent: string; detail: string }[];
  nodes: { name: string; ns: string; address: string; podCidr: string; datapath: LabState['nodes'][number] | null; pods: { name: string; ns: string; ip: string }[] }[];
  pool: string;
  ports: { http: number; udp: number };
  vips: { service: string; ips: string[]; ports: string[] }[];
  vipError: string | null;
  problems: string[];
  workarounds: string[];
}

// ------------------------------------------------------------------ helpers

/** A multi-line error as one line: its first line and the last line of the log tail it quotes. */
export function oneLine(msg: string): string {
  const lines = msg.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.length <= 1 ? lines[0] ?? '' : `${lines[0]} … ${lines[lines.length - 1]}`;
}

function readSize(file: string): number {
  try {
    return readFileSync(file).length;
  } catch {
    return 0;
  }
}

async function waitForLogAfter(p: LabProcess, log: string, offset: number, re: RegExp, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = existsSync(log) ? readFileSync(log).subarray(offset).toString('utf8') : '';
    const line = text.split('\n').find((l) => re.test(l));
    if (line !== undefined) return line;
    if (!alive(p.pid)) throw new Error(`${p.name} exited before printing ${re}; last lines of ${log}:\n${tail(text)}`);
    if (Date.now() > deadline) throw new Error(`${p.name} did not print ${re} within ${timeoutMs} ms; last lines of ${log}:\n${tail(text)}`);
    await sleep(100);
  }
}

async function runWithInput(argv: string[], input: string, timeoutMs: number): Promise<RunResult> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${argv.join(' ')} failed (${code ?? 'killed'}): ${stderr.trim()}`));
    });
    child.stdin.end(input);
  });
}

async function txChecksumOff(ns: string, ifname: string): Promise<void> {
  await nsRun(ns, ['ethtool', '-K', ifname, 'tx', 'off']);
}

async function macOf(ns: string, ifname: string): Promise<string> {
  const { stdout } = await nsRun(ns, ['ip', '-j', 'link', 'show', 'dev', ifname]);
  return (JSON.parse(stdout) as { address: string }[])[0]!.address;
}

// ------------------------------------------------------------------ up

/** Builds a lab. On failure the partial lab is torn down and the error rethrown (keepOnFailure keeps it for inspection). */
export async function labUp(opts: UpOptions & { keepOnFailure?: boolean } = {}): Promise<Lab> {
  const say: Say = opts.say ?? (() => undefined);
  const prefix = checkPrefix(opts.prefix ?? newPrefix());
  const options: LabOptions = { ...DEFAULT_OPTIONS, ...Object.fromEntries(Object.entries(opts).filter(([k, v]) => k in DEFAULT_OPTIONS && v !== undefined)) };
  if (listLabs().includes(prefix)) throw new Error(`lab ${prefix} already exists (npm run lab -- down ${prefix})`);
  const plan = planLab(prefix);
  const dir = join(STATE_DIR, prefix.slice(0, -1));
  ensureBpffs();
  const state: LabState = {
    prefix,
    createdAt: new Date().toISOString(),
    dir,
    plan,
    options,
    namespaces: [],
    processes: [],
    bpffsDir: `/sys/fs/bpf/edgelb-lab-${prefix.slice(4, 8)}`,
    frrDir: join(dir, 'router'),
    kubeconfig: join(dir, 'kubeconfig'),
    agents: [],
    nodes: [],
    phase: 'building',
    problems: [],
    owner: { pid: process.pid, kind: options.ownerKind },
    workarounds: [],
  };
  const lab = new Lab(state);
  mkdirSync(dir, { recursive: true });
  // FRR drops to user frr and needs to reach its directory below this one.
  chmodSync(STATE_DIR, 0o755);
  chmodSync(dir, 0o755);
  lab.save();
  const t0 = Date.now();
  const step = async (what: string, fn: () => Promise<void>): Promise<void> => {
    const t = Date.now();
    await fn();
    say(`  ${what} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  };
  try {
    await step('namespaces, veths, bridges, addresses, routes', () => buildNetwork(lab));
    await step('router: FRR zebra + bgpd + bfdd', () => startRouter(lab));
    await step('test API server in the mgmt namespace', () => startApiServer(lab));
    await step('pods: HTTP + UDP echo servers', () => startPods(lab));
    await step('nodes: node.o on tc ingress/egress + local-service sync', () => startNodes(lab));
    if (options.agents) await step('edges: edgelb agents (gobgpd, bfdd, XDP)', () => startAgents(lab, say));
    state.phase = state.problems.length ? 'partial' : 'up';
    lab.save();
    say(`lab ${prefix} ${state.phase} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return lab;
  } catch (e) {
    state.phase = 'partial';
    state.problems.push((e as Error).message);
    lab.save();
    if (!opts.keepOnFailure) await labDown(prefix).catch(() => undefined);
    throw e;
  }
}

async function buildNetwork(lab: Lab): Promise<void> {
  const p = lab.plan;
  const s = lab.state;
  for (const ns of allNamespaces(p)) {
    await createNetns(ns);
    s.namespaces.push(ns);
    lab.save();
  }
  // Fabric: one bridge every router/edge/node port hangs off.
  await addBridge(p.fabric.ns, p.fabric.bridge);
  const fabricPort = async (ns: string, ifname: string, port: string, cidr: string): Promise<void> => {
    await vethPair(ns, ifname, p.fabric.ns, port);
    await setMaster(p.fabric.ns, port, p.fabric.bridge);
    await addAddress(ns, ifname, cidr);
  };
  // Router.
  await fabricPort(p.router.ns, p.router.fabricIf, p.router.fabricPort, `${p.router.address}/24`);
  await vethPair(p.client.ns, p.client.ifname, p.router.ns, p.router.clientIf);
  await addAddress(p.router.ns, p.router.clientIf, `${p.router.clientAddress}/24`);
  await addAddress(p.client.ns, p.client.ifname, `${p.client.address}/24`);
  await addAddress(p.client.ns, p.client.ifname, `${p.client.otherAddress}/24`);
  await nsRun(p.client.ns, ['ip', 'route', 'add', 'default', 'via', p.client.gateway]);
  // A veth hands packets on with the TCP/UDP checksum still to be done
  // (CHECKSUM_PARTIAL); an XDP program that rewrites such a packet and sends
  // it with XDP_TX makes a fresh frame whose checksum is never completed. A
  // real NIC computes it before the wire, so compute it at the sender here.
  await txChecksumOff(p.client.ns, p.client.ifname);
  for (const [k, v] of [['net.ipv4.ip_forward', '1'], ['net.ipv4.fib_multipath_hash_policy', '1'], ['net.ipv4.conf.all.rp_filter', '0'], ['net.ipv4.conf.default.rp_filter', '0']]) {
    await sysctl(p.router.ns, k!, v!);
  }
  for (const n of p.nodes) await nsRun(p.router.ns, ['ip', 'route', 'add', n.podCidr, 'via', n.address]);
  // Mgmt: the API server's bridge, reached by the edges over mgmt0.
  await addBridge(p.mgmt.ns, p.mgmt.bridge, `${p.mgmt.address}/24`);
  await nsRun(p.mgmt.ns, ['ip', 'link', 'set', 'dev', p.mgmt.bridge, 'address', '02:00:0a:ff:00:01']);
  // Edges.
  for (const e of p.edges) {
    await fabricPort(e.ns, e.uplink, e.fabricPort, `${e.address}/24`);
    // XDP_TX on a veth reaches the peer only when the peer runs NAPI, which
    // an XDP program on the peer turns on (GRO, on by default, does not).
    await nsRun(p.fabric.ns, ['ip', 'link', 'set', 'dev', e.fabricPort, 'xdp', 'obj', join(root, 'bpf/out/xdp_pass.o'), 'sec', 'xdp']);
    await vethPair(e.ns, e.mgmtIf, p.mgmt.ns, e.mgmtPort);
    await setMaster(p.mgmt.ns, e.mgmtPort, p.mgmt.bridge);
    await addAddress(e.ns, e.mgmtIf, `${e.mgmtAddress}/24`);
    await nsRun(e.ns, ['ip', 'route', 'add', 'default', 'via', p.router.address]);
    for (const n of p.nodes) await nsRun(e.ns, ['ip', 'route', 'add', n.podCidr, 'via', n.address]);
    for (const [k, v] of [['net.ipv4.ip_forward', '1'], ['net.ipv4.conf.all.rp_filter', '0'], ['net.ipv4.conf.default.rp_filter', '0']]) await sysctl(e.ns, k!, v!);
  }
  // Nodes and their pods.
  for (const n of p.nodes) {
    await fabricPort(n.ns, n.ifname, n.fabricPort, `${n.address}/24`);
    await vethPair(n.ns, n.mgmtIf, p.mgmt.ns, n.mgmtPort);
    await setMaster(p.mgmt.ns, n.mgmtPort, p.mgmt.bridge);
    await addAddress(n.ns, n.mgmtIf, `${n.mgmtAddress}/24`);
    await nsRun(n.ns, ['ip', 'route', 'add', 'default', 'via', p.router.address]);
    for (const [k, v] of [['net.ipv4.ip_forward', '1'], ['net.ipv4.conf.all.rp_filter', '0'], ['net.ipv4.conf.default.rp_filter', '0'], [`net.ipv4.conf.${n.ifname}.rp_filter`, '0']]) await sysctl(n.ns, k!, v!);
    await addBridge(n.ns, n.bridge, `${n.gateway}/24`);
    // A bridge without an address of its own takes the lowest port MAC and
    // changes it when a pod joins with a lower one; the pods' ARP entry for
    // their gateway then points nowhere and replies are lost until it ages
    // out. Kubelet-style CNIs pin it; so do we.
    await nsRun(n.ns, ['ip', 'link', 'set', 'dev', n.bridge, 'address', `02:00:0a:f4:${n.name.slice(4).padStart(2, '0')}:01`]);
    for (const pod of n.pods) {
      await vethPair(pod.ns, 'eth0', n.ns, pod.hostIf);
      await setMaster(n.ns, pod.hostIf, n.bridge);
      await addAddress(pod.ns, 'eth0', `${pod.ip}/24`);
      await nsRun(pod.ns, ['ip', 'route', 'add', 'default', 'via', n.gateway]);
      await txChecksumOff(pod.ns, 'eth0');
    }
  }
  // Permanent neighbours where the XDP program looks next hops up
  // (bpf_fib_lookup does not resolve ARP; a miss would go to the slow path).
  const macs = new Map<string, string>();
  for (const n of p.nodes) macs.set(n.address, await macOf(n.ns, n.ifname));
  macs.set(p.router.address, await macOf(p.router.ns, p.router.fabricIf));
  for (const e of p.edges) {
    for (const [ip, mac] of macs) await nsRun(e.ns, ['ip', 'neigh', 'replace', ip, 'lladdr', mac, 'dev', e.uplink, 'nud', 'permanent']);
  }
  for (const e of p.edges) macs.set(e.address, await macOf(e.ns, e.uplink));
  for (const n of p.nodes) {
    for (const [ip, mac] of macs) if (ip !== n.address) await nsRun(n.ns, ['ip', 'neigh', 'replace', ip, 'lladdr', mac, 'dev', n.ifname, 'nud', 'permanent']);
  }
}

async function startRouter(lab: Lab): Promise<void> {
  const p = lab.plan;
  const bfd = lab.state.options.bfd ? { ...lab.state.options.bfdTimers } : undefined;
  const neighbors: FrrNeighbor[] = p.edges.map((e) => ({ address: e.address, asn: e.asn, holdTime: 9, keepalive: 3, ...(bfd ? { bfd } : {}) }));
  const r = new FrrRouter(p.router.ns, lab.state.frrDir, { hostname: 'router', asn: p.router.asn, routerId: p.router.address, neighbors });
  await r.start();
  const ids = userIds('frr');
  if (ids) chownSync(lab.state.frrDir, ids.uid, ids.gid);
  for (const d of ['zebra', 'bgpd', 'bfdd'] as const) {
    const pid = r.pidOf(d);
    if (pid) lab.state.processes.push({ name: `frr-${d}`, ns: p.router.ns, pid, argv: [`/usr/lib/frr/${d}`], log: join(lab.state.frrDir, `${d}.log`) });
  }
  lab.save();
}

async function startApiServer(lab: Lab): Promise<void> {
  const p = lab.plan;
  const log = join(lab.state.dir, 'apiserver.log');
  const proc = spawnInNs('apiserver', p.mgmt.ns, [node, dist('test/apiserver/main.js'), '--host', p.mgmt.address, '--port', String(p.mgmt.apiPort), '--kubeconfig-out', lab.state.kubeconfig], log);
  lab.state.processes.push(proc);
  lab.save();
  await waitForLog(proc, /^http:\/\//, 15000);
  // The nodes, as a kubelet would register them.
  const nodes = p.nodes.map((n) => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: n.name, labels: { 'kubernetes.io/hostname': n.name, 'kubernetes.io/os': 'linux' } },
    spec: { podCIDR: n.podCidr, podCIDRs: [n.podCidr] },
    status: { addresses: [{ type: 'InternalIP', address: n.address }, { type: 'Hostname', address: n.name }], conditions: [{ type: 'Ready', status: 'True' }] },
  }));
  await lab.kubectl(['apply', '-f', '-'], { input: nodes.map((n) => stringify(n)).join('---\n') });
  // Create does not take status from the body everywhere; make sure the addresses are there.
  for (const n of nodes) {
    const got = await lab.kubectlJson<{ status?: { addresses?: unknown[] } }>(['get', 'node', n.metadata.name]);
    if (!got.status?.addresses?.length) {
      await nsRun(p.mgmt.ns, ['curl', '-sf', '-X', 'PATCH', '-H', 'Content-Type: application/merge-patch+json', '--data', JSON.stringify({ status: n.status }), `http://${p.mgmt.address}:${p.mgmt.apiPort}/api/v1/nodes/${n.metadata.name}/status`]);
    }
  }
}

async function startPods(lab: Lab): Promise<void> {
  const p = lab.plan;
  const procs = allPods(p).map((pod) => {
    const proc = spawnInNs(`pod-${pod.name}`, pod.ns, [node, dist('src/lab/echo-main.js'), '--name', pod.name, '--http', String(p.ports.http), '--udp', String(p.ports.udp)], join(lab.state.dir, `${pod.name}.log`));
    lab.state.processes.push(proc);
    return proc;
  });
  lab.save();
  await Promise.all(procs.map((x) => waitForLog(x, /ECHO READY/, 15000)));
}

async function startNodes(lab: Lab): Promise<void> {
  const p = lab.plan;
  if (lab.state.options.nodeAgent === 'edgelb') {
    // The product's node agent: tc programs, local frontends from the API server, probe responder.
    const procs = p.nodes.map((n) => {
      const pinDir = nodePinDir(lab.state.bpffsDir, n.name);
      lab.state.nodes.push({ node: n.name, pinDir, attached: false, detail: 'edgelb node run starting' });
      const proc = spawnInNs(
        `node-agent-${n.name}`,
        n.ns,
        [node, dist('src/cli/main.js'), 'node', 'run', '--interface', n.ifname, '--node-name', n.name, '--node-ip', n.address, '--edge-sources', p.edges.map((e) => e.address).join(','), '--kubeconfig', lab.state.kubeconfig, '--pin-path', pinDir],
        join(lab.state.dir, `node-agent-${n.name}.log`),
      );
      lab.state.processes.push(proc);
      return { n, proc };
    });
    lab.save();
    await Promise.all(
      procs.map(async ({ n, proc }) => {
        await waitForLog(proc, /EDGELB NODE READY/, 30000);
        const rec = lab.state.nodes.find((x) => x.node === n.name)!;
        rec.attached = true;
        rec.detail = `edgelb node run (pid ${proc.pid}) on ${n.ifname}`;
      }),
    );
    lab.save();
    return;
  }
  for (const n of p.nodes) {
    const pinDir = nodePinDir(lab.state.bpffsDir, n.name);
    lab.state.nodes.push({ node: n.name, pinDir, attached: false, detail: 'attaching' });
    lab.save();
    attachNodeDatapath(n, pinDir, p.edges.map((e) => e.address));
    const rec = lab.state.nodes.find((x) => x.node === n.name)!;
    rec.attached = true;
    rec.detail = `node_ingress + node_egress on ${n.ifname}, maps in ${pinDir}`;
    lab.save();
  }
  const proc = spawnInNs(
    'node-sync',
    p.mgmt.ns,
    [node, dist('src/lab/node-sync-main.js'), '--api', `http://${p.mgmt.address}:${p.mgmt.apiPort}`, ...p.nodes.flatMap((n: NodePlan) => ['--node', `${n.name}=${nodePinDir(lab.state.bpffsDir, n.name)}`])],
    join(lab.state.dir, 'node-sync.log'),
  );
  lab.state.processes.push(proc);
  lab.save();
  await waitForLog(proc, /NODE SYNC READY/, 15000);
}

async function startAgents(lab: Lab, say: Say): Promise<void> {
  const p = lab.plan;
  for (const e of p.edges) {
    const edir = join(lab.state.dir, e.name);
    mkdirSync(edir, { recursive: true });
    const cfg = edgeConfig(p, e, lab.state.options, { dir: edir, pinPath: join(lab.state.bpffsDir, e.name), kubeconfig: lab.state.kubeconfig });
    const file = join(edir, 'edgelb.yaml');
    writeFileSync(file, `# edgelb config of lab edge ${e.name} (written by npm run lab)\n${stringify(cfg)}`);
    lab.state.agents.push({ edge: e.name, config: file, socket: (cfg.control as { socket: string }).socket, log: join(edir, 'agent.log'), state: 'starting', detail: '' });
  }
  lab.save();
  const results = await Promise.allSettled(p.edges.map((e) => lab.startAgent(e.name)));
  results.forEach((r, i) => {
    if (r.status === 'rejected') {
      const msg = `agent on ${p.edges[i]!.name} not ready: ${oneLine((r.reason as Error).message)}`;
      lab.state.problems.push(msg);
      say(`  ! ${msg.split('\n')[0]}`);
    }
  });
  lab.save();
}

// ------------------------------------------------------------------ down

/** Removes a lab: processes (by pid), namespaces, pinned maps, files. Returns what could not be removed. */
export async function labDown(prefix: string, say: Say = () => undefined): Promise<string[]> {
  checkPrefix(prefix);
  const problems: string[] = [];
  let state: LabState | null = null;
  try {
    state = loadState(prefix);
  } catch {
    /* no record: clean up by name below */
  }
  // 1. Our recorded processes, agents first (they stop their gobgpd/bfdd).
  const procs = (state?.processes ?? []).filter((x) => alive(x.pid) && sameProcess(x));
  const order = (n: string): number => (n.startsWith('agent-') ? 0 : n.startsWith('frr-') ? 2 : 1);
  for (const group of [0, 1, 2]) {
    await Promise.all(procs.filter((x) => order(x.name) === group).map((x) => stopPid(x.pid, x.name.startsWith('agent-') ? 'SIGQUIT' : 'SIGTERM', 4000)));
  }
  // 2. Anything else still inside the lab's namespaces (children such as gobgpd).
  const { stdout } = await run(['ip', 'netns', 'list']).catch(() => ({ stdout: '' }));
  const namespaces = new Set([...(state?.namespaces ?? []), ...stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(prefix))]);
  for (const ns of namespaces) {
    const pids = await run(['ip', 'netns', 'pids', ns]).then((r) => r.stdout.split(/\s+/).filter(Boolean).map(Number), () => [] as number[]);
    await Promise.all(pids.map((pid) => stopPid(pid, 'SIGTERM', 3000)));
    for (const pid of pids) for (const d of ['zebra', 'bgpd', 'bfdd']) rmSync(`/var/tmp/frr/${d}.${pid}`, { recursive: true, force: true });
  }
  // 2b. Processes outside any listed namespace that still belong to this lab
  // (a namespace deleted under a running daemon hides it from `ip netns
  // pids`): their command line names the lab's own directory.
  const labDir = state?.dir ?? join(STATE_DIR, prefix.slice(0, -1));
  const strays = readdirSync('/proc').filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid).filter((d) => {
    try {
      return readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').some((arg) => arg.includes(`${labDir}/`));
    } catch {
      return false;
    }
  });
  await Promise.all(strays.map((d) => stopPid(Number(d), 'SIGTERM', 3000)));
  // 3. Namespaces (their interfaces, and with them the attached programs, go too).
  for (const ns of namespaces) {
    await run(['ip', 'netns', 'delete', ns]).catch((e: Error) => problems.push(`netns ${ns}: ${e.message}`));
  }
  // 4. Pinned maps and files.
  const bpffs = state?.bpffsDir ?? `/sys/fs/bpf/edgelb-lab-${prefix.slice(4, 8)}`;
  try {
    rmSync(bpffs, { recursive: true, force: true });
  } catch (e) {
    problems.push(`${bpffs}: ${(e as Error).message}`);
  }
  rmSync(state?.dir ?? join(STATE_DIR, prefix.slice(0, -1)), { recursive: true, force: true });
  removeState(prefix);
  say(`lab ${prefix} removed (${namespaces.size} namespaces)${problems.length ? `; problems: ${problems.join('; ')}` : ''}`);
  return problems;
}

/** Removes test/demo labs whose owning process is gone (a killed test run leaves them behind). */
export async function removeOrphanLabs(say: Say = () => undefined): Promise<string[]> {
  const removed: string[] = [];
  for (const prefix of listLabs()) {
    let st: LabState;
    try {
      st = loadState(prefix);
    } catch {
      continue;
    }
    if (st.owner && st.owner.kind !== 'cli' && !alive(st.owner.pid)) {
      await labDown(prefix, say);
      removed.push(prefix);
    }
  }
  return removed;
}

export { listLabs };
