// A running lab's record, /run/edgelb-lab/<prefix>.json, written after every
// step of `up` so that `down` can remove even a half-built lab and `status`
// can describe it from another process.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LabPlan } from './topology.js';
import type { LabProcess } from './procs.js';
import type { ControlPlaneState } from './kube/control-plane.js';

export const STATE_DIR = process.env.EDGELB_LAB_STATE_DIR ?? '/run/edgelb-lab';

/** An edge run as the appliance image under QEMU (npm run lab -- up --appliance). */
export interface ApplianceRecord {
  edge: string;
  ns: string;
  image: string;
  /** The VM's serial console (the READY line, the boot log). */
  serialLog: string;
  /** The EDGELB-CFG stick image. */
  stick: string;
  macs: { uplink: string; mgmt: string };
  taps: { uplink: string; mgmt: string };
  pid: number | null;
  state: 'booting' | 'ready' | 'failed' | 'stopped';
  /** Seconds from QEMU's start to READY. */
  readySeconds: number | null;
  detail: string;
}

export interface AgentRecord {
  edge: string;
  config: string;
  socket: string;
  log: string;
  /** 'ready' once EDGELB READY was printed; otherwise why not. */
  state: 'starting' | 'ready' | 'failed' | 'stopped';
  detail: string;
}

export interface NodeDatapathRecord {
  node: string;
  pinDir: string;
  attached: boolean;
  detail: string;
}

export interface LabState {
  prefix: string;
  createdAt: string;
  dir: string;
  plan: LabPlan;
  options: LabOptions;
  /** Namespaces created so far (down deletes exactly these). */
  namespaces: string[];
  processes: LabProcess[];
  bpffsDir: string;
  frrDir: string;
  /** The admin's kubeconfig (system:masters client certificate): what `lab kubectl` uses. */
  kubeconfig: string;
  /** etcd, kube-apiserver and kube-controller-manager in the mgmt namespace. */
  controlPlane?: ControlPlaneState;
  agents: AgentRecord[];
  nodes: NodeDatapathRecord[];
  /** 'up' when every step finished; 'partial' while building or after a failed step. */
  phase: 'building' | 'up' | 'partial';
  problems: string[];
  /** The process that built the lab and whether it removes it itself (tests do). */
  owner?: { pid: number; kind: 'cli' | 'test' | 'demo' };
  /** Lab-only settings that hide a known defect elsewhere (each says which and why). */
  workarounds: string[];
  /** options.appliance: the appliance VM that stands in for an edge (src/lab/appliance.ts). */
  appliance?: ApplianceRecord;
}

export interface LabOptions {
  /** Boot the appliance image (images/out/edgelb.raw) under QEMU as edge1 instead of running its agent here. */
  appliance: boolean;
  /** Dispatch default written into the edges' config. */
  dispatch: 'ip-option' | 'ipip' | 'auto';
  mode: 'dsr' | 'snat' | 'hybrid';
  bfd: boolean;
  /** Start the edgelb agents (false: network, router, pods and API server only). */
  agents: boolean;
  /** Seconds an agent has to print EDGELB READY. */
  agentTimeoutSeconds: number;
  /** Put an IPv4-option-dropping hop in front of these nodes (e2e: dispatch auto). */
  optionDropNodes: string[];
  drainSeconds: number;
  /** Nodes whose agent runs from the node agent's OCI image under runc (npm run image:node first). */
  ociNodes: string[];
  /** Recorded as the lab's owner kind: test and demo labs whose process died are removed by the next test run. */
  ownerKind: 'cli' | 'test' | 'demo';
  /**
   * BFD timers on both ends. 150 ms × 5 detects a dead edge in 750 ms and
   * rides out the scheduling stalls of a busy 2-vCPU test machine, where
   * 100 ms × 3 flapped sessions (and withdrew routes) under load.
   */
  bfdTimers: { minRxMs: number; minTxMs: number; multiplier: number };
  /** Seconds between path probes (dispatch: auto). */
  probeIntervalSeconds: number;
  /** datapath.secondChanceSeconds of the edges (e2e: short, so scenarios start with no window open). */
  secondChanceSeconds: number;
  /** Dual-stack: IPv6 addresses beside the IPv4 ones, IPv6 BGP sessions, an IPv6 VIP pool, dual-stack Services and pods. */
  ipv6: boolean;
}

export const DEFAULT_OPTIONS: LabOptions = {
  dispatch: 'ip-option',
  mode: 'dsr',
  bfd: true,
  agents: true,
  agentTimeoutSeconds: 40,
  optionDropNodes: [],
  drainSeconds: 2,
  ownerKind: 'cli',
  ociNodes: [],
  probeIntervalSeconds: 1,
  secondChanceSeconds: 600,
  ipv6: false,
  bfdTimers: { minRxMs: 150, minTxMs: 150, multiplier: 5 },
  appliance: false,
};

export function statePath(prefix: string): string {
  return join(STATE_DIR, `${prefix}.json`);
}

export function saveState(s: LabState): void {
  mkdirSync(STATE_DIR, { recursive: true });
  const p = statePath(s.prefix);
  writeFileSync(`${p}.tmp`, `${JSON.stringify(s, null, 2)}\n`);
  renameSync(`${p}.tmp`, p);
}

export function loadState(prefix: string): LabState {
  let text: string;
  try {
    text = readFileSync(statePath(prefix), 'utf8');
  } catch {
    throw new Error(`no lab ${prefix}: ${statePath(prefix)} does not exist (see: npm run lab -- status)`);
  }
  return JSON.parse(text) as LabState;
}

export function removeState(prefix: string): void {
  rmSync(statePath(prefix), { force: true });
}

/** Prefixes of every recorded lab. */
export function listLabs(): string[] {
  try {
    return readdirSync(STATE_DIR)
      .filter((f) => /^elb-[0-9a-f]{4}-\.json$/.test(f))
      .map((f) => f.slice(0, -5))
      .sort();
  } catch {
    return [];
  }
}
