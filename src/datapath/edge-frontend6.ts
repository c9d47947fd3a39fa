// The map entries of one IPv6 frontend (bpf/include/edge_maps6.h), given
// the ids and the ring region it was allocated. Pure: no maps, no I/O.
//
// An IPv6 frontend is laid out like an IPv4 one (edge-plan.ts): a service
// value with its id and Maglev region, the region's slots in the shared
// edge_ring filled by the same Maglev (members keyed "ip:port", so the
// same backend set gives the same table on every edge for either family),
// one entry per backend under the shared backend-id space, a VIP marker
// {vip, 0, 0}, source ranges under the service id.
//
// Not yet wired into EdgePlanner: the agent still refuses IPv6 frontends
// (edge-frontend-check.ts, UnsupportedFamily). Tests and bench:datapath
// program IPv6 frontends through this encoder with ids and a region they
// choose outside the planner's.
import type { DesiredService } from '../model/types.js';
import { chooseTableSize, maglevTable } from './maglev.js';
import { protoNumber } from '../net/l4.js';
import {
  BE_F_ACTIVE,
  BE_F_IPIP,
  BE_F_VALID,
  EDGE_RING_PER_ELEM,
  SVC_F_MARKER,
  SVC_F_SRC_RANGES,
  encodeBackend6,
  encodeSrcRange6Key,
  encodeSvc,
  encodeSvc6Key,
  u32Key,
} from './edge-maps.js';

export interface Frontend6Slots {
  svcId: number;
  /** First slot of the region (a multiple of its size, which is 2^cls of chooseTableSize). */
  ringOff: number;
  /** One id per backend of the frontend, in its order. */
  backendIds: number[];
}

export interface Frontend6Writes {
  /** edge_services6: the service and the VIP marker. */
  services6: Array<[Buffer, Buffer]>;
  backends6: Array<[Buffer, Buffer]>;
  /** edge_ring elements (16 slots each) of the region. */
  ring: Array<[Buffer, Buffer]>;
  srcRanges6: Buffer[];
  /** Region size in slots (2^cls). */
  regionSlots: number;
}

/** Entries for `d` (IPv6 VIP, backends and node addresses; dsr mode). Throws naming what it cannot encode. */
export function frontend6Writes(d: DesiredService, slots: Frontend6Slots, maglevTableSize: number, dispatch: 'ip-option' | 'ipip'): Frontend6Writes {
  if (d.mode !== 'dsr') throw new Error(`${d.service}: mode ${d.mode} is not served for IPv6 (dsr only)`);
  if (slots.backendIds.length !== d.backends.length) throw new Error(`${d.service}: ${d.backends.length} backends but ${slots.backendIds.length} ids`);
  const proto = protoNumber(d.frontend.protocol);
  const active = d.backends.map((b, i) => ({ b, id: slots.backendIds[i]! })).filter((x) => x.b.state === 'active');
  const size = active.length > 0 ? chooseTableSize(active.length, maglevTableSize) : null;
  const regionSlots = size ? 2 ** size.cls : 0;
  if (size && slots.ringOff % regionSlots !== 0) throw new Error(`ring offset ${slots.ringOff} is not aligned to the region size ${regionSlots}`);
  const out: Frontend6Writes = { services6: [], backends6: [], ring: [], srcRanges6: [], regionSlots };
  d.backends.forEach((b, i) => {
    const flags = BE_F_VALID | (b.state === 'active' ? BE_F_ACTIVE : 0) | (dispatch === 'ipip' ? BE_F_IPIP : 0);
    out.backends6.push([u32Key(slots.backendIds[i]!), encodeBackend6({ ip: b.ip, nodeIp: b.nodeIp, port: b.port, flags, svcId: slots.svcId })]);
  });
  if (size) {
    const idx = maglevTable(active.map((x) => ({ key: `${x.b.ip}:${x.b.port}`, weight: x.b.weight })), size.m);
    const ids = new Uint32Array(regionSlots);
    for (let i = 0; i < size.m; i++) ids[i] = active[idx[i]!]!.id;
    for (let e = 0; e < regionSlots; e += EDGE_RING_PER_ELEM) {
      const v = Buffer.alloc(4 * EDGE_RING_PER_ELEM);
      for (let j = 0; j < EDGE_RING_PER_ELEM; j++) v.writeUInt32LE(ids[e + j]!, 4 * j);
      out.ring.push([u32Key((slots.ringOff + e) / EDGE_RING_PER_ELEM), v]);
    }
  }
  for (const r of d.sourceRanges) out.srcRanges6.push(encodeSrcRange6Key(slots.svcId, r.includes('/') ? r : `${r}/128`));
  const flags = d.sourceRanges.length > 0 ? SVC_F_SRC_RANGES : 0;
  out.services6.push([
    encodeSvc6Key({ vip: d.frontend.vip, port: d.frontend.port, proto }),
    encodeSvc({ id: slots.svcId, ringOff: size ? slots.ringOff : 0, ringSize: size ? size.m : 0, affinityTimeout: d.affinityTimeoutSeconds, flags }),
  ]);
  out.services6.push([encodeSvc6Key({ vip: d.frontend.vip, port: 0, proto: 0 }), encodeSvc({ id: 0, ringOff: 0, ringSize: 0, affinityTimeout: 0, flags: SVC_F_MARKER })]);
  return out;
}
