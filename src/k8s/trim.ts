// What the informers cache of each object: plain JSON (lists are fetched
// raw, like watch events, so both have the same shape) trimmed to what
// edgelb reads. managedFields, last-applied annotations, endpoint
// targetRefs/hints and everything of a Node but its addresses are most of an
// informer's memory in a real cluster.
import type { V1EndpointConditions, V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { SERVICE_NAME_LABEL } from '../model/desired.js';
import { ANNOTATION_DISPATCH, ANNOTATION_IPS, ANNOTATION_MODE, ANNOTATION_SHARED, ANNOTATION_SHARED_NAMESPACES, ANNOTATION_SOURCE_RANGES } from '../model/service.js';
import { SharedLists } from '../shared-lists.js';

/** The annotations edgelb reads (src/model): every other one is dropped from the cache. */
const READ_ANNOTATIONS: readonly string[] = [ANNOTATION_IPS, ANNOTATION_SHARED, ANNOTATION_SHARED_NAMESPACES, ANNOTATION_MODE, ANNOTATION_DISPATCH, ANNOTATION_SOURCE_RANGES];

/**
 * What is cached of a Service. Every Service of the cluster is cached, and
 * anyone who may create one may give it 256 KB of annotations (a tool's,
 * or a tenant's on purpose): cached whole, a few thousand such Services
 * were gigabytes on every edge. So only the annotations edgelb reads are
 * kept, and of a Service that is not a LoadBalancer only its identity, type
 * and status (a Service that leaves us still gets its status cleaned; one
 * that becomes a LoadBalancer comes back whole in that update).
 */
export function trimService(svc: V1Service): V1Service {
  if (svc.spec?.type !== undefined && svc.spec.type !== 'LoadBalancer') return notLoadBalancer(svc);
  let md = svc.metadata;
  if (md) {
    md = without(md, 'managedFields');
    if (md.annotations && Object.keys(md.annotations).some((k) => !READ_ANNOTATIONS.includes(k))) md.annotations = only(md.annotations, READ_ANNOTATIONS);
    internIn(md, 'namespace');
    svc.metadata = md;
  }
  // Cluster addresses: edgelb serves the LoadBalancer address only.
  const spec = svc.spec ? without(svc.spec, 'clusterIP', 'clusterIPs') : undefined;
  if (spec) {
    for (const f of ['type', 'loadBalancerClass', 'sessionAffinity', 'externalTrafficPolicy', 'internalTrafficPolicy', 'ipFamilyPolicy'] as const) internIn(spec, f);
    if (Array.isArray(spec.ipFamilies)) spec.ipFamilies = sharedList('families', spec.ipFamilies.map((f) => intern(f)!));
    if (Array.isArray(spec.ports)) {
      // (Frozen: already shared, by an earlier trim of the same object.)
      for (const p of spec.ports) {
        if (Object.isFrozen(p)) continue;
        internIn(p, 'name');
        internIn(p, 'protocol');
      }
      spec.ports = sharedList('ports', spec.ports);
    }
    svc.spec = spec;
  }
  for (const c of svc.status?.conditions ?? []) {
    internIn(c, 'type');
    internIn(c, 'status');
    internIn(c, 'reason');
  }
  for (const i of svc.status?.loadBalancer?.ingress ?? []) internIn(i, 'ipMode');
  return svc;
}

/** A Service that is not a LoadBalancer: what tells that (type, identity) and its status, nothing else. */
function notLoadBalancer(svc: V1Service): V1Service {
  const md = svc.metadata ?? {};
  const out: V1Service = {
    metadata: { name: md.name, namespace: intern(md.namespace), uid: md.uid, resourceVersion: md.resourceVersion, generation: md.generation },
    spec: { type: intern(svc.spec?.type) },
  };
  if (svc.status) out.status = svc.status;
  return out;
}

/** A copy of `o` with only the `keep` fields, in their order. */
function only<T extends object>(o: T, keep: readonly string[]): T {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(o)) if (keep.includes(k)) out[k] = (o as Record<string, unknown>)[k];
  return out as T;
}

/**
 * A copy of `o` without the `drop` fields, other fields in their order.
 * Not `delete`: deleting a field (other than the last one added) turns a V8
 * object into a hash table, ~600 bytes more for each Service's metadata and
 * spec — 12 MB of the agent's heap at 10 000 Services.
 */
function without<T extends object>(o: T, ...drop: string[]): T {
  if (!drop.some((k) => Object.hasOwn(o, k))) return o;
  const out: Record<string, unknown> = {};
  // Keys, not Object.entries: one array, not a [key, value] pair per field (per Service, list and watch alike).
  for (const k of Object.keys(o)) if (!drop.includes(k)) out[k] = (o as Record<string, unknown>)[k];
  return out as T;
}

/** Replaces a string field by its shared copy (absent fields stay absent). */
function internIn<K extends string>(o: { [k in K]?: string }, k: K): void {
  const v = o[k];
  if (typeof v === 'string') o[k] = intern(v);
}

// Node names and endpoint conditions repeat across 100 000 endpoints, and
// "LoadBalancer", "TCP", the class, condition types and reasons across
// 10 000 Services (JSON.parse makes a new string each time); one shared
// (frozen) copy of each saves ~6 MB and ~5 MB at that scale.
const internedNames = new Map<string, string>();
const sharedConditions = new Map<string, Readonly<V1EndpointConditions>>();

export function intern(name: string | undefined): string | undefined {
  if (name === undefined || name.length > 253) return name;
  const have = internedNames.get(name);
  if (have !== undefined) return have;
  if (internedNames.size < 100_000) internedNames.set(name, name);
  return name;
}

function conditionsOf(c: V1EndpointConditions | undefined): V1EndpointConditions | undefined {
  if (c === undefined) return undefined;
  const key = `${String(c.ready)}|${String(c.serving)}|${String(c.terminating)}`;
  let shared = sharedConditions.get(key);
  if (!shared) {
    shared = Object.freeze({ ready: c.ready, serving: c.serving, terminating: c.terminating });
    sharedConditions.set(key, shared);
  }
  return shared as V1EndpointConditions;
}

const serviceLists = new SharedLists<unknown>();

/**
 * Lists most Services have alike — their ports (80/TCP → 8080), their IP
 * families — as one frozen copy each (~1.5 MB at 10 000 Services).
 */
function sharedList<T>(kind: string, list: T[]): T[] {
  return serviceLists.get(`${kind}:${JSON.stringify(list)}`, () => list) as T[];
}

const portLists = new SharedLists<NonNullable<V1EndpointSlice['ports']>[number]>();

/** Slices of Services with the same ports have equal port lists: one frozen copy. */
export function sharedPorts(ports: V1EndpointSlice['ports']): V1EndpointSlice['ports'] {
  // The API server sends `ports: null` for a slice of a Service without ports.
  if (!Array.isArray(ports)) return ports;
  return portLists.get(JSON.stringify(ports), () => ports.map((p) => ({ ...p, name: intern(p.name), protocol: intern(p.protocol) }))) as V1EndpointSlice['ports'];
}

export function trimSlice(s: V1EndpointSlice): V1EndpointSlice {
  const md = s.metadata ?? {};
  const svcName = md.labels?.[SERVICE_NAME_LABEL];
  return {
    metadata: { name: md.name, namespace: intern(md.namespace), uid: md.uid, resourceVersion: md.resourceVersion, labels: svcName === undefined ? {} : { [SERVICE_NAME_LABEL]: svcName } },
    addressType: s.addressType,
    ports: sharedPorts(s.ports),
    endpoints: (s.endpoints ?? []).map((e) => ({ addresses: e.addresses, conditions: conditionsOf(e.conditions), nodeName: intern(e.nodeName) })),
  };
}

export function trimNode(n: V1Node): V1Node {
  const md = n.metadata ?? {};
  return { metadata: { name: md.name, uid: md.uid, resourceVersion: md.resourceVersion }, status: { addresses: n.status?.addresses ?? [] } };
}

/**
 * An update of a cached object with every part equal to the cached
 * version's (same value, same key order) replaced by that part: strings,
 * objects, arrays, at any depth; the cached version itself when all of it
 * is equal. Used for Services, whose updates are mostly the echoes of our
 * own status writes: each echo was a whole new ~0.9 KB Service in V8's
 * young generation, all of it surviving (the cache keeps it) — ~18 MB of
 * survivors at 10 000 Services, which V8 counts when it decides to grow its
 * young generation. Shared, only the changed status and metadata are new.
 * Safe because cached objects are never changed in place; `update` is ours
 * (just parsed and trimmed) and is changed in place, frozen parts excepted.
 */
export function shareUnchanged<T>(cached: T, update: T): T {
  return shareParts(cached, update) as T;
}

function shareParts(prev: unknown, next: unknown): unknown {
  if (prev === next || typeof next !== typeof prev || prev === null || next === null) return next;
  if (typeof next === 'string') return prev === next ? prev : next;
  if (typeof next !== 'object') return next;
  if (Array.isArray(next)) {
    if (!Array.isArray(prev)) return next;
    const frozen = Object.isFrozen(next);
    let same = prev.length === next.length;
    for (let i = 0; i < next.length; i++) {
      if (i >= prev.length) break;
      const v = shareParts(prev[i], next[i]);
      if (v !== prev[i]) same = false;
      else if (!frozen) next[i] = v;
    }
    return same ? prev : next;
  }
  if (Array.isArray(prev)) return next;
  const p = prev as Record<string, unknown>;
  const n = next as Record<string, unknown>;
  const frozen = Object.isFrozen(n);
  let same = true;
  let count = 0;
  for (const k in n) {
    count++;
    if (!Object.hasOwn(p, k)) {
      same = false;
      continue;
    }
    const v = shareParts(p[k], n[k]);
    if (v !== p[k]) same = false;
    else if (!frozen) n[k] = v;
  }
  if (!same) return next;
  // Equal values: the cached one stands in only if its keys are the same, in the same order.
  const pk = Object.keys(p);
  if (pk.length !== count) return next;
  let i = 0;
  for (const k in n) if (pk[i++] !== k) return next;
  return prev;
}
