// What edgelb reads from a Kubernetes Service: ownership, whether it may
// hold an address, the address request for IPAM, and what status says it
// already has. Pure.
import type { V1Service } from '@kubernetes/client-node';
import type { KubernetesConfig } from '../config/types.js';
import { canonicalIp, type Family } from '../net/ip.js';
import type { IpRequest } from '../ipam/allocator.js';
import type { L4Proto } from './types.js';

export const ANNOTATION_IPS = 'edgelb.io/loadBalancerIPs';
export const ANNOTATION_SHARED = 'edgelb.io/allow-shared-ip';
export const ANNOTATION_SHARED_NAMESPACES = 'edgelb.io/allow-shared-ip-namespaces';
export const ANNOTATION_MODE = 'edgelb.io/mode';
export const ANNOTATION_DISPATCH = 'edgelb.io/dispatch';
export const CONDITION_ADVERTISED = 'edgelb.io/Advertised';
/** Kubernetes' older spelling of spec.loadBalancerSourceRanges (comma-separated CIDRs). */
export const ANNOTATION_SOURCE_RANGES = 'service.beta.kubernetes.io/load-balancer-source-ranges';

/**
 * The source ranges a Service asks for, unparsed, and where they came from:
 * spec.loadBalancerSourceRanges when it has entries, else the annotation
 * (what kube-proxy and cloud providers do).
 */
export function requestedSourceRanges(svc: V1Service): { ranges: string[]; from: string } {
  const field = svc.spec?.loadBalancerSourceRanges ?? [];
  if (field.length > 0) return { ranges: field, from: 'loadBalancerSourceRanges' };
  const ann = svc.metadata?.annotations?.[ANNOTATION_SOURCE_RANGES];
  if (ann === undefined) return { ranges: [], from: 'loadBalancerSourceRanges' };
  return { ranges: ann.split(',').map((r) => r.trim()).filter((r) => r !== ''), from: ANNOTATION_SOURCE_RANGES };
}

/** "namespace/name". */
export function serviceKey(svc: V1Service): string {
  return `${svc.metadata?.namespace ?? ''}/${svc.metadata?.name ?? ''}`;
}

/**
 * edgelb handles type LoadBalancer Services whose loadBalancerClass is ours,
 * and class-less ones when configured as the cluster's default.
 */
export function isOurs(svc: V1Service, cfg: Pick<KubernetesConfig, 'loadBalancerClass' | 'defaultClass'>): boolean {
  if (svc.spec?.type !== 'LoadBalancer') return false;
  const cls = svc.spec.loadBalancerClass;
  if (cls === undefined || cls === null || cls === '') return cfg.defaultClass;
  return cls === cfg.loadBalancerClass;
}

/** Explicitly requested addresses: the annotation wins over the deprecated spec.loadBalancerIP. */
export function requestedAddresses(svc: V1Service): string[] {
  const ann = svc.metadata?.annotations?.[ANNOTATION_IPS];
  if (ann !== undefined && ann.trim() !== '') {
    return ann.split(',').map((s) => s.trim()).filter((s) => s !== '');
  }
  const lbip = svc.spec?.loadBalancerIP;
  return lbip ? [lbip.trim()] : [];
}

/** A Service port's protocol as the datapath serves it (TCP, UDP), or null for one it does not (SCTP). */
export function servedProtocol(protocol: string | undefined): L4Proto | null {
  const p = (protocol ?? 'TCP').toUpperCase();
  return p === 'TCP' || p === 'UDP' ? p : null;
}

/** Why a Service of ours takes no address at all. */
export interface AddressRefusal {
  reason: 'UnsupportedProtocol';
  message: string;
}

/**
 * Why a Service of ours must not hold an address, or null when it may: none
 * of its ports is TCP or UDP (SCTP only — a valid Service). Nothing would be
 * served at the address, yet it would come out of a pool (finite: a tenant
 * could drain one with such Services) and be announced. The same holds for
 * an address it requests (spec.loadBalancerIP, edgelb.io/loadBalancerIPs).
 * A Service with one TCP or UDP port among SCTP ones is served at that port.
 */
export function addressRefusal(svc: V1Service): AddressRefusal | null {
  const ports = svc.spec?.ports ?? [];
  if (ports.some((p) => servedProtocol(p.protocol) !== null)) return null;
  const listed = ports.slice(0, 5).map((p) => `${p.port}/${(p.protocol ?? 'TCP').toUpperCase()}`).join(', ');
  const shown = ports.length > 5 ? `${listed} and ${ports.length - 5} more` : listed;
  return {
    reason: 'UnsupportedProtocol',
    message: `${serviceKey(svc)} has no TCP or UDP port${shown ? ` (${shown})` : ''}; edgelb serves TCP and UDP only, so no address is allocated or announced`,
  };
}

/** Addresses in status.loadBalancer.ingress (ip entries only). */
export function ingressAddresses(svc: V1Service): string[] {
  return (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? '').filter((ip) => ip !== '');
}

/**
 * Families to allocate. RequireDualStack requires one address per listed
 * family; PreferDualStack requires the first and wants the others where a
 * pool of their family has room (the API server lists both families for it
 * only in a dual-stack cluster); SingleStack one address of the first. A
 * server that does not fill spec.ipFamilies gets one address of whatever
 * family the pools offer first.
 */
export function requestedFamilies(svc: V1Service): { required: Family[]; preferred: Family[] } {
  const fams = [...new Set((svc.spec?.ipFamilies ?? []).map((f) => (f === 'IPv6' ? 6 : 4) as Family))];
  if (fams.length === 0) return { required: [], preferred: [] };
  const policy = svc.spec?.ipFamilyPolicy;
  if (policy === 'RequireDualStack') return { required: fams, preferred: [] };
  return { required: [fams[0]!], preferred: policy === 'PreferDualStack' ? fams.slice(1) : [] };
}

/** edgelb.io/allow-shared-ip-namespaces: "*" or a comma-separated list of namespaces. */
export function shareWithNamespaces(svc: V1Service): readonly string[] | '*' {
  const raw = svc.metadata?.annotations?.[ANNOTATION_SHARED_NAMESPACES]?.trim() ?? '';
  if (raw === '*') return '*';
  return raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

export function ipRequestFor(svc: V1Service, key = serviceKey(svc)): IpRequest {
  const shared = svc.metadata?.annotations?.[ANNOTATION_SHARED]?.trim();
  return {
    key,
    uid: svc.metadata?.uid,
    namespace: svc.metadata?.namespace ?? '',
    labels: svc.metadata?.labels ?? {},
    requested: requestedAddresses(svc),
    sharingKey: shared ? shared : null,
    shareWithNamespaces: shareWithNamespaces(svc),
    ports: (svc.spec?.ports ?? []).map((p) => ({ port: p.port, protocol: p.protocol ?? 'TCP' })),
    families: requestedFamilies(svc).required,
    preferredFamilies: requestedFamilies(svc).preferred,
    current: ingressAddresses(svc),
  };
}

/**
 * The request that replays a Service's status into a fresh allocator: the
 * addresses status shows, as if requested — not what the spec or annotation
 * asks for now, and never a free address. A request edited in while no
 * edge led (an upgrade, a crash) has not been decided yet; replayed here,
 * oldest first, it took an address a younger Service shows in status, and
 * that Service was moved. Decided in a round instead, it meets every
 * address status already shows. (An address status shows that no longer
 * fits is not replayed; the Service's round decides it.)
 */
export function restoreRequestFor(svc: V1Service): IpRequest {
  // Canonical before de-duplicating: another writer may have put one address
  // in status in two spellings, which the allocator would refuse as two
  // addresses of one family. What is no address is left for it to refuse.
  return { ...ipRequestFor(svc), requested: [...new Set(ingressAddresses(svc).map((ip) => canonicalIp(ip) ?? ip))], replayed: true };
}

/** Milliseconds since epoch; list results carry Dates, watch events strings. */
export function creationMs(svc: V1Service): number {
  const t = svc.metadata?.creationTimestamp as unknown;
  if (t instanceof Date) return t.getTime();
  if (typeof t === 'string') return Date.parse(t) || 0;
  return 0;
}
