// The agent as operators run it, for tests: `edgelb run` in an edge
// namespace with a managed gobgpd and XDP on its uplink, an FRR router as
// its BGP peer, and a real control plane (test/lib/kube.ts: etcd,
// kube-apiserver, kube-controller-manager) as the cluster, listening on a
// root namespace veth the edge reaches; the agent uses the edgelb-edge
// ServiceAccount's token. Everything it makes is removed by close(), also
// after a failure.
import type { ExecutionContext } from 'ava';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readFileSync, chmodSync, mkdirSync, openSync, closeSync, writeSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cleanup, createNetns, uniqueId, vethPair, addAddress, nsRun, gatewaysOf, kernelRoutes, sleep } from '../lib/netns.js';
import { FrrRouter } from '../../src/lab/frr.js';
import { TestCluster, type TestClusterOptions } from '../lib/kube.js';
import { EDGE_SERVICE_ACCOUNT } from '../../src/lab/kube/rbac.js';
import { testBpffs } from '../lib/test-bpffs.js';
import { killNsProcesses } from '../lib/gobgpd.js';
import { Agent } from '../../src/agent/agent.js';
import { BgpAgentPart } from '../../src/agent/bgp-part.js';
import { KubernetesAgentPart } from '../../src/agent/k8s-part.js';
import { GobgpdProcess } from '../../src/bgp/gobgpd-process.js';
import { loadConfigFile } from '../../src/config/load.js';
import type { EdgelbConfig } from '../../src/config/types.js';
import { createLogger } from '../../src/log/logger.js';
import { nsWrap } from '../../src/lab/netns.js';

const exec = promisify(execFile);

/** Polls until fn returns something truthy; throws naming what never happened. */
export async function until<T>(fn: () => Promise<T | null | false> | T | null | false, timeoutMs: number, what: string, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

const OCTETS = '/run/edgelb-test-octets';

/**
 * An octet for this lab's 10.O.10.0/24 and 10.O.11.0/30, held for the life
 * of the process. The /30 lives in the root namespace (the API server's side),
 * which every test file shares: two labs on one octet, or one on a subnet
 * the host already has, would route one lab's API traffic into the other.
 */
function reserveOctet(seed: number): number {
  mkdirSync(OCTETS, { recursive: true });
  const used = new Set(Object.values(networkInterfaces()).flat().map((a) => a?.address ?? ''));
  for (let i = 0; i < 200; i++) {
    const octet = 16 + ((seed + i) % 200);
    if ([...used].some((a) => a.startsWith(`10.${octet}.`))) continue;
    const file = join(OCTETS, String(octet));
    let fd: number;
    try {
      fd = openSync(file, 'wx');
    } catch {
      let owner: number;
      try {
        owner = Number(readFileSync(file, 'utf8').trim());
      } catch {
        continue; // released meanwhile: try the next one
      }
      // An empty file is a reservation being written right now.
      if (!(owner > 0) || pidAlive(owner)) continue;
      rmSync(file, { force: true });
      try {
        fd = openSync(file, 'wx');
      } catch {
        continue; // another process took it meanwhile
      }
    }
    writeSync(fd, String(process.pid));
    closeSync(fd);
    process.once('exit', () => rmSync(file, { force: true }));
    return octet;
  }
  throw new Error(`no free 10.X.0.0/16 octet for an agent lab (${OCTETS} holds 200 live reservations?)`);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface AgentLabOptions {
  /** Short tag in namespace names (≤ 3 characters). */
  tag: string;
  /** The agent's config for this lab (paths and addresses from the lab). */
  config: (lab: AgentLab) => string;
  /** Control plane options (e.g. controllerManager: false when no Pods are involved). */
  cluster?: Pick<TestClusterOptions, 'controllerManager'>;
}

export class AgentLab {
  readonly id = uniqueId();
  readonly dir = mkdtempSync(join(tmpdir(), `edgelb-agent-${this.id}-`));
  readonly cleanup = new Cleanup();
  readonly R: string;
  readonly E: string;
  readonly octet = reserveOctet(parseInt(this.id, 16));
  /** router ↔ edge */
  readonly NET = `10.${this.octet}.10`;
  /** root ns (API server) ↔ edge */
  readonly K8S = `10.${this.octet}.11`;
  readonly PIN: string;
  readonly controlSock: string;
  readonly configFile: string;
  api!: TestCluster;
  router!: FrrRouter;
  agent: ChildProcess | null = null;
  /** Everything every agent of this lab wrote to stdout/stderr. */
  log = '';

  constructor(private readonly o: AgentLabOptions) {
    chmodSync(this.dir, 0o755); // FRR's daemons drop to user frr
    this.R = `elb${o.tag}r-${this.id}`;
    this.E = `elb${o.tag}e-${this.id}`;
    this.PIN = `${testBpffs()}/edgelb-test-${o.tag}-${this.id}`;
    this.controlSock = join(this.dir, 'control.sock');
    this.configFile = join(this.dir, 'edgelb.yaml');
  }

  async open(): Promise<void> {
    const { cleanup, R, E, NET, K8S } = this;
    cleanup.add('tmp dir', () => rmSync(this.dir, { recursive: true, force: true }));
    cleanup.add('bpffs pins', () => rmSync(this.PIN, { recursive: true, force: true }));
    await createNetns(R, cleanup);
    await createNetns(E, cleanup);
    // The agent's gobgpd outlives the agent by design (handovers adopt it); whatever is still in
    // the edge namespace at the end is this lab's and goes with it (it leaked one gobgpd per run).
    cleanup.add('processes left in the edge namespace', () => killNsProcesses(E));
    await vethPair(R, 'r0', E, 'up0');
    await addAddress(R, 'r0', `${NET}.1/24`);
    await addAddress(E, 'up0', `${NET}.2/24`);
    const rootIf = `elbk${this.id}`;
    await exec('ip', ['link', 'add', rootIf, 'type', 'veth', 'peer', 'name', 'k8s0', 'netns', E]);
    cleanup.add('root veth', () => exec('ip', ['link', 'del', rootIf]).catch(() => undefined));
    await exec('ip', ['addr', 'add', `${K8S}.1/30`, 'dev', rootIf]);
    await exec('ip', ['link', 'set', rootIf, 'up']);
    await addAddress(E, 'k8s0', `${K8S}.2/30`);
    await nsRun(E, ['ip', 'link', 'set', 'k8s0', 'up']);
    this.api = await TestCluster.start({ tag: `agent-${this.o.tag}`, host: `${K8S}.1`, ...this.o.cluster });
    cleanup.add('control plane', () => this.api.close());
    writeFileSync(join(this.dir, 'kubeconfig'), readFileSync(await this.api.kubeconfigFor(EDGE_SERVICE_ACCOUNT)));
    this.router = new FrrRouter(R, join(this.dir, 'frr'), {
      hostname: 'r', asn: 64500, routerId: `${NET}.1`,
      neighbors: [{ address: `${NET}.2`, asn: 64512, holdTime: 9, keepalive: 3 }],
    });
    await this.router.start();
    cleanup.add('frr', () => this.router.stop());
    this.writeConfig(this.o.config(this));
    cleanup.add('agent', () => this.stopAgent('SIGTERM'));
  }

  writeConfig(text: string): void {
    writeFileSync(this.configFile, text);
  }

  async close(): Promise<void> {
    // EDGELB_AGENT_LOG_DIR=DIR keeps every agent's log of this lab (reading timings of a passing run).
    const keep = process.env.EDGELB_AGENT_LOG_DIR;
    if (keep) writeFileSync(join(keep, `agent-${this.o.tag}-${this.id}.log`), this.log);
    const errors = await this.cleanup.run();
    if (errors.length > 0) console.error(errors.map((e) => e.message).join('\n'));
  }

  /** Starts `edgelb run` in the edge namespace; resolves with its READY line. */
  async startAgent(): Promise<string> {
    const child = spawn('ip', ['netns', 'exec', this.E, 'bin/edgelb', 'run', '--config', this.configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.agent = child;
    let out = '';
    const collect = (d: Buffer) => {
      out += d.toString();
      this.log += d.toString();
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    return until(() => {
      if (child.exitCode !== null) throw new Error(`agent exited ${child.exitCode}: ${out.slice(-2000)}`);
      return /^EDGELB READY .*$/m.exec(out)?.[0] ?? null;
    }, 30_000, 'the READY line');
  }

  /** Signals the agent (only the one this lab started) and waits for it to exit; its exit code. */
  async stopAgent(signal: 'SIGTERM' | 'SIGQUIT'): Promise<number | null> {
    const child = this.agent;
    this.agent = null;
    if (!child || child.exitCode !== null) return child?.exitCode ?? null;
    const done = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill(signal);
    const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const code = await done;
    clearTimeout(t);
    return code;
  }

  async cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    try {
      const r = await exec('ip', ['netns', 'exec', this.E, 'bin/edgelb', ...args, '--socket', this.controlSock], { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
      return { code: 0, out: r.stdout, err: r.stderr };
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string };
      return { code: x.code, out: x.stdout, err: x.stderr };
    }
  }

  async routerGateways(vip: string): Promise<string[]> {
    return gatewaysOf(await kernelRoutes(this.R), vip);
  }

  /** Pids of processes named `comm` in network namespace `ns`. */
  async processesIn(ns: string, comm: string): Promise<number[]> {
    const { stdout } = await exec('ip', ['netns', 'pids', ns]);
    const out: number[] = [];
    for (const pid of stdout.split(/\s+/).filter(Boolean).map(Number)) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm) out.push(pid);
      } catch {
        /* exited meanwhile */
      }
    }
    return out.sort((a, b) => a - b);
  }
}

/** An agent of real BGP and Kubernetes parts (no datapath) beside a real gobgpd that tests stop and start again. */
export interface AgentBesideGobgpd {
  dir: string;
  /** The config file (tests may rewrite it before a reload). */
  file: string;
  config: EdgelbConfig;
  agent: Agent;
  bgp: BgpAgentPart;
  kubernetes: KubernetesAgentPart;
  /** Runs at the end of the test, last added first (the agent's parts are the test's to add). */
  cleanup: Cleanup;
  /** gobgpd away (systemd restarting it, a hung moment): stops it and waits for it to exit. */
  stopGobgpd(): Promise<void>;
  /** A fresh gobgpd on the same socket (empty, as after a restart). */
  startGobgpd(): Promise<void>;
}

/**
 * For tests of the agent's lifecycle while gobgpd comes and goes: gobgpd in
 * a namespace of its own (it listens on port 179, as the root namespace's
 * may already), started, and an agent built from `configText(dir)` with the
 * BGP and Kubernetes parts, not started. The directory, the namespace and
 * gobgpd are removed when the test ends, also after a failure.
 */
export async function agentBesideGobgpd(t: ExecutionContext, tag: string, configText: (dir: string) => string): Promise<AgentBesideGobgpd> {
  const cleanup = new Cleanup();
  const dir = mkdtempSync(join(tmpdir(), `edgelb-${tag}-`));
  cleanup.add('dir', () => rmSync(dir, { recursive: true, force: true }));
  t.teardown(async () => {
    const errors = await cleanup.run();
    if (errors.length > 0) throw errors[0];
  });
  const ns = await createNetns(`elb${tag.slice(0, 4)}${uniqueId()}`, cleanup);
  const file = join(dir, 'edgelb.yaml');
  writeFileSync(file, configText(dir));
  const config = loadConfigFile(file);
  const log = createLogger({ level: 'silent' });
  const gobgpd = (): GobgpdProcess => new GobgpdProcess({ binary: 'gobgpd', socket: config.bgp.gobgp.socket, wrap: nsWrap(ns), logFile: join(dir, 'gobgpd.log') });
  let g: GobgpdProcess | null = gobgpd();
  await g.start();
  cleanup.add('gobgpd', () => g?.stop());
  const bgp = new BgpAgentPart(config, log);
  const kubernetes = new KubernetesAgentPart(config, log, { upsert: () => [], remove: () => undefined, applyVips: () => undefined });
  return {
    dir, file, config, bgp, kubernetes, cleanup,
    agent: new Agent(config, file, log, { bgp, kubernetes }),
    stopGobgpd: async () => {
      const running = g;
      g = null;
      await running?.stop();
    },
    startGobgpd: async () => {
      if (g) throw new Error('gobgpd is running already');
      g = gobgpd();
      await g.start();
    },
  };
}
