/**
 * The three patch formats kubectl and clients send: JSON merge patch (RFC 7386),
 * Kubernetes strategic merge patch (keyed list merging and `$` directives) and
 * JSON patch (RFC 6902). Pure functions over plain JSON values.
 */

export class PatchError extends Error {}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

/** RFC 7386: objects merge recursively, null deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  return mergeInto(clone(target), patch);
}

/** Merges into `target`, which the caller owns (already a copy). */
function mergeInto(target: unknown, patch: unknown): unknown {
  if (!isObject(patch)) return clone(patch);
  const out: JsonObject = isObject(target) ? target : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergeInto(out[k], v) as Json;
  }
  return out;
}

/** Patch strategy of one field, as the Go struct tags declare it. */
export interface FieldStrategy {
  /** Lists of objects merged element-wise by this key (patchMergeKey). */
  mergeKey?: string;
  /** Lists of scalars merged as a set (patchStrategy "merge" without key). */
  mergePrimitives?: boolean;
}

/** Looks up a field's strategy by its path of field names (list indexes skipped). */
export type StrategyLookup = (path: readonly string[]) => FieldStrategy | undefined;

export const noStrategies: StrategyLookup = () => undefined;

/** Builds a lookup from `'spec.ports' → {mergeKey:'port'}` style entries. */
export function strategyTable(entries: Record<string, FieldStrategy>): StrategyLookup {
  return (path) => entries[path.join('.')];
}

const SET_ORDER = '$setElementOrder/';
const DELETE_PRIMITIVE = '$deleteFromPrimitiveList/';

/**
 * Strategic merge patch. Supports what kubectl apply and controllers produce:
 * `$patch: replace|delete|merge`, `$retainKeys`, `$setElementOrder/<f>`,
 * `$deleteFromPrimitiveList/<f>`, keyed list merge and primitive-set merge.
 */
export function strategicMergePatch(target: unknown, patch: unknown, strategies: StrategyLookup): unknown {
  if (!isObject(patch)) throw new PatchError('strategic merge patch must be a JSON object');
  return smpObject(isObject(target) ? clone(target) : {}, patch, [], strategies);
}

/** Patches `target` in place (the caller owns it) and returns it, or undefined for `$patch: delete`. */
function smpObject(target: JsonObject, patch: JsonObject, path: string[], st: StrategyLookup): Json | undefined {
  const directive = patch['$patch'];
  if (directive === 'delete') return undefined;
  if (directive === 'replace') {
    const rest = clone(patch);
    delete rest['$patch'];
    return stripDirectives(rest);
  }
  if (directive !== undefined && directive !== 'merge') throw new PatchError(`unknown $patch directive ${JSON.stringify(directive)}`);
  const out: JsonObject = target;
  const retain = patch['$retainKeys'];
  if (retain !== undefined && !Array.isArray(retain)) throw new PatchError('$retainKeys must be a list');
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch' || k === '$retainKeys' || k.startsWith(SET_ORDER)) continue;
    if (k.startsWith(DELETE_PRIMITIVE)) {
      const field = k.slice(DELETE_PRIMITIVE.length);
      if (!Array.isArray(v)) throw new PatchError(`${k} must be a list`);
      const cur = out[field];
      if (Array.isArray(cur)) out[field] = cur.filter((x) => !v.some((d) => JSON.stringify(d) === JSON.stringify(x)));
      continue;
    }
    const fieldPath = [...path, k];
    if (v === null) {
      delete out[k];
    } else if (isObject(v)) {
      const merged = smpObject(isObject(out[k]) ? (out[k] as JsonObject) : {}, v, fieldPath, st);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    } else if (Array.isArray(v)) {
      out[k] = smpList(out[k], v, fieldPath, st, patch[SET_ORDER + k]);
    } else {
      out[k] = clone(v);
    }
  }
  // $setElementOrder may come without the list itself (only reordering).
  for (const [k, order] of Object.entries(patch)) {
    if (!k.startsWith(SET_ORDER)) continue;
    const field = k.slice(SET_ORDER.length);
    if (Object.hasOwn(patch, field)) continue;
    const cur = out[field];
    if (Array.isArray(cur) && Array.isArray(order)) out[field] = reorder(cur, order, st([...path, field])?.mergeKey);
  }
  if (Array.isArray(retain)) {
    for (const k of Object.keys(out)) if (!retain.includes(k)) delete out[k];
  }
  return out;
}

function stripDirectives(v: Json): Json {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObject(v)) return v;
  const out: JsonObject = {};
  for (const [k, x] of Object.entries(v)) {
    if (k.startsWith('$')) continue;
    out[k] = stripDirectives(x);
  }
  return out;
}

function smpList(target: Json | undefined, patch: Json[], path: string[], st: StrategyLookup, order: Json | undefined): Json[] {
  const strategy = st(path);
  // A list whose first element is {$patch: replace} is replaced wholesale.
  if (patch.some((e) => isObject(e) && e['$patch'] === 'replace')) {
    return patch.filter((e) => !(isObject(e) && e['$patch'] === 'replace')).map(stripDirectives);
  }
  const cur = Array.isArray(target) ? target : [];
  if (strategy?.mergeKey) {
    const key = strategy.mergeKey;
    let out = cur;
    for (const p of patch) {
      if (!isObject(p)) throw new PatchError(`list ${path.join('.')} merges by "${key}" but an element is not an object`);
      if (!Object.hasOwn(p, key)) throw new PatchError(`map in list ${path.join('.')} does not contain the merge key "${key}"`);
      const idx = out.findIndex((e) => isObject(e) && JSON.stringify(e[key]) === JSON.stringify(p[key]));
      if (p['$patch'] === 'delete') {
        if (idx >= 0) out = out.filter((_, i) => i !== idx);
        continue;
      }
      if (idx >= 0) {
        const merged = smpObject(out[idx] as JsonObject, p, path, st);
        if (merged === undefined) out = out.filter((_, i) => i !== idx);
        else out[idx] = merged;
      } else {
        const added = smpObject({}, p, path, st);
        if (added !== undefined) out.push(added);
      }
    }
    return Array.isArray(order) ? reorder(out, order, key) : out;
  }
  if (strategy?.mergePrimitives) {
    const out = cur;
    for (const p of patch) if (!out.some((e) => JSON.stringify(e) === JSON.stringify(p))) out.push(clone(p));
    return Array.isArray(order) ? reorder(out, order, undefined) : out;
  }
  return patch.map(stripDirectives);
}

/** Orders a merged list like $setElementOrder; elements not named keep their place at the end. */
function reorder(list: Json[], order: Json[], key: string | undefined): Json[] {
  const id = (e: Json): string => JSON.stringify(key !== undefined && isObject(e) ? e[key] : e);
  const rank = new Map(order.map((o, i) => [id(o), i]));
  const named = list.filter((e) => rank.has(id(e))).sort((a, b) => rank.get(id(a))! - rank.get(id(b))!);
  const rest = list.filter((e) => !rank.has(id(e)));
  return [...named, ...rest];
}

/** RFC 6902 JSON patch: add, remove, replace, move, copy, test. */
export function jsonPatch(target: unknown, ops: unknown): unknown {
  if (!Array.isArray(ops)) throw new PatchError('json patch must be a list of operations');
  let doc = clone(target) as Json;
  for (const [i, raw] of ops.entries()) {
    if (!isObject(raw) || typeof raw['op'] !== 'string' || typeof raw['path'] !== 'string') {
      throw new PatchError(`json patch operation ${i} needs "op" and "path"`);
    }
    const op = raw['op'];
    const path = raw['path'];
    switch (op) {
      case 'add': doc = pointerSet(doc, path, clone(raw['value'] ?? null), 'add'); break;
      case 'replace': doc = pointerSet(doc, path, clone(raw['value'] ?? null), 'replace'); break;
      case 'remove': doc = pointerRemove(doc, path); break;
      case 'move': case 'copy': {
        const from = raw['from'];
        if (typeof from !== 'string') throw new PatchError(`json patch ${op} at ${i} needs "from"`);
        const v = clone(pointerGet(doc, from));
        if (op === 'move') doc = pointerRemove(doc, from);
        doc = pointerSet(doc, path, v, 'add');
        break;
      }
      case 'test':
        if (JSON.stringify(pointerGet(doc, path)) !== JSON.stringify(raw['value'])) {
          throw new PatchError(`json patch test failed at ${path}`);
        }
        break;
      default:
        throw new PatchError(`unknown json patch operation "${op}"`);
    }
  }
  return doc;
}

function parsePointer(p: string): string[] {
  if (p === '') return [];
  if (!p.startsWith('/')) throw new PatchError(`invalid JSON pointer "${p}"`);
  return p.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function pointerGet(doc: Json, p: string): Json {
  let cur: Json = doc;
  for (const part of parsePointer(p)) {
    if (Array.isArray(cur)) cur = cur[Number(part)] as Json;
    else if (isObject(cur) && Object.hasOwn(cur, part)) cur = cur[part]!;
    else throw new PatchError(`path ${p} does not exist`);
    if (cur === undefined) throw new PatchError(`path ${p} does not exist`);
  }
  return cur;
}

function parentOf(doc: Json, p: string): { parent: Json; last: string } {
  const parts = parsePointer(p);
  if (parts.length === 0) throw new PatchError('cannot address the document root here');
  const last = parts.pop()!;
  const parentPtr = parts.length === 0 ? '' : '/' + parts.map((s) => s.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
  return { parent: pointerGet(doc, parentPtr), last };
}

function pointerSet(doc: Json, p: string, value: Json, mode: 'add' | 'replace'): Json {
  if (p === '') return value;
  const { parent, last } = parentOf(doc, p);
  if (Array.isArray(parent)) {
    const idx = last === '-' ? parent.length : Number(last);
    if (!Number.isInteger(idx) || idx < 0 || idx > parent.length || (mode === 'replace' && idx >= parent.length)) {
      throw new PatchError(`index ${last} out of range at ${p}`);
    }
    if (mode === 'add') parent.splice(idx, 0, value);
    else parent[idx] = value;
  } else if (isObject(parent)) {
    if (mode === 'replace' && !Object.hasOwn(parent, last)) throw new PatchError(`path ${p} does not exist`);
    parent[last] = value;
  } else {
    throw new PatchError(`parent of ${p} is not a container`);
  }
  return doc;
}

function pointerRemove(doc: Json, p: string): Json {
  const { parent, last } = parentOf(doc, p);
  if (Array.isArray(parent)) {
    const idx = Number(last);
    if (!Number.isInteger(idx) || idx < 0 || idx >= parent.length) throw new PatchError(`index ${last} out of range at ${p}`);
    parent.splice(idx, 1);
  } else if (isObject(parent) && Object.hasOwn(parent, last)) {
    delete parent[last];
  } else {
    throw new PatchError(`path ${p} does not exist`);
  }
  return doc;
}
