// Writes Service status (loadBalancer.ingress + our condition) from the
// allocating edge. Desired status is kept per Service and compared with
// what the informer last saw, so an unchanged cluster causes no writes
// (restart stability) and a burst of changes to one Service collapses into
// one write. Writes are JSON merge patches of the status subresource,
// carrying the other controllers' conditions over unchanged.
import { createHash } from 'node:crypto';
import type { V1Condition, V1Service } from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import { CONDITION_ADVERTISED, ingressAddresses } from '../model/service.js';
import { httpStatus } from './lease.js';
import { nsPath, reportPermissionProblem, type RestClient } from './rest.js';

export interface ConditionState {
  status: 'True' | 'False';
  reason: string;
  message: string;
}

export interface DesiredStatus {
  ingress: string[];
  /** null = remove our condition (the Service is no longer ours). */
  condition: ConditionState | null;
}

export interface StatusWriterOptions {
  rest: RestClient;
  logger: Logger;
  /** Current cached Service by "namespace/name". */
  get: (key: string) => V1Service | undefined;
  concurrency?: number;
  retryMs?: number;
}

export function ourCondition(svc: V1Service): V1Condition | undefined {
  return svc.status?.conditions?.find((c) => c.type === CONDITION_ADVERTISED);
}

/** Whether `svc`'s status already says what `d` says. */
export function statusMatches(svc: V1Service, d: DesiredStatus): boolean {
  const have = ingressAddresses(svc);
  if (have.length !== d.ingress.length || have.some((ip, i) => ip !== d.ingress[i])) return false;
  const c = ourCondition(svc);
  if (d.condition === null) return c === undefined;
  return c !== undefined && c.status === d.condition.status && c.reason === d.condition.reason && c.message === d.condition.message;
}

export function statusPatch(svc: V1Service, d: DesiredStatus, now: Date): Record<string, unknown> {
  const others = (svc.status?.conditions ?? []).filter((c) => c.type !== CONDITION_ADVERTISED);
  const conditions: unknown[] = others.map((c) => ({ ...c, lastTransitionTime: toIso(c.lastTransitionTime) }));
  if (d.condition !== null) {
    const prev = ourCondition(svc);
    const since = prev && prev.status === d.condition.status ? toIso(prev.lastTransitionTime) : now.toISOString();
    conditions.push({ type: CONDITION_ADVERTISED, ...d.condition, lastTransitionTime: since, observedGeneration: svc.metadata?.generation });
  }
  return { status: { loadBalancer: { ingress: d.ingress.map((ip) => ({ ip })) }, conditions } };
}

function digestOf(d: DesiredStatus): string {
  return createHash('sha1').update(JSON.stringify(d)).digest('base64');
}

function toIso(t: unknown): string {
  if (t instanceof Date) return t.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return typeof t === 'string' ? t : new Date().toISOString();
}

export class StatusWriter {
  private readonly o: Required<Pick<StatusWriterOptions, 'concurrency' | 'retryMs'>> & StatusWriterOptions;
  private readonly desired = new Map<string, DesiredStatus>();
  private readonly lastWritten = new Map<string, { digest: string; baseRv: string }>();
  private readonly queue = new Set<string>();
  private readonly inflight = new Set<string>();
  private readonly retryTimers = new Set<NodeJS.Timeout>();
  private stopped = false;
  written = 0;
  failed = 0;

  constructor(o: StatusWriterOptions) {
    this.o = { concurrency: 32, retryMs: 1000, ...o };
  }

  pending(): number {
    return this.queue.size + this.inflight.size;
  }

  /** Sets (or with null forgets) the status this Service should have and writes it if needed. */
  set(key: string, d: DesiredStatus | null): void {
    if (d === null) {
      this.desired.delete(key);
      this.lastWritten.delete(key);
      return;
    }
    this.desired.set(key, d);
    if (this.needsWrite(key)) {
      this.queue.add(key);
      this.pump();
    }
  }

  /** Re-checks one Service after the informer delivered a new version of it. */
  observe(key: string): void {
    if (this.desired.has(key) && this.needsWrite(key)) {
      this.queue.add(key);
      this.pump();
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.retryTimers) clearTimeout(t);
    this.retryTimers.clear();
    this.queue.clear();
  }

  private needsWrite(key: string): boolean {
    const d = this.desired.get(key);
    const svc = this.o.get(key);
    if (!d || !svc) return false;
    if (statusMatches(svc, d)) return false;
    // Written already and the informer has not caught up with our write yet.
    const lw = this.lastWritten.get(key);
    return !(lw && lw.digest === digestOf(d) && lw.baseRv === (svc.metadata?.resourceVersion ?? ''));
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
      void this.write(key).finally(() => {
        this.inflight.delete(key);
        if (this.needsWrite(key)) this.queue.add(key);
        this.pump();
      });
    }
  }

  private async write(key: string): Promise<void> {
    const d = this.desired.get(key);
    const svc = this.o.get(key);
    if (!d || !svc || !this.needsWrite(key)) return;
    const digest = digestOf(d);
    const baseRv = svc.metadata?.resourceVersion ?? '';
    try {
      await this.o.rest.send('PATCH', nsPath(svc.metadata!.namespace!, 'services', svc.metadata!.name!, 'status'), statusPatch(svc, d, new Date()), 'application/merge-patch+json', true);
      this.written++;
      this.lastWritten.set(key, { digest, baseRv });
    } catch (e) {
      if (httpStatus(e) === 404) return;
      this.failed++;
      if (!reportPermissionProblem(this.o.logger, e, `status of Service ${key}`)) this.o.logger.debug({ service: key, err: String(e) }, 'status write failed; retrying');
      if (this.stopped) return;
      const t = setTimeout(() => {
        this.retryTimers.delete(t);
        this.observe(key);
      }, this.o.retryMs);
      this.retryTimers.add(t);
    }
  }
}
