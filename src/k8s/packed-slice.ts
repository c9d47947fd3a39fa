// EndpointSlices as the edge's cache keeps them: every endpoint of a slice
// in one string instead of an object, an address array, an address string
// and a conditions reference each. At 100 000 endpoints the objects were
// ~15 MB of the agent's live heap (and V8 lets the heap grow to several
// times its live set); the strings are ~2.5 MB. A Service's slices are
// unpacked when it is computed, into short-lived objects.
//
// Only what desired state reads survives: an endpoint's first address (the
// model serves that one; the others are the same pod's), its ready /
// serving / terminating conditions and its node. A slice with an endpoint
// that does not fit the encoding (a separator inside a value, a condition
// that is not a boolean) keeps its endpoints as objects instead: odd input
// costs memory, never correctness.
import type { V1Endpoint, V1EndpointConditions, V1EndpointSlice } from '@kubernetes/client-node';
import { SERVICE_NAME_LABEL } from '../model/desired.js';
import { intern, sharedPorts, trimSlice } from './trim.js';

export interface PackedSlice {
  metadata: { name?: string; namespace?: string; resourceVersion?: string };
  /** The kubernetes.io/service-name label: the Service whose endpoints these are. */
  service: string | undefined;
  addressType: V1EndpointSlice['addressType'];
  ports: V1EndpointSlice['ports'];
  /** The packed endpoints (see packEndpoints), or the trimmed objects when they do not pack. */
  endpoints: string | readonly V1Endpoint[];
}

/** Between endpoints, and between an endpoint's address and its node: neither may occur in an IP, an FQDN or a node name. */
const ENDPOINT_SEP = ',';
const NODE_SEP = ' ';

// Conditions as one letter: each of ready, serving, terminating is absent
// (or null, which desired state reads the same way), true or false.
const TRI = [undefined, true, false] as const;
const CONDITION_CODE_BASE = 'a'.charCodeAt(0);
/** The 27 condition combinations, shared (frozen) by every unpacked endpoint. */
const CONDITIONS: readonly Readonly<V1EndpointConditions>[] = TRI.flatMap((ready) =>
  TRI.flatMap((serving) =>
    TRI.map((terminating) => {
      const c: V1EndpointConditions = {};
      if (ready !== undefined) c.ready = ready;
      if (serving !== undefined) c.serving = serving;
      if (terminating !== undefined) c.terminating = terminating;
      return Object.freeze(c);
    }),
  ),
);

function tri(v: unknown): number {
  if (v === undefined || v === null) return 0;
  if (v === true) return 1;
  if (v === false) return 2;
  return -1;
}

function conditionCode(c: V1EndpointConditions | undefined | null): string | null {
  if (c === undefined || c === null) return String.fromCharCode(CONDITION_CODE_BASE);
  if (typeof c !== 'object') return null;
  const r = tri(c.ready);
  const s = tri(c.serving);
  const t = tri(c.terminating);
  if (r < 0 || s < 0 || t < 0) return null;
  return String.fromCharCode(CONDITION_CODE_BASE + r * 9 + s * 3 + t);
}

function packable(v: unknown): v is string | undefined {
  return v === undefined || (typeof v === 'string' && !v.includes(ENDPOINT_SEP) && !v.includes(NODE_SEP));
}

/** "<condition letter><first address> <node>" per endpoint, joined by commas; null when one does not fit. */
export function packEndpoints(endpoints: readonly V1Endpoint[]): string | null {
  const parts: string[] = [];
  for (const ep of endpoints) {
    if (ep === null || typeof ep !== 'object') return null;
    const addresses: unknown = ep.addresses;
    if (addresses !== undefined && addresses !== null && !Array.isArray(addresses)) return null;
    const addr: unknown = (addresses as unknown[] | null | undefined)?.[0];
    const node: unknown = ep.nodeName ?? undefined;
    const cond = conditionCode(ep.conditions);
    if (cond === null || !packable(addr) || !packable(node)) return null;
    parts.push(`${cond}${addr ?? ''}${NODE_SEP}${node ?? ''}`);
  }
  return parts.join(ENDPOINT_SEP);
}

/** The endpoints of a packed slice as objects (what desired state reads of them). */
export function unpackEndpoints(packed: string | readonly V1Endpoint[]): V1Endpoint[] {
  if (typeof packed !== 'string') return [...packed];
  if (packed === '') return [];
  return packed.split(ENDPOINT_SEP).map((rec) => {
    const sep = rec.indexOf(NODE_SEP);
    const addr = rec.slice(1, sep);
    const node = rec.slice(sep + 1);
    const ep: V1Endpoint = { addresses: addr === '' ? [] : [addr], conditions: CONDITIONS[rec.charCodeAt(0) - CONDITION_CODE_BASE] as V1EndpointConditions };
    // Shared: a Service's state keeps the names of its backends' nodes.
    if (node !== '') ep.nodeName = intern(node);
    return ep;
  });
}

/** A slice as received → as cached. Never throws (the informer would then cache the raw object in its place). */
export function packSlice(s: V1EndpointSlice): PackedSlice {
  const md = s?.metadata ?? {};
  const raw = Array.isArray(s?.endpoints) ? s.endpoints : [];
  let endpoints: string | readonly V1Endpoint[] | null = null;
  try {
    endpoints = packEndpoints(raw);
  } catch {
    /* kept as objects below */
  }
  if (endpoints === null) {
    try {
      endpoints = trimSlice(s).endpoints ?? [];
    } catch {
      endpoints = raw;
    }
  }
  const service = md.labels?.[SERVICE_NAME_LABEL];
  return {
    metadata: { name: md.name, namespace: intern(md.namespace), resourceVersion: md.resourceVersion },
    service: typeof service === 'string' ? service : undefined,
    addressType: intern(s?.addressType) as string,
    ports: sharedPorts(s?.ports),
    endpoints,
  };
}

/** The slice as desired state reads it (fresh endpoint objects; ports and conditions shared and frozen). */
export function unpackSlice(p: PackedSlice): V1EndpointSlice {
  return {
    metadata: { name: p.metadata.name, namespace: p.metadata.namespace, labels: p.service === undefined ? {} : { [SERVICE_NAME_LABEL]: p.service } },
    addressType: p.addressType,
    ports: p.ports,
    endpoints: unpackEndpoints(p.endpoints),
  };
}
