// Edge presence: how the allocating edge counts the edges advertising.
//
// Every edge keeps its own coordination.k8s.io/v1 Lease
// "<leaseName>-edge-<node>" (label edgelb.io/edge-presence=true) in the
// election namespace, renewed every D/3, with the annotation
// edgelb.io/advertising = "true" | "false" (false while the agent reports
// that it is not advertising, e.g. no BGP session is up). All edges compute
// the same desired state from the same API objects, so an edge that
// advertises at all advertises every ready VIP: one flag per edge is enough
// and costs one small write per edge per D/3, instead of a write per Service
// per edge. An edge counts as live while its Lease record has changed
// within 1.5 D of this edge's own clock (no cross-host clock comparison).
// An edge is read from its own Lease only (presenceLeaseName of its name),
// whatever other Leases carry the label and name it as their holder.
// A gracefully stopping edge deletes its Lease so the count drops at once.
// The set passed on is flap-damped (edge-flap-damping.ts, half-life 4 D):
// each change of it rewrites every Service's status.
//
// Addresses: the Lease also carries the edge's own addresses
// (edgelb.io/addresses, comma-separated), so every edge refuses the same
// endpoints — one naming an edge's address would send clients' packets back
// into an edge — and computes the same backends. Every presence Lease
// counts, live or not: an edge that crashed keeps its address, and an edge
// whose renewals lag must not change every edge's backends. This edge too
// counts the addresses another Lease gives under its name (all edges must
// refuse the same); its own Lease it knows better.
//
// Duplicate names: the Lease also carries the writer's instance (derived
// from its machine id). An edge that finds its own Lease rewritten since its
// last write, by another instance, shares its name with another machine —
// both would allocate as "the leader" and their counts would merge — and
// says so (duplicate()) until nobody else has written it for three renewals.
import { microTime, type Lease, type LeaseApi } from './lease-api.js';
import { canonicalIp } from '../net/ip.js';
import type { Logger } from '../log/logger.js';
import { RefusalReporter, httpStatus } from './refusal.js';
import { reportPermissionProblem } from './rest.js';
import { EdgeFlapDamper } from './edge-flap-damping.js';
import { EDGE_NAME } from '../config/node-id.js';

export const PRESENCE_LABEL = 'edgelb.io/edge-presence';
export const ADVERTISING_ANNOTATION = 'edgelb.io/advertising';
export const INSTANCE_ANNOTATION = 'edgelb.io/instance';
export const ADDRESSES_ANNOTATION = 'edgelb.io/addresses';
/** Addresses read from one edge's Lease: an edge has a few; a Lease written by someone else may hold any number. */
const MAX_EDGE_ADDRESSES = 64;

export interface PresenceOptions {
  api: LeaseApi;
  namespace: string;
  /** Prefix of the per-edge Lease names (the election Lease name). */
  prefix: string;
  nodeName: string;
  /** This process's machine (edges on one machine share it: a handover is no duplicate). */
  instance: string;
  leaseDurationSeconds: number;
  logger: Logger;
  onChange?: (edges: string[]) => void;
  /** This edge's own addresses (canonical), told to the others. */
  addresses?: readonly string[];
  /** The edges' addresses (addresses()) changed. */
  onAddresses?: () => void;
  /** Another instance writes this edge's Lease (called with its instance), or stopped (null). */
  onDuplicate?: (other: string | null) => void;
  /** Wall clock (ms) for the renewTime written; injected by tests (then it drives `elapsed` too). */
  now?: () => number;
  /** A monotonic clock (ms) for how long since an edge's record changed (lease.ts: a wall-clock step must not revive or kill edges). */
  elapsed?: () => number;
}

export function presenceLeaseName(prefix: string, node: string): string {
  const safe = node.toLowerCase().replace(/[^a-z0-9.-]/g, '-');
  return `${prefix}-edge-${safe}`.slice(0, 253);
}

export class EdgePresence {
  private readonly o: PresenceOptions;
  private readonly now: () => number;
  private readonly elapsed: () => number;
  private advertising = true;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  /** A renewal is under way; `again`: renew once more as soon as it ends (the flag changed meanwhile). */
  private ticking = false;
  private again = false;
  private readonly seen = new Map<string, { key: string; sinceMs: number; advertising: boolean }>();
  /** The damped set: what edges() reports and onChange is told. */
  private live: string[] = [];
  private readonly damper: EdgeFlapDamper;
  private readonly refusal: RefusalReporter;
  private heldLogged = '';
  private own: readonly string[];
  /** Other edges' addresses as their Leases give them (address → edge). */
  private others: ReadonlyMap<string, string> = new Map();
  private merged: ReadonlyMap<string, string> | null = null;
  /** resourceVersion of our last write; a different one on read means someone else wrote. */
  private lastWritten: string | null = null;
  private other: string | null = null;
  private quiet = 0;

  constructor(o: PresenceOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
    this.elapsed = o.elapsed ?? o.now ?? (() => performance.now());
    this.damper = new EdgeFlapDamper(4 * o.leaseDurationSeconds * 1000);
    this.own = o.addresses ?? [];
    this.refusal = new RefusalReporter(o.logger, `presence Lease ${o.namespace}/${presenceLeaseName(o.prefix, o.nodeName)}`);
  }

  private get name(): string {
    return presenceLeaseName(this.o.prefix, this.o.nodeName);
  }

  private get periodMs(): number {
    return Math.max(50, Math.floor((this.o.leaseDurationSeconds * 1000) / 3));
  }

  /** Another machine's instance that writes this edge's presence Lease, or null. */
  duplicate(): string | null {
    return this.other;
  }

  /** The presence Lease of this edge (namespace, name, uid once known). */
  leaseRef(): { namespace: string; name: string; uid?: string } {
    return { namespace: this.o.namespace, name: this.name, ...(this.uid ? { uid: this.uid } : {}) };
  }

  private uid: string | undefined;

  /** Edges (node names) live and advertising, sorted; a flapping edge as it was before it flapped (edge-flap-damping.ts). */
  edges(): string[] {
    return this.live;
  }

  /** Every edge's own addresses (canonical) → its name: this edge's and those the other edges' Leases name. */
  addresses(): ReadonlyMap<string, string> {
    if (this.merged === null) {
      const m = new Map(this.others);
      for (const ip of this.own) m.set(ip, this.o.nodeName);
      this.merged = m;
    }
    return this.merged;
  }

  /** This edge's addresses changed (a reload): written at the next renewal. */
  setAddresses(addresses: readonly string[]): void {
    if (addresses.join(',') === this.own.join(',')) return;
    this.own = addresses;
    this.merged = null;
    this.o.onAddresses?.();
    this.renewSoon();
  }

  setAdvertising(v: boolean): void {
    if (v === this.advertising) return;
    this.advertising = v;
    this.renewSoon();
  }

  /** Renews now (or right after the renewal under way). */
  private renewSoon(): void {
    if (!this.running) return;
    // A renewal under way schedules the next one when it ends: starting
    // another here left both rescheduling themselves, one more renewal loop
    // for every change that came while a renewal was in flight (a flapping
    // BGP session, a slow API server).
    if (this.ticking) {
      this.again = true;
      return;
    }
    if (this.timer) clearTimeout(this.timer);
    this.schedule(0);
  }

  /** Registers this edge (first renew + list) and keeps doing so every D/3. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    this.loop = this.renewal();
    await this.loop;
  }

  /** Stops renewing; `remove` deletes this edge's Lease so it stops counting at once. */
  async stop(remove = true): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.loop;
    if (!remove) return;
    try {
      await this.o.api.deleteNamespacedLease({ name: this.name, namespace: this.o.namespace });
    } catch (e) {
      if (httpStatus(e) !== 404) this.o.logger.debug({ err: String(e) }, 'could not delete presence lease');
    }
  }

  private schedule(ms: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.loop = this.renewal();
    }, ms);
  }

  /** One renewal, then the next one scheduled: the only place that schedules, so there is one loop. */
  private async renewal(): Promise<void> {
    this.ticking = true;
    try {
      await this.tick();
    } finally {
      this.ticking = false;
      const soon = this.again;
      this.again = false;
      this.schedule(soon ? 0 : this.periodMs);
    }
  }

  private async tick(): Promise<void> {
    try {
      await this.renew();
    } catch (e) {
      if (!reportPermissionProblem(this.o.logger, e, 'presence Lease') && !this.refusal.report(e)) this.o.logger.debug({ err: String(e) }, 'presence renew failed');
    }
    try {
      await this.refresh();
    } catch (e) {
      if (!reportPermissionProblem(this.o.logger, e, 'presence Leases')) this.o.logger.debug({ err: String(e) }, 'presence list failed');
    }
  }

  private async renew(): Promise<void> {
    const { api, namespace } = this.o;
    const name = this.name;
    const spec = {
      holderIdentity: this.o.nodeName,
      leaseDurationSeconds: Math.max(1, Math.ceil(this.o.leaseDurationSeconds)),
      renewTime: microTime(this.now()),
    };
    const annotations = { [ADVERTISING_ANNOTATION]: String(this.advertising), [INSTANCE_ANNOTATION]: this.o.instance, [ADDRESSES_ANNOTATION]: this.own.join(',') };
    let lease: Lease;
    try {
      lease = await api.readNamespacedLease({ name, namespace });
    } catch (e) {
      if (httpStatus(e) !== 404) throw e;
      const made = await api.createNamespacedLease({ namespace, body: { metadata: { name, namespace, labels: { [PRESENCE_LABEL]: 'true' }, annotations }, spec } });
      this.wrote(made);
      return;
    }
    this.checkWriter(lease);
    lease.metadata = { ...lease.metadata, annotations: { ...lease.metadata?.annotations, ...annotations } };
    lease.spec = { ...lease.spec, ...spec };
    this.wrote(await api.replaceNamespacedLease({ name, namespace, body: lease }));
  }

  private wrote(lease: Lease): void {
    this.refusal.succeeded();
    this.lastWritten = lease.metadata?.resourceVersion ?? null;
    this.uid = lease.metadata?.uid;
  }

  /** Was the Lease, as read now, written by another instance since our last write? */
  private checkWriter(lease: Lease): void {
    const by = lease.metadata?.annotations?.[INSTANCE_ANNOTATION];
    const foreign = this.lastWritten !== null && lease.metadata?.resourceVersion !== this.lastWritten && by !== undefined && by !== this.o.instance;
    if (foreign) {
      this.quiet = 0;
      if (this.other !== by) {
        this.other = by;
        this.o.logger.error({ edge: this.o.nodeName, other: by }, 'another machine presents this edge\'s name');
        this.o.onDuplicate?.(by);
      }
      return;
    }
    if (this.other !== null && ++this.quiet >= 3) {
      this.other = null;
      this.o.onDuplicate?.(null);
    }
  }

  /** Re-reads every edge's Lease and recomputes the live, advertising set. */
  async refresh(): Promise<string[]> {
    const list = await this.o.api.listNamespacedLease({ namespace: this.o.namespace, labelSelector: `${PRESENCE_LABEL}=true` });
    const now = this.elapsed();
    const present = new Set<string>();
    const others = new Map<string, string>();
    for (const l of list.items) {
      const edge = l.spec?.holderIdentity ?? '';
      // No edge has such a name (node.name's rule): whatever wrote it, its
      // Lease speaks for no edge. Counted, five holders of 300 000
      // characters put megabytes into every Service's condition message,
      // past what the API server stores.
      if (!EDGE_NAME.test(edge)) continue;
      // This edge's addresses are its own (setAddresses), not what a Lease says.
      if (l.metadata?.name !== this.name) for (const ip of leaseAddresses(l)) if (!others.has(ip)) others.set(ip, edge);
      // An edge is seen only through its own Lease, the one named after it.
      // The label selects any Lease someone labelled (another election's in
      // this namespace, a copy, one claiming this edge): read as the holder's,
      // one that says "not advertising" hid a live edge, and two for one
      // edge reset its record at every list in turn (their keys alternate),
      // so a crashed edge counted for good.
      if (l.metadata?.name !== presenceLeaseName(this.o.prefix, edge)) continue;
      present.add(edge);
      const key = `${String(l.spec?.renewTime?.valueOf() ?? '')}|${l.metadata?.resourceVersion ?? ''}`;
      const advertising = l.metadata?.annotations?.[ADVERTISING_ANNOTATION] !== 'false';
      const prev = this.seen.get(edge);
      if (prev?.key !== key) this.seen.set(edge, { key, sinceMs: now, advertising });
    }
    for (const e of [...this.seen.keys()]) if (!present.has(e)) this.seen.delete(e);
    if (!sameEntries(others, this.others)) {
      this.others = others;
      this.merged = null;
      this.o.onAddresses?.();
    }
    const limit = this.o.leaseDurationSeconds * 1500;
    const observed = [...this.seen].filter(([, s]) => s.advertising && now - s.sinceMs <= limit).map(([e]) => e);
    const live = this.damper.view(observed, now);
    const held = this.damper.held();
    const heldKey = held.join(',');
    if (heldKey !== this.heldLogged) {
      if (held.length > 0) this.o.logger.warn({ edges: held, observed: observed.sort() }, 'edges flapping: their changes are held back from Service conditions until they settle');
      else this.o.logger.info('no edge flapping any more: Service conditions follow the edges again');
      this.heldLogged = heldKey;
    }
    if (live.join(',') !== this.live.join(',')) {
      this.live = live;
      this.o.onChange?.(live);
    }
    return live;
  }
}

/** The addresses an edge's Lease names (canonical; at most MAX_EDGE_ADDRESSES, anything unparsable skipped). */
function leaseAddresses(l: Lease): string[] {
  const raw = l.metadata?.annotations?.[ADDRESSES_ANNOTATION] ?? '';
  const out: string[] = [];
  for (const part of raw.split(',', MAX_EDGE_ADDRESSES)) {
    const ip = canonicalIp(part.trim());
    if (ip !== null) out.push(ip);
  }
  return out;
}

function sameEntries(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
