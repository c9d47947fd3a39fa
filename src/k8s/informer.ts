// A ListWatch (client-node's informer) that survives the API server going
// away. client-node relists by itself after 410 Gone and re-watches after a
// clean close, but after any other error it stops; this wrapper restarts it
// with backoff, keeping its cache, so while the API is unreachable the last
// known objects stay (nothing is withdrawn). A relist replaces the cache in
// one synchronous step (deletes for vanished objects, then adds/updates), so
// a consumer that defers its work to a later tick never sees a half-relisted
// cache: objects that reappear in the relist produce no removal.
//
// One object never stops an informer: a projection or a handler that throws
// on it (an object shaped as nobody expected) is logged naming the object
// and counted; the object is cached as received and every other one flows.
import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { reportPermissionProblem } from './rest.js';
import type { Logger } from '../log/logger.js';

type WatchCallback = (phase: string, apiObj: unknown, watchObj?: unknown) => void;

/** A Watch that trims objects before ListWatch caches them. */
class ProjectingWatch extends Watch {
  constructor(
    kc: KubeConfig,
    private readonly project: (obj: unknown) => unknown,
  ) {
    super(kc);
  }

  override watch(path: string, queryParams: Record<string, string | number | boolean | undefined>, callback: WatchCallback, done: (err: unknown) => void): Promise<AbortController> {
    return super.watch(path, queryParams, (phase, obj, raw) => callback(phase, phase === 'ERROR' || phase === 'BOOKMARK' ? obj : this.project(obj), raw), done);
  }
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
}

export interface ResilientInformerOptions<T extends KubernetesObject> {
  kubeConfig: KubeConfig;
  /** Watch path, e.g. /api/v1/services. */
  path: string;
  /** Lists every object, each passed through `project` (the informer's own, which never throws). */
  list: (project: (obj: T) => T) => Promise<KubernetesListObject<T>>;
  name: string;
  logger: Logger;
  onEvent: (ev: InformerEvent, obj: T) => void;
  /**
   * Trims each object before it is cached (list items and watch events
   * alike), e.g. drops managedFields or fields edgelb never reads.
   */
  project?: (obj: T) => T;
  /** Called after each successful list (initial or relist), once its objects are in the cache. */
  onListed?: () => void;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
}

export class ResilientInformer<T extends KubernetesObject> {
  private readonly o: ResilientInformerOptions<T>;
  private readonly lw: ListWatch<T>;
  private stopped = true;
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | null = null;
  private erroredSinceStart = false;
  private readonly st: InformerStats = { connected: false, synced: false, lists: 0, watchStarts: 0, errors: 0, objectErrors: 0 };

  constructor(o: ResilientInformerOptions<T>) {
    this.o = o;
    this.backoffMs = o.backoffInitialMs ?? 200;
    const project = (obj: T): T => this.project(obj);
    const list = async (): Promise<KubernetesListObject<T>> => {
      const r = await o.list(project);
      this.st.lists++;
      this.st.synced = true;
      this.st.connected = true;
      // ListWatch fills its cache right after this promise resolves, in
      // the same microtask chain; a macrotask later it is complete.
      setImmediate(() => {
        if (!this.stopped) o.onListed?.();
      });
      return r;
    };
    this.lw = new ListWatch<T>(o.path, o.project ? new ProjectingWatch(o.kubeConfig, project as (x: unknown) => unknown) : new Watch(o.kubeConfig), list, false);
    this.lw.on('add', (obj) => this.event('add', obj));
    this.lw.on('update', (obj) => this.event('update', obj));
    this.lw.on('delete', (obj) => this.event('delete', obj));
    this.lw.on('connect', () => {
      this.st.watchStarts++;
    });
    this.lw.on('error', (err) => this.onError(err));
  }

  stats(): InformerStats {
    return { ...this.st };
  }

  get(name: string, namespace?: string): T | undefined {
    return this.lw.get(name, namespace);
  }

  list(): ReadonlyArray<T> {
    return this.lw.list();
  }

  async start(): Promise<void> {
    this.stopped = false;
    await this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    await this.lw.stop();
  }

  private event(ev: InformerEvent, obj: T): void {
    if (this.stopped) return;
    this.st.connected = true;
    this.backoffMs = this.o.backoffInitialMs ?? 200;
    try {
      this.o.onEvent(ev, obj);
    } catch (err) {
      this.objectFailed(obj, err, `handling its ${ev} failed`);
    }
  }

  /** The configured projection, or the object as received if it throws. */
  private project(obj: T): T {
    if (!this.o.project) return obj;
    try {
      return this.o.project(obj);
    } catch (err) {
      this.objectFailed(obj, err, 'trimming it failed; cached as received');
      return obj;
    }
  }

  private objectFailed(obj: T, err: unknown, what: string): void {
    this.st.objectErrors++;
    const md = (obj as { metadata?: { namespace?: string; name?: string } } | null)?.metadata;
    const object = `${md?.namespace ? `${md.namespace}/` : ''}${md?.name ?? '(no name)'}`;
    this.o.logger.error({ informer: this.o.name, object, err: String(err) }, `${this.o.name} ${object}: ${what}`);
  }

  private async run(): Promise<void> {
    this.erroredSinceStart = false;
    await this.lw.start();
    // start() resolves once the watch request got its response headers;
    // an error before that was reported through onError.
    if (!this.erroredSinceStart && !this.stopped) {
      this.st.connected = true;
      this.backoffMs = this.o.backoffInitialMs ?? 200;
    }
  }

  private onError(err: unknown): void {
    if (this.stopped) return; // stop() aborts the watch, which reports an error
    this.erroredSinceStart = true;
    this.st.errors++;
    if (reportPermissionProblem(this.o.logger, err, `list/watch ${this.o.path}`)) {
      /* logged once, naming verb and resource; keep retrying (RBAC may be fixed) */
    } else if (this.st.connected) this.o.logger.warn({ informer: this.o.name, err: String(err) }, 'lost API server; keeping last known state');
    this.st.connected = false;
    if (this.restartTimer) return;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.o.backoffMaxMs ?? 5000);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (!this.stopped) void this.run();
    }, delay);
  }
}
