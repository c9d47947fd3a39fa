/**
 * The test API server's HTTP protocol, checked with plain fetch: discovery,
 * OpenAPI, watch semantics (410, bookmarks, timeouts, Tables), paging, media
 * types, the status subresource, and the outage/restart controls.
 */
import test from 'ava';
import { TestApiServer } from './server.js';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function start(t: { teardown(fn: () => Promise<void> | void): void }, opts = {}): Promise<{ api: TestApiServer; req: (path: string, init?: RequestInit) => Promise<{ status: number; ct: string; body: Obj }> }> {
  const api = await TestApiServer.start({ kubeconfigPath: false, bookmarkIntervalMs: 100, ...opts });
  t.teardown(() => api.close());
  const req = async (path: string, init: RequestInit = {}): Promise<{ status: number; ct: string; body: Obj }> => {
    const res = await fetch(api.url + path, init);
    const text = await res.text();
    let body: Obj;
    try {
      body = JSON.parse(text) as Obj;
    } catch {
      body = { raw: text };
    }
    return { status: res.status, ct: res.headers.get('content-type') ?? '', body };
  };
  return { api, req };
}

const json = (method: string, body: unknown, ct = 'application/json'): RequestInit => ({ method, body: JSON.stringify(body), headers: { 'Content-Type': ct } });

/** Reads newline-delimited watch events until `stop` says so, the stream ends, or `ms` pass. */
async function readWatch(url: string, stop: (events: Obj[]) => boolean, ms = 5000, headers: Record<string, string> = {}): Promise<{ events: Obj[]; ended: boolean; status: number }> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), ms);
  const events: Obj[] = [];
  let ended = false;
  const res = await fetch(url, { signal: ac.signal, headers });
  try {
    let buf = '';
    const dec = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += dec.decode(chunk);
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        events.push(JSON.parse(buf.slice(0, i)) as Obj);
        buf = buf.slice(i + 1);
      }
      if (stop(events)) break;
    }
    ended = !stop(events);
  } catch {
    // aborted by the timer
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
  return { events, ended, status: res.status };
}

test('legacy and aggregated discovery, version, OpenAPI v2 and v3', async (t) => {
  const { req } = await start(t);
  const api = await req('/api');
  t.deepEqual(api.body.versions, ['v1']);
  const apis = await req('/apis');
  t.deepEqual(apis.body.groups.map((g: Obj) => g.preferredVersion.groupVersion).sort(), ['coordination.k8s.io/v1', 'discovery.k8s.io/v1', 'events.k8s.io/v1']);
  const v1 = await req('/api/v1');
  const svc = v1.body.resources.find((r: Obj) => r.name === 'services');
  t.like(svc, { namespaced: true, kind: 'Service', shortNames: ['svc'] });
  t.truthy(v1.body.resources.find((r: Obj) => r.name === 'services/status'));
  t.is((await req('/apis/discovery.k8s.io/v1')).body.resources[0].name, 'endpointslices');
  t.is((await req('/apis/coordination.k8s.io')).body.preferredVersion.version, 'v1');
  t.is((await req('/apis/nope.io/v1')).status, 404);

  for (const v of ['v2', 'v2beta1']) {
    const agg = await req('/apis', { headers: { Accept: `application/json;g=apidiscovery.k8s.io;v=${v};as=APIGroupDiscoveryList,application/json` } });
    t.is(agg.body.kind, 'APIGroupDiscoveryList');
    t.is(agg.body.apiVersion, `apidiscovery.k8s.io/${v}`);
    t.regex(agg.ct, new RegExp(`as=APIGroupDiscoveryList`));
    const leases = agg.body.items.find((g: Obj) => g.metadata.name === 'coordination.k8s.io').versions[0].resources[0];
    t.like(leases, { resource: 'leases', scope: 'Namespaced', responseKind: { group: 'coordination.k8s.io', version: 'v1', kind: 'Lease' } });
  }
  const core = await req('/api', { headers: { Accept: 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList' } });
  const services = core.body.items[0].versions[0].resources.find((r: Obj) => r.resource === 'services');
  t.is(services.subresources[0].subresource, 'status');

  t.is((await req('/version')).body.major, '1');
  const root = await req('/openapi/v3');
  const url = root.body.paths['api/v1'].serverRelativeURL as string;
  t.regex(url, /^\/openapi\/v3\/api\/v1\?hash=/);
  const doc = await req(url);
  const patch = doc.body.paths['/api/v1/namespaces/{namespace}/services/{name}'].patch;
  t.true(patch.parameters.some((p: Obj) => p.name === 'fieldValidation'));
  t.deepEqual(patch['x-kubernetes-group-version-kind'], { group: '', version: 'v1', kind: 'Service' });
  t.is((await req('/openapi/v2')).body.swagger, '2.0');
});

test('OpenAPI v2 in protobuf is a well-formed gnostic Document', async (t) => {
  const { api } = await start(t);
  const res = await fetch(`${api.url}/openapi/v2`, { headers: { Accept: 'application/com.github.proto-openapi.spec.v2@v1.0+protobuf' } });
  const buf = Buffer.from(await res.arrayBuffer());
  // field 1 (swagger, string "2.0"), then field 2 (info, message).
  t.deepEqual([...buf.subarray(0, 5)], [0x0a, 3, 0x32, 0x2e, 0x30]);
  t.is(buf[5], 0x12);
  t.is(buf.length, 7 + buf[6]!);
});

test('watch: synthetic ADDED without resourceVersion, replay from one, 410 after compaction, bookmarks, timeout', async (t) => {
  const { api, req } = await start(t);
  const a = await req('/api/v1/namespaces/default/services', json('POST', { metadata: { name: 'a' }, spec: { ports: [{ port: 80 }] } }));
  t.is(a.status, 201);
  const list = await req('/api/v1/services');
  const rv = list.body.metadata.resourceVersion as string;
  t.is(list.body.kind, 'ServiceList');
  t.is(list.body.items[0].kind, undefined, 'list items carry no kind, like the real server');

  const fresh = await readWatch(`${api.url}/api/v1/namespaces/default/services?watch=true`, (e) => e.length >= 2);
  t.deepEqual(fresh.events.map((e) => `${e.type} ${e.object.metadata.name}`), ['ADDED a', 'ADDED kubernetes']);
  t.is(fresh.events[0]!.object.kind, 'Service', 'watch objects carry kind');

  await req('/api/v1/namespaces/default/services/a', json('PATCH', { metadata: { labels: { x: 'y' } } }, 'application/merge-patch+json'));
  const replay = await readWatch(`${api.url}/api/v1/services?watch=1&resourceVersion=${rv}&allowWatchBookmarks=true`, (e) => e.some((x) => x.type === 'BOOKMARK'));
  t.is(replay.events[0]!.type, 'MODIFIED');
  t.is(replay.events[0]!.object.metadata.labels.x, 'y');
  const bm = replay.events.find((e) => e.type === 'BOOKMARK')!;
  t.deepEqual(Object.keys(bm.object.metadata), ['resourceVersion']);
  t.true(Number(bm.object.metadata.resourceVersion) >= Number(replay.events[0]!.object.metadata.resourceVersion));

  api.compactHistory();
  const gone = await readWatch(`${api.url}/api/v1/services?watch=true&resourceVersion=${rv}`, () => false);
  t.is(gone.status, 200);
  t.true(gone.ended);
  t.is(gone.events.length, 1);
  t.like(gone.events[0], { type: 'ERROR', object: { kind: 'Status', status: 'Failure', reason: 'Expired', code: 410 } });

  const timed = await readWatch(`${api.url}/api/v1/services?watch=true&resourceVersion=${api.resourceVersion}&timeoutSeconds=1`, () => false, 5000);
  t.true(timed.ended, 'server ends the watch after timeoutSeconds');

  const initial = await readWatch(`${api.url}/api/v1/services?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan`,
    (e) => e.some((x) => x.type === 'BOOKMARK'));
  const end = initial.events.find((e) => e.type === 'BOOKMARK')!;
  t.is(end.object.metadata.annotations['k8s.io/initial-events-end'], 'true');
  t.is(initial.events.filter((e) => e.type === 'ADDED').length, 2);
});

test('watch headers are flushed before any event; Table watch events', async (t) => {
  const { api, req } = await start(t);
  const ac = new AbortController();
  t.teardown(() => ac.abort());
  const res = await fetch(`${api.url}/api/v1/namespaces/default/services?watch=true&resourceVersion=${api.resourceVersion}`, {
    signal: ac.signal, headers: { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json' },
  });
  t.is(res.status, 200, 'headers arrived with no event yet');
  t.regex(res.headers.get('content-type') ?? '', /as=Table/);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  await req('/api/v1/namespaces/default/services', json('POST', { metadata: { name: 'lb' }, spec: { type: 'LoadBalancer', ports: [{ port: 80 }] } }));
  const { value } = await reader.read();
  const ev = JSON.parse(new TextDecoder().decode(value).trim()) as Obj;
  t.is(ev.type, 'ADDED');
  t.is(ev.object.kind, 'Table');
  t.deepEqual(ev.object.columnDefinitions.map((c: Obj) => c.name), ['Name', 'Type', 'Cluster-IP', 'External-IP', 'Port(s)', 'Age', 'Selector']);
  t.is(ev.object.rows[0].cells[3], '<pending>');
  t.is(ev.object.rows[0].object.kind, 'PartialObjectMetadata');
  ac.abort();
});

test('list paging, media types, errors as Status objects', async (t) => {
  const { api, req } = await start(t, { token: 'secret' });
  for (const n of ['a', 'b', 'c']) {
    api.create({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: n, namespace: 'default' }, spec: {} });
  }
  const p1 = await req('/apis/coordination.k8s.io/v1/namespaces/default/leases?limit=2');
  t.deepEqual(p1.body.items.map((i: Obj) => i.metadata.name), ['a', 'b']);
  t.is(p1.body.metadata.remainingItemCount, 1);
  const p2 = await req(`/apis/coordination.k8s.io/v1/namespaces/default/leases?limit=2&continue=${p1.body.metadata.continue}`);
  t.deepEqual(p2.body.items.map((i: Obj) => i.metadata.name), ['c']);
  t.is(p2.body.metadata.continue, undefined);

  const pbPost = await req('/api/v1/namespaces/default/services', { method: 'POST', body: 'x', headers: { 'Content-Type': 'application/vnd.kubernetes.protobuf' } });
  t.is(pbPost.status, 415);
  t.is(pbPost.body.kind, 'Status');
  t.is((await req('/api/v1/services', { headers: { Accept: 'application/vnd.kubernetes.protobuf' } })).status, 406);
  t.is((await req('/api/v1/services', { headers: { Authorization: 'Bearer wrong' } })).status, 401);
  t.is((await req('/api/v1/services', { headers: { Authorization: 'Bearer secret' } })).status, 200);
  const nf = await req('/api/v1/namespaces/default/services/nope');
  t.like(nf.body, { kind: 'Status', reason: 'NotFound', code: 404, details: { name: 'nope', kind: 'services' } });
  const noNs = await req('/api/v1/namespaces/missing/services', json('POST', { metadata: { name: 'x' }, spec: { ports: [{ port: 1 }] } }));
  t.is(noNs.status, 404);
  t.is(noNs.body.message, 'namespaces "missing" not found');
  const inv = await req('/api/v1/namespaces/default/services', json('POST', { metadata: { name: 'x' }, spec: { ports: [{ port: 0 }] } }));
  t.is(inv.status, 422);
  t.is(inv.body.details.causes[0].field, 'spec.ports[0].port');
  t.is((await req('/api/v1/services?labelSelector=a%20in%20(', {})).status, 400);
  const patch415 = await req('/api/v1/namespaces/default/services/kubernetes', json('PATCH', {}, 'application/apply-patch+yaml'));
  t.is(patch415.status, 415);
});

test('status subresource, no-op updates, json-patch, dryRun, deletecollection, namespace deletion, events views', async (t) => {
  const { api, req } = await start(t);
  const base = '/api/v1/namespaces/default/services';
  const c = await req(base, json('POST', { metadata: { name: 's', labels: { app: 's' } }, spec: { type: 'LoadBalancer', ports: [{ port: 80 }] } }));
  const svc = c.body;
  // PUT to /status changes only status.
  const st = await req(`${base}/s/status`, json('PUT', { ...svc, spec: { ...svc.spec, type: 'ClusterIP' }, status: { loadBalancer: { ingress: [{ ip: '192.0.2.1' }] } } }));
  t.is(st.status, 200);
  t.is(st.body.spec.type, 'LoadBalancer');
  t.is(st.body.status.loadBalancer.ingress[0].ip, '192.0.2.1');
  // Conditions are metav1.Conditions: reason and lastTransitionTime are required.
  const cond = { type: 'edgelb.io/Advertised', status: 'True', reason: 'Advertised', message: 'by 2 edges', lastTransitionTime: '2026-01-01T00:00:00.123Z' };
  const okCond = await req(`${base}/s/status`, json('PATCH', { status: { conditions: [cond] } }, 'application/merge-patch+json'));
  t.is(okCond.status, 200, JSON.stringify(okCond.body));
  t.is(okCond.body.status.conditions[0].lastTransitionTime, '2026-01-01T00:00:00Z');
  const badCond = await req(`${base}/s/status`, json('PATCH', { status: { conditions: [{ type: 'X', status: 'Yes' }] } }, 'application/merge-patch+json'));
  t.is(badCond.status, 422);
  t.deepEqual(badCond.body.details.causes.map((c: Obj) => c.field).sort(), ['status.conditions[0].lastTransitionTime', 'status.conditions[0].reason', 'status.conditions[0].status']);
  const badIP = await req(`${base}/s/status`, json('PATCH', { status: { loadBalancer: { ingress: [{ ip: 'nope' }] } } }, 'application/merge-patch+json'));
  t.is(badIP.status, 422);
  // A PUT with the same content is not written.
  const same = await req(`${base}/s`, json('PUT', okCond.body));
  t.is(same.status, 200);
  t.is(same.body.metadata.resourceVersion, okCond.body.metadata.resourceVersion);
  // json-patch; dryRun does not persist.
  const jp = await req(`${base}/s`, json('PATCH', [{ op: 'add', path: '/metadata/labels/extra', value: '1' }], 'application/json-patch+json'));
  t.is(jp.body.metadata.labels.extra, '1');
  const dry = await req(`${base}/s?dryRun=All`, json('PATCH', { metadata: { labels: { dry: '1' } } }, 'application/merge-patch+json'));
  t.is(dry.body.metadata.labels.dry, '1');
  t.is(api.get('services', 'default', 's')!.metadata.labels.dry, undefined);
  const dryCreate = await req(`${base}?dryRun=All`, json('POST', { metadata: { name: 'd' }, spec: { ports: [{ port: 80 }] } }));
  t.is(dryCreate.status, 201);
  t.is(api.get('services', 'default', 'd'), undefined);
  // DELETE with a stale precondition is a conflict.
  const pre = await req(`${base}/s`, json('DELETE', { preconditions: { resourceVersion: '1' } }));
  t.is(pre.status, 409);

  // deletecollection by label.
  api.create({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'x1', namespace: 'default', labels: { s: 'x' } }, addressType: 'IPv4', endpoints: [] });
  api.create({ apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'y1', namespace: 'default', labels: { s: 'y' } }, addressType: 'IPv4', endpoints: [] });
  const dc = await req('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=s%3Dx', { method: 'DELETE' });
  t.deepEqual(dc.body.items.map((i: Obj) => i.metadata.name), ['x1']);
  t.deepEqual(api.list('endpointslices.discovery.k8s.io').map((i) => i.metadata.name), ['y1']);
  const badSlice = await req('/apis/discovery.k8s.io/v1/namespaces/default/endpointslices', json('POST', { metadata: { name: 'z' }, endpoints: [] }));
  t.is(badSlice.status, 422);

  // Events: one object, two API views; events.k8s.io validates new events.
  const ev = await req('/apis/events.k8s.io/v1/namespaces/default/events', json('POST', {
    metadata: { name: 'e1' }, eventTime: '2026-01-01T00:00:00.000001Z', reportingController: 'edgelb.io/agent', reportingInstance: 'edge-a',
    action: 'Allocate', reason: 'IPAllocated', note: 'hello', type: 'Normal', regarding: { kind: 'Service', name: 's', namespace: 'default' },
  }));
  t.is(ev.status, 201, JSON.stringify(ev.body));
  const core = await req('/api/v1/namespaces/default/events/e1');
  t.like(core.body, { apiVersion: 'v1', message: 'hello', involvedObject: { name: 's' }, reportingComponent: 'edgelb.io/agent' });
  const sel = await req('/api/v1/events?fieldSelector=involvedObject.name%3Ds,reason%3DIPAllocated');
  t.is(sel.body.items.length, 1);
  t.is((await req('/apis/events.k8s.io/v1/namespaces/default/events', json('POST', { metadata: { name: 'e2' }, note: 'x' }))).status, 422);
  const coreEv = await req('/api/v1/namespaces/default/events', json('POST', { metadata: { name: 'e3' }, involvedObject: { kind: 'Service', name: 's' }, reason: 'R', message: 'm', type: 'Warning', firstTimestamp: '2026-01-01T00:00:00.5Z' }));
  t.is(coreEv.body.firstTimestamp, '2026-01-01T00:00:00Z');
  t.is((await req('/apis/events.k8s.io/v1/namespaces/default/events/e3')).body.note, 'm');

  // Deleting a namespace deletes what is in it.
  await req('/api/v1/namespaces', json('POST', { metadata: { name: 'tmp' } }));
  api.create({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'l', namespace: 'tmp' }, spec: {} });
  t.is((await req('/api/v1/namespaces/tmp', { method: 'DELETE' })).status, 200);
  t.is(api.get('leases.coordination.k8s.io', 'tmp', 'l'), undefined);
  t.is((await req('/api/v1/namespaces/default', { method: 'DELETE' })).status, 403);
});

test('outages: 503 and refused connections, restart keeps data and resource versions', async (t) => {
  const { api, req } = await start(t);
  api.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'n1' } });
  const rv = api.resourceVersion;
  await api.setUnavailable(true, '503');
  const r = await req('/api/v1/nodes');
  t.is(r.status, 503);
  t.is(r.body.reason, 'ServiceUnavailable');
  await api.setUnavailable(false);
  t.is((await req('/api/v1/nodes')).status, 200);

  await api.setUnavailable(true, 'refuse');
  const err = await t.throwsAsync(fetch(`${api.url}/api/v1/nodes`));
  t.regex(String((err as Error & { cause?: { code?: string } }).cause?.code), /ECONNREFUSED/);
  await api.setUnavailable(false);

  const w = fetch(`${api.url}/api/v1/nodes?watch=true&resourceVersion=${rv}`);
  const res = await w;
  t.is(res.status, 200);
  const drained = res.text();
  await api.restart();
  await drained; // the watch ends cleanly on restart
  const after = await req('/api/v1/nodes');
  t.is(after.body.metadata.resourceVersion, rv);
  t.deepEqual(after.body.items.map((n: Obj) => n.metadata.name), ['n1']);
  t.is(api.openWatches, 0);
  t.true(api.requestCount('list', 'nodes') >= 2);
});

test('finalizers hold a deleted object until the last one is removed; YAML bodies; watch of one object by URL', async (t) => {
  const { api, req } = await start(t);
  const base = '/api/v1/namespaces/default/services';
  const c = await req(base, { method: 'POST', headers: { 'Content-Type': 'application/yaml' }, body: 'metadata:\n  name: f\n  finalizers: [edgelb.io/ip]\nspec:\n  type: LoadBalancer\n  ports:\n  - port: 80\n' });
  t.is(c.status, 201, JSON.stringify(c.body));
  const watch = readWatch(`${api.url}${base}/f?watch=true&resourceVersion=${c.body.metadata.resourceVersion}`, (e) => e.some((x) => x.type === 'DELETED'));
  await new Promise((r) => setTimeout(r, 100));
  const d = await req(`${base}/f`, { method: 'DELETE' });
  t.is(d.status, 200);
  t.truthy(d.body.metadata.deletionTimestamp);
  t.truthy(api.get('services', 'default', 'f'), 'still there while a finalizer remains');
  const more = await req(`${base}/f`, json('PATCH', { metadata: { finalizers: ['edgelb.io/ip', 'other'] } }, 'application/merge-patch+json'));
  t.is(more.status, 422);
  t.regex(more.body.message, /no new finalizers can be added/);
  const done = await req(`${base}/f`, json('PATCH', { metadata: { finalizers: null } }, 'application/merge-patch+json'));
  t.is(done.status, 200);
  t.is(api.get('services', 'default', 'f'), undefined);
  const w = await watch;
  t.deepEqual(w.events.map((e) => e.type), ['MODIFIED', 'MODIFIED', 'DELETED']);
  // The node port and cluster IP are free again.
  const again = await req(base, json('POST', { metadata: { name: 'g' }, spec: { type: 'LoadBalancer', clusterIP: c.body.spec.clusterIP, ports: [{ port: 80, nodePort: c.body.spec.ports[0].nodePort }] } }));
  t.is(again.status, 201, JSON.stringify(again.body));
});
