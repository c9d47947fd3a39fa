// Adapts the edge datapath to the agent: loads (reusing pinned maps),
// attaches to the uplink, passes Kubernetes' changes through (upsert /
// remove by frontendKey — the datapath keeps the only copy of what is
// programmed) and shows what the maps hold.
import type { HeldFrontend } from '../k8s/held-allocations.js';
import { networkInterfaces } from 'node:os';
import type { DatapathConfig, EdgelbConfig } from '../config/types.js';
import { poolHolding, uplinkAddressInPool } from '../config/pool-holding.js';
import type { Logger } from '../log/logger.js';
import { EdgeDatapath, type EdgeCapacity, type EdgeDatapathOptions, type ForwardMode } from '../datapath/edge-datapath.js';
import { requireBpffs } from '../datapath/bpffs.js';
import { attachState } from '../datapath/attach-state.js';
import { PathProber } from '../probe/prober.js';
import type { DesiredService, FrontendRejection } from '../model/types.js';
import type { DatapathPart } from './agent.js';
import type { AgentStatus, ComponentHealth, ServiceView } from './control-types.js';
import type { ServiceCounterRow } from './service-metrics.js';
import { servesIpv6 } from '../config/serves-ipv6.js';

/** node.address, or the uplink's first IPv4 address. */
export function edgeAddress(config: EdgelbConfig): string {
  if (config.node.address) return config.node.address;
  const addrs = networkInterfaces()[config.node.uplink] ?? [];
  const v4 = addrs.find((a) => a.family === 'IPv4');
  if (!v4) throw new Error(`node.uplink ${config.node.uplink} has no IPv4 address; set node.address`);
  return v4.address;
}

/** The uplink's MAC, for the datapath to leave frames to other hosts to the stack (a promiscuous uplink); undefined when unknown. */
export function uplinkMac(uplink: string): string | undefined {
  return (networkInterfaces()[uplink] ?? []).find((a) => a.mac && a.mac !== '00:00:00:00:00:00')?.mac;
}

/** node.address6, else the uplink's first global IPv6 address (not link-local); null when it has none. */
export function edgeAddress6(config: EdgelbConfig): string | null {
  if (config.node.address6) return config.node.address6;
  const v6 = (networkInterfaces()[config.node.uplink] ?? []).find((a) => a.family === 'IPv6' && !a.internal && !/^fe[89ab]/i.test(a.address));
  return v6?.address ?? null;
}

/** The uplink addresses the edge uses (node.address / address6 left empty) that a pool holds; explicit ones are config check's. */
function uplinkClashes(config: EdgelbConfig, address: string | null, address6: string | null): string[] {
  const out: string[] = [];
  for (const [field, a] of [['node.address', config.node.address ? null : address], ['node.address6', config.node.address6 ? null : address6]] as const) {
    const hit = a ? poolHolding(config.pools, a) : null;
    if (a && hit) out.push(uplinkAddressInPool(config.node.uplink, field, a, hit));
  }
  return out;
}

function ipipSource(cidr: string): { network: string; bits: number } {
  const [network = '', len = '32'] = cidr.split('/');
  return { network, bits: 32 - Number(len) };
}

/**
 * The settings of datapath.* the edge program reads from edge_config at
 * every packet: given at open and again at each reload, from this one place
 * (datapath.ipipSourceCidr once reached only the open, and a reload that
 * changed it was reported applied). ipipSource is always present, undefined
 * without a block, so that removing the block goes back to the edge address.
 */
function runtimeKnobs(d: DatapathConfig): Pick<EdgeDatapathOptions, 'mtu' | 'ipipSource'> {
  return { mtu: d.mtu, ipipSource: d.ipipSourceCidr ? ipipSource(d.ipipSourceCidr) : undefined };
}

export class DatapathAgentPart implements DatapathPart {
  readonly name = 'datapath';
  private dp: EdgeDatapath | null = null;
  private attached = false;
  private lastError = '';
  private prober: PathProber | null = null;
  private expiry: NodeJS.Timeout | null = null;

  constructor(
    private config: EdgelbConfig,
    private readonly log: Logger,
    private readonly forward: ForwardMode = { kind: 'fib' },
  ) {}

  /** The uplink may still be waiting for DHCP when the agent starts at boot. */
  private async waitForAddress(timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let logged = false;
    for (;;) {
      try {
        return edgeAddress(this.config);
      } catch (e) {
        if (Date.now() > deadline) throw e;
        if (!logged) this.log.info({ uplink: this.config.node.uplink }, 'waiting for the uplink to get an IPv4 address');
        logged = true;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  /**
   * The edge's IPv6 address (IPv6-in-IPv6 source, ICMPv6 errors). An
   * uplink's IPv6 address comes a moment after its IPv4 one (duplicate
   * address detection, router advertisements): wait a little. Without one,
   * datapath.ipv6: on is an error; auto serves IPv4 only (IPv6 frontends are
   * reported UnsupportedFamily on their Services).
   */
  private async waitForAddress6(timeoutMs = 10_000): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const a = edgeAddress6(this.config);
      if (a) return a;
      if (Date.now() > deadline) {
        const msg = `node.uplink ${this.config.node.uplink} has no global IPv6 address; set node.address6`;
        if (this.config.datapath.ipv6 === 'on') throw new Error(`datapath.ipv6 is on but ${msg}`);
        this.log.warn(`an IPv6 pool is configured but ${msg}: serving IPv4 only`);
        return null;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async start(): Promise<void> {
    const d = this.config.datapath;
    try {
      requireBpffs(d.pinPath);
      const t0 = performance.now();
      const address = await this.waitForAddress();
      const t1 = performance.now();
      const address6 = servesIpv6(this.config) ? await this.waitForAddress6() : null;
      const clash = uplinkClashes(this.config, address, address6);
      if (clash.length > 0) throw new Error(clash.join('; '));
      const hook = d.xdp === 'off' ? 'tc' : 'xdp';
      const mac = this.forward.kind === 'gateway' ? undefined : uplinkMac(this.config.node.uplink);
      this.dp = await EdgeDatapath.openAsync({
        ...runtimeKnobs(d), maglevTableSize: d.maglevTableSize, address, pinPath: d.pinPath, hooks: [hook],
        ...(address6 ? { ipv6: true, address6 } : {}),
        forward: this.forward, logger: this.log.child({ component: 'datapath' }),
        ...(mac ? { uplinkMac: mac } : {}),
        secondChanceSeconds: d.secondChanceSeconds,
      });
      // Services that survived in the pinned maps keep forwarding; the
      // first desired state from Kubernetes then replaces them.
      const t2 = performance.now();
      this.dp.attach(this.config.node.uplink, d.xdp === 'off' ? 'tc' : d.xdp);
      this.attached = true;
      const ms = (a: number, b: number) => Math.round(b - a);
      this.log.info({ addressMs: ms(t0, t1), loadMs: ms(t1, t2), ...this.dp.openTiming, attachMs: ms(t2, performance.now()) }, 'datapath loaded and attached');
      this.startProber();
      // Previous Maglev tables whose window ended give their slots back
      // even when no service changes (docs/second-chance.md).
      // An error here must not become an uncaught exception that ends the agent.
      this.expiry = setInterval(() => {
        try {
          this.dp?.expireSecondChance();
        } catch (e) {
          this.log.warn({ err: e }, 'closing ended second-chance windows failed; retried in 5 s');
        }
      }, 5000);
      this.expiry.unref();
    } catch (e) {
      this.lastError = (e as Error).message;
      this.log.error({ err: e }, 'datapath failed to load or attach');
      throw e;
    }
  }

  /** Paths to nodes serving `dispatch: auto` services are probed; the verdicts steer their dispatch. */
  private startProber(): void {
    const d = this.config.datapath;
    this.prober = new PathProber({
      port: d.probePort, intervalMs: d.probeIntervalSeconds * 1000, fallback: 'ipip', logger: this.log.child({ component: 'probe' }),
      onChange: (nodeIp, dispatch) => this.dp?.setPathDispatch(nodeIp, dispatch),
    });
    this.prober.start();
  }

  private loaded(): EdgeDatapath {
    if (!this.dp) throw new Error(`datapath not loaded${this.lastError ? `: ${this.lastError}` : ''}`);
    return this.dp;
  }

  /** Programs changed frontends; returns those the datapath cannot serve (not programmed, each with its reason). */
  upsert(services: DesiredService[]): FrontendRejection[] {
    const r = this.loaded().upsert(services);
    this.prober?.setTargets(this.loaded().autoNodes());
    this.log.debug({ added: r.added, updated: r.updated, unchanged: r.unchanged, rejected: r.rejected.length }, 'datapath frontends upserted');
    for (const x of r.rejected) this.log.warn({ frontend: x.key, service: x.service, reason: x.reason }, x.message);
    return r.rejected;
  }

  remove(keys: string[]): void {
    const n = this.loaded().remove(keys);
    this.prober?.setTargets(this.loaded().autoNodes());
    this.log.debug({ removed: n }, 'datapath frontends removed');
  }

  /** Frontends the maps hold (after a restart: adopted from the pinned maps). */
  keys(): string[] {
    return this.loaded().keys();
  }

  /** Frontends rebuilt from the pinned maps that no upsert has claimed since (service ''). */
  adoptedFrontends(): HeldFrontend[] {
    if (!this.dp) return [];
    const out: HeldFrontend[] = [];
    for (const f of this.dp.frontends()) {
      if (f.service === '') out.push({ vip: f.vip, port: f.port, protocol: f.protocol, backends: [...f.backends.values()].map((b) => b.b.ip) });
    }
    return out;
  }

  capacity(): EdgeCapacity {
    return this.loaded().capacity();
  }

  async stop(mode: 'handover' | 'shutdown'): Promise<void> {
    this.prober?.stop();
    if (this.expiry) clearInterval(this.expiry);
    this.expiry = null;
    if (!this.dp) return;
    // On a handover the program stays attached and the maps stay pinned:
    // forwarding never stops while the next agent starts.
    if (mode === 'shutdown') this.dp.detach();
    this.dp.close();
    this.dp = null;
    this.attached = false;
  }

  check(config: EdgelbConfig): string[] {
    let address: string | null = null;
    try {
      address = edgeAddress(config);
    } catch {
      /* no IPv4 address yet: nothing to compare */
    }
    return uplinkClashes(config, address, this.dp?.servesIpv6() ? edgeAddress6(config) : null);
  }

  /** The settings read at start (the uplink, datapath.xdp, maglevTableSize…) are the agent's to refuse (restart-only.ts): status shows this.config's. */
  async reload(config: EdgelbConfig): Promise<void> {
    const d = config.datapath;
    const address6 = this.dp?.servesIpv6() ? edgeAddress6(config) : null;
    this.dp?.reconfigure({ ...runtimeKnobs(d), address: edgeAddress(config), ...(address6 ? { address6 } : {}) });
    this.config = config;
  }

  health(): ComponentHealth {
    if (!this.dp) return { ok: false, detail: `not loaded${this.lastError ? `: ${this.lastError}` : ''}` };
    if (!this.attached) return { ok: false, detail: `not attached to ${this.config.node.uplink}` };
    // What the kernel runs, not what we remember attaching (BFD follows this).
    const at = this.dp.attachedAt();
    const real = at ? attachState(at.at, at.progId) : null;
    if (real && !real.attached) return { ok: false, detail: `${this.config.node.uplink}: ${real.detail}` };
    return { ok: true, detail: `attached to ${this.config.node.uplink} (${this.config.datapath.xdp === 'off' ? 'tc' : `XDP ${this.config.datapath.xdp}`}), ${this.dp.capacity().serviceIds.used} frontends` };
  }

  /** What the maps hold, with counters (frontends adopted from pinned maps show service '' until Kubernetes upserts them). */
  services(): ServiceView[] {
    if (!this.dp) return [];
    const counters = new Map(this.dp.counters().services.map((s) => [s.frontend, s]));
    const out: ServiceView[] = [];
    for (const f of this.dp.frontends()) {
      const c = counters.get(f.key);
      const byBackend = new Map((c?.backends ?? []).map((b) => [`${b.ip}:${b.port}`, b]));
      out.push({
        frontend: f.key, service: f.service, mode: f.mode ?? (f.snat ? 'snat' : 'dsr'), dispatch: f.dispatch,
        packets: c?.packets ?? 0, bytes: c?.bytes ?? 0,
        backends: (f.desired?.backends ?? [...f.backends.values()].map((b) => b.b)).map((b) => {
          const bc = byBackend.get(`${b.ip}:${b.port}`);
          return { ip: b.ip, port: b.port, node: b.nodeName, nodeIp: b.nodeIp, state: b.state, weight: b.weight, packets: bc?.packets ?? 0, bytes: bc?.bytes ?? 0 };
        }),
      });
    }
    return out.sort((a, b) => (a.frontend < b.frontend ? -1 : a.frontend > b.frontend ? 1 : 0));
  }

  /** Per frontend and per backend counters, read as they are iterated (metrics). */
  *counterRows(): Generator<ServiceCounterRow> {
    if (this.dp) yield* this.dp.counterRows();
  }

  drops(): { reason: string; packets: number }[] {
    if (!this.dp) return [];
    // edge_stats alone: counters() would read every frontend's and backend's maps as well.
    return Object.entries(this.dp.stats())
      .filter(([k]) => k.startsWith('drop_'))
      .map(([k, v]) => ({ reason: k.slice('drop_'.length), packets: v }));
  }

  view(): AgentStatus['datapath'] {
    const d = this.config.datapath;
    let services = 0;
    let backends = 0;
    for (const f of this.dp?.frontends() ?? []) {
      services++;
      backends += f.backends.size;
    }
    const cap = this.dp?.capacity() ?? null;
    return {
      mode: d.mode, dispatch: d.dispatch,
      xdp: [{ interface: this.config.node.uplink, mode: d.xdp === 'off' ? 'tc' : d.xdp, attached: this.attached }],
      maglevTableSize: d.maglevTableSize, pinned: this.dp ? d.pinPath : null, paths: this.prober?.view() ?? [],
      services, backends,
      capacity: cap && {
        ringSlots: cap.ringSlots, backendIds: cap.backendIds, serviceIds: cap.serviceIds,
        maxPortsPerService: d.maxPortsPerService,
      },
    };
  }
}
