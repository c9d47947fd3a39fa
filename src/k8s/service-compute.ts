// One Service's desired frontends for a round: its addresses (from the
// allocator on the leading edge, from status elsewhere), the model's
// frontends and the model's own rejections, and the ownership claims.
// What the sink then does with them is filled in by the controller.
import { createHash } from 'node:crypto';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { poolForAddress, type Assigned, type IpAllocator } from '../ipam/allocator.js';
import { desiredForService, frontendKey, type DesiredConfig, type NodeAddresses, type Problem, type ServiceDesired } from '../model/desired.js';
import { addressRefusal, CONDITION_ADVERTISED, creationMs, ingressAddresses, ipRequestFor } from '../model/service.js';
import { canonicalIp, ipFamily } from '../net/ip.js';
import { CAPACITY_REASONS, type DesiredService, type FrontendRejection } from '../model/types.js';
import type { FrontendClaims } from './claims.js';
import { FAILURE_REASONS } from './cluster-cache.js';
import type { ReportedState } from './reporter.js';
import { moreRoom } from './sink.js';
import { SharedLists } from '../shared-lists.js';
import { FrontendDigests } from './frontend-digests.js';

export interface RejectedEntry {
  rejection: FrontendRejection;
  /** Digest of the frontend as rejected ('' = rejected by the model before any sink saw it). */
  digest: string;
  /** Sink free space when rejected for lack of it (retried when it grows); null for other reasons. */
  free: number[] | null;
}

/** A Service as reconciled: what the sink accepted and rejected, and what was reported. */
export interface SvcState extends ReportedState {
  /** The uid of the object computed (the cached Service's string): another one under the same key is a new Service. */
  uid: string | undefined;
  /** frontendKey → digest of the entry's JSON as the sink accepted it (the sink keeps the objects). */
  entries: FrontendDigests;
  /** NO_REJECTIONS until one is recorded (setRejected). */
  rejected: ReadonlyMap<string, RejectedEntry>;
  /** Nodes its endpoints name, used or not (a node's address change recomputes it); sorted, frozen, shared (sharedNodes). */
  nodes: readonly string[];
  backends: number;
}

/**
 * The rejections of a Service that has none — most of them: shared, never
 * written (setRejected replaces it). A Map of its own for each of 10 000
 * Services was ~1.5 MB of the agent's heap.
 */
const NO_REJECTIONS: ReadonlyMap<string, RejectedEntry> = new Map();

/** Records a frontend of `st` that is not served. */
export function setRejected(st: SvcState, fk: string, r: RejectedEntry): void {
  if (st.rejected === NO_REJECTIONS) st.rejected = new Map();
  (st.rejected as Map<string, RejectedEntry>).set(fk, r);
}

/** Whether a frontend of `st` was rejected for lack of space (it is offered again when the sink has more). */
export function waitsForRoom(st: Pick<SvcState, 'rejected'>): boolean {
  for (const r of st.rejected.values()) if (r.free !== null) return true;
  return false;
}

const nodeLists = new SharedLists<string>();
const NO_NODES: readonly string[] = Object.freeze([]);

/**
 * A Service's node names as one frozen list shared by every Service whose
 * endpoints name the same nodes (sorted: the order is not read) — many do,
 * a workload's pods spread over the same nodes. A list of its own was
 * ~110 bytes per Service of 10 endpoints, all of it outliving V8's young
 * generation. (SharedLists keeps at most 10 000 distinct lists; past that a
 * list is frozen but not shared.)
 */
function sharedNodes(nodes: ReadonlySet<string>): readonly string[] {
  if (nodes.size === 0) return NO_NODES;
  const list = [...nodes].sort();
  return nodeLists.get(list.join(' '), () => list);
}

/** One frontend as computed this round. */
export interface Item {
  ds: DesiredService;
  fk: string;
  digest: string;
  /** Has an active backend (its VIP may be advertised if the sink takes it). */
  active: boolean;
}

/** A Service as computed this round, before and after the sink's answer. */
export interface Candidate {
  svc: V1Service;
  st: SvcState;
  items: Item[];
  problems: Problem[];
}

export interface ComputeContext {
  config: DesiredConfig;
  /** The allocator on the leading edge, null elsewhere. */
  ipam: IpAllocator | null;
  claims: FrontendClaims;
  /** Whether a Service holding a claim is still reconciled. */
  live: (service: string) => boolean;
  slicesOf: (key: string) => V1EndpointSlice[];
  nodeAddrs: ReadonlyMap<string, NodeAddresses>;
}

function digest(ds: DesiredService): string {
  return createHash('sha1').update(JSON.stringify(ds)).digest('base64');
}

/** Allocation + desired frontends, claims and the model's rejections applied (entries empty: the sink answers later). */
export function computeService(ctx: ComputeContext, key: string, svc: V1Service, prev: SvcState | undefined): Candidate {
  const uid = svc.metadata?.uid;
  // Deleted and created again under its name: nothing of the old object's
  // state is this one's (a follower kept its addresses while the new
  // object's status was empty). The allocator sees the uid itself.
  const own = prev !== undefined && prev.uid === uid ? prev : undefined;
  let addresses: Assigned[];
  let failure: SvcState['failure'] = null;
  const refusal = addressRefusal(svc);
  if (refusal) {
    // Nothing it could be served at: it holds no address, requested or
    // not, and one it held is released (withdrawn and taken out of status
    // like any other). Every edge decides this from the spec alone, so a
    // follower does not keep the address while status still shows it.
    ctx.ipam?.release(key);
    addresses = [];
    failure = refusal;
  } else if (ctx.ipam) {
    // The key the controller already holds (its state's): the allocator keeps
    // it for as long as the address, and a copy made from the Service was
    // one more string per Service outliving V8's young generation.
    const r = ctx.ipam.assign(ipRequestFor(svc, key));
    if (r.ok) addresses = r.addresses;
    else {
      addresses = [];
      failure = { reason: r.reason, message: r.message };
    }
  } else {
    addresses = addressesFromStatus(ctx.config, svc, own);
  }
  const slices = ctx.slicesOf(key);
  // A refused Service has no frontend; its one Warning is the refusal (the
  // per-port ones, or an invalid annotation's, would only repeat that
  // nothing is served).
  const d: ServiceDesired = refusal ? { services: [], rejected: [], readyAddresses: [], problems: [] } : desiredForService(svc, slices, ctx.nodeAddrs, ctx.config, addresses);
  const st: SvcState = { uid, addresses, ready: [], failure, entries: new FrontendDigests(), rejected: NO_REJECTIONS, nodes: NO_NODES, backends: 0, advertised: own?.advertised ?? false };
  for (const r of d.rejected) setRejected(st, r.key, { rejection: r, digest: '', free: null });
  // Every node its endpoints name, used or not: an endpoint whose node has no
  // known address yet is left out, and must come in when that node gets one.
  const nodes = new Set<string>();
  for (const s of slices) for (const ep of s.endpoints ?? []) if (ep.nodeName) nodes.add(ep.nodeName);
  const items: Item[] = [];
  let lost = false;
  for (const ds of d.services) {
    const fk = frontendKey(ds.frontend);
    const owner = ctx.claims.claim(fk, key, ctx.live);
    if (owner !== null) {
      setRejected(st, fk, { rejection: { key: fk, service: key, reason: 'FrontendConflict', message: `${key} ${fk}: already served for ${owner}` }, digest: '', free: null });
      lost = true;
      continue;
    }
    st.backends += ds.backends.length;
    items.push({ ds, fk, digest: digest(ds), active: ds.backends.some((b) => b.state === 'active') });
  }
  ctx.claims.setLoser(key, lost);
  st.nodes = sharedNodes(nodes);
  return { svc, st, items, problems: d.problems };
}

/**
 * Addresses of a Service as the allocating edge published them. While
 * status shows none a pool admits and no failure is reported, a Service
 * keeps what this edge knew (e.g. it just lost leadership before its write
 * landed) — as far as the pools still admit it.
 */
function addressesFromStatus(config: DesiredConfig, svc: V1Service, prev: SvcState | undefined): Assigned[] {
  const ns = svc.metadata?.namespace ?? '';
  const labels = svc.metadata?.labels ?? {};
  const out: Assigned[] = [];
  for (const raw of ingressAddresses(svc)) {
    // Canonical, as the allocating edge writes it: the API server keeps any
    // spelling another writer used ("2001:DB8:0::5"), and a second spelling
    // of one address was a second frontend and VIP, past the conflict check.
    const ip = canonicalIp(raw);
    const p = ip === null ? null : poolForAddress(config.pools, ip, ns, labels);
    // One address per family, the first, as the allocating edge writes
    // them: another writer's status with a hundred pool addresses made this
    // edge program and advertise a hundred VIPs for one Service.
    if (p && ip !== null && !out.some((a) => ipFamily(a.ip) === ipFamily(ip))) out.push({ ip, pool: p.name });
  }
  if (out.length > 0 || !prev) return out;
  const c = svc.status?.conditions?.find((x) => x.type === CONDITION_ADVERTISED);
  if (c && FAILURE_REASONS.has(c.reason)) return out;
  // Checked against the pools as they are now: after a reload that took an
  // address's pool away (or no longer admits the Service), the address in
  // status was filtered out above, and falling back to what this edge held
  // kept it programmed and advertised for good — by an edge whose config
  // no longer has it, while an edge started with that config took nothing.
  return prev.addresses.flatMap((a) => {
    const p = poolForAddress(config.pools, a.ip, ns, labels);
    return p ? [{ ip: a.ip, pool: p.name }] : [];
  });
}

/**
 * Whether a Service's status shows exactly the addresses its computed state
 * holds — the echo of the allocating edge's own write, or a follower's
 * status catching up with what it already took from it. Computing it again
 * from that status gives the same result: the allocator keeps a Service's
 * addresses before it looks at status, and a follower reads back the
 * addresses it has (which passed its pools' filter); a failure reported in
 * the condition is read only when status has no address and the state has
 * none either.
 */
export function statusReflects(st: Pick<SvcState, 'addresses'>, svc: V1Service): boolean {
  const ingress = ingressAddresses(svc);
  return ingress.length === st.addresses.length && ingress.every((ip, i) => ip === st.addresses[i]!.ip);
}

/** Addresses with an accepted frontend that has an active backend: what this edge advertises for the Service. */
export function readyAddresses(c: Candidate): string[] {
  const ready = new Set<string>();
  for (const it of c.items) if (it.active && c.st.entries.has(it.fk)) ready.add(it.ds.frontend.vip);
  return c.st.addresses.map((a) => a.ip).filter((ip) => ready.has(ip));
}

/**
 * The frontends of a computed Service the sink must hear about. Unchanged
 * accepted ones are carried over as accepted; rejected ones that did not
 * change are carried over as rejected — unless they were rejected for lack
 * of space and the sink has more now.
 */
export function toOffer(c: Candidate, prev: SvcState | undefined, space: readonly number[]): Item[] {
  const out: Item[] = [];
  for (const item of c.items) {
    const was = prev?.rejected.get(item.fk);
    if (prev?.entries.get(item.fk) === item.digest) c.st.entries.set(item.fk, item.digest);
    else if (was && was.digest === item.digest && !(was.free && moreRoom(was.free, space))) setRejected(c.st, item.fk, was);
    else out.push(item);
  }
  return out;
}

/**
 * The sink's answer for one offered frontend. 'unknown' (the call failed):
 * what was accepted before stays (its VIP too) and the round is retried.
 */
export function recordOutcome(st: SvcState, item: Item, outcome: 'accepted' | 'unknown' | FrontendRejection, prev: SvcState | undefined, freeAfter: number[]): void {
  if (outcome === 'accepted') st.entries.set(item.fk, item.digest);
  else if (outcome === 'unknown') {
    const before = prev?.entries.get(item.fk);
    if (before !== undefined) st.entries.set(item.fk, before);
  } else setRejected(st, item.fk, { rejection: outcome, digest: item.digest, free: CAPACITY_REASONS.has(outcome.reason) ? freeAfter : null });
}

/** The leader's order: Services that already have an address claim it before new ones get one; oldest first. */
export function allocationOrder(keys: string[], get: (key: string) => V1Service | undefined): string[] {
  const rank = keys.map((k) => {
    const svc = get(k);
    return { k, has: svc && ingressAddresses(svc).length > 0 ? 0 : 1, t: svc ? creationMs(svc) : 0 };
  });
  rank.sort((a, b) => a.has - b.has || a.t - b.t || (a.k < b.k ? -1 : a.k > b.k ? 1 : 0));
  return rank.map((r) => r.k);
}
