// An informer (list, then watch from the list's resourceVersion, a cache
// keyed by namespace/name) that survives the API server going away. A watch
// that ends cleanly (the server's timeout) resumes from the last
// resourceVersion it saw (bookmarks keep that fresh); 410 Gone and every
// other error lead to a relist after a backoff, keeping the cache, so while
// the API is unreachable the last known objects stay (nothing is withdrawn).
// A relist replaces the cache in one synchronous step (deletes for vanished
// objects, then adds/updates), so a consumer that defers its work to a later
// tick never sees a half-relisted cache: objects that reappear in the relist
// produce no removal.
//
// One object never stops an informer: a projection or a handler that throws
// on it (an object shaped as nobody expected) is logged naming the object
// and counted; the object is cached as received and every other one flows.
import { ApiStatusError, reportPermissionProblem, WatchIdleError, type RestClient } from './rest.js';
import type { Logger } from '../log/logger.js';

/** What an informer needs of an object: its name, namespace and version. */
export interface KubernetesObject {
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

export interface KubernetesList<T> {
  metadata?: { resourceVersion?: string };
  items: T[];
}

export type InformerEvent = 'add' | 'update' | 'delete';

export interface InformerStats {
  connected: boolean;
  synced: boolean;
  lists: number;
  watchStarts: number;
  errors: number;
  /** Objects whose projection or handler threw (logged, naming the object). */
  objectErrors: number;
  /** Why the last list or watch failed, until one succeeds again (status shows it: "unreachable" alone helps nobody). */
  lastError?: string;
}

/** T: objects as the API sends them; C: as the cache keeps them (`project` turns one into the other). */
export interface ResilientInformerOptions<T extends KubernetesObject, C extends KubernetesObject = T> {
  rest: RestClient;
  /** Collection path, e.g. /api/v1/services. */
  path: string;
  /**
   * Lists every object, each passed through `project` (the informer's own,
   * which never throws); by default the collection at `path`, in pages.
   */
  list?: (project: (obj: T) => C) => Promise<KubernetesList<C>>;
  name: string;
  logger: Logger;
  /** `before`: for an update, the version it replaces in the cache. */
  onEvent: (ev: InformerEvent, obj: C, before?: C) => void;
  /**
   * Trims each object before it is cached (list items and watch events
   * alike), e.g. drops managedFields or fields edgelb never reads. Without
   * it (or when it throws on an object) objects are cached as received, so
   * a C other than T needs a `project` that never throws.
   */
  project?: (obj: T) => C;
  /**
   * An update's object (projected) with parts equal to the cached version's
   * taken from that one (see shareUnchanged in trim.ts); when it throws the
   * update is cached as projected.
   */
  share?: (cached: C, update: C) => C;
  /** Called after each successful list (initial or relist), once its objects are in the cache. */
  onListed?: () => void;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  /** A watch silent this long is reopened from the last resourceVersion (tests shorten it). */
  watchIdleMs?: number;
}

/** Objects are cached by namespace/name. */
function cacheKey(name: string | undefined, namespace: string | undefined): string {
  return `${namespace ?? ''}/${name ?? ''}`;
}

/**
 * kube-apiserver sends a bookmark to every watch that asked for them about
 * once a minute; 2.5 min without a byte means the connection (or the
 * server) is gone, which TCP keepalive alone would notice only after ~11 min.
 */
const WATCH_IDLE_MS = 150_000;

/** A watch that ends cleanly sooner than this after it started is treated as a failure (backoff), not resumed at once. */
const MIN_CLEAN_WATCH_MS = 1000;

export class ResilientInformer<T extends KubernetesObject, C extends KubernetesObject = T> {
  private readonly o: ResilientInformerOptions<T, C>;
  private readonly cache = new Map<string, C>();
  private resourceVersion = '';
  private stopped = true;
  /** Each list/watch attempt's number; callbacks of an older one are ignored. */
  private attempt = 0;
  private stream: { abort: () => void } | null = null;
  private lastExpiryMs = 0;
  /** When the current watch was requested: only a watch that lasted resets the backoff. */
  private watchBegan = 0;
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | null = null;
  private readonly st: InformerStats = { connected: false, synced: false, lists: 0, watchStarts: 0, errors: 0, objectErrors: 0 };

  constructor(o: ResilientInformerOptions<T, C>) {
    this.o = o;
    this.backoffMs = o.backoffInitialMs ?? 200;
  }

  stats(): InformerStats {
    return { ...this.st };
  }

  get(name: string, namespace?: string): C | undefined {
    return this.cache.get(cacheKey(name, namespace));
  }

  list(): C[] {
    return [...this.cache.values()];
  }

  /** The cached objects' keys ("namespace/name"): the cache's own strings, not new ones made from each object. */
  keys(): string[] {
    return [...this.cache.keys()];
  }

  /** Resolves once the first list is cached and its watch started, or the first attempt failed (then it retries with backoff). */
  async start(): Promise<void> {
    this.stopped = false;
    await this.run(true);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.attempt++;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    this.stream?.abort();
    this.stream = null;
  }

  private async run(relist: boolean): Promise<void> {
    const attempt = ++this.attempt;
    const current = (): boolean => attempt === this.attempt && !this.stopped;
    if (relist) {
      try {
        const project = (obj: T): C => this.project(obj);
        const r = await (this.o.list ? this.o.list(project) : this.o.rest.listAll<T, C>(this.o.path, project));
        if (!current()) return;
        const rv = r.metadata?.resourceVersion;
        if (!rv) throw new Error(`list ${this.o.path}: the response has no resourceVersion to watch from`);
        this.replace(r.items);
        this.resourceVersion = rv;
        this.st.lists++;
        this.st.synced = true;
        this.st.connected = true;
        delete this.st.lastError;
        setImmediate(() => {
          if (!this.stopped) this.o.onListed?.();
        });
      } catch (err) {
        if (current()) this.failed(err);
        return;
      }
    }
    // The server ends a watch after timeoutSeconds; spread over 5–10 min so edges do not re-watch in step.
    const timeoutSeconds = 300 + Math.floor(Math.random() * 300);
    const url = `${this.o.path}${this.o.path.includes('?') ? '&' : '?'}watch=true&allowWatchBookmarks=true&timeoutSeconds=${timeoutSeconds}&resourceVersion=${encodeURIComponent(this.resourceVersion)}`;
    const began = Date.now();
    this.watchBegan = began;
    try {
      const stream = await this.o.rest.watch(
        url,
        (ev) => {
          if (current()) this.watchEvent(ev as WatchEvent<T>);
        },
        (err) => {
          if (!current()) return;
          this.stream = null;
          const lasted = this.watchLasted();
          // A silent watch resumes like one the server ended: if the peer is
          // dead the new watch fails and that relists with backoff.
          const resumable = err === null || err instanceof WatchIdleError;
          if (resumable && lasted) void this.run(false);
          else if (err instanceof ApiStatusError && err.code === 410) this.expired(err);
          else this.failed(err ?? new Error(`watch ${this.o.path}: ended at once`));
        },
        this.o.watchIdleMs ?? WATCH_IDLE_MS,
      );
      if (!current()) {
        stream.abort();
        return;
      }
      this.stream = stream;
      this.st.watchStarts++;
      this.st.connected = true;
      delete this.st.lastError;
      // The backoff is not reset here: a server (or a proxy) that answers
      // the watch and cuts it at once — a garbage line, an immediate end —
      // was relisted every backoffInitialMs for ever. watchLasted() resets it.
    } catch {
      // The watch's end callback has reported it.
    }
  }

  private watchEvent(ev: WatchEvent<T>): void {
    const type = ev?.type;
    const obj = ev?.object;
    if (type === 'ERROR') {
      const status = obj as { code?: number; message?: string } | undefined;
      this.watchLasted();
      this.stream?.abort();
      this.stream = null;
      this.attempt++;
      const err = new ApiStatusError(status?.code ?? 0, `watch ${this.o.path}: ${status?.message ?? 'error event'}`, status);
      if (status?.code === 410) this.expired(err);
      else this.failed(err);
      return;
    }
    const rv = obj?.metadata?.resourceVersion;
    if (type === 'BOOKMARK') {
      if (rv) this.resourceVersion = rv;
      return;
    }
    if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED') return;
    if (obj === null || typeof obj !== 'object' || !obj.metadata?.name) {
      this.objectFailed(obj as T, new Error(`a ${type} event without an object name`), 'skipped');
      return;
    }
    if (rv) this.resourceVersion = rv;
    const projected = this.project(obj);
    const key = cacheKey(obj.metadata.name, obj.metadata.namespace);
    if (type === 'DELETED') {
      if (this.cache.delete(key)) this.event('delete', projected);
      return;
    }
    const cached = this.cache.get(key);
    const next = cached === undefined ? projected : this.share(cached, projected);
    this.cache.set(key, next);
    this.event(cached === undefined ? 'add' : 'update', next, cached);
  }

  /** A (re)list's objects replace the cache in one step: deletes for vanished ones, then adds and updates (an unchanged version is no event). */
  private replace(items: C[]): void {
    const fresh = new Map<string, C>();
    for (const it of items) fresh.set(cacheKey(it.metadata?.name, it.metadata?.namespace), it);
    const deleted: C[] = [];
    for (const [k, old] of this.cache) {
      if (fresh.has(k)) continue;
      this.cache.delete(k);
      deleted.push(old);
    }
    const changed: [InformerEvent, C, C | undefined][] = [];
    for (const [k, obj] of fresh) {
      const prev = this.cache.get(k);
      if (prev !== undefined && prev.metadata?.resourceVersion === obj.metadata?.resourceVersion) continue;
      this.cache.set(k, obj);
      changed.push([prev === undefined ? 'add' : 'update', obj, prev]);
    }
    for (const d of deleted) this.event('delete', d);
    for (const [ev, obj, before] of changed) this.event(ev, obj, before);
  }

  private event(ev: InformerEvent, obj: C, before?: C): void {
    if (this.stopped) return;
    this.st.connected = true;
    delete this.st.lastError;
    try {
      this.o.onEvent(ev, obj, before);
    } catch (err) {
      this.objectFailed(obj, err, `handling its ${ev} failed`);
    }
  }

  /**
   * Whether the watch now ending ran for at least MIN_CLEAN_WATCH_MS; if so
   * the API server worked and the backoff starts again from its initial
   * value. A watch cut sooner is a failure like a refused list: each one
   * waits longer (a relist is a full list of every object).
   */
  private watchLasted(): boolean {
    const lasted = Date.now() - this.watchBegan >= MIN_CLEAN_WATCH_MS;
    if (lasted) this.backoffMs = this.o.backoffInitialMs ?? 200;
    return lasted;
  }

  /** The update with what it shares with the cached version taken from there, or as it is if that throws. */
  private share(cached: C, update: C): C {
    if (!this.o.share) return update;
    try {
      return this.o.share(cached, update);
    } catch (err) {
      this.objectFailed(update, err, 'sharing its unchanged parts failed; cached as projected');
      return update;
    }
  }

  /** The configured projection, or the object as received if it throws. */
  private project(obj: T): C {
    if (!this.o.project) return obj as unknown as C;
    try {
      return this.o.project(obj);
    } catch (err) {
      this.objectFailed(obj, err, 'trimming it failed; cached as received');
      return obj as unknown as C;
    }
  }

  private objectFailed(obj: T | C, err: unknown, what: string): void {
    this.st.objectErrors++;
    const md = (obj as { metadata?: { namespace?: string; name?: string } } | null)?.metadata;
    const object = `${md?.namespace ? `${md.namespace}/` : ''}${md?.name ?? '(no name)'}`;
    this.o.logger.error({ informer: this.o.name, object, err: String(err) }, `${this.o.name} ${object}: ${what}`);
  }

  /**
   * 410 Gone (an ERROR event or the watch request's status): our
   * resourceVersion was compacted away. An ordinary event, not an outage:
   * relist at once — unless the last expiry was a moment ago (a server that
   * keeps answering 410 must not be relisted in a tight loop).
   */
  private expired(err: ApiStatusError): void {
    const now = Date.now();
    const recent = now - this.lastExpiryMs < MIN_CLEAN_WATCH_MS;
    this.lastExpiryMs = now;
    if (recent) this.failed(err);
    else void this.run(true);
  }

  /** A list or watch failed: keep the cache, relist after a backoff. */
  private failed(err: unknown): void {
    if (this.stopped) return;
    this.st.errors++;
    if (reportPermissionProblem(this.o.logger, err, `list/watch ${this.o.path}`)) {
      /* logged once, naming verb and resource; keep retrying (RBAC may be fixed) */
    } else if (this.st.connected) this.o.logger.warn({ informer: this.o.name, err: String(err) }, 'lost API server; keeping last known state');
    else if (this.st.lastError === undefined && this.st.lists === 0) {
      // Never got through: say why once, not at every retry.
      this.o.logger.warn({ informer: this.o.name, err: String(err) }, `cannot list ${this.o.path}: ${(err as Error)?.message ?? String(err)}; retrying`);
    }
    this.st.lastError = (err as Error)?.message ?? String(err);
    this.st.connected = false;
    if (this.restartTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.o.backoffMaxMs ?? 5000);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (!this.stopped) void this.run(true);
    }, delay);
  }
}

interface WatchEvent<T> {
  type?: string;
  object?: T;
}
