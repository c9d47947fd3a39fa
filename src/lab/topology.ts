// The lab's layout as data: every namespace, interface, address and port,
// derived from one prefix. Pure, so `up`, `down`, `status`, the demo and the
// tests all agree on names without talking to each other.
//
//   client ── router ──┐                       (router: FRR, ECMP over the edges)
//   172.16.0.10   .1   │ fabric bridge 10.0.0.0/24 (own namespace)
//                      ├── edge1 10.0.0.11  (gobgpd + edgelb agent, XDP on eth0)
//                      ├── edge2 10.0.0.12
//                      ├── node1 10.0.0.21 ── cni0 10.244.1.1/24 ── pods .10 .11
//                      └── node2 10.0.0.22 ── cni0 10.244.2.1/24 ── pods .10 .11
//   mgmt 10.255.0.1 (etcd, kube-apiserver :6443, kube-controller-manager) ── mgmt0 of each edge and node
//
// A dual-stack lab (option ipv6) adds IPv6 beside every address: the client
// side fd16::/64 (client ::10, router ::1), the fabric fd10::/64 (router ::1,
// edges ::11…, nodes ::21…), pods fd44:N::/64 (gateway ::1, pods ::10…), and
// the IPv6 VIP pool 2001:db8:5100::/124; the edges peer with the router over
// IPv6 as well.
//
// Addresses repeat between labs on purpose: nothing lives in the root
// namespace, so two labs never see each other's addresses.
import { randomBytes } from 'node:crypto';

/** Where each node agent serves its metrics, inside the node's namespace. */
export const NODE_METRICS_PORT = 9101;
/** Where each lab edge's agent serves its metrics (on its fabric address). */
export const EDGE_METRICS_PORT = 9472;

export const LAB_PREFIX_RE = /^elb-[0-9a-f]{4}-$/;

export interface PodPlan {
  name: string;
  ns: string;
  ip: string;
  /** The pod's IPv6 address (dual-stack labs). */
  ip6: string;
  /** Interface names on the node's side (in the node namespace). */
  hostIf: string;
}

export interface NodePlan {
  name: string;
  ns: string;
  /** Fabric-facing interface (tc program attaches here). */
  ifname: string;
  address: string;
  address6: string;
  /** Port name on the fabric bridge. */
  fabricPort: string;
  podCidr: string;
  podCidr6: string;
  bridge: string;
  gateway: string;
  gateway6: string;
  /** Link to the mgmt bridge (the node agent watches the API server). */
  mgmtIf: string;
  mgmtAddress: string;
  mgmtPort: string;
  pods: PodPlan[];
}

export interface EdgePlan {
  name: string;
  ns: string;
  uplink: string;
  address: string;
  address6: string;
  fabricPort: string;
  asn: number;
  mgmtIf: string;
  mgmtAddress: string;
  /** Port name on the mgmt bridge. */
  mgmtPort: string;
}

export interface LabPlan {
  prefix: string;
  client: {
    ns: string;
    ifname: string;
    address: string;
    /** A second client address, outside the allowed source ranges in tests. */
    otherAddress: string;
    gateway: string;
    address6: string;
    otherAddress6: string;
    gateway6: string;
  };
  router: { ns: string; clientIf: string; clientAddress: string; clientAddress6: string; fabricIf: string; address: string; address6: string; fabricPort: string; asn: number };
  fabric: { ns: string; bridge: string; cidr: string };
  mgmt: { ns: string; bridge: string; address: string; apiPort: number };
  edges: EdgePlan[];
  nodes: NodePlan[];
  /** VIP pool the edges allocate from. */
  pool: string;
  /** IPv6 VIP pool (dual-stack labs). */
  pool6: string;
  ports: { http: number; udp: number };
}

/** A fresh random prefix `elb-xxxx-`. */
export function newPrefix(): string {
  return `elb-${randomBytes(2).toString('hex')}-`;
}

export function checkPrefix(prefix: string): string {
  if (!LAB_PREFIX_RE.test(prefix)) throw new Error(`lab prefix "${prefix}" must look like elb-1a2b- (elb-, 4 hex digits, -)`);
  return prefix;
}

export function planLab(prefix: string, opts: { edges?: number; nodes?: number; podsPerNode?: number } = {}): LabPlan {
  checkPrefix(prefix);
  const nEdges = opts.edges ?? 2;
  const nNodes = opts.nodes ?? 2;
  const nPods = opts.podsPerNode ?? 2;
  if (nEdges < 1 || nEdges > 8 || nNodes < 1 || nNodes > 8 || nPods < 1 || nPods > 8) throw new Error('lab size: 1-8 edges, nodes and pods per node');
  const edges: EdgePlan[] = [];
  for (let i = 1; i <= nEdges; i++) {
    edges.push({
      name: `edge${i}`,
      ns: `${prefix}edge${i}`,
      uplink: 'eth0',
      address: `10.0.0.${10 + i}`,
      address6: `fd10::${10 + i}`,
      fabricPort: `e${i}`,
      asn: 65100 + i,
      mgmtIf: 'mgmt0',
      mgmtAddress: `10.255.0.${10 + i}`,
      mgmtPort: `m${i}`,
    });
  }
  const nodes: NodePlan[] = [];
  for (let n = 1; n <= nNodes; n++) {
    const pods: PodPlan[] = [];
    for (let p = 0; p < nPods; p++) {
      const letter = String.fromCharCode(97 + p);
      pods.push({ name: `echo-${n}${letter}`, ns: `${prefix}pod${n}${letter}`, ip: `10.244.${n}.${10 + p}`, ip6: `fd44:${n}::${10 + p}`, hostIf: `veth${letter}` });
    }
    nodes.push({
      name: `node${n}`,
      ns: `${prefix}node${n}`,
      ifname: 'eth0',
      address: `10.0.0.${20 + n}`,
      address6: `fd10::${20 + n}`,
      fabricPort: `n${n}`,
      podCidr: `10.244.${n}.0/24`,
      podCidr6: `fd44:${n}::/64`,
      bridge: 'cni0',
      gateway: `10.244.${n}.1`,
      gateway6: `fd44:${n}::1`,
      mgmtIf: 'mgmt0',
      mgmtAddress: `10.255.0.${20 + n}`,
      mgmtPort: `mn${n}`,
      pods,
    });
  }
  return {
    prefix,
    client: { ns: `${prefix}client`, ifname: 'eth0', address: '172.16.0.10', otherAddress: '172.16.0.20', gateway: '172.16.0.1', address6: 'fd16::10', otherAddress6: 'fd16::20', gateway6: 'fd16::1' },
    router: { ns: `${prefix}router`, clientIf: 'cl0', clientAddress: '172.16.0.1', clientAddress6: 'fd16::1', fabricIf: 'fab0', address: '10.0.0.1', address6: 'fd10::1', fabricPort: 'r0', asn: 65000 },
    fabric: { ns: `${prefix}fabric`, bridge: 'br0', cidr: '10.0.0.0/24' },
    mgmt: { ns: `${prefix}mgmt`, bridge: 'br0', address: '10.255.0.1', apiPort: 6443 },
    edges,
    nodes,
    pool: '198.51.100.0/28',
    pool6: '2001:db8:5100::/124',
    ports: { http: 8080, udp: 9090 },
  };
}

/** Every namespace of the plan, in creation order. */
export function allNamespaces(p: LabPlan): string[] {
  return [p.fabric.ns, p.router.ns, p.client.ns, p.mgmt.ns, ...p.edges.map((e) => e.ns), ...p.nodes.flatMap((n) => [n.ns, ...n.pods.map((x) => x.ns)])];
}

export function allPods(p: LabPlan): (PodPlan & { node: NodePlan })[] {
  return p.nodes.flatMap((node) => node.pods.map((pod) => ({ ...pod, node })));
}
