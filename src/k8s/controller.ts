// The Kubernetes side of the agent: watches Services, EndpointSlices and
// Nodes, allocates addresses (on the elected edge), writes status, Events
// and conditions, and feeds the desired state to a sink (BGP + datapath)
// incrementally.
//
// - Incremental: every informer event marks only the affected Services
//   dirty; a debounced flush recomputes those, diffs each against what the
//   sink last accepted and hands over only changed and removed frontends.
// - Ordering: new/changed frontends are programmed before VIPs are
//   advertised, and removed frontends are dropped only after the VIP set
//   without them has been applied, so traffic is never attracted to an
//   unprogrammed frontend.
// - Disconnects: informers keep their caches while the API is unreachable
//   and nothing is recomputed from missing data, so nothing is withdrawn.
//   A relist after 410 replaces a cache in one synchronous step and the
//   flush runs a tick later, so objects that reappear cause no removal.
// - Several edges: the Lease holder allocates and writes status; the other
//   edges take addresses from status.loadBalancer.ingress (only those inside
//   a pool that admits the Service).
import { createHash } from 'node:crypto';
import { CoordinationV1Api, type KubeConfig, type V1EndpointSlice, type V1Node, type V1Service } from '@kubernetes/client-node';
import type { EdgelbConfig } from '../config/types.js';
import { IpAllocator, poolForAddress, type Assigned, type FailureReason } from '../ipam/allocator.js';
import type { Logger } from '../log/logger.js';
import { desiredForService, desiredVips, type DesiredConfig, frontendKey, nodeAddresses, SERVICE_NAME_LABEL, type NodeAddresses, type Problem } from '../model/desired.js';
import { CONDITION_ADVERTISED, creationMs, ingressAddresses, ipRequestFor, isOurs, serviceKey } from '../model/service.js';
import type { DesiredService, DesiredVip } from '../model/types.js';
import { EventRecorder } from './events.js';
import { RestClient } from './rest.js';
import { loadKubeConfig } from './kubeconfig.js';
import { ResilientInformer, type InformerStats } from './informer.js';
import { LeaderElector } from './lease.js';
import { EdgePresence } from './presence.js';
import { StatusWriter } from './status.js';
import { ServiceReporter } from './reporter.js';
import { trimNode, trimService, trimSlice } from './trim.js';
import { FrontendClaims } from './claims.js';

/** Receives the desired state; calls are serialised (the next waits for the previous). */
export interface DesiredStateSink {
  /** Frontends added or changed, and removed frontends by `frontendKey`. */
  applyServices(changed: DesiredService[], removed: string[]): void | Promise<void>;
  /** The complete set of VIPs to advertise (only those with a ready endpoint). */
  applyVips(vips: DesiredVip[]): void | Promise<void>;
}

export interface KubernetesControllerOptions {
  /** An EdgelbConfig fits; only kubernetes, pools and datapath.mode/dispatch are read. */
  config: DesiredConfig & Pick<EdgelbConfig, 'kubernetes'>;
  /** Overrides config.kubernetes.kubeconfig; empty = in-cluster / $KUBECONFIG. */
  kubeconfigPath?: string;
  /** An already loaded KubeConfig (tests); wins over paths. */
  kubeConfig?: KubeConfig;
  /** This edge's name: Lease identity and Event source. */
  nodeName: string;
  logger: Logger;
  sink: DesiredStateSink;
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
  frontends: number;
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

interface SvcState {
  addresses: Assigned[];
  ready: string[];
  /** frontendKey → digest of the entry's JSON as last given to the sink (the sink keeps the objects). */
  entries: Map<string, string>;
  nodes: string[];
  backends: number;
  failure: { reason: FailureReason; message: string } | null;
  advertised: boolean;
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

function parseKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
}

export class KubernetesController {
  private readonly o: KubernetesControllerOptions;
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

  private readonly nodeAddrs = new Map<string, NodeAddresses>();
  private readonly sliceOwner = new Map<string, string>();
  private readonly slicesBySvc = new Map<string, Set<string>>();
  private readonly state = new Map<string, SvcState>();
  private readonly claims = new FrontendClaims();
  private readonly fingerprints = new Map<string, string>();
  private readonly unallocated = new Set<string>();
  private readonly dirty = new Set<string>();
  private lastVipsDigest = createHash('sha1').update('[]').digest('base64');
  private lastVips: DesiredVip[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private running = false;
  private sinkErrors = 0;
  private needRestore = false;

  constructor(o: KubernetesControllerOptions) {
    this.o = o;
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
      onEvent: (ev, s) => this.onSlice(ev, s),
    });
    this.nodes = new ResilientInformer<V1Node>({
      ...common,
      name: 'nodes',
      path: '/api/v1/nodes',
      list: () => this.rest.listAll('/api/v1/nodes', trimNode),
      project: trimNode,
      onEvent: (ev, n) => this.onNode(ev, n),
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
    this.events = new EventRecorder({
      rest: this.rest,
      component: 'edgelb',
      host: o.nodeName,
      logger: this.log,
      holdWhile: () => (this.status_?.pending() ?? 0) > 0,
    });
    this.reporter = new ServiceReporter(this.events, () => this.presence.edges());
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
    await this.elector.stop(release);
    await this.presence.stop(release);
    this.status_?.stop();
    this.events.stop();
    this.rest.close();
  }

  /** Whether this edge currently advertises (e.g. a BGP session is up); reported to the other edges. */
  setAdvertising(v: boolean): void {
    this.presence.setAdvertising(v);
  }

  status(): ControllerStatus {
    const informers = { services: this.services.stats(), endpointslices: this.slices.stats(), nodes: this.nodes.stats() };
    const all = Object.values(informers);
    let frontends = 0;
    let endpoints = 0;
    const inUse = new Map<string, Set<string>>();
    for (const s of this.state.values()) {
      frontends += s.entries.size;
      endpoints += s.backends;
      for (const a of s.addresses) {
        let set = inUse.get(a.pool);
        if (!set) inUse.set(a.pool, (set = new Set()));
        set.add(a.ip);
      }
    }
    return {
      connected: all.every((s) => s.connected),
      synced: all.every((s) => s.synced),
      leader: this.elector.isLeader(),
      leaderIdentity: this.elector.holder(),
      watchRestarts: all.reduce((n, s) => n + Math.max(0, s.watchStarts - 1), 0),
      relists: all.reduce((n, s) => n + Math.max(0, s.lists - 1), 0),
      informers,
      services: this.state.size,
      frontends,
      endpoints,
      pools: this.o.config.pools.map((p) => ({ pool: p.name, used: inUse.get(p.name)?.size ?? 0 })),
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

  private onSlice(ev: string, s: V1EndpointSlice): void {
    const sliceKey = `${s.metadata?.namespace ?? ''}/${s.metadata?.name ?? ''}`;
    const svcName = s.metadata?.labels?.[SERVICE_NAME_LABEL];
    const owner = ev === 'delete' || !svcName ? null : `${s.metadata?.namespace ?? ''}/${svcName}`;
    const old = this.sliceOwner.get(sliceKey);
    if (old !== undefined && old !== owner) {
      this.slicesBySvc.get(old)?.delete(sliceKey);
      if (this.slicesBySvc.get(old)?.size === 0) this.slicesBySvc.delete(old);
      this.sliceOwner.delete(sliceKey);
      this.markDirty(old);
    }
    if (owner !== null) {
      this.sliceOwner.set(sliceKey, owner);
      let set = this.slicesBySvc.get(owner);
      if (!set) this.slicesBySvc.set(owner, (set = new Set()));
      set.add(sliceKey);
      this.markDirty(owner);
    }
  }

  private onNode(ev: string, n: V1Node): void {
    const name = n.metadata?.name ?? '';
    const prev = this.nodeAddrs.get(name);
    if (ev === 'delete') this.nodeAddrs.delete(name);
    else this.nodeAddrs.set(name, nodeAddresses(n));
    const cur = this.nodeAddrs.get(name);
    if (prev?.v4 === cur?.v4 && prev?.v6 === cur?.v6) return;
    for (const [key, st] of this.state) if (st.nodes.includes(name)) this.markDirty(key);
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
    this.ipam = new IpAllocator(this.o.config.pools);
    this.needRestore = true;
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
    const owned = this.services.list().filter((s) => isOurs(s, this.o.config.kubernetes) && ingressAddresses(s).length > 0);
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

  private slicesOf(key: string): V1EndpointSlice[] {
    const out: V1EndpointSlice[] = [];
    for (const sk of this.slicesBySvc.get(key) ?? []) {
      const [ns, name] = parseKey(sk);
      const s = this.slices.get(name, ns);
      if (s) out.push(s);
    }
    return out;
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
        if (this.dirty.size > 0 && this.synced()) this.schedule();
      });
    return this.flushing;
  }

  private async doFlush(): Promise<void> {
    if (!this.synced() || this.dirty.size === 0) return;
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
    const changed: DesiredService[] = [];
    const removedSet = new Set<string>();
    this.claims.beginRound();
    const next = new Map<string, SvcState | null>();
    let released = false;
    let vipsTouched = false;
    for (const key of keys) {
      const prev = this.state.get(key);
      const svc = this.getService(key);
      if (!svc || !isOurs(svc, this.o.config.kubernetes)) {
        if (prev) {
          for (const fk of prev.entries.keys()) removedSet.add(fk);
          next.set(key, null);
          vipsTouched = true;
        }
        if (this.ipam?.assignmentOf(key)) released = true;
        this.ipam?.release(key);
        this.unallocated.delete(key);
        if (svc && prev && this.status_) this.status_.set(key, { ingress: [], condition: null });
        else this.status_?.set(key, null);
        continue;
      }
      const { st, list } = this.compute(key, svc, prev);
      if (prev && prev.addresses.some((a) => !st.addresses.some((b) => b.ip === a.ip))) released = true;
      if (!prev || JSON.stringify(prev.addresses) !== JSON.stringify(st.addresses) || prev.ready.join() !== st.ready.join()) vipsTouched = true;
      for (const ds of list) {
        const fk = frontendKey(ds.frontend);
        if (prev?.entries.get(fk) !== st.entries.get(fk)) changed.push(ds);
      }
      for (const fk of prev?.entries.keys() ?? []) if (!st.entries.has(fk)) removedSet.add(fk);
      next.set(key, st);
    }
    this.claims.endRound();
    if (released && leader) {
      // Freed addresses may satisfy Services that are waiting for one.
      for (const k of this.unallocated) if (!next.has(k)) this.dirty.add(k);
    }
    for (const ds of changed) removedSet.delete(frontendKey(ds.frontend));
    const removed = [...removedSet];

    // VIPs from the would-be state; recomputed only when an address or its
    // readiness changed (status echoes and endpoint churn usually do not).
    let vips = this.lastVips;
    let vipsDigest = this.lastVipsDigest;
    if (vipsTouched) {
      const sources = [];
      for (const [k, s] of this.state) if (!next.has(k)) sources.push({ service: k, addresses: s.addresses, readyAddresses: s.ready });
      for (const [k, s] of next) if (s) sources.push({ service: k, addresses: s.addresses, readyAddresses: s.ready });
      vips = desiredVips(sources, this.o.config);
      vipsDigest = createHash('sha1').update(JSON.stringify(vips)).digest('base64');
    }

    try {
      if (changed.length > 0) await this.o.sink.applyServices(changed, []);
      if (vipsDigest !== this.lastVipsDigest) await this.o.sink.applyVips(vips);
      if (removed.length > 0) await this.o.sink.applyServices([], removed);
    } catch (e) {
      // Not committed: the same keys are recomputed and diffed again later.
      this.sinkErrors++;
      this.log.error({ err: String(e) }, 'sink rejected desired state; retrying');
      for (const k of keys) this.dirty.add(k);
      await new Promise((r) => setTimeout(r, 1000));
      return;
    }
    this.lastVipsDigest = vipsDigest;
    this.lastVips = vips;
    let freed = false;
    for (const [k, s] of next) {
      const prev = this.state.get(k);
      if (this.claims.commit(k, prev?.entries.keys() ?? [], s ? new Set(s.entries.keys()) : null)) freed = true;
      if (s === null) this.state.delete(k);
      else this.state.set(k, s);
    }
    // A Service that lost a frontend to another one gets it once freed.
    if (freed) for (const k of this.claims.waiting()) this.dirty.add(k);
  }

  /** Allocation + desired entries + (on the leader) status, Events. */
  private compute(key: string, svc: V1Service, prev: SvcState | undefined): { st: SvcState; list: DesiredService[] } {
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
    const { list, ready, problems, entries, nodes, conflict } = this.entriesOf(key, svc, addresses);
    this.claims.setLoser(key, conflict);
    const backends = list.reduce((n, ds) => n + ds.backends.length, 0);
    const st: SvcState = { addresses, ready, entries, nodes, backends, failure, advertised: prev?.advertised ?? false };
    if (this.status_) this.reporter.report(this.status_, svc, st, prev, problems);
    return { st, list };
  }

  private entriesOf(key: string, svc: V1Service, addresses: Assigned[]) {
    const d = desiredForService(svc, this.slicesOf(key), this.nodeAddrs, this.o.config, addresses);
    const problems: Problem[] = [...d.problems];
    const entries = new Map<string, string>();
    const nodes = new Set<string>();
    const list: DesiredService[] = [];
    let conflict = false;
    for (const ds of d.services) {
      const fk = frontendKey(ds.frontend);
      const owner = this.claims.claim(fk, key, (o) => this.state.has(o));
      if (owner !== null) {
        problems.push({ reason: 'FrontendConflict', message: `${fk} is already served for ${owner}` });
        conflict = true;
        continue;
      }
      for (const b of ds.backends) nodes.add(b.nodeName);
      entries.set(fk, digest(ds));
      list.push(ds);
    }
    return { list, ready: d.readyAddresses, problems, entries, nodes: [...nodes], conflict };
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
      const p = poolForAddress(this.o.config.pools, ip, ns, labels);
      if (p) out.push({ ip, pool: p.name });
    }
    if (out.length > 0 || !prev) return out;
    const c = svc.status?.conditions?.find((x) => x.type === CONDITION_ADVERTISED);
    if (c && FAILURE_REASONS.has(c.reason)) return out;
    return prev.addresses;
  }
}
