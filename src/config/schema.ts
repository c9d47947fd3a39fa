// The convict schema of edgelb.yaml. Lists of objects (peers, pools) are
// validated element by element with their own schemas so that an error in
// peer 2 is reported as bgp.peers[2].field.
import { EDGE_NAME, defaultNodeName } from './node-id.js';
import * as f from './formats.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
const LB_CLASS = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

export const DEFAULT_CONFIG_PATH = '/etc/edgelb/edgelb.yaml';
/** The longest bgp.drainSeconds (`edgelb drain` waits that long for its answer). */
export const DRAIN_SECONDS_MAX = 3600;
export const DEFAULT_PROTO_DIR = '/usr/share/gocode/src/github.com/osrg/gobgp/api';

// Convict walks these plain objects; every leaf has doc, default, format.
export const rootSchema = {
  node: {
    name: {
      doc: "This edge's name (default: edge- and 12 hex digits derived from /etc/machine-id, or from the firmware's system UUID when the machine id is new at every boot)",
      default: defaultNodeName() || null,
      format: f.str({
        required: true,
        pattern: EDGE_NAME,
        what: 'a lowercase DNS name',
        whyRequired: 'this machine has no stable identity to derive a default from (/etc/machine-id is empty or new at every boot, and the firmware has no system UUID)',
      }),
    },
    routerId: { doc: 'BGP router ID (IPv4)', default: null, format: f.ipv4({ required: true }) },
    asn: { doc: "This edge's ASN", default: null, format: f.int(1, 4294967294, { required: true }) },
    uplink: { doc: 'Interface facing the routers', default: null, format: f.uplink },
    address: { doc: 'Source address for IPIP/SNAT (empty = first IPv4 of uplink)', default: '', format: f.ipv4({ optional: true }) },
    address6: { doc: 'Source IPv6 address for IPv6-in-IPv6 and ICMPv6 errors (empty = first global IPv6 of uplink)', default: '', format: f.ipv6({ optional: true }) },
  },
  bgp: {
    gobgp: {
      socket: { doc: "gobgpd's API unix socket", default: '/run/edgelb/gobgp.sock', format: f.absolutePath() },
      binary: { doc: 'gobgpd binary', default: '/usr/bin/gobgpd', format: f.absolutePath() },
      protoDir: { doc: "Directory with GoBGP's .proto files", default: DEFAULT_PROTO_DIR, format: f.absolutePath() },
      manage: { doc: 'Start and supervise gobgpd from the agent', default: false, format: f.bool },
    },
    bfdd: {
      binary: { doc: "FRR's bfdd binary", default: '/usr/lib/frr/bfdd', format: f.absolutePath() },
      runDir: { doc: "bfdd's config, pid and sockets", default: '/run/edgelb/bfdd', format: f.absolutePath() },
    },
    peers: { doc: 'BGP peers (upstream routers)', default: [] as unknown[], format: f.listOf(() => null) },
    drainSeconds: { doc: 'Seconds to keep VIPs with GRACEFUL_SHUTDOWN before withdrawing', default: 30, format: f.int(0, DRAIN_SECONDS_MAX) },
  },
  pools: { doc: 'Address pools', default: [] as unknown[], format: f.listOf(() => null) },
  datapath: {
    mode: { doc: 'dsr | snat | hybrid', default: 'dsr', format: f.oneOf(['dsr', 'snat', 'hybrid']) },
    dispatch: { doc: 'ip-option | ipip | auto', default: 'ip-option', format: f.oneOf(['ip-option', 'ipip', 'auto']) },
    xdp: { doc: 'native | generic | off', default: 'native', format: f.oneOf(['native', 'generic', 'off']) },
    ipv6: { doc: 'auto | on | off: serve IPv6 frontends (XDP or the tc fallback; the flow tables split 3:1 between IPv4 and IPv6, ≈ 29 MB more map memory). auto = on when a pool has an IPv6 CIDR', default: 'auto', format: f.oneOf(['auto', 'on', 'off']) },
    maglevTableSize: { doc: 'Maximum Maglev table size per service (prime)', default: 16381, format: f.maglevSize },
    mtu: { doc: 'MTU towards the nodes', default: 1500, format: f.int(576, 9216) },
    pinPath: { doc: 'bpffs pin directory', default: '/sys/fs/bpf/edgelb', format: f.absolutePath() },
    ipipSourceCidr: { doc: 'IPIP outer source block, spread by flow hash ("" = the edge address)', default: '', format: f.ipv4CidrOptional },
    probePort: { doc: 'UDP port of the node probe responder (dispatch: auto)', default: 4790, format: f.int(1, 65535) },
    probeIntervalSeconds: { doc: 'Seconds between path probes (dispatch: auto)', default: 5, format: f.int(1, 3600) },
    maxPortsPerService: { doc: 'TCP/UDP ports a Service may have; more are not served (Event TooManyPorts)', default: 100, format: f.int(1, 65535) },
    maxSourceRangesPerService: { doc: 'Source-range entries (TCP/UDP ports × loadBalancerSourceRanges, per address) a Service may need; more are not served (Event TooManySourceRanges)', default: 16384, format: f.int(1, 65536) },
    maxBackendsPerService: { doc: 'Backend entries (TCP/UDP ports × endpoints, per address) a Service may need; more are not served (Event TooManyBackends)', default: 65536, format: f.int(1, 262143) },
    secondChanceSeconds: { doc: "Seconds a service's previous Maglev table is kept after a backend change (docs/second-chance.md; 0 = off)", default: 600, format: f.int(0, 86400) },
  },
  kubernetes: {
    kubeconfig: { doc: 'kubeconfig path (empty = in-cluster / $KUBECONFIG)', default: '', format: f.absolutePath({ optional: true }) },
    loadBalancerClass: { doc: 'spec.loadBalancerClass owned by edgelb', default: 'edgelb.io/dsr', format: f.str({ required: true, pattern: LB_CLASS, what: 'a qualified name such as edgelb.io/dsr' }) },
    defaultClass: { doc: 'Also handle LoadBalancer Services without a class', default: false, format: f.bool },
    leaseName: { doc: 'Lease electing the allocating edge', default: 'edgelb-ipam', format: f.str({ required: true, pattern: /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, what: 'a lowercase DNS name' }) },
    leaseNamespace: { doc: 'Namespace of the Lease', default: 'kube-system', format: f.str({ required: true, pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, what: 'a namespace name' }) },
    leaseDurationSeconds: { doc: 'Lease duration', default: 15, format: f.int(2, 300) },
  },
  control: {
    socket: { doc: "Agent's local control API socket", default: '/run/edgelb/control.sock', format: f.absolutePath() },
  },
  metrics: {
    listen: { doc: 'ADDRESS:PORT for /metrics, /healthz, /readyz (empty = off)', default: '127.0.0.1:9472', format: f.listenAddress },
  },
  firewall: {
    enabled: { doc: 'Apply the host nftables ruleset', default: true, format: f.bool },
    sshFrom: { doc: 'CIDRs allowed to SSH (empty = closed)', default: [] as string[], format: f.listOf(f.cidrItem) },
  },
  log: {
    level: { doc: 'Log level', default: 'info', format: f.oneOf(LOG_LEVELS) },
  },
};

export const peerSchema = {
  address: { doc: 'Peer address (IPv4 session: IPv4 VIPs; IPv6 session: IPv6 VIPs)', default: null, format: f.sessionIp({ required: true }) },
  asn: { doc: 'Peer ASN', default: null, format: f.int(1, 4294967294, { required: true }) },
  localAddress: { doc: 'Local address for the session (also the next hop of the VIPs sent over it)', default: '', format: f.sessionIp({ optional: true }) },
  passwordFile: { doc: 'File with the TCP-MD5 password', default: '', format: f.absolutePath({ optional: true }) },
  holdTime: { doc: 'Hold time (s): 0 or 3-65535', default: 90, format: f.int(0, 65535) },
  keepalive: { doc: 'Keepalive (s), below holdTime', default: 30, format: f.int(0, 21845) },
  multihop: { doc: 'eBGP multihop TTL (0 = directly connected)', default: 0, format: f.int(0, 255) },
  passive: { doc: 'Wait for the peer to connect', default: false, format: f.bool },
  bfd: {
    enabled: { doc: 'Run BFD with this peer', default: false, format: f.bool },
    minRxMs: { doc: 'Required min receive interval (ms)', default: 300, format: f.int(10, 60000) },
    minTxMs: { doc: 'Desired min transmit interval (ms)', default: 300, format: f.int(10, 60000) },
    multiplier: { doc: 'Detection multiplier', default: 3, format: f.int(2, 255) },
  },
  gracefulRestart: {
    enabled: { doc: 'Graceful restart capability', default: true, format: f.bool },
    restartTime: { doc: 'Restart time (s)', default: 120, format: f.int(1, 4095) },
  },
};

export const poolSchema = {
  name: { doc: 'Pool name', default: null, format: f.str({ required: true, pattern: /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, what: 'a lowercase DNS label' }) },
  cidrs: { doc: 'CIDRs to allocate from', default: [] as string[], format: f.listOf(f.cidrItem, { nonEmpty: true }) },
  namespaces: { doc: 'Namespaces allowed (empty = all)', default: [] as string[], format: f.listOf(f.namespaceItem) },
  serviceSelector: { doc: 'Service labels required (matchLabels)', default: {} as Record<string, string>, format: f.labelMap },
  autoAssign: { doc: 'Allocate to Services that did not ask', default: true, format: f.bool },
  advertise: {
    communities: { doc: 'Standard communities', default: [] as string[], format: f.listOf(f.communityItem) },
    largeCommunities: { doc: 'Large communities', default: [] as string[], format: f.listOf(f.largeCommunityItem) },
    localPref: { doc: 'LOCAL_PREF (iBGP)', default: null as number | null, format: f.nullableInt(0, 4294967295) },
    med: { doc: 'MED', default: null as number | null, format: f.nullableInt(0, 4294967295) },
    asPathPrepend: { doc: 'Extra prepends of our ASN', default: 0, format: f.int(0, 10) },
    peers: { doc: 'Peer addresses to advertise to (empty = all)', default: [] as string[], format: f.listOf(f.ipItem) },
  },
};
