// The edge datapath: loads bpf/out/edge.o, keeps its maps in step with the
// desired services, attaches it to the uplink and reads its counters.
//
// applyServices() is incremental: a service whose desired state (and the
// path dispatch of its nodes) did not change is not touched at all; a
// changed service rewrites only its own backend entries, the Maglev slots
// that changed, its source ranges and its service entry. Write order keeps
// every intermediate state valid for packets in flight: backend entries →
// Maglev slots → source ranges → service entry → removal of backends that
// left (so no slot ever points at an invalid backend for long) and only
// then the release of ids and regions (which are reused last-freed-last).
import type { Logger } from 'pino';
import type { Backend, DesiredService } from '../model/types.js';
import { BpfObject, type BpfMap, type BpfProgram, type XdpAttachment, type TcAttachment } from './loader.js';
import { bpfObjectPath } from '../assets.js';
import { chooseTableSize, maglevTable } from './maglev.js';
import { IdAllocator, RegionAllocator } from './edge-regions.js';
import {
  BACKEND_SIZE,
  BE_F_ACTIVE,
  BE_F_IPIP,
  BE_F_VALID,
  CFG_F_FIB_BYPASS,
  CFG_F_GW_MAC,
  CFG_F_NO_FIB_CACHE,
  EDGE_RING_PER_ELEM,
  EDGE_STAT_NAMES,
  SVC_F_MARKER,
  SVC_F_SNAT,
  SVC_F_SRC_RANGES,
  decodeBackend,
  decodeSvc,
  decodeSvcKey,
  encodeBackendInto,
  encodeConfig,
  encodeSrcRangeKey,
  encodeSvc,
  encodeSvcKey,
  sumPacketsBytes,
  sumU64,
  u32Key,
  type EdgeStatName,
} from './edge-maps.js';
import { ipv4ToU32, u32ToIpv4 } from '../net/ip.js';
import { protoNumber } from '../net/l4.js';

export type PathDispatch = 'ip-option' | 'ipip';

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
  /** Pin (and on restart reuse) the maps in this bpffs directory (datapath.pinPath). */
  pinPath?: string;
  objectPath?: string;
  /** Edge ports for SNAT (keep outside the host's ephemeral range). Default 20000-32767. */
  snatPorts?: { min: number; max: number };
  /** IPIP outer sources: `bits` low bits of `network` from the flow hash (RSS on the nodes). Default: the edge address. */
  ipipSource?: { network: string; bits: number };
  /** New connection-table entries per CPU per second (SYN-flood guard); 0 = unlimited. Default 200000. */
  ctInsertLimit?: number;
  forward?: ForwardMode;
  /** Dispatch for `auto` services until setPathDispatch says otherwise. Default 'ipip' (works on any path). */
  autoDispatchDefault?: PathDispatch;
  /** Override map sizes (tests). */
  maxEntries?: Record<string, number>;
  /**
   * Programs to load: the one the agent attaches is enough, and each costs
   * its own verification (seconds on a small CPU). Default both.
   */
  hooks?: ('xdp' | 'tc')[];
  logger?: Logger;
}

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

interface BackendState {
  id: number;
  b: Backend;
  flags: number;
}

interface SvcState {
  key: string;
  keyBuf: Buffer;
  service: string;
  vip: string;
  port: number;
  protocol: 'TCP' | 'UDP';
  id: number;
  dispatch: DesiredService['dispatch'];
  /** Region block class (2^cls slots) or null when no active backend. */
  cls: number | null;
  ringOff: number;
  m: number;
  /** Backend id per slot as last written; null = unknown (rewrite fully). */
  table: Uint32Array | null;
  backends: Map<string, BackendState>;
  srcRanges: Set<string>;
  svcValue: Buffer | null;
  fingerprint: string;
}

/** Growable parallel key/value byte arrays for one batch update, with
 * 32-bit views (Buffer.write* per field is the bottleneck at 10^7 slots). */
class Batch {
  keys: Buffer;
  vals: Buffer;
  k32: Uint32Array;
  v32: Uint32Array;
  n = 0;
  constructor(
    readonly keySize: number,
    readonly valSize: number,
  ) {
    this.keys = Buffer.alloc(keySize * 1024);
    this.vals = Buffer.alloc(valSize * 1024);
    this.k32 = view32(this.keys);
    this.v32 = view32(this.vals);
  }
  /** Room for one more element; returns its byte offsets (key, value). */
  push(): { k: number; v: number } {
    if ((this.n + 1) * this.keySize > this.keys.length) this.grow();
    const r = { k: this.n * this.keySize, v: this.n * this.valSize };
    this.n++;
    return r;
  }
  /** Fast path for a 4-byte key and a value of host-order u32 words copied from `src` (the ring). */
  pushU32s(key: number, src: Uint32Array, from: number): void {
    if ((this.n + 1) * this.keySize > this.keys.length) this.grow();
    const words = this.valSize / 4;
    this.k32[this.n] = key;
    this.v32.set(src.subarray(from, from + words), this.n * words);
    this.n++;
  }
  private grow(): void {
    const nk = Buffer.alloc(this.keys.length * 4);
    this.keys.copy(nk);
    this.keys = nk;
    const nv = Buffer.alloc(this.vals.length * 4);
    this.vals.copy(nv);
    this.vals = nv;
    this.k32 = view32(this.keys);
    this.v32 = view32(this.vals);
  }
  flush(map: BpfMap): void {
    const chunk = 1 << 18;
    for (let i = 0; i < this.n; i += chunk) {
      const c = Math.min(chunk, this.n - i);
      map.updateBatchPacked(this.keys.subarray(i * this.keySize, (i + c) * this.keySize), this.vals.subarray(i * this.valSize, (i + c) * this.valSize));
    }
    this.n = 0;
  }
}

/** Host-order u32 view; Buffer.alloc of ≥ 4 KiB never shares the pool, so offsets are aligned. */
function view32(b: Buffer): Uint32Array {
  if (b.byteOffset % 4 !== 0) throw new Error('batch buffer not 4-byte aligned');
  return new Uint32Array(b.buffer, b.byteOffset, Math.floor(b.length / 4));
}

const MAP_NAMES = [
  'edge_services',
  'edge_ring',
  'edge_backends',
  'edge_ct',
  'edge_affinity',
  'edge_src_ranges',
  'edge_snat_rev',
  'edge_config',
  'edge_stats',
  'edge_svc_stats',
  'edge_be_stats',
  'edge_insert_limit',
  'edge_fib_cache',
] as const;
type EdgeMapName = (typeof MAP_NAMES)[number];

/** tc filter slot of the edge program (ingress of the uplink). */
const TC_PRIORITY = 0xed6e;
const TC_HANDLE = 1;

/** A service with no ring region and no backends yet (new, or rebuilt from the maps). */
function newSvcState(o: Pick<SvcState, 'keyBuf' | 'service' | 'vip' | 'port' | 'protocol' | 'id' | 'dispatch' | 'svcValue'>): SvcState {
  return {
    ...o,
    key: svcKeyString(o.vip, o.port, o.protocol),
    cls: null,
    ringOff: 0,
    m: 0,
    table: null,
    backends: new Map(),
    srcRanges: new Set(),
    fingerprint: '',
  };
}

export class EdgeDatapath {
  readonly obj: BpfObject;
  private readonly opts: EdgeDatapathOptions;
  private readonly maps: Record<EdgeMapName, BpfMap>;
  private readonly services = new Map<string, SvcState>();
  private readonly markers = new Map<string, number>(); // vip → services using it
  private readonly pathDispatch = new Map<string, PathDispatch>();
  private readonly regions: RegionAllocator;
  private readonly svcIds: IdAllocator;
  private readonly beIds: IdAllocator;
  private attachment: XdpAttachment | TcAttachment | null = null;
  private readonly log: Logger | undefined;

  private constructor(obj: BpfObject, opts: EdgeDatapathOptions) {
    this.obj = obj;
    this.opts = opts;
    this.log = opts.logger;
    const maps = {} as Record<EdgeMapName, BpfMap>;
    for (const n of MAP_NAMES) maps[n] = obj.map(n);
    this.maps = maps;
    // Sizes follow the loaded maps (maxEntries may shrink them for tests).
    const ringSlots = maps.edge_ring.maxEntries * EDGE_RING_PER_ELEM;
    if ((ringSlots & (ringSlots - 1)) !== 0) throw new Error(`edge_ring size ${maps.edge_ring.maxEntries} must be a power of two`);
    this.regions = new RegionAllocator(Math.log2(ringSlots));
    this.svcIds = new IdAllocator(1, Math.min(maps.edge_svc_stats.maxEntries, maps.edge_services.maxEntries), 'service');
    this.beIds = new IdAllocator(1, Math.min(maps.edge_backends.maxEntries, maps.edge_be_stats.maxEntries), 'backend');
  }

  /**
   * Loads the edge object (reusing maps pinned under pinPath, so a restarted
   * agent keeps forwarding with the same tables and connection state),
   * writes the program configuration and rebuilds the allocator state from
   * the maps.
   */
  static open(opts: EdgeDatapathOptions): EdgeDatapath {
    return EdgeDatapath.fromLoaded(EdgeDatapath.openObject(opts).load(), opts);
  }

  /** open() with the kernel's work (maps, verifier) off the JS thread; the agent's start-up overlaps it. */
  static async openAsync(opts: EdgeDatapathOptions): Promise<EdgeDatapath> {
    return EdgeDatapath.fromLoaded(await EdgeDatapath.openObject(opts).loadAsync(), opts);
  }

  private static openObject(opts: EdgeDatapathOptions): BpfObject {
    if (!Number.isInteger(opts.maglevTableSize) || opts.maglevTableSize < 3 || opts.maglevTableSize > 2 ** 20) {
      throw new Error(`maglevTableSize ${opts.maglevTableSize} must be an integer in 3..1048576`);
    }
    const hooks = opts.hooks ?? ['xdp', 'tc'];
    if (hooks.length === 0) throw new Error('hooks: load at least one of xdp, tc');
    return BpfObject.open(opts.objectPath ?? bpfObjectPath('edge'), {
      ...(opts.pinPath ? { pinMaps: opts.pinPath } : {}),
      ...(opts.maxEntries ? { maxEntries: opts.maxEntries } : {}),
      autoload: { edge_xdp: hooks.includes('xdp'), edge_tc: hooks.includes('tc') },
    });
  }

  private static fromLoaded(obj: BpfObject, opts: EdgeDatapathOptions): EdgeDatapath {
    let dp: EdgeDatapath;
    try {
      dp = new EdgeDatapath(obj, opts);
      dp.writeConfig();
      dp.rebuildFromMaps();
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

  /** Where attach() put the program, and which program that was (null before attach / after detach). */
  attachedAt(): { at: XdpAttachment | TcAttachment; progId: number } | null {
    if (!this.attachment) return null;
    return { at: this.attachment, progId: this.program('direction' in this.attachment ? 'tc' : 'xdp').info().id };
  }

  close(): void {
    this.obj.close();
  }

  /** Change the forwarding / configuration knobs at runtime. */
  reconfigure(patch: Partial<Pick<EdgeDatapathOptions, 'mtu' | 'address' | 'snatPorts' | 'ipipSource' | 'ctInsertLimit' | 'forward'>>): void {
    Object.assign(this.opts, patch);
    this.writeConfig();
  }

  private writeConfig(): void {
    const o = this.opts;
    const fwd = o.forward ?? { kind: 'fib' };
    const flags = fwd.kind === 'bypass' ? CFG_F_FIB_BYPASS : fwd.kind === 'gateway' ? CFG_F_GW_MAC : fwd.cache === false ? CFG_F_NO_FIB_CACHE : 0;
    const cfg = encodeConfig({
      addr: o.address,
      ipipSrcNet: o.ipipSource?.network ?? '0.0.0.0',
      ipipSrcBits: o.ipipSource?.bits ?? 0,
      flags,
      mtu: o.mtu,
      snatPortMin: o.snatPorts?.min ?? 20000,
      snatPortMax: o.snatPorts?.max ?? 32767,
      ctInsertLimit: o.ctInsertLimit ?? 200000,
      gwMac: fwd.kind === 'gateway' ? fwd.gatewayMac : '00:00:00:00:00:00',
      ownMac: fwd.kind === 'gateway' ? fwd.ownMac : '00:00:00:00:00:00',
    });
    this.maps.edge_config.update(u32Key(0), cfg);
  }

  // ------------------------------------------------------------ rebuild

  private rebuildFromMaps(): void {
    const byId = new Map<number, SvcState>();
    for (const [k, v] of this.maps.edge_services.entries()) {
      const key = decodeSvcKey(k);
      const val = decodeSvc(v);
      if (val.flags & SVC_F_MARKER) {
        this.markers.set(key.vip, 0);
        continue;
      }
      const protocol = key.proto === 6 ? 'TCP' : 'UDP';
      const st = newSvcState({ keyBuf: Buffer.from(k), service: '', vip: key.vip, port: key.port, protocol, id: val.id, dispatch: 'auto', svcValue: Buffer.from(v) });
      this.svcIds.reserve(val.id);
      if (val.ringSize > 0) {
        const cls = Math.max(8, 32 - Math.clz32(val.ringSize));
        this.regions.reserve(val.ringOff, cls);
        st.cls = cls;
        st.ringOff = val.ringOff;
        st.m = val.ringSize;
      }
      this.services.set(st.key, st);
      byId.set(st.id, st);
    }
    for (const st of this.services.values()) this.markers.set(st.vip, (this.markers.get(st.vip) ?? 0) + 1);
    if (byId.size === 0) return;
    // Backends: one batched walk over the array.
    for (const { keys, values: vals, count } of this.maps.edge_backends.lookupBatches(65536)) {
      for (let i = 0; i < count; i++) {
        const v = decodeBackend(vals.subarray(i * BACKEND_SIZE, (i + 1) * BACKEND_SIZE));
        if (!(v.flags & BE_F_VALID)) continue;
        const st = byId.get(v.svcId);
        if (!st) continue;
        const id = keys.readUInt32LE(i * 4);
        this.beIds.reserve(id);
        st.backends.set(`${v.ip}:${v.port}`, {
          id,
          flags: v.flags,
          b: { ip: v.ip, port: v.port, nodeIp: v.nodeIp, nodeName: '', weight: 1, state: v.flags & BE_F_ACTIVE ? 'active' : 'terminating' },
        });
      }
    }
    for (const k of this.maps.edge_src_ranges.keys()) {
      const st = byId.get(k.readUInt32LE(4));
      if (!st) continue;
      const len = k.readUInt32LE(0) - 32;
      const a = k.readUInt32BE(8);
      st.srcRanges.add(`${u32ToIpv4(a)}/${len}`);
    }
    this.log?.info({ services: this.services.size }, 'edge datapath: state rebuilt from pinned maps');
  }

  // ------------------------------------------------------------ apply

  /** Make the maps match `desired` (the complete set of services). */
  applyServices(desired: readonly DesiredService[]): ApplyResult {
    return this.apply(desired, true);
  }

  private apply(desired: readonly DesiredService[], mayRetry: boolean): ApplyResult {
    const res: ApplyResult = { added: 0, updated: 0, removed: 0, unchanged: 0 };
    const want = new Map<string, DesiredService>();
    for (const d of desired) {
      const k = svcKeyString(d.frontend.vip, d.frontend.port, d.frontend.protocol);
      if (want.has(k)) throw new Error(`services ${want.get(k)!.service} and ${d.service} both claim ${k}`);
      validateService(d);
      want.set(k, d);
    }
    const w = new Writes();
    const removedBackends: number[] = [];
    const releasedRegions: number[] = [];
    const releasedSvcIds: number[] = [];
    const failed: string[] = [];

    for (const [k, d] of want) {
      const st = this.services.get(k);
      const fp = this.fingerprint(d);
      if (st && st.fingerprint === fp) {
        res.unchanged++;
        continue;
      }
      if (st) res.updated++;
      else res.added++;
      try {
        this.planService(d, st ?? null, fp, w, removedBackends, releasedRegions);
      } catch (e) {
        // Out of ids or slots: what was planned for this service is still
        // written (every step leaves the maps consistent: the old region
        // stays in use until a new one is in place); the service is
        // re-planned from scratch next time.
        const cur = this.services.get(k);
        if (cur) cur.fingerprint = '';
        failed.push(`${d.service} (${k}): ${(e as Error).message}`);
      }
    }
    for (const [k, st] of this.services) {
      if (want.has(k)) continue;
      res.removed++;
      w.svcDeletes.push(st.keyBuf);
      for (const r of st.srcRanges) w.srcDeletes.push(encodeSrcRangeKey(st.id, r));
      for (const b of st.backends.values()) removedBackends.push(b.id);
      if (st.cls !== null) releasedRegions.push(st.ringOff);
      releasedSvcIds.push(st.id);
      this.services.delete(k);
      this.unref(st.vip, w);
    }

    // Phase order matters for packets in flight (see the header comment).
    this.zeroCounters(w.newSvcIds, w.newBeIds);
    w.backends.flush(this.maps.edge_backends);
    w.ring.flush(this.maps.edge_ring);
    for (const key of w.srcAdds) this.maps.edge_src_ranges.update(key, Buffer.from([1]));
    w.services.flush(this.maps.edge_services);
    for (const key of w.srcDeletes) this.maps.edge_src_ranges.delete(key);
    for (const key of w.svcDeletes) this.maps.edge_services.delete(key);
    const inval = new Batch(4, BACKEND_SIZE);
    for (const id of removedBackends) {
      const o = inval.push(); // may grow the buffers: take the offset first
      inval.keys.writeUInt32LE(id, o.k);
    }
    inval.flush(this.maps.edge_backends);
    for (const id of removedBackends) this.beIds.release(id);
    for (const off of releasedRegions) this.regions.release(off);
    for (const id of releasedSvcIds) this.svcIds.release(id);
    if (failed.length > 0) {
      // Space freed by this apply (removed services, moved regions) is only
      // released once nothing points at it any more, i.e. now: one more
      // pass may fit what failed.
      if (mayRetry && (releasedRegions.length > 0 || removedBackends.length > 0 || releasedSvcIds.length > 0)) {
        const again = this.apply(desired, false);
        return { added: res.added, updated: res.updated, removed: res.removed + again.removed, unchanged: res.unchanged };
      }
      throw new Error(`edge datapath: ${failed.length} service(s) not fully applied: ${failed.join('; ')}`);
    }
    return res;
  }

  /**
   * Dispatch to use for backends on `nodeIp` of services whose dispatch is
   * `auto` (from path probing). Rewrites only those backend entries.
   */
  setPathDispatch(nodeIp: string, dispatch: PathDispatch): void {
    ipv4ToU32(nodeIp, 'node IP');
    if (dispatch !== 'ip-option' && dispatch !== 'ipip') throw new Error(`path dispatch '${String(dispatch)}' must be ip-option or ipip`);
    if (this.pathDispatch.get(nodeIp) === dispatch) return;
    this.pathDispatch.set(nodeIp, dispatch);
    const batch = new Batch(4, BACKEND_SIZE);
    for (const st of this.services.values()) {
      if (st.dispatch !== 'auto') continue;
      for (const bs of st.backends.values()) {
        if (bs.b.nodeIp !== nodeIp) continue;
        bs.flags = this.backendFlags(st.dispatch, bs.b, st.svcValue ? (decodeSvc(st.svcValue).flags & SVC_F_SNAT) !== 0 : false);
        const o = batch.push();
        batch.keys.writeUInt32LE(bs.id, o.k);
        encodeBackendInto({ ip: bs.b.ip, nodeIp: bs.b.nodeIp, port: bs.b.port, flags: bs.flags, svcId: st.id }, batch.vals, o.v);
      }
      st.fingerprint = ''; // force a re-plan on the next apply
    }
    batch.flush(this.maps.edge_backends);
  }

  private fingerprint(d: DesiredService): string {
    let nodes = '';
    if (d.dispatch === 'auto') {
      const seen = new Set<string>();
      for (const b of d.backends) {
        if (seen.has(b.nodeIp)) continue;
        seen.add(b.nodeIp);
        nodes += `${b.nodeIp}=${this.pathDispatch.get(b.nodeIp) ?? ''};`;
      }
    }
    return JSON.stringify([d.service, d.mode, d.dispatch, d.sourceRanges, d.affinityTimeoutSeconds, d.backends]) + nodes;
  }

  private backendFlags(dispatch: DesiredService['dispatch'], b: Backend, snat: boolean): number {
    let f = BE_F_VALID;
    if (b.state === 'active') f |= BE_F_ACTIVE;
    if (!snat) {
      const d = dispatch === 'auto' ? (this.pathDispatch.get(b.nodeIp) ?? this.opts.autoDispatchDefault ?? 'ipip') : dispatch;
      if (d === 'ipip') f |= BE_F_IPIP;
    }
    return f;
  }

  private planService(d: DesiredService, prev: SvcState | null, fp: string, w: Writes, removedBackends: number[], releasedRegions: number[]): void {
    const proto = protoNumber(d.frontend.protocol);
    const snat = d.mode === 'snat' || (d.mode === 'hybrid' && d.frontend.protocol === 'UDP');
    let st = prev;
    if (!st) {
      const id = this.svcIds.alloc();
      w.newSvcIds.push(id);
      st = newSvcState({
        keyBuf: encodeSvcKey({ vip: d.frontend.vip, port: d.frontend.port, proto }),
        service: d.service, vip: d.frontend.vip, port: d.frontend.port, protocol: d.frontend.protocol, id, dispatch: d.dispatch, svcValue: null,
      });
      this.services.set(st.key, st);
      this.ref(st.vip, w);
    }
    st.service = d.service;
    st.dispatch = d.dispatch;

    // Backends: dedupe by identity (first wins), keep ids of known ones.
    const next = new Map<string, BackendState>();
    for (const b of d.backends) {
      const key = `${b.ip}:${b.port}`;
      if (next.has(key)) continue;
      const flags = this.backendFlags(d.dispatch, b, snat);
      const old = st.backends.get(key);
      let id: number;
      if (old) {
        id = old.id;
      } else {
        id = this.beIds.alloc();
        w.newBeIds.push(id);
      }
      if (!old || old.flags !== flags || old.b.nodeIp !== b.nodeIp) {
        const o = w.backends.push();
        w.backends.keys.writeUInt32LE(id, o.k);
        encodeBackendInto({ ip: b.ip, nodeIp: b.nodeIp, port: b.port, flags, svcId: st.id }, w.backends.vals, o.v);
      }
      next.set(key, { id, b, flags });
    }
    for (const [key, old] of st.backends) if (!next.has(key)) removedBackends.push(old.id);
    st.backends = next;

    // Maglev over active backends only.
    const active = [...next.entries()].filter(([, s]) => s.b.state === 'active');
    if (active.length === 0) {
      if (st.cls !== null) releasedRegions.push(st.ringOff);
      st.cls = null;
      st.m = 0;
      st.ringOff = 0;
      st.table = null;
    } else {
      const size = chooseTableSize(active.length, this.opts.maglevTableSize, st.cls ?? undefined);
      const idx = maglevTable(
        active.map(([key, s]) => ({ key, weight: s.b.weight })),
        size.m,
      );
      const ids = new Uint32Array(2 ** size.cls);
      for (let i = 0; i < size.m; i++) ids[i] = active[idx[i]!]![1].id;
      let full = true;
      if (st.cls !== size.cls) {
        const off = this.regions.alloc(size.cls);
        if (off === null) throw new Error(`Maglev slot array full: cannot place ${d.service} (${2 ** size.cls} slots)`);
        if (st.cls !== null) releasedRegions.push(st.ringOff);
        st.cls = size.cls;
        st.ringOff = off;
      } else if (st.table && st.m === size.m) {
        full = false;
      }
      const old = st.table;
      const P = EDGE_RING_PER_ELEM;
      for (let e = 0; e < ids.length; e += P) {
        if (!full && old && sameWords(old, ids, e, P)) continue;
        w.ring.pushU32s((st.ringOff + e) / P, ids, e);
      }
      st.m = size.m;
      st.table = ids;
    }

    // Source ranges.
    const ranges = new Set(d.sourceRanges.map(normaliseCidr));
    for (const r of ranges) if (!st.srcRanges.has(r)) w.srcAdds.push(encodeSrcRangeKey(st.id, r));
    for (const r of st.srcRanges) if (!ranges.has(r)) w.srcDeletes.push(encodeSrcRangeKey(st.id, r));
    st.srcRanges = ranges;

    let flags = 0;
    if (snat) flags |= SVC_F_SNAT;
    if (ranges.size > 0) flags |= SVC_F_SRC_RANGES;
    const val = encodeSvc({ id: st.id, ringOff: st.ringOff, ringSize: st.m, affinityTimeout: d.affinityTimeoutSeconds, flags });
    if (!st.svcValue || !st.svcValue.equals(val)) {
      const o = w.services.push();
      st.keyBuf.copy(w.services.keys, o.k);
      val.copy(w.services.vals, o.v);
      st.svcValue = val;
    }
    st.fingerprint = fp;
  }

  private ref(vip: string, w: Writes): void {
    const n = this.markers.get(vip) ?? 0;
    this.markers.set(vip, n + 1);
    if (n === 0) {
      const o = w.services.push();
      encodeSvcKey({ vip, port: 0, proto: 0 }).copy(w.services.keys, o.k);
      encodeSvc({ id: 0, ringOff: 0, ringSize: 0, affinityTimeout: 0, flags: SVC_F_MARKER }).copy(w.services.vals, o.v);
    }
  }

  private unref(vip: string, w: Writes): void {
    const n = (this.markers.get(vip) ?? 1) - 1;
    if (n > 0) {
      this.markers.set(vip, n);
      return;
    }
    this.markers.delete(vip);
    w.svcDeletes.push(encodeSvcKey({ vip, port: 0, proto: 0 }));
  }

  private zeroCounters(svcIds: number[], beIds: number[]): void {
    for (const [map, ids] of [
      [this.maps.edge_svc_stats, svcIds],
      [this.maps.edge_be_stats, beIds],
    ] as const) {
      if (ids.length === 0) continue;
      const b = new Batch(4, map.valueBufSize);
      for (const id of ids) {
        const o = b.push();
        b.keys.writeUInt32LE(id, o.k);
      }
      b.flush(map);
    }
  }

  // ------------------------------------------------------------ readout

  counters(): EdgeCounters {
    const stats = {} as Record<EdgeStatName, number>;
    EDGE_STAT_NAMES.forEach((name, i) => {
      const v = this.maps.edge_stats.lookup(u32Key(i));
      stats[name] = v ? sumU64(v) : 0;
    });
    const services: ServiceCounters[] = [];
    for (const st of this.services.values()) {
      const sv = this.maps.edge_svc_stats.lookup(u32Key(st.id));
      const s = sv ? sumPacketsBytes(sv) : { packets: 0, bytes: 0 };
      const backends: BackendCounters[] = [];
      for (const bs of st.backends.values()) {
        const bv = this.maps.edge_be_stats.lookup(u32Key(bs.id));
        const c = bv ? sumPacketsBytes(bv) : { packets: 0, bytes: 0 };
        backends.push({ ip: bs.b.ip, port: bs.b.port, nodeIp: bs.b.nodeIp, state: bs.b.state, ...c });
      }
      services.push({ service: st.service, vip: st.vip, port: st.port, protocol: st.protocol, ...s, backends });
    }
    return { services, stats };
  }

  /** Backend id the datapath uses for a service's backend (tests, debugging). */
  backendId(vip: string, port: number, protocol: 'TCP' | 'UDP', backend: { ip: string; port: number }): number | undefined {
    return this.services.get(svcKeyString(vip, port, protocol))?.backends.get(`${backend.ip}:${backend.port}`)?.id;
  }

  /** Kernel memory charged for all edge maps, in bytes (fdinfo memlock). */
  memlockBytes(): number {
    let n = 0;
    for (const name of MAP_NAMES) n += this.maps[name].memlockBytes();
    return n;
  }

  /** Slots of edge_ring in use by service regions. */
  ringSlotsUsed(): number {
    return this.regions.usedSlots();
  }
}

class Writes {
  backends = new Batch(4, BACKEND_SIZE);
  ring = new Batch(4, 4 * EDGE_RING_PER_ELEM);
  services = new Batch(8, 20);
  srcAdds: Buffer[] = [];
  srcDeletes: Buffer[] = [];
  svcDeletes: Buffer[] = [];
  newSvcIds: number[] = [];
  newBeIds: number[] = [];
}

function sameWords(a: Uint32Array, b: Uint32Array, from: number, n: number): boolean {
  for (let i = from; i < from + n; i++) if (a[i] !== b[i]) return false;
  return true;
}

function svcKeyString(vip: string, port: number, protocol: string): string {
  return `${vip}:${port}/${protocol}`;
}

function normaliseCidr(c: string): string {
  const key = encodeSrcRangeKey(0, c.includes('/') ? c : `${c}/32`);
  const a = key.readUInt32BE(8);
  return `${u32ToIpv4(a)}/${key.readUInt32LE(0) - 32}`;
}

function validateService(d: DesiredService): void {
  const where = `service ${d.service} (${d.frontend.vip}:${d.frontend.port}/${d.frontend.protocol})`;
  try {
    ipv4ToU32(d.frontend.vip, 'VIP');
    if (!Number.isInteger(d.frontend.port) || d.frontend.port < 1 || d.frontend.port > 65535) throw new Error(`port ${d.frontend.port} is not 1..65535`);
    protoNumber(d.frontend.protocol);
    if (!['dsr', 'snat', 'hybrid'].includes(d.mode)) throw new Error(`mode '${d.mode}' is not dsr, snat or hybrid`);
    if (!['ip-option', 'ipip', 'auto'].includes(d.dispatch)) throw new Error(`dispatch '${d.dispatch}' is not ip-option, ipip or auto`);
    if (!Number.isInteger(d.affinityTimeoutSeconds) || d.affinityTimeoutSeconds < 0) {
      throw new Error(`affinity timeout ${d.affinityTimeoutSeconds} must be a non-negative integer`);
    }
    for (const b of d.backends) {
      ipv4ToU32(b.ip, 'backend IP');
      ipv4ToU32(b.nodeIp, `node IP of backend ${b.ip}`);
      if (!Number.isInteger(b.port) || b.port < 1 || b.port > 65535) throw new Error(`backend ${b.ip} port ${b.port} is not 1..65535`);
      if (!Number.isInteger(b.weight) || b.weight < 1) throw new Error(`backend ${b.ip}:${b.port} weight ${b.weight} must be an integer ≥ 1`);
    }
    for (const r of d.sourceRanges) normaliseCidr(r);
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`, { cause: e });
  }
}
