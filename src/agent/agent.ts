// Wires the parts of an edge together: config → (Kubernetes → desired
// state) → BGP announcements + datapath tables, plus the operator surface
// (control socket, metrics, health). The parts live in their own modules;
// this file only connects them and decides the order of start and stop.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { EdgelbConfig } from '../config/types.js';
import { readConfigFile } from '../config/load.js';
import type { Logger } from '../log/logger.js';
import { edgelbVersion } from '../version.js';
import { ControlServer, HttpError } from './control-server.js';
import { Metrics, NO_BGP_COUNTERS } from './metrics.js';
import { changedAtStartOnly, restartNeeded } from './restart-only.js';
import type { ApplyTimer } from './apply-timer.js';
import type { AgentStatus, ComponentHealth, PeerView, RouteView, ServiceView } from './control-types.js';
import type { ServiceCounterRow } from './service-metrics.js';

/** A part of the agent with a lifecycle (BGP, datapath, Kubernetes). */
export interface AgentPart {
  readonly name: string;
  start(): Promise<void>;
  /** `handover`: leave routes and pinned maps in place for the next agent. */
  stop(mode: 'handover' | 'shutdown'): Promise<void>;
  health(): ComponentHealth;
  reload?(config: EdgelbConfig): Promise<void>;
  /** Problems `config` has on this machine (beyond the file's own checks), one sentence each; a reload with any applies nothing. */
  check?(config: EdgelbConfig): string[];
}

/** VIP paths sent to gobgpd (announced, withdrawn), full re-syncs after gobgpd lost its state, reads of its whole RIB and of a peer's whole adj-out. */
export interface BgpCounters {
  announces: number;
  withdraws: number;
  resyncs: number;
  ribFullReads: number;
  adjOutFullReads: number;
}

export interface BgpPart extends AgentPart {
  peers(): PeerView[];
  routes(): Promise<RouteView[]>;
  /** `persist`: an operator's drain survives agent restarts; the drain before exiting does not. */
  drain(opts?: { persist?: boolean }): Promise<void>;
  undrain(): Promise<void>;
  drainState(): 'active' | 'draining' | 'drained';
  vipsAnnounced(): number;
  gobgpdState(): string;
  counters?(): BgpCounters;
  /**
   * From now on the datapath's health steers BFD. Called once the datapath
   * part has started: while a restarted agent is still loading, the previous
   * agent's program forwards, and BFD must not drop the edge meanwhile.
   */
  coupleDatapathHealth?(): void;
}

export interface DatapathPart extends AgentPart {
  services(): ServiceView[];
  /** Per frontend and per backend counters, read as they are iterated (a scrape pulls them a chunk at a time). */
  counterRows(): Iterable<ServiceCounterRow>;
  drops(): { reason: string; packets: number }[];
  view(): AgentStatus['datapath'];
}

export interface KubernetesPart extends AgentPart {
  view(): AgentStatus['kubernetes'];
  poolUsage(): { pool: string; used: number; size: number }[];
  /** Watch restarts per informer (resource), since the agent started. */
  watchRestarts?(): { resource: string; restarts: number }[];
}

export interface AgentParts {
  bgp?: BgpPart;
  datapath?: DatapathPart;
  kubernetes?: KubernetesPart;
  /** Times the changes Kubernetes hands to the datapath and BGP (edgelb_reconcile_seconds). */
  applyTimer?: ApplyTimer;
}

export function configHash(file: string): string {
  return bytesHash(readFileSync(file));
}

const bytesHash = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex').slice(0, 12);

export class Agent {
  private readonly started = Date.now();
  private reloading: Promise<unknown> = Promise.resolve();
  /** The last reload's outcome, and when the configuration in force was applied (start or reload), for /metrics. */
  private lastReload = { ok: true, at: this.started };
  private hash: string;
  private control: ControlServer;
  readonly metrics: Metrics;

  constructor(
    private config: EdgelbConfig,
    private readonly configFile: string,
    private readonly log: Logger,
    private readonly parts: AgentParts = {},
  ) {
    this.hash = configHash(configFile);
    this.metrics = new Metrics({
      serviceCounters: () => this.parts.datapath?.counterRows() ?? [],
      dropCounters: () => this.parts.datapath?.drops() ?? [],
      bgpPeers: () => (this.parts.bgp?.peers() ?? []).map((p) => ({ peer: p.address, up: p.state === 'established' })),
      bgpCounters: () => this.parts.bgp?.counters?.() ?? NO_BGP_COUNTERS,
      bfdSessions: () => (this.parts.bgp?.peers() ?? []).filter((p) => p.bfd !== null).map((p) => ({ peer: p.address, up: p.bfd === 'up' })),
      poolUsage: () => this.parts.kubernetes?.poolUsage() ?? [],
      rejectedFrontends: () => this.parts.kubernetes?.view().rejected ?? {},
      duplicateName: () => (this.parts.kubernetes?.view().duplicateName ?? null) !== null,
      watchRestarts: () => this.parts.kubernetes?.watchRestarts?.() ?? [],
      ready: () => this.readiness(),
      config: () => ({ hash: this.hash, lastReloadOk: this.lastReload.ok, appliedAtMs: this.lastReload.at }),
    });
    parts.applyTimer?.listen((target, seconds) => this.metrics.reconcileSeconds.observe({ target }, seconds));
    this.control = new ControlServer(config.control.socket, this.routes(), log);
  }

  get node(): string {
    return this.config.node.name;
  }

  /** The configuration in force (the last one reloaded). */
  get currentConfig(): EdgelbConfig {
    return this.config;
  }

  get configDigest(): string {
    return this.hash;
  }

  private partList(): AgentPart[] {
    // Start order: datapath first (forwarding before announcing), then
    // BGP, then Kubernetes (which feeds both).
    const all: (AgentPart | undefined)[] = [this.parts.datapath, this.parts.bgp, this.parts.kubernetes];
    return all.filter((p): p is AgentPart => p !== undefined);
  }

  async start(): Promise<void> {
    // Start-up times go to the log: on a slow CPU they say where a slow
    // boot went (processMs: since Node started, module loading included).
    this.log.info({ processMs: Math.round(process.uptime() * 1000) }, 'starting');
    const { datapath, bgp, kubernetes } = this.parts;
    // The datapath (map creation and verification in the kernel, on a worker
    // thread) and BGP (loading gRPC, peers, policy) start side by side: BGP
    // announces nothing until Kubernetes, which starts after both, supplies
    // VIPs, and BFD follows datapath health only from here on.
    const first = await Promise.allSettled([datapath, bgp].filter((p) => p !== undefined).map((p) => this.startPart(p)));
    const failed = first.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    bgp?.coupleDatapathHealth?.();
    await this.control.start();
    if (this.config.metrics.listen) await this.metrics.listen(this.config.metrics.listen, this.log);
    // Last: its client library (the agent's largest) loads in the background
    // and the API server is watched from then on; the edge already forwards
    // and announces what it has.
    if (kubernetes) await this.startPart(kubernetes);
  }

  private async startPart(part: AgentPart): Promise<void> {
    const t0 = performance.now();
    await part.start();
    this.log.info({ part: part.name, ms: Math.round(performance.now() - t0) }, 'started');
  }

  async stop(mode: 'handover' | 'shutdown'): Promise<void> {
    this.log.info({ mode }, mode === 'shutdown' ? 'stopping: draining VIPs first' : 'stopping for a handover: routes and maps stay');
    await this.control.stop();
    await this.metrics.close();
    if (mode === 'shutdown' && this.parts.bgp && this.parts.bgp.drainState() === 'active') {
      // gobgpd away or hung: nothing can be withdrawn (the routers drop its
      // routes with the session), but the parts must still stop — a failed
      // drain ended stop() here, before the Lease was released, pending
      // status writes flushed and the presence Lease deleted.
      try {
        await this.parts.bgp.drain();
      } catch (e) {
        this.log.error({ err: e }, 'drain failed; stopping anyway');
      }
    }
    for (const part of this.partList().reverse()) {
      try {
        await part.stop(mode);
      } catch (e) {
        this.log.error({ err: e, part: part.name }, 'stop failed');
      }
    }
  }

  /**
   * Re-reads the config file; an invalid file changes nothing, nor does one
   * that changes a setting read only at start (restart-only.ts). One reload at
   * a time: a SIGHUP or `edgelb reload` that comes while one is applying
   * (a part awaiting gobgpd) waits for it — run side by side, the older
   * file's remaining steps landed after the newer one's, leaving parts and
   * the agent on different files.
   */
  reload(): Promise<string> {
    const run = this.reloading.then(() => this.reloadNow()).then(
      (msg) => {
        this.lastReload = { ok: true, at: Date.now() };
        return msg;
      },
      (e: unknown) => {
        this.lastReload = { ...this.lastReload, ok: false };
        throw e;
      },
    );
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async reloadNow(): Promise<string> {
    // The hash reported is of these bytes: the file may be saved again while the parts apply them.
    const { config: next, bytes } = readConfigFile(this.configFile); // throws ConfigError with every problem
    const atStart = changedAtStartOnly(this.config, next);
    const problems = [...(atStart.length > 0 ? [restartNeeded(atStart)] : []), ...this.partList().flatMap((part) => part.check?.(next) ?? [])];
    if (problems.length > 0) throw new Error(`${this.configFile}: ${problems.join('; ')}; nothing was applied`);
    await this.applyOrPutBack(next);
    this.config = next;
    this.hash = bytesHash(bytes);
    this.log.info({ config: this.hash }, 'configuration reloaded');
    return `reloaded ${this.configFile} (sha256 ${this.hash})`;
  }

  /**
   * Hands `next` to every part. A part that fails to take it (a map write,
   * a bug: the checks above passed) must not leave the parts on two files:
   * those that took it, and the failing one (which may have taken part of
   * it), are given the configuration in force again, and the reload fails
   * naming the part. Before, the parts already done kept the new file while
   * the agent reported — and the rest ran — the old one.
   */
  private async applyOrPutBack(next: EdgelbConfig): Promise<void> {
    const touched: AgentPart[] = [];
    for (const part of this.partList()) {
      touched.push(part);
      try {
        await part.reload?.(next);
      } catch (e) {
        const notBack: string[] = [];
        for (const p of touched.reverse()) {
          try {
            await p.reload?.(this.config);
          } catch (back) {
            notBack.push(`${p.name} (${(back as Error).message})`);
          }
        }
        const after = notBack.length === 0 ? 'every part is back on the configuration in force' : `putting the configuration in force back failed too for ${notBack.join(', ')}: restart the agent`;
        this.log.error({ err: e, part: part.name, notBack }, 'a part could not apply the reloaded configuration');
        throw new Error(`${this.configFile}: the ${part.name} part could not apply it (${(e as Error).message}); ${after}`, { cause: e });
      }
    }
  }

  readiness(): { ready: boolean; problems: string[] } {
    const problems: string[] = [];
    const expected = ['datapath', 'bgp', 'kubernetes'] as const;
    for (const name of expected) {
      const part = this.parts[name];
      if (!part) problems.push(`${name}: not running in this agent`);
      else {
        const h = part.health();
        if (!h.ok) problems.push(`${name}: ${h.detail}`);
      }
    }
    return { ready: problems.length === 0, problems };
  }

  status(): AgentStatus {
    const r = this.readiness();
    const components: Record<string, ComponentHealth> = {};
    for (const part of this.partList()) components[part.name] = part.health();
    const dp = this.parts.datapath?.view() ?? {
      mode: this.config.datapath.mode, dispatch: this.config.datapath.dispatch, xdp: [], maglevTableSize: this.config.datapath.maglevTableSize,
      pinned: null, paths: [], services: 0, backends: 0, capacity: null,
    };
    return {
      node: this.config.node.name,
      version: edgelbVersion(),
      configFile: this.configFile,
      configHash: this.hash,
      uptimeSeconds: Math.round((Date.now() - this.started) / 1000),
      ready: r.ready,
      problems: r.problems,
      drain: this.parts.bgp?.drainState() ?? 'active',
      components,
      datapath: dp,
      bgp: { gobgpd: this.parts.bgp?.gobgpdState() ?? 'not managed by this agent', peers: this.parts.bgp?.peers() ?? [], vipsAnnounced: this.parts.bgp?.vipsAnnounced() ?? 0 },
      kubernetes: this.parts.kubernetes?.view() ?? { connected: false, leader: false, watchRestarts: 0, services: 0, endpoints: 0, rejected: {}, duplicateName: null },
    };
  }

  private routes() {
    const needBgp = (): BgpPart => {
      if (!this.parts.bgp) throw new HttpError(409, 'BGP is not running in this agent');
      return this.parts.bgp;
    };
    return {
      'GET /status': () => this.status(),
      'GET /services': () => this.parts.datapath?.services() ?? [],
      'GET /bgp/peers': () => this.parts.bgp?.peers() ?? [],
      'GET /bgp/routes': async () => (this.parts.bgp ? await this.parts.bgp.routes() : []),
      'POST /drain': async () => {
        await needBgp().drain({ persist: true });
        return { message: `drained: VIPs were announced with GRACEFUL_SHUTDOWN for ${this.config.bgp.drainSeconds}s, then withdrawn` };
      },
      'POST /undrain': async () => {
        await needBgp().undrain();
        return { message: 'undrained: VIPs are announced normally' };
      },
      'POST /reload': async () => {
        try {
          return { message: await this.reload() };
        } catch (e) {
          throw new HttpError(422, (e as Error).message);
        }
      },
    };
  }
}
