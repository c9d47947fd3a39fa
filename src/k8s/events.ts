// Kubernetes Events about Services and other objects (events.k8s.io/v1), deduplicated: a
// repeat of the same (object, type, reason, message) becomes the existing
// Event's `series` (a PATCH of series.count and lastObservedTime: the first
// repeat at once, later ones at most every SERIES_REFRESH_MS) instead of
// another Event — as client-go's recorder does. `kubectl describe` shows them (the API serves
// the same objects as core/v1 Events).
// Writes go through a small bounded queue so a burst (10 000 allocations)
// does not starve status writes; if the queue is full, new Events are
// dropped and counted (Events are best effort in Kubernetes too).
import { createHash } from 'node:crypto';
import type { V1Service } from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import { reportPermissionProblem, type RestClient } from './rest.js';

export type EventType = 'Normal' | 'Warning';

/** What an Event is about. */
export interface ObjectRef {
  apiVersion: string;
  kind: string;
  namespace: string;
  name: string;
  uid?: string;
}

interface Entry {
  name: string | null;
  namespace: string;
  count: number;
  posted: number;
  inflight: boolean;
  /** A series count has been written: later repeats wait for the next refresh. */
  series: boolean;
}

/**
 * How often an Event's further repeats are written once its series has
 * begun. Every recomputation of a Service records its standing problems
 * again: one PATCH per repeat made endpoint churn, and every edge's BGP
 * flap (all Services recomputed), a PATCH per problem and Service each
 * time. Like client-go's recorder, the first repeat is written at once and
 * the count then catches up periodically.
 */
export const SERIES_REFRESH_MS = 60_000;

export interface EventRecorderOptions {
  rest: RestClient;
  component: string;
  host: string;
  logger: Logger;
  concurrency?: number;
  maxQueue?: number;
  /** Remembered (object, reason, message) triples; oldest forgotten first. */
  maxEntries?: number;
  /** While this returns true no write starts (status writes go first). */
  holdWhile?: () => boolean;
  /** After an Event's first repeat is written, further repeats are written at most this often (ms); default SERIES_REFRESH_MS. */
  seriesRefreshMs?: number;
}

/**
 * A write waiting in the queue, as data: an Event to create, or an Entry
 * whose count must be patched. 10 000 allocations queue 10 000 Events while
 * status writes go first: each holds only its record, its object reference
 * and its note (~280 bytes at 10 000 Services, Dec 2026) — the Draft or the
 * Entry itself, told apart by `ref`, not wrapped in one more object each.
 */
type Job = Draft | Entry;

interface Draft {
  e: Entry;
  key: string;
  ref: ObjectRef;
  type: EventType;
  reason: string;
  note: string;
}

export class EventRecorder {
  private readonly o: Required<Pick<EventRecorderOptions, 'concurrency' | 'maxQueue' | 'maxEntries' | 'seriesRefreshMs'>> & EventRecorderOptions;
  private readonly entries = new Map<string, Entry>();
  private readonly queue: Job[] = [];
  /** Entries whose series count moved since it was last written, written at the next refresh. */
  private readonly due = new Set<Entry>();
  private refreshTimer: NodeJS.Timeout | null = null;
  private active = 0;
  private seq = 0;
  created = 0;
  patched = 0;
  dropped = 0;
  failed = 0;

  constructor(o: EventRecorderOptions) {
    this.o = { concurrency: 4, maxQueue: 20000, maxEntries: 50000, seriesRefreshMs: SERIES_REFRESH_MS, ...o };
  }

  /** Drops queued writes (the recorder is being shut down). */
  stop(): void {
    this.queue.length = 0;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
    this.due.clear();
  }

  /** Outstanding writes (queued + in flight). */
  pending(): number {
    return this.queue.length + this.active;
  }

  record(svc: V1Service, type: EventType, reason: string, message: string): void {
    const md = svc.metadata ?? {};
    this.recordFor({ apiVersion: 'v1', kind: 'Service', namespace: md.namespace ?? 'default', name: md.name ?? 'unknown', uid: md.uid }, type, reason, message);
  }

  /** An Event about any namespaced object (e.g. this edge's presence Lease). */
  recordFor(ref: ObjectRef, type: EventType, reason: string, message: string): void {
    const namespace = ref.namespace;
    // Remembered by digest: kept as text (uid, reason, a message naming
    // addresses, built of concatenated pieces) the keys and the messages
    // they held on to were ~3 MB of the agent's heap at 10 000 Services.
    const key = createHash('sha1').update(`${ref.uid ?? `${ref.kind}/${namespace}/${ref.name}`}|${type}|${reason}|${message}`).digest('base64');
    const existing = this.entries.get(key);
    if (existing) {
      existing.count++;
      this.countMoved(existing);
      return;
    }
    if (this.entries.size >= this.o.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    const e: Entry = { name: null, namespace, count: 1, posted: 0, inflight: true, series: false };
    this.entries.set(key, e);
    // The body is built when the write happens: a backlog of thousands of
    // Events then costs a small record each, not a request body each.
    this.enqueue({ e, key, ref, type, reason, note: truncateNote(message) });
  }

  private async create(d: Draft): Promise<void> {
    const { e, key, ref, type, reason } = d;
    const namespace = ref.namespace;
    const name = eventName(ref.name, `${Date.now().toString(16)}${(this.seq++ % 4096).toString(16).padStart(3, '0')}`);
    const body = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name, namespace },
      eventTime: microTime(),
      regarding: { apiVersion: ref.apiVersion, kind: ref.kind, namespace, name: ref.name, uid: ref.uid },
      reason,
      // What was done (or failed) about the object; our reasons name it.
      action: reason,
      note: d.note,
      type,
      reportingController: this.o.component,
      reportingInstance: reportingInstance(this.o.host),
    };
    try {
      await this.o.rest.send('POST', eventsPath(namespace), body, 'application/json', true);
      this.created++;
      e.name = name;
      e.posted = 1;
    } catch (err) {
      this.failed++;
      this.entries.delete(key);
      if (!reportPermissionProblem(this.o.logger, err, `Event ${reason}`)) this.o.logger.debug({ err: String(err), reason }, 'event not recorded');
    } finally {
      e.inflight = false;
    }
    this.countMoved(e);
  }

  /** An Entry's count moved past what was written: its first repeat is written now, later ones at the next refresh. */
  private countMoved(e: Entry): void {
    if (e.name === null || e.inflight || e.count === e.posted) return;
    if (!e.series) {
      this.enqueue(e);
      return;
    }
    this.due.add(e);
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      const due = [...this.due];
      this.due.clear();
      for (const d of due) this.enqueue(d);
    }, this.o.seriesRefreshMs);
    this.refreshTimer.unref();
  }

  private async patch(e: Entry): Promise<void> {
    if (e.inflight || e.name === null || e.count === e.posted) return;
    e.inflight = true;
    const count = e.count;
    try {
      await this.o.rest.send('PATCH', eventsPath(e.namespace, e.name), { series: { count, lastObservedTime: microTime() } }, 'application/merge-patch+json', true);
      this.patched++;
      e.posted = count;
      e.series = true;
    } catch (err) {
      this.failed++;
      this.o.logger.debug({ err: String(err) }, 'event count not updated');
    } finally {
      e.inflight = false;
    }
    // Repeats while it was on its way (or a failed write's count) go with the next refresh.
    if (e.count !== e.posted) {
      e.series = true;
      this.countMoved(e);
    }
  }

  private enqueue(job: Job): void {
    if (this.queue.length >= this.o.maxQueue) {
      this.dropped++;
      return;
    }
    this.queue.push(job);
    this.pump();
  }

  private holdTimer: NodeJS.Timeout | null = null;

  private pump(): void {
    if (this.queue.length > 0 && this.o.holdWhile?.()) {
      if (!this.holdTimer) {
        this.holdTimer = setTimeout(() => {
          this.holdTimer = null;
          this.pump();
        }, 100);
        this.holdTimer.unref();
      }
      return;
    }
    while (this.active < this.o.concurrency && this.queue.length > 0) {
      const job = this.queue.shift()!;
      this.active++;
      void ('ref' in job ? this.create(job) : this.patch(job)).finally(() => {
        this.active--;
        this.pump();
      });
    }
  }
}

function eventsPath(namespace: string, name?: string): string {
  return `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/events${name === undefined ? '' : `/${encodeURIComponent(name)}`}`;
}

/** RFC 3339 with microseconds: the MicroTime events.k8s.io/v1 requires for eventTime and series. */
function microTime(d = new Date()): string {
  return d.toISOString().replace(/Z$/, '000Z');
}

/** Longest object name the API server takes (a DNS subdomain). */
const MAX_NAME = 253;
/** Longest reportingInstance (and reportingController) events.k8s.io/v1 takes. */
const MAX_INSTANCE = 128;

/**
 * "<object name>.<unique suffix>", the object's name cut so the whole fits
 * 253 characters and still ends in a letter or digit: an edge's presence
 * Lease can have a 253-character name, and every Event about it was refused.
 */
export function eventName(object: string, suffix: string): string {
  const room = MAX_NAME - suffix.length - 1;
  const base = object.length <= room ? object : object.slice(0, room).replace(/[^a-z0-9]+$/, '');
  return `${base}.${suffix}`;
}

/**
 * The edge's name as an Event's reportingInstance: node.name may have 253
 * characters, the API server takes 128 (every Event of such an edge was
 * refused). A longer one keeps its start and ends in a digest of the whole,
 * so two long names that differ only at the end stay apart.
 */
export function reportingInstance(host: string): string {
  if (host.length <= MAX_INSTANCE) return host;
  const digest = createHash('sha1').update(host).digest('hex').slice(0, 8);
  return `${host.slice(0, MAX_INSTANCE - digest.length - 1)}-${digest}`;
}

/** The API server rejects a note over 1 KiB; keep its start, cut on a character boundary. */
export function truncateNote(note: string, maxBytes = 1024): string {
  if (Buffer.byteLength(note) <= maxBytes) return note;
  let out = note.slice(0, maxBytes);
  while (Buffer.byteLength(`${out}…`) > maxBytes) out = out.slice(0, -1);
  return `${out}…`;
}
