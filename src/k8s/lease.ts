// Leader election over a coordination.k8s.io/v1 Lease: one edge allocates
// addresses and writes Service status, every edge reads it.
//
// Safety does not depend on synchronised clocks: a follower takes over only
// after it has itself watched the Lease record stay unchanged for a whole
// lease duration (time measured on its own clock from the moment it first
// saw that record), and a leader stops acting as one when it has not renewed
// successfully for 2/3 of the duration, so the two windows never overlap
// while clocks run at the same rate. Every write carries the resourceVersion
// it was based on; a 409 means someone else won and we re-read.
//
// Identity: the holder is the edge's name; the Lease also records the
// holder's instance (its machine). A Lease naming this edge but written by
// another instance is someone else's (two machines with one name): it is
// not taken over before it expires, so only one of them leads.
//
// Takeover time: a graceful stop releases the Lease (empty holder) and the
// next poll of another edge takes it (≤ one retry interval, D/5). After a
// crash the takeover happens D after the follower last saw the record
// change, i.e. between D and D + D/5 after the last renewal.
import { microTime, type Lease, type LeaseApi } from './lease-api.js';
import type { Logger } from '../log/logger.js';
import { reportPermissionProblem } from './rest.js';
import { RefusalReporter, httpStatus } from './refusal.js';

export interface LeaderElectorOptions {
  api: LeaseApi;
  namespace: string;
  name: string;
  identity: string;
  /** This process's machine; the Lease records it beside the holder's name. */
  instance?: string;
  /** Seconds; fractions allowed for tests (the Lease object stores ≥ 1 s). */
  leaseDurationSeconds: number;
  logger: Logger;
  onStartedLeading?: () => void;
  onStoppedLeading?: () => void;
  /** Wall clock (ms) for the renewTime written; injected by tests (then it drives `elapsed` too). */
  now?: () => number;
  /**
   * A clock for intervals (ms): how long since a renewal was sent, since the
   * holder's record last changed. Monotonic by default (performance.now()):
   * a step of the wall clock — NTP setting an appliance's clock at boot, or
   * correcting a fast one — must neither expire a live leader's Lease nor
   * keep a dead one's for as long as the step.
   */
  elapsed?: () => number;
}

export const HOLDER_INSTANCE_ANNOTATION = 'edgelb.io/holder-instance';
/**
 * spec.leaseTransitions is an int32: the API server takes 2^31-1 and
 * refuses one more (400), so counting on from a Lease left at the maximum
 * (by someone with access to Leases, or a buggy writer) made every takeover
 * fail, and no edge could ever lead again. The count stays at the maximum.
 */
const MAX_TRANSITIONS = 2 ** 31 - 1;

export class LeaderElector {
  private readonly o: LeaderElectorOptions;
  private readonly now: () => number;
  private readonly elapsed: () => number;
  private readonly durationMs: number;
  private readonly refusal: RefusalReporter;
  private leading = false;
  private lastRenewMs = 0;
  private observed: { key: string; sinceMs: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  /** Steps down when no renewal succeeded within the window, even while a renewal request is still unanswered. */
  private watchdog: NodeJS.Timeout | null = null;
  private currentHolder = '';
  private seen = false;
  transitions = 0;

  constructor(o: LeaderElectorOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
    this.elapsed = o.elapsed ?? o.now ?? (() => performance.now());
    this.durationMs = o.leaseDurationSeconds * 1000;
    this.refusal = new RefusalReporter(o.logger, `leader Lease ${o.namespace}/${o.name}`);
  }

  get retryMs(): number {
    return Math.max(50, Math.floor(this.durationMs / 5));
  }

  /** How long a leader acts as one after its last renewal was sent (2/3 D). */
  private get windowMs(): number {
    return (this.durationMs * 2) / 3;
  }

  isLeader(): boolean {
    return this.leading;
  }

  /** Last holder seen in the Lease ('' = none). */
  holder(): string {
    return this.currentHolder;
  }

  /** Whether the Lease has been read (or created) at least once, i.e. holder() means something. */
  hasRead(): boolean {
    return this.seen;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stops; a leader releases the Lease so another edge takes over at once. */
  async stop(release = true): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.loop;
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = null;
    if (this.leading && release) {
      try {
        const lease = await this.o.api.readNamespacedLease({ name: this.o.name, namespace: this.o.namespace });
        const by = lease.metadata?.annotations?.[HOLDER_INSTANCE_ANNOTATION];
        if (lease.spec?.holderIdentity === this.o.identity && (by === undefined || this.o.instance === undefined || by === this.o.instance)) {
          lease.spec.holderIdentity = '';
          lease.spec.renewTime = microTime(this.now());
          await this.o.api.replaceNamespacedLease({ name: this.o.name, namespace: this.o.namespace, body: lease });
        }
      } catch (e) {
        this.o.logger.warn({ err: String(e) }, 'could not release leader lease');
      }
    }
    this.setLeading(false);
  }

  private schedule(ms: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.loop = this.tick().finally(() => this.schedule(this.retryMs));
    }, ms);
  }

  private setLeading(v: boolean): void {
    if (v === this.leading) return;
    this.leading = v;
    if (v) {
      this.transitions++;
      this.o.logger.info({ lease: `${this.o.namespace}/${this.o.name}` }, 'became leader');
      this.o.onStartedLeading?.();
    } else {
      this.o.logger.info({ lease: `${this.o.namespace}/${this.o.name}` }, 'stopped leading');
      this.o.onStoppedLeading?.();
    }
  }

  /** One acquire/renew attempt; the timer loop calls it every D/5 (tests drive it with a fake clock). */
  async step(): Promise<void> {
    await this.tick();
  }

  private async tick(): Promise<void> {
    // A write lands no earlier than it was sent, and followers count from
    // when they see it: counted from the answer (which may come late), the
    // leader's window could outlast theirs.
    const sent = this.elapsed();
    try {
      const ok = await this.tryAcquireOrRenew();
      if (ok) this.renewed(sent);
      else if (this.leading) this.setLeading(false);
    } catch (e) {
      if (!reportPermissionProblem(this.o.logger, e, `leader Lease ${this.o.namespace}/${this.o.name}`) && !this.refusal.report(e)) this.o.logger.debug({ err: String(e) }, 'lease request failed');
    }
    this.checkWindow();
  }

  /** The Lease was written (created, acquired or renewed) by a request sent at `sent`. */
  private renewed(sent: number): void {
    this.lastRenewMs = sent;
    // Answered too late to lead on: the next round renews.
    if (this.elapsed() - sent > this.windowMs) return;
    this.setLeading(true);
    if (!this.running) return; // step(): tests drive the clock by hand
    this.armWatchdog();
  }

  /**
   * Wakes when the window since the last renewal ends, on the interval
   * clock. Node counts timers in whole milliseconds (the delay and the
   * loop's clock truncated), so a timer can fire up to ~1 ms before its
   * delay has passed on performance.now() (311 of 400 short timers did
   * here, by up to 1.2 ms): a watchdog that wakes before the window is over
   * sleeps again for what is left, rather than leaving a leader whose
   * renewal hangs in charge with no check to come.
   */
  private armWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      this.watchdog = null;
      this.checkWindow();
      if (this.leading && this.running) this.armWatchdog();
    }, Math.max(0, this.lastRenewMs + this.windowMs - this.elapsed()) + 1);
  }

  /**
   * A leader that has not renewed for 2/3 D stops acting as one. Also run
   * by the watchdog: checked only after each request, a renewal hanging on
   * a connection that answers nothing (a blackholed path to the API server,
   * given up by the client after 30 s of silence) kept this edge leading
   * while a follower took over after D.
   */
  private checkWindow(): void {
    if (this.leading && this.elapsed() - this.lastRenewMs > this.windowMs) {
      this.o.logger.warn('could not renew leader lease in time');
      this.setLeading(false);
    }
  }

  private annotations(have: Record<string, string> | undefined): Record<string, string> | undefined {
    if (this.o.instance === undefined) return have;
    return { ...have, [HOLDER_INSTANCE_ANNOTATION]: this.o.instance };
  }

  private spec(transitions: number, acquired: string | undefined): Lease['spec'] {
    const now = microTime(this.now());
    return {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.max(1, Math.ceil(this.o.leaseDurationSeconds)),
      acquireTime: acquired ?? now,
      renewTime: now,
      leaseTransitions: transitions,
    };
  }

  /** true = we hold the Lease after this call (tick() then leads, if the answer came in time). */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const { api, name, namespace, identity } = this.o;
    let lease: Lease;
    try {
      lease = await api.readNamespacedLease({ name, namespace });
    } catch (e) {
      if (httpStatus(e) !== 404) throw e;
      try {
        await api.createNamespacedLease({ namespace, body: { metadata: { name, namespace, annotations: this.annotations(undefined) }, spec: this.spec(0, undefined) } });
        this.refusal.succeeded();
        this.currentHolder = identity;
        this.seen = true;
        return true;
      } catch (ce) {
        if (httpStatus(ce) === 409) return false;
        throw ce;
      }
    }
    const holder = lease.spec?.holderIdentity ?? '';
    this.currentHolder = holder;
    this.seen = true;
    const key = `${holder}|${String(lease.spec?.renewTime?.valueOf() ?? '')}|${lease.metadata?.resourceVersion ?? ''}`;
    if (this.observed?.key !== key) this.observed = { key, sinceMs: this.elapsed() };
    // Written by this edge's name from another machine: not ours (an older Lease without the record is).
    const by = lease.metadata?.annotations?.[HOLDER_INSTANCE_ANNOTATION];
    const mine = holder === identity && (by === undefined || this.o.instance === undefined || by === this.o.instance);
    const expired = holder === '' || this.elapsed() - this.observed.sinceMs >= this.durationMs;
    if (!mine && !expired) return false;
    const transitions = Math.min(MAX_TRANSITIONS, (lease.spec?.leaseTransitions ?? 0) + (mine ? 0 : 1));
    const body: Lease = { ...lease, metadata: { ...lease.metadata, annotations: this.annotations(lease.metadata?.annotations) }, spec: this.spec(transitions, mine ? lease.spec?.acquireTime : undefined) };
    try {
      await api.replaceNamespacedLease({ name, namespace, body });
    } catch (e) {
      if (httpStatus(e) === 409) return false;
      throw e;
    }
    this.refusal.succeeded();
    this.currentHolder = identity;
    return true;
  }
}
