// Adapts the BgpSpeaker to the agent: caches its (async) status for the
// control API and metrics, and decides what stop means for routes.
import type { EdgelbConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';
// Type-only: the speaker (gRPC, protobufjs and gobgpd's API definitions)
// loads in start(), while the datapath's maps are created on another thread.
import type { BgpSpeaker, SpeakerOptions, SpeakerStatus } from '../bgp/speaker.js';
import { readAdjOut } from '../bgp/path-reconciler.js';
import { attrsFromAdvertise, canonicalAddress, type DesiredVip as BgpVip } from '../bgp/attributes.js';
import type { DesiredVip } from '../model/types.js';
import type { BgpCounters, BgpPart } from './agent.js';
import type { ComponentHealth, PeerView, RouteView } from './control-types.js';

export function toBgpVips(vips: DesiredVip[]): BgpVip[] {
  return vips.map((v) => ({ prefix: v.address, attrs: attrsFromAdvertise(v.advertise) }));
}

/**
 * A peer's BFD as status and `edgelb_bfd_session_up` show it: null for a
 * peer without BFD, 'up' only while bfdd's own session to it is up. Read
 * from bfdd's running and healthy flags alone, every peer — with BFD or
 * not — showed 'up' while one session was down (the router gone, a
 * firewall in the way).
 */
export function peerBfd(address: string, bfd: SpeakerStatus['bfd']): 'up' | 'down' | null {
  const peer = canonicalAddress(address);
  if (!bfd?.peers.includes(peer)) return null;
  if (!bfd.running || !bfd.healthy) return 'down';
  return bfd.sessions.some((x) => canonicalAddress(x.peer) === peer && x.status === 'up') ? 'up' : 'down';
}

export class BgpAgentPart implements BgpPart {
  readonly name = 'bgp';
  private sp: BgpSpeaker | null = null;
  private last: SpeakerStatus | null = null;
  private timer: NodeJS.Timeout | null = null;
  private coupling: NodeJS.Timeout | null = null;
  private stopping = false;
  private advertisingNow = false;
  private advertisingListener: ((v: boolean) => void) | null = null;

  /**
   * `datapathHealthy`: when it turns false (datapath not attached), BFD goes
   * down so the routers stop sending here at once, although the host is up.
   */
  constructor(
    private readonly config: EdgelbConfig,
    private readonly log: Logger,
    private readonly datapathHealthy: () => boolean = () => true,
    private readonly opts: { wrap?: string[]; gobgpdLogFile?: string } = {},
  ) {}

  get speaker(): BgpSpeaker {
    if (!this.sp) throw new Error('the BGP part has not started');
    return this.sp;
  }

  async start(): Promise<void> {
    const { BgpSpeaker } = await import('../bgp/speaker.js');
    // gobgpd may start alongside the agent (appliance: Type=exec); wait for
    // it rather than report READY with BGP not configured.
    const options: SpeakerOptions = { logger: this.log, reconcileIntervalMs: 2000, adjOutEvery: 5, gobgpdWaitMs: 20_000, ...this.opts };
    this.sp = new BgpSpeaker({ node: this.config.node, bgp: this.config.bgp }, options);
    await this.speaker.start();
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), 1000);
    this.timer.unref();
  }

  coupleDatapathHealth(): void {
    if (this.coupling || this.stopping) return;
    this.coupling = setInterval(() => {
      if (this.stopping) return;
      void this.speaker.setDatapathHealthy(this.datapathHealthy()).catch(() => undefined);
    }, 200); // health() asks the kernel (one netlink query); BFD down within a second of a detach
    this.coupling.unref();
  }

  private async refresh(): Promise<void> {
    try {
      this.last = await this.speaker.status();
    } catch (e) {
      this.log.warn({ err: e }, 'BGP status refresh failed');
    }
    const now = this.advertising();
    if (now !== this.advertisingNow) {
      this.advertisingNow = now;
      this.advertisingListener?.(now);
    }
  }

  /** An edge advertises while a BGP session is established and it is not drained (or draining). */
  advertising(): boolean {
    const s = this.last;
    return s !== null && s.gobgpdHealthy && s.drain === 'active' && s.peers.some((p) => p.state === 'established');
  }

  /** Called with advertising() whenever it changes (checked at every status refresh, about once a second). */
  onAdvertisingChange(fn: (v: boolean) => void): void {
    this.advertisingListener = fn;
  }

  async setVips(vips: DesiredVip[]): Promise<void> {
    await this.speaker.setDesired(toBgpVips(vips));
  }

  async stop(mode: 'handover' | 'shutdown'): Promise<void> {
    // First: a handover stops the datapath part after this one, and the
    // coupling must not read that as the edge failing (BFD down would take
    // the VIPs off the routers in the middle of a restart).
    this.stopping = true;
    if (this.coupling) clearInterval(this.coupling);
    if (this.timer) clearInterval(this.timer);
    // gobgpd keeps the paths when we leave for a handover; on shutdown the
    // drain has already withdrawn them. A managed gobgpd (development) is
    // stopped only on shutdown.
    await this.sp?.close({ stopGobgpd: mode === 'shutdown', stopBfdd: mode === 'shutdown' });
  }

  /**
   * The speaker takes the new config before it talks to gobgpd, and its
   * reconcile loop applies it whenever gobgpd answers (as after a gobgpd
   * restart). So gobgpd being away (restarting, hung) does not fail the
   * reload: throwing here stopped the agent's reload half-way — the
   * datapath on the new config, Kubernetes (pools) on the old, the old
   * config's hash reported, and the operator told nothing was applied.
   */
  async reload(config: EdgelbConfig): Promise<void> {
    try {
      const diff = await this.speaker.reload({ node: config.node, bgp: config.bgp });
      this.log.info({ diff }, 'BGP peers reconciled');
    } catch (e) {
      this.log.warn({ err: String(e) }, 'BGP: the new config is not applied to gobgpd yet; the reconcile loop applies it when gobgpd answers');
    }
  }

  health(): ComponentHealth {
    const s = this.last;
    if (!s) return { ok: false, detail: 'gobgpd not contacted yet' };
    if (!s.gobgpdHealthy) return { ok: false, detail: `gobgpd is not answering${s.lastError ? ` (${s.lastError})` : ''}` };
    const up = s.peers.filter((p) => p.state === 'established').length;
    return { ok: true, detail: `gobgpd up, ${up}/${s.peers.length} peers established, ${s.vips} VIPs` };
  }

  peers(): PeerView[] {
    const bfd = this.last?.bfd ?? null;
    return (this.last?.peers ?? []).map((p) => ({
      address: p.address,
      asn: p.asn,
      state: p.state,
      uptimeSeconds: p.uptimeSeconds,
      bfd: peerBfd(p.address, bfd),
      routesSent: p.advertised,
    }));
  }

  async routes(): Promise<RouteView[]> {
    const out: RouteView[] = [];
    for (const p of this.last?.peers ?? []) {
      if (p.state !== 'established') continue;
      const adj = await readAdjOut(this.speaker.client, p.address);
      for (const r of adj.values()) {
        out.push({
          prefix: r.prefix, peer: p.address, nextHop: r.nextHop, asPath: r.asPath.join(' '),
          communities: r.communities, largeCommunities: r.largeCommunities, med: r.med, localPref: r.localPref,
        });
      }
    }
    return out;
  }

  async drain(opts: { persist?: boolean } = {}): Promise<void> {
    // Draining starts now: stop counting as advertising before the withdrawal completes.
    if (this.advertisingNow) {
      this.advertisingNow = false;
      this.advertisingListener?.(false);
    }
    await this.speaker.drain(opts);
    await this.refresh();
  }

  async undrain(): Promise<void> {
    await this.speaker.undrain();
    await this.refresh();
  }

  drainState(): 'active' | 'draining' | 'drained' {
    return this.last?.drain ?? 'active';
  }

  /** What the speaker sent to gobgpd since this agent started, how often gobgpd had lost its state, how often its whole RIB and a peer's whole adj-out were read. */
  counters(): BgpCounters {
    const s = this.sp;
    return { announces: s?.pathsAnnounced ?? 0, withdraws: s?.pathsWithdrawn ?? 0, resyncs: s?.resyncs ?? 0, ribFullReads: s?.ribFullReads ?? 0, adjOutFullReads: s?.adjOutFullReads ?? 0 };
  }

  vipsAnnounced(): number {
    return this.last?.vips ?? 0;
  }

  gobgpdState(): string {
    if (!this.last) return 'unknown';
    return this.last.gobgpdHealthy ? 'up' : 'not answering';
  }
}
