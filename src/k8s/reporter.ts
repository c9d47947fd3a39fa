// Status reporting for one Service: the edgelb.io/Advertised condition
// (written by the allocating edge through the StatusWriter) and the Events
// that tell its story — allocated, advertised, withdrawn, and a Warning for
// every problem. The condition is a pure function of the Service's state
// and the edges that advertise; Events are deduplicated by the recorder.
import type { V1Service } from '@kubernetes/client-node';
import type { Assigned, FailureReason } from '../ipam/allocator.js';
import type { Problem } from '../model/desired.js';
import { ingressAddresses, serviceKey } from '../model/service.js';
import type { EventRecorder } from './events.js';
import type { ConditionState, StatusWriter } from './status.js';

/** What reporting reads of a Service's reconciled state; `advertised` is what the last report said. */
export interface ReportedState {
  addresses: Assigned[];
  /** Addresses advertised (a ready endpoint behind them). */
  ready: string[];
  failure: { reason: FailureReason; message: string } | null;
  advertised: boolean;
}

/** The condition for a Service in state `st` while `edges` advertise. */
export function advertisedCondition(st: Pick<ReportedState, 'addresses' | 'ready' | 'failure'>, edges: readonly string[]): ConditionState {
  if (st.failure) return { status: 'False', reason: st.failure.reason, message: st.failure.message };
  const ips = st.addresses.map((a) => a.ip).join(', ');
  if (st.addresses.length === 0) return { status: 'False', reason: 'Pending', message: 'no address allocated yet' };
  if (st.ready.length === 0) return { status: 'False', reason: 'NoReadyEndpoints', message: `${ips} allocated; not advertised: no ready endpoints` };
  if (edges.length === 0) return { status: 'False', reason: 'NoEdges', message: `${ips} allocated; no edge is advertising` };
  const names = edges.length > 5 ? `${edges.slice(0, 5).join(', ')}, …` : edges.join(', ');
  return { status: 'True', reason: 'Advertised', message: `${st.ready.join(', ')} advertised by ${edges.length} edge(s): ${names}` };
}

export class ServiceReporter {
  constructor(
    private readonly events: EventRecorder,
    private readonly edges: () => readonly string[],
  ) {}

  /** Sets the Service's status and records the Events for the step from `prev` to `st` (sets st.advertised). */
  report(status: StatusWriter, svc: V1Service, st: ReportedState, prev: ReportedState | undefined, problems: readonly Problem[]): void {
    const cond = advertisedCondition(st, this.edges());
    status.set(serviceKey(svc), { ingress: st.addresses.map((a) => a.ip), condition: cond });
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
