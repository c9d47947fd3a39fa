// Writes Service status (loadBalancer.ingress + our condition) from the
// allocating edge. Desired status is kept per Service and compared with
// what the informer last saw, so an unchanged cluster causes no writes
// (restart stability) and a burst of changes to one Service collapses into
// one write. Writes are JSON merge patches of the status subresource,
// carrying the other controllers' conditions over unchanged and the
// Service's uid (a write never lands on a namesake created since); a
// release also carries the resourceVersion it was computed from.
import type { V1Condition, V1LoadBalancerIngress, V1Service } from '@kubernetes/client-node';
import { canonicalIp } from '../net/ip.js';
import type { Logger } from '../log/logger.js';
import { CONDITION_ADVERTISED } from '../model/service.js';
import { httpStatus } from './refusal.js';
import { nsPath, reportPermissionProblem, type RestClient } from './rest.js';
import { sameList } from '../shared-lists.js';

export interface ConditionState {
  status: 'True' | 'False';
  reason: string;
  message: string;
}

export interface DesiredStatus {
  /**
   * The uid of the object it was computed for: written to that object only.
   * (One deleted and created again under its name was given the old one's
   * address by the re-check of its creation, before its own round.)
   */
  uid?: string;
  ingress: string[];
  /** null = remove our condition (the Service is no longer ours). */
  condition: ConditionState | null;
  /**
   * The Service is no longer ours (another type, another class): take these
   * addresses — the ones this edge gave it — and our condition out of its
   * status, leave every other entry, and forget the Service once that is so.
   * `ingress` is then unused. (Writing an empty list for as long as it was
   * remembered wiped what the controller of its new class wrote there, at
   * every write of theirs that the informer delivered before the next round.)
   */
  release?: readonly string[];
}

export interface StatusWriterOptions {
  rest: RestClient;
  logger: Logger;
  /** Current cached Service by "namespace/name". */
  get: (key: string) => V1Service | undefined;
  concurrency?: number;
  /** First wait before a failed write is tried again; doubles per failure of that Service up to maxRetryMs. */
  retryMs?: number;
  maxRetryMs?: number;
}

export function ourCondition(svc: V1Service): V1Condition | undefined {
  return svc.status?.conditions?.find((c) => c.type === CONDITION_ADVERTISED);
}

/**
 * The release for a Service that is not ours but still carries our
 * condition type, or null: an earlier leader gave it addresses and stopped
 * before it saw the Service leave (made a ClusterIP, classless after
 * `defaultClass` was turned off, while no edge ran), so no edge remembers
 * them. Another edgelb installation (another class) writes the same
 * condition type, so a LoadBalancer's is taken off only when its status
 * shows an address of our pools — one we gave; a Service that is no longer
 * a LoadBalancer is nobody's to serve. Released are the addresses in our
 * pools; anything else there is another controller's and stays.
 */
export function strandedRelease(svc: V1Service, ours: (ip: string) => boolean): readonly string[] | null {
  if (ourCondition(svc) === undefined) return null;
  const mine = (svc.status?.loadBalancer?.ingress ?? []).flatMap((e) => (e.ip && ours(e.ip) ? [canonicalIp(e.ip) ?? e.ip] : []));
  return mine.length > 0 || svc.spec?.type !== 'LoadBalancer' ? mine : null;
}

/** Whether `svc`'s status already says what `d` says. */
export function statusMatches(svc: V1Service, d: DesiredStatus): boolean {
  if (d.release) return ourCondition(svc) === undefined && keptIngress(svc, d.release).length === (svc.status?.loadBalancer?.ingress ?? []).length;
  // Entry by entry, not just the addresses: an entry another writer left (a
  // hostname, alone or beside an address) is not ours, and only a write
  // (the merge patch replaces the list) takes it away.
  const have = svc.status?.loadBalancer?.ingress ?? [];
  if (have.length !== d.ingress.length || have.some((e, i) => e.ip !== d.ingress[i] || (e.hostname ?? '') !== '')) return false;
  const c = ourCondition(svc);
  if (d.condition === null) return c === undefined;
  return c !== undefined && c.status === d.condition.status && c.reason === d.condition.reason && c.message === d.condition.message;
}

/** The ingress entries of `svc` that are not among `released` (another writer's, as they are). */
function keptIngress(svc: V1Service, released: readonly string[]): V1LoadBalancerIngress[] {
  return (svc.status?.loadBalancer?.ingress ?? []).filter((e) => !e.ip || !released.includes(canonicalIp(e.ip) ?? e.ip));
}

export function statusPatch(svc: V1Service, d: DesiredStatus, now: Date): Record<string, unknown> {
  const others = (svc.status?.conditions ?? []).filter((c) => c.type !== CONDITION_ADVERTISED);
  const conditions: unknown[] = others.map((c) => ({ ...c, lastTransitionTime: toIso(c.lastTransitionTime) }));
  if (d.condition !== null) {
    const prev = ourCondition(svc);
    const since = prev && prev.status === d.condition.status ? toIso(prev.lastTransitionTime) : now.toISOString();
    conditions.push({ type: CONDITION_ADVERTISED, ...d.condition, lastTransitionTime: since, observedGeneration: svc.metadata?.generation });
  }
  const ingress = d.release ? keptIngress(svc, d.release) : d.ingress.map((ip) => ({ ip }));
  const status = { loadBalancer: { ingress }, conditions };
  // The uid makes the write a precondition: a Service deleted and created
  // again under the same name while this write was on its way (the cache
  // still held the old one) is refused it (422: a uid is immutable), instead of being given the
  // old Service's addresses; nor does the writer retry it on the new one
  // (DesiredStatus.uid): that one's round sets its own.
  const uid = svc.metadata?.uid;
  // A release also names the version it was computed from: by then another
  // controller may own the Service's status, and a write computed from an
  // older version (the informer a moment behind, the request slow) wiped
  // what it had written there. The API server refuses it (409) instead, and
  // the writer retries with what the cache holds then.
  const rv = d.release ? svc.metadata?.resourceVersion : undefined;
  const metadata = { ...(uid ? { uid } : {}), ...(rv ? { resourceVersion: rv } : {}) };
  return Object.keys(metadata).length > 0 ? { metadata, status } : { status };
}

/** Whether two desired statuses say the same (a digest each was 10 000 strings kept and hashing at every check). */
function sameStatus(a: DesiredStatus, b: DesiredStatus): boolean {
  if (a === b) return true;
  if (a.uid !== b.uid) return false;
  if ((a.release ?? null) !== null || (b.release ?? null) !== null) return a.release?.join() === b.release?.join();
  if (!sameList(a.ingress, b.ingress)) return false;
  if (a.condition === null || b.condition === null) return a.condition === b.condition;
  return a.condition.status === b.condition.status && a.condition.reason === b.condition.reason && a.condition.message === b.condition.message;
}

function toIso(t: unknown): string {
  if (t instanceof Date) return t.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return typeof t === 'string' ? t : new Date().toISOString();
}

export class StatusWriter {
  private readonly o: Required<Pick<StatusWriterOptions, 'concurrency' | 'retryMs' | 'maxRetryMs'>> & StatusWriterOptions;
  private readonly desired = new Map<string, DesiredStatus>();
  /** What was last written for a Service, and the resourceVersion it was written over. */
  private readonly lastWritten = new Map<string, { desired: DesiredStatus; baseRv: string }>();
  private readonly queue = new Set<string>();
  private readonly inflight = new Set<string>();
  /**
   * Services with new information (a newer cached version, a new desired
   * status — not the same one recomputed) while their write was in flight:
   * looked at again as soon as it ends, failed or not. A write refused
   * because the Service changed on its way (409) waited out its backoff
   * though the newer version was cached.
   */
  private readonly again = new Set<string>();
  /** Services whose last write failed, waiting out their backoff (neither queued nor in flight). */
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  /** Failed writes in a row per Service (its backoff); gone once one succeeds. */
  private readonly failures = new Map<string, number>();
  private stopped = false;
  written = 0;
  failed = 0;

  constructor(o: StatusWriterOptions) {
    this.o = { concurrency: 32, retryMs: 1000, maxRetryMs: 30_000, ...o };
  }

  /** Writes queued, in flight or waiting to be tried again: stop() waits for these, and Events wait behind them. */
  pending(): number {
    return this.queue.size + this.inflight.size + this.retryTimers.size;
  }

  /** Sets (or with null forgets) the status this Service should have and writes it if needed. */
  set(key: string, d: DesiredStatus | null): void {
    if (d === null) {
      this.forget(key);
      return;
    }
    // Every recomputation of a Service sets its status again: keep the
    // object already held when it says the same (10 000 equal copies
    // otherwise outlive the write).
    const held = this.desired.get(key) ?? this.lastWritten.get(key)?.desired;
    const same = held !== undefined && sameStatus(held, d);
    this.desired.set(key, same ? held : d);
    if (!same && this.inflight.has(key)) this.again.add(key);
    // The same status again (a recomputation) waits out a failed write's backoff.
    if (same && this.retryTimers.has(key)) return;
    if (this.needsWrite(key)) this.enqueue(key);
  }

  /**
   * Re-checks one Service after the informer delivered a new version of it.
   * New information (this, or a new desired status) is tried at once, even
   * while an earlier failure's backoff runs: a write refused (409) because
   * the Service changed on its way is written again from the newer version.
   */
  observe(key: string): void {
    if (this.inflight.has(key)) this.again.add(key);
    if (this.desired.has(key) && this.needsWrite(key)) this.enqueue(key);
  }

  /** Resolves once every pending write has been tried (or after `timeoutMs`). */
  async flush(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.pending() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.retryTimers.values()) clearTimeout(t);
    this.retryTimers.clear();
    this.queue.clear();
  }

  /** Nothing more to write for this Service (released, or no longer ours). */
  private forget(key: string): void {
    this.desired.delete(key);
    this.again.delete(key);
    this.lastWritten.delete(key);
    this.failures.delete(key);
    this.cancelRetry(key);
  }

  private enqueue(key: string): void {
    this.cancelRetry(key);
    this.queue.add(key);
    this.pump();
  }

  private cancelRetry(key: string): void {
    const t = this.retryTimers.get(key);
    if (t === undefined) return;
    clearTimeout(t);
    this.retryTimers.delete(key);
  }

  private needsWrite(key: string): boolean {
    const d = this.desired.get(key);
    const svc = this.o.get(key);
    if (!d || !svc) return false;
    // Another object under the name: its own round sets its status.
    if (d.uid !== undefined && d.uid !== svc.metadata?.uid) return false;
    let lw = this.lastWritten.get(key);
    if (lw !== undefined && lw.baseRv !== (svc.metadata?.resourceVersion ?? '')) {
      // The informer has a newer version than the one written over (versions
      // only move forward): what was written matters no more.
      this.lastWritten.delete(key);
      lw = undefined;
    }
    if (statusMatches(svc, d)) {
      if (d.release) this.forget(key);
      return false;
    }
    // Written already and the informer has not caught up with our write yet.
    return !(lw && sameStatus(lw.desired, d));
  }

  private pump(): void {
    while (!this.stopped && this.inflight.size < this.o.concurrency && this.queue.size > 0) {
      const key = this.queue.values().next().value as string;
      this.queue.delete(key);
      if (this.inflight.has(key)) {
        // Picked up again once the current write ends.
        continue;
      }
      this.inflight.add(key);
      void this.write(key).then((ok) => {
        this.inflight.delete(key);
        const fresh = this.again.delete(key);
        // A failed write waits out its backoff (write() set the timer): put
        // back at once, it was retried as fast as the server answered — a
        // few thousand PATCHes a second per Service while the API server
        // answered 429 or 500. Unless something new came in meanwhile, as
        // observe() and set() promise outside a write.
        if ((ok || fresh) && this.needsWrite(key)) {
          this.cancelRetry(key);
          this.queue.add(key);
        }
        this.pump();
      });
    }
  }

  /** false: the write failed and is tried again after a backoff. */
  private async write(key: string): Promise<boolean> {
    const d = this.desired.get(key);
    const svc = this.o.get(key);
    if (!d || !svc || !this.needsWrite(key)) return true;
    const baseRv = svc.metadata?.resourceVersion ?? '';
    try {
      await this.o.rest.send('PATCH', nsPath(svc.metadata!.namespace!, 'services', svc.metadata!.name!, 'status'), statusPatch(svc, d, new Date()), 'application/merge-patch+json', true);
      this.written++;
      this.failures.delete(key);
      if (d.release) this.forget(key);
      else this.lastWritten.set(key, { desired: d, baseRv });
      return true;
    } catch (e) {
      // 404: the Service is gone; the informer's delete (or its successor's add) settles it.
      if (httpStatus(e) !== 404) {
        this.failed++;
        if (!reportPermissionProblem(this.o.logger, e, `status of Service ${key}`)) this.o.logger.debug({ service: key, err: String(e) }, 'status write failed; retrying');
      }
      this.retryLater(key);
      return false;
    }
  }

  /** Tries `key` again after retryMs, doubling with each failure in a row up to maxRetryMs. */
  private retryLater(key: string): void {
    if (this.stopped || this.retryTimers.has(key)) return;
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const wait = Math.min(this.o.maxRetryMs, this.o.retryMs * 2 ** Math.min(n - 1, 30));
    const t = setTimeout(() => {
      this.retryTimers.delete(key);
      if (this.desired.has(key) && this.needsWrite(key)) this.enqueue(key);
      else this.failures.delete(key); // settled meanwhile (another writer, or the Service went)
    }, wait);
    this.retryTimers.set(key, t);
  }
}
