// The JSON the agent's control socket serves; the CLI renders it.

export interface PeerView {
  address: string;
  asn: number;
  state: string;
  /** Seconds since the session came up; 0 when down. */
  uptimeSeconds: number;
  bfd: string | null;
  routesSent: number;
}

export interface RouteView {
  prefix: string;
  peer: string;
  nextHop: string;
  asPath: string;
  communities: string[];
  largeCommunities: string[];
  med: number | null;
  localPref: number | null;
}

export interface BackendView {
  ip: string;
  port: number;
  node: string;
  nodeIp: string;
  state: string;
  weight: number;
  packets: number;
  bytes: number;
}

export interface ServiceView {
  frontend: string;
  service: string;
  mode: string;
  dispatch: string;
  backends: BackendView[];
  packets: number;
  bytes: number;
}

export interface ComponentHealth {
  ok: boolean;
  detail: string;
}

export interface AgentStatus {
  node: string;
  version: string;
  configFile: string;
  configHash: string;
  uptimeSeconds: number;
  ready: boolean;
  problems: string[];
  drain: 'active' | 'draining' | 'drained';
  components: Record<string, ComponentHealth>;
  datapath: {
    mode: string;
    dispatch: string;
    xdp: { interface: string; mode: string; attached: boolean }[];
    maglevTableSize: number;
    pinned: string | null;
    paths: { nodeIp: string; dispatch: string; reason: string }[];
    services: number;
    backends: number;
    /** Datapath capacity (null before the datapath is loaded). */
    capacity: {
      ringSlots: { used: number; total: number };
      backendIds: { used: number; total: number };
      serviceIds: { used: number; total: number };
      maxPortsPerService: number;
    } | null;
  };
  bgp: { gobgpd: string; peers: PeerView[]; vipsAnnounced: number };
  kubernetes: {
    connected: boolean;
    leader: boolean;
    watchRestarts: number;
    services: number;
    endpoints: number;
    /** Frontends this edge does not serve, by reason (Warning Events and the Advertised condition name each). */
    rejected: Record<string, number>;
    /** Another machine presents this edge's node.name (its instance id), or null. */
    duplicateName: string | null;
  };
}
