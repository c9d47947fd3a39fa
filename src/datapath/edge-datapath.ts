// The edge datapath: loads bpf/out/edge.o, checks its map layouts, keeps
// its maps in step with the desired frontends, attaches it to the uplink
// and reads its counters. This class only orders the work; the decisions
// live in the planner (edge-plan.ts, pure), the write order in the writer
// (edge-writer.ts) and the adoption of pinned maps in edge-restore.ts.
//
// Changes come as upsert(frontends) / remove(keys), keyed by the model's
// frontendKey. A frontend whose desired state did not change is not touched
// at all; a changed one rewrites only its own backend
// entries, the Maglev slots that changed, its source ranges and its service
// entry, and ids and regions it gave up are released only after the writes
// (they are reused last-freed-last).
import { silentLogger, type Logger } from '../log/logger.js';
import { CAPACITY_REASONS, type DesiredService, type FrontendRejection } from '../model/types.js';
import { BpfMap, BpfObject, type BpfProgram, type XdpAttachment, type TcAttachment } from './loader.js';
import { bpfObjectPath } from '../assets.js';
import { unpinIncompatibleMaps } from './pinned-maps.js';
import {
  CFG_F_FIB_BYPASS,
  CFG_F_GW_MAC,
  CFG_F_NO_FIB_CACHE,
  CFG_F_DST_MAC,
  EDGE_MAP_NAMES,
  EDGE_RING_PER_ELEM,
  EDGE_STAT_NAMES,
  edgeLayoutMismatches,
  ct6InsertLimit,
  encodeConfig,
  sumPacketsBytes,
  sumU64,
  u32Key,
  type EdgeMapName,
  type EdgeStatName,
  encodeConfig6,
  EDGE_PROG_IPV6,
} from './edge-maps.js';
import { EdgePlanner, type EdgePlan, type FrontendState, type PathDispatch, type PlanResult } from './edge-plan.js';
import { readSnapshot } from './edge-restore.js';
import { writePlan, type EdgeMaps } from './edge-writer.js';
import { frontendKey } from '../model/desired.js';
import { EDGE_SC_STAT_NAMES, type EdgeScStatName } from './second-chance.js';

export type { PathDispatch } from './edge-plan.js';

export type ForwardMode =
  /** bpf_fib_lookup per destination, results cached per CPU for ≤ 1 s (cache: false = every packet). */
  | { kind: 'fib'; cache?: boolean }
  /** Rewrite and hand to the stack (XDP_PASS) with a counter: tests. */
  | { kind: 'bypass' }
  /** Skip the FIB: every forwarded frame goes to one next hop out of the ingress port. */
  | { kind: 'gateway'; gatewayMac: string; ownMac: string };

export interface EdgeDatapathOptions {
  /** Upper bound of a service's Maglev table (datapath.maglevTableSize). */
  maglevTableSize: number;
  /** MTU towards the nodes (datapath.mtu). */
  mtu: number;
  /** Edge address: SNAT source and default IPIP outer source. */
  address: string;
  /** The edge's IPv6 address: IPv6-in-IPv6 outer source, and a forged source for IPv6 flows. Absent = none (IP6IP6 backends are then dropped, counted as drop_unsupported6). */
  address6?: string;
  /** Pin (and on restart reuse) the maps in this bpffs directory (datapath.pinPath). */
  pinPath?: string;
  objectPath?: string;
  /** Edge ports for SNAT (keep outside the host's ephemeral range). Default 20000-32767. */
  snatPorts?: { min: number; max: number };
  /** IPIP outer sources: `bits` low bits of `network` from the flow hash (RSS on the nodes). Default: the edge address. */
  ipipSource?: { network: string; bits: number };
  /**
   * New connection-table entries per CPU per second (spoofed-flood guard; SYNs insert nothing); 0 = unlimited.
   * Default 200000. The IPv6 tables count apart, at this limit scaled by edge_ct6's size against edge_ct's.
   */
  ctInsertLimit?: number;
  forward?: ForwardMode;
  /**
   * The uplink's MAC: frames to a service addressed to another MAC (a
   * promiscuous uplink sees another edge's flooded frames) are left to the
   * stack, which drops them. Absent: no check. In gateway mode the
   * forward mode's ownMac is the uplink's.
   */
  uplinkMac?: string;
  /** Dispatch for `auto` services until setPathDispatch says otherwise. Default 'ipip' (works on any path). */
  autoDispatchDefault?: PathDispatch;
  /**
   * Serve IPv6 frontends (either hook): the IPv6 maps (edge_maps6.h) are sized
   * for use and share the flow budget with the IPv4 ones (FLOW_BUDGET_SHARE:
   * ≈ 29 MB more memlock in all). Off
   * (the default), they are created with a handful of entries, IPv6
   * frontends are rejected (UnsupportedFamily) and the program passes all
   * IPv6 to the stack.
   */
  ipv6?: boolean;
  /** Override map sizes (tests). */
  maxEntries?: Record<string, number>;
  /**
   * Programs to load: the one the agent attaches is enough, and each costs
   * its own verification (seconds on a small CPU). Default both.
   */
  hooks?: ('xdp' | 'tc')[];
  /** How long a service's previous Maglev table is kept after a change (docs/second-chance.md); 0 = off. Default 600. */
  secondChanceSeconds?: number;
  /** CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_coarse_ns (tests pass the edge's test clock). */
  clockNs?: () => bigint;
  logger?: Logger;
}

export interface UpsertResult {
  added: number;
  updated: number;
  unchanged: number;
  /** Frontends not served, each with its reason (absent from the maps). */
  rejected: FrontendRejection[];
}

export type EdgeCapacity = ReturnType<EdgePlanner['capacity']>;

export interface ApplyResult {
  added: number;
  updated: number;
  removed: number;
  unchanged: number;
}

export interface BackendCounters {
  ip: string;
  port: number;
  nodeIp: string;
  state: 'active' | 'terminating';
  packets: number;
  bytes: number;
}

export interface ServiceCounters {
  /** frontendKey(): "VIP:port/PROTO". */
  frontend: string;
  service: string;
  vip: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  packets: number;
  bytes: number;
  backends: BackendCounters[];
}

export interface EdgeCounters {
  services: ServiceCounters[];
  stats: Record<EdgeStatName, number>;
}

/** Sizes of the IPv6 maps when EdgeDatapathOptions.ipv6 is off (LRU maps keep a few entries per CPU's free list). */
const IPV6_OFF_SIZES: Record<string, number> = {
  edge_services6: 1,
  edge_backends6: 1,
  edge_ct6: 64,
  edge_affinity6: 64,
  edge_src_ranges6: 1,
  edge_sc_flows6: 64,
  edge_snat_rev6: 64,
  edge_snat_frags6: 64,
};

/**
 * One flow budget for both families: with IPv6 served, the IPv4 flow tables
 * load at three quarters of their full size and the IPv6 ones (compiled at
 * a quarter) take the rest — 1 Mi connections of either family, and map
 * memory at 10 000 services within the 256 MB an IPv4-only edge was given.
 * Sizes: full (IPv6 off) / shared (IPv6 on); the full ones are the C defines.
 */
const FLOW_BUDGET_SHARE: Record<string, { full: number; shared: number }> = {
  edge_ct: { full: 2 ** 20, shared: 3 * 2 ** 18 },
  edge_affinity: { full: 2 ** 17, shared: 3 * 2 ** 15 },
  edge_snat_rev: { full: 2 ** 18, shared: 3 * 2 ** 16 },
  // Second-chance pairs live only during a window after a backend change: half.
  edge_sc_flows: { full: 2 ** 17, shared: 2 ** 16 },
};

export class EdgeDatapath {
  readonly obj: BpfObject;
  private readonly opts: EdgeDatapathOptions;
  private readonly maps: EdgeMaps;
  private readonly planner: EdgePlanner;
  private attachment: XdpAttachment | TcAttachment | null = null;
  private readonly log: Logger;

  private constructor(obj: BpfObject, opts: EdgeDatapathOptions) {
    this.obj = obj;
    this.opts = opts;
    this.log = opts.logger ?? silentLogger();
    const maps = {} as Record<EdgeMapName, BpfMap>;
    for (const n of EDGE_MAP_NAMES) maps[n] = obj.map(n);
    this.maps = maps;
    if (opts.ipv6 && !opts.address6) throw new Error('edge datapath: ipv6 needs address6, the edge\'s IPv6 address (IPv6-in-IPv6 outer source)');
    const wrong = edgeLayoutMismatches(new Map(EDGE_MAP_NAMES.map((n) => [n, maps[n]])));
    if (wrong.length > 0) throw new Error(`edge object ${obj.label} does not match the TypeScript map layouts: ${wrong.join('; ')}`);
    const window = opts.secondChanceSeconds ?? 600;
    if (!Number.isInteger(window) || window < 0) throw new Error(`secondChanceSeconds ${window} must be a non-negative integer`);
    // Sizes follow the loaded maps (maxEntries may shrink them for tests).
    this.planner = new EdgePlanner(
      {
      ringSlots: maps.edge_ring.maxEntries * EDGE_RING_PER_ELEM,
      serviceIds: Math.min(maps.edge_svc_stats.maxEntries, maps.edge_services.maxEntries),
      backendIds: Math.min(maps.edge_backends.maxEntries, maps.edge_be_stats.maxEntries),
      maglevTableSize: opts.maglevTableSize,
      autoDispatchDefault: opts.autoDispatchDefault ?? 'ipip',
      secondChanceNs: BigInt(window) * 1_000_000_000n,
      clockNs: opts.clockNs ?? (() => process.hrtime.bigint()),
      ipv6: opts.ipv6 === true,
      serviceEntries: maps.edge_services.maxEntries,
      serviceEntries6: maps.edge_services6.maxEntries,
      srcRanges: maps.edge_src_ranges.maxEntries,
      srcRanges6: maps.edge_src_ranges6.maxEntries,
      },
      (off, cls) => this.readRegion(off, cls),
    );
  }

  /** The slots of a region as edge_ring holds them (the planner asks once per frontend after a restart). */
  private readRegion(off: number, cls: number): Uint32Array {
    const P = EDGE_RING_PER_ELEM;
    const out = new Uint32Array(2 ** cls);
    for (let e = 0; e < out.length; e += P) {
      const v = this.maps.edge_ring.lookup(u32Key((off + e) / P));
      if (v) for (let i = 0; i < P; i++) out[e + i] = v.readUInt32LE(i * 4);
    }
    return out;
  }

  /**
   * Loads the edge object (reusing maps pinned under pinPath, so a restarted
   * agent keeps forwarding with the same tables and connection state),
   * writes the program configuration and rebuilds the planner from the maps.
   */
  static open(opts: EdgeDatapathOptions): EdgeDatapath {
    return EdgeDatapath.fromLoaded(EdgeDatapath.openObject(opts).load(), opts);
  }

  /** open() with the kernel's work (maps, verifier) off the JS thread; the agent's start-up overlaps it. */
  static async openAsync(opts: EdgeDatapathOptions): Promise<EdgeDatapath> {
    const t0 = performance.now();
    const obj = EdgeDatapath.openObject(opts);
    const t1 = performance.now();
    await obj.loadAsync();
    const t2 = performance.now();
    const dp = EdgeDatapath.fromLoaded(obj, opts);
    const ms = (a: number, b: number) => Math.round(b - a);
    dp.openTiming = {
      objectMs: ms(t0, t1), kernelMs: Math.round(obj.loadTiming?.workMs ?? 0),
      waitMs: Math.round(obj.loadTiming?.waitMs ?? 0), restoreMs: ms(t2, performance.now()),
    };
    return dp;
  }

  /**
   * Where openAsync()'s time went (the agent logs it; start-up under
   * emulation is where it shows): reading the object and replacing
   * incompatible pinned maps, the kernel's work on the worker (maps,
   * verifier), its result's wait for the busy JS thread, and the
   * configuration and state rebuilt from the maps.
   */
  openTiming: { objectMs: number; kernelMs: number; waitMs: number; restoreMs: number } | null = null;

  private static openObject(opts: EdgeDatapathOptions): BpfObject {
    if (!Number.isInteger(opts.maglevTableSize) || opts.maglevTableSize < 3 || opts.maglevTableSize > 2 ** 20) {
      throw new Error(`maglevTableSize ${opts.maglevTableSize} must be an integer in 3..1048576`);
    }
    const hooks = opts.hooks ?? ['xdp', 'tc'];
    if (hooks.length === 0) throw new Error('hooks: load at least one of xdp, tc');
    const shared = Object.fromEntries(Object.entries(FLOW_BUDGET_SHARE).map(([name, s]) => [name, s.shared]));
    const maxEntries = { ...(opts.ipv6 ? shared : IPV6_OFF_SIZES), ...(opts.maxEntries ?? {}) };
    const obj = BpfObject.open(opts.objectPath ?? bpfObjectPath('edge'), {
      ...(opts.pinPath ? { pinMaps: opts.pinPath } : {}),
      ...(Object.keys(maxEntries).length > 0 ? { maxEntries } : {}),
      // edge_xdp6 / edge_tc6 (IPv6) only when IPv6 is served: their
      // verification costs start-up time, and without them IPv6 passes to
      // the stack.
      autoload: {
        edge_xdp: hooks.includes('xdp'),
        edge_xdp6: hooks.includes('xdp') && opts.ipv6 === true,
        edge_tc: hooks.includes('tc'),
        edge_tc6: hooks.includes('tc') && opts.ipv6 === true,
      },
    });
    // Map sizes follow opts.ipv6 — the IPv6 maps' (a handful of entries when
    // off) and the IPv4 flow tables' (the shared flow budget) — so a map an
    // agent with the other setting pinned cannot be reused and is replaced
    // here, as is one of another layout. Toggling IPv6 thus forgets the IPv6
    // connection table and frontends (re-planned from the desired state) and
    // starts the IPv4 flow tables empty (established flows keep their backend
    // through Maglev unless the backends changed meanwhile); IPv4 frontends stay.
    if (opts.pinPath) unpinIncompatibleMaps(obj, opts.pinPath, opts.logger ?? silentLogger());
    return obj;
  }

  private static fromLoaded(obj: BpfObject, opts: EdgeDatapathOptions): EdgeDatapath {
    let dp: EdgeDatapath;
    try {
      dp = new EdgeDatapath(obj, opts);
      dp.writeConfig();
      // edge_xdp / edge_tc continue IPv6 frames in edge_xdp6 / edge_tc6
      // (a tail call through the hook's own array): install this object's,
      // replacing a previous agent's in pinned maps — or, IPv6 off, clear
      // the slot so that no earlier IPv6 program stays in use.
      const hooks = opts.hooks ?? ['xdp', 'tc'];
      for (const [hook, array, prog] of [['xdp', 'edge_progs', 'edge_xdp6'], ['tc', 'edge_progs_tc', 'edge_tc6']] as const) {
        if (!hooks.includes(hook)) continue;
        if (opts.ipv6) {
          const fd = Buffer.alloc(4);
          fd.writeUInt32LE(obj.program(prog).fd, 0);
          dp.maps[array].update(u32Key(EDGE_PROG_IPV6), fd);
        } else {
          dp.maps[array].delete(u32Key(EDGE_PROG_IPV6));
        }
      }
      dp.planner.restore(readSnapshot(dp.maps));
      if (dp.planner.size > 0) dp.log.info({ services: dp.planner.size }, 'edge datapath: state rebuilt from pinned maps');
    } catch (e) {
      obj.close();
      throw e;
    }
    return dp;
  }

  /** The XDP program (or the tc one). */
  program(hook: 'xdp' | 'tc' = 'xdp'): BpfProgram {
    return this.obj.program(hook === 'xdp' ? 'edge_xdp' : 'edge_tc');
  }

  map(name: EdgeMapName): BpfMap {
    return this.maps[name];
  }

  /**
   * Attach to the uplink: XDP native/generic, or tc ingress where XDP is
   * unavailable. Replaces atomically whatever edge program is attached there
   * (a restarted agent takes over without a gap): XDP by replacing the
   * interface's program, tc by replacing the filter at a fixed
   * priority/handle.
   */
  attach(ifname: string, mode: 'native' | 'generic' | 'tc'): void {
    this.attachment =
      mode === 'tc'
        ? this.program('tc').attachTc(ifname, 'ingress', { priority: TC_PRIORITY, handle: TC_HANDLE, replace: true })
        : this.program('xdp').attachXdp(ifname, mode);
  }

  detach(): void {
    this.attachment?.detach();
    this.attachment = null;
  }

  /** Whether this datapath was opened with IPv6 on (its IPv6 program and maps serve IPv6 frontends). */
  servesIpv6(): boolean {
    return this.opts.ipv6 === true;
  }

  /** Where attach() put the program, and which program that was (null before attach / after detach). */
  attachedAt(): { at: XdpAttachment | TcAttachment; progId: number } | null {
    if (!this.attachment) return null;
    return { at: this.attachment, progId: this.program('direction' in this.attachment ? 'tc' : 'xdp').info().id };
  }

  close(): void {
    this.obj.close();
  }

  /** Change the forwarding / configuration knobs at runtime. */
  reconfigure(patch: Partial<Pick<EdgeDatapathOptions, 'mtu' | 'address' | 'address6' | 'snatPorts' | 'ipipSource' | 'ctInsertLimit' | 'forward'>>): void {
    Object.assign(this.opts, patch);
    this.writeConfig();
  }

  private writeConfig(): void {
    const o = this.opts;
    const fwd = o.forward ?? { kind: 'fib' };
    const mode = fwd.kind === 'bypass' ? CFG_F_FIB_BYPASS : fwd.kind === 'gateway' ? CFG_F_GW_MAC : fwd.cache === false ? CFG_F_NO_FIB_CACHE : 0;
    if (o.uplinkMac !== undefined && fwd.kind === 'gateway' && fwd.ownMac.toLowerCase() !== o.uplinkMac.toLowerCase()) {
      throw new Error(`forward: gateway mode's ownMac ${fwd.ownMac} is not the uplink's MAC ${o.uplinkMac}`);
    }
    const flags = mode | (o.uplinkMac !== undefined ? CFG_F_DST_MAC : 0);
    const cfg = encodeConfig({
      addr: o.address,
      ipipSrcNet: o.ipipSource?.network ?? '0.0.0.0',
      ipipSrcBits: o.ipipSource?.bits ?? 0,
      flags,
      mtu: o.mtu,
      snatPortMin: o.snatPorts?.min ?? 20000,
      snatPortMax: o.snatPorts?.max ?? 32767,
      ctInsertLimit: o.ctInsertLimit ?? 200000,
      ct6InsertLimit: ct6InsertLimit(o.ctInsertLimit ?? 200000, this.maps.edge_ct.maxEntries, this.maps.edge_ct6.maxEntries),
      gwMac: fwd.kind === 'gateway' ? fwd.gatewayMac : '00:00:00:00:00:00',
      ownMac: fwd.kind === 'gateway' ? fwd.ownMac : (o.uplinkMac ?? '00:00:00:00:00:00'),
    });
    const cfg6 = encodeConfig6(o.address6 ?? null);
    this.maps.edge_config.update(u32Key(0), cfg);
    this.maps.edge_config6.update(u32Key(0), cfg6);
  }

  // ------------------------------------------------------------ changes

  private run(plan: EdgePlan): void {
    writePlan(this.maps, plan);
    this.planner.commit(plan);
  }

  /**
   * Adds or replaces frontends (keyed by frontendKey). Each is planned on its
   * own: one this datapath cannot serve is rejected with a reason (and, if an
   * older version was programmed, removed) while the others are applied.
   */
  upsert(services: readonly DesiredService[]): UpsertResult {
    const { plan, result } = this.planner.plan(services);
    this.run(plan);
    const out = this.retryCapacity(services, result, plan.frees());
    return { added: out.added.length, updated: out.updated.length, unchanged: out.unchanged.length, rejected: out.rejected };
  }

  /** Removes frontends by frontendKey (unknown keys are ignored); returns how many were removed. */
  remove(keys: readonly string[]): number {
    const { plan, result } = this.planner.plan([], keys);
    this.run(plan);
    return result.removed.length;
  }

  /**
   * Make the maps match `desired`, the complete set (tests, benchmarks; the
   * agent sends changes through upsert/remove). Everything it can serve is
   * applied; then it throws naming every frontend it could not.
   */
  applyServices(desired: readonly DesiredService[]): ApplyResult {
    const want = new Set(desired.map((d) => frontendKeyOf(d)));
    const removals = [...this.planner.all()].map((st) => st.key).filter((k) => !want.has(k));
    const { plan, result } = this.planner.plan(desired, removals);
    this.run(plan);
    const out = this.retryCapacity(desired, result, plan.frees());
    if (out.rejected.length > 0) {
      const full = out.rejected.some((r) => CAPACITY_REASONS.has(r.reason));
      const list = out.rejected.map((r) => r.message).join('; ');
      throw new Error(full ? `edge datapath: ${out.rejected.length} service(s) not fully applied: ${list}` : list);
    }
    return { added: out.added.length, updated: out.updated.length, removed: out.removed.length, unchanged: out.unchanged.length };
  }

  /**
   * Space a plan frees is released only once it is written; one more pass
   * may then fit what did not fit before.
   */
  private retryCapacity(desired: readonly DesiredService[], result: PlanResult, freed: boolean): PlanResult {
    const full = new Set(result.rejected.filter((r) => CAPACITY_REASONS.has(r.reason)).map((r) => r.key));
    if (full.size === 0 || !freed) return result;
    const again = this.planner.plan(desired.filter((d) => full.has(frontendKeyOf(d))));
    this.run(again.plan);
    return {
      ...result,
      added: [...result.added, ...again.result.added],
      rejected: [...result.rejected.filter((r) => !full.has(r.key)), ...again.result.rejected],
    };
  }

  /** Keys of the frontends the maps hold (after open: what the pinned maps held). */
  keys(): string[] {
    return [...this.planner.all()].map((st) => st.key);
  }

  /** The frontends as programmed (rebuilt ones carry service '' and mode null until upserted). */
  frontends(): IterableIterator<FrontendState> {
    return this.planner.all();
  }

  /** Used and total ring slots, backend ids and service ids. */
  capacity(): EdgeCapacity {
    return this.planner.capacity();
  }

  /** Node addresses of `auto` frontends' backends: what the path prober probes. */
  autoNodes(): string[] {
    return this.planner.autoNodes();
  }

  /**
   * Dispatch to use for backends on `nodeIp` of services whose dispatch is
   * `auto` (from path probing). Rewrites only those backend entries.
   */
  setPathDispatch(nodeIp: string, dispatch: PathDispatch): void {
    this.run(this.planner.setPathDispatch(nodeIp, dispatch));
  }

  // ------------------------------------------------------------ readout

  counters(): EdgeCounters {
    const services: ServiceCounters[] = [];
    for (const st of this.planner.all()) {
      const backends: BackendCounters[] = [];
      for (const bs of st.backends.values()) backends.push({ ip: bs.b.ip, port: bs.b.port, nodeIp: bs.b.nodeIp, state: bs.b.state, ...this.backendCounts(bs.id) });
      services.push({ frontend: st.key, service: st.service, vip: st.vip, port: st.port, protocol: st.protocol, ...this.frontendCounts(st.id), backends });
    }
    return { services, stats: this.stats() };
  }

  /** The drop and event counters (edge_stats) alone, without every service's. */
  stats(): Record<EdgeStatName, number> {
    return this.namedCounters(this.maps.edge_stats, EDGE_STAT_NAMES);
  }

  /**
   * Each frontend's packets and bytes (backend null), then each of its
   * backends' ("ip:port"), read from the per-CPU maps as the caller
   * iterates: a scrape of 10 000 frontends reads them a step at a time.
   */
  *counterRows(): Generator<{ frontend: string; backend: string | null; packets: number; bytes: number }> {
    for (const st of this.planner.all()) {
      yield { frontend: st.key, backend: null, ...this.frontendCounts(st.id) };
      for (const bs of st.backends.values()) yield { frontend: st.key, backend: `${bs.b.ip}:${bs.b.port}`, ...this.backendCounts(bs.id) };
    }
  }

  private frontendCounts(id: number): { packets: number; bytes: number } {
    const v = this.maps.edge_svc_stats.lookup(u32Key(id));
    return v ? sumPacketsBytes(v) : { packets: 0, bytes: 0 };
  }

  private backendCounts(id: number): { packets: number; bytes: number } {
    const v = this.maps.edge_be_stats.lookup(u32Key(id));
    return v ? sumPacketsBytes(v) : { packets: 0, bytes: 0 };
  }

  /** A per-CPU array of u64 counters, slot i named names[i], summed over the CPUs. */
  private namedCounters<N extends string>(map: BpfMap, names: readonly N[]): Record<N, number> {
    const out = {} as Record<N, number>;
    names.forEach((name, i) => {
      const v = map.lookup(u32Key(i));
      out[name] = v ? sumU64(v) : 0;
    });
    return out;
  }

  /** Backend id the datapath uses for a service's backend (tests, debugging). */
  backendId(vip: string, port: number, protocol: 'TCP' | 'UDP', backend: { ip: string; port: number }): number | undefined {
    return this.planner.get(frontendKeyOf({ frontend: { vip, port, protocol } }))?.backends.get(`${backend.ip}:${backend.port}`)?.id;
  }

  /** Kernel memory charged for all edge maps, in bytes (fdinfo memlock). */
  memlockBytes(): number {
    let n = 0;
    for (const name of EDGE_MAP_NAMES) n += this.maps[name].memlockBytes();
    return n;
  }

  /** Second-chance counters and the previous tables held (docs/second-chance.md). */
  secondChance(): { stats: Record<EdgeScStatName, number>; open: number; slots: number; skipped: number } {
    const p = this.planner.previous;
    return { stats: this.namedCounters(this.maps.edge_sc_stats, EDGE_SC_STAT_NAMES), open: p.open, slots: p.slots(), skipped: p.skipped };
  }

  /** Closes second-chance windows that ended (the agent calls it periodically; every change does too). Returns how many. */
  expireSecondChance(): number {
    const { plan, closed } = this.planner.expireSecondChance();
    this.run(plan);
    return closed;
  }

  /** Slots of edge_ring in use by service regions and previous tables. */
  ringSlotsUsed(): number {
    return this.planner.capacity().ringSlots.used;
  }
}

/** tc filter slot of the edge program (ingress of the uplink). */
const TC_PRIORITY = 0xed6e;
const TC_HANDLE = 1;

function frontendKeyOf(d: Pick<DesiredService, 'frontend'>): string {
  return frontendKey(d.frontend);
}
