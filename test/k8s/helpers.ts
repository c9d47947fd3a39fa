// Shared pieces of the Kubernetes integration tests: a recording sink, a
// config, object builders and a bounded wait.
import type { PoolConfig } from '../../src/config/types.js';
import type { KubernetesControllerOptions } from '../../src/k8s/controller.js';
import type { DesiredStateSink } from '../../src/k8s/controller.js';
import { frontendKey } from '../../src/model/desired.js';
import type { DesiredService, DesiredVip, FrontendRejection } from '../../src/model/types.js';
import { EdgePlanner, type PlannerLimits } from '../../src/datapath/edge-plan.js';
import type { SinkCapacity } from '../../src/k8s/sink.js';

export type Obj = Record<string, unknown>;

export const advertise = { communities: [], largeCommunities: [], localPref: null, med: null, asPathPrepend: 0, peers: [] };

export function testConfig(pools: Partial<PoolConfig>[], leaseDurationSeconds = 1.5): KubernetesControllerOptions['config'] {
  return {
    kubernetes: {
      kubeconfig: '',
      loadBalancerClass: 'edgelb.io/dsr',
      defaultClass: false,
      leaseName: 'edgelb',
      leaseNamespace: 'kube-system',
      leaseDurationSeconds,
    },
    pools: pools.map((p, i) => ({ name: `pool${i}`, cidrs: [], namespaces: [], serviceSelector: {}, autoAssign: true, advertise, ...p })),
    datapath: { mode: 'dsr', dispatch: 'auto' },
  };
}

/**
 * A sink that records every call and keeps the frontends it was given.
 * `reject` decides per frontend (like a datapath that cannot serve it);
 * `held` pre-loads frontends as if adopted from pinned maps.
 */
export class RecordingSink implements DesiredStateSink {
  readonly frontends = new Map<string, DesiredService>();
  vips: DesiredVip[] = [];
  readonly calls: { changed: DesiredService[]; removed: string[] }[] = [];
  readonly vipCalls: DesiredVip[][] = [];
  readonly rejections: FrontendRejection[][] = [];
  removedTotal = 0;
  reject: ((d: DesiredService) => FrontendRejection | null) | null = null;

  constructor(held: Iterable<string> = []) {
    for (const k of held) this.frontends.set(k, { service: '', frontend: { vip: '', port: 0, protocol: 'TCP' }, mode: 'dsr', dispatch: 'auto', sourceRanges: [], affinityTimeoutSeconds: 0, backends: [] });
  }

  upsert(changed: DesiredService[]): FrontendRejection[] {
    this.calls.push({ changed, removed: [] });
    const out: FrontendRejection[] = [];
    for (const d of changed) {
      const key = frontendKey(d.frontend);
      const r = this.reject?.(d) ?? null;
      if (r) {
        out.push(r);
        this.frontends.delete(key);
      } else this.frontends.set(key, d);
    }
    if (out.length > 0) this.rejections.push(out);
    return out;
  }

  remove(removed: string[]): void {
    this.calls.push({ changed: [], removed });
    for (const k of removed) this.frontends.delete(k);
    this.removedTotal += removed.length;
  }

  applyVips(vips: DesiredVip[]): void {
    this.vips = vips;
    this.vipCalls.push(vips);
  }

  keys(): string[] {
    return [...this.frontends.keys()];
  }

  vipAddresses(): string[] {
    return this.vips.map((v) => v.address);
  }

  clearLog(): void {
    this.calls.length = 0;
    this.vipCalls.length = 0;
    this.rejections.length = 0;
    this.removedTotal = 0;
  }
}

/** A sink that decides like the edge datapath (its pure planner), without maps or root. */
export class PlannerSink extends RecordingSink {
  readonly planner: EdgePlanner;

  constructor(limits: Partial<PlannerLimits> = {}) {
    super();
    this.planner = new EdgePlanner({ ringSlots: 1 << 16, serviceIds: 1024, backendIds: 4096, maglevTableSize: 16381, autoDispatchDefault: 'ipip', ...limits });
  }

  override upsert(changed: DesiredService[]): FrontendRejection[] {
    const { plan, result } = this.planner.plan(changed);
    this.planner.commit(plan);
    const rejected = new Set(result.rejected.map((r) => r.key));
    this.reject = (d) => (rejected.has(frontendKey(d.frontend)) ? result.rejected.find((r) => r.key === frontendKey(d.frontend))! : null);
    return super.upsert(changed);
  }

  override remove(removed: string[]): void {
    const { plan } = this.planner.plan([], removed);
    this.planner.commit(plan);
    super.remove(removed);
  }

  capacity(): SinkCapacity {
    return this.planner.capacity();
  }
}

/**
 * A LoadBalancer Service selecting pods app=<name>; `selector: false` makes
 * it selector-less, for slices the test writes itself (endpointSlice()).
 */
export function service(ns: string, name: string, opts: { ports?: number[]; annotations?: Record<string, string>; cls?: string | null; loadBalancerIP?: string; selector?: boolean } = {}): Obj {
  const spec: Obj = {
    type: 'LoadBalancer',
    ports: (opts.ports ?? [80]).map((p) => ({ name: `p${p}`, port: p, protocol: 'TCP', targetPort: 8000 + p })),
    ...(opts.selector === false ? {} : { selector: { app: name } }),
  };
  if (opts.cls !== null) spec.loadBalancerClass = opts.cls ?? 'edgelb.io/dsr';
  if (opts.loadBalancerIP) spec.loadBalancerIP = opts.loadBalancerIP;
  return { apiVersion: 'v1', kind: 'Service', metadata: { namespace: ns, name, annotations: opts.annotations ?? {} }, spec };
}

/**
 * A hand-made EndpointSlice for a selector-less Service. Its managed-by
 * label is not the EndpointSlice controller's, so that controller leaves it
 * alone (as it does bench:k8s's).
 */
export function endpointSlice(ns: string, svc: string, name: string, eps: { ip: string; node: string; ready?: boolean; serving?: boolean; terminating?: boolean }[], ports: number[] = [80]): Obj {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { namespace: ns, name, labels: { 'kubernetes.io/service-name': svc, 'endpointslice.kubernetes.io/managed-by': 'edgelb-test' } },
    addressType: 'IPv4',
    ports: ports.map((p) => ({ name: `p${p}`, port: 8000 + p, protocol: 'TCP' })),
    endpoints: eps.map((e) => ({
      addresses: [e.ip],
      nodeName: e.node,
      conditions: { ready: e.ready ?? true, serving: e.serving ?? e.ready ?? true, terminating: e.terminating ?? false },
    })),
  };
}

export function node(name: string, ip: string): Obj {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { addresses: [{ type: 'InternalIP', address: ip }] } };
}

/** Polls `cond` every 20 ms; throws after `ms` naming what was awaited. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - t0;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function ingressOf(obj: Obj | undefined): string[] {
  const st = obj?.status as { loadBalancer?: { ingress?: { ip?: string }[] } } | undefined;
  return (st?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? '');
}

export function conditionOf(obj: Obj | undefined, type = 'edgelb.io/Advertised'): { status: string; reason: string; message: string } | undefined {
  const st = obj?.status as { conditions?: { type: string; status: string; reason: string; message: string }[] } | undefined;
  return st?.conditions?.find((c) => c.type === type);
}
