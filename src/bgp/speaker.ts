// BgpSpeaker: the one object the agent talks to for BGP. It owns the gRPC
// client, keeps gobgpd's global config, peers, policy and VIP paths equal to
// what it is told, repairs drift (gobgpd restarts, adj-out mismatches),
// drives graceful drain and couples BFD to health.
//
// Restart safety: on start the speaker *adopts* what gobgpd already has — it
// keeps those paths as they are until the agent has called setDesired() once
// (re-adding them should gobgpd restart meanwhile, withdrawing them for a
// drain), and then only applies differences — so an agent restart never
// withdraws a VIP.
// close() leaves gobgpd (and bfdd) running unless explicitly asked to stop them.
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import type { BgpConfig, NodeConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import { canonicalAddress, parseVipPrefix, type DesiredVip, type PathOptions } from './attributes.js';
import { BfddSupervisor, bfdPeersFromConfig } from './bfdd.js';
import { drainPlan, nextDrainState, type DrainState } from './drain.js';
import { GobgpClient, type ApiPeer } from './gobgp-client.js';
import { GobgpdProcess } from './gobgpd-process.js';
import { adjOutCount, compareAdjOut, countByFamily, desiredPaths, expectedAdjOut, readAdjOut, readGlobalRib, reconcilePaths, ribCountsMatch, vipsForPeer, vipsWithoutPeer, type AdjOutMismatch, type RibCounts } from './path-reconciler.js';
import type { ApiPath } from './api-types.js';
import { desiredPeers, reconcilePeers, readPasswordFile, type PeerDiff } from './peer-reconciler.js';
import { buildPolicy, groupsOfNeighborSets, peerGroups, policyFingerprint, EXPORT_POLICY } from './policy.js';

export interface SpeakerConfig {
  node: Pick<NodeConfig, 'asn' | 'routerId'>;
  bgp: BgpConfig;
}

export interface SpeakerOptions {
  logger?: Logger;
  /** BGP listen port; 179 normally, -1 = do not listen (only connect out). */
  listenPort?: number;
  /** Periodic reconcile (health, gobgpd restart detection, drift repair), ms; 0 = off. */
  reconcileIntervalMs?: number;
  /** Check adjacency-out every N reconcile rounds (0 = never). */
  adjOutEvery?: number;
  /**
   * An adj-out check compares each established peer's adj-out path count
   * (GetTable) with the expected one, and reads and compares the whole
   * adj-out only every N adj-out checks of that peer (default 6: 60 s at 5
   * rounds of 2 s), when the counts differ, or after something changed
   * (VIPs, drain, config, policy, the session reset, gobgpd in trouble).
   * 1 = every check.
   */
  adjOutFullReadEvery?: number;
  /**
   * Idle rounds (nothing changed by us) check gobgpd's path counts
   * (GetTable) and read and diff its whole RIB only every N rounds, or when
   * the counts differ (default 15: 30 s at the 2 s interval). 1 = every round.
   */
  ribFullReadEvery?: number;
  /** Command prefix for managed daemons (tests run them in a netns). */
  wrap?: string[];
  /** Log file for a managed gobgpd. */
  gobgpdLogFile?: string;
  /** Password file reader (tests inject). */
  readPassword?: (path: string, where: string) => string;
  /** Manage FRR bfdd for peers with bfd.enabled (default: when any peer has it). */
  bfd?: boolean;
  /**
   * An unmanaged gobgpd may still be starting (the appliance starts it as
   * Type=exec, in parallel with the agent): start() waits up to this long
   * for its API to answer before the first configuration round. 0 = no wait.
   */
  gobgpdWaitMs?: number;
}

export interface PeerStatus {
  address: string;
  asn: number;
  state: string;
  adminState: string;
  /** Seconds since the session came up (0 when not established). */
  uptimeSeconds: number;
  /** Epoch ms when the session came up (stable across reads: use it to tell a reset). */
  upSince: number | null;
  receivedUpdates: number;
  sentUpdates: number;
  advertised: number;
}

export interface SpeakerStatus {
  gobgpdHealthy: boolean;
  drain: DrainState;
  vips: number;
  announced: number;
  peers: PeerStatus[];
  /**
   * null when no peer uses BFD. `peers`: the configured peers that use it (canonical
   * spelling); `sessions`: bfdd's view per peer ('up', 'down', 'init', 'shutdown'…).
   */
  bfd: { running: boolean; healthy: boolean; peers: string[]; sessions: { peer: string; status: string }[] } | null;
  lastError: string | null;
}

/** Epoch ms when the session came up (null when not established): stable across reads, so a reset shows as a new value. */
function sessionUpSince(p: ApiPeer): number | null {
  const up = p.timers?.state?.uptime;
  return p.state?.session_state === 'ESTABLISHED' && up ? Number(up.seconds) * 1000 + Math.floor(up.nanos / 1e6) : null;
}

function peerStatus(p: ApiPeer): PeerStatus {
  const st = p.state;
  const upSince = sessionUpSince(p);
  return {
    address: p.conf.neighbor_address,
    asn: p.conf.peer_asn,
    state: (st?.session_state ?? 'UNKNOWN').toLowerCase(),
    adminState: (st?.admin_state ?? 'UP').toLowerCase(),
    uptimeSeconds: upSince === null ? 0 : Math.max(0, Math.floor((Date.now() - upSince) / 1000)),
    upSince,
    receivedUpdates: Number(st?.messages?.received?.update ?? 0),
    sentUpdates: Number(st?.messages?.sent?.update ?? 0),
    advertised: (p.afi_safis ?? []).reduce((n, a) => n + Number(a.state?.advertised ?? 0), 0),
  };
}

/** Paths read from gobgpd as they can be added again: family, NLRI and attributes only. */
function adoptable(paths: Map<string, ApiPath>): Map<string, ApiPath> {
  const out = new Map<string, ApiPath>();
  for (const [k, p] of paths) out.set(k, { family: p.family, nlri: p.nlri, pattrs: p.pattrs });
  return out;
}

export class BgpSpeaker {
  private cfg: SpeakerConfig;
  private readonly opts: SpeakerOptions;
  private readonly log: Logger;
  readonly client: GobgpClient;
  readonly gobgpd: GobgpdProcess | null;
  private bfdd: BfddSupervisor | null = null;
  private vips: DesiredVip[] | null = null;
  /**
   * Until setDesired() is first called (an agent restart: the Kubernetes
   * side's first pass, or an API server unreachable since), the paths
   * gobgpd announced when this speaker first reached it stand for the
   * desired ones — null until then.
   */
  private adopted: Map<string, ApiPath> | null = null;
  /**
   * Likewise the export policy's peer groups: adopted paths of a VIP
   * restricted to some peers carry their group's mark, and a policy without
   * that group rejects them to every peer — a session that came up again
   * (or a gobgpd restarted) before the first desired state lost them.
   */
  private adoptedGroups: string[][] | null = null;
  private drainState: DrainState = 'active';
  private drainTimer: NodeJS.Timeout | null = null;
  private drainDone: (() => void) | null = null;
  private loop: NodeJS.Timeout | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  /** A setDesired() round queued but not begun: a newer set replaces its VIPs. */
  private waitingVips: { vips: DesiredVip[]; applied: Promise<void> } | null = null;
  private appliedPolicy = '';
  /**
   * An adj-out mismatch casts doubt on gobgpd's copy of the policy: the next
   * apply replaces it even when its statement names look like ours (a
   * statement altered in place keeps its name).
   */
  private policyDoubted = false;
  private lastHealthy = false;
  private round = 0;
  /** Reconcile rounds that reached gobgpd, and the last one that did not (or failed): paced full RIB reads. */
  private loopRounds = 0;
  private troubleRound = -Infinity;
  /**
   * What the last full path reconcile left in gobgpd's global RIB (exactly
   * `want`: its counts per family) and what it was made from, or null when
   * nothing is known (never reconciled, a round failed, gobgpd restarted,
   * a change is being applied). An idle round trusts it while gobgpd's
   * counts agree, for ribFullReadEvery rounds.
   */
  private ribSynced: { vips: DesiredVip[] | null; drain: DrainState; asn: number; counts: RibCounts; round: number } | null = null;
  /**
   * Adj-out checks run so far, and per peer the session (its upSince) and
   * check whose whole adj-out last matched what it should get. Valid for
   * `adjOutBasis` (VIPs, drain state, config and policy as they were then),
   * like `adjOutExpected`, each peer's expected path count.
   */
  private adjOutRounds = 0;
  private adjOutMatched = new Map<string, { upSince: number | null; round: number }>();
  private adjOutExpected = new Map<string, number>();
  private adjOutBasis: { vips: DesiredVip[] | null; drain: DrainState; cfg: SpeakerConfig; policy: string } | null = null;
  private datapathHealthy = true;
  private lastError: string | null = null;
  /** The last bfdd.apply() succeeded (else the reconcile loop tries again). */
  private bfdApplied = false;
  private closed = false;
  private lastStranded = '';
  announced = 0;
  /** Test hook / metrics: number of full re-syncs after gobgpd lost its state. */
  resyncs = 0;
  /** Metrics: VIP paths sent to gobgpd as announcements (new or changed), and as withdrawals. */
  pathsAnnounced = 0;
  pathsWithdrawn = 0;
  /** Test hook / metrics: reads of gobgpd's whole global RIB (ListPath of both families). */
  ribFullReads = 0;
  /** Test hook / metrics: reads of one peer's whole adjacency-out (ListPath ADJ_OUT) by the adj-out check. */
  adjOutFullReads = 0;

  constructor(cfg: SpeakerConfig, opts: SpeakerOptions = {}) {
    this.cfg = cfg;
    this.opts = opts;
    this.log = (opts.logger ?? silentLogger()).child({ component: 'bgp' });
    const g = cfg.bgp.gobgp;
    this.client = new GobgpClient({ socket: g.socket, protoDir: g.protoDir });
    this.gobgpd = g.manage
      ? new GobgpdProcess({ binary: g.binary, socket: g.socket, protoDir: g.protoDir, wrap: opts.wrap, logFile: opts.gobgpdLogFile, logger: this.log })
      : null;
  }

  /** Serialise every operation that talks to gobgpd, so reconciles never interleave. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private pathOptions(): PathOptions {
    return { localAsn: this.cfg.node.asn, gracefulShutdown: drainPlan(this.drainState).gracefulShutdown };
  }

  /** Connect (starting gobgpd when managed), apply global/peers/policy, start the reconcile loop. */
  async start(): Promise<void> {
    if (existsSync(this.drainMarker)) {
      this.drainState = 'drained';
      this.log.warn({ marker: this.drainMarker }, 'edge was drained by an operator: VIPs stay withdrawn until undrain');
    }
    if (this.gobgpd) await this.gobgpd.start();
    // bfdd and gobgpd are separate daemons: BFD is configured (vtysh runs)
    // while gobgpd is still coming up.
    const bfd = this.syncBfd();
    try {
      if (!this.gobgpd) await this.waitForGobgpd(this.opts.gobgpdWaitMs ?? 0);
    } finally {
      await bfd;
    }
    try {
      await this.exclusive(() => this.reconcileOnce(true));
    } catch (e) {
      // gobgpd not up yet (systemd restarting it, slow boot): the loop retries;
      // status() reports it meanwhile. Only a failure to spawn a managed gobgpd throws.
      this.lastError = (e as Error).message;
      this.log.warn({ err: this.lastError }, 'BGP not configured yet; will retry');
      if ((this.opts.reconcileIntervalMs ?? 2000) <= 0) throw e;
    }
    const every = this.opts.reconcileIntervalMs ?? 2000;
    if (every > 0) {
      const tick = () => {
        if (this.closed) return;
        this.exclusive(() => this.reconcileOnce(false))
          .catch((e: Error) => {
            this.ribTrouble();
            this.log.warn({ err: e.message }, 'BGP reconcile failed; will retry');
          })
          .finally(() => {
            if (!this.closed) this.loop = setTimeout(tick, every);
          });
      };
      this.loop = setTimeout(tick, every);
    }
  }

  private async waitForGobgpd(ms: number): Promise<void> {
    if (ms <= 0) return;
    const deadline = Date.now() + ms;
    const t0 = Date.now();
    let logged = false;
    while (!this.closed && !(await this.client.reachable(500))) {
      if (Date.now() >= deadline) {
        this.log.warn({ socket: this.cfg.bgp.gobgp.socket, waitedMs: ms }, 'gobgpd does not answer yet; continuing, the reconcile loop configures it when it does');
        return;
      }
      if (!logged) this.log.info({ socket: this.cfg.bgp.gobgp.socket }, 'waiting for gobgpd to answer');
      logged = true;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (logged) this.log.info({ waitedMs: Date.now() - t0 }, 'gobgpd answers');
  }

  /**
   * The VIPs to announce (with attributes from their pools). Applied at once;
   * if gobgpd cannot be reached this throws, but the set is kept and the
   * reconcile loop applies it when gobgpd answers again. Calls made while
   * another waits for its turn share that turn with the newest set.
   */
  async setDesired(vips: DesiredVip[]): Promise<void> {
    vips.forEach((v, i) => parseVipPrefix(v.prefix, `VIP #${i}`));
    const copy = vips.map((v) => ({ prefix: v.prefix, attrs: { ...v.attrs, peers: v.attrs.peers.map(canonicalAddress) } }));
    // Only the newest set matters. A set still waiting for its turn (gobgpd
    // slow or hung, the queue busy) is replaced, and its caller's promise
    // settles with the newer set's round: queueing each one meant a copy of
    // every intermediate set in memory and a full RIB read and diff for
    // each, long after it was superseded.
    if (this.waitingVips) {
      this.waitingVips.vips = copy;
      return this.waitingVips.applied;
    }
    const waiting: { vips: DesiredVip[]; applied: Promise<void> } = { vips: copy, applied: Promise.resolve() };
    this.waitingVips = waiting;
    waiting.applied = this.exclusive(async () => {
      this.waitingVips = null; // its turn: later sets wait for the next round
      this.vips = waiting.vips;
      await this.applyPolicyAndPaths();
    });
    return waiting.applied;
  }

  /** Apply a changed config: only the differences (peers one by one, policy, paths). */
  async reload(cfg: SpeakerConfig): Promise<PeerDiff> {
    // Swap the config inside the queue: a reconcile round already queued
    // must not apply half of it, and the returned diff is then exactly ours.
    return this.exclusive(async () => {
      const old = this.cfg;
      this.cfg = cfg;
      if (old.node.asn !== cfg.node.asn || old.node.routerId !== cfg.node.routerId) {
        this.log.warn('node ASN/router ID changed: BGP will restart (all sessions reset)');
      }
      await this.syncBfd();
      await this.ensureGlobal();
      await this.applyPolicyAndPaths();
      return reconcilePeers(this.client, this.desiredPeerSpecs(), this.log);
    });
  }

  /** Marker file of an operator drain (`persist`), next to gobgpd's socket (tmpfs on the appliance). */
  get drainMarker(): string {
    return `${this.cfg.bgp.gobgp.socket}.drained`;
  }

  /**
   * Graceful drain: re-announce with GRACEFUL_SHUTDOWN, wait bgp.drainSeconds,
   * withdraw. Resolves when the VIPs are withdrawn (or an undrain cancelled it).
   * `persist: true` (an operator's `edgelb drain`) keeps the edge drained
   * across agent restarts until undrain(); the drain before an agent exits
   * (SIGTERM) should not persist, so the next agent announces again.
   */
  async drain(opts: { persist?: boolean } = {}): Promise<void> {
    if (opts.persist) writeFileSync(this.drainMarker, `${new Date().toISOString()}\n`);
    if (this.drainState !== 'active') return;
    this.drainState = nextDrainState(this.drainState, 'drain');
    this.log.info({ seconds: this.cfg.bgp.drainSeconds }, 'draining: announcing VIPs with GRACEFUL_SHUTDOWN');
    await this.exclusive(() => this.applyPolicyAndPaths());
    await new Promise<void>((resolve) => {
      this.drainDone = resolve;
      this.drainTimer = setTimeout(() => {
        this.drainTimer = null;
        this.drainState = nextDrainState(this.drainState, 'drain-timer');
        this.log.info('drain: withdrawing VIPs');
        this.exclusive(() => this.applyPolicyAndPaths())
          .then(() => this.waitWithdrawn(5000))
          .catch((e: Error) => this.log.error({ err: e.message }, 'drain withdraw failed'))
          .finally(() => {
            this.drainDone = null;
            resolve();
          });
      }, this.cfg.bgp.drainSeconds * 1000);
    });
  }

  /**
   * DeletePath returns before gobgpd has sent the withdrawal; whoever stops
   * gobgpd right after a drain (the agent on shutdown, an operator) would
   * otherwise leave the VIP at the routers as a graceful-restart stale
   * route. Wait until no established peer's adjacency-out holds a VIP.
   */
  private async waitWithdrawn(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      let left = 0;
      try {
        const peers = (await this.client.listPeer()).filter((p) => p.state?.session_state === 'ESTABLISHED');
        for (const p of peers) left += (await readAdjOut(this.client, p.conf.neighbor_address)).size;
      } catch {
        return; // gobgpd gone: nothing left to send
      }
      if (left === 0) return;
      if (Date.now() > deadline) {
        this.log.warn({ paths: left }, 'VIPs still in adjacency-out after the drain withdrew them');
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async undrain(): Promise<void> {
    rmSync(this.drainMarker, { force: true });
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainTimer = null;
    this.drainState = nextDrainState(this.drainState, 'undrain');
    this.drainDone?.();
    this.drainDone = null;
    this.log.info('undrain: announcing VIPs normally');
    await this.exclusive(() => this.applyPolicyAndPaths());
  }

  /** The datapath's health (attached, maps sane); BFD is held down while it is false. */
  async setDatapathHealthy(ok: boolean): Promise<void> {
    this.datapathHealthy = ok;
    await this.bfdd?.setHealthy(ok && this.lastHealthy);
  }

  async status(): Promise<SpeakerStatus> {
    let peers: PeerStatus[] = [];
    let healthy = false;
    try {
      peers = (await this.client.listPeer()).map(peerStatus);
      healthy = await this.client.ping();
    } catch (e) {
      this.lastError = (e as Error).message;
    }
    return {
      gobgpdHealthy: healthy,
      drain: this.drainState,
      vips: this.vips?.length ?? 0,
      announced: this.announced,
      peers,
      bfd: this.bfdd ? await this.bfdStatus(this.bfdd) : null,
      lastError: this.lastError,
    };
  }

  private async bfdStatus(b: BfddSupervisor): Promise<NonNullable<SpeakerStatus['bfd']>> {
    const running = b.running();
    let sessions: { peer: string; status: string }[] = [];
    if (running) {
      try {
        sessions = (await b.sessions()).map((x) => ({ peer: x.peer, status: x.status }));
      } catch (e) {
        this.lastError = `bfdd: ${(e as Error).message}`;
      }
    }
    return { running, healthy: b.healthy, peers: bfdPeersFromConfig(this.cfg.bgp.peers).map((p) => p.address), sessions };
  }

  /** Compare each established peer's adjacency-out with what it should get; repair by a soft reset out. */
  async checkAdjOut(repair = true): Promise<AdjOutMismatch[]> {
    return this.exclusive(() => this.adjOutRound(repair, true));
  }

  /** Stop the loop and the client. Leaves gobgpd/bfdd running (routes stay) unless told otherwise. */
  async close(opts: { stopGobgpd?: boolean; stopBfdd?: boolean } = {}): Promise<void> {
    this.closed = true;
    if (this.loop) clearTimeout(this.loop);
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainDone?.();
    await this.queue.catch(() => undefined);
    this.client.close();
    if (opts.stopGobgpd && this.gobgpd) await this.gobgpd.stop();
    if (opts.stopBfdd && this.bfdd) await this.bfdd.stop();
  }

  // ---- internals ----

  private desiredPeerSpecs() {
    return desiredPeers(this.cfg.bgp.peers, this.cfg.node.asn, this.opts.readPassword ?? readPasswordFile);
  }

  private async syncBfd(): Promise<void> {
    const peers = bfdPeersFromConfig(this.cfg.bgp.peers);
    const want = this.opts.bfd ?? peers.length > 0;
    if (!want && !this.bfdd) return;
    if (!this.bfdd) {
      this.bfdd = new BfddSupervisor({ ...this.cfg.bgp.bfdd, wrap: this.opts.wrap, logger: this.log, spawn: this.cfg.bgp.gobgp.manage });
      this.bfdd.healthy = this.datapathHealthy;
    }
    try {
      await this.bfdd.apply(peers);
      this.bfdApplied = true;
    } catch (e) {
      // BGP works without BFD (only slower failover); keep going and retry from the loop.
      this.bfdApplied = false;
      this.lastError = `bfdd: ${(e as Error).message}`;
      this.log.error({ err: (e as Error).message }, 'could not configure bfdd; retrying');
    }
  }

  /** Start BGP in gobgpd if it is not (fresh or restarted gobgpd); true if it had to. */
  private async ensureGlobal(): Promise<boolean> {
    const g = await this.client.getBgp();
    const { asn, routerId } = this.cfg.node;
    if (g.asn === asn && g.router_id === routerId) return false;
    if (g.asn !== 0) {
      this.log.warn({ was: { asn: g.asn, routerId: g.router_id } }, 'gobgpd runs with another ASN/router ID; restarting BGP');
      await this.client.stopBgp();
    }
    await this.client.startBgp({ asn, router_id: routerId, listen_port: this.opts.listenPort ?? 179 });
    this.appliedPolicy = '';
    return true;
  }

  private async reconcileOnce(first: boolean): Promise<void> {
    const healthy = await this.client.reachable(1500);
    if (!healthy) {
      this.ribTrouble();
      if (this.lastHealthy || first) this.log.warn({ socket: this.client.socket }, 'gobgpd is not answering');
      this.lastHealthy = false;
      await this.bfdd?.setHealthy(false);
      if (this.gobgpd && !this.gobgpd.running()) {
        this.log.warn('managed gobgpd is gone; restarting it');
        await this.gobgpd.start();
      }
      if (first) throw new Error(`gobgpd is not answering on ${this.client.socket}`);
      return;
    }
    this.loopRounds++;
    const restarted = await this.ensureGlobal();
    if (restarted) {
      this.ribSynced = null;
      this.adjOutMatched.clear();
    }
    if (restarted && !first) {
      this.resyncs++;
      this.log.warn('gobgpd lost its state (restart?): re-applying peers, policy and all VIPs');
    }
    // Paths before peers: a freshly restarted gobgpd then has its whole RIB
    // when sessions come up, so the first UPDATEs (and the End-of-RIB a
    // graceful-restart helper waits for) already carry every VIP instead of
    // an empty table that would flush the router's stale routes.
    await this.applyPolicyAndPaths(!first);
    await reconcilePeers(this.client, this.desiredPeerSpecs(), this.log);
    this.lastHealthy = true;
    this.lastError = null;
    // bfdd may have died (or its unit restarted with an empty config), or
    // configuring it failed while it ran (vtysh timed out): bring it back in line.
    if (this.bfdd && (!this.bfdd.running() || !this.bfdApplied)) await this.syncBfd();
    await this.bfdd?.setHealthy(this.datapathHealthy);
    const every = this.adjOutEvery;
    if (!first && every > 0 && ++this.round % every === 0) await this.adjOutRound(true, false);
  }

  private async applyPolicy(): Promise<void> {
    const groups = this.vips === null ? (this.adoptedGroups ??= groupsOfNeighborSets(await this.client.listDefinedSet('NEIGHBOR'))) : peerGroups(this.vips.map((v) => v.attrs.peers));
    const plan = buildPolicy(this.cfg.node.asn, groups);
    const fp = policyFingerprint(plan);
    if (fp === this.appliedPolicy) return;
    // After an agent restart appliedPolicy is empty: compare with gobgpd's
    // copy (statement names encode the peer groups) so adoption does not
    // trigger a needless soft reset.
    const existing = (await this.client.listPolicy()).find((p) => p.name === EXPORT_POLICY);
    const wantNames = plan.policies.find((p) => p.name === EXPORT_POLICY)?.statements.map((s) => s.name) ?? [];
    const sameAsRunning = !this.policyDoubted && existing && JSON.stringify(existing.statements.map((s) => s.name)) === JSON.stringify(wantNames);
    if (!sameAsRunning) {
      await this.client.setPolicies({ defined_sets: plan.definedSets, policies: plan.policies });
      for (const a of plan.assignments) await this.client.setPolicyAssignment(a);
      if (existing) {
        // Export decisions for paths already sent were made under the old policy.
        for (const p of await this.client.listPeer()) {
          if (p.state?.session_state === 'ESTABLISHED') await this.client.resetPeer(p.conf.neighbor_address, true, 'OUT');
        }
      }
      this.policyDoubted = false;
      this.log.info({ groups: wantNames.length - 2 }, 'applied BGP export/import policy');
    } else {
      // Assignments are cheap to (re)assert and may be missing after a partial apply.
      for (const a of plan.assignments) await this.client.setPolicyAssignment(a);
    }
    this.appliedPolicy = fp;
  }

  /**
   * `idle`: a reconcile-loop round, which may skip the paths (and the policy,
   * unchanged since) when ribUnchanged() says gobgpd still holds what the
   * last full reconcile left. Everything else — setDesired, reload, drain,
   * undrain, an adj-out repair, the first round — reads and diffs the RIB.
   */
  private async applyPolicyAndPaths(idle = false): Promise<void> {
    if (idle && this.appliedPolicy !== '' && (await this.ribUnchanged())) return;
    this.ribSynced = null;
    try {
      await this.applyFully();
    } catch (e) {
      this.ribTrouble();
      throw e;
    }
  }

  private async applyFully(): Promise<void> {
    await this.applyPolicy();
    const plan = drainPlan(this.drainState);
    let want: Map<string, ApiPath>;
    if (this.vips === null) {
      // Not told yet: what gobgpd announced is adopted as it is. Left alone
      // altogether, a drain (`edgelb drain`, or the one before SIGTERM, after
      // which XDP is detached) withdrew nothing — still announced, the edge
      // no longer forwarding — and a gobgpd restart or an undrain announced
      // nothing again until the first desired state came. (A drain withdraws
      // them without GRACEFUL_SHUTDOWN first: their attributes are gobgpd's.)
      if (!this.adopted) {
        this.ribFullReads++;
        this.adopted = adoptable(await readGlobalRib(this.client));
      }
      want = plan.announce ? this.adopted : new Map();
    } else {
      this.warnUnannounceable(this.vips);
      want = plan.announce ? desiredPaths(this.vips, this.pathOptions()) : new Map();
    }
    this.ribFullReads++;
    const diff = await reconcilePaths(this.client, want, this.log);
    this.pathsAnnounced += diff.add.length;
    this.pathsWithdrawn += diff.delete.length;
    this.announced = want.size;
    // The RIB now holds exactly `want`.
    this.ribSynced = { vips: this.vips, drain: this.drainState, asn: this.cfg.node.asn, counts: countByFamily(want), round: this.loopRounds };
  }

  /** gobgpd did not answer or a round failed: requests it had not answered may still land, so read in full for a while. */
  private ribTrouble(): void {
    this.troubleRound = this.loopRounds;
    this.ribSynced = null;
  }

  /**
   * Whether an idle round may skip reading the RIB: the last full reconcile
   * was made from the same VIPs, drain state and ASN, fewer than
   * ribFullReadEvery rounds ago, not within the two rounds after gobgpd
   * failed to answer (requests sent before it hung can land after it
   * resumes), and gobgpd's counts per family still match. A path deleted
   * or added behind our back, or a RIB emptied by a restart, changes the
   * counts and is repaired in this very round; a path replaced in place
   * keeps them and waits for the next full read.
   */
  private async ribUnchanged(): Promise<boolean> {
    const s = this.ribSynced;
    const every = this.opts.ribFullReadEvery ?? 15;
    if (!s || every <= 1) return false;
    if (s.vips !== this.vips || s.drain !== this.drainState || s.asn !== this.cfg.node.asn) return false;
    if (this.loopRounds - s.round >= every || this.loopRounds - this.troubleRound <= 2) return false;
    try {
      return await ribCountsMatch(this.client, s.counts);
    } catch {
      return false; // the full read then says what is wrong
    }
  }

  /** Say once per change which VIPs no configured peer can carry (config validation refuses such pools). */
  private warnUnannounceable(vips: DesiredVip[]): void {
    const stranded = vipsWithoutPeer(vips, this.cfg.bgp.peers.map((p) => canonicalAddress(p.address)));
    const key = stranded.join(',');
    if (key === this.lastStranded) return;
    this.lastStranded = key;
    if (stranded.length > 0) {
      this.log.warn({ vips: stranded.slice(0, 10), count: stranded.length }, 'VIPs without a peer of their address family (IPv6 VIPs go only over IPv6 sessions): announced to no router');
    }
  }

  /**
   * Compare each established peer's adj-out with what it should get; on a
   * mismatch log it, re-apply policy and paths and soft-reset that peer
   * outbound. `full`: read every peer's whole adj-out (checkAdjOut()); the
   * loop's checks read a peer's only when adjOutUnchanged() cannot vouch
   * for it.
   */
  private async adjOutRound(repair: boolean, full: boolean): Promise<AdjOutMismatch[]> {
    if (this.vips === null) return [];
    const plan = drainPlan(this.drainState);
    const vips = plan.announce ? this.vips : [];
    this.adjOutRounds++;
    this.checkAdjOutBasis();
    const out: AdjOutMismatch[] = [];
    for (const p of await this.client.listPeer()) {
      if (p.state?.session_state !== 'ESTABLISHED') continue;
      const addr = p.conf.neighbor_address;
      const upSince = sessionUpSince(p);
      if (!full && (await this.adjOutUnchanged(addr, upSince, vips))) continue;
      this.adjOutMatched.delete(addr);
      this.adjOutFullReads++;
      const mm = compareAdjOut(addr, expectedAdjOut(vips, addr, this.pathOptions()), await readAdjOut(this.client, addr));
      if (!mm) {
        this.adjOutMatched.set(addr, { upSince, round: this.adjOutRounds });
        continue;
      }
      // Not marked as matched: the next check reads this peer in full again, and sees whether the repair took.
      out.push(mm);
      this.log.warn({ ...mm, missing: mm.missing.slice(0, 10), unexpected: mm.unexpected.slice(0, 10) }, 'adj-rib-out differs from desired');
      if (repair) {
        this.appliedPolicy = '';
        this.policyDoubted = true;
        await this.applyPolicyAndPaths();
        await this.client.resetPeer(addr, true, 'OUT');
      }
    }
    return out;
  }

  /** Reconcile rounds between adj-out checks (SpeakerOptions.adjOutEvery; 0 = never). */
  private get adjOutEvery(): number {
    return this.opts.adjOutEvery ?? 5;
  }

  /** What the peers' last full adj-out checks vouch for: forgotten when the VIPs, drain state, config or applied policy changed since. */
  private checkAdjOutBasis(): void {
    const now = { vips: this.vips, drain: this.drainState, cfg: this.cfg, policy: this.appliedPolicy };
    const b = this.adjOutBasis;
    if (b && b.vips === now.vips && b.drain === now.drain && b.cfg === now.cfg && b.policy === now.policy) return;
    this.adjOutBasis = now;
    this.adjOutMatched.clear();
    this.adjOutExpected.clear();
  }

  /**
   * Whether a loop's adj-out check may skip reading this peer's whole
   * adj-out: its last full check matched, in this same session (a session
   * that came up or was reset is read in full), fewer than
   * adjOutFullReadEvery checks ago, not in the checks right after gobgpd
   * failed to answer or a round failed, and gobgpd's count of the peer's
   * adj-out (GetTable: export policy applied, counted inside gobgpd) is
   * still what the peer should get. A path missing from or leaking to a
   * peer — the export policy detached, replaced or filtering wrongly —
   * changes the count and is read and repaired in this check; a path sent
   * with other attributes keeps it and waits for the next full read.
   */
  private async adjOutUnchanged(peer: string, upSince: number | null, vips: DesiredVip[]): Promise<boolean> {
    const every = this.opts.adjOutFullReadEvery ?? 6;
    const m = this.adjOutMatched.get(peer);
    if (!m || every <= 1 || m.upSince !== upSince) return false;
    if (this.adjOutRounds - m.round >= every) return false;
    // Requests sent before gobgpd hung may land after it resumes (as for the RIB): the next check or two read in full.
    if (this.loopRounds - this.troubleRound <= this.adjOutEvery + 2) return false;
    let want = this.adjOutExpected.get(peer);
    if (want === undefined) {
      want = vipsForPeer(vips, peer).length;
      this.adjOutExpected.set(peer, want);
    }
    try {
      return (await adjOutCount(this.client, peer)) === want;
    } catch {
      return false; // the full read then says what is wrong
    }
  }
}
