// Reads what the pinned edge maps hold into an EdgeSnapshot, so a restarted
// agent's planner adopts the frontends, ids and regions in use instead of
// rewriting (or worse, reusing) them. Backends come from one batched walk
// over the array; only entries marked valid and owned by a live service
// count.
import { decodeScPrev } from './second-chance.js';
import { BACKEND6_SIZE, BACKEND_SIZE, SC_PREV_SIZE, SVC_F_MARKER, decodeBackend, decodeBackend6, decodeSvc, decodeSvc6Key, decodeSvcKey, ipv6FromBytes } from './edge-maps.js';
import { u32ToIpv4 } from '../net/ip.js';
import type { EdgeSnapshot } from './edge-plan.js';
import type { EdgeMaps } from './edge-writer.js';

export function readSnapshot(
  maps: Pick<EdgeMaps, 'edge_services' | 'edge_backends' | 'edge_src_ranges' | 'edge_sc_prev'> & Partial<Pick<EdgeMaps, 'edge_services6' | 'edge_backends6' | 'edge_src_ranges6'>>,
): EdgeSnapshot {
  const snap: EdgeSnapshot = { services: [], markers: [], backends: [], srcRanges: [], scPrev: [] };
  // Previous tables (second chance) hold their regions whatever else the maps hold.
  // One batched walk: an array's every slot is an entry, and 65 536 lookups
  // one syscall each cost seconds at boot under emulation.
  for (const { keys, values, count } of maps.edge_sc_prev.lookupBatches(65536)) {
    for (let i = 0; i < count; i++) {
      // ringSize (offset 4) first: nearly every slot is closed, so decode only the open ones.
      if (values.readUInt32LE(i * SC_PREV_SIZE + 4) === 0) continue;
      snap.scPrev!.push({ svcId: keys.readUInt32LE(i * 4), ...decodeScPrev(values.subarray(i * SC_PREV_SIZE, (i + 1) * SC_PREV_SIZE)) });
    }
  }
  const ids = new Set<number>();
  for (const [k, v] of maps.edge_services.entries()) {
    const key = decodeSvcKey(k);
    const val = decodeSvc(v);
    if (val.flags & SVC_F_MARKER) {
      snap.markers.push(key.vip);
      continue;
    }
    snap.services.push({ keyBuf: Buffer.from(k), vip: key.vip, port: key.port, proto: key.proto, id: val.id, ringOff: val.ringOff, ringSize: val.ringSize, flags: val.flags, value: Buffer.from(v) });
    ids.add(val.id);
  }
  // IPv6 frontends (edge_maps6.h): the same shapes, their own maps.
  const ids6 = new Set<number>();
  for (const [k, v] of maps.edge_services6?.entries() ?? []) {
    const key = decodeSvc6Key(k);
    const val = decodeSvc(v);
    if (val.flags & SVC_F_MARKER) {
      snap.markers.push(key.vip);
      continue;
    }
    snap.services.push({ keyBuf: Buffer.from(k), vip: key.vip, port: key.port, proto: key.proto, id: val.id, ringOff: val.ringOff, ringSize: val.ringSize, flags: val.flags, value: Buffer.from(v) });
    ids6.add(val.id);
  }
  if (ids6.size > 0 && maps.edge_backends6 && maps.edge_src_ranges6) {
    for (const { keys, values, count } of maps.edge_backends6.lookupBatches(65536)) {
      for (let i = 0; i < count; i++) {
        const v = decodeBackend6(values.subarray(i * BACKEND6_SIZE, (i + 1) * BACKEND6_SIZE));
        if (!ids6.has(v.svcId)) continue;
        snap.backends.push({ id: keys.readUInt32LE(i * 4), ...v });
      }
    }
    for (const k of maps.edge_src_ranges6.keys()) {
      const svcId = k.readUInt32LE(4);
      if (ids6.has(svcId)) snap.srcRanges.push({ svcId, cidr: `${ipv6FromBytes(k, 8)}/${k.readUInt32LE(0) - 32}` });
    }
  }
  if (ids.size === 0) return snap;
  for (const { keys, values, count } of maps.edge_backends.lookupBatches(65536)) {
    for (let i = 0; i < count; i++) {
      const v = decodeBackend(values.subarray(i * BACKEND_SIZE, (i + 1) * BACKEND_SIZE));
      if (!ids.has(v.svcId)) continue;
      snap.backends.push({ id: keys.readUInt32LE(i * 4), ...v });
    }
  }
  for (const k of maps.edge_src_ranges.keys()) {
    const svcId = k.readUInt32LE(4);
    if (!ids.has(svcId)) continue;
    snap.srcRanges.push({ svcId, cidr: `${u32ToIpv4(k.readUInt32BE(8))}/${k.readUInt32LE(0) - 32}` });
  }
  return snap;
}
