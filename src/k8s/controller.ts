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
//
// Over 500 lines on purpose: what remains here is the round itself (mark,
// compute, program, advertise, remove, report) and its ordering rules, which
// read best in one place; trimming (trim.ts), claims (claims.ts), per-Service
// computing (service-compute.ts), the first pass (first-pass.ts) and
// reporting (reporter.ts) are modules of their own.
import { createHash, randomBytes } from 'node:crypto';
import { machineScopedId } from '../config/node-id.js';
import type { V1Service } from '@kubernetes/client-node';
import { inSomePool, IpAllocator } from '../ipam/allocator.js';
import type { Logger } from '../log/logger.js';
import { desiredVips, type Problem } from '../model/desired.js';
import { creationMs, ingressAddresses, ipRequestFor, isOurs, restoreRequestFor, serviceKey } from '../model/service.js';
import { canonicalIp } from '../net/ip.js';
import { heldAddresses, unwrittenService } from './held-allocations.js';
import type { DesiredService, DesiredVip, FrontendRejection } from '../model/types.js';
import { ClusterCache } from './cluster-cache.js';
import { allocationOrder, computeService, readyAddresses, recordOutcome, statusReflects, toOffer, waitsForRoom, type Candidate, type ComputeContext, type Item, type SvcState } from './service-compute.js';
import { EventRecorder } from './events.js';
import { RestClient } from './rest.js';
import { loadKubeConfig, type KubeConfig } from './kubeconfig.js';
import { leaseApi } from './lease-api.js';
import { LeaderElector } from './lease.js';
import { EdgePresence } from './presence.js';
import { StatusWriter, strandedRelease } from './status.js';
import { ServiceReporter } from './reporter.js';
import { FrontendClaims } from './claims.js';
import { freeSpace, moreRoom } from './sink.js';
import { FirstPass } from './first-pass.js';
import { DirtyQueue, type KeyOrder } from './dirty-queue.js';

export type { DesiredStateSink } from './sink.js';
export type { ControllerStatus, KubernetesControllerOptions } from './controller-types.js';
import type { ControllerStatus, KubernetesControllerOptions } from './controller-types.js';

const MAX_BACKOFF_MS = 30_000;
/**
 * What stop() may spend talking to the API server: pending status writes,
 * then the Lease release and the presence Lease's deletion. Then every
 * request still waiting is aborted. Each request may otherwise wait 30 s:
 * against an API server that answered nothing (a blackholed path) the
 * Leases' in-flight renewals and their release took ~150 s, past
 * edgelb.service's TimeoutStopSec (120 s), so systemd killed the agent.
 */
const STOP_BUDGET_MS = 10_000;
/** Of the budget, what is kept for the Leases: pending status writes may use the rest. */
const LEASE_RELEASE_MS = 3_000;

/**
 * Services computed per round. A round's candidates (desired frontends,
 * digests, claims) live until the sink has answered, so V8 sees them survive
 * its young-generation collections and grows that generation to match.
 * bench:k8s (10 000 Services, Node's default heap sizing), rounds of 1000 and
 * 200 alternated, six runs each: peak RSS median 302.7 MB (284–323) against
 * 277.1 MB (263.8–303.3; lower than its neighbour run in all six pairs), for
 * ~1.2 s more to program everything (median 13.5 s against 14.7 s). 100 a
 * round was no smaller (290 MB) and slower. 2026-12-06, 2-vCPU AMD EPYC.
 */
export const ROUND_SIZE = 200;

/**
 * Backend and source-range entries a round computes before it leaves the
 * rest of its Services to the next round. A round runs on the event loop from its first
 * Service to the sink call, and each entry costs ~15 µs there (computed,
 * digested, planned by the datapath): six Services of 5 000 entries were
 * one round, 200 Services at maxBackendsPerService minutes of it. Between
 * rounds the loop is free (Lease renewals, status writes).
 */
export const ROUND_BACKENDS = 65_536;

export class KubernetesController {
  private readonly o: KubernetesControllerOptions;
  private config: KubernetesControllerOptions['config'];
  private readonly log: Logger;
  private readonly kc: KubeConfig;
  private readonly rest: RestClient;
  private readonly cluster: ClusterCache;
  private readonly elector: LeaderElector;
  private readonly presence: EdgePresence;
  private readonly events: EventRecorder;
  private readonly reporter: ServiceReporter;
  private status_: StatusWriter | null = null;
  private ipam: IpAllocator | null = null;

  private readonly state = new Map<string, SvcState>();
  private readonly claims = new FrontendClaims();
  private readonly unallocated = new Set<string>();
  /**
   * Services with a frontend the sink rejected for lack of space, offered
   * again once it has more. Kept as they are committed: looking through
   * every Service's rejections after every round (startup: 50 rounds over
   * up to 10 000) was a large share of what the agent allocated.
   */
  private readonly waitingForRoom = new Set<string>();
  private readonly dirty = new DirtyQueue();
  /** The leader's order for the dirty Services (one function, so the queue keeps its sort between rounds). */
  private readonly byAllocation: KeyOrder = (keys) => allocationOrder(keys, (k) => this.getService(k));
  /** The Services of the round under way (their state is not committed yet). */
  private computing: ReadonlySet<string> = new Set();
  /** Services known at the first sync and not computed since (null: not synced yet); removals wait for it to empty. */
  private readonly firstPass = new FirstPass();
  private lastVipsDigest = createHash('sha1').update('[]').digest('base64');
  /**
   * How many VIPs were last applied. Not the VIPs themselves: the sink keeps
   * them, and an untouched set is recognised by its digest (10 000 VIP
   * objects were ~2.4 MB of the agent's heap).
   */
  private lastVipCount = 0;
  /** The config changed since the last VIPs were computed (a pool's BGP attributes are part of each VIP). */
  private vipsConfigStale = false;
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  /** Ends the wait after a failed sink call at once (stop()). */
  private wake: (() => void) | null = null;
  private running = false;
  private sinkErrors = 0;
  private failures = 0;
  private removedTotal = 0;
  private needRestore = false;
  private readonly instance: string;

  constructor(o: KubernetesControllerOptions) {
    this.o = o;
    this.config = o.config;
    this.log = o.logger.child({ component: 'k8s' });
    this.instance = o.instanceId ?? machineScopedId('edgelb-instance', undefined, true)?.slice(0, 16) ?? randomBytes(8).toString('hex');
    this.kc = o.kubeConfig ?? loadKubeConfig(o.kubeconfigPath ?? o.config.kubernetes.kubeconfig);
    this.rest = new RestClient(this.kc);
    const coord = leaseApi(this.rest);
    const k = o.config.kubernetes;
    this.cluster = new ClusterCache({
      rest: this.rest,
      logger: this.log,
      onListed: () => this.schedule(),
      onServiceSeen: (key) => this.status_?.observe(key),
      onDirty: (key) => this.markDirty(key),
      // Each status write comes back as a Service update: recomputing it
      // rebuilt the Service's whole state (frontends, backends, digests,
      // status, Events) only to find it unchanged — at 10 000 Services most
      // of the garbage V8 promoted while status was being written.
      onStatusChanged: (key, svc) => {
        if (this.computing.has(key) || !this.statusCurrent(key, svc)) this.markDirty(key);
      },
      onNodeChanged: (name) => {
        for (const [key, st] of this.state) if (st.nodes.includes(name)) this.markDirty(key);
      },
    });
    this.elector = new LeaderElector({
      api: coord,
      namespace: k.leaseNamespace,
      name: k.leaseName,
      identity: o.nodeName,
      instance: this.instance,
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
      instance: this.instance,
      onDuplicate: (other) => this.onDuplicate(other),
      leaseDurationSeconds: k.leaseDurationSeconds,
      logger: this.log,
      onChange: () => this.markAll(),
      addresses: canonicalAddresses(o.ownAddresses ?? []),
      // An endpoint may name an address that just became an edge's (or
      // stopped being one): every Service is computed again.
      onAddresses: () => this.markAll(),
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
    // Side by side: a slow Lease write must not hold back the lists (the
    // elector, started after both, gates allocation anyway).
    await Promise.all([this.presence.start(), this.cluster.start()]);
    // Stopped meanwhile (the first Lease request may wait until stop()
    // aborts it): an elector started now would run for good, its timer
    // keeping the stopped agent's process alive.
    if (this.running) this.elector.start();
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
    // A round waiting to retry a failed sink (up to 30 s) has nothing to do
    // once stopping: stop() waited that out, adding to a handover.
    this.wake?.();
    const deadline = Date.now() + STOP_BUDGET_MS;
    await this.cluster.stop();
    await this.flushing;
    // Addresses allocated but not yet in status exist only in this process:
    // the next agent (after a handover) or leader must find them there.
    await this.status_?.flush(deadline - LEASE_RELEASE_MS - Date.now());
    const leases = Promise.all([this.elector.stop(release), this.presence.stop(release)]);
    await settledBy(leases, deadline);
    this.status_?.stop();
    this.events.stop();
    // Ends what still waits for an answer (the Leases' requests included,
    // which then give up at once) and refuses anything begun later.
    this.rest.close();
    await leases;
  }

  /** This edge's own addresses changed (a reload, the uplink's address): told to the other edges, every Service recomputed. */
  setOwnAddresses(addresses: readonly string[]): void {
    this.presence.setAddresses(canonicalAddresses(addresses));
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
    this.vipsConfigStale = true;
    for (const st of this.state.values()) for (const r of st.rejected.values()) r.digest = '';
    if (this.ipam) {
      this.ipam = new IpAllocator(config.pools);
      this.needRestore = true;
    }
    this.markAll();
  }

  status(): ControllerStatus {
    const informers = this.cluster.stats();
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
      lastError: Object.entries(informers).map(([name, s]) => (s.lastError ? `${name}: ${s.lastError}` : '')).find((e) => e) ?? '',
      synced: all.every((s) => s.synced),
      firstPassDone: this.firstPass.done,
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
      vips: this.lastVipCount,
      unallocated: this.unallocated.size,
      advertisingEdges: this.presence.edges(),
      duplicateName: this.presence.duplicate(),
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

  /** Whether `svc`'s status says what the Service's committed state was computed to (see statusReflects). */
  private statusCurrent(key: string, svc: V1Service): boolean {
    const st = this.state.get(key);
    return st !== undefined && statusReflects(st, svc);
  }

  private markDirty(key: string): void {
    this.dirty.add(key);
    this.schedule();
  }

  private markAll(): void {
    for (const k of this.cluster.serviceKeys()) this.dirty.add(k);
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

  /** Another machine writes this edge's presence Lease: a Warning Event on it (the agent also reports it in status and a metric). */
  private onDuplicate(other: string | null): void {
    if (other === null) return;
    const ref = this.presence.leaseRef();
    this.events.recordFor(
      { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', ...ref },
      'Warning',
      'DuplicateEdgeName',
      `two machines present the edge name ${this.o.nodeName} (instances ${this.instance} and ${other}); only one of them may allocate — give each edge its own node.name`,
    );
  }

  // --- leadership -------------------------------------------------------

  private becomeLeader(): void {
    this.ipam = new IpAllocator(this.config.pools);
    this.needRestore = true;
    // Leading before the first pass is complete: compute it (again) with the
    // allocator, which knows addresses status may not show yet.
    this.firstPass.restart(this.cluster.serviceKeys());
    this.status_ = new StatusWriter({
      rest: this.rest,
      logger: this.log,
      get: (key) => this.getService(key),
      concurrency: this.o.statusConcurrency ?? 16,
    });
    this.markAll();
  }

  /**
   * Replays every owned Service's status into a fresh allocator, so no later
   * round hands out an address some Service already shows in status
   * (restart stability across batches). First the Services this edge serves
   * at the addresses their status shows, then the others, oldest first:
   * where two statuses claim one address, status alone cannot tell the owner
   * — someone with access to status may have written it into another
   * Service while no edge led, and the older one took it (and its clients)
   * — but an edge that followed until now served it for its owner.
   */
  private restoreAllocations(): void {
    this.needRestore = false;
    const owned = this.cluster.serviceList().filter((s) => isOurs(s, this.config.kubernetes) && ingressAddresses(s).length > 0);
    const served = new Set(owned.filter((s) => this.servesStatus(s)).map(serviceKey));
    const rank = (s: V1Service) => (served.has(serviceKey(s)) ? 0 : 1);
    owned.sort((a, b) => rank(a) - rank(b) || creationMs(a) - creationMs(b) || (serviceKey(a) < serviceKey(b) ? -1 : 1));
    for (const svc of owned) this.ipam!.assign(restoreRequestFor(svc));
    this.restoreUnwritten(owned);
  }

  /** Whether this edge serves `svc` at the addresses its status shows (none of them lost to another Service). */
  private servesStatus(svc: V1Service): boolean {
    const st = this.state.get(serviceKey(svc));
    if (!st || st.entries.size === 0) return false;
    for (const r of st.rejected.values()) if (r.rejection.reason === 'FrontendConflict') return false;
    return statusReflects(st, svc);
  }

  /**
   * Services of ours whose status names no address, though this edge holds
   * one for them — its own state (given out here, the status write still on
   * its way or refused: a reload rebuilds the allocator) or, failing that, a
   * frontend the sink adopted from the pinned maps that is recognisably
   * theirs (an allocating edge was killed before its status writes landed,
   * held-allocations.ts). They get that address back, oldest first, before
   * anything is allocated afresh. From status alone, a reload handed such a
   * Service the lowest free address — often one a Service deleted meanwhile
   * held — and moved its frontends and VIP there.
   */
  private restoreUnwritten(owned: readonly V1Service[]): void {
    const unwritten = this.cluster.serviceList().filter((s) => isOurs(s, this.config.kubernetes) && ingressAddresses(s).length === 0);
    if (unwritten.length === 0) return;
    unwritten.sort((a, b) => creationMs(a) - creationMs(b) || (serviceKey(a) < serviceKey(b) ? -1 : 1));
    const claimed = new Set(owned.flatMap((s) => ingressAddresses(s).map((ip) => canonicalIp(ip) ?? ip)));
    const rest: V1Service[] = [];
    let own = 0;
    for (const svc of unwritten) {
      // (Only what this object was given: one deleted and created again
      // under its name since is a new Service.)
      const st = this.state.get(serviceKey(svc));
      const mine = st !== undefined && st.uid === svc.metadata?.uid ? st.addresses.map((a) => a.ip) : [];
      if (mine.length > 0 && this.ipam!.assign({ ...ipRequestFor(svc), requested: mine, replayed: true }).ok) {
        own++;
        for (const ip of mine) claimed.add(ip);
      } else rest.push(svc);
    }
    if (own > 0) this.log.info({ services: own }, 'addresses kept that this edge gave out and status does not show yet');
    const held = this.o.sink.adoptedFrontends?.() ?? [];
    if (held.length === 0 || rest.length === 0) return;
    const found = heldAddresses(rest.map((s) => unwrittenService(s, this.cluster.slicesOf(serviceKey(s)))), held, claimed);
    let restored = 0;
    for (const svc of rest) {
      const addresses = found.get(serviceKey(svc));
      if (addresses && this.ipam!.assign({ ...ipRequestFor(svc), requested: addresses, replayed: true }).ok) restored++;
    }
    if (restored > 0) this.log.info({ services: restored }, 'addresses restored from adopted frontends (their status was never written)');
  }

  private loseLeadership(): void {
    this.ipam = null;
    this.status_?.stop();
    this.status_ = null;
    this.markAll();
  }

  // --- reconciliation ---------------------------------------------------

  /**
   * The addresses to take back from a Service that is no longer ours: those
   * this process gave it or, never ours in this process but carrying our
   * condition, an earlier leader's (strandedRelease). Null: nothing to undo.
   */
  private releaseOf(svc: V1Service, prev: SvcState | undefined): readonly string[] | null {
    if (prev) return prev.addresses.map((a) => a.ip);
    if (!this.status_) return null;
    return strandedRelease(svc, (ip) => inSomePool(this.config.pools, ip));
  }

  private getService(key: string): V1Service | undefined {
    return this.cluster.service(key);
  }

  private synced(): boolean {
    return this.cluster.synced();
  }

  private flush(): Promise<void> {
    if (this.flushing) return this.flushing;
    this.flushing = this.doFlush()
      .catch((e: unknown) => this.log.error({ err: String(e) }, 'reconcile failed'))
      .finally(() => {
        this.flushing = null;
        // Before the first full sync the informers' onListed wakes us.
        if (this.dirty.size > 0 && this.synced()) this.schedule();
        // Waiting only to learn who allocates: look again a little later.
        else if (this.firstPass.waiting() && this.synced()) this.schedule(200);
      });
    return this.flushing;
  }

  /** The sink's free space (or, for a sink that does not report it, how much it has been asked to remove). */
  private space(): number[] {
    return this.o.sink.capacity ? freeSpace(this.o.sink.capacity()) : [this.removedTotal];
  }

  private async doFlush(): Promise<void> {
    if (!this.synced()) return;
    // (A thunk: only the first call reads the keys, not every round.)
    this.firstPass.begin(() => this.cluster.serviceKeys());
    if (this.dirty.size > 0) await this.round();
    if (this.firstPass.ready(this.leadershipSettled(), 2000 * this.config.kubernetes.leaseDurationSeconds)) await this.completeFirstPass();
  }

  /**
   * Whether it is known who allocates: the Lease has been read, and if it
   * names this edge (a restart), this edge leads — then the first pass was
   * computed with the allocator, not from a status that may lag behind it.
   */
  private leadershipSettled(): boolean {
    if (!this.elector.hasRead()) return false;
    return this.elector.holder() !== this.o.nodeName || this.elector.isLeader();
  }

  /** One bounded round: compute, hand the changes to the sink, report what it did. */
  private async round(): Promise<void> {
    const leader = this.ipam !== null;
    if (leader && this.needRestore) this.restoreAllocations();
    // Bounded rounds keep the transient memory of a big change (startup,
    // relist) small and let the first Services reach the sink early.
    const keys = this.dirty.take(this.o.roundSize ?? ROUND_SIZE, leader ? this.byAllocation : null);
    this.computing = new Set(keys);
    try {
      await this.computeRound(keys);
    } finally {
      this.computing = new Set();
    }
  }

  private async computeRound(keys: string[]): Promise<void> {
    const space = this.space();
    const ctx: ComputeContext = {
      config: { ...this.config, edgeAddresses: this.presence.addresses() }, ipam: this.ipam, claims: this.claims, live: (o) => this.state.has(o),
      slicesOf: (k) => this.cluster.slicesOf(k), nodeAddrs: this.cluster.nodeAddrs,
    };
    const next = new Map<string, Candidate | null>();
    const upserts: DesiredService[] = [];
    const offered = new Map<string, { key: string; item: Item }>();
    const removals = new Set<string>();
    /** The Services of `keys` this round computed (the rest went back to the dirty queue). */
    const done: string[] = [];
    let entries = 0;
    const budget = this.o.roundBackends ?? ROUND_BACKENDS;
    // Services refused an address before a holder let go of one or loosened
    // its terms, in this round: they are decided again in the next one.
    // Refused after it, they saw the looser state; a retry frees nothing,
    // so retries end.
    let loosened = false;
    const refusedSoFar: string[] = [];
    const retry = new Set<string>();
    const noteLoosened = () => {
      if (!this.ipam?.takeLoosened()) return;
      loosened = true;
      for (const k of refusedSoFar) retry.add(k);
      refusedSoFar.length = 0;
    };
    this.claims.beginRound();
    for (const key of keys) {
      if (entries >= budget) {
        this.dirty.add(key);
        continue;
      }
      done.push(key);
      const prev = this.state.get(key);
      const svc = this.getService(key);
      if (!svc || !isOurs(svc, this.config.kubernetes)) {
        if (prev) {
          for (const fk of prev.entries.keys()) removals.add(fk);
          next.set(key, null);
        }
        this.ipam?.release(key);
        noteLoosened();
        this.unallocated.delete(key);
        // Gone: nothing more to write. Still here and released in an earlier
        // round: that release stays until it is done (the status writer then
        // forgets it). Forgotten at this Service's next version, a release
        // refused meanwhile (409: the Service changed while the write was on
        // its way — another class's controller wrote its status) was never
        // tried again, and our condition stayed on a Service no longer ours.
        const release = svc ? this.releaseOf(svc, prev) : null;
        if (release) this.status_?.set(key, { uid: svc?.metadata?.uid, ingress: [], condition: null, release });
        else if (!svc) this.status_?.set(key, null);
        continue;
      }
      let c: Candidate;
      try {
        c = (this.o.compute ?? computeService)(ctx, key, svc, prev);
      } catch (e) {
        // A bug met by one Service must not cost the rest of the round: it
        // keeps what it had (its frontends stay programmed) and is tried
        // again when it changes.
        this.log.error({ err: e, service: key }, 'computing this Service failed; it keeps its current state');
        noteLoosened();
        continue;
      }
      entries += c.st.backends;
      for (const it of c.items) entries += it.ds.sourceRanges.length;
      if (ctx.ipam && c.st.failure) {
        this.unallocated.add(key);
        refusedSoFar.push(key);
      } else this.unallocated.delete(key);
      noteLoosened();
      for (const item of toOffer(c, prev, space)) {
        upserts.push(item.ds);
        offered.set(item.fk, { key, item });
      }
      for (const fk of prev?.entries.keys() ?? []) if (!c.st.entries.has(fk) && !offered.has(fk)) removals.add(fk);
      next.set(key, c);
    }
    this.claims.endRound();
    // A frontend handed from one Service to another in the same round is replaced, not removed.
    for (const fk of offered.keys()) removals.delete(fk);
    if (loosened) {
      // Freed addresses, or looser terms on a held one, may satisfy
      // Services that are waiting for one.
      for (const k of this.unallocated) if (!next.has(k) || retry.has(k)) this.dirty.add(k);
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
      const outcome = upsertFailed ? 'unknown' : (rejections.get(fk) ?? 'accepted');
      recordOutcome(next.get(key)!.st, item, outcome, this.state.get(key), after);
    }
    let vipsTouched = false;
    for (const [key, c] of next) {
      const prev = this.state.get(key);
      if (c) c.st.ready = readyAddresses(c);
      if (!c || !prev || JSON.stringify(prev.addresses) !== JSON.stringify(c.st.addresses) || prev.ready.join() !== c.st.ready.join()) vipsTouched = true;
    }

    // VIPs from the would-be state; recomputed only when an address or its
    // readiness changed (status echoes and endpoint churn usually do not).
    // lastVipCount and lastVipsDigest are always set together, so an
    // untouched set needs no new digest: serialising all 10 000 VIPs for
    // every round of status echoes was most of the agent's CPU at that scale.
    // Nor during the first pass, which applies no VIPs (below) and sets no
    // digest: every round of it had built and serialised the VIPs of all
    // Services computed so far — 50 rounds of up to 10 000 at startup, the
    // largest allocation in bench:k8s's heap profile.
    let vips: DesiredVip[] | null = null;
    let vipsDigest = this.lastVipsDigest;
    const vipsConfigStale = this.vipsConfigStale;
    const vipsConfig = this.config;
    if (this.firstPass.done && (vipsTouched || vipsConfigStale)) {
      vips = this.vipsWith(next);
      vipsDigest = createHash('sha1').update(JSON.stringify(vips)).digest('base64');
    }
    // Until the first pass is complete the VIP set is partial, and
    // withdrawing what is not computed yet would take it off the routers.
    let vipsFailed = false;
    if (this.firstPass.done && vips !== null && vipsDigest !== this.lastVipsDigest) {
      try {
        await this.o.sink.applyVips(vips);
      } catch (e) {
        errors.push(e);
        vipsFailed = true;
      }
    }
    if (this.firstPass.done && !vipsFailed && removals.size > 0) {
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
      for (const k of done) this.dirty.add(k);
      await this.pause(wait);
      return;
    }
    this.failures = 0;
    if (this.firstPass.done) {
      this.lastVipsDigest = vipsDigest;
      if (vips !== null) this.lastVipCount = vips.length;
      // Cleared only if no reload came in while this round awaited the sinks.
      if (vipsConfigStale && this.config === vipsConfig) this.vipsConfigStale = false;
    }
    let freed = false;
    const before = new Map<string, SvcState | undefined>();
    for (const [k, c] of next) {
      const prev = this.state.get(k);
      // Reported as new: another object under the same name (a new uid).
      before.set(k, prev !== undefined && c !== null && prev.uid !== c.st.uid ? undefined : prev);
      if (this.claims.commit(k, prev?.entries.keys() ?? [], c ? new Set(c.st.entries.keys()) : null)) freed = true;
      if (c === null) this.state.delete(k);
      else this.state.set(k, c.st);
      if (c !== null && waitsForRoom(c.st)) this.waitingForRoom.add(k);
      else this.waitingForRoom.delete(k);
    }
    this.firstPass.computed(done);
    // A Service that lost a frontend to another one gets it once freed.
    if (freed) for (const k of this.claims.waiting()) this.dirty.add(k);
    // Frontends rejected for lack of space are offered again once there is more.
    const now = this.space();
    for (const k of this.waitingForRoom) {
      const st = this.state.get(k);
      if (st) for (const r of st.rejected.values()) if (r.free && moreRoom(r.free, now)) this.dirty.add(k);
    }

    for (const [key, c] of next) if (c) this.report(key, c, before.get(key));
  }

  /** Waits `ms` before a retry, or until stop(). */
  private pause(ms: number): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.wake?.(), ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }

  /** Status and Events from the outcome; held back (first report's `prev` kept) until the first pass applied the VIPs. */
  private report(key: string, c: Candidate, prev: SvcState | undefined): void {
    if (!this.firstPass.done) {
      this.firstPass.hold(key, prev, c.problems);
      return;
    }
    this.reportNow(key, c.svc, c.st, prev, c.problems);
  }

  private reportNow(key: string, svc: V1Service, st: SvcState, prev: SvcState | undefined, problems: Problem[]): void {
    this.reporter.reportRejections(svc, st, prev);
    if (this.status_) this.reporter.report(this.status_, svc, st, prev, problems, key);
  }

  private vipsWith(next: ReadonlyMap<string, Candidate | null>): DesiredVip[] {
    const sources = [];
    for (const [k, s] of this.state) if (!next.has(k)) sources.push({ service: k, addresses: s.addresses, readyAddresses: s.ready });
    for (const [k, c] of next) if (c) sources.push({ service: k, addresses: c.st.addresses, readyAddresses: c.st.ready });
    return desiredVips(sources, this.config);
  }

  /** Every Service known at the first sync has been computed: the complete VIPs, then what nobody wants any more goes. */
  private async completeFirstPass(): Promise<void> {
    const held = await this.applyFirstPass();
    if (held === null) return;
    // The held reports are written only once applyFirstPass has returned:
    // while its VIP set (10 000 objects), the wanted frontends and the stale
    // list were still referenced, the ~10 000 reports' allocations made V8
    // copy and promote them all.
    for (const [key, h] of held) {
      const svc = this.getService(key);
      const st = this.state.get(key);
      if (svc && st) this.reportNow(key, svc, st, h.prev, h.problems);
    }
  }

  /** The complete VIP set applied, the frontends nobody wants removed, the pass finished: its held reports; null (after a pause) if the sink failed. */
  private async applyFirstPass(): Promise<ReturnType<FirstPass['finish']> | null> {
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
      await this.pause(1000);
      return null;
    }
    this.removedTotal += stale.length;
    this.lastVipCount = vips.length;
    this.lastVipsDigest = createHash('sha1').update(JSON.stringify(vips)).digest('base64');
    const held = this.firstPass.finish();
    this.log.info({ services: this.state.size, vips: vips.length, staleRemoved: stale.length }, 'first pass complete: VIPs applied, stale frontends removed');
    return held;
  }
}

/** Canonical, distinct and sorted: how the presence Lease carries them. */
function canonicalAddresses(addresses: readonly string[]): string[] {
  const out = new Set<string>();
  for (const a of addresses) {
    const ip = canonicalIp(a.trim());
    if (ip !== null) out.add(ip);
  }
  return [...out].sort();
}

/** Resolves once `p` settled or at `deadline` (ms since the epoch), whichever comes first. */
async function settledBy(p: Promise<unknown>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))));
  try {
    await Promise.race([p.then(() => undefined, () => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}
