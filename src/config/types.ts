// The validated, normalised edgelb configuration. Every field is filled in
// (defaults applied) once `loadConfig` returns; the YAML keys are the same
// names, so docs and errors speak the operator's language.

export type DatapathMode = 'dsr' | 'snat' | 'hybrid';
export type Dispatch = 'ip-option' | 'ipip' | 'auto';
export type XdpMode = 'native' | 'generic' | 'off';
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export interface NodeConfig {
  /**
   * This edge's name: Lease identity, Event source. Defaults to "edge-" and
   * 12 hex digits derived from /etc/machine-id, or the firmware's system
   * UUID when the machine id is new at every boot (config/node-id.ts):
   * unique per machine, unlike a hostname every appliance of one image shares.
   */
  name: string;
  /** BGP router ID, an IPv4 address. */
  routerId: string;
  /** This edge's ASN (1–4294967294). */
  asn: number;
  /** Interface facing the upstream routers; the XDP program attaches here. */
  uplink: string;
  /** Source address for IPIP/SNAT; empty = first IPv4 address of `uplink`. */
  address: string;
  /** Source IPv6 address for IPv6-in-IPv6 and the edge's ICMPv6 errors; empty = first global IPv6 address of `uplink`. */
  address6: string;
}

export interface BfdConfig {
  enabled: boolean;
  minRxMs: number;
  minTxMs: number;
  multiplier: number;
}

export interface GracefulRestartConfig {
  enabled: boolean;
  /** Seconds (1–4095). */
  restartTime: number;
}

export interface PeerConfig {
  address: string;
  asn: number;
  /** Local address for the session; empty = chosen by the kernel. */
  localAddress: string;
  /** File holding the TCP-MD5 password; empty = no password. Must not be world-readable. */
  passwordFile: string;
  /** Seconds; 0 or ≥ 3. */
  holdTime: number;
  /** Seconds; < holdTime (or 0 when holdTime is 0). */
  keepalive: number;
  /** eBGP multihop TTL; 0 = directly connected. */
  multihop: number;
  passive: boolean;
  bfd: BfdConfig;
  gracefulRestart: GracefulRestartConfig;
}

export interface GobgpConfig {
  /** gobgpd's API socket (unix path). */
  socket: string;
  /** gobgpd binary the agent starts when `manage` is true. */
  binary: string;
  /** Directory holding gobgp.proto, attribute.proto, capability.proto. */
  protoDir: string;
  /** Start and supervise gobgpd from the agent (development/tests); on the appliance systemd does. */
  manage: boolean;
}

export interface BfddConfig {
  /** FRR bfdd binary. */
  binary: string;
  /** Where the agent writes bfdd's config, pid file and control socket. */
  runDir: string;
}

export interface BgpConfig {
  gobgp: GobgpConfig;
  bfdd: BfddConfig;
  peers: PeerConfig[];
  /** Seconds VIPs stay announced with GRACEFUL_SHUTDOWN before a drain withdraws them. */
  drainSeconds: number;
}

export interface AdvertiseConfig {
  /** Standard communities "ASN:VALUE" (each 0–65535). */
  communities: string[];
  /** Large communities "GLOBAL:LOCAL1:LOCAL2" (each 0–4294967295). */
  largeCommunities: string[];
  /** LOCAL_PREF (iBGP only); null = not set. */
  localPref: number | null;
  /** MULTI_EXIT_DISC; null = not set. */
  med: number | null;
  /** How many extra times to prepend our ASN (0–10). */
  asPathPrepend: number;
  /** Peer addresses to advertise to; empty = all peers. */
  peers: string[];
}

export interface PoolConfig {
  name: string;
  /** IPv4/IPv6 CIDRs the pool allocates from. */
  cidrs: string[];
  /** Namespaces allowed to use the pool; empty = all. */
  namespaces: string[];
  /** Service labels that must match (matchLabels); empty = all. */
  serviceSelector: Record<string, string>;
  /** Allocate from this pool to Services that did not ask for an address. */
  autoAssign: boolean;
  advertise: AdvertiseConfig;
}

export interface DatapathConfig {
  mode: DatapathMode;
  dispatch: Dispatch;
  xdp: XdpMode;
  /**
   * Serve IPv6 frontends (XDP or the tc fallback; the flow tables split 3:1 between the families, ≈ 29 MB more map memory).
   * auto: on when a pool has an IPv6 CIDR.
   */
  ipv6: 'auto' | 'on' | 'off';
  /** Upper bound of a service's Maglev table (a prime). */
  maglevTableSize: number;
  /** MTU of the path from the edge to the nodes. */
  mtu: number;
  /** bpffs directory where maps and programs are pinned. */
  pinPath: string;
  /**
   * IPIP outer sources: a CIDR whose host bits the datapath fills from the
   * flow hash, so the nodes' NICs spread tunnelled flows over their receive
   * queues (the nodes must accept IPIP from the whole block). Empty = the
   * edge address for every flow.
   */
  ipipSourceCidr: string;
  /** UDP port of the node-side probe responder (dispatch: auto). */
  probePort: number;
  /** Seconds between path probes to each node (dispatch: auto). */
  probeIntervalSeconds: number;
  /**
   * TCP/UDP ports one Service may have; a Service with more is not served
   * (Warning Event TooManyPorts), so one tenant cannot use up the backend
   * ids and ring slots every other Service shares.
   */
  maxPortsPerService: number;
  /**
   * Backend entries one Service may need — its TCP/UDP ports times its
   * endpoints, for each of its addresses; a Service with more is not served
   * (Warning Event TooManyBackends). Counted before anything is built: 20 000
   * endpoints on 10 ports took ~3 s of the event loop that renews the Lease,
   * and a quarter of the edge's 262 143 backend ids every Service shares.
   */
  maxBackendsPerService: number;
  /**
   * Source-range entries one Service may need — its TCP/UDP ports times its
   * loadBalancerSourceRanges of each address's family; a Service with more
   * is not served (Warning Event TooManySourceRanges). The edge's table of
   * them holds 65 536 per family for every frontend of every Service: 100
   * ports × 656 ranges filled it alone.
   */
  maxSourceRangesPerService: number;
  /**
   * Seconds a service's previous Maglev table is kept after its backend set
   * changed, so connections moved to an edge without their entry still reach
   * their backend (docs/second-chance.md). 0 = off.
   */
  secondChanceSeconds: number;
}

export interface KubernetesConfig {
  /** kubeconfig path; empty = in-cluster or $KUBECONFIG. */
  kubeconfig: string;
  /** spec.loadBalancerClass that edgelb owns. */
  loadBalancerClass: string;
  /** Also handle LoadBalancer Services with no class. */
  defaultClass: boolean;
  /** Lease used to elect the one edge that allocates addresses. */
  leaseName: string;
  leaseNamespace: string;
  leaseDurationSeconds: number;
}

export interface ControlConfig {
  /** Unix socket of the agent's local control API (mode 0600). */
  socket: string;
}

export interface MetricsConfig {
  /** "ADDRESS:PORT" for /metrics, /healthz, /readyz; empty = disabled. */
  listen: string;
}

export interface FirewallConfig {
  /** Generate and apply the host nftables ruleset. */
  enabled: boolean;
  /** CIDRs allowed to reach SSH (22); empty = SSH closed. */
  sshFrom: string[];
}

export interface EdgelbConfig {
  node: NodeConfig;
  bgp: BgpConfig;
  pools: PoolConfig[];
  datapath: DatapathConfig;
  kubernetes: KubernetesConfig;
  control: ControlConfig;
  metrics: MetricsConfig;
  firewall: FirewallConfig;
  log: { level: LogLevel };
}
