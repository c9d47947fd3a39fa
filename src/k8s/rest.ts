// The agents' one API client: JSON requests, paged lists and watch streams
// over one keep-alive pool. client-node's generated APIs cost ~0.85 ms CPU
// and a burst of garbage per request (middleware chain, ObjectSerializer on
// both ways, fetch) and ≈ 80 MB of RSS to import; on the 10 000-Service
// benchmark that dominated the agent's CPU and memory. TLS material and
// credentials come from the KubeConfig (re-read every 30 s so rotating
// tokens and exec plugins keep working).
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest, type RequestOptions as HttpsRequestOptions } from 'node:https';
import { createHash } from 'node:crypto';
import type { Connection, KubeConfig } from './kubeconfig.js';
import { LineSplitter } from './line-splitter.js';

export class ApiStatusError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly body: unknown,
  ) {
    super(message);
  }
}

/** A watch that stayed silent longer than its idle limit (a dead peer, or a server that sends no bookmarks). */
export class WatchIdleError extends Error {}

const REFRESH_MS = 30_000;
/**
 * One watch event is one object; the API server refuses objects over
 * ~1.5 MB (etcd's request limit) and requests over 3 MB. A stream that sends
 * more than this without a newline is broken: end it (the informer relists)
 * rather than buffer without bound.
 */
const MAX_WATCH_LINE = 16 * 1024 * 1024;

/**
 * Names a request's connection pool by the digest of its TLS identity
 * (RestClient sets `tlsKey` once per credentials refresh) instead of Node's
 * default: that one appends the CA, client certificate and key to the name
 * for every request, turning each PEM Buffer into a new string — ~1–3 KB of
 * garbage per status write or Event, ~20 000 of them at a 10 000-Service
 * startup. Requests without a key are named the default way.
 */
class TlsKeyedAgent extends HttpsAgent {
  override getName(o?: HttpsRequestOptions & { tlsKey?: string }): string {
    return o?.tlsKey ?? super.getName(o);
  }
}

/** Host, port and a digest of everything else that makes a TLS connection this one: sockets are reused only under the same key. */
function tlsKeyOf(base: URL, o: Connection): string {
  const h = createHash('sha256');
  for (const part of [o.ca, o.cert, o.key]) h.update(part === undefined ? '-' : createHash('sha256').update(part).digest('hex'));
  h.update(`|${o.rejectUnauthorized}|${o.servername ?? ''}`);
  return `${base.hostname}:${base.port}:${h.digest('base64')}`;
}

export class RestClient {
  private readonly kc: KubeConfig;
  private readonly base: URL;
  private readonly agent: HttpAgent;
  private opts: Connection | null = null;
  private optsAt = 0;
  private tlsKey = '';
  /**
   * Aborts every request on close(): the pool's destroy() alone ends only
   * requests that hold a socket — one queued for a socket then took a new
   * connection, and one begun after close() (a Lease release) opened its own;
   * against an API server that answers nothing each kept the stopping agent
   * alive for its 30 s timeout.
   */
  private readonly closing = new AbortController();

  constructor(kc: KubeConfig, maxSockets = 64) {
    this.kc = kc;
    this.base = kc.server;
    if (this.base.protocol === 'http:' && !kc.skipTLSVerify) {
      throw new Error(`refusing plain HTTP to ${kc.server.href} (set insecure-skip-tls-verify to allow it)`);
    }
    this.agent = this.base.protocol === 'https:' ? new TlsKeyedAgent({ keepAlive: true, maxSockets }) : new HttpAgent({ keepAlive: true, maxSockets });
  }

  private async options(): Promise<Connection> {
    if (this.opts && Date.now() - this.optsAt < REFRESH_MS) return this.opts;
    const o = await this.kc.connection();
    this.opts = o;
    this.optsAt = Date.now();
    this.tlsKey = tlsKeyOf(this.base, o);
    return o;
  }

  /**
   * Sends JSON, parses JSON; non-2xx throws ApiStatusError carrying `code`.
   * `discard` skips reading a successful response (writes whose echo the
   * informer delivers anyway).
   */
  async send(method: string, path: string, body: unknown, contentType = 'application/json', discard = false): Promise<unknown> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const headers: Record<string, string | number> = { accept: 'application/json' };
    if (payload !== undefined) {
      headers['content-type'] = contentType;
      headers['content-length'] = Buffer.byteLength(payload);
    }
    const req = await this.request(method, path, headers, 30_000);
    const used = this.opts;
    return new Promise((resolve, reject) => {
      const s = settleOnce(resolve, reject);
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', (e) => s.fail(this.closing.signal.aborted ? closedError(method, path) : e));
      req.on('response', (res: IncomingMessage) => {
        const code = res.statusCode ?? 0;
        if (discard && code >= 200 && code < 300) {
          res.on('error', s.fail);
          res.on('end', () => s.ok(undefined));
          res.resume();
          return;
        }
        let chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', s.fail);
        res.on('end', () => {
          const parsed = parseBody(Buffer.concat(chunks).toString('utf8'));
          chunks = [];
          if (code === 401) this.refused(used);
          if (code >= 200 && code < 300) s.ok(parsed);
          else s.fail(statusError(`${method} ${path}`, code, parsed));
        });
      });
      req.end(payload);
    });
  }

  /**
   * A request made with `used` was answered 401: read the credentials again
   * at the next request (a token file rotated within the 30 s cache, an exec
   * plugin's credential revoked) — once per credentials however many
   * requests they failed, not at every refused request.
   */
  private refused(used: Connection | null): void {
    if (used === null || used !== this.opts) return;
    this.opts = null;
    this.kc.credentialsRejected();
  }

  private async request(method: string, path: string, extra: Record<string, string | number>, idleMs: number): Promise<ClientRequest> {
    if (this.closing.signal.aborted) throw closedError(method, path);
    const o = await this.options();
    if (this.closing.signal.aborted) throw closedError(method, path);
    const https = this.base.protocol === 'https:';
    return (https ? httpsRequest : httpRequest)({
      // URL.hostname keeps an IPv6 literal's brackets; the socket wants the address.
      host: this.base.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: this.base.port || (https ? 443 : 80),
      method,
      path: `${this.base.pathname.replace(/\/$/, '')}${path}`,
      headers: { ...o.headers, ...extra },
      agent: this.agent,
      ca: o.ca,
      cert: o.cert,
      key: o.key,
      rejectUnauthorized: o.rejectUnauthorized,
      servername: o.servername,
      timeout: idleMs,
      signal: this.closing.signal,
      ...(https ? { tlsKey: this.tlsKey } : {}),
    });
  }

  /**
   * Opens a watch stream (`path` with its query) and calls `onEvent` for
   * every JSON line. Resolves once the server answered 200 (the watch is
   * established); `done` is called exactly once when the stream ends —
   * with null for a clean end (the server's timeout), an error otherwise
   * (HTTP status, a broken line, silence longer than `idleMs`, abort, the
   * credentials that could not be read).
   */
  async watch(path: string, onEvent: (ev: unknown) => void, done: (err: Error | null) => void, idleMs: number): Promise<{ abort: () => void }> {
    let finished = false;
    const finish = (err: Error | null): void => {
      if (finished) return;
      finished = true;
      done(err);
    };
    let req: ClientRequest;
    try {
      req = await this.request('GET', path, { accept: 'application/json' }, idleMs);
    } catch (e) {
      // No request was made (credentials unreadable: a token file gone, an
      // exec plugin failing or printing garbage): still the watch's end. The
      // informer leaves retrying to `done`, so without it a watch resumed
      // at that moment was never retried and the cache froze for good.
      finish(e as Error);
      throw e;
    }
    const used = this.opts;
    return new Promise((resolve, reject) => {
      const abort = (): void => {
        req.destroy(new Error(`watch ${path}: stopped`));
      };
      req.on('timeout', () => req.destroy(new WatchIdleError(`watch ${path}: nothing received for ${Math.round(idleMs / 1000)} s`)));
      req.on('error', (e) => {
        reject(e);
        finish(e);
      });
      req.on('response', (res: IncomingMessage) => {
        const code = res.statusCode ?? 0;
        if (code !== 200) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', () => undefined);
          res.on('end', () => {
            if (code === 401) this.refused(used);
            const e = statusError(`watch ${path}`, code, parseBody(Buffer.concat(chunks).toString('utf8')));
            reject(e);
            finish(e);
          });
          return;
        }
        resolve({ abort });
        const lines = new LineSplitter(MAX_WATCH_LINE);
        res.on('data', (chunk: Buffer) => {
          if (finished) return;
          const r = lines.push(chunk, (line) => {
            if (line.trim() === '') return true;
            let ev: unknown;
            try {
              ev = JSON.parse(line);
            } catch {
              req.destroy();
              finish(new Error(`watch ${path}: a line that is not JSON (${line.slice(0, 80)})`));
              return false;
            }
            onEvent(ev);
            return !finished;
          });
          if (r === 'too-long') {
            req.destroy();
            finish(new Error(`watch ${path}: a line longer than ${MAX_WATCH_LINE} bytes`));
          }
        });
        res.on('error', (e) => finish(e));
        res.on('aborted', () => finish(new Error(`watch ${path}: connection lost`)));
        res.on('end', () => finish(lines.unfinished() ? new Error(`watch ${path}: the stream ended inside a line`) : null));
        res.on('close', () => finish(res.complete ? null : new Error(`watch ${path}: connection lost`)));
      });
      req.end();
    });
  }

  get<T>(path: string): Promise<T> {
    return this.send('GET', path, undefined) as Promise<T>;
  }

  /**
   * Lists a collection in pages (consistent: every page is served at the
   * first page's resourceVersion), so the agent never holds a whole 20 MB
   * response body and its parse at once. Pages of 250: a parsed page is
   * alive until its last object is projected, and a young-generation GC
   * during that copies (and then promotes) all of it — with 1000 objects a
   * page (~3 MB parsed) that was most of what pushed V8's young generation
   * to its maximum size while the caches were built.
   */
  async listAll<T, C = T>(path: string, project: (item: T) => C = (x) => x as unknown as C, limit = 250): Promise<{ metadata: { resourceVersion?: string }; items: C[] }> {
    const items: C[] = [];
    let cont = '';
    let resourceVersion: string | undefined;
    for (let page = 0; page < 1_000_000; page++) {
      const q = `?limit=${limit}${cont ? `&continue=${encodeURIComponent(cont)}` : ''}`;
      const r = (await this.get<{ metadata?: { resourceVersion?: string; continue?: string }; items?: T[] }>(`${path}${q}`)) ?? {};
      resourceVersion ??= r.metadata?.resourceVersion;
      for (const it of r.items ?? []) items.push(project(it));
      cont = r.metadata?.continue ?? '';
      if (!cont) break;
    }
    return { metadata: { resourceVersion }, items };
  }

  /** Ends every request (in flight, queued, or begun later) and every connection: nothing of this client keeps the process alive. */
  close(): void {
    this.closing.abort();
    // When a socket closes, the pool opens a new one for the next request
    // queued on it, aborted or not: from now on it gets none.
    this.agent.createConnection = (_o, made) => {
      made?.(new Error('the API client is closed'), undefined as never);
      return undefined;
    };
    this.agent.destroy();
  }
}

function closedError(method: string, path: string): Error {
  return new Error(`${method} ${path}: the API client is closed`);
}

/** A response body: its JSON, the text itself when it is not JSON, undefined when empty. */
function parseBody(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** A non-2xx answer as an error carrying the code, with the API server's message (a Status body) when it sent one. */
function statusError(what: string, code: number, body: unknown): ApiStatusError {
  return new ApiStatusError(code, `${what}: HTTP ${code} ${(body as { message?: string } | undefined)?.message ?? ''}`.trim(), body);
}

/**
 * A promise's resolvers that let go of it once it settled. A keep-alive
 * socket keeps its last request (through the TLS session listener) and so
 * the request's listeners until it is reused; listeners holding `resolve`
 * kept the settled promise and its value — the last 1000-object page of a
 * list, or the last response body — alive that long.
 */
function settleOnce<T>(resolve: (v: T) => void, reject: (e: unknown) => void): { ok: (v: T) => void; fail: (e: unknown) => void } {
  let r: { resolve: (v: T) => void; reject: (e: unknown) => void } | null = { resolve, reject };
  return {
    ok: (v) => {
      const x = r;
      r = null;
      x?.resolve(v);
    },
    fail: (e) => {
      const x = r;
      r = null;
      x?.reject(e);
    },
  };
}

export function nsPath(namespace: string, plural: string, name?: string, sub?: string): string {
  return nsPathIn('/api/v1', namespace, plural, name, sub);
}

/** A namespaced resource's path under an API group's prefix (e.g. /apis/coordination.k8s.io/v1). */
export function nsPathIn(prefix: string, namespace: string, plural: string, name?: string, sub?: string): string {
  const enc = encodeURIComponent;
  return `${prefix}/namespaces/${enc(namespace)}/${plural}${name === undefined ? '' : `/${enc(name)}`}${sub ? `/${sub}` : ''}`;
}

const reported = new Set<string>();

/**
 * For an RBAC refusal (HTTP 403), the operator-facing sentence: the API
 * server's own message — it names the user, the verb, the resource and the
 * namespace — and where the permission comes from. null for anything else.
 */
export function permissionProblem(err: unknown): string | null {
  const e = err as { code?: unknown; statusCode?: unknown; body?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'number' ? e.code : typeof e?.statusCode === 'number' ? e.statusCode : null;
  if (code !== 403) return null;
  let body = e?.body;
  if (typeof body === 'string') {
    try {
      body = JSON.parse(body);
    } catch {
      /* plain text */
    }
  }
  if (namespaceTerminating(body)) return null;
  const msg = (body as { message?: string } | null)?.message ?? (typeof e?.body === 'string' ? e.body : String(e?.message ?? 'forbidden'));
  return `permission denied by the API server: ${msg} (grant it to this agent's ServiceAccount; deploy/rbac.yaml has what edgelb needs)`;
}

/**
 * Whether a 403 is the API server refusing new objects in a namespace being
 * deleted (an Event about a Service there), not RBAC: named as a missing
 * permission, each such Event was an error line of its own, with advice to
 * grant what the agent already has, for as long as a finalizer kept the
 * namespace Terminating.
 */
function namespaceTerminating(body: unknown): boolean {
  const b = body as { details?: { causes?: { type?: string }[] }; message?: string } | null;
  if (b?.details?.causes?.some((c) => c.type === 'NamespaceTerminating')) return true;
  return typeof b?.message === 'string' && b.message.includes('because it is being terminated');
}

/**
 * Logs an RBAC refusal at error level, once per distinct message (a retry
 * loop would repeat it every few hundred ms); true when `err` was one.
 */
export function reportPermissionProblem(logger: { error: (o: object, msg: string) => void }, err: unknown, what: string): boolean {
  const p = permissionProblem(err);
  if (p === null) return false;
  if (!reported.has(p)) {
    if (reported.size > 1000) reported.clear();
    reported.add(p);
    logger.error({ what }, p);
  }
  return true;
}
