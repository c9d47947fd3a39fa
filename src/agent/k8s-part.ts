// Adapts the Kubernetes controller to the agent: it is the source of the
// desired state that the datapath and BGP parts consume.
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import type { EdgelbConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';
import type { KubernetesController, DesiredStateSink } from '../k8s/controller.js';
import type { KubernetesPart } from './agent.js';
import type { AgentStatus, ComponentHealth } from './control-types.js';

const RETRY_MS = 5000;
/** How often this edge's interface addresses are read again (DHCP, an address added by hand). */
const OWN_ADDRESSES_MS = 30_000;

/**
 * This edge's own addresses: node.address, node.address6 and every address
 * of its interfaces but loopback and link-local (those are refused as
 * backends anyway). No pod lives at any of them: an endpoint naming one
 * would send clients' packets back into the edge.
 */
export function edgeOwnAddresses(config: EdgelbConfig, interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): string[] {
  const out = [config.node.address, config.node.address6].filter((a) => a !== '');
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) if (!a.internal && !(a.family === 'IPv6' && /^fe[89ab]/i.test(a.address))) out.push(a.address.split('%')[0]!);
  }
  return out;
}

export class KubernetesAgentPart implements KubernetesPart {
  readonly name = 'kubernetes';
  controller: KubernetesController | null = null;
  private lastError = '';
  private retry: NodeJS.Timeout | null = null;
  private ownTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private advertising = false;
  private readonly log: Logger;

  constructor(
    private config: EdgelbConfig,
    log: Logger,
    private readonly sink: DesiredStateSink,
  ) {
    this.log = log.child({ component: 'kubernetes' });
  }

  async start(): Promise<void> {
    // An unreachable API server or an unusable kubeconfig must not keep the
    // edge from forwarding what its pinned maps and gobgpd already hold:
    // report it, keep retrying. The controller loads after the agent is up,
    // on a later turn of the event loop, not inside start().
    setImmediate(() => void this.attempt());
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    const { KubernetesController } = await import('../k8s/controller.js');
    if (this.stopped) return;
    try {
      this.controller = new KubernetesController({ config: this.config, nodeName: this.config.node.name, logger: this.log, sink: this.sink, advertising: this.advertising, ownAddresses: edgeOwnAddresses(this.config) });
      this.lastError = '';
      this.ownTimer = setInterval(() => this.controller?.setOwnAddresses(edgeOwnAddresses(this.config)), OWN_ADDRESSES_MS);
      this.ownTimer.unref();
      void this.controller.start().catch((e: unknown) => {
        this.lastError = (e as Error).message;
      });
    } catch (e) {
      this.controller = null;
      const where = this.config.kubernetes.kubeconfig || '$KUBECONFIG / in-cluster';
      const msg = (e as Error).message;
      // The kubeconfig reader's errors name the file (and the entry) already.
      this.lastError = msg.startsWith('kubeconfig') || msg.startsWith('in-cluster') ? msg : `kubeconfig ${where}: ${msg}`;
      this.log.error({ err: e }, `cannot use ${where}; retrying every ${RETRY_MS / 1000}s`);
      this.retry = setTimeout(() => void this.attempt(), RETRY_MS);
      this.retry.unref();
    }
  }

  /**
   * A reloaded config: pools, datapath mode/dispatch and the port cap apply at
   * once (every Service is recomputed, rejected frontends offered again).
   * The kubeconfig, the Leases and node.name are read at start: the agent
   * refuses a reload that changes them (restart-only.ts).
   */
  async reload(config: EdgelbConfig): Promise<void> {
    this.config = config;
    this.controller?.reconfigure(config);
    this.controller?.setOwnAddresses(edgeOwnAddresses(config));
  }

  /** Whether this edge advertises (an established BGP session, not drained); told to the other edges. */
  setAdvertising(v: boolean): void {
    this.advertising = v;
    this.controller?.setAdvertising(v);
  }

  async stop(mode: 'handover' | 'shutdown'): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.ownTimer) clearInterval(this.ownTimer);
    // A handover keeps the Lease so that the next agent (same identity)
    // resumes allocation without waiting for another edge to take over.
    await this.controller?.stop({ releaseLease: mode === 'shutdown' });
  }

  health(): ComponentHealth {
    if (!this.controller) return { ok: false, detail: this.lastError || 'not started' };
    const s = this.controller.status();
    if (!s.connected) {
      const why = s.lastError ? `: ${s.lastError}` : this.lastError ? `: ${this.lastError}` : ' (no answer yet)';
      return { ok: false, detail: `API server unreachable${why} (keeping the last known state; ${s.watchRestarts} watch restarts)` };
    }
    if (!s.synced) return { ok: false, detail: 'initial list not complete' };
    if (s.duplicateName) return { ok: false, detail: `another machine (instance ${s.duplicateName}) also presents the edge name ${this.config.node.name}: give each edge its own node.name` };
    return { ok: true, detail: `synced, ${s.services} services, ${s.frontends} frontends, ${s.vips} VIPs${s.leader ? ', IPAM leader' : ''}` };
  }

  view(): AgentStatus['kubernetes'] {
    if (!this.controller) return { connected: false, leader: false, watchRestarts: 0, services: 0, endpoints: 0, rejected: {}, duplicateName: null };
    const s = this.controller.status();
    return { connected: s.connected, leader: s.leader, watchRestarts: s.watchRestarts, services: s.services, endpoints: s.endpoints, rejected: s.rejected, duplicateName: s.duplicateName };
  }

  watchRestarts(): { resource: string; restarts: number }[] {
    const informers = this.controller?.status().informers ?? {};
    return Object.entries(informers).map(([resource, s]) => ({ resource, restarts: Math.max(0, s.watchStarts - 1) }));
  }

  poolUsage(): { pool: string; used: number; size: number }[] {
    const used = new Map<string, number>();
    for (const p of this.controller?.status().pools ?? []) used.set(p.pool, p.used);
    return this.config.pools.map((p) => ({ pool: p.name, used: used.get(p.name) ?? 0, size: poolSize(p.cidrs) }));
  }
}

function poolSize(cidrs: string[]): number {
  let n = 0;
  for (const c of cidrs) {
    const [addr = '', len = '0'] = c.split('/');
    const bits = (addr.includes(':') ? 128 : 32) - Number(len);
    n += bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** bits;
  }
  return Math.min(n, Number.MAX_SAFE_INTEGER);
}
