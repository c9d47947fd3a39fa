// The edge's side of the second chance (docs/second-chance.md): when a
// service's Maglev table changes, the table in force before it is kept in a
// region of edge_ring for a bounded window and named in edge_sc_prev, so
// the datapath can tell a flow without an entry which backend held its slot
// before (bpf/include/edge_second_chance.h).
//
// Pure like the planner that owns it (edge-plan.ts): PreviousTables decides
// and takes regions from the planner's allocator; what it writes goes into
// the planner's EdgePlan, and the writer (edge-writer.ts) keeps the order
// for packets in flight: the previous table's slots, then its edge_sc_prev
// entry — both before the service's own ring changes; entries of removed
// services are cleared after the service entry is gone. Regions a window
// gives up are released by EdgePlanner.commit, after the writes.
import type { RegionAllocator } from './edge-regions.js';
import type { PackedBatch } from './edge-batch.js';
import { EDGE_RING_PER_ELEM, SC_PREV_SIZE } from './edge-maps.js';

export { SC_PREV_SIZE } from './edge-maps.js';

/** A window was opened since the service got its id: edge_sc_flows (edge_sc_flows6 for an IPv6 frontend) may hold its flows. */
export const SC_PREV_F_FLOWS = 0x1;
export const SC_OPT_LEN = 20;
export const SC_F_HANDED = 0x01;

export const EDGE_SC_STAT_NAMES = ['sc_sent', 'sc_remembered', 'sc_not_remembered', 'sc_same_backend', 'sc_secondary_gone', 'sc_syn_kept'] as const;
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

/** The part of an EdgePlan previous tables write into (edge-plan.ts). */
export interface PreviousWrites {
  /** Slots of previous tables (edge_ring), written before their entries. */
  readonly scRing: PackedBatch;
  /** edge_sc_prev entries opened or closed, written before the rings change. */
  readonly scPrev: Array<{ svcId: number; value: Buffer }>;
  /** Service ids whose edge_sc_prev entry is cleared after the service entries are deleted. */
  readonly scForget: number[];
  readonly retiredRegions: number[];
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
  /** Services whose previous table could not be placed (edge_ring full), since start. */
  skipped = 0;

  constructor(
    private readonly regions: RegionAllocator,
    /** Window length in ns; 0 turns the second chance off. */
    private readonly windowNs: bigint,
    private readonly clockNs: () => bigint,
  ) {}

  /** After a restart: the regions named in edge_sc_prev (edge-restore.ts reads them) are in use. */
  rebuild(entries: readonly ({ svcId: number } & ScPrev)[]): void {
    for (const p of entries) {
      if (p.ringSize === 0) continue;
      const cls = Math.max(8, 32 - Math.clz32(p.ringSize));
      this.regions.reserve(p.ringOff, cls);
      this.kept.set(p.svcId, { ringOff: p.ringOff, cls, m: p.ringSize, untilNs: p.untilNs, table: null });
    }
  }

  /**
   * The service's table changes from `cur` (cls/m) to `next` (m slots);
   * `alive` are the backend ids of the new set (active or terminating).
   * Plans the previous table into `w`.
   */
  onChange(svcId: number, cur: Uint32Array, curCls: number, curM: number, next: Uint32Array, nextM: number, alive: ReadonlySet<number>, w: PreviousWrites): void {
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
      // The old region is released after the new entry is written.
      if (old) w.retiredRegions.push(old.ringOff);
      ringOff = off;
    }
    const kept: Kept = { ringOff, cls: curCls, m: curM, untilNs: this.clockNs() + this.windowNs, table };
    this.kept.set(svcId, kept);
    const P = EDGE_RING_PER_ELEM;
    for (let e = 0; e < table.length; e += P) w.scRing.pushU32s((ringOff + e) / P, table, e);
    w.scPrev.push({ svcId, value: encodeScPrev({ ringOff, ringSize: curM, untilNs: kept.untilNs, flags: SC_PREV_F_FLOWS }) });
  }

  /** Closes windows that ended: the entry is closed by the writes, the region released after them. Returns how many. */
  expire(w: PreviousWrites, now = this.clockNs()): number {
    let n = 0;
    for (const [svcId, k] of this.kept) {
      if (k.untilNs > now) continue;
      w.scPrev.push({ svcId, value: encodeScPrev({ ringOff: 0, ringSize: 0, untilNs: 0n, flags: SC_PREV_F_FLOWS }) });
      w.retiredRegions.push(k.ringOff);
      this.kept.delete(svcId);
      n++;
    }
    return n;
  }

  /** The service is gone (its id will be reused): clear its entry, release its region. */
  forget(svcId: number, w: PreviousWrites): void {
    w.scForget.push(svcId);
    const k = this.kept.get(svcId);
    if (!k) return;
    w.retiredRegions.push(k.ringOff);
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

/** Whether a table of `curM` slots differs from the next one. */
export function tableChanged(cur: Uint32Array, curM: number, next: Uint32Array, nextM: number): boolean {
  if (curM !== nextM) return true;
  for (let i = 0; i < curM; i++) if (cur[i] !== next[i]) return true;
  return false;
}
