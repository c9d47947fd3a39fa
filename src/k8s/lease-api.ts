// coordination.k8s.io/v1 Leases over the agent's RestClient: the five calls
// leader election and edge presence make, with the argument shapes they
// have always used.
import { nsPathIn, type RestClient } from './rest.js';

export interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    /** MicroTime: RFC 3339 with microseconds (microTime()). */
    acquireTime?: string;
    renewTime?: string;
    leaseTransitions?: number;
  };
}

export interface LeaseApi {
  readNamespacedLease(p: { name: string; namespace: string }): Promise<Lease>;
  createNamespacedLease(p: { namespace: string; body: Lease }): Promise<Lease>;
  replaceNamespacedLease(p: { name: string; namespace: string; body: Lease }): Promise<Lease>;
  deleteNamespacedLease(p: { name: string; namespace: string }): Promise<unknown>;
  listNamespacedLease(p: { namespace: string; labelSelector?: string }): Promise<{ items: Lease[] }>;
}

const GROUP = '/apis/coordination.k8s.io/v1';

/** A MicroTime as the API server writes it: 2026-01-02T03:04:05.678000Z. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export function leaseApi(rest: RestClient): LeaseApi {
  const path = (namespace: string, name?: string): string => nsPathIn(GROUP, namespace, 'leases', name);
  const typed = (body: Lease): Lease => ({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', ...body });
  return {
    readNamespacedLease: ({ name, namespace }) => rest.get<Lease>(path(namespace, name)),
    createNamespacedLease: async ({ namespace, body }) => (await rest.send('POST', path(namespace), typed(body))) as Lease,
    replaceNamespacedLease: async ({ name, namespace, body }) => (await rest.send('PUT', path(namespace, name), typed(body))) as Lease,
    deleteNamespacedLease: ({ name, namespace }) => rest.send('DELETE', path(namespace, name), undefined),
    listNamespacedLease: ({ namespace, labelSelector }) =>
      rest.get<{ items: Lease[] }>(`${path(namespace)}${labelSelector ? `?labelSelector=${encodeURIComponent(labelSelector)}` : ''}`).then((r) => ({ items: r?.items ?? [] })),
  };
}
