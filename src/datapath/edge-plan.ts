// The edge datapath's planner: pure (no maps, no syscalls), so it is tested
// without root. It owns what the maps hold — per frontend its service id,
// backend ids, Maglev region and table, source ranges — and turns upserts,
// removals and path-dispatch changes into an EdgePlan: the entries to write,
// in an order the writer keeps (see edge-writer.ts), plus the ids and
// regions to release once nothing points at them any more.
// It also owns the second chance's previous Maglev tables (second-chance.ts):
// their regions come from the same allocator, their writes go into the same
// plan, ahead of the ring.
//
// Failure isolation: every frontend is planned on its own. One that this
// datapath cannot serve (a family it does not forward, a value it cannot
// encode, no id or ring slot left) is rejected with a reason and, if an
// older version of it was programmed, removed; nothing of it is half
// written and the other frontends of the same call are planned as usual.
// Allocation comes first and is undone on failure, so a rejected frontend
// leaves no trace in the plan.
//
// Over 500 lines on purpose: each allocation (ids, regions, previous tables)
// sits next to its undo and its release, so the planner's invariants can be
// checked in one file; encoding (edge-maps.ts), validation
// (edge-frontend-check.ts), Maglev and the allocators are separate.
import type { DatapathMode } from '../config/types.js';
import type { Backend, DesiredService, FrontendRejection, L4Proto, RejectReason } from '../model/types.js';
import { frontendKey } from '../model/desired.js';
import { PackedBatch } from './edge-batch.js';
import { Rejected, normaliseCidr, sameDesired, validate } from './edge-frontend-check.js';
import { IdAllocator, RegionAllocator } from './edge-regions.js';
import { chooseTableSize, maglevTable, primeForClass } from './maglev.js';
import { PreviousTables, tableChanged, type PreviousWrites, type ScPrev } from './second-chance.js';
import {
  BACKEND6_SIZE,
  BACKEND_SIZE,
  SVC6_KEY_SIZE,
  encodeBackend6Into,
  encodeSrcRange6Key,
  encodeSvc6Key,
  type BackendValue,
  BE_F_ACTIVE,
  BE_F_IPIP,
  BE_F_VALID,
  EDGE_RING_PER_ELEM,
  SVC_F_MARKER,
  SVC_F_SNAT,
  SVC_F_SRC_RANGES,
  SVC_KEY_SIZE,
  SVC_VALUE_SIZE,
  encodeBackendInto,
  encodeSrcRangeKey,
  encodeSvc,
  encodeSvcKey,
} from './edge-maps.js';
import { ipFamily } from '../net/ip.js';
import { protoNumber } from '../net/l4.js';

export type PathDispatch = 'ip-option' | 'ipip';

export interface PlannerLimits {
  /** Slots of edge_ring (a power of two). */
  ringSlots: number;
  /** Service ids are 1 .. serviceIds-1 (0 marks "no service"). */
  serviceIds: number;
  /** Backend ids are 1 .. backendIds-1. */
  backendIds: number;
  /** Upper bound of a service's Maglev table (datapath.maglevTableSize). */
  maglevTableSize: number;
  /** Dispatch of `auto` services towards nodes the prober has no verdict for. */
  autoDispatchDefault: PathDispatch;
  /** How long a service's previous Maglev table is kept after a change, in ns (docs/second-chance.md); 0 or absent = off. */
  secondChanceNs?: bigint;
  /** CLOCK_MONOTONIC in ns, the clock of the datapath's bpf_ktime_get_coarse_ns. */
  clockNs?: () => bigint;
  /** IPv6 frontends are served (the IPv6 maps are sized for use: EdgeDatapathOptions.ipv6). */
  ipv6?: boolean;
  /** Entries of edge_services / edge_services6: a frontend's entry and one marker per VIP (absent: unbounded). */
  serviceEntries?: number;
  serviceEntries6?: number;
  /** Entries of edge_src_ranges / edge_src_ranges6, shared by every frontend's source ranges (absent: unbounded). */
  srcRanges?: number;
  srcRanges6?: number;
}

/**
 * The slots of a region as the maps hold them: after a restart the planner
 * knows a frontend's region but not its table, and the second chance needs
 * the table in force before a change. Injected by EdgeDatapath (the planner
 * itself does no I/O; without a reader the first change after a restart
 * keeps no previous table).
 */
export type RegionReader = (ringOff: number, cls: number) => Uint32Array;

interface PlannedBackend {
  id: number;
  b: Backend;
  flags: number;
}

/** One programmed frontend as the maps hold it. */
export interface FrontendState {
  key: string;
  /** The VIP's family: which maps hold the frontend (edge_maps.h, or edge_maps6.h). */
  family: 4 | 6;
  keyBuf: Buffer;
  /** "namespace/name"; '' when rebuilt from pinned maps and not upserted since. */
  service: string;
  vip: string;
  port: number;
  protocol: L4Proto;
  /** null when rebuilt from pinned maps (the maps keep only the SNAT flag). */
  mode: DatapathMode | null;
  dispatch: DesiredService['dispatch'];
  snat: boolean;
  id: number;
  /** Region block class (2^cls slots), null when the frontend has no active backend. */
  cls: number | null;
  ringOff: number;
  m: number;
  /** Backend id per slot as last written; null = unknown (rewrite fully). */
  table: Uint32Array | null;
  backends: Map<string, PlannedBackend>;
  srcRanges: Set<string>;
  svcValue: Buffer | null;
  /** The desired state last programmed; null forces a full re-plan (rebuilt, or a path verdict changed). */
  desired: DesiredService | null;
}

/** What one plan writes, in writer order, and what it frees afterwards. */
export class EdgePlan implements PreviousWrites {
  readonly backends = new PackedBatch(4, BACKEND_SIZE);
  /** Previous Maglev tables (second chance): slots, then their edge_sc_prev entries, before the ring. */
  readonly scRing = new PackedBatch(4, 4 * EDGE_RING_PER_ELEM);
  readonly scPrev: Array<{ svcId: number; value: Buffer }> = [];
  readonly ring = new PackedBatch(4, 4 * EDGE_RING_PER_ELEM);
  readonly services = new PackedBatch(SVC_KEY_SIZE, SVC_VALUE_SIZE);
  readonly srcAdds: Buffer[] = [];
  readonly srcDeletes: Buffer[] = [];
  readonly svcDeletes: Buffer[] = [];
  /** IPv6 frontends' entries (edge_backends6, edge_services6, edge_src_ranges6), written beside their IPv4 counterparts. */
  readonly backends6 = new PackedBatch(4, BACKEND6_SIZE);
  readonly services6 = new PackedBatch(SVC6_KEY_SIZE, SVC_VALUE_SIZE);
  readonly srcAdds6: Buffer[] = [];
  readonly srcDeletes6: Buffer[] = [];
  readonly svcDeletes6: Buffer[] = [];
  readonly retiredBackends6: number[] = [];
  /** Service ids whose edge_sc_prev entry is cleared once their service entry is gone. */
  readonly scForget: number[] = [];
  /** Fresh ids whose counters are zeroed before anything points at them. */
  readonly newSvcIds: number[] = [];
  readonly newBeIds: number[] = [];
  /** Backend entries invalidated last; their ids, the regions and service ids below are released after the writes. */
  readonly retiredBackends: number[] = [];
  readonly retiredRegions: number[] = [];
  readonly retiredSvcIds: number[] = [];
  /** Entries this plan adds to edge_services / edge_services6 (new frontends and new VIP markers). */
  readonly newServiceEntries = { 4: 0, 6: 0 };

  /** Whether committing this plan frees ids or slots. */
  frees(): boolean {
    return this.retiredBackends.length > 0 || this.retiredBackends6.length > 0 || this.retiredRegions.length > 0 || this.retiredSvcIds.length > 0;
  }
}

type Usage = { used: number; total: number };

/** A type, not an interface: it must fit the sink's Record of named usages. */
export type EdgeCapacityView = {
  ringSlots: Usage;
  backendIds: Usage;
  serviceIds: Usage;
  serviceEntries?: Usage;
  serviceEntries6?: Usage;
  sourceRanges?: Usage;
  sourceRanges6?: Usage;
};

export interface PlanResult {
  added: string[];
  updated: string[];
  unchanged: string[];
  removed: string[];
  rejected: FrontendRejection[];
}

/** Snapshot of the pinned maps for rebuilding the planner (edge-restore.ts reads it). */
export interface EdgeSnapshot {
  services: { keyBuf: Buffer; vip: string; port: number; proto: number; id: number; ringOff: number; ringSize: number; flags: number; value: Buffer }[];
  markers: string[];
  /** From edge_backends (IPv4) and edge_backends6 (IPv6): each adopted only by a service of its family. */
  backends: { id: number; ip: string; port: number; nodeIp: string; flags: number; svcId: number }[];
  srcRanges: { svcId: number; cidr: string }[];
  /** edge_sc_prev entries naming a previous table (ringSize > 0). */
  scPrev?: ({ svcId: number } & ScPrev)[];
}

export class EdgePlanner {
  private readonly frontends = new Map<string, FrontendState>();
  private readonly markers = new Map<string, number>(); // vip → frontends using it
  private readonly pathDispatch = new Map<string, PathDispatch>();
  private readonly regions: RegionAllocator;
  private readonly svcIds: IdAllocator;
  private readonly beIds: IdAllocator;
  /** Previous Maglev tables (second chance); their regions come from the same allocator as the services'. */
  readonly previous: PreviousTables;
  /** Source-range entries the maps hold once the last plan is written, per family. */
  private readonly srcInUse = { 4: 0, 6: 0 };
  /** edge_services(6) entries (frontends and VIP markers) the maps hold once the last plan is written. */
  private readonly svcInUse = { 4: 0, 6: 0 };

  constructor(
    readonly limits: PlannerLimits,
    private readonly readRegion: RegionReader | null = null,
  ) {
    if ((limits.ringSlots & (limits.ringSlots - 1)) !== 0 || limits.ringSlots < EDGE_RING_PER_ELEM) {
      throw new Error(`edge ring of ${limits.ringSlots} slots: must be a power of two ≥ ${EDGE_RING_PER_ELEM}`);
    }
    this.regions = new RegionAllocator(Math.log2(limits.ringSlots));
    this.svcIds = new IdAllocator(1, limits.serviceIds, 'service');
    this.beIds = new IdAllocator(1, limits.backendIds, 'backend');
    const windowNs = limits.secondChanceNs ?? 0n;
    if (windowNs < 0n) throw new Error(`second-chance window ${windowNs} ns must not be negative`);
    this.previous = new PreviousTables(this.regions, windowNs, limits.clockNs ?? (() => process.hrtime.bigint()));
  }

  // ------------------------------------------------------------ reading

  get(key: string): FrontendState | undefined {
    return this.frontends.get(key);
  }

  all(): IterableIterator<FrontendState> {
    return this.frontends.values();
  }

  get size(): number {
    return this.frontends.size;
  }

  /**
   * Used and total: ring slots, backend ids, service ids (ids exclude the
   * reserved 0), and — where the planner knows their size — the entries of
   * edge_services(6) and edge_src_ranges(6). Every one of them can be what
   * a frontend was rejected for, so the controller watches them all for room.
   */
  capacity(): EdgeCapacityView {
    const out: EdgeCapacityView = {
      ringSlots: { used: this.regions.usedSlots(), total: this.limits.ringSlots },
      backendIds: { used: this.beIds.size, total: this.limits.backendIds - 1 },
      serviceIds: { used: this.svcIds.size, total: this.limits.serviceIds - 1 },
    };
    const { serviceEntries, serviceEntries6, srcRanges, srcRanges6 } = this.limits;
    if (serviceEntries !== undefined) out.serviceEntries = { used: this.svcInUse[4], total: serviceEntries };
    if (serviceEntries6 !== undefined) out.serviceEntries6 = { used: this.svcInUse[6], total: serviceEntries6 };
    if (srcRanges !== undefined) out.sourceRanges = { used: this.srcInUse[4], total: srcRanges };
    if (srcRanges6 !== undefined) out.sourceRanges6 = { used: this.srcInUse[6], total: srcRanges6 };
    return out;
  }

  /**
   * Node addresses of `auto` frontends' backends, IPv4 and IPv6 (what the
   * path prober must probe: an IPv6 frontend's backends sit behind their
   * nodes' IPv6 addresses, a path of its own).
   */
  autoNodes(): string[] {
    const ips = new Set<string>();
    for (const st of this.frontends.values()) if (st.dispatch === 'auto') for (const bs of st.backends.values()) ips.add(bs.b.nodeIp);
    return [...ips];
  }

  // ------------------------------------------------------------ restore

  /** Rebuilds the state from what the pinned maps hold (a restarted agent adopts it). */
  restore(snap: EdgeSnapshot): void {
    if (this.frontends.size > 0) throw new Error('restore: the planner already holds frontends');
    this.previous.rebuild(snap.scPrev ?? []);
    const byId = new Map<number, FrontendState>();
    for (const m of snap.markers) this.markers.set(m, 0);
    for (const s of snap.services) {
      const protocol: L4Proto = s.proto === 6 ? 'TCP' : 'UDP';
      const st = newFrontendState({
        keyBuf: Buffer.from(s.keyBuf), service: '', vip: s.vip, port: s.port, protocol, mode: null, dispatch: 'auto',
        snat: (s.flags & SVC_F_SNAT) !== 0, id: s.id, svcValue: Buffer.from(s.value),
      });
      this.svcIds.reserve(s.id);
      if (s.ringSize > 0) {
        const cls = Math.max(8, 32 - Math.clz32(s.ringSize));
        this.regions.reserve(s.ringOff, cls);
        st.cls = cls;
        st.ringOff = s.ringOff;
        st.m = s.ringSize;
      }
      this.frontends.set(st.key, st);
      byId.set(st.id, st);
      this.markers.set(st.vip, (this.markers.get(st.vip) ?? 0) + 1);
    }
    for (const v of snap.backends) {
      if (!(v.flags & BE_F_VALID)) continue;
      const st = byId.get(v.svcId);
      if (!st || familyOf(v.ip) !== st.family) continue;
      this.beIds.reserve(v.id);
      st.backends.set(`${v.ip}:${v.port}`, {
        id: v.id,
        flags: v.flags,
        b: { ip: v.ip, port: v.port, nodeIp: v.nodeIp, nodeName: '', weight: 1, state: v.flags & BE_F_ACTIVE ? 'active' : 'terminating' },
      });
    }
    for (const r of snap.srcRanges) byId.get(r.svcId)?.srcRanges.add(r.cidr);
    for (const st of this.frontends.values()) {
      this.srcInUse[st.family] += st.srcRanges.size;
      this.svcInUse[st.family]++;
    }
    for (const vip of this.markers.keys()) this.svcInUse[familyOf(vip)]++;
  }

  // ------------------------------------------------------------ planning

  /**
   * Plans adding or replacing `services` (keyed by frontendKey) and removing
   * `removals`. State changes at once; ids and regions retired by the plan
   * are released by commit() after the writer has applied it.
   */
  plan(services: readonly DesiredService[], removals: readonly string[] = []): { plan: EdgePlan; result: PlanResult } {
    const plan = new EdgePlan();
    this.previous.expire(plan);
    const result: PlanResult = { added: [], updated: [], unchanged: [], removed: [], rejected: [] };
    const seen = new Map<string, string>();
    for (const d of services) {
      const key = frontendKey(d.frontend);
      const other = seen.get(key);
      if (other !== undefined) {
        result.rejected.push({ key, service: d.service, reason: 'InvalidFrontend', message: `${other} and ${d.service} both claim ${key}` });
        continue;
      }
      seen.set(key, d.service);
      const st = this.frontends.get(key);
      if (st?.desired && sameDesired(st.desired, d)) {
        result.unchanged.push(key);
        continue;
      }
      try {
        validate(d, { ipv6: this.limits.ipv6 === true });
        this.planFrontend(d, key, st ?? null, plan);
        (st ? result.updated : result.added).push(key);
      } catch (e) {
        if (!(e instanceof Rejected)) throw e;
        result.rejected.push({ key, service: d.service, reason: e.reason, message: `${d.service} ${key}: ${e.message}` });
        // A frontend that cannot be served as desired is not served in an older shape either.
        if (st) this.planRemoval(st, plan);
      }
    }
    for (const key of removals) {
      if (seen.has(key)) continue;
      const st = this.frontends.get(key);
      if (!st) continue;
      this.planRemoval(st, plan);
      result.removed.push(key);
    }
    this.srcInUse[4] += plan.srcAdds.length - plan.srcDeletes.length;
    this.srcInUse[6] += plan.srcAdds6.length - plan.srcDeletes6.length;
    this.svcInUse[4] += plan.newServiceEntries[4] - plan.svcDeletes.length;
    this.svcInUse[6] += plan.newServiceEntries[6] - plan.svcDeletes6.length;
    return { plan, result };
  }

  /**
   * Throws OutOfServiceIds unless a new frontend on `vip` fits its family's
   * edge_services: its own entry, and the VIP's marker if it has none yet.
   * As for source ranges, a plan's deletes are written after its adds.
   */
  private checkServiceEntries(vip: string, plan: EdgePlan): number {
    const fam = familyOf(vip);
    const need = this.markers.has(vip) ? 1 : 2;
    const limit = fam === 6 ? this.limits.serviceEntries6 : this.limits.serviceEntries;
    const used = this.svcInUse[fam] + plan.newServiceEntries[fam];
    if (limit !== undefined && used + need > limit) {
      throw new Rejected('OutOfServiceIds', `${fam === 6 ? 'edge_services6' : 'edge_services'} is full: ${used} of ${limit} entries in use (one per frontend, and one marker per VIP)`);
    }
    return need;
  }

  /**
   * Throws OutOfSourceRanges unless the `adds` new entries of a frontend fit
   * its family's table. The writer adds every entry of a plan before it
   * deletes any (a frontend is never open to everyone in between), so what
   * must fit is what the maps hold plus everything this plan adds.
   */
  private checkSourceRanges(fam: 4 | 6, total: number, adds: number, plan: EdgePlan): void {
    const limit = fam === 6 ? this.limits.srcRanges6 : this.limits.srcRanges;
    if (limit === undefined || adds === 0) return;
    const used = this.srcInUse[fam] + (fam === 6 ? plan.srcAdds6 : plan.srcAdds).length;
    if (used + adds > limit) {
      const table = fam === 6 ? 'edge_src_ranges6' : 'edge_src_ranges';
      throw new Rejected('OutOfSourceRanges', `${total} source ranges (${adds} new) do not fit: ${table} has ${Math.max(0, limit - used)} free entries (${used} of ${limit} in use)`);
    }
  }

  /** Plans closing the second-chance windows that ended (the agent calls it periodically; every plan() does too). */
  expireSecondChance(): { plan: EdgePlan; closed: number } {
    const plan = new EdgePlan();
    return { plan, closed: this.previous.expire(plan) };
  }

  /** Releases what `plan` retired; call once the writer has applied it. */
  commit(plan: EdgePlan): void {
    for (const id of plan.retiredBackends) this.beIds.release(id);
    for (const id of plan.retiredBackends6) this.beIds.release(id);
    for (const off of plan.retiredRegions) this.regions.release(off);
    for (const id of plan.retiredSvcIds) this.svcIds.release(id);
  }

  /**
   * The dispatch for backends on `nodeIp` of `auto` frontends (the prober's
   * verdict); plans the rewrite of exactly those backend entries.
   */
  setPathDispatch(nodeIp: string, dispatch: PathDispatch): EdgePlan {
    if (ipFamily(nodeIp) === null) throw new Error(`node IP '${nodeIp}' is not an IP address`);
    if (dispatch !== 'ip-option' && dispatch !== 'ipip') throw new Error(`path dispatch '${String(dispatch)}' must be ip-option or ipip`);
    const plan = new EdgePlan();
    if (this.pathDispatch.get(nodeIp) === dispatch) return plan;
    this.pathDispatch.set(nodeIp, dispatch);
    for (const st of this.frontends.values()) {
      if (st.dispatch !== 'auto') continue;
      let touched = false;
      for (const bs of st.backends.values()) {
        if (bs.b.nodeIp !== nodeIp) continue;
        bs.flags = this.backendFlags(st.dispatch, bs.b, st.snat);
        pushBackend(plan, st.family, bs.id, { ip: bs.b.ip, nodeIp: bs.b.nodeIp, port: bs.b.port, flags: bs.flags, svcId: st.id });
        touched = true;
      }
      if (touched) st.desired = null; // the next upsert re-plans it in full
    }
    return plan;
  }

  private backendFlags(dispatch: DesiredService['dispatch'], b: Backend, snat: boolean): number {
    let f = BE_F_VALID;
    if (b.state === 'active') f |= BE_F_ACTIVE;
    if (!snat) {
      const d = dispatch === 'auto' ? (this.pathDispatch.get(b.nodeIp) ?? this.limits.autoDispatchDefault) : dispatch;
      if (d === 'ipip') f |= BE_F_IPIP;
    }
    return f;
  }

  private planFrontend(d: DesiredService, key: string, prev: FrontendState | null, plan: EdgePlan): void {
    const snat = d.mode === 'snat' || (d.mode === 'hybrid' && d.frontend.protocol === 'UDP');

    // Backends: dedupe by identity (first wins), keep the ids of known ones.
    const next = new Map<string, PlannedBackend>();
    const fresh: PlannedBackend[] = [];
    for (const b of d.backends) {
      const bk = `${b.ip}:${b.port}`;
      if (next.has(bk)) continue;
      const old = prev?.backends.get(bk);
      const pb: PlannedBackend = { id: old?.id ?? 0, b, flags: this.backendFlags(d.dispatch, b, snat) };
      if (!old) fresh.push(pb);
      next.set(bk, pb);
    }
    const active = [...next.entries()].filter(([, s]) => s.b.state === 'active');
    // Source ranges: checked before anything is allocated (nothing to undo).
    const family = familyOf(d.frontend.vip);
    const ranges = new Set(d.sourceRanges.map(normaliseCidr));
    const had = prev?.srcRanges; // (the same key: the same VIP, so the same family)
    this.checkSourceRanges(family, ranges.size, had ? [...ranges].filter((r) => !had.has(r)).length : ranges.size, plan);
    let size = active.length > 0 ? chooseTableSize(active.length, this.limits.maglevTableSize, prev?.cls ?? undefined) : null;

    // Allocation first, undone if any of it fails.
    let id = prev?.id ?? 0;
    let entries = 0; // edge_services entries counted for this new frontend
    let region: number | null = null;
    const got: number[] = [];
    try {
      if (!prev) {
        const need = this.checkServiceEntries(d.frontend.vip, plan);
        id = this.alloc(this.svcIds, 'OutOfServiceIds');
        entries = need;
        plan.newServiceEntries[family] += need;
      }
      for (const pb of fresh) {
        pb.id = this.alloc(this.beIds, 'OutOfBackendIds');
        got.push(pb.id);
      }
      if (size && size.cls !== prev?.cls) {
        region = this.regions.alloc(size.cls);
        if (region === null) {
          // Growing: keep the region it has while its table still gives every active backend a slot.
          const keep = prev?.cls !== null && prev?.cls !== undefined && size.cls > prev.cls ? primeForClass(prev.cls, this.limits.maglevTableSize) : 0;
          if (keep < active.length) throw new Rejected('OutOfRingSlots', `Maglev slot array full: no free block of ${2 ** size.cls} Maglev slots (${this.regions.usedSlots()} of ${this.limits.ringSlots} in use)`);
          size = { cls: prev!.cls!, m: keep };
        }
      }
    } catch (e) {
      for (const b of got) this.beIds.release(b);
      if (!prev && id !== 0) this.svcIds.release(id);
      plan.newServiceEntries[family] -= entries;
      throw e;
    }

    let st = prev;
    if (!st) {
      plan.newSvcIds.push(id);
      st = newFrontendState({
        keyBuf: svcKey(d.frontend.vip, d.frontend.port, protoNumber(d.frontend.protocol)),
        service: d.service, vip: d.frontend.vip, port: d.frontend.port, protocol: d.frontend.protocol, mode: d.mode, dispatch: d.dispatch, snat, id, svcValue: null,
      });
      this.frontends.set(key, st);
      this.ref(st.vip, plan);
    }
    st.service = d.service;
    st.mode = d.mode;
    st.dispatch = d.dispatch;
    st.snat = snat;

    for (const pb of fresh) plan.newBeIds.push(pb.id);
    for (const [bk, pb] of next) {
      const old = st.backends.get(bk);
      if (old && old.flags === pb.flags && old.b.nodeIp === pb.b.nodeIp) continue;
      pushBackend(plan, st.family, pb.id, { ip: pb.b.ip, nodeIp: pb.b.nodeIp, port: pb.b.port, flags: pb.flags, svcId: st.id });
    }
    for (const [bk, old] of st.backends) if (!next.has(bk)) (st.family === 6 ? plan.retiredBackends6 : plan.retiredBackends).push(old.id);
    st.backends = next;

    // Maglev over active backends only.
    const prevCls = st.cls;
    const prevOff = st.ringOff;
    const prevM = st.m;
    const prevTable = st.table;
    if (!size) {
      if (st.cls !== null) plan.retiredRegions.push(st.ringOff);
      st.cls = null;
      st.m = 0;
      st.ringOff = 0;
      st.table = null;
    } else {
      const idx = maglevTable(active.map(([bk, s]) => ({ key: bk, weight: s.b.weight })), size.m);
      const ids = new Uint32Array(2 ** size.cls);
      for (let i = 0; i < size.m; i++) ids[i] = active[idx[i]!]![1].id;
      // Second chance: the table in force is kept before the ring changes
      // (after a restart it is only in the map: read it once). Planned after
      // the service's own region, which takes precedence. Either family:
      // edge_sc_prev is indexed by service id (edge_second_chance6.h).
      if (prevCls !== null) {
        const cur = prevTable ?? this.readRegion?.(prevOff, prevCls) ?? null;
        if (cur && tableChanged(cur, prevM, ids, size.m)) {
          this.previous.onChange(st.id, cur, prevCls, prevM, ids, size.m, new Set([...next.values()].map((b) => b.id)), plan);
        }
      }
      let full = true;
      if (region !== null) {
        if (st.cls !== null) plan.retiredRegions.push(st.ringOff);
        st.cls = size.cls;
        st.ringOff = region;
      } else if (st.table && st.m === size.m) {
        full = false;
      }
      const old = st.table;
      const P = EDGE_RING_PER_ELEM;
      for (let e = 0; e < ids.length; e += P) {
        if (!full && old && sameWords(old, ids, e, P)) continue;
        plan.ring.pushU32s((st.ringOff + e) / P, ids, e);
      }
      st.m = size.m;
      st.table = ids;
    }

    // Source ranges.
    for (const r of ranges) if (!st.srcRanges.has(r)) (st.family === 6 ? plan.srcAdds6 : plan.srcAdds).push(srcKey(st.id, r));
    for (const r of st.srcRanges) if (!ranges.has(r)) (st.family === 6 ? plan.srcDeletes6 : plan.srcDeletes).push(srcKey(st.id, r));
    st.srcRanges = ranges;

    let flags = 0;
    if (snat) flags |= SVC_F_SNAT;
    if (ranges.size > 0) flags |= SVC_F_SRC_RANGES;
    const val = encodeSvc({ id: st.id, ringOff: st.ringOff, ringSize: st.m, affinityTimeout: d.affinityTimeoutSeconds, flags });
    if (!st.svcValue || !st.svcValue.equals(val)) {
      const batch = st.family === 6 ? plan.services6 : plan.services;
      const o = batch.push();
      st.keyBuf.copy(batch.keys, o.k);
      val.copy(batch.vals, o.v);
      st.svcValue = val;
    }
    st.desired = d;
  }

  private alloc(ids: IdAllocator, reason: RejectReason): number {
    try {
      return ids.alloc();
    } catch (e) {
      throw new Rejected(reason, (e as Error).message);
    }
  }

  private planRemoval(st: FrontendState, plan: EdgePlan): void {
    (st.family === 6 ? plan.svcDeletes6 : plan.svcDeletes).push(st.keyBuf);
    for (const r of st.srcRanges) (st.family === 6 ? plan.srcDeletes6 : plan.srcDeletes).push(srcKey(st.id, r));
    for (const b of st.backends.values()) (st.family === 6 ? plan.retiredBackends6 : plan.retiredBackends).push(b.id);
    if (st.cls !== null) plan.retiredRegions.push(st.ringOff);
    plan.retiredSvcIds.push(st.id);
    this.previous.forget(st.id, plan);
    this.frontends.delete(st.key);
    this.unref(st.vip, plan);
  }

  private ref(vip: string, plan: EdgePlan): void {
    const n = this.markers.get(vip) ?? 0;
    this.markers.set(vip, n + 1);
    if (n === 0) {
      const batch = familyOf(vip) === 6 ? plan.services6 : plan.services;
      const o = batch.push();
      svcKey(vip, 0, 0).copy(batch.keys, o.k);
      encodeSvc({ id: 0, ringOff: 0, ringSize: 0, affinityTimeout: 0, flags: SVC_F_MARKER }).copy(batch.vals, o.v);
    }
  }

  private unref(vip: string, plan: EdgePlan): void {
    const n = (this.markers.get(vip) ?? 1) - 1;
    if (n > 0) {
      this.markers.set(vip, n);
      return;
    }
    this.markers.delete(vip);
    (familyOf(vip) === 6 ? plan.svcDeletes6 : plan.svcDeletes).push(svcKey(vip, 0, 0));
  }
}

/** An address's family as the maps file it (anything not IPv6 is IPv4's, whose encoders reject it). */
function familyOf(ip: string): 4 | 6 {
  return ipFamily(ip) === 6 ? 6 : 4;
}

/** The edge_services / edge_services6 key of a frontend (port 0, proto 0: the VIP marker). */
function svcKey(vip: string, port: number, proto: number): Buffer {
  return familyOf(vip) === 6 ? encodeSvc6Key({ vip, port, proto }) : encodeSvcKey({ vip, port, proto });
}

function srcKey(svcId: number, cidr: string): Buffer {
  return familyOf(cidr.split('/')[0] ?? '') === 6 ? encodeSrcRange6Key(svcId, cidr) : encodeSrcRangeKey(svcId, cidr);
}

function pushBackend(plan: EdgePlan, family: 4 | 6, id: number, v: BackendValue): void {
  const batch = family === 6 ? plan.backends6 : plan.backends;
  const o = batch.push();
  batch.keys.writeUInt32LE(id, o.k);
  (family === 6 ? encodeBackend6Into : encodeBackendInto)(v, batch.vals, o.v);
}

/** A frontend with no region and no backends yet (new, or rebuilt from the maps). */
function newFrontendState(o: Pick<FrontendState, 'keyBuf' | 'service' | 'vip' | 'port' | 'protocol' | 'mode' | 'dispatch' | 'snat' | 'id' | 'svcValue'>): FrontendState {
  return {
    ...o,
    family: familyOf(o.vip),
    key: frontendKey({ vip: o.vip, port: o.port, protocol: o.protocol }),
    cls: null,
    ringOff: 0,
    m: 0,
    table: null,
    backends: new Map(),
    srcRanges: new Set(),
    desired: null,
  };
}

function sameWords(a: Uint32Array, b: Uint32Array, from: number, n: number): boolean {
  for (let i = from; i < from + n; i++) if (a[i] !== b[i]) return false;
  return true;
}

