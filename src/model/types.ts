// Desired state: what the Kubernetes side computes (pure) and what the BGP
// and datapath reconcilers consume. One DesiredService per frontend
// (VIP, port, protocol) because that is the datapath's unit of lookup.
import type { AdvertiseConfig, DatapathMode, Dispatch } from '../config/types.js';
import type { L4Proto } from '../net/l4.js';

export type { L4Proto };

export type BackendState = 'active' | 'terminating';

export interface Backend {
  /** Pod IP. */
  ip: string;
  /** Pod (target) port. */
  port: number;
  /** Address of the Kubernetes node hosting the pod (dispatch target for IPIP / FIB). */
  nodeIp: string;
  nodeName: string;
  /** Relative Maglev weight (≥ 1). */
  weight: number;
  /** `terminating` = serving but not ready: keeps existing flows, gets no new ones. */
  state: BackendState;
}

export interface Frontend {
  vip: string;
  port: number;
  protocol: L4Proto;
}

export interface DesiredService {
  /** "namespace/name" of the Kubernetes Service. */
  service: string;
  frontend: Frontend;
  mode: DatapathMode;
  dispatch: Exclude<Dispatch, 'auto'> | 'auto';
  /** loadBalancerSourceRanges as CIDRs; empty = everyone. */
  sourceRanges: string[];
  /** sessionAffinity: ClientIP; timeoutSeconds 0 = off. */
  affinityTimeoutSeconds: number;
  backends: Backend[];
}

export interface DesiredVip {
  /** The address; advertised as /32 (IPv4) or /128 (IPv6). */
  address: string;
  pool: string;
  advertise: AdvertiseConfig;
  /** Services using the address ("namespace/name"). */
  services: string[];
}

export interface DesiredState {
  services: DesiredService[];
  /** Only VIPs that have at least one ready endpoint. */
  vips: DesiredVip[];
}

/**
 * Why a frontend is not served by this edge. The datapath's reasons:
 * UnsupportedFamily (an address family it does not forward yet),
 * InvalidFrontend (a value it cannot encode), OutOfServiceIds,
 * OutOfBackendIds, OutOfRingSlots, OutOfSourceRanges (capacity). The model's: TooManyPorts
 * (over the per-Service cap), TooManyBackends (ports × endpoints over the
 * per-Service cap), TooManySourceRanges (ports × source ranges over the
 * per-Service cap), SourceRangeFamily (source ranges, none of the
 * frontend's family), FrontendConflict (another Service holds it).
 */
export const REJECT_REASONS = [
  'UnsupportedFamily',
  'InvalidFrontend',
  'OutOfServiceIds',
  'OutOfBackendIds',
  'OutOfRingSlots',
  'OutOfSourceRanges',
  'TooManyPorts',
  'TooManyBackends',
  'TooManySourceRanges',
  'SourceRangeFamily',
  'FrontendConflict',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

/** Reasons that depend on what else is programmed: worth offering the frontend again once space was freed. */
export const CAPACITY_REASONS: ReadonlySet<RejectReason> = new Set<RejectReason>(['OutOfServiceIds', 'OutOfBackendIds', 'OutOfRingSlots', 'OutOfSourceRanges']);

/** A frontend that is not served, and why (the message names the Service and the frontend). */
export interface FrontendRejection {
  /** frontendKey(). */
  key: string;
  /** "namespace/name". */
  service: string;
  reason: RejectReason;
  message: string;
}
