// The lab plays kubelet for its nodes, with each node's own credentials
// (system:node:<name>, so the Node authorizer and NodeRestriction judge it
// like a real kubelet): it registers the Node, keeps its status and renews
// its Lease in kube-node-lease (the node lifecycle controller in
// kube-controller-manager marks a Node NotReady, and its Pods not ready,
// once that stops), and keeps the status of the Pods bound to the node:
// phase, podIP, hostIP and Ready — Ready while the pod's echo process runs.
// A deleted Pod is stopped the kubelet way: keep serving for its preStop
// time, SIGTERM, wait for the exit, then remove the object.
//
// Pod IPs come from the lab's plan (the lab is the CNI); which process is a
// pod's container comes from the lab's state file (process `pod-<name>`).
import type { KubeHttp } from './http.js';

export const PRESTOP_ANNOTATION = 'lab.edgelb.io/pre-stop-seconds';
export const LEASE_SECONDS = 40;
export const RENEW_MS = 10_000;
export const NODE_STATUS_MS = 60_000;

export interface KubeletNode {
  name: string;
  address: string;
  /** Its IPv6 address too (a dual-stack node). */
  address6?: string;
  podCidr: string;
}

export interface PodFacts {
  ip: string;
  /** Its IPv6 address too (a dual-stack pod). */
  ip6?: string;
  /** The container's process runs. */
  running: boolean;
  /** When it started (ISO). */
  startedAt: string;
}

interface PodObject {
  metadata: { name: string; namespace: string; deletionTimestamp?: string; annotations?: Record<string, string>; uid?: string };
  spec: { nodeName?: string; containers: { name: string; image?: string }[] };
  status?: PodStatus;
}

interface PodCondition {
  type: string;
  status: 'True' | 'False';
  lastTransitionTime?: string;
}

export interface PodStatus {
  phase?: string;
  podIP?: string;
  podIPs?: { ip: string }[];
  hostIP?: string;
  hostIPs?: { ip: string }[];
  startTime?: string;
  conditions?: PodCondition[];
  containerStatuses?: unknown[];
}

const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');
const micro = (): string => new Date().toISOString().replace(/Z$/, '000Z');

/** Pure: the status a kubelet reports for a pod, given what runs. Pending when the lab knows no such pod. */
export function podStatusFor(pod: PodObject, node: KubeletNode, facts: PodFacts | undefined, at = now()): PodStatus {
  if (!facts) return { phase: 'Pending', hostIP: node.address, hostIPs: [{ ip: node.address }] };
  // As a real kubelet: the pod is reported Running with its address first,
  // and Ready only at a later sync (its readiness probe passes after the
  // container started), so its endpoint is listed not ready before it is
  // listed ready.
  const reported = pod.status?.phase === 'Running' && pod.status.podIP === facts.ip;
  const ready = facts.running && reported ? 'True' : 'False';
  const prev = new Map((pod.status?.conditions ?? []).map((c) => [c.type, c]));
  const cond = (type: string, status: 'True' | 'False'): PodCondition => ({
    type,
    status,
    lastTransitionTime: prev.get(type)?.status === status ? (prev.get(type)!.lastTransitionTime ?? at) : at,
  });
  return {
    // A stopped process is a container waiting for its restart (restartPolicy
    // Always): the pod stays Running, not ready. Terminal phases are only
    // reported for a pod being deleted (a terminal phase cannot be left).
    phase: 'Running',
    podIP: facts.ip,
    podIPs: [{ ip: facts.ip }, ...(facts.ip6 ? [{ ip: facts.ip6 }] : [])],
    hostIP: node.address,
    hostIPs: [{ ip: node.address }, ...(node.address6 ? [{ ip: node.address6 }] : [])],
    startTime: pod.status?.startTime ?? facts.startedAt,
    conditions: [cond('PodReadyToStartContainers', 'True'), cond('Initialized', 'True'), cond('ContainersReady', ready), cond('Ready', ready), cond('PodScheduled', 'True')],
    containerStatuses: pod.spec.containers.map((c) => ({
      name: c.name,
      image: c.image ?? 'edgelb.local/lab-echo',
      imageID: '',
      ready: facts.running,
      started: facts.running,
      restartCount: 0,
      state: facts.running ? { running: { startedAt: facts.startedAt } } : { terminated: { exitCode: 0, reason: 'Completed', startedAt: facts.startedAt, finishedAt: at } },
    })),
  };
}

/** The parts of a status that, when they differ, call for a write. */
function statusKey(s: PodStatus | undefined): string {
  return JSON.stringify([s?.phase, s?.podIP, s?.hostIP, (s?.conditions ?? []).map((c) => `${c.type}=${c.status}`).sort()]);
}

export interface KubeletHooks {
  /** What runs for the pod `name` (undefined: the lab has no such pod). */
  facts(name: string): PodFacts | undefined;
  /** Stop the pod's process (SIGTERM, wait); resolves when it is gone. */
  stop(name: string): Promise<void>;
  log(line: string): void;
}

/** How often a kubelet renews its Lease and reports its Node (ms). */
export interface KubeletTiming {
  renewMs: number;
  nodeStatusMs: number;
}

/** The calls a kubelet makes (KubeHttp; tests wrap it to inject faults). */
export type KubeletApi = Pick<KubeHttp, 'request' | 'ok'>;

/** One node's kubelet. `tick()` does one round; the caller loops. */
export class PlayedKubelet {
  private lastRenew = 0;
  private lastNodeStatus = 0;
  private registered = false;
  private readonly stopping = new Set<string>();

  constructor(
    readonly node: KubeletNode,
    private readonly api: KubeletApi,
    private readonly hooks: KubeletHooks,
    private readonly timing: KubeletTiming = { renewMs: RENEW_MS, nodeStatusMs: NODE_STATUS_MS },
  ) {}

  /**
   * One round. Its duties are independent, as a real kubelet's loops are: a
   * Node report or Lease renewal that fails must not stop the pods' status
   * from being kept (pods added later would stay Pending). Rejects after
   * the round, naming every duty that failed.
   */
  async tick(): Promise<void> {
    const t = Date.now();
    const failed: string[] = [];
    const duty = async (what: string, f: () => Promise<void>): Promise<void> => {
      try {
        await f();
      } catch (e) {
        failed.push(`${what}: ${(e as Error).message}`);
      }
    };
    if (!this.registered) await duty('register node', () => this.register());
    if (t - this.lastRenew >= this.timing.renewMs) await duty('renew lease', () => this.renewLease());
    if (this.registered && t - this.lastNodeStatus >= this.timing.nodeStatusMs) await duty('report node status', () => this.reportNode());
    await duty('sync pods', () => this.syncPods());
    if (failed.length) throw new Error(failed.join('; '));
  }

  private async register(): Promise<void> {
    const n = this.node;
    const r = await this.api.request('POST', '/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: n.name, labels: { 'kubernetes.io/hostname': n.name, 'kubernetes.io/os': 'linux', 'kubernetes.io/arch': 'amd64' } },
      spec: { podCIDR: n.podCidr, podCIDRs: [n.podCidr] },
    });
    if (r.code !== 201 && r.code !== 409) throw new Error(`register node ${n.name}: HTTP ${r.code} ${JSON.stringify(r.body)}`);
    // Its status follows in the same tick (reportNode).
    this.registered = true;
  }

  private async reportNode(): Promise<void> {
    const n = this.node;
    const at = now();
    const status = {
      addresses: [{ type: 'InternalIP', address: n.address }, ...(n.address6 ? [{ type: 'InternalIP', address: n.address6 }] : []), { type: 'Hostname', address: n.name }],
      conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'the lab plays kubelet', lastHeartbeatTime: at, lastTransitionTime: at }],
      nodeInfo: { kubeletVersion: 'v0.0.0-lab', kernelVersion: '', osImage: 'edgelb lab', containerRuntimeVersion: 'lab://0', kubeProxyVersion: '', operatingSystem: 'linux', architecture: 'amd64', machineID: '', systemUUID: '', bootID: '' },
    };
    // A JSON merge patch replaces the lists whole. A strategic merge patch
    // merges addresses by type, and a dual-stack node has two InternalIPs:
    // the API server accepts the first report and rejects every later one
    // (422 "Duplicate value").
    await this.api.ok('PATCH', `/api/v1/nodes/${n.name}/status`, { status }, 'application/merge-patch+json');
    this.lastNodeStatus = Date.now();
  }

  private async renewLease(): Promise<void> {
    const n = this.node;
    const path = `/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${n.name}`;
    const spec = { holderIdentity: n.name, leaseDurationSeconds: LEASE_SECONDS, renewTime: micro() };
    const got = await this.api.request('GET', path);
    if (got.code === 404) {
      await this.api.ok('POST', '/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases', { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: n.name, namespace: 'kube-node-lease' }, spec });
    } else if (got.code === 200) {
      const lease = got.body as { metadata: Record<string, unknown>; spec: Record<string, unknown> };
      // PUT with the resourceVersion read: a conflict (409) is retried next round.
      const r = await this.api.request('PUT', path, { ...lease, spec: { ...lease.spec, ...spec } });
      if (r.code !== 200 && r.code !== 409) throw new Error(`renew lease ${n.name}: HTTP ${r.code}`);
    } else {
      throw new Error(`read lease ${n.name}: HTTP ${got.code}`);
    }
    this.lastRenew = Date.now();
  }

  private async syncPods(): Promise<void> {
    const list = await this.api.ok<{ items: PodObject[] }>('GET', `/api/v1/pods?fieldSelector=${encodeURIComponent(`spec.nodeName=${this.node.name}`)}`);
    for (const pod of list.items) {
      const md = pod.metadata;
      const facts = this.hooks.facts(md.name);
      if (md.deletionTimestamp) {
        this.terminate(pod, facts);
        continue;
      }
      const want = podStatusFor(pod, this.node, facts);
      if (statusKey(want) === statusKey(pod.status)) continue;
      const r = await this.api.request('PATCH', `/api/v1/namespaces/${md.namespace}/pods/${md.name}/status`, { status: want }, 'application/merge-patch+json');
      if (r.code !== 200) this.hooks.log(`pod ${md.namespace}/${md.name} status: HTTP ${r.code} ${(r.body as { message?: string })?.message ?? ''}`);
    }
  }

  /** preStop wait, SIGTERM, then the object goes (once per pod; runs in the background). */
  private terminate(pod: PodObject, facts: PodFacts | undefined): void {
    const md = pod.metadata;
    const key = `${md.namespace}/${md.name}/${md.uid ?? ''}`;
    if (this.stopping.has(key)) return;
    this.stopping.add(key);
    const preStop = Number(md.annotations?.[PRESTOP_ANNOTATION] ?? '0');
    void (async () => {
      await new Promise((r) => setTimeout(r, Math.max(0, Math.min(preStop, 60)) * 1000));
      if (facts?.running) await this.hooks.stop(md.name);
      const done = { ...podStatusFor(pod, this.node, facts ? { ...facts, running: false } : undefined), phase: 'Succeeded' };
      await this.api.request('PATCH', `/api/v1/namespaces/${md.namespace}/pods/${md.name}/status`, { status: done }, 'application/merge-patch+json');
      const r = await this.api.request('DELETE', `/api/v1/namespaces/${md.namespace}/pods/${md.name}`, { apiVersion: 'v1', kind: 'DeleteOptions', gracePeriodSeconds: 0, preconditions: md.uid ? { uid: md.uid } : undefined });
      this.hooks.log(`pod ${md.namespace}/${md.name} stopped after ${preStop} s preStop; delete: HTTP ${r.code}`);
    })().catch((e: unknown) => this.hooks.log(`pod ${md.namespace}/${md.name} termination failed: ${String(e)}`));
  }
}
