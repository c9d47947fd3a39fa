// Writes an EdgePlan to the edge maps in the one order that keeps every
// intermediate state valid for packets in flight (each step for the IPv4
// maps, then their IPv6 twins, edge_maps6.h):
//   counters of fresh ids zeroed → backend entries → previous Maglev tables
//   (second chance: slots, then their edge_sc_prev entries) → Maglev slots →
//   source ranges added → service entries → source ranges deleted → service
//   entries deleted → edge_sc_prev entries of removed services cleared →
//   backend entries of retired backends invalidated.
// So no slot points at a backend entry that is not yet written, no service
// entry points at a region that is not yet filled, and a retired backend is
// invalidated only once nothing refers to it. Releasing the retired ids and
// regions (EdgePlanner.commit) comes after all of it.
import type { BpfMap } from './loader.js';
import { PackedBatch } from './edge-batch.js';
import { SC_PREV_SIZE, u32Key, type EdgeMapName } from './edge-maps.js';
import type { EdgePlan } from './edge-plan.js';

export type EdgeMaps = Readonly<Record<EdgeMapName, BpfMap>>;

/** Elements per BPF_MAP_UPDATE_BATCH call (bounded kernel-side copies). */
const CHUNK = 1 << 18;

export function flushBatch(map: BpfMap, batch: PackedBatch): void {
  for (let i = 0; i < batch.n; i += CHUNK) {
    const { keys, vals } = batch.slice(i, Math.min(batch.n, i + CHUNK));
    map.updateBatchPacked(keys, vals);
  }
}

function zeroed(map: BpfMap, ids: readonly number[]): void {
  if (ids.length === 0) return;
  const b = new PackedBatch(4, map.valueBufSize);
  for (const id of ids) b.pushZeroed(id);
  flushBatch(map, b);
}

export function writePlan(maps: EdgeMaps, plan: EdgePlan): void {
  zeroed(maps.edge_svc_stats, plan.newSvcIds);
  zeroed(maps.edge_be_stats, plan.newBeIds);
  flushBatch(maps.edge_backends, plan.backends);
  flushBatch(maps.edge_backends6, plan.backends6);
  flushBatch(maps.edge_ring, plan.scRing); // the previous tables before the rings change
  for (const e of plan.scPrev) maps.edge_sc_prev.update(u32Key(e.svcId), e.value);
  flushBatch(maps.edge_ring, plan.ring);
  for (const key of plan.srcAdds) maps.edge_src_ranges.update(key, Buffer.from([1]));
  for (const key of plan.srcAdds6) maps.edge_src_ranges6.update(key, Buffer.from([1]));
  flushBatch(maps.edge_services, plan.services);
  flushBatch(maps.edge_services6, plan.services6);
  for (const key of plan.srcDeletes) maps.edge_src_ranges.delete(key);
  for (const key of plan.srcDeletes6) maps.edge_src_ranges6.delete(key);
  for (const key of plan.svcDeletes) maps.edge_services.delete(key);
  for (const key of plan.svcDeletes6) maps.edge_services6.delete(key);
  // The id will be reused: no window, and no flag saying edge_sc_flows may hold its flows.
  for (const id of plan.scForget) maps.edge_sc_prev.update(u32Key(id), Buffer.alloc(SC_PREV_SIZE));
  zeroed(maps.edge_backends, plan.retiredBackends);
  zeroed(maps.edge_backends6, plan.retiredBackends6);
}
