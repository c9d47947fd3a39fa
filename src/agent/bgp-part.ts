// Adapts the BgpSpeaker to the agent: caches its (async) status for the
// control API and metrics, and decides what stop means for routes.
import type { EdgelbConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';
// Type-only: the speaker (gRPC, protobufjs and gobgpd's API definitions)
// loads in start(), while the datapath's maps are created on another thread.
import type { BgpSpeaker, SpeakerOptions, SpeakerStatus } from '../bgp/speaker.js';
import { readAdjOut } from '../bgp/path-reconciler.js';
import { attrsFromAdvertise, type DesiredVip as BgpVip } from '../bgp/attributes.js';
import type { DesiredVip } from '../model/types.js';
import type { BgpPart } from './agent.js';
import type { ComponentHealth, PeerView, RouteView } from './control-types.js';

export function toBgpVips(vips: DesiredVip[]): BgpVip[] {
  return vips.map((v) => ({ prefix: v.address, attrs: attrsFromAdvertise(v.advertise) }));
}

export class BgpAgentPart implements BgpPart {
  readonly name = 'bgp';
  private sp: BgpSpeaker | null = null;
  private last: SpeakerStatus | null = null;
  private timer: NodeJS.Timeout | null = null;
  private coupling: NodeJS.Timeout | null = null;
  private stopping = false;

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

  async reload(config: EdgelbConfig): Promise<void> {
    const diff = await this.speaker.reload({ node: config.node, bgp: config.bgp });
    this.log.info({ diff }, 'BGP peers reconciled');
  }

  health(): ComponentHealth {
    const s = this.last;
    if (!s) return { ok: false, detail: 'gobgpd not contacted yet' };
    if (!s.gobgpdHealthy) return { ok: false, detail: `gobgpd is not answering${s.lastError ? ` (${s.lastError})` : ''}` };
    const up = s.peers.filter((p) => p.state === 'established').length;
    return { ok: true, detail: `gobgpd up, ${up}/${s.peers.length} peers established, ${s.vips} VIPs` };
  }

  peers(): PeerView[] {
    const bfd = this.last?.bfd;
    return (this.last?.peers ?? []).map((p) => ({
      address: p.address,
      asn: p.asn,
      state: p.state,
      uptimeSeconds: p.uptimeSeconds,
      bfd: bfd ? (bfd.running && bfd.healthy ? 'up' : 'down') : null,
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

  vipsAnnounced(): number {
    return this.last?.vips ?? 0;
  }

  gobgpdState(): string {
    if (!this.last) return 'unknown';
    return this.last.gobgpdHealthy ? 'up' : 'not answering';
  }
}
