// Desired state: pure functions from Kubernetes objects + config + address
// allocations to what BGP and the datapath must hold. No I/O.
//
// externalTrafficPolicy on an edge that is not a Kubernetes node:
//   The edge always sends a packet straight to a pod (DSR: pod IP with the
//   VIP in an IP option, or IPIP to the pod's node), never through another
//   node's kube-proxy, so the extra hop and the source NAT that `Cluster`
//   permits never happen and the choice of backends is the same for both
//   policies: every ready endpoint of the Service, on any node.
//   `Local` additionally means "the client source address must reach the
//   pod": a Service with `Local` is never served in `snat` mode. If its
//   mode (annotation or config default) is `snat`, it is served as `dsr`
//   instead (a Warning Event says so when the annotation asked for snat).
//   healthCheckNodePort is not used: readiness comes from EndpointSlices.
//
// Endpoints: `ready` (absent = ready) → active backend. `serving` and
// `terminating` but not ready → backend in state `terminating`: the
// datapath keeps its existing flows and gives it no new ones, so a rolling
// update resets nothing. Anything else is not a backend. A VIP is
// advertised only while one of its Services has at least one active
// backend of the VIP's address family.
import type { V1EndpointSlice, V1Node, V1Service, V1ServicePort } from '@kubernetes/client-node';
import type { DatapathConfig, DatapathMode, Dispatch, PoolConfig } from '../config/types.js';
import type { Assigned } from '../ipam/allocator.js';
import { parseCidr } from '../net/cidr.js';
import { canonicalIp, ipFamily } from '../net/ip.js';
import type { Backend, DesiredService, DesiredState, DesiredVip, Frontend, FrontendRejection, L4Proto } from './types.js';
import { ANNOTATION_DISPATCH, ANNOTATION_MODE, requestedSourceRanges, servedProtocol, serviceKey } from './service.js';
import { refusedBackendAddress, refusedNodeAddress, type RefusedAddresses } from './backend-address.js';

export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;

/** The part of the configuration desired state depends on. */
export interface DesiredConfig {
  /** maxPortsPerService, maxBackendsPerService, maxSourceRangesPerService: absent = no cap. */
  datapath: Pick<DatapathConfig, 'mode' | 'dispatch'> & Partial<Pick<DatapathConfig, 'maxPortsPerService' | 'maxBackendsPerService' | 'maxSourceRangesPerService'>>;
  pools: PoolConfig[];
  /**
   * The edges' own addresses (canonical) → the edge's name. No pod lives at
   * an edge: an endpoint or node address among them is refused. Absent on a
   * Kubernetes node's own view (src/node-agent).
   */
  edgeAddresses?: ReadonlyMap<string, string>;
}
const MODES: readonly DatapathMode[] = ['dsr', 'snat', 'hybrid'];
const DISPATCHES: readonly Dispatch[] = ['ip-option', 'ipip', 'auto'];

/** Something the operator should hear about (becomes a Warning Event). */
export interface Problem {
  reason: string;
  message: string;
}

export interface NodeAddresses {
  v4: string | null;
  v6: string | null;
}

/**
 * The one spelling of a frontend's identity — "VIP:port/PROTO", IPv6 in
 * brackets ("[2001:db8::1]:443/TCP") — used by the controller, the sinks,
 * the datapath, metric labels and the CLI alike.
 */
export function frontendKey(f: Frontend): string {
  return f.vip.includes(':') ? `[${f.vip}]:${f.port}/${f.protocol}` : `${f.vip}:${f.port}/${f.protocol}`;
}

/** A node's dispatch addresses: InternalIP per family, ExternalIP as fallback. */
export function nodeAddresses(node: V1Node): NodeAddresses {
  const out: NodeAddresses = { v4: null, v6: null };
  for (const type of ['InternalIP', 'ExternalIP']) {
    for (const a of node.status?.addresses ?? []) {
      if (a.type !== type) continue;
      const fam = ipFamily(a.address);
      if (fam === 4 && out.v4 === null) out.v4 = a.address;
      if (fam === 6 && out.v6 === null) out.v6 = canonicalIp(a.address);
    }
  }
  return out;
}

function pickMode(svc: V1Service, def: DatapathMode, problems: Problem[]): DatapathMode {
  const ann = svc.metadata?.annotations?.[ANNOTATION_MODE];
  let mode = def;
  let fromAnnotation = false;
  if (ann !== undefined) {
    if ((MODES as readonly string[]).includes(ann.trim())) {
      mode = ann.trim() as DatapathMode;
      fromAnnotation = true;
    } else {
      problems.push({ reason: 'InvalidMode', message: `annotation ${ANNOTATION_MODE}=${JSON.stringify(ann)} is not one of ${MODES.join(', ')}; using ${def}` });
    }
  }
  if (mode === 'snat' && svc.spec?.externalTrafficPolicy === 'Local') {
    if (fromAnnotation) {
      problems.push({ reason: 'ModeOverridden', message: 'externalTrafficPolicy Local preserves the client address; serving in dsr mode instead of snat' });
    }
    mode = 'dsr';
  }
  return mode;
}

function pickDispatch(svc: V1Service, def: Dispatch, problems: Problem[]): Dispatch {
  const ann = svc.metadata?.annotations?.[ANNOTATION_DISPATCH];
  if (ann === undefined) return def;
  if ((DISPATCHES as readonly string[]).includes(ann.trim())) return ann.trim() as Dispatch;
  problems.push({ reason: 'InvalidDispatch', message: `annotation ${ANNOTATION_DISPATCH}=${JSON.stringify(ann)} is not one of ${DISPATCHES.join(', ')}; using ${def}` });
  return def;
}

/**
 * loadBalancerSourceRanges as canonical CIDRs. Invalid entries are dropped
 * with a Warning; if every entry is invalid the Service fails closed (a
 * range nobody sends from) rather than open to everyone.
 */
function sourceRanges(svc: V1Service, problems: Problem[]): string[] {
  const { ranges: given, from } = requestedSourceRanges(svc);
  const out: string[] = [];
  for (const r of given) {
    try {
      out.push(parseCidr(r.trim(), { bareAddress: true, clearHostBits: true }).text);
    } catch (e) {
      problems.push({ reason: 'InvalidSourceRange', message: `${from} entry ${JSON.stringify(r)} ignored: ${(e as Error).message}` });
    }
  }
  if (given.length > 0 && out.length === 0) return ['0.0.0.0/32', '::/128'];
  return [...new Set(out)];
}

function affinityTimeout(svc: V1Service): number {
  if (svc.spec?.sessionAffinity !== 'ClientIP') return 0;
  const t = svc.spec.sessionAffinityConfig?.clientIP?.timeoutSeconds;
  return typeof t === 'number' && t > 0 ? t : DEFAULT_AFFINITY_TIMEOUT_SECONDS;
}

/**
 * The pod port of `sp` in one slice. The EndpointSlice controller names each
 * slice port after the Service port and resolves named targetPorts per pod,
 * so the name match is authoritative; a slice port named like the
 * targetPort is a fallback for hand-made slices. A slice that lists ports
 * but none of them for `sp` is not for `sp` (as kube-proxy reads it: a
 * mirrored slice of a pod serving only its metrics port made that pod a
 * backend of every other port); only a slice without ports falls back to a
 * numeric targetPort.
 */
function slicePort(sp: V1ServicePort, slice: V1EndpointSlice): number | null {
  const proto = sp.protocol ?? 'TCP';
  const listed = slice.ports ?? [];
  const ports = listed.filter((p) => (p.protocol ?? 'TCP') === proto);
  const byName = ports.find((p) => (p.name ?? '') === (sp.name ?? ''));
  if (byName?.port !== undefined && byName.port !== null) return byName.port;
  const tp = sp.targetPort as unknown;
  if (typeof tp === 'string' && tp !== '' && !/^\d+$/.test(tp)) {
    const named = ports.find((p) => p.name === tp);
    return named?.port ?? null;
  }
  if (listed.length > 0 && byName === undefined) return null;
  if (typeof tp === 'number') return tp;
  if (typeof tp === 'string' && /^\d+$/.test(tp)) return Number(tp);
  return sp.port;
}

function stateOf(c: { ready?: boolean; serving?: boolean; terminating?: boolean } | undefined): Backend['state'] | null {
  const ready = c?.ready ?? true;
  const terminating = c?.terminating ?? false;
  if (ready && !terminating) return 'active';
  const serving = c?.serving ?? ready;
  if (serving && terminating) return 'terminating';
  return null;
}

function backendsFor(sp: V1ServicePort, slices: V1EndpointSlice[], fam: 4 | 6, nodes: ReadonlyMap<string, NodeAddresses>, refused: RefusedAddresses, problems: Problem[]): Backend[] {
  const byId = new Map<string, Backend>();
  for (const slice of slices) {
    const addrType = slice.addressType === 'IPv6' ? 6 : slice.addressType === 'IPv4' ? 4 : null;
    if (addrType === null) {
      problems.push({ reason: 'UnsupportedAddressType', message: `EndpointSlice ${slice.metadata?.name ?? ''} is not used: its addressType is ${String(slice.addressType)}; edgelb forwards to IPv4 and IPv6 endpoints only` });
      continue;
    }
    if (addrType !== fam) continue;
    const port = slicePort(sp, slice);
    if (port === null) continue;
    // The API server takes port 0 in a slice; one such backend made the
    // datapath refuse the whole frontend, the other slices' endpoints too.
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      problems.push({ reason: 'InvalidEndpointPort', message: `EndpointSlice ${slice.metadata?.name ?? ''} is not used for port ${sp.name ?? sp.port}: its port is ${port}, not 1..65535` });
      continue;
    }
    for (const ep of slice.endpoints ?? []) {
      const state = stateOf(ep.conditions);
      const raw = ep.addresses?.[0];
      if (state === null || raw === undefined) continue;
      const ip = canonicalIp(raw);
      if (ip === null) continue;
      const badIp = refusedBackendAddress(ip, refused);
      if (badIp !== null) {
        problems.push({ reason: 'BackendAddressRefused', message: `endpoint ${ip} is not used: ${badIp}` });
        continue;
      }
      const nodeName = ep.nodeName ?? '';
      const na = nodes.get(nodeName);
      // An endpoint without a node (a hand-made slice for a backend outside
      // the cluster) is its own next hop; one on a node whose address is
      // unknown cannot be reached (FIB target, IPIP destination, probes).
      const nodeIp = nodeName === '' ? ip : ((fam === 4 ? na?.v4 : na?.v6) ?? '');
      if (nodeIp === '') {
        problems.push({ reason: 'NodeAddressUnknown', message: `endpoint ${ip} is not used: node ${nodeName} has no IPv${fam} address (InternalIP/ExternalIP) known to edgelb` });
        continue;
      }
      const badNode = nodeName === '' ? null : refusedNodeAddress(nodeIp, nodeName, refused);
      if (badNode !== null) {
        problems.push({ reason: 'NodeAddressRefused', message: `endpoint ${ip} is not used: ${badNode}` });
        continue;
      }
      const id = `${ip}|${port}`;
      const prev = byId.get(id);
      // The same endpoint can sit in two slices while they are rebalanced.
      if (prev && prev.state === 'active') continue;
      byId.set(id, { ip, port, nodeIp, nodeName, weight: 1, state });
    }
  }
  return [...byId.values()].sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.port - b.port));
}

function bySliceName(a: V1EndpointSlice, b: V1EndpointSlice): number {
  const x = a.metadata?.name ?? '';
  const y = b.metadata?.name ?? '';
  return x < y ? -1 : x > y ? 1 : 0;
}

/** For each of the Service's addresses, its ports times the items (endpoints, ranges) of that address's family. */
function entriesPerAddress(ports: number, addresses: readonly Assigned[], perFamily: Record<4 | 6, number>): number {
  let n = 0;
  for (const a of addresses) {
    const fam = ipFamily(a.ip);
    if (fam !== null) n += ports * perFamily[fam];
  }
  return n;
}

/**
 * The backend entries a Service would need: for each of its addresses, its
 * ports times the endpoints of that family that could be backends. Counted
 * without building any (a count per endpoint), so a Service over the cap
 * costs next to nothing to refuse.
 */
function backendEntries(ports: number, addresses: readonly Assigned[], slices: readonly V1EndpointSlice[]): number {
  const perFamily = { 4: 0, 6: 0 };
  for (const slice of slices) {
    const fam = slice.addressType === 'IPv6' ? 6 : slice.addressType === 'IPv4' ? 4 : null;
    if (fam === null) continue;
    for (const ep of slice.endpoints ?? []) if (ep.addresses?.[0] !== undefined && stateOf(ep.conditions) !== null) perFamily[fam]++;
  }
  return entriesPerAddress(ports, addresses, perFamily);
}

/** The source-range entries a Service would need: for each of its addresses, its ports times its ranges of that family. */
function sourceRangeEntries(ports: number, addresses: readonly Assigned[], ranges: readonly string[]): number {
  const perFamily = { 4: 0, 6: 0 };
  for (const r of ranges) {
    const fam = ipFamily(r.split('/')[0] ?? '');
    if (fam !== null) perFamily[fam]++;
  }
  return entriesPerAddress(ports, addresses, perFamily);
}

export interface ServiceDesired {
  /** One entry per (address, port, protocol) that can be served. */
  services: DesiredService[];
  /** Frontends of the Service that are not served, and why (over the port cap, no source range of their family). */
  rejected: FrontendRejection[];
  /** Allocated addresses with at least one active backend of their family. */
  readyAddresses: string[];
  problems: Problem[];
}

/**
 * Desired entries of one Service. `slices` are the Service's EndpointSlices
 * (label kubernetes.io/service-name), `addresses` its allocation.
 */
export function desiredForService(
  svc: V1Service,
  slices: V1EndpointSlice[],
  nodes: ReadonlyMap<string, NodeAddresses>,
  config: Pick<DesiredConfig, 'datapath' | 'pools' | 'edgeAddresses'>,
  addresses: Assigned[],
): ServiceDesired {
  const problems: Problem[] = [];
  const key = serviceKey(svc);
  // By name: the slices come in the order the informer saw them, which
  // differs between edges and after a relist; one endpoint in two slices
  // naming two nodes must give every edge the same backend.
  slices = [...slices].sort(bySliceName);
  const mode = pickMode(svc, config.datapath.mode, problems);
  const dispatch = pickDispatch(svc, config.datapath.dispatch, problems);
  const ranges = sourceRanges(svc, problems);
  const affinity = affinityTimeout(svc);
  const services: DesiredService[] = [];
  const rejected: FrontendRejection[] = [];
  const ready = new Set<string>();
  const ports: { sp: V1ServicePort; protocol: L4Proto }[] = [];
  for (const sp of svc.spec?.ports ?? []) {
    const protocol = servedProtocol(sp.protocol);
    if (protocol === null) {
      problems.push({ reason: 'UnsupportedProtocol', message: `port ${sp.name ?? sp.port}/${(sp.protocol ?? 'TCP').toUpperCase()} is not served (edgelb handles TCP and UDP)` });
      continue;
    }
    ports.push({ sp, protocol });
  }
  const cap = config.datapath.maxPortsPerService;
  const overCap = cap !== undefined && ports.length > cap;
  const maxEntries = config.datapath.maxBackendsPerService;
  const entries = maxEntries === undefined || overCap ? 0 : backendEntries(ports.length, addresses, slices);
  const overEntries = maxEntries !== undefined && entries > maxEntries;
  const maxRanges = config.datapath.maxSourceRangesPerService;
  const rangeEntries = maxRanges === undefined || overCap ? 0 : sourceRangeEntries(ports.length, addresses, ranges);
  const overRanges = maxRanges !== undefined && rangeEntries > maxRanges;
  for (const { sp, protocol } of ports) {
    for (const a of addresses) {
      const fam = ipFamily(a.ip);
      if (fam === null) continue;
      const frontend: Frontend = { vip: a.ip, port: sp.port, protocol };
      const reject = (reason: FrontendRejection['reason'], why: string) => {
        const fk = frontendKey(frontend);
        rejected.push({ key: fk, service: key, reason, message: `${key} ${fk}: ${why}` });
      };
      if (overCap) {
        reject('TooManyPorts', `the Service has ${ports.length} TCP/UDP ports; an edge serves at most ${cap} per Service (datapath.maxPortsPerService)`);
        continue;
      }
      if (overRanges) {
        reject('TooManySourceRanges', `the Service needs ${rangeEntries} source-range entries (${ports.length} TCP/UDP port(s) × its loadBalancerSourceRanges, for each of its addresses); an edge serves at most ${maxRanges} per Service (datapath.maxSourceRangesPerService)`);
        continue;
      }
      if (overEntries) {
        reject('TooManyBackends', `the Service needs ${entries} backend entries (${ports.length} TCP/UDP port(s) × its endpoints, for each of its addresses); an edge serves at most ${maxEntries} per Service (datapath.maxBackendsPerService)`);
        continue;
      }
      // Each family's ranges apply to that family's frontends (as kube-proxy
      // does); a frontend whose family has none would admit no client at all.
      const own = ranges.filter((r) => ipFamily(r.split('/')[0] ?? '') === fam);
      if (ranges.length > 0 && own.length === 0) {
        reject('SourceRangeFamily', `loadBalancerSourceRanges (${ranges.join(', ')}) has no IPv${fam} range, so this IPv${fam} frontend would admit no client`);
        continue;
      }
      const backends = backendsFor(sp, slices, fam, nodes, config, problems);
      if (backends.some((b) => b.state === 'active')) ready.add(a.ip);
      services.push({ service: key, frontend, mode, dispatch, sourceRanges: own, affinityTimeoutSeconds: affinity, backends });
    }
  }
  return { services, rejected, readyAddresses: addresses.map((a) => a.ip).filter((ip) => ready.has(ip)), problems: fewPerReason(problems) };
}

/** Distinct problems of one reason reported one by one; the others are counted in the last one. */
export const PROBLEMS_PER_REASON = 5;

/**
 * The distinct problems, at most PROBLEMS_PER_REASON per reason, the last
 * of them naming how many more there are. Each becomes a Warning Event: a
 * Service with thousands of endpoints on a node without an address queued
 * one each, filling the Event recorder's queue that every Service shares
 * (its overflow drops the other Services' Events).
 */
function fewPerReason(problems: readonly Problem[]): Problem[] {
  const unique = [...new Map(problems.map((p) => [`${p.reason}|${p.message}`, p])).values()];
  const byReason = new Map<string, Problem[]>();
  for (const p of unique) {
    const list = byReason.get(p.reason);
    if (list) list.push(p);
    else byReason.set(p.reason, [p]);
  }
  const out: Problem[] = [];
  for (const [reason, list] of byReason) {
    if (list.length <= PROBLEMS_PER_REASON) {
      out.push(...list);
      continue;
    }
    out.push(...list.slice(0, PROBLEMS_PER_REASON - 1));
    const last = list[PROBLEMS_PER_REASON - 1]!;
    out.push({ reason, message: `${last.message} (and ${list.length - PROBLEMS_PER_REASON} more for the same reason)` });
  }
  return out;
}

export interface VipSource {
  service: string;
  addresses: Assigned[];
  readyAddresses: string[];
}

/** VIPs to advertise: addresses with a ready Service behind them, sorted. */
export function desiredVips(sources: Iterable<VipSource>, config: Pick<DesiredConfig, 'pools'>): DesiredVip[] {
  const byIp = new Map<string, DesiredVip>();
  for (const s of sources) {
    for (const ip of s.readyAddresses) {
      const pool = s.addresses.find((a) => a.ip === ip)?.pool ?? '';
      const advertise = config.pools.find((p) => p.name === pool)?.advertise;
      if (!advertise) continue;
      let v = byIp.get(ip);
      if (!v) {
        v = { address: ip, pool, advertise, services: [] };
        byIp.set(ip, v);
      }
      v.services.push(s.service);
    }
  }
  const out = [...byIp.values()];
  for (const v of out) v.services.sort();
  return out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
}

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

/**
 * Whole-cluster desired state in one call: a Kubernetes node's local view
 * (src/node-agent) uses it; the edge's controller computes the same per
 * Service, incrementally, with desiredForService().
 */
export function computeDesiredState(
  services: V1Service[],
  slices: V1EndpointSlice[],
  nodes: V1Node[],
  config: DesiredConfig,
  allocations: Map<string, Assigned[]>,
): DesiredState & { problems: Map<string, Problem[]> } {
  const nodeIdx = new Map(nodes.map((n) => [n.metadata?.name ?? '', nodeAddresses(n)]));
  const slicesBySvc = new Map<string, V1EndpointSlice[]>();
  for (const s of slices) {
    const name = s.metadata?.labels?.[SERVICE_NAME_LABEL];
    if (!name) continue;
    const k = `${s.metadata?.namespace ?? ''}/${name}`;
    const list = slicesBySvc.get(k) ?? [];
    list.push(s);
    slicesBySvc.set(k, list);
  }
  const out: DesiredService[] = [];
  const sources: VipSource[] = [];
  const problems = new Map<string, Problem[]>();
  for (const svc of services) {
    const key = serviceKey(svc);
    const addresses = allocations.get(key);
    if (!addresses || addresses.length === 0) continue;
    const d = desiredForService(svc, slicesBySvc.get(key) ?? [], nodeIdx, config, addresses);
    out.push(...d.services);
    sources.push({ service: key, addresses, readyAddresses: d.readyAddresses });
    if (d.problems.length > 0) problems.set(key, d.problems);
  }
  return { services: out, vips: desiredVips(sources, config), problems };
}
