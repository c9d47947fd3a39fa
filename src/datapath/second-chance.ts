// The edge's side of the second chance (docs/second-chance.md): when a
// service's Maglev table changes, the table in force before it is kept in a
// region of edge_ring for a bounded window and named in edge_sc_prev, so
// the datapath can tell a flow without an entry which backend held its slot
// before (bpf/include/edge_second_chance.h).
//
// Decisions are pure (mergePrevious); PreviousTables owns the regions and
// the map entries. Write order for packets in flight: the previous table's
// slots, then its edge_sc_prev entry — both before the service's own ring
// changes (EdgeDatapath calls flush() first); at the end of a window the
// entry is closed before its region is released.
import type { BpfMap } from './loader.js';
import type { RegionAllocator } from './edge-regions.js';
import { EDGE_RING_PER_ELEM } from './edge-maps.js';

export const SC_PREV_SIZE = 24;
/** A window was opened since the service got its id: edge_sc_flows may hold its flows. */
export const SC_PREV_F_FLOWS = 0x1;
export const SC_OPT_LEN = 20;
export const SC_F_HANDED = 0x01;

export const EDGE_SC_STAT_NAMES = ['sc_sent', 'sc_remembered', 'sc_not_remembered', 'sc_same_backend', 'sc_secondary_gone'] as const;
export type EdgeScStatName = (typeof EDGE_SC_STAT_NAMES)[number];

export interface ScPrev {
  ringOff: number;
  ringSize: number;
  untilNs: bigint;
  flags: number;
}

export function encodeScPrev(v: ScPrev): Buffer {
  const b = Buffer.alloc(SC_PREV_SIZE);
  b.writeUInt32LE(v.ringOff, 0);
  b.writeUInt32LE(v.ringSize, 4);
  b.writeBigUInt64LE(v.untilNs, 8);
  b.writeUInt32LE(v.flags, 16);
  return b;
}

export function decodeScPrev(b: Buffer): ScPrev {
  return { ringOff: b.readUInt32LE(0), ringSize: b.readUInt32LE(4), untilNs: b.readBigUInt64LE(8), flags: b.readUInt32LE(16) };
}

/**
 * The secondary table after a change from `cur` to `next` (both of M
 * slots; ids of 0 are no backend). `prev` is the secondary table still in
 * its window (same M), or null. Per slot, the oldest assignment that is
 * still a backend (`alive`) and differs from the new one wins: connections
 * made before a burst of changes keep finding their backend; a slot whose
 * candidates are all gone or equal to the new one names no secondary (its
 * new backend, which the datapath treats as "same backend").
 */
export function mergePrevious(prev: Uint32Array | null, cur: Uint32Array, next: Uint32Array, m: number, alive: ReadonlySet<number>): Uint32Array {
  const out = new Uint32Array(cur.length);
  for (let s = 0; s < m; s++) {
    const n = next[s]!;
    const p = prev ? prev[s]! : 0;
    const c = cur[s]!;
    if (p !== 0 && p !== n && alive.has(p)) out[s] = p;
    else if (c !== n && alive.has(c)) out[s] = c;
    else out[s] = n;
  }
  return out;
}

interface Kept {
  ringOff: number;
  cls: number;
  m: number;
  untilNs: bigint;
  /** Slots as written (null after a restart: the merge then starts from the current table). */
  table: Uint32Array | null;
}

export class PreviousTables {
  private readonly kept = new Map<number, Kept>(); // service id → its previous table
  private readonly pending: Array<{ svcId: number; kept: Kept }> = [];
  /** Services whose previous table could not be placed (edge_ring full), since start. */
  skipped = 0;

  constructor(
    private readonly prevMap: BpfMap,
    private readonly ringMap: BpfMap,
    private readonly regions: RegionAllocator,
    /** Window length in ns; 0 turns the second chance off. */
    private readonly windowNs: bigint,
    private readonly clockNs: () => bigint,
  ) {}

  /** After a restart: the regions named in edge_sc_prev are in use. */
  rebuild(): void {
    for (const [k, v] of this.prevMap.entries()) {
      const p = decodeScPrev(v);
      if (p.ringSize === 0) continue;
      const cls = Math.max(8, 32 - Math.clz32(p.ringSize));
      this.regions.reserve(p.ringOff, cls);
      this.kept.set(k.readUInt32LE(0), { ringOff: p.ringOff, cls, m: p.ringSize, untilNs: p.untilNs, table: null });
    }
  }

  /**
   * The service's table changes from `cur` (cls/m) to `next` (m slots);
   * `alive` are the backend ids of the new set (active or terminating).
   * Plans the previous table; flush() writes it.
   */
  onChange(svcId: number, cur: Uint32Array, curCls: number, curM: number, next: Uint32Array, nextM: number, alive: ReadonlySet<number>): void {
    if (this.windowNs === 0n) return;
    const old = this.kept.get(svcId);
    const sameShape = curM === nextM;
    const prevTable = old && old.table && old.m === curM && sameShape ? old.table : null;
    // A table of another size maps hashes to other slots: no merge, and a
    // backend that left names no secondary (0, never a valid id).
    const table = sameShape ? mergePrevious(prevTable, cur, next, curM, alive) : cur.map((id, s) => (s < curM && alive.has(id) ? id : 0));
    let ringOff: number;
    if (old && old.cls === curCls) {
      ringOff = old.ringOff;
    } else {
      const off = this.regions.alloc(curCls);
      if (off === null) {
        this.skipped++;
        return;
      }
      if (old) this.regions.release(old.ringOff);
      ringOff = off;
    }
    const kept: Kept = { ringOff, cls: curCls, m: curM, untilNs: this.clockNs() + this.windowNs, table };
    this.kept.set(svcId, kept);
    this.pending.push({ svcId, kept });
  }

  /** Writes what onChange planned: slots, then the entry. Call before the ring changes. */
  flush(): void {
    if (this.pending.length === 0) return;
    const P = EDGE_RING_PER_ELEM;
    for (const { svcId, kept } of this.pending.splice(0)) {
      const t = kept.table!;
      const elems = t.length / P;
      const keys = Buffer.alloc(elems * 4);
      const vals = Buffer.from(t.buffer, t.byteOffset, t.length * 4);
      for (let e = 0; e < elems; e++) keys.writeUInt32LE(kept.ringOff / P + e, e * 4);
      this.ringMap.updateBatchPacked(keys, vals);
      this.prevMap.update(u32(svcId), encodeScPrev({ ringOff: kept.ringOff, ringSize: kept.m, untilNs: kept.untilNs, flags: SC_PREV_F_FLOWS }));
    }
  }

  /** Closes windows that ended: the entry first, then the region. Returns how many. */
  expire(now = this.clockNs()): number {
    let n = 0;
    for (const [svcId, k] of this.kept) {
      if (k.untilNs > now) continue;
      this.prevMap.update(u32(svcId), encodeScPrev({ ringOff: 0, ringSize: 0, untilNs: 0n, flags: SC_PREV_F_FLOWS }));
      this.regions.release(k.ringOff);
      this.kept.delete(svcId);
      n++;
    }
    return n;
  }

  /** The service is gone (its id will be reused): clear its entry, release its region. */
  forget(svcId: number): void {
    this.prevMap.update(u32(svcId), Buffer.alloc(SC_PREV_SIZE));
    const k = this.kept.get(svcId);
    if (!k) return;
    this.regions.release(k.ringOff);
    this.kept.delete(svcId);
  }

  /** Services with a previous table in its window. */
  get open(): number {
    return this.kept.size;
  }

  /** Slots held by previous tables. */
  slots(): number {
    let n = 0;
    for (const k of this.kept.values()) n += 2 ** k.cls;
    return n;
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
