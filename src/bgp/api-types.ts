// gobgpd's API as this agent uses it: message shapes (proto-loader's JSON
// mapping: keepCase, enums and longs as strings) and constants. Kept apart
// from the gRPC client so that code building paths and policies does not
// load gRPC and protobufjs (the agent loads those off its start-up path).
export const DEFAULT_PROTO_DIR = '/usr/share/gocode/src/github.com/osrg/gobgp/api';

/** A google.protobuf.Any as proto-loader's JSON mapping presents it. */
export interface AnyMsg {
  '@type': string;
  [field: string]: unknown;
}

export interface ApiFamily {
  afi: 'AFI_IP' | 'AFI_IP6';
  safi: 'SAFI_UNICAST';
}

export const FAMILY_V4: ApiFamily = { afi: 'AFI_IP', safi: 'SAFI_UNICAST' };
export const FAMILY_V6: ApiFamily = { afi: 'AFI_IP6', safi: 'SAFI_UNICAST' };

export interface ApiPath {
  nlri: AnyMsg;
  pattrs: AnyMsg[];
  family: ApiFamily;
  uuid?: Buffer | Uint8Array | string;
  best?: boolean;
  is_withdraw?: boolean;
  neighbor_ip?: string;
  source_asn?: number;
  age?: { seconds: string; nanos: number } | null;
}

export interface ApiDestination {
  prefix: string;
  paths: ApiPath[];
}

export interface ApiGlobal {
  asn: number;
  router_id: string;
  listen_port: number;
  listen_addresses: string[];
}

export interface ApiTimestamp {
  seconds: string;
  nanos: number;
}

/** The subset of apipb.Peer we read and write. Fields absent on write take gobgpd's defaults. */
export interface ApiPeer {
  conf: {
    neighbor_address: string;
    peer_asn: number;
    local_asn?: number;
    auth_password?: string;
    description?: string;
    admin_down?: boolean;
  };
  ebgp_multihop?: { enabled: boolean; multihop_ttl: number };
  timers?: {
    config?: { connect_retry?: string | number; hold_time?: string | number; keepalive_interval?: string | number; idle_hold_time_after_reset?: string | number };
    state?: { uptime?: ApiTimestamp | null; downtime?: ApiTimestamp | null; negotiated_hold_time?: string } | null;
  };
  transport?: { local_address?: string; passive_mode?: boolean; remote_port?: number; local_port?: number };
  graceful_restart?: { enabled: boolean; restart_time: number };
  afi_safis?: {
    config: { family: ApiFamily; enabled: boolean };
    mp_graceful_restart?: { config: { enabled: boolean } };
    state?: { family?: ApiFamily; received?: string; accepted?: string; advertised?: string } | null;
  }[];
  state?: {
    session_state?: string;
    admin_state?: string;
    neighbor_address?: string;
    peer_asn?: number;
    router_id?: string;
    messages?: { received?: { update?: string; total?: string }; sent?: { update?: string; total?: string } } | null;
  } | null;
}

export interface ApiDefinedSet {
  defined_type: 'PREFIX' | 'NEIGHBOR' | 'COMMUNITY' | 'LARGE_COMMUNITY';
  name: string;
  list?: string[];
  prefixes?: { ip_prefix: string; mask_length_min: number; mask_length_max: number }[];
}

export interface ApiMatchSet {
  type: 'ANY' | 'ALL' | 'INVERT';
  name: string;
}

export interface ApiStatement {
  name: string;
  conditions?: {
    neighbor_set?: ApiMatchSet;
    prefix_set?: ApiMatchSet;
    large_community_set?: ApiMatchSet;
    route_type?: 'ROUTE_TYPE_NONE' | 'ROUTE_TYPE_INTERNAL' | 'ROUTE_TYPE_EXTERNAL' | 'ROUTE_TYPE_LOCAL';
  };
  actions?: {
    route_action?: 'NONE' | 'ACCEPT' | 'REJECT';
    large_community?: { type: 'ADD' | 'REMOVE' | 'REPLACE'; communities: string[] };
  };
}

export interface ApiPolicy {
  name: string;
  statements: ApiStatement[];
}

export interface ApiPolicyAssignment {
  name: string;
  direction: 'IMPORT' | 'EXPORT';
  policies: { name: string }[];
  default_action: 'NONE' | 'ACCEPT' | 'REJECT';
}

export type TableType = 'GLOBAL' | 'LOCAL' | 'ADJ_IN' | 'ADJ_OUT';
