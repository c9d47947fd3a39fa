/**
 * Discovery documents: legacy (/api, /apis, /api/v1, /apis/<g>/<v>), aggregated
 * (apidiscovery.k8s.io v2 and v2beta1), /version and the OpenAPI endpoints
 * kubectl fetches before apply and field validation.
 */
import { createHash } from 'node:crypto';
import { RESOURCES, VERBS, apiGroups, apiVersionOf, type ResourceType } from './resources.js';
import type { Obj } from './tables.js';

export const SERVER_VERSION = {
  major: '1',
  minor: '30',
  gitVersion: 'v1.30.0-edgelb.test',
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2026-01-01T00:00:00Z',
  goVersion: 'go1.22.0',
  compiler: 'gc',
  platform: 'linux/amd64',
};

function verbsOf(r: ResourceType): string[] {
  return r.kind === 'Namespace' ? VERBS.filter((v) => v !== 'deletecollection') : VERBS;
}

function storageHash(r: ResourceType): string {
  return createHash('sha256').update(`${r.group}/${r.version}/${r.kind}`).digest('base64').slice(0, 11);
}

function resourcesIn(group: string, version: string): ResourceType[] {
  return RESOURCES.filter((r) => r.group === group && r.version === version);
}

export function apiVersions(serverAddress: string): Obj {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  };
}

function groupDoc(name: string, version: string): Obj {
  const gv = { groupVersion: `${name}/${version}`, version };
  return { name, versions: [gv], preferredVersion: gv };
}

export function apiGroupList(): Obj {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: apiGroups().map((g) => groupDoc(g.name, g.version)) };
}

export function apiGroup(name: string): Obj | undefined {
  const g = apiGroups().find((x) => x.name === name);
  return g ? { kind: 'APIGroup', apiVersion: 'v1', ...groupDoc(g.name, g.version) } : undefined;
}

export function apiResourceList(group: string, version: string): Obj | undefined {
  const rs = resourcesIn(group, version);
  if (rs.length === 0) return undefined;
  const resources: Obj[] = [];
  for (const r of rs) {
    resources.push({
      name: r.plural,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: verbsOf(r),
      ...(r.shortNames.length ? { shortNames: r.shortNames } : {}),
      ...(r.categories.length ? { categories: r.categories } : {}),
      storageVersionHash: storageHash(r),
    });
    if (r.hasStatus) {
      resources.push({ name: `${r.plural}/status`, singularName: '', namespaced: r.namespaced, kind: r.kind, verbs: ['get', 'patch', 'update'] });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group === '' ? version : `${group}/${version}`, resources };
}

/** Aggregated discovery: `core` true answers /api, false answers /apis. */
export function aggregatedDiscovery(core: boolean, apiVersion: 'v2' | 'v2beta1'): Obj {
  const groups = core ? [{ name: '', version: 'v1' }] : apiGroups();
  return {
    kind: 'APIGroupDiscoveryList',
    apiVersion: `apidiscovery.k8s.io/${apiVersion}`,
    metadata: {},
    items: groups.map((g) => ({
      metadata: { name: g.name, creationTimestamp: null },
      versions: [{
        version: g.version,
        freshness: 'Current',
        resources: resourcesIn(g.name, g.version).map((r) => ({
          resource: r.plural,
          responseKind: { group: r.group, version: r.version, kind: r.kind },
          scope: r.namespaced ? 'Namespaced' : 'Cluster',
          singularResource: r.singular,
          verbs: verbsOf(r),
          ...(r.shortNames.length ? { shortNames: r.shortNames } : {}),
          ...(r.categories.length ? { categories: r.categories } : {}),
          ...(r.hasStatus
            ? { subresources: [{ subresource: 'status', responseKind: { group: r.group, version: r.version, kind: r.kind }, verbs: ['get', 'patch', 'update'] }] }
            : {}),
        })),
      }],
    })),
  };
}

// --- OpenAPI ---------------------------------------------------------------

/** A protobuf length-delimited field (wire type 2) — enough to encode the v2 Document's strings and messages. */
function pbField(field: number, payload: Buffer): Buffer {
  const varint = (n: number): Buffer => {
    const bytes: number[] = [];
    do {
      let b = n & 0x7f;
      n >>>= 7;
      if (n) b |= 0x80;
      bytes.push(b);
    } while (n);
    return Buffer.from(bytes);
  };
  return Buffer.concat([varint((field << 3) | 2), varint(payload.length), payload]);
}

/**
 * The OpenAPI v2 document in gnostic protobuf form (kubectl 1.20 asks for
 * that): swagger "2.0" and an info block, without definitions — kubectl then
 * skips schema validation and builds strategic patches from its compiled-in
 * types, which is what it does for any type the document does not describe.
 */
export function openapiV2Protobuf(): Buffer {
  const info = Buffer.concat([pbField(1, Buffer.from('Kubernetes')), pbField(2, Buffer.from(SERVER_VERSION.gitVersion))]);
  return Buffer.concat([pbField(1, Buffer.from('2.0')), pbField(2, info)]);
}

export function openapiV2Json(): Obj {
  return { swagger: '2.0', info: { title: 'Kubernetes', version: SERVER_VERSION.gitVersion }, paths: {}, definitions: {} };
}

function gvPath(group: string, version: string): string {
  return group === '' ? `api/${version}` : `apis/${group}/${version}`;
}

function gvHash(group: string, version: string): string {
  return createHash('sha512').update(JSON.stringify(openapiV3Doc(group, version))).digest('hex').slice(0, 128).toUpperCase();
}

export function openapiV3Root(): Obj {
  const paths: Obj = {};
  const gvs = [{ name: '', version: 'v1' }, ...apiGroups()];
  for (const g of gvs) {
    const p = gvPath(g.name, g.version);
    paths[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${gvHash(g.name, g.version)}` };
  }
  return { paths };
}

const QUERY_PARAMS = ['dryRun', 'fieldManager', 'fieldValidation', 'pretty'].map((name) => ({
  name, in: 'query', uniqueItems: true, schema: { type: 'string', uniqueItems: true },
  description: name === 'fieldValidation'
    ? 'fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.'
    : name,
}));

/**
 * A per-group-version OpenAPI v3 document listing each resource's paths and
 * operations with their group/version/kind and the `fieldValidation` query
 * parameter (what newer kubectl looks for before sending it). Schemas are
 * free-form objects.
 */
export function openapiV3Doc(group: string, version: string): Obj | undefined {
  const rs = resourcesIn(group, version);
  if (rs.length === 0) return undefined;
  const paths: Obj = {};
  const schemas: Obj = {};
  const prefix = `/${gvPath(group, version)}`;
  for (const r of rs) {
    const gvk = { group: r.group, version: r.version, kind: r.kind };
    const ref = `${r.group === '' ? 'io.k8s.api.core' : `io.k8s.api.${r.group.split('.')[0]}`}.${r.version}.${r.kind}`;
    schemas[ref] = { type: 'object', 'x-kubernetes-group-version-kind': [gvk], 'x-kubernetes-preserve-unknown-fields': true };
    const body = { content: { 'application/json': { schema: { $ref: `#/components/schemas/${ref}` } } } };
    const op = (action: string, verb: string, withBody: boolean, extra: Obj = {}): Obj => ({
      operationId: `${verb}${r.kind}`,
      'x-kubernetes-action': action,
      'x-kubernetes-group-version-kind': gvk,
      parameters: withBody ? QUERY_PARAMS : QUERY_PARAMS.filter((p) => p.name === 'pretty'),
      ...(withBody ? { requestBody: body } : {}),
      responses: { '200': { description: 'OK', ...body } },
      ...extra,
    });
    const base = r.namespaced ? `${prefix}/namespaces/{namespace}/${r.plural}` : `${prefix}/${r.plural}`;
    paths[base] = { get: op('list', 'list', false), post: op('post', 'create', true) };
    paths[`${base}/{name}`] = { get: op('get', 'read', false), put: op('put', 'replace', true), patch: op('patch', 'patch', true), delete: op('delete', 'delete', false) };
    if (r.hasStatus) paths[`${base}/{name}/status`] = { get: op('get', 'readStatus', false), put: op('put', 'replaceStatus', true), patch: op('patch', 'patchStatus', true) };
  }
  return {
    openapi: '3.0.0',
    info: { title: 'Kubernetes', version: SERVER_VERSION.gitVersion },
    paths,
    components: { schemas },
  };
}

export { apiVersionOf };
