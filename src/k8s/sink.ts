// What the controller feeds: the sink (in the agent, the edge datapath and
// BGP). Changes, not the whole set — the controller diffs per frontend and
// the sink keeps its own state — keyed by the model's frontendKey.
import type { DesiredService, DesiredVip, FrontendRejection } from '../model/types.js';
import type { HeldFrontend } from './held-allocations.js';

/** Used and total per resource (ring slots, backend ids, service ids…). */
export type SinkCapacity = Record<string, { used: number; total: number }>;

/** Receives the desired state; calls are serialised (the next waits for the previous). */
export interface DesiredStateSink {
  /**
   * Programs frontends added or changed. Returns those it cannot serve, each
   * with a reason; a rejected frontend is not served by the sink afterwards
   * (also not in an older shape), and the rest of the call is applied.
   */
  upsert(services: DesiredService[]): FrontendRejection[] | void | Promise<FrontendRejection[] | void>;
  /** Removes frontends by frontendKey; unknown keys are ignored. */
  remove(keys: string[]): void | Promise<void>;
  /** The complete set of VIPs to advertise (only those with a ready, accepted frontend). */
  applyVips(vips: DesiredVip[]): void | Promise<void>;
  /**
   * The frontends the sink holds, e.g. adopted from pinned maps after a
   * restart. Read once the whole cluster has been computed after start:
   * those nobody wants any more are removed then, and only then.
   */
  keys?(): Iterable<string>;
  /**
   * The frontends the sink adopted (pinned maps) that no upsert has claimed
   * since, with their backends' addresses: where an allocating edge killed
   * before its status writes landed finds the addresses it gave out
   * (held-allocations.ts).
   */
  adoptedFrontends?(): HeldFrontend[];
  /** Capacity figures: a frontend rejected for lack of space is retried when free space grows. */
  capacity?(): SinkCapacity;
}

/** Free amount per resource, in a fixed order. */
export function freeSpace(c: SinkCapacity | undefined): number[] {
  if (!c) return [];
  return Object.keys(c)
    .sort()
    .map((k) => c[k]!.total - c[k]!.used);
}

/** Whether any resource has more room in `now` than in `then` (a frontend rejected at `then` may fit). */
export function moreRoom(then: readonly number[], now: readonly number[]): boolean {
  return now.some((n, i) => n > (then[i] ?? -Infinity));
}
