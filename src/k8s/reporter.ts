// Status reporting for one Service, from what actually happened (called
// after the sink accepted or rejected the round's changes): the
// edgelb.io/Advertised condition (written by the allocating edge through the
// StatusWriter) and the Events that tell its story — allocated, advertised,
// withdrawn, a Warning for every problem, and from every edge a Warning for
// each frontend that edge does not serve. The condition is a pure function
// of the Service's state and the edges that advertise; Events are
// deduplicated by the recorder.
import type { V1Service } from '@kubernetes/client-node';
import type { Assigned, FailureReason } from '../ipam/allocator.js';
import type { Problem } from '../model/desired.js';
import type { FrontendRejection } from '../model/types.js';
import { ingressAddresses, serviceKey, type AddressRefusal } from '../model/service.js';
import type { EventRecorder } from './events.js';
import type { ConditionState, StatusWriter } from './status.js';

/** What reporting reads of a Service's reconciled state; `advertised` is what the last report said. */
export interface ReportedState {
  addresses: Assigned[];
  /** Addresses advertised (a ready endpoint behind them). */
  ready: string[];
  /** Why it has no address: the allocator's failure, or a Service that must not hold one (addressRefusal). */
  failure: { reason: FailureReason | AddressRefusal['reason']; message: string } | null;
  /** Frontends of the Service this edge does not serve. */
  rejected: ReadonlyMap<string, { rejection: FrontendRejection }>;
  advertised: boolean;
}

/** The condition for a Service in state `st` while `edges` advertise. */
export function advertisedCondition(st: Pick<ReportedState, 'addresses' | 'ready' | 'failure' | 'rejected'>, edges: readonly string[]): ConditionState {
  if (st.failure) return { status: 'False', reason: st.failure.reason, message: st.failure.message };
  const ips = st.addresses.map((a) => a.ip).join(', ');
  if (st.addresses.length === 0) return { status: 'False', reason: 'Pending', message: 'no address allocated yet' };
  if (st.rejected.size > 0) {
    // Any frontend not served makes the Service not (fully) advertised; the first reason names it.
    const all = [...st.rejected.values()].map((r) => r.rejection).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const more = all.length > 1 ? ` (and ${all.length - 1} more frontend(s) not served)` : '';
    const served = st.ready.length > 0 ? `; ${st.ready.join(', ')} advertised for the other frontends` : '';
    return { status: 'False', reason: all[0]!.reason, message: `${all[0]!.message}${more}${served}` };
  }
  if (st.ready.length === 0) return { status: 'False', reason: 'NoReadyEndpoints', message: `${ips} allocated; not advertised: no ready endpoints` };
  if (edges.length === 0) return { status: 'False', reason: 'NoEdges', message: `${ips} allocated; no edge is advertising` };
  const names = edges.length > 5 ? `${edges.slice(0, 5).join(', ')}, …` : edges.join(', ');
  return { status: 'True', reason: 'Advertised', message: `${st.ready.join(', ')} advertised by ${edges.length} edge(s): ${names}` };
}

/** Rejections in `st` not reported in `prev` (or with another reason or message), by reason, each list sorted by frontend. */
export function newRejectionsByReason(st: Pick<ReportedState, 'rejected'>, prev: Pick<ReportedState, 'rejected'> | undefined): Map<string, FrontendRejection[]> {
  const out = new Map<string, FrontendRejection[]>();
  for (const [fk, r] of st.rejected) {
    const before = prev?.rejected.get(fk)?.rejection;
    if (before && before.reason === r.rejection.reason && before.message === r.rejection.message) continue;
    const list = out.get(r.rejection.reason);
    if (list) list.push(r.rejection);
    else out.set(r.rejection.reason, [r.rejection]);
  }
  for (const list of out.values()) list.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return out;
}

export class ServiceReporter {
  constructor(
    private readonly events: EventRecorder,
    private readonly edges: () => readonly string[],
    /** This edge's name, in the Warning Events about what it does not serve. */
    private readonly edge: string,
  ) {}

  /**
   * Every edge: a Warning for the frontends it newly does not serve (or for
   * a new reason) — one per reason, naming the first frontend and counting
   * the others. One per frontend let a Service with thousands of ports over
   * the cap queue thousands of Events and fill the recorder's queue, whose
   * overflow drops the other Services' Events.
   */
  reportRejections(svc: V1Service, st: Pick<ReportedState, 'rejected'>, prev: Pick<ReportedState, 'rejected'> | undefined): void {
    for (const [reason, fresh] of newRejectionsByReason(st, prev)) {
      const more = fresh.length > 1 ? ` (and ${fresh.length - 1} more frontend(s) for the same reason)` : '';
      this.events.record(svc, 'Warning', reason, `${fresh[0]!.message}${more} (not served by edge ${this.edge})`);
    }
  }

  /** Sets the Service's status and records the Events for the step from `prev` to `st` (sets st.advertised). */
  report(status: StatusWriter, svc: V1Service, st: ReportedState, prev: ReportedState | undefined, problems: readonly Problem[], key = serviceKey(svc)): void {
    const cond = advertisedCondition(st, this.edges());
    // `key`: the controller's own string for the Service (the status writer
    // keeps it as long as the Service's status; one made here was a copy).
    status.set(key, { uid: svc.metadata?.uid, ingress: st.addresses.map((a) => a.ip), condition: cond });
    const before = (prev?.addresses ?? []).map((a) => a.ip).join(',');
    const now = st.addresses.map((a) => a.ip).join(',');
    const advertised = cond.status === 'True';
    let announced = false;
    if (now !== '' && now !== before && now !== ingressAddresses(svc).join(',')) {
      // One Event for "allocated and advertised" when both happen at once.
      const assigned = `Assigned ${st.addresses.map((a) => `${a.ip} (pool ${a.pool})`).join(', ')}`;
      this.events.record(svc, 'Normal', 'IPAllocated', advertised ? `${assigned}; advertised` : assigned);
      announced = advertised;
    }
    if (st.failure) this.events.record(svc, 'Warning', st.failure.reason, st.failure.message);
    for (const p of problems) this.events.record(svc, 'Warning', p.reason, p.message);
    if (advertised && !st.advertised && !announced) this.events.record(svc, 'Normal', 'Advertised', `${st.ready.join(', ')} advertised`);
    if (!advertised && st.advertised) this.events.record(svc, 'Normal', 'Withdrawn', cond.message);
    st.advertised = advertised;
  }
}
