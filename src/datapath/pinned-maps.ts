// Maps pinned by an earlier agent are reused by the next one (connection
// state survives a restart), but only when the kernel map is what this
// object defines: libbpf refuses to load otherwise, and an edge or node whose
// new version changed a map's layout — or its size, as toggling IPv6 does —
// would never start again. Such a pin is removed before the load, with a
// warning naming the map and what differs; the object then creates it anew,
// empty. Everything compatible keeps its contents.
import { existsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../log/logger.js';
import { BpfMap, type BpfObject } from './loader.js';
import type { MapDesc } from './loader/binding.js';

/** What makes a pinned map unusable for this object's definition (libbpf's reuse check), in words. */
function differences(want: MapDesc, have: BpfMap): string[] {
  const out: string[] = [];
  if (have.type !== want.type) out.push(`type ${have.typeName} ≠ ${want.typeName}`);
  if (have.keySize !== want.keySize) out.push(`key size ${have.keySize} ≠ ${want.keySize}`);
  if (have.valueSize !== want.valueSize) out.push(`value size ${have.valueSize} ≠ ${want.valueSize}`);
  if (have.maxEntries !== want.maxEntries) out.push(`max entries ${have.maxEntries} ≠ ${want.maxEntries}`);
  if (have.flags !== want.flags) out.push(`flags 0x${have.flags.toString(16)} ≠ 0x${want.flags.toString(16)}`);
  return out;
}

/**
 * Unpins every map under `dir` that `obj` (opened, not yet loaded, with its
 * sizes set) could not reuse; returns their names.
 */
export function unpinIncompatibleMaps(obj: BpfObject, dir: string, log: Logger): string[] {
  const replaced: string[] = [];
  for (const m of obj.maps()) {
    if (m.internal) continue;
    const path = join(dir, m.name);
    if (!existsSync(path)) continue;
    let why: string[];
    try {
      const pinned = BpfMap.openPinned(path);
      try {
        why = differences(m, pinned);
      } finally {
        pinned.close();
      }
    } catch (e) {
      why = [`not a map (${(e as Error).message})`];
    }
    if (why.length === 0) continue;
    unlinkSync(path);
    replaced.push(m.name);
    log.warn({ map: m.name, path }, `pinned map ${m.name} does not match this version (${why.join(', ')}): replaced by an empty one`);
  }
  return replaced;
}
