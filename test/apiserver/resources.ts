/**
 * The resource types this server serves, with what the real API server knows
 * about each: scope, verbs, short names, status subresource, supported field
 * selectors, strategic-merge-patch keys and printer columns.
 */
import { strategyTable, type StrategyLookup } from './patch.js';
import { tables, type Obj, type TableDef } from './tables.js';

export interface ResourceType {
  group: string;
  version: string;
  kind: string;
  listKind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  hasStatus: boolean;
  /** Objects of several API views can share one store (core and events.k8s.io Events). */
  storage: string;
  fieldSelectors: readonly string[];
  strategies: StrategyLookup;
  allowCreateOnUpdate: boolean;
  table: TableDef;
  /** Services and the like get a DNS-1035 label name; most others a DNS-1123 subdomain. */
  nameRule: 'dns1035' | 'dns1123subdomain' | 'path';
  /** Converts this view's object to the stored (core) form and back. */
  toStorage?: (obj: Obj) => Obj;
  fromStorage?: (obj: Obj) => Obj;
}

export const VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

export function apiVersionOf(r: ResourceType): string {
  return r.group === '' ? r.version : `${r.group}/${r.version}`;
}

const META = ['metadata.name', 'metadata.namespace'] as const;

const common = {
  'metadata.ownerReferences': { mergeKey: 'uid' },
  'metadata.finalizers': { mergePrimitives: true },
};

type Optional = 'listKind' | 'categories' | 'strategies' | 'allowCreateOnUpdate' | 'nameRule' | 'table';
function def(r: Omit<ResourceType, Optional> & Partial<Pick<ResourceType, Optional>>): ResourceType {
  return {
    listKind: `${r.kind}List`,
    categories: [],
    strategies: strategyTable(common),
    allowCreateOnUpdate: false,
    nameRule: 'dns1123subdomain',
    table: tables.generic,
    ...r,
  };
}

/** events.k8s.io/v1 ↔ core/v1 Event field mapping (the API server stores one, serves both). */
export function eventToCore(e: Obj): Obj {
  const out: Obj = {
    apiVersion: 'v1', kind: 'Event', metadata: e.metadata,
    involvedObject: e.regarding ?? {}, reason: e.reason, message: e.note, source: e.deprecatedSource,
    firstTimestamp: e.deprecatedFirstTimestamp, lastTimestamp: e.deprecatedLastTimestamp, count: e.deprecatedCount,
    type: e.type, eventTime: e.eventTime, series: e.series, action: e.action, related: e.related,
    reportingComponent: e.reportingController ?? '', reportingInstance: e.reportingInstance ?? '',
  };
  return dropUndefined(out);
}

export function eventFromCore(c: Obj): Obj {
  const out: Obj = {
    apiVersion: 'events.k8s.io/v1', kind: 'Event', metadata: c.metadata,
    eventTime: c.eventTime ?? null, series: c.series, reportingController: c.reportingComponent || undefined,
    reportingInstance: c.reportingInstance || undefined, action: c.action, reason: c.reason, regarding: c.involvedObject,
    related: c.related, note: c.message, type: c.type, deprecatedSource: c.source,
    deprecatedFirstTimestamp: c.firstTimestamp, deprecatedLastTimestamp: c.lastTimestamp, deprecatedCount: c.count,
  };
  return dropUndefined(out);
}

function dropUndefined(o: Obj): Obj {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

const EVENT_FIELDS = [
  ...META, 'involvedObject.kind', 'involvedObject.namespace', 'involvedObject.name', 'involvedObject.uid',
  'involvedObject.apiVersion', 'involvedObject.resourceVersion', 'involvedObject.fieldPath', 'reason',
  'reportingComponent', 'source', 'type',
] as const;

export const RESOURCES: ResourceType[] = [
  def({
    group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces', singular: 'namespace', namespaced: false,
    shortNames: ['ns'], hasStatus: true, storage: 'namespaces', fieldSelectors: [...META, 'status.phase'],
    table: tables.namespace, nameRule: 'dns1035',
  }),
  def({
    group: '', version: 'v1', kind: 'Service', plural: 'services', singular: 'service', namespaced: true,
    shortNames: ['svc'], categories: ['all'], hasStatus: true, storage: 'services',
    fieldSelectors: [...META, 'spec.type', 'spec.clusterIP'], table: tables.service, nameRule: 'dns1035',
    strategies: strategyTable({
      ...common,
      'spec.ports': { mergeKey: 'port' },
      'status.conditions': { mergeKey: 'type' },
    }),
  }),
  def({
    group: '', version: 'v1', kind: 'Endpoints', listKind: 'EndpointsList', plural: 'endpoints', singular: 'endpoints',
    namespaced: true, shortNames: ['ep'], hasStatus: false, storage: 'endpoints', fieldSelectors: META,
    table: tables.endpoints, allowCreateOnUpdate: true,
  }),
  def({
    group: '', version: 'v1', kind: 'Node', plural: 'nodes', singular: 'node', namespaced: false, shortNames: ['no'],
    hasStatus: true, storage: 'nodes', fieldSelectors: [...META, 'spec.unschedulable'], table: tables.node,
    strategies: strategyTable({
      ...common,
      'spec.podCIDRs': { mergePrimitives: true },
      'status.conditions': { mergeKey: 'type' },
      'status.addresses': { mergeKey: 'type' },
    }),
  }),
  def({
    group: '', version: 'v1', kind: 'Event', plural: 'events', singular: 'event', namespaced: true, shortNames: ['ev'],
    hasStatus: false, storage: 'events', fieldSelectors: EVENT_FIELDS, table: tables.event, allowCreateOnUpdate: true,
  }),
  def({
    group: 'events.k8s.io', version: 'v1', kind: 'Event', plural: 'events', singular: 'event', namespaced: true,
    shortNames: ['ev'], hasStatus: false, storage: 'events', fieldSelectors: EVENT_FIELDS, allowCreateOnUpdate: true,
    table: { columns: tables.event.columns, cells: (o, now) => tables.event.cells(eventToCore(o), now) },
    toStorage: eventToCore, fromStorage: eventFromCore,
  }),
  def({
    group: 'discovery.k8s.io', version: 'v1', kind: 'EndpointSlice', plural: 'endpointslices', singular: 'endpointslice',
    namespaced: true, shortNames: [], hasStatus: false, storage: 'endpointslices',
    fieldSelectors: [...META, 'addressType'], table: tables.endpointSlice,
  }),
  def({
    group: 'coordination.k8s.io', version: 'v1', kind: 'Lease', plural: 'leases', singular: 'lease', namespaced: true,
    shortNames: [], hasStatus: false, storage: 'leases', fieldSelectors: META, table: tables.lease,
  }),
];

export function findResource(group: string, version: string, plural: string): ResourceType | undefined {
  return RESOURCES.find((r) => r.group === group && r.version === version && r.plural === plural);
}

/** The groups (other than core) in discovery order with their versions. */
export function apiGroups(): { name: string; version: string }[] {
  const seen = new Map<string, string>();
  for (const r of RESOURCES) if (r.group !== '' && !seen.has(r.group)) seen.set(r.group, r.version);
  return [...seen].map(([name, version]) => ({ name, version }));
}
