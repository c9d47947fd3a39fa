/**
 * A Kubernetes API server for tests: plain HTTP on loopback, the resources
 * edgelb uses, and the protocol details clients depend on (resource versions,
 * watch resume and 410 Gone, bookmarks, selectors, patches, the status
 * subresource, server-side Tables, discovery, conflicts). Programmatic
 * controls simulate restarts, outages and etcd compaction.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import {
  aggregatedDiscovery, apiGroup, apiGroupList, apiResourceList, apiVersions, openapiV2Json, openapiV2Protobuf,
  openapiV3Doc, openapiV3Root, SERVER_VERSION,
} from './discovery.js';
import {
  alreadyExists, ApiError, badRequest, conflict, expired, fieldForbidden, fieldInvalid, fieldNotSupported, internal, invalid, methodNotSupported,
  notAcceptable, notFound, unsupportedMediaType, type Cause,
} from './errors.js';
import { negotiateDiscovery, negotiateObject, outputContentType, type Output } from './negotiate.js';
import { jsonPatch, mergePatch, PatchError, strategicMergePatch } from './patch.js';
import { apiVersionOf, findResource, RESOURCES, type ResourceType } from './resources.js';
import {
  matchFields, matchLabels, parseFieldSelector, parseLabelSelector, SelectorError, type FieldRequirement, type LabelRequirement,
} from './selectors.js';
import { ServiceAllocator } from './services.js';
import { Store, type StoreEvent } from './store.js';
import type { Obj } from './tables.js';
import { isIPv4, isIPv6, nameProblem, normalizeTimes, validateConditions, validateEndpointSlice, validateLease, validateMeta, validateNewEvent } from './validation.js';

export interface TestApiServerOptions {
  /** Port on 127.0.0.1; 0 (default) picks a free one. */
  port?: number;
  host?: string;
  /** Bearer token clients must present; random by default. */
  token?: string;
  /** Where to write the kubeconfig; a fresh temp file by default, `false` for none. */
  kubeconfigPath?: string | false;
  /** Watch events kept for resuming; older resource versions get 410 Gone. */
  historySize?: number;
  /** Interval of BOOKMARK events on watches that allow them. */
  bookmarkIntervalMs?: number;
  /** Server-side watch timeout when the client gives none (the real default is 30–60 min). */
  defaultWatchTimeoutSeconds?: number;
  serviceCIDR?: string;
  nodePortRange?: [number, number];
  /** Creates the `kubernetes` ClusterIP service in `default`, as every real cluster has. */
  kubernetesService?: boolean;
  /** Refuse requests without the bearer token (kubectl cannot talk to such a server over HTTP). */
  requireAuth?: boolean;
}

export interface RequestRecord {
  time: number;
  method: string;
  path: string;
  verb: string;
  resource: string;
  status: number;
  userAgent: string;
}

interface Route {
  r: ResourceType;
  namespace: string | undefined;
  name: string | undefined;
  sub: string | undefined;
}

interface ActiveWatch {
  res: ServerResponse;
  close: () => void;
}

const DEFAULT_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];
const MAX_BODY = 16 * 1024 * 1024;
const GENERATE_CHARS = 'bcdfghjklmnpqrstvwxz2456789';

function clone<T>(v: T): T {
  return structuredClone(v);
}

/** JSON with sorted keys: equality of objects regardless of key order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().filter((k) => (v as Obj)[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonical((v as Obj)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

function withoutRV(o: Obj): Obj {
  return { ...o, metadata: { ...o.metadata, resourceVersion: undefined, managedFields: undefined } };
}

function nowRFC3339(): string {
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export class TestApiServer {
  readonly token: string;
  readonly store: Store;
  private readonly requireAuth: boolean;
  private readonly opts: Required<Omit<TestApiServerOptions, 'kubeconfigPath' | 'token' | 'requireAuth'>>;
  private readonly allocator: ServiceAllocator;
  private http: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly watches = new Set<ActiveWatch>();
  private boundPort = 0;
  private unavailable: 'no' | '503' | 'refuse' = 'no';
  private kubeconfigFile: string | undefined;
  private tmpDir: string | undefined;
  private readonly log: RequestRecord[] = [];
  private readonly counters = new Map<string, number>();

  private constructor(opts: TestApiServerOptions) {
    this.token = opts.token ?? randomBytes(16).toString('hex');
    this.requireAuth = opts.requireAuth ?? false;
    this.opts = {
      port: opts.port ?? 0,
      host: opts.host ?? '127.0.0.1',
      historySize: opts.historySize ?? 20_000,
      bookmarkIntervalMs: opts.bookmarkIntervalMs ?? 5_000,
      defaultWatchTimeoutSeconds: opts.defaultWatchTimeoutSeconds ?? 1800,
      serviceCIDR: opts.serviceCIDR ?? '10.96.0.0/12',
      nodePortRange: opts.nodePortRange ?? [30000, 32767],
      kubernetesService: opts.kubernetesService ?? true,
    };
    this.store = new Store(this.opts.historySize);
    this.allocator = new ServiceAllocator(this.opts.serviceCIDR, this.opts.nodePortRange);
    for (const ns of DEFAULT_NAMESPACES) this.create({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
    if (this.opts.kubernetesService) {
      this.create({
        apiVersion: 'v1', kind: 'Service',
        metadata: { name: 'kubernetes', namespace: 'default', labels: { component: 'apiserver', provider: 'kubernetes' } },
        spec: { clusterIP: this.allocator.firstIP(), ports: [{ name: 'https', port: 443, targetPort: 6443 }] },
      });
    }
  }

  /** Starts a server and (unless told otherwise) writes a kubeconfig for it. */
  static async start(opts: TestApiServerOptions = {}): Promise<TestApiServer> {
    const s = new TestApiServer(opts);
    await s.listen(s.opts.port);
    if (opts.kubeconfigPath !== false) {
      let path = opts.kubeconfigPath;
      if (path === undefined) {
        s.tmpDir = await mkdtemp(join(tmpdir(), 'edgelb-apiserver-'));
        path = join(s.tmpDir, 'kubeconfig');
      }
      await writeFile(path, s.kubeconfig(), { mode: 0o600 });
      s.kubeconfigFile = path;
    }
    return s;
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    return `http://${this.opts.host}:${this.boundPort}`;
  }

  /** Path of the kubeconfig written at start (throws if it was disabled). */
  get kubeconfigPath(): string {
    if (!this.kubeconfigFile) throw new Error('this TestApiServer was started with kubeconfigPath: false');
    return this.kubeconfigFile;
  }

  /** Kubeconfig YAML: plain HTTP needs insecure-skip-tls-verify for @kubernetes/client-node. */
  kubeconfig(namespace = 'default'): string {
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: edgelb-test',
      '  cluster:',
      `    server: ${this.url}`,
      '    insecure-skip-tls-verify: true',
      'users:',
      '- name: edgelb-test',
      '  user:',
      `    token: ${this.token}`,
      'contexts:',
      '- name: edgelb-test',
      '  context:',
      '    cluster: edgelb-test',
      '    user: edgelb-test',
      `    namespace: ${namespace}`,
      'current-context: edgelb-test',
      '',
    ].join('\n');
  }

  private listen(port: number): Promise<void> {
    const srv = createServer((req, res) => void this.handle(req, res));
    srv.keepAliveTimeout = 30_000;
    srv.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    return new Promise((resolve, reject) => {
      srv.once('error', reject);
      // A deep accept queue: benchmarks open thousands of connections at once.
      srv.listen({ port, host: this.opts.host, backlog: 4096 }, () => {
        srv.off('error', reject);
        const addr = srv.address();
        this.boundPort = typeof addr === 'object' && addr ? addr.port : port;
        this.http = srv;
        resolve();
      });
    });
  }

  /** Stops serving (watches end cleanly, connections close); data is kept for `restart()`. */
  async stop(): Promise<void> {
    const srv = this.http;
    if (!srv) return;
    this.http = undefined;
    this.endWatches();
    // Let the final chunks of the ended watches reach the sockets before they are closed.
    await new Promise((r) => setImmediate(r));
    const closed = new Promise<void>((resolve) => srv.close(() => resolve()));
    srv.closeAllConnections();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** Simulates an API server restart: same data and resource versions, same port, every watch dropped. */
  async restart(): Promise<void> {
    await this.stop();
    if (this.unavailable !== 'refuse') await this.listen(this.boundPort);
  }

  /** Stops for good and removes the temp kubeconfig. */
  async close(): Promise<void> {
    await this.stop();
    if (this.tmpDir) await rm(this.tmpDir, { recursive: true, force: true });
  }

  /**
   * Simulates an outage. 'refuse': the port is closed (connection refused);
   * '503': every request gets 503 ServiceUnavailable. Existing watches end either way.
   */
  async setUnavailable(on: boolean, mode: 'refuse' | '503' = 'refuse'): Promise<void> {
    if (on) {
      this.unavailable = mode;
      if (mode === 'refuse') await this.stop();
      else this.endWatches();
    } else {
      const was = this.unavailable;
      this.unavailable = 'no';
      if (was === 'refuse' && !this.http) await this.listen(this.boundPort);
    }
  }

  /** Forgets watch history: the next watch resuming from an older resourceVersion gets 410 Gone. */
  compactHistory(opts: { dropWatches?: boolean } = {}): void {
    this.store.compact();
    if (opts.dropWatches) this.endWatches();
  }

  /** Ends every open watch; `abrupt` resets the TCP connection instead of ending the stream. */
  dropWatches(opts: { abrupt?: boolean } = {}): void {
    if (opts.abrupt) {
      for (const w of [...this.watches]) {
        w.close();
        w.res.socket?.destroy();
      }
    } else {
      this.endWatches();
    }
  }

  private endWatches(): void {
    for (const w of [...this.watches]) {
      w.close();
      w.res.end();
    }
  }

  get openWatches(): number {
    return this.watches.size;
  }

  get resourceVersion(): string {
    return String(this.store.resourceVersion);
  }

  // --- request accounting --------------------------------------------------

  /** Requests served, keyed `"<verb> <resource>"`, e.g. `"patch services/status"`, `"watch endpointslices"`. */
  requestCounts(): Record<string, number> {
    return Object.fromEntries(this.counters);
  }

  requestCount(verb: string, resource: string): number {
    return this.counters.get(`${verb} ${resource}`) ?? 0;
  }

  /** The most recent requests (bounded), oldest first. */
  requests(): readonly RequestRecord[] {
    return this.log;
  }

  resetRequestLog(): void {
    this.log.length = 0;
    this.counters.clear();
  }

  // --- direct object access (same rules as over HTTP, events reach watchers) --

  private resourceByName(resource: string): ResourceType {
    const [plural, ...g] = resource.split('.');
    const group = g.join('.');
    const r = RESOURCES.find((x) => x.plural === plural && x.group === group);
    if (!r) throw new Error(`unknown resource "${resource}" (use e.g. "services", "endpointslices.discovery.k8s.io")`);
    return r;
  }

  private resourceOf(obj: Obj): ResourceType {
    const r = RESOURCES.find((x) => apiVersionOf(x) === obj.apiVersion && x.kind === obj.kind);
    if (!r) throw new Error(`no resource for apiVersion ${obj.apiVersion} kind ${obj.kind}`);
    return r;
  }

  /** Creates an object given with apiVersion and kind (namespace defaults to "default"). */
  create(obj: Obj): Obj {
    const r = this.resourceOf(obj);
    return this.doCreate(r, r.namespaced ? (obj.metadata?.namespace ?? 'default') : undefined, clone(obj), false);
  }

  /** Replaces an object (PUT semantics, including the resourceVersion check). */
  update(obj: Obj): Obj {
    const r = this.resourceOf(obj);
    return this.doUpdate(r, r.namespaced ? (obj.metadata?.namespace ?? 'default') : undefined, obj.metadata?.name, clone(obj), undefined, false).obj;
  }

  /** Replaces the status of an object (PUT …/status semantics). */
  updateStatus(obj: Obj): Obj {
    const r = this.resourceOf(obj);
    return this.doUpdate(r, r.namespaced ? (obj.metadata?.namespace ?? 'default') : undefined, obj.metadata?.name, clone(obj), 'status', false).obj;
  }

  /** Applies a JSON merge patch to the object or, with `sub = 'status'`, to its status. */
  mergePatch(resource: string, namespace: string | undefined, name: string, patch: Obj, sub?: 'status'): Obj {
    return this.doPatch(this.resourceByName(resource), namespace, name, 'application/merge-patch+json', clone(patch), sub, false);
  }

  get(resource: string, namespace: string | undefined, name: string): Obj | undefined {
    const r = this.resourceByName(resource);
    const o = this.store.get(r.storage, r.namespaced ? namespace : undefined, name);
    return o ? this.view(r, o) : undefined;
  }

  list(resource: string, namespace?: string): Obj[] {
    const r = this.resourceByName(resource);
    return this.store.list(r.storage, r.namespaced ? namespace : undefined).map((o) => this.view(r, o));
  }

  delete(resource: string, namespace: string | undefined, name: string): Obj {
    return this.doDelete(this.resourceByName(resource), namespace, name, {}, false);
  }

  // --- HTTP ------------------------------------------------------------------

  private record(req: IncomingMessage, verb: string, resource: string, status: number): void {
    const key = `${verb} ${resource}`;
    this.counters.set(key, (this.counters.get(key) ?? 0) + 1);
    this.log.push({ time: Date.now(), method: req.method ?? '', path: req.url ?? '', verb, resource, status, userAgent: String(req.headers['user-agent'] ?? '') });
    if (this.log.length > 20_000) this.log.splice(0, 10_000);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    let verb = (req.method ?? 'GET').toLowerCase();
    let resource = url.pathname;
    try {
      if (this.unavailable === '503') throw new ApiError(503, 'ServiceUnavailable', 'the server is currently unable to handle the request');
      // kubectl (client-go) never sends credentials over plain HTTP, so a missing
      // Authorization header is served like the old insecure port; a wrong one is refused.
      const auth = req.headers.authorization;
      if ((auth !== undefined || this.requireAuth) && auth !== `Bearer ${this.token}`) throw new ApiError(401, 'Unauthorized', 'Unauthorized');
      const segs = url.pathname.split('/').filter((s) => s !== '').map(decodeURIComponent);
      const accept = req.headers.accept;
      const q = url.searchParams;

      const nonResource = this.nonResource(url.pathname, accept);
      if (nonResource !== undefined) {
        verb = 'get';
        if (req.method !== 'GET' && req.method !== 'HEAD') throw methodNotSupported(req.method ?? '', url.pathname);
        this.send(res, 200, nonResource.body, nonResource.contentType);
        return;
      }

      // /api/v1/... or /apis/<group>/<version>/...
      let group: string;
      let version: string;
      let rest: string[];
      if (segs[0] === 'api' && segs.length >= 2) {
        group = '';
        version = segs[1]!;
        rest = segs.slice(2);
      } else if (segs[0] === 'apis' && segs.length >= 3) {
        group = segs[1]!;
        version = segs[2]!;
        rest = segs.slice(3);
      } else {
        throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      }
      let legacyWatch = false;
      if (rest[0] === 'watch') {
        legacyWatch = true;
        rest = rest.slice(1);
      }
      const route = this.route(group, version, rest);
      resource = route.r.plural + (route.sub ? `/${route.sub}` : '');
      const isWatch = legacyWatch || q.get('watch') === 'true' || q.get('watch') === '1';
      const dryRun = q.getAll('dryRun').includes('All');

      switch (req.method) {
        case 'GET': {
          const out = negotiateObject(accept);
          if (!out) throw notAcceptable();
          if (isWatch) {
            verb = 'watch';
            this.record(req, verb, resource, 200);
            this.watch(res, route, q, out);
            return;
          }
          if (route.name === undefined) {
            verb = 'list';
            this.sendObject(res, 200, this.listResponse(route, q, out), out, true);
          } else {
            verb = 'get';
            if (route.sub !== undefined && route.sub !== 'status') throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
            const o = this.store.get(route.r.storage, route.namespace, route.name);
            if (!o) throw notFound(route.r.plural, route.r.group, route.name);
            this.sendObject(res, 200, this.render(route.r, this.view(route.r, o), out, q, false), out, false);
          }
          break;
        }
        case 'POST': {
          verb = 'create';
          if (route.name !== undefined) throw methodNotSupported('POST', resource);
          const body = await this.readJson(req);
          const created = this.doCreate(route.r, route.namespace, body, dryRun);
          this.sendObject(res, 201, created, { kind: 'json' }, false);
          break;
        }
        case 'PUT': {
          verb = 'update';
          if (route.name === undefined) throw methodNotSupported('PUT', resource);
          const body = await this.readJson(req);
          const { obj, created } = this.doUpdate(route.r, route.namespace, route.name, body, route.sub, dryRun);
          this.sendObject(res, created ? 201 : 200, obj, { kind: 'json' }, false);
          break;
        }
        case 'PATCH': {
          verb = 'patch';
          if (route.name === undefined) throw methodNotSupported('PATCH', resource);
          const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
          const text = await this.readBody(req);
          let patch: unknown;
          try {
            patch = JSON.parse(text);
          } catch {
            if (ct === 'application/apply-patch+yaml') throw unsupportedMediaType(ct);
            throw badRequest(`error decoding patch: invalid JSON`);
          }
          const obj = this.doPatch(route.r, route.namespace, route.name, ct, patch, route.sub, dryRun);
          this.sendObject(res, 200, obj, { kind: 'json' }, false);
          break;
        }
        case 'DELETE': {
          const text = await this.readBody(req);
          let opts: Obj = {};
          if (text.trim() !== '') {
            try {
              opts = JSON.parse(text) as Obj;
            } catch {
              throw badRequest('error decoding DeleteOptions: invalid JSON');
            }
          }
          if (route.name === undefined) {
            verb = 'deletecollection';
            this.sendObject(res, 200, this.deleteCollection(route, q, opts, dryRun), { kind: 'json' }, true);
          } else {
            verb = 'delete';
            this.sendObject(res, 200, this.doDelete(route.r, route.namespace, route.name, opts, dryRun), { kind: 'json' }, false);
          }
          break;
        }
        default:
          throw methodNotSupported(req.method ?? '', resource);
      }
      this.record(req, verb, resource, res.statusCode);
    } catch (e) {
      const err = e instanceof ApiError ? e
        : e instanceof SelectorError ? badRequest(e.message)
          : e instanceof PatchError ? new ApiError(422, 'Invalid', e.message)
            : internal(e instanceof Error ? e.message : String(e));
      this.record(req, verb, resource, err.code);
      if (!res.headersSent) this.send(res, err.code, JSON.stringify(err.status()), 'application/json');
      else res.end();
    }
  }

  private nonResource(path: string, accept: string | undefined): { body: string | Buffer; contentType: string } | undefined {
    const json = (o: unknown, ct = 'application/json'): { body: string; contentType: string } => ({ body: JSON.stringify(o), contentType: ct });
    const p = path.replace(/\/+$/, '') || '/';
    switch (p) {
      case '/version': return json(SERVER_VERSION);
      case '/healthz': case '/livez': case '/readyz': return { body: 'ok', contentType: 'text/plain; charset=utf-8' };
      case '/api': case '/apis': {
        const d = negotiateDiscovery(accept);
        if (d === undefined) throw notAcceptable();
        if (d !== 'legacy') {
          return json(aggregatedDiscovery(p === '/api', d), `application/json;g=apidiscovery.k8s.io;v=${d};as=APIGroupDiscoveryList`);
        }
        return json(p === '/api' ? apiVersions(`${this.opts.host}:${this.boundPort}`) : apiGroupList());
      }
      case '/openapi/v2': {
        const wantsPb = (accept ?? '').includes('protobuf');
        return wantsPb
          ? { body: openapiV2Protobuf(), contentType: 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf' }
          : json(openapiV2Json());
      }
      case '/openapi/v3': return json(openapiV3Root());
    }
    let m = p.match(/^\/openapi\/v3\/(api\/v1|apis\/[^/]+\/[^/]+)$/);
    if (m) {
      const [, g, v] = m[1]!.startsWith('api/') ? ['', '', 'v1'] : m[1]!.split('/');
      const doc = openapiV3Doc(g!, v!);
      if (!doc) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      return json(doc, 'application/json');
    }
    if (p === '/api/v1') return json(apiResourceList('', 'v1'));
    m = p.match(/^\/apis\/([^/]+)$/);
    if (m) {
      const g = apiGroup(m[1]!);
      if (!g) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      return json(g);
    }
    m = p.match(/^\/apis\/([^/]+)\/([^/]+)$/);
    if (m) {
      const l = apiResourceList(m[1]!, m[2]!);
      if (!l) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      return json(l);
    }
    return undefined;
  }

  private route(group: string, version: string, rest: string[]): Route {
    const nf = (): ApiError => new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      const r = findResource(group, version, rest[2]!);
      if (r && r.namespaced && rest.length <= 5) return { r, namespace: rest[1], name: rest[3], sub: rest[4] };
    }
    const r = findResource(group, version, rest[0] ?? '');
    if (!r || rest.length > 3) throw nf();
    if (r.namespaced) {
      // All-namespace collection only (list/watch/deletecollection is not allowed cluster-wide for named objects).
      if (rest.length !== 1) throw nf();
      return { r, namespace: undefined, name: undefined, sub: undefined };
    }
    return { r, namespace: undefined, name: rest[1], sub: rest[2] };
  }

  private send(res: ServerResponse, code: number, body: string | Buffer, contentType: string): void {
    res.writeHead(code, { 'Content-Type': contentType, 'Cache-Control': 'no-cache, private', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }

  private sendObject(res: ServerResponse, code: number, obj: Obj, out: Output, list: boolean): void {
    this.send(res, code, JSON.stringify(obj), outputContentType(out, list));
  }

  private readBody(req: IncomingMessage): Promise<string> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) {
          reject(new ApiError(413, 'RequestEntityTooLarge', 'the request body is too large'));
          req.destroy();
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      req.on('error', reject);
    });
  }

  /** Request bodies in JSON or YAML, as the real server accepts; protobuf is refused. */
  private async readJson(req: IncomingMessage): Promise<Obj> {
    const ct = String(req.headers['content-type'] ?? 'application/json').split(';')[0]!.trim().toLowerCase();
    const yaml = ct === 'application/yaml';
    if (ct !== 'application/json' && ct !== '*/*' && ct !== '' && !yaml) {
      throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got ${ct})`);
    }
    const text = await this.readBody(req);
    let body: unknown;
    try {
      body = yaml ? parseYaml(text) : JSON.parse(text);
    } catch (e) {
      throw badRequest(`error decoding request body: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw badRequest('the request body must be an object');
    return body as Obj;
  }

  // --- views -------------------------------------------------------------

  private view(r: ResourceType, stored: Obj): Obj {
    const o = r.fromStorage ? r.fromStorage(stored) : stored;
    return { ...o, apiVersion: apiVersionOf(r), kind: r.kind };
  }

  private render(r: ResourceType, o: Obj, out: Output, q: URLSearchParams, _list: boolean): Obj {
    if (out.kind === 'json') return o;
    if (out.kind === 'partial') return this.partial(o, out.version);
    return this.table(r, [o], out.version, q, { resourceVersion: o.metadata.resourceVersion });
  }

  private partial(o: Obj, version: string): Obj {
    return { kind: 'PartialObjectMetadata', apiVersion: `meta.k8s.io/${version}`, metadata: o.metadata };
  }

  private table(r: ResourceType, objs: Obj[], version: string, q: URLSearchParams, listMeta: Obj, withColumns = true): Obj {
    const include = q.get('includeObject') ?? 'Metadata';
    const now = Date.now();
    return {
      kind: 'Table',
      apiVersion: `meta.k8s.io/${version}`,
      metadata: listMeta,
      columnDefinitions: withColumns ? r.table.columns : [],
      rows: objs.map((o) => ({
        cells: r.table.cells(o, now),
        ...(include === 'None' ? {} : { object: include === 'Object' ? o : this.partial(o, 'v1') }),
      })),
    };
  }

  private selectors(r: ResourceType, q: URLSearchParams): { labels: LabelRequirement[]; fields: FieldRequirement[] } {
    return {
      labels: parseLabelSelector(q.get('labelSelector')),
      fields: parseFieldSelector(q.get('fieldSelector'), r.fieldSelectors, r.plural),
    };
  }

  private matches(sel: { labels: LabelRequirement[]; fields: FieldRequirement[] }, stored: Obj, ns: string | undefined): boolean {
    if (ns !== undefined && stored.metadata.namespace !== ns) return false;
    return matchLabels(sel.labels, stored.metadata.labels) && matchFields(sel.fields, stored);
  }

  private listResponse(route: Route, q: URLSearchParams, out: Output): Obj {
    const { r, namespace } = route;
    const sel = this.selectors(r, q);
    const limit = Number(q.get('limit') ?? 0);
    const cont = q.get('continue');
    let after = '';
    let listRv = this.store.resourceVersion;
    if (cont) {
      try {
        const tok = JSON.parse(Buffer.from(cont, 'base64url').toString()) as { rv: number; start: string };
        after = tok.start;
        listRv = tok.rv;
      } catch {
        throw badRequest('continue key is not valid: illegal base64 data');
      }
      if (listRv < this.store.compactedRevision) {
        throw expired('The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.');
      }
    }
    let items = this.store.list(r.storage, namespace).filter((o) => this.matches(sel, o, namespace));
    if (after) items = items.filter((o) => `${o.metadata.namespace ?? ''}/${o.metadata.name}` > after);
    const meta: Obj = { resourceVersion: String(listRv) };
    if (limit > 0 && items.length > limit) {
      const last = items[limit - 1]!;
      meta.continue = Buffer.from(JSON.stringify({ rv: listRv, start: `${last.metadata.namespace ?? ''}/${last.metadata.name}` })).toString('base64url');
      meta.remainingItemCount = items.length - limit;
      items = items.slice(0, limit);
    }
    const views = items.map((o) => this.view(r, o));
    if (out.kind === 'table') return this.table(r, views, out.version, q, meta);
    if (out.kind === 'partial') {
      return { kind: 'PartialObjectMetadataList', apiVersion: `meta.k8s.io/${out.version}`, metadata: meta, items: views.map((o) => this.partial(o, out.version)) };
    }
    // Items in a real list carry no apiVersion/kind; only the list does.
    const bare = views.map((o) => {
      const { apiVersion: _a, kind: _k, ...restObj } = o;
      return restObj;
    });
    return { kind: r.listKind, apiVersion: apiVersionOf(r), metadata: meta, items: bare };
  }

  private watch(res: ServerResponse, route: Route, q: URLSearchParams, out: Output): void {
    const { r, namespace } = route;
    const sel = this.selectors(r, q);
    // The deprecated watch of one object by URL is a watch with a name field selector.
    if (route.name !== undefined) sel.fields.push({ field: 'metadata.name', op: '=', value: route.name });
    const rvParam = q.get('resourceVersion') ?? '';
    let from: number | undefined;
    if (rvParam !== '' && rvParam !== '0') {
      from = Number(rvParam);
      if (!Number.isInteger(from) || from < 0) throw badRequest(`invalid resource version: ${rvParam}`);
    }
    const bookmarks = q.get('allowWatchBookmarks') === 'true';
    const initialEvents = q.get('sendInitialEvents') === 'true';
    const timeoutS = q.has('timeoutSeconds') ? Number(q.get('timeoutSeconds')) : this.opts.defaultWatchTimeoutSeconds;

    res.writeHead(200, { 'Content-Type': outputContentType(out, false), 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();

    const write = (type: string, obj: Obj): void => {
      let payload = obj;
      if (type !== 'ERROR' && type !== 'BOOKMARK') {
        if (out.kind === 'table') payload = this.table(r, [obj], out.version, q, { resourceVersion: obj.metadata.resourceVersion });
        else if (out.kind === 'partial') payload = this.partial(obj, out.version);
      }
      res.write(JSON.stringify({ type, object: payload }) + '\n');
    };

    let unsubscribe: (() => void) | undefined;
    let bookmarkTimer: NodeJS.Timeout | undefined;
    let timeoutTimer: NodeJS.Timeout | undefined;
    const w: ActiveWatch = {
      res,
      close: () => {
        unsubscribe?.();
        unsubscribe = undefined;
        if (bookmarkTimer) clearInterval(bookmarkTimer);
        if (timeoutTimer) clearTimeout(timeoutTimer);
        this.watches.delete(w);
      },
    };
    const finish = (): void => {
      w.close();
      res.end();
    };
    // (the request's own 'close' fires when its empty body is done, not on disconnect)
    res.on('close', () => w.close());

    const deliver = (e: StoreEvent): void => {
      if (e.storage !== r.storage) return;
      const now = this.matches(sel, e.object, namespace);
      const before = e.type === 'MODIFIED' && e.prev ? this.matches(sel, e.prev, namespace) : now;
      let type: string | undefined;
      if (e.type === 'ADDED') type = now ? 'ADDED' : undefined;
      else if (e.type === 'DELETED') type = now ? 'DELETED' : undefined;
      else if (now && before) type = 'MODIFIED';
      else if (now && !before) type = 'ADDED';
      else if (!now && before) type = 'DELETED';
      if (type) write(type, this.view(r, e.object));
    };

    if (from === undefined) {
      // No resourceVersion: start with synthetic ADDED events for the current state.
      for (const o of this.store.list(r.storage, namespace)) if (this.matches(sel, o, namespace)) write('ADDED', this.view(r, o));
      if (initialEvents && bookmarks) {
        write('BOOKMARK', { kind: r.kind, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(this.store.resourceVersion), annotations: { 'k8s.io/initial-events-end': 'true' } } });
      }
    } else {
      const past = this.store.since(from);
      if (past === 'expired') {
        write('ERROR', expired(`too old resource version: ${from} (${this.store.compactedRevision})`).status());
        res.end();
        return;
      }
      for (const e of past) deliver(e);
    }
    unsubscribe = this.store.subscribe(deliver);
    this.watches.add(w);
    if (bookmarks) {
      bookmarkTimer = setInterval(() => {
        write('BOOKMARK', { kind: r.kind, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(this.store.resourceVersion) } });
      }, this.opts.bookmarkIntervalMs);
    }
    if (Number.isFinite(timeoutS) && timeoutS > 0) timeoutTimer = setTimeout(finish, timeoutS * 1000);
  }

  // --- writes ----------------------------------------------------------------

  private checkTypeMeta(r: ResourceType, body: Obj): void {
    if (body.apiVersion !== undefined && body.apiVersion !== apiVersionOf(r)) {
      throw badRequest(`the API version in the data (${body.apiVersion}) does not match the expected API version (${apiVersionOf(r)})`);
    }
    if (body.kind !== undefined && body.kind !== r.kind) {
      throw badRequest(`the kind in the data (${body.kind}) does not match the expected kind (${r.kind})`);
    }
  }

  private requireNamespace(ns: string): void {
    if (!this.store.get('namespaces', undefined, ns)) throw notFound('namespaces', '', ns);
  }

  /** Kind-specific defaulting and validation shared by create and update. */
  private admit(r: ResourceType, o: Obj, old: Obj | undefined, sub: string | undefined): Cause[] {
    const timeProblem = normalizeTimes(r.kind, o);
    if (timeProblem) throw badRequest(`error decoding request body: ${timeProblem}`);
    const causes = validateMeta(o.metadata);
    if (sub === 'status') {
      if (r.kind === 'Service') {
        for (const [i, ing] of ((o.status?.loadBalancer?.ingress ?? []) as Obj[]).entries()) {
          const f = `status.loadBalancer.ingress[${i}]`;
          if (ing.ip !== undefined && !(isIPv4(ing.ip) || isIPv6(ing.ip))) causes.push(fieldInvalid(`${f}.ip`, ing.ip, 'must be a valid IP address'));
          // Kubernetes ≥ 1.30 (LoadBalancerIPMode) defaults ipMode for an ingress IP.
          if (ing.ip && ing.ipMode === undefined) ing.ipMode = 'VIP';
          if (ing.ipMode !== undefined) {
            if (!['VIP', 'Proxy'].includes(ing.ipMode)) causes.push(fieldNotSupported(`${f}.ipMode`, ing.ipMode, ['Proxy', 'VIP']));
            else if (!ing.ip) causes.push(fieldForbidden(`${f}.ipMode`, 'may not be specified when `ip` is not'));
          }
        }
        causes.push(...validateConditions(o.status?.conditions, 'status.conditions'));
      }
      return causes;
    }
    if (r.kind === 'Service' && causes.length === 0) return this.allocator.admit(o, old);
    if (r.kind === 'EndpointSlice') causes.push(...validateEndpointSlice(o));
    if (r.kind === 'Lease') causes.push(...validateLease(o));
    if (r.kind === 'Event' && r.group === 'events.k8s.io' && !old) causes.push(...validateNewEvent(o));
    if (r.kind === 'Namespace') {
      o.spec = { finalizers: ['kubernetes'], ...(o.spec ?? {}) };
      if (!old) o.status = { phase: 'Active' };
      o.metadata.labels = { ...(o.metadata.labels ?? {}), 'kubernetes.io/metadata.name': o.metadata.name };
    }
    return causes;
  }

  private doCreate(r: ResourceType, namespace: string | undefined, body: Obj, dryRun: boolean): Obj {
    this.checkTypeMeta(r, body);
    const o: Obj = { ...body, apiVersion: apiVersionOf(r), kind: r.kind, metadata: { ...(body.metadata ?? {}) } };
    const meta = o.metadata;
    if (r.namespaced) {
      if (namespace === undefined) throw methodNotSupported('POST', r.plural);
      if (meta.namespace && meta.namespace !== namespace) {
        throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      }
      meta.namespace = namespace;
      this.requireNamespace(namespace);
    } else {
      delete meta.namespace;
    }
    if (!meta.name) {
      if (!meta.generateName) throw invalid(r.kind, r.group, '', [{ reason: 'FieldValueRequired', message: 'Required value: name or generateName is required', field: 'metadata.name' }]);
      for (let i = 0; i < 16; i++) {
        let suffix = '';
        for (const b of randomBytes(5)) suffix += GENERATE_CHARS[b % GENERATE_CHARS.length];
        meta.name = `${meta.generateName}${suffix}`;
        if (!this.store.get(r.storage, meta.namespace, meta.name)) break;
      }
    }
    const rule = r.nameRule === 'path' ? 'dns1123subdomain' : r.kind === 'Namespace' ? 'dns1123label' : r.nameRule;
    const bad = nameProblem(meta.name, rule);
    if (bad) throw invalid(r.kind, r.group, meta.name, [fieldInvalid('metadata.name', meta.name, bad)]);
    if (this.store.get(r.storage, meta.namespace, meta.name)) throw alreadyExists(r.plural, r.group, meta.name);

    meta.uid = randomUUID();
    meta.creationTimestamp = nowRFC3339();
    delete meta.resourceVersion;
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    delete meta.managedFields;
    delete meta.selfLink;
    if (r.kind === 'Service') o.status = { loadBalancer: {} };
    if (r.kind === 'EndpointSlice') meta.generation = 1;
    const causes = this.admit(r, o, undefined, undefined);
    if (causes.length > 0) throw invalid(r.kind, r.group, meta.name, causes);
    if (dryRun) {
      if (r.kind === 'Service') this.allocator.release(o);
      return o;
    }
    const stored = this.store.create(r.storage, r.toStorage ? r.toStorage(o) : o);
    return this.view(r, stored);
  }

  private doUpdate(r: ResourceType, namespace: string | undefined, name: string | undefined, body: Obj, sub: string | undefined, dryRun: boolean): { obj: Obj; created: boolean } {
    this.checkTypeMeta(r, body);
    if (sub !== undefined && (sub !== 'status' || !r.hasStatus)) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const meta = body.metadata ?? {};
    if (!name) throw badRequest('name is required');
    if (meta.name !== name) throw badRequest(`the name of the object (${meta.name ?? ''}) does not match the name on the URL (${name})`);
    if (r.namespaced && meta.namespace && meta.namespace !== namespace) {
      throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
    }
    const existing = this.store.get(r.storage, r.namespaced ? namespace : undefined, name);
    if (!existing) {
      if (r.allowCreateOnUpdate && sub === undefined) {
        const b = { ...body, metadata: { ...meta } };
        delete b.metadata.resourceVersion;
        return { obj: this.doCreate(r, namespace, b, dryRun), created: true };
      }
      throw notFound(r.plural, r.group, name);
    }
    return { obj: this.replace(r, existing, body, sub, dryRun), created: false };
  }

  /** The update path shared by PUT and PATCH: preconditions, field ownership, no-op detection. */
  private replace(r: ResourceType, existing: Obj, body: Obj, sub: string | undefined, dryRun: boolean): Obj {
    const name = existing.metadata.name;
    const rv = body.metadata?.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== existing.metadata.resourceVersion) throw conflict(r.plural, r.group, name);
    const old = this.view(r, existing);
    let next: Obj;
    if (sub === 'status') {
      // Stored objects are never mutated, so a shallow copy with a new status suffices.
      next = { ...old, metadata: { ...old.metadata }, status: body.status === undefined ? undefined : clone(body.status) };
    } else {
      next = clone(body);
      next.apiVersion = apiVersionOf(r);
      next.kind = r.kind;
      next.metadata = {
        ...next.metadata,
        name,
        uid: old.metadata.uid,
        creationTimestamp: old.metadata.creationTimestamp,
        ...(r.namespaced ? { namespace: old.metadata.namespace } : {}),
      };
      if (old.metadata.generation !== undefined) next.metadata.generation = old.metadata.generation;
      delete next.metadata.managedFields;
      // Deletion is the server's business: clients cannot set or clear it.
      delete next.metadata.deletionTimestamp;
      delete next.metadata.deletionGracePeriodSeconds;
      if (old.metadata.deletionTimestamp) {
        next.metadata.deletionTimestamp = old.metadata.deletionTimestamp;
        next.metadata.deletionGracePeriodSeconds = old.metadata.deletionGracePeriodSeconds;
        const added = ((next.metadata.finalizers ?? []) as string[]).filter((f) => !((old.metadata.finalizers ?? []) as string[]).includes(f));
        if (added.length > 0) {
          throw invalid(r.kind, r.group, name, [{ reason: 'FieldValueForbidden', field: 'metadata.finalizers', message: `Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers ${JSON.stringify(added)}` }]);
        }
      }
      if (r.hasStatus) next.status = old.status;
    }
    const causes = this.admit(r, next, old, sub);
    if (causes.length > 0) throw invalid(r.kind, r.group, name, causes);
    // An update that changes nothing is not written: no new resourceVersion, no watch event.
    if (sub === 'status' ? canonical(next.status) === canonical(old.status) : canonical(withoutRV(next)) === canonical(withoutRV(old))) {
      return old;
    }
    if (next.metadata.generation !== undefined && sub === undefined && canonical(this.specOf(next)) !== canonical(this.specOf(old))) {
      next.metadata.generation = old.metadata.generation + 1;
    }
    if (dryRun) {
      if (r.kind === 'Service' && sub === undefined) {
        this.allocator.release(next);
        this.allocator.claim(old);
      }
      return next;
    }
    const stored = this.store.update(r.storage, r.toStorage ? r.toStorage(next) : next);
    if (stored.metadata.deletionTimestamp && !(stored.metadata.finalizers ?? []).length) {
      // The last finalizer is gone: the pending deletion completes.
      if (r.kind === 'Service') this.allocator.release(stored);
      return this.view(r, this.store.delete(r.storage, stored.metadata.namespace, name)!);
    }
    return this.view(r, stored);
  }

  private specOf(o: Obj): Obj {
    const { metadata: _m, status: _s, ...rest } = o;
    return rest;
  }

  private doPatch(r: ResourceType, namespace: string | undefined, name: string, contentType: string, patch: unknown, sub: string | undefined, dryRun: boolean): Obj {
    if (sub !== undefined && (sub !== 'status' || !r.hasStatus)) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
    const existing = this.store.get(r.storage, r.namespaced ? namespace : undefined, name);
    if (!existing) throw notFound(r.plural, r.group, name);
    const current = this.view(r, existing);
    let patched: unknown;
    switch (contentType) {
      case 'application/merge-patch+json':
        patched = mergePatch(current, patch);
        break;
      case 'application/strategic-merge-patch+json':
        patched = strategicMergePatch(current, patch, r.strategies);
        break;
      case 'application/json-patch+json':
        patched = jsonPatch(current, patch);
        break;
      default:
        throw unsupportedMediaType(contentType);
    }
    if (!patched || typeof patched !== 'object' || Array.isArray(patched)) throw new ApiError(422, 'Invalid', 'the patch result is not an object');
    const p = patched as Obj;
    p.metadata = { ...(p.metadata ?? {}), name };
    if (r.namespaced) p.metadata.namespace = namespace;
    return this.replace(r, existing, p, sub, dryRun);
  }

  private doDelete(r: ResourceType, namespace: string | undefined, name: string, opts: Obj, dryRun: boolean): Obj {
    const ns = r.namespaced ? namespace : undefined;
    const existing = this.store.get(r.storage, ns, name);
    if (!existing) throw notFound(r.plural, r.group, name);
    const pre = opts.preconditions ?? {};
    if (pre.uid && pre.uid !== existing.metadata.uid) {
      throw conflict(r.plural, r.group, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${existing.metadata.uid}`);
    }
    if (pre.resourceVersion && pre.resourceVersion !== existing.metadata.resourceVersion) {
      throw conflict(r.plural, r.group, name, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${existing.metadata.resourceVersion}`);
    }
    if (r.kind === 'Namespace' && ['default', 'kube-system', 'kube-public'].includes(name)) {
      throw new ApiError(403, 'Forbidden', `namespaces "${name}" is forbidden: this namespace may not be deleted`, { name, kind: 'namespaces' });
    }
    if (dryRun) return this.view(r, existing);
    if ((existing.metadata.finalizers ?? []).length > 0 && r.kind !== 'Namespace') {
      // Finalizers hold the object: it is only marked, and goes when the last one is removed.
      if (existing.metadata.deletionTimestamp) return this.view(r, existing);
      const marked = { ...existing, metadata: { ...existing.metadata, deletionTimestamp: nowRFC3339(), deletionGracePeriodSeconds: 0 } };
      return this.view(r, this.store.update(r.storage, marked));
    }
    if (r.kind === 'Namespace') {
      // The namespace controller's work, done at once: everything inside goes first.
      const storages = new Set(RESOURCES.filter((x) => x.namespaced).map((x) => x.storage));
      for (const s of storages) {
        for (const o of this.store.list(s, name)) {
          if (s === 'services') this.allocator.release(o);
          this.store.delete(s, name, o.metadata.name);
        }
      }
    }
    if (r.kind === 'Service') this.allocator.release(existing);
    const gone = this.store.delete(r.storage, ns, name)!;
    return this.view(r, gone);
  }

  private deleteCollection(route: Route, q: URLSearchParams, opts: Obj, dryRun: boolean): Obj {
    const { r, namespace } = route;
    const sel = this.selectors(r, q);
    const victims = this.store.list(r.storage, namespace).filter((o) => this.matches(sel, o, namespace));
    const items = victims.map((o) => this.doDelete(r, o.metadata.namespace, o.metadata.name, opts, dryRun));
    return { kind: r.listKind, apiVersion: apiVersionOf(r), metadata: { resourceVersion: String(this.store.resourceVersion) }, items };
  }
}
