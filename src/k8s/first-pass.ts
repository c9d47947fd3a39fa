// The first pass after start (cold, or after a handover): until every
// Service known at the first sync has been computed once — by the
// allocating edge if that is this one — the VIP set the controller could
// compute is partial, so nothing is withdrawn or removed and status reports
// are held back. Then the complete VIP set is applied at once.
import type { Problem } from '../model/desired.js';
import type { SvcState } from './service-compute.js';

export class FirstPass {
  /** Services not computed since the pass (re)started; null before the first sync. */
  private pending: Set<string> | null = null;
  private syncedAt = 0;
  private complete = false;
  /** Reports held back until the pass is complete (the first one's `prev` is kept). */
  private readonly held = new Map<string, { prev: SvcState | undefined; problems: Problem[] }>();

  get done(): boolean {
    return this.complete;
  }

  /** The informers have synced: every Service they hold must be computed once. Only the first call counts (and reads `keys`). */
  begin(keys: () => Iterable<string>, now = Date.now()): void {
    if (this.pending !== null) return;
    this.pending = new Set(keys());
    this.syncedAt = now;
  }

  /** This edge started to allocate before the pass was complete: compute everything again with the allocator. */
  restart(keys: Iterable<string>): void {
    if (this.complete || this.pending === null) return;
    this.pending = new Set(keys);
  }

  computed(keys: Iterable<string>): void {
    for (const k of keys) this.pending?.delete(k);
  }

  /** Waiting for the pass (work remains, or it waits to learn who allocates). */
  waiting(): boolean {
    return this.pending !== null && !this.complete;
  }

  /**
   * Every Service was computed and it is settled who allocates — or the
   * Lease could not be read for `patienceMs` (it must not hold the VIPs back for ever).
   */
  ready(leadershipSettled: boolean, patienceMs: number, now = Date.now()): boolean {
    if (this.complete || this.pending === null || this.pending.size > 0) return false;
    return leadershipSettled || now - this.syncedAt > patienceMs;
  }

  hold(key: string, prev: SvcState | undefined, problems: Problem[]): void {
    const had = this.held.get(key);
    this.held.set(key, { prev: had ? had.prev : prev, problems });
  }

  /** Marks the pass complete; returns the held reports. */
  finish(): Map<string, { prev: SvcState | undefined; problems: Problem[] }> {
    this.complete = true;
    const out = new Map(this.held);
    this.held.clear();
    return out;
  }
}
