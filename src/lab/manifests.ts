// Kubernetes objects of the lab: a LoadBalancer Service whose selector is
// a membership label, and the Pod objects of the echo pods (labelled
// members of the Services they back). The real EndpointSlice controller
// makes the slices. Pure: the YAML goes to the real kubectl.
import { stringify } from 'yaml';
import { PRESTOP_ANNOTATION } from './kube/kubelet.js';
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
  /** spec.ipFamilyPolicy and ipFamilies (a dual-stack lab: RequireDualStack gets a VIP of each family). */
  ipFamilyPolicy?: 'SingleStack' | 'PreferDualStack' | 'RequireDualStack';
  ipFamilies?: ('IPv4' | 'IPv6')[];
}

/** A pod that backs a Service: the Service selects it by its membership label. */
export interface EndpointSpec {
  pod: Pick<PodPlan, 'name' | 'ip'>;
  node: string;
}

/** Every lab pod carries this label with its own name. */
export const POD_LABEL = 'lab.edgelb.io/pod';
/** Seconds a deleted pod keeps serving before its SIGTERM (a preStop sleep; see kube/kubelet.ts). */
export const PRESTOP_SECONDS = 1.5;

/** The label that makes a pod a backend of `service` (its selector). */
export function memberLabel(service: string): string {
  return `svc.lab.edgelb.io/${service}`;
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
      selector: { [memberLabel(s.name)]: 'true' },
      ports,
      ...(s.sessionAffinity ? { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: s.sessionAffinity.timeoutSeconds } } } : {}),
      ...(s.sourceRanges ? { loadBalancerSourceRanges: s.sourceRanges } : {}),
      ...(s.ipFamilyPolicy ? { ipFamilyPolicy: s.ipFamilyPolicy } : {}),
      ...(s.ipFamilies ? { ipFamilies: s.ipFamilies } : {}),
    },
  };
}

/**
 * The Pod object of a lab pod, bound to its node (no scheduler runs: the
 * lab decides placement). The lab's kubelet fills in its status; the
 * EndpointSlice controller makes slices of the ready ones.
 */
export function podObject(pod: Pick<PodPlan, 'name'>, node: string, plan: LabPlan, services: string[] = []): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: pod.name,
      namespace: 'default',
      labels: { [POD_LABEL]: pod.name, app: 'echo', ...Object.fromEntries(services.map((s) => [memberLabel(s), 'true'])) },
      annotations: { [PRESTOP_ANNOTATION]: String(PRESTOP_SECONDS) },
    },
    spec: {
      nodeName: node,
      terminationGracePeriodSeconds: 30,
      containers: [
        {
          name: 'echo',
          image: 'edgelb.local/lab-echo',
          ports: [
            { name: 'http', containerPort: plan.ports.http, protocol: 'TCP' },
            { name: 'udp', containerPort: plan.ports.udp, protocol: 'UDP' },
          ],
        },
      ],
    },
  };
}

/** Every pod of the lab as ready endpoints. */
export function allEndpoints(plan: LabPlan): EndpointSpec[] {
  return plan.nodes.flatMap((n) => n.pods.map((pod) => ({ pod, node: n.name })));
}

export function toYaml(objects: Record<string, unknown>[]): string {
  return objects.map((o) => stringify(o)).join('---\n');
}
