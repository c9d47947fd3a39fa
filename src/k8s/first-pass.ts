// The first pass after start (cold, or after a handover): until every
// Service known at the first sync has been computed once — by the
// allocating edge if that is this one — the VIP set the controller could
// compute is partial, so nothing is withdrawn or removed and status reports
// are held back. Then the complete VIP set is applied at once.
import type { Problem } from '../model/desired.js';
import type { SvcState } from './service-compute.js';

type Held = { prev: SvcState | undefined; problems: Problem[] };

/**
 * The report of a Service held with nothing to carry (no earlier state, no
 * problems) — nearly every one in a cold start: one shared record, not an
 * object and an empty array for each of 10 000 Services, all of them
 * surviving V8's young generation until the pass is complete.
 */
const NOTHING: Held = Object.freeze({ prev: undefined, problems: Object.freeze([]) as unknown as Problem[] });

export class FirstPass {
  /** Services not computed since the pass (re)started; null before the first sync. */
  private pending: Set<string> | null = null;
  private syncedAt = 0;
  private complete = false;
  /** Reports held back until the pass is complete (the first one's `prev` is kept). */
  private held = new Map<string, Held>();

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
    const p = had ? had.prev : prev;
    this.held.set(key, p === undefined && problems.length === 0 ? NOTHING : { prev: p, problems });
  }

  /** Marks the pass complete; returns the held reports. */
  finish(): Map<string, Held> {
    this.complete = true;
    // Handed over, not copied (a copy of 10 000 entries, made while the
    // reports are written, only added to what outlives a scavenge).
    const out = this.held;
    this.held = new Map();
    return out;
  }
}
