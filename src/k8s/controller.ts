// The Kubernetes side of the agent: watches Services, EndpointSlices and
// Nodes, allocates addresses (on the elected edge), feeds the desired state
// to a sink (datapath + BGP) as changes, and reports what the sink did with
// them in status, conditions and Events.
//
// - Incremental: every informer event marks only the affected Services
//   dirty; a debounced round recomputes those, diffs each frontend against
//   what the sink last accepted (or rejected) and hands over only changed
//   and removed frontends.
// - Failure isolation: the sink may reject single frontends (a family it
//   does not forward, no space left); those are reported on their Service
//   and left out of the VIPs this edge advertises, and everything else in
//   the round still applies — additions, changes and every removal. A
//   rejected frontend is offered again when it changes, when the config
//   changes, or (for lack of space) when the sink has more room: never in a
//   loop on its own.
// - Ordering: new/changed frontends are programmed before VIPs are
//   advertised, and removed frontends are dropped only after the VIP set
//   without them has been applied. Status and Events follow the sink's
//   outcome, never precede it.
// - Start-up (cold or after a handover): nothing is removed or withdrawn
//   until every Service known at the first sync has been computed once;
//   then the complete VIP set is applied and the frontends the sink adopted
//   that nobody wants any more are removed.
// - Disconnects: informers keep their caches while the API is unreachable
//   and nothing is recomputed from missing data, so nothing is withdrawn.
//   A relist after 410 replaces a cache in one synchronous step and the
//   round runs a tick later, so objects that reappear cause no removal.
// - Several edges: the Lease holder allocates and writes status; the other
//   edges take addresses from status.loadBalancer.ingress (only those inside
//   a pool that admits the Service). Every edge reports the frontends it
//   does not serve itself (Warning Events).
import { createHash } from 'node:crypto';
import { CoordinationV1Api, type KubeConfig, type V1EndpointSlice, type V1Node, type V1Service } from '@kubernetes/client-node';
import type { EdgelbConfig } from '../config/types.js';
import { IpAllocator, poolForAddress, type Assigned } from '../ipam/allocator.js';
import type { Logger } from '../log/logger.js';
import { desiredForService, desiredVips, type DesiredConfig, frontendKey, type Problem } from '../model/desired.js';
import { CONDITION_ADVERTISED, creationMs, ingressAddresses, ipRequestFor, isOurs, serviceKey } from '../model/service.js';
import type { DesiredService, DesiredVip, FrontendRejection } from '../model/types.js';
import { EventRecorder } from './events.js';
import { RestClient } from './rest.js';
import { loadKubeConfig } from './kubeconfig.js';
import { ResilientInformer, type InformerStats } from './informer.js';
import { LeaderElector } from './lease.js';
import { EdgePresence } from './presence.js';
import { StatusWriter } from './status.js';
import { ServiceReporter, type ReportedState } from './reporter.js';
import { trimNode, trimService, trimSlice } from './trim.js';
import { FrontendClaims } from './claims.js';
import { ClusterIndex, parseKey } from './cluster-index.js';
import { CAPACITY_REJECTIONS, freeSpace, moreRoom, type DesiredStateSink } from './sink.js';

export type { DesiredStateSink } from './sink.js';

export interface KubernetesControllerOptions {
  /** An EdgelbConfig fits; only kubernetes, pools and datapath.mode/dispatch/maxPortsPerService are read. */
  config: DesiredConfig & Pick<EdgelbConfig, 'kubernetes'>;
  /** Overrides config.kubernetes.kubeconfig; empty = in-cluster / $KUBECONFIG. */
  kubeconfigPath?: string;
  /** An already loaded KubeConfig (tests); wins over paths. */
  kubeConfig?: KubeConfig;
  /** This edge's name: Lease identity and Event source. */
  nodeName: string;
  logger: Logger;
  sink: DesiredStateSink;
  /** Whether this edge advertises until setAdvertising() says otherwise (the agent starts with false). Default true. */
  advertising?: boolean;
  /** Batching window for informer events (ms). */
  debounceMs?: number;
  /** Services reconciled per round (a larger change takes several rounds). */
  batchSize?: number;
  /** Concurrent status writes. */
  statusConcurrency?: number;
}

export interface ControllerStatus {
  connected: boolean;
  synced: boolean;
  /** Every Service known at the first sync has been computed once (removals allowed from then on). */
  firstPassDone: boolean;
  leader: boolean;
  /** Current Lease holder as last read ('' = unknown/none). */
  leaderIdentity: string;
  /** Watch (re)starts beyond the first one per informer. */
  watchRestarts: number;
  /** Lists beyond the initial one per informer (relists after 410 or outage). */
  relists: number;
  informers: Record<string, InformerStats>;
  /** Services edgelb handles. */
  services: number;
  /** Frontends the sink accepted. */
  frontends: number;
  /** Frontends not served by this edge, by reason. */
  rejected: Record<string, number>;
  /** Backends summed over frontends (a pod serving two ports counts twice). */
  endpoints: number;
  /** Distinct addresses in use per pool (from allocations or status). */
  pools: { pool: string; used: number }[];
  vips: number;
  /** Services waiting for an address (refused, exhausted...). */
  unallocated: number;
  advertisingEdges: string[];
  statusWritesPending: number;
  statusWrites: number;
  eventsPending: number;
  sinkErrors: number;
}

function digest(ds: DesiredService): string {
  return createHash('sha1').update(JSON.stringify(ds)).digest('base64');
}

interface RejectedEntry {
  rejection: FrontendRejection;
  /** Digest of the frontend as rejected ('' = rejected by the model before any sink saw it). */
  digest: string;
  /** Sink free space when rejected for lack of it (retried when it grows); null for other reasons. */
  free: number[] | null;
}

interface SvcState extends ReportedState {
  /** frontendKey → digest of the entry's JSON as the sink accepted it (the sink keeps the objects). */
  entries: Map<string, string>;
  rejected: Map<string, RejectedEntry>;
  nodes: string[];
  backends: number;
}

/** One frontend as computed this round. */
interface Item {
  ds: DesiredService;
  fk: string;
  digest: string;
  active: boolean;
}

/** A Service as computed this round, before and after the sink's answer. */
interface Candidate {
  svc: V1Service;
  st: SvcState;
  items: Item[];
  problems: Problem[];
}

const FAILURE_REASONS = new Set(['InvalidRequest', 'RequestRefused', 'NoPool', 'PoolExhausted', 'SharingConflict']);

/**
 * Digest of what reconciliation reads from a Service: spec, labels,
 * annotations, the addresses in status and a failure reported in our
 * condition (both matter on edges that follow the leader's status).
 */
function serviceFingerprint(svc: V1Service): string {
  const md = svc.metadata;
  const c = svc.status?.conditions?.find((x) => x.type === CONDITION_ADVERTISED);
  const failed = c && FAILURE_REASONS.has(c.reason) ? c.reason : '';
  const text = JSON.stringify([md?.uid, svc.spec, md?.labels, md?.annotations, ingressAddresses(svc), failed]);
  return createHash('sha1').update(text).digest('base64');
}

const MAX_BACKOFF_MS = 30_000;
/** How long stop() waits for pending status writes. */
const STATUS_FLUSH_MS = 10_000;

export class KubernetesController {
  private readonly o: KubernetesControllerOptions;
  private config: KubernetesControllerOptions['config'];
  private readonly log: Logger;
  private readonly kc: KubeConfig;
  private readonly rest: RestClient;
  private readonly services: ResilientInformer<V1Service>;
  private readonly slices: ResilientInformer<V1EndpointSlice>;
  private readonly nodes: ResilientInformer<V1Node>;
  private readonly elector: LeaderElector;
  private readonly presence: EdgePresence;
  private readonly events: EventRecorder;
  private readonly reporter: ServiceReporter;
  private status_: StatusWriter | null = null;
  private ipam: IpAllocator | null = null;

  private readonly index = new ClusterIndex();
  private readonly state = new Map<string, SvcState>();
  private readonly claims = new FrontendClaims();
  private readonly fingerprints = new Map<string, string>();
  private readonly unallocated = new Set<string>();
  private readonly dirty = new Set<string>();
  /** Services known at the first sync and not computed since (null: not synced yet); removals wait for it to empty. */
  private firstPass: Set<string> | null = null;
  private firstPassDone = false;
  private syncedAt = 0;
  /** Reports held back until the first pass is complete (the VIPs are applied then). */
  private readonly heldReports = new Map<string, { prev: SvcState | undefined; problems: Problem[] }>();
  private lastVipsDigest = createHash('sha1').update('[]').digest('base64');
  private lastVips: DesiredVip[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private running = false;
  private sinkErrors = 0;
  private failures = 0;
  private removedTotal = 0;
  private needRestore = false;

  constructor(o: KubernetesControllerOptions) {
    this.o = o;
    this.config = o.config;
    this.log = o.logger.child({ component: 'k8s' });
    this.kc = o.kubeConfig ?? loadKubeConfig(o.kubeconfigPath ?? o.config.kubernetes.kubeconfig);
    this.rest = new RestClient(this.kc);
    const coord = this.kc.makeApiClient(CoordinationV1Api);
    const k = o.config.kubernetes;
    const common = { kubeConfig: this.kc, logger: this.log, onListed: () => this.schedule() };
    this.services = new ResilientInformer<V1Service>({
      ...common,
      name: 'services',
      path: '/api/v1/services',
      list: () => this.rest.listAll('/api/v1/services', trimService),
      project: trimService,
      onEvent: (ev, svc) => this.onService(ev, svc),
    });
    this.slices = new ResilientInformer<V1EndpointSlice>({
      ...common,
      name: 'endpointslices',
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      list: () => this.rest.listAll('/apis/discovery.k8s.io/v1/endpointslices', trimSlice),
      project: trimSlice,
      onEvent: (ev, s) => {
        for (const key of this.index.onSlice(ev, s)) this.markDirty(key);
      },
    });
    this.nodes = new ResilientInformer<V1Node>({
      ...common,
      name: 'nodes',
      path: '/api/v1/nodes',
      list: () => this.rest.listAll('/api/v1/nodes', trimNode),
      project: trimNode,
      onEvent: (ev, n) => {
        const name = n.metadata?.name ?? '';
        if (this.index.onNode(ev, n)) for (const [key, st] of this.state) if (st.nodes.includes(name)) this.markDirty(key);
      },
    });
    this.elector = new LeaderElector({
      api: coord,
      namespace: k.leaseNamespace,
      name: k.leaseName,
      identity: o.nodeName,
      leaseDurationSeconds: k.leaseDurationSeconds,
      logger: this.log,
      onStartedLeading: () => this.becomeLeader(),
      onStoppedLeading: () => this.loseLeadership(),
    });
    this.presence = new EdgePresence({
      api: coord,
      namespace: k.leaseNamespace,
      prefix: k.leaseName,
      nodeName: o.nodeName,
      leaseDurationSeconds: k.leaseDurationSeconds,
      logger: this.log,
      onChange: () => this.markAll(),
    });
    this.presence.setAdvertising(o.advertising ?? true);
    this.events = new EventRecorder({
      rest: this.rest,
      component: 'edgelb',
      host: o.nodeName,
      logger: this.log,
      holdWhile: () => (this.status_?.pending() ?? 0) > 0,
    });
    this.reporter = new ServiceReporter(this.events, () => this.presence.edges(), o.nodeName);
  }

  /** Starts watching and electing; resolves once the informers are started (not necessarily synced). */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.presence.start();
    await Promise.all([this.services.start(), this.slices.start(), this.nodes.start()]);
    this.elector.start();
  }

  /**
   * Stops everything. Does not touch the sink: what was programmed stays
   * until the agent decides. `releaseLease: false` leaves the Leases as a
   * crash would (tests; the other edges then wait out the lease duration).
   */
  async stop(opts: { releaseLease?: boolean } = {}): Promise<void> {
    const release = opts.releaseLease ?? true;
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await Promise.all([this.services.stop(), this.slices.stop(), this.nodes.stop()]);
    await this.flushing;
    // Addresses allocated but not yet in status exist only in this process:
    // the next agent (after a handover) or leader must find them there.
    await this.status_?.flush(STATUS_FLUSH_MS);
    await this.elector.stop(release);
    await this.presence.stop(release);
    this.status_?.stop();
    this.events.stop();
    this.rest.close();
  }

  /** Whether this edge currently advertises (an established BGP session, not drained); reported to the other edges. */
  setAdvertising(v: boolean): void {
    this.presence.setAdvertising(v);
  }

  /**
   * A reloaded configuration: pools, datapath mode/dispatch and the port cap
   * apply at once — every Service is recomputed, rejected frontends included.
   * kubeconfig and the Leases keep their start-up values.
   */
  reconfigure(config: KubernetesControllerOptions['config']): void {
    this.config = config;
    for (const st of this.state.values()) for (const r of st.rejected.values()) r.digest = '';
    if (this.ipam) {
      this.ipam = new IpAllocator(config.pools);
      this.needRestore = true;
    }
    this.markAll();
  }

  status(): ControllerStatus {
    const informers = { services: this.services.stats(), endpointslices: this.slices.stats(), nodes: this.nodes.stats() };
    const all = Object.values(informers);
    let frontends = 0;
    let endpoints = 0;
    const rejected: Record<string, number> = {};
    const inUse = new Map<string, Set<string>>();
    for (const s of this.state.values()) {
      frontends += s.entries.size;
      endpoints += s.backends;
      for (const r of s.rejected.values()) rejected[r.rejection.reason] = (rejected[r.rejection.reason] ?? 0) + 1;
      for (const a of s.addresses) {
        let set = inUse.get(a.pool);
        if (!set) inUse.set(a.pool, (set = new Set()));
        set.add(a.ip);
      }
    }
    return {
      connected: all.every((s) => s.connected),
      synced: all.every((s) => s.synced),
      firstPassDone: this.firstPassDone,
      leader: this.elector.isLeader(),
      leaderIdentity: this.elector.holder(),
      watchRestarts: all.reduce((n, s) => n + Math.max(0, s.watchStarts - 1), 0),
      relists: all.reduce((n, s) => n + Math.max(0, s.lists - 1), 0),
      informers,
      services: this.state.size,
      frontends,
      rejected,
      endpoints,
      pools: this.config.pools.map((p) => ({ pool: p.name, used: inUse.get(p.name)?.size ?? 0 })),
      vips: this.lastVips.length,
      unallocated: this.unallocated.size,
      advertisingEdges: this.presence.edges(),
      statusWritesPending: this.status_?.pending() ?? 0,
      statusWrites: this.status_?.written ?? 0,
      eventsPending: this.events.pending(),
      sinkErrors: this.sinkErrors,
    };
  }

  /** Resolves once pending changes reached the sink. */
  async settle(): Promise<void> {
    for (let i = 0; i < 100 && (this.dirty.size > 0 || this.flushing || this.timer); i++) {
      if (this.timer) {
        clearTimeout(this.timer);
        this.timer = null;
        await this.flush();
      }
      await this.flushing;
      if (this.dirty.size > 0 && !this.flushing) this.schedule(0);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  // --- informer events -------------------------------------------------

  private onService(ev: string, svc: V1Service): void {
    const key = serviceKey(svc);
    this.status_?.observe(key);
    if (ev === 'delete') {
      this.fingerprints.delete(key);
      this.markDirty(key);
      return;
    }
    // Most updates are the echo of a status write; recompute only when
    // something the desired state depends on changed.
    const fp = serviceFingerprint(svc);
    if (this.fingerprints.get(key) === fp) return;
    this.fingerprints.set(key, fp);
    this.markDirty(key);
  }

  private markDirty(key: string): void {
    this.dirty.add(key);
    this.schedule();
  }

  private markAll(): void {
    for (const s of this.services.list()) this.dirty.add(serviceKey(s));
    for (const k of this.state.keys()) this.dirty.add(k);
    this.schedule();
  }

  private schedule(ms = this.o.debounceMs ?? 10): void {
    if (!this.running || this.timer || this.flushing) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, ms);
  }

  // --- leadership -------------------------------------------------------

  private becomeLeader(): void {
    this.ipam = new IpAllocator(this.config.pools);
    this.needRestore = true;
    // Leading before the first pass is complete: compute it (again) with the
    // allocator, which knows addresses status may not show yet.
    if (!this.firstPassDone && this.firstPass !== null) this.firstPass = new Set(this.services.list().map(serviceKey));
    this.status_ = new StatusWriter({
      rest: this.rest,
      logger: this.log,
      get: (key) => this.getService(key),
      concurrency: this.o.statusConcurrency ?? 16,
    });
    this.markAll();
  }

  /**
   * Replays every owned Service's status into a fresh allocator, oldest
   * first, so no later round hands out an address some Service already
   * shows in status (restart stability across batches).
   */
  private restoreAllocations(): void {
    this.needRestore = false;
    const owned = this.services.list().filter((s) => isOurs(s, this.config.kubernetes) && ingressAddresses(s).length > 0);
    owned.sort((a, b) => creationMs(a) - creationMs(b) || (serviceKey(a) < serviceKey(b) ? -1 : 1));
    for (const svc of owned) this.ipam!.assign(ipRequestFor(svc));
  }

  private loseLeadership(): void {
    this.ipam = null;
    this.status_?.stop();
    this.status_ = null;
    this.markAll();
  }

  // --- reconciliation ---------------------------------------------------

  private getService(key: string): V1Service | undefined {
    const [ns, name] = parseKey(key);
    return this.services.get(name, ns);
  }

  private synced(): boolean {
    return this.services.stats().synced && this.slices.stats().synced && this.nodes.stats().synced;
  }

  private flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = this.doFlush()
      .catch((e: unknown) => this.log.error({ err: String(e) }, 'reconcile failed'))
      .finally(() => {
        this.flushing = null;
        // Before the first full sync the informers' onListed wakes us.
        if ((this.dirty.size > 0 || (this.firstPass !== null && !this.firstPassDone)) && this.synced()) this.schedule();
      });
    return this.flushing;
  }

  /** The sink's free space (or, for a sink that does not report it, how much it has been asked to remove). */
  private space(): number[] {
    return this.o.sink.capacity ? freeSpace(this.o.sink.capacity()) : [this.removedTotal];
  }

  private async doFlush(): Promise<void> {
    if (!this.synced()) return;
    if (this.firstPass === null) {
      this.firstPass = new Set(this.services.list().map(serviceKey));
      this.syncedAt = Date.now();
    }
    if (this.dirty.size > 0) await this.round();
    if (!this.firstPassDone && this.firstPass.size === 0 && this.leadershipSettled()) await this.completeFirstPass();
  }

  /**
   * Whether it is known who allocates: the Lease has been read, and if it
   * names this edge (a restart), this edge leads — then the first pass was
   * computed with the allocator, not from a status that may lag behind it.
   */
  private leadershipSettled(): boolean {
    // A Lease that cannot be read must not hold back the VIPs for ever.
    if (Date.now() - this.syncedAt > 2000 * this.config.kubernetes.leaseDurationSeconds) return true;
    if (!this.elector.hasRead()) return false;
    return this.elector.holder() !== this.o.nodeName || this.elector.isLeader();
  }

  /** One bounded round: compute, hand the changes to the sink, report what it did. */
  private async round(): Promise<void> {
    const leader = this.ipam !== null;
    if (leader && this.needRestore) this.restoreAllocations();
    let keys = [...this.dirty];
    if (leader) {
      // Services that already have an address claim it before new ones get one.
      const rank = keys.map((k) => {
        const svc = this.getService(k);
        return { k, has: svc && ingressAddresses(svc).length > 0 ? 0 : 1, t: svc ? creationMs(svc) : 0 };
      });
      rank.sort((a, b) => a.has - b.has || a.t - b.t || (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
      keys = rank.map((r) => r.k);
    }
    // Bounded rounds keep the transient memory of a big change (startup,
    // relist) small and let the first Services reach the sink early.
    keys = keys.slice(0, this.o.batchSize ?? 1000);
    for (const k of keys) this.dirty.delete(k);

    const space = this.space();
    const next = new Map<string, Candidate | null>();
    const upserts: DesiredService[] = [];
    const offered = new Map<string, { key: string; item: Item }>();
    const removals = new Set<string>();
    let released = false;
    this.claims.beginRound();
    for (const key of keys) {
      const prev = this.state.get(key);
      const svc = this.getService(key);
      if (!svc || !isOurs(svc, this.config.kubernetes)) {
        if (prev) {
          for (const fk of prev.entries.keys()) removals.add(fk);
          next.set(key, null);
        }
        if (this.ipam?.assignmentOf(key)) released = true;
        this.ipam?.release(key);
        this.unallocated.delete(key);
        if (svc && prev && this.status_) this.status_.set(key, { ingress: [], condition: null });
        else this.status_?.set(key, null);
        continue;
      }
      const c = this.compute(key, svc, prev);
      if (prev && prev.addresses.some((a) => !c.st.addresses.some((b) => b.ip === a.ip))) released = true;
      for (const item of c.items) {
        const was = prev?.rejected.get(item.fk);
        if (prev?.entries.get(item.fk) === item.digest) c.st.entries.set(item.fk, item.digest);
        else if (was && was.digest === item.digest && !(was.free && moreRoom(was.free, space))) c.st.rejected.set(item.fk, was);
        else {
          upserts.push(item.ds);
          offered.set(item.fk, { key, item });
        }
      }
      for (const fk of prev?.entries.keys() ?? []) if (!c.st.entries.has(fk) && !offered.has(fk)) removals.add(fk);
      next.set(key, c);
    }
    this.claims.endRound();
    // A frontend handed from one Service to another in the same round is replaced, not removed.
    for (const fk of offered.keys()) removals.delete(fk);
    if (released && leader) {
      // Freed addresses may satisfy Services that are waiting for one.
      for (const k of this.unallocated) if (!next.has(k)) this.dirty.add(k);
    }

    const errors: unknown[] = [];
    let answer: FrontendRejection[] = [];
    let upsertFailed = false;
    if (upserts.length > 0) {
      try {
        answer = (await this.o.sink.upsert(upserts)) ?? [];
      } catch (e) {
        errors.push(e);
        upsertFailed = true;
      }
    }
    const rejections = new Map(answer.map((r) => [r.key, r]));
    const after = this.space();
    for (const [fk, { key, item }] of offered) {
      const st = next.get(key)!.st;
      const r = rejections.get(fk);
      if (upsertFailed) {
        // Unknown outcome: keep what was accepted before (the VIP stays); the round is retried.
        const before = this.state.get(key)?.entries.get(fk);
        if (before !== undefined) st.entries.set(fk, before);
      } else if (r) st.rejected.set(fk, { rejection: r, digest: item.digest, free: CAPACITY_REJECTIONS.has(r.reason) ? after : null });
      else st.entries.set(fk, item.digest);
    }
    let vipsTouched = false;
    for (const [key, c] of next) {
      const prev = this.state.get(key);
      if (c) c.st.ready = readyAddresses(c);
      if (!c || !prev || JSON.stringify(prev.addresses) !== JSON.stringify(c.st.addresses) || prev.ready.join() !== c.st.ready.join()) vipsTouched = true;
    }

    // VIPs from the would-be state; recomputed only when an address or its
    // readiness changed (status echoes and endpoint churn usually do not).
    let vips = this.lastVips;
    if (vipsTouched) vips = this.vipsWith(next);
    const vipsDigest = createHash('sha1').update(JSON.stringify(vips)).digest('base64');
    // Until the first pass is complete the VIP set is partial, and
    // withdrawing what is not computed yet would take it off the routers.
    let vipsFailed = false;
    if (this.firstPassDone && vipsDigest !== this.lastVipsDigest) {
      try {
        await this.o.sink.applyVips(vips);
      } catch (e) {
        errors.push(e);
        vipsFailed = true;
      }
    }
    if (this.firstPassDone && !vipsFailed && removals.size > 0) {
      try {
        await this.o.sink.remove([...removals]);
        this.removedTotal += removals.size;
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) {
      // Not committed: the same Services are recomputed and diffed again
      // later (what did apply is then unchanged or ignored by the sink).
      this.sinkErrors++;
      this.failures++;
      const wait = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (this.failures - 1));
      this.log.error({ err: errors.map(String).join('; '), retryMs: wait }, 'sink failed; retrying');
      for (const k of keys) this.dirty.add(k);
      await new Promise((r) => setTimeout(r, wait));
      return;
    }
    this.failures = 0;
    if (this.firstPassDone) {
      this.lastVipsDigest = vipsDigest;
      this.lastVips = vips;
    }
    let freed = false;
    const before = new Map<string, SvcState | undefined>();
    for (const [k, c] of next) {
      const prev = this.state.get(k);
      before.set(k, prev);
      if (this.claims.commit(k, prev?.entries.keys() ?? [], c ? new Set(c.st.entries.keys()) : null)) freed = true;
      if (c === null) this.state.delete(k);
      else this.state.set(k, c.st);
    }
    for (const k of keys) this.firstPass?.delete(k);
    // A Service that lost a frontend to another one gets it once freed.
    if (freed) for (const k of this.claims.waiting()) this.dirty.add(k);
    // Frontends rejected for lack of space are offered again once there is more.
    const now = this.space();
    for (const [k, st] of this.state) for (const r of st.rejected.values()) if (r.free && moreRoom(r.free, now)) this.dirty.add(k);

    for (const [key, c] of next) if (c) this.report(key, c, before.get(key));
  }

  /** Status and Events from the outcome; held back (first report's `prev` kept) until the first pass applied the VIPs. */
  private report(key: string, c: Candidate, prev: SvcState | undefined): void {
    if (!this.firstPassDone) {
      const held = this.heldReports.get(key);
      this.heldReports.set(key, { prev: held ? held.prev : prev, problems: c.problems });
      return;
    }
    this.reportNow(c.svc, c.st, prev, c.problems);
  }

  private reportNow(svc: V1Service, st: SvcState, prev: SvcState | undefined, problems: Problem[]): void {
    this.reporter.reportRejections(svc, st, prev);
    if (this.status_) this.reporter.report(this.status_, svc, st, prev, problems);
  }

  private vipsWith(next: ReadonlyMap<string, Candidate | null>): DesiredVip[] {
    const sources = [];
    for (const [k, s] of this.state) if (!next.has(k)) sources.push({ service: k, addresses: s.addresses, readyAddresses: s.ready });
    for (const [k, c] of next) if (c) sources.push({ service: k, addresses: c.st.addresses, readyAddresses: c.st.ready });
    return desiredVips(sources, this.config);
  }

  /** Every Service known at the first sync has been computed: the complete VIPs, then what nobody wants any more goes. */
  private async completeFirstPass(): Promise<void> {
    const vips = this.vipsWith(new Map());
    const wanted = new Set<string>();
    for (const st of this.state.values()) for (const fk of st.entries.keys()) wanted.add(fk);
    const stale = [...(this.o.sink.keys?.() ?? [])].filter((k) => !wanted.has(k));
    try {
      await this.o.sink.applyVips(vips);
      if (stale.length > 0) await this.o.sink.remove(stale);
    } catch (e) {
      this.sinkErrors++;
      this.log.error({ err: String(e) }, 'sink failed at the end of the first pass; retrying');
      await new Promise((r) => setTimeout(r, 1000));
      return;
    }
    this.removedTotal += stale.length;
    this.lastVips = vips;
    this.lastVipsDigest = createHash('sha1').update(JSON.stringify(vips)).digest('base64');
    this.firstPassDone = true;
    this.log.info({ services: this.state.size, vips: vips.length, staleRemoved: stale.length }, 'first pass complete: VIPs applied, stale frontends removed');
    for (const [key, held] of this.heldReports) {
      const svc = this.getService(key);
      const st = this.state.get(key);
      if (svc && st) this.reportNow(svc, st, held.prev, held.problems);
    }
    this.heldReports.clear();
  }

  /** Allocation + desired frontends (claims and the model's own rejections applied); the sink's answer comes later. */
  private compute(key: string, svc: V1Service, prev: SvcState | undefined): Candidate {
    let addresses: Assigned[];
    let failure: SvcState['failure'] = null;
    if (this.ipam) {
      const r = this.ipam.assign(ipRequestFor(svc));
      if (r.ok) {
        addresses = r.addresses;
        this.unallocated.delete(key);
      } else {
        addresses = [];
        failure = { reason: r.reason, message: r.message };
        this.unallocated.add(key);
      }
    } else {
      addresses = this.addressesFromStatus(svc, prev);
      this.unallocated.delete(key);
    }
    const d = desiredForService(svc, this.index.slicesOf(key, (n, ns) => this.slices.get(n, ns)), this.index.nodeAddrs, this.config, addresses);
    const st: SvcState = { addresses, ready: [], failure, entries: new Map(), rejected: new Map(), nodes: [], backends: 0, advertised: prev?.advertised ?? false };
    for (const r of d.rejected) st.rejected.set(r.key, { rejection: r, digest: '', free: null });
    const nodes = new Set<string>();
    const items: Item[] = [];
    let lost = false;
    for (const ds of d.services) {
      const fk = frontendKey(ds.frontend);
      const owner = this.claims.claim(fk, key, (o) => this.state.has(o));
      if (owner !== null) {
        st.rejected.set(fk, { rejection: { key: fk, service: key, reason: 'FrontendConflict', message: `${key} ${fk}: already served for ${owner}` }, digest: '', free: null });
        lost = true;
        continue;
      }
      for (const b of ds.backends) nodes.add(b.nodeName);
      st.backends += ds.backends.length;
      items.push({ ds, fk, digest: digest(ds), active: ds.backends.some((b) => b.state === 'active') });
    }
    this.claims.setLoser(key, lost);
    st.nodes = [...nodes];
    return { svc, st, items, problems: d.problems };
  }

  /**
   * Addresses of a Service as the allocating edge published them. While
   * status is empty and no failure is reported, a Service keeps what this
   * edge knew (e.g. it just lost leadership before its write landed).
   */
  private addressesFromStatus(svc: V1Service, prev: SvcState | undefined): Assigned[] {
    const ns = svc.metadata?.namespace ?? '';
    const labels = svc.metadata?.labels ?? {};
    const out: Assigned[] = [];
    for (const ip of ingressAddresses(svc)) {
      const p = poolForAddress(this.config.pools, ip, ns, labels);
      if (p) out.push({ ip, pool: p.name });
    }
    if (out.length > 0 || !prev) return out;
    const c = svc.status?.conditions?.find((x) => x.type === CONDITION_ADVERTISED);
    if (c && FAILURE_REASONS.has(c.reason)) return out;
    return prev.addresses;
  }
}

/** Addresses with an accepted frontend that has an active backend: what this edge advertises for the Service. */
function readyAddresses(c: Candidate): string[] {
  const ready = new Set<string>();
  for (const it of c.items) if (it.active && c.st.entries.has(it.fk)) ready.add(it.ds.frontend.vip);
  return c.st.addresses.map((a) => a.ip).filter((ip) => ready.has(ip));
}
