// Kubernetes objects for lab services: a LoadBalancer Service and the
// EndpointSlice a controller would make for the lab's echo pods. Pure: the
// YAML goes to the real kubectl (`kubectl apply -f -`).
import { stringify } from 'yaml';
import type { LabPlan, PodPlan } from './topology.js';

export interface LabServiceSpec {
  name: string;
  namespace?: string;
  /** edgelb.io/* annotations (mode, dispatch, …). */
  annotations?: Record<string, string>;
  /** TCP 80 → http, UDP 9090 → udp by default. */
  tcpPort?: number;
  udpPort?: number | null;
  sessionAffinity?: { timeoutSeconds: number };
  sourceRanges?: string[];
}

export interface EndpointSpec {
  pod: Pick<PodPlan, 'name' | 'ip'>;
  node: string;
  /** ready (default), or terminating (serving, not ready). */
  state?: 'ready' | 'terminating';
}

export function serviceObject(plan: LabPlan, s: LabServiceSpec): Record<string, unknown> {
  const ports: Record<string, unknown>[] = [{ name: 'http', port: s.tcpPort ?? 80, targetPort: plan.ports.http, protocol: 'TCP' }];
  if (s.udpPort !== null) ports.push({ name: 'udp', port: s.udpPort ?? 9090, targetPort: plan.ports.udp, protocol: 'UDP' });
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: s.name, namespace: s.namespace ?? 'default', ...(s.annotations ? { annotations: s.annotations } : {}) },
    spec: {
      type: 'LoadBalancer',
      // The node agent (edgelb node run) only takes services of its class.
      loadBalancerClass: 'edgelb.io/dsr',
      selector: { app: s.name },
      ports,
      ...(s.sessionAffinity ? { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: s.sessionAffinity.timeoutSeconds } } } : {}),
      ...(s.sourceRanges ? { loadBalancerSourceRanges: s.sourceRanges } : {}),
    },
  };
}

export function endpointSliceObject(plan: LabPlan, s: LabServiceSpec, endpoints: EndpointSpec[], sliceName = `${s.name}-lab`): Record<string, unknown> {
  const ports: Record<string, unknown>[] = [{ name: 'http', port: plan.ports.http, protocol: 'TCP' }];
  if (s.udpPort !== null) ports.push({ name: 'udp', port: plan.ports.udp, protocol: 'UDP' });
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: sliceName, namespace: s.namespace ?? 'default', labels: { 'kubernetes.io/service-name': s.name, 'endpointslice.kubernetes.io/managed-by': 'edgelb-lab' } },
    addressType: 'IPv4',
    ports,
    endpoints: endpoints.map((e) => ({
      addresses: [e.pod.ip],
      nodeName: e.node,
      targetRef: { kind: 'Pod', name: e.pod.name, namespace: s.namespace ?? 'default' },
      conditions: e.state === 'terminating' ? { ready: false, serving: true, terminating: true } : { ready: true, serving: true, terminating: false },
    })),
  };
}

/** Every pod of the lab as ready endpoints. */
export function allEndpoints(plan: LabPlan): EndpointSpec[] {
  return plan.nodes.flatMap((n) => n.pods.map((pod) => ({ pod, node: n.name })));
}

export function toYaml(objects: Record<string, unknown>[]): string {
  return objects.map((o) => stringify(o)).join('---\n');
}
