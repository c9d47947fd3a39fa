/**
 * In-memory storage with etcd-like resource versions: one global counter,
 * every write gets the next value, and a bounded history of changes lets
 * watches resume from a resourceVersion until it is compacted away.
 */
import type { Obj } from './tables.js';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  type: EventType;
  storage: string;
  rv: number;
  object: Obj;
  /** The object before this change (MODIFIED only) — lets selector-filtered watches emit ADDED/DELETED on transitions. */
  prev?: Obj;
}

export type Listener = (e: StoreEvent) => void;

export function keyOf(namespace: string | undefined, name: string): string {
  return `${namespace ?? ''}/${name}`;
}

export class Store {
  private rvCounter: number;
  private readonly buckets = new Map<string, Map<string, Obj>>();
  private history: StoreEvent[] = [];
  /** Events with rv ≤ this are gone: a watch starting before it gets 410 Gone. */
  private compacted: number;
  private readonly listeners = new Set<Listener>();

  constructor(private readonly maxHistory: number, startRv = 1) {
    this.rvCounter = startRv;
    this.compacted = startRv;
  }

  get resourceVersion(): number {
    return this.rvCounter;
  }

  get compactedRevision(): number {
    return this.compacted;
  }

  private bucket(storage: string): Map<string, Obj> {
    let b = this.buckets.get(storage);
    if (!b) {
      b = new Map();
      this.buckets.set(storage, b);
    }
    return b;
  }

  get(storage: string, namespace: string | undefined, name: string): Obj | undefined {
    return this.buckets.get(storage)?.get(keyOf(namespace, name));
  }

  /** Objects in key order (namespace, then name), as etcd returns them. */
  list(storage: string, namespace?: string): Obj[] {
    const b = this.buckets.get(storage);
    if (!b) return [];
    const keys = [...b.keys()].sort();
    const out: Obj[] = [];
    for (const k of keys) {
      const o = b.get(k)!;
      if (namespace === undefined || o.metadata.namespace === namespace) out.push(o);
    }
    return out;
  }

  count(storage: string): number {
    return this.buckets.get(storage)?.size ?? 0;
  }

  /** Stores a new object; the caller has filled everything but resourceVersion. */
  create(storage: string, obj: Obj): Obj {
    const stored = this.stamp(obj);
    this.bucket(storage).set(keyOf(stored.metadata.namespace, stored.metadata.name), stored);
    this.emit({ type: 'ADDED', storage, rv: this.rvCounter, object: stored });
    return stored;
  }

  update(storage: string, obj: Obj): Obj {
    const key = keyOf(obj.metadata.namespace, obj.metadata.name);
    const prev = this.bucket(storage).get(key);
    const stored = this.stamp(obj);
    this.bucket(storage).set(key, stored);
    this.emit({ type: 'MODIFIED', storage, rv: this.rvCounter, object: stored, ...(prev ? { prev } : {}) });
    return stored;
  }

  /** Removes an object; the DELETED event carries it with the deletion's resourceVersion. */
  delete(storage: string, namespace: string | undefined, name: string): Obj | undefined {
    const key = keyOf(namespace, name);
    const prev = this.buckets.get(storage)?.get(key);
    if (!prev) return undefined;
    this.buckets.get(storage)!.delete(key);
    const gone = this.stamp(prev);
    this.emit({ type: 'DELETED', storage, rv: this.rvCounter, object: gone });
    return gone;
  }

  private stamp(obj: Obj): Obj {
    this.rvCounter++;
    return { ...obj, metadata: { ...obj.metadata, resourceVersion: String(this.rvCounter) } };
  }

  private emit(e: StoreEvent): void {
    this.history.push(e);
    if (this.history.length > this.maxHistory * 1.25) {
      const drop = this.history.length - this.maxHistory;
      this.compacted = this.history[drop - 1]!.rv;
      this.history = this.history.slice(drop);
    }
    for (const l of [...this.listeners]) l(e);
  }

  /**
   * Events after `rv`, or 'expired' when some of them were compacted away.
   */
  since(rv: number): StoreEvent[] | 'expired' {
    if (rv < this.compacted) return 'expired';
    // History is sorted by rv: binary search for the first event after rv.
    let lo = 0;
    let hi = this.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.history[mid]!.rv <= rv) lo = mid + 1;
      else hi = mid;
    }
    return this.history.slice(lo);
  }

  /**
   * Forgets all history, as if etcd had been compacted after unrelated writes:
   * any resourceVersion a client holds now is too old to watch from.
   */
  compact(): void {
    this.rvCounter++;
    this.compacted = this.rvCounter;
    this.history = [];
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}
