// The node side of edgelb's DSR datapath: loads bpf/out/node.o, attaches
// node_ingress / node_egress to the node's fabric-facing interface with tc,
// and programs the local-service map from desired state.
//
// Restart safety: maps are pinned under `pinPath` and reused by the next
// load, and the tc filters use a fixed priority/handle and are replaced in
// place, so an agent restart neither drops forwarding (the old programs stay
// attached while no agent runs) nor forgets established flows.
//
// Over 500 lines: most of it is one-line accessors of the pinned maps (flows,
// forward pins, edge sources and neighbours, counters, second chance) that
// the agent, its metrics and the tests read; encodings live in node-maps.ts.
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { attachState, type AttachState } from './attach-state.js';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import type { Backend, DesiredService } from '../model/types.js';
import { frontendKey } from '../model/desired.js';
import {
  BpfObject,
  detachTc,
  inNetns,
  tcQuery,
  BpfMap,
  type BpfProgram,
  type TcAttachment,
} from './loader.js';
import { bpfObjectPath } from '../assets.js';
import { unpinIncompatibleMaps } from './pinned-maps.js';
import { NODE_SC6_MAP, NODE_SC_MAP, NODE_SC_STATS_MAP, scBackendEntries, scBackendMapOf, sumScCounters, writeScBackends, type NodeScStatName } from './node-second-chance.js';
import { ipToBigInt } from '../net/ip.js';
import {
  decodeConfig,
  decodeEdgeNeighbour,
  decodeEdgeSourceKey,
  decodeFlowKey,
  decodeFlowValue,
  decodeFlow6Key,
  decodeFlow6Value,
  decodeFwdKey,
  decodeFwdValue,
  decodeFwd6Key,
  decodeFwd6Value,
  decodeSvcKey,
  decodeSvcPick,
  decodeSvcValue,
  decodeSvc6Key,
  decodeSvc6Pick,
  decodeSvc6Value,
  encodeConfig,
  encodeConfig6,
  decodeConfig6,
  encodeEdgeAddrKey,
  encodeEdgeMacKey,
  encodeEdgeMacValue,
  encodeEdgeSourceKey,
  encodeFlowKey,
  encodeFlow6Key,
  encodeSvcKey,
  encodeSvcValue,
  encodeSvc6Key,
  encodeSvc6Value,
  isV6,
  edgeSourceContains,
  EDGE_MAC_TTL_NS,
  EDGE_SRC_EDGE,
  EDGE_SRC_ROUTER,
  FLOW_CLOSING,
  NODE_COUNTER_NAMES,
  NODE_MAP_NAMES,
  NODE_MAX_LOCAL_BACKENDS,
  NODE_PROGRAMS,
  type EdgeNeighbour,
  type FlowKey,
  type FlowValue,
  type FwdKey,
  type FwdValue,
  type LocalBackend,
  type NodeConfigValue,
  type NodeCounterName,
  type SvcKey,
} from './node-maps.js';

/** Defaults of the program itself (node.c), used when an option is absent. */
export const NODE_DEFAULTS = {
  tcpIdleSeconds: 3600,
  udpIdleSeconds: 60,
  closeSeconds: 10,
  rstSeconds: 2,
  flowInsertLimit: 10000,
  tcPriority: 100,
  tcHandle: 0xed1b,
} as const;

export interface NodeDatapathOptions {
  /** bpffs directory for the maps (created). Absent: maps are not pinned (tests). */
  pinPath?: string;
  /** Compiled object; default bpf/out/node.o. */
  objectPath?: string;
  /** This node's IPv4 address: ipip packets must be addressed to it when given. */
  nodeIp?: string;
  /** This node's IPv6 address: IP6IP6 packets must be addressed to it when given. */
  nodeIp6?: string;
  /**
   * The addresses the edges send from (CIDRs or single addresses, IPv4 and
   * IPv6). Only packets from them may carry the DSR option / header or
   * IPIP / IP6IP6 to a frontend; with none, nothing is trusted and every
   * such packet is dropped.
   */
  edgeSources?: readonly string[];
  /**
   * Routers on this node's link that the edges' IPIP / IP6IP6 crosses (a
   * routed hop between edges and nodes): their link-layer address is trusted
   * as the sender of IPIP whose outer source is an edge source, never of a
   * DSR option or header — everything behind a router arrives with its MAC,
   * and an option packet keeps its own sender's address.
   */
  edgeRouters?: readonly string[];
  tcpIdleSeconds?: number;
  udpIdleSeconds?: number;
  /** Lifetime of a flow after FIN from both sides. */
  closeSeconds?: number;
  /** Silence after a RST before its connection counts as ended (a SYN may then reuse the tuple for another frontend). */
  rstSeconds?: number;
  /**
   * New flows per CPU per ~1.07 s window (0 = unlimited); beyond it new
   * flows are dropped, so a flood cannot evict established ones.
   */
  flowInsertLimit?: number;
  /** Remove the DSR option before the packet reaches the pod (default true). */
  stripOption?: boolean;
  /** Drop option packets naming no known frontend (default true). */
  verifyVip?: boolean;
  /** max_entries of node_flows and node_fwd (default: the object's, 131072). */
  maxFlows?: number;
  /** tc filter priority and handle for both directions. */
  tcPriority?: number;
  tcHandle?: number;
  logger?: Logger;
}

export interface NodeFlow extends FlowKey, FlowValue {
  /** Whether the program would treat it as expired right now. */
  expired: boolean;
}

export interface NodeFwd extends FwdKey, FwdValue {}

export interface LocalServiceEntry extends SvcKey {
  service: string;
  /** Every pod of the frontend here an edge may send to: the ones new ipip flows pick from first, then the rest. */
  backends: LocalBackend[];
  /** New ipip flows choose among backends[0..pick). */
  pick: number;
}

export interface ApplyLocalServicesResult {
  added: number;
  updated: number;
  removed: number;
  /** Services whose local backends exceeded NODE_MAX_LOCAL_BACKENDS (truncated). */
  truncated: string[];
  /**
   * Frontends with a pod here left out of node_services(6) because the map is
   * full: traffic to them is dropped on this node. (Frontends without a pod
   * here fill what room is left; they only tell a foreign VIP from a wrong
   * pod in the counters, and are left out silently.)
   */
  unprogrammed: number;
  /** node_sc_backends(6) entries wanted (backends of the frontends with a pod here), and those left out for want of room. */
  secondChanceEntries: number;
  secondChanceSkipped: number;
  /** Frontends two Services claim: which one is programmed (see localServiceEntries). */
  conflicts: string[];
}

/**
 * At most `room` entries per family, those with a pod here first (the
 * others only tell a foreign VIP from a wrong pod in the counters).
 */
function fitLocalEntries(entries: readonly LocalServiceEntry[], room: { 4: number; 6: number }): { kept: LocalServiceEntry[]; left: number } {
  const kept: LocalServiceEntry[] = [];
  const used = { 4: 0, 6: 0 };
  let left = 0;
  for (const withPods of [true, false]) {
    for (const e of entries) {
      if (e.backends.length > 0 !== withPods) continue;
      const fam = isV6(e.vip) ? 6 : 4;
      if (used[fam] < room[fam]) {
        used[fam]++;
        kept.push(e);
      } else if (withPods) left++;
    }
  }
  return { kept, left };
}

/** One node_edge_src(6) entry: its LPM key, in the map of its family, and what the block is. */
interface EdgeSourceEntry {
  family: 4 | 6;
  key: Buffer;
  kind: number; // EDGE_SRC_EDGE or EDGE_SRC_ROUTER
}

/** The entries for edge sources and routers (each parsed, throwing on the first bad one): edges, then routers. */
function edgeSourceEntries(edges: readonly string[], routers: readonly string[]): EdgeSourceEntry[] {
  return [
    ...edges.map((c) => ({ ...encodeEdgeSourceKey(c), kind: EDGE_SRC_EDGE })),
    ...routers.map((c) => ({ ...encodeEdgeSourceKey(c), kind: EDGE_SRC_ROUTER })),
  ];
}

function seconds(what: string, v: number | undefined, dflt: number): bigint {
  const s = v ?? dflt;
  if (!Number.isFinite(s) || s <= 0) throw new RangeError(`${what} must be a positive number of seconds, got ${s}`);
  return BigInt(Math.round(s * 1e9));
}

/**
 * The node's share of the desired state, pure: for every DSR frontend (mode
 * dsr, or hybrid TCP), the backends on this node (by name or address).
 * All of them — ready and terminating — are listed, because an option naming
 * any of them is legitimate: an edge keeps a terminating pod's flows, and a
 * SYN it sent (or retransmits) for a flow pinned just before the pod turned
 * terminating is still on its way when this node learns of it. Dropping
 * such a SYN cost a client its connection in a rolling update.
 * New ipip flows pick among the ready ones only (`pick`), or among the
 * terminating ones when none is ready, so that a flow the edge still sends
 * has somewhere to go. Each group is sorted so that slot order (and thus
 * the hash → pod choice) is the same on every reprogramming.
 * Frontends without a pod here are kept with no backends: the option path
 * accepts only known VIPs, and ipip to them is dropped (counted).
 * Both families: an IPv6 frontend keeps its IPv6 backends (node_services6),
 * an IPv4 one its IPv4 backends; a backend of the other family cannot
 * answer as the VIP and is left out.
 * Without `node`, the services are taken as already restricted to this
 * node: every backend is local.
 */
export function localServiceEntries(services: readonly DesiredService[], node?: { name?: string; ip?: string }): { entries: LocalServiceEntry[]; truncated: string[]; conflicts: string[] } {
  if (node && !node.name && !node.ip) throw new Error('localServiceEntries: give the node name or IP (or no node: every backend is local)');
  const onNode = (b: Backend): boolean => !node || (node.name !== undefined && b.nodeName === node.name) || (node.ip !== undefined && b.nodeIp === node.ip);
  const byKey = new Map<string, LocalServiceEntry>();
  const truncated: string[] = [];
  const conflicts = new Map<string, Set<string>>(); // frontendKey → the Services not programmed for it
  for (const s of services) {
    const dsr = s.mode === 'dsr' || (s.mode === 'hybrid' && s.frontend.protocol === 'TCP');
    if (!dsr) continue;
    const v6 = isV6(s.frontend.vip);
    const local = s.backends.filter((b) => onNode(b) && isV6(b.ip) === v6);
    const active = sortedUnique(local.filter((b) => b.state === 'active'));
    const seen = new Set(active.map((b) => `${b.ip}|${b.port}`));
    const others = sortedUnique(local.filter((b) => b.state !== 'active' && !seen.has(`${b.ip}|${b.port}`)));
    const chosen = [...active, ...others];
    let pick = active.length > 0 ? active.length : others.length;
    if (chosen.length > NODE_MAX_LOCAL_BACKENDS) {
      truncated.push(s.service);
      chosen.length = NODE_MAX_LOCAL_BACKENDS;
      pick = Math.min(pick, NODE_MAX_LOCAL_BACKENDS);
    }
    const key = frontendKey(s.frontend);
    const other = byKey.get(key);
    if (other?.service === s.service) continue; // the same frontend listed twice for one Service: one entry
    if (other) {
      // Two Services in status with one frontend: something upstream is
      // broken (a status written by hand, racing writers). The edges' leader
      // keeps the first claimer — after a restart the first in the API
      // server's key-sorted list — so the node keeps the smaller key,
      // whatever order it is handed, and says so rather than stop.
      const lost = conflicts.get(key) ?? new Set<string>();
      conflicts.set(key, lost);
      if (other.service <= s.service) {
        lost.add(s.service);
        continue;
      }
      lost.add(other.service);
    }
    byKey.set(key, { service: s.service, vip: s.frontend.vip, port: s.frontend.port, proto: s.frontend.protocol, backends: chosen, pick });
  }
  const said = [...conflicts].map(([key, lost]) => `${key}: ${byKey.get(key)!.service} programmed, ${[...lost].sort().join(', ')} not`);
  return { entries: [...byKey.values()], truncated, conflicts: said };
}

function sortedUnique(backends: readonly Backend[]): LocalBackend[] {
  return backends
    .map((b) => ({ ip: b.ip, port: b.port }))
    .sort((a, b) => cmpIp(a.ip, b.ip) || a.port - b.port)
    .filter((b, i, arr) => i === 0 || b.ip !== arr[i - 1]!.ip || b.port !== arr[i - 1]!.port);
}

/** Runs fn in the network namespace the attachment was made in. */
function inNetnsOfAttachment<T>(a: TcAttachment, fn: () => T): T {
  const here = statSync('/proc/thread-self/ns/net').ino;
  if (a.netns.ino === here || !a.netns.path) return fn();
  return inNetns(a.netns.path, fn);
}

function cmpIp(a: string, b: string): number {
  const va = ipToBigInt(a).value;
  const vb = ipToBigInt(b).value;
  return va < vb ? -1 : va > vb ? 1 : 0;
}

export class NodeDatapath {
  readonly obj: BpfObject;
  readonly ingress: BpfProgram;
  readonly egress: BpfProgram;
  readonly flowsMap: BpfMap;
  readonly fwdMap: BpfMap;
  readonly servicesMap: BpfMap;
  readonly configMap: BpfMap;
  readonly countersMap: BpfMap;
  readonly edgeSourcesMap: BpfMap;
  readonly edgeMacsMap: BpfMap;
  readonly edgeAddrsMap: BpfMap;
  readonly flows6Map: BpfMap;
  readonly fwd6Map: BpfMap;
  readonly services6Map: BpfMap;
  readonly edgeSources6Map: BpfMap;
  readonly config6Map: BpfMap;
  readonly #log: Logger;
  readonly #priority: number;
  readonly #handle: number;
  #config: NodeConfigValue;
  #attached: { ifname: string | number; at: TcAttachment[] } | null = null;

  private constructor(obj: BpfObject, config: NodeConfigValue, opts: NodeDatapathOptions) {
    this.obj = obj;
    this.ingress = obj.program(NODE_PROGRAMS.ingress);
    this.egress = obj.program(NODE_PROGRAMS.egress);
    this.flowsMap = obj.map(NODE_MAP_NAMES.flows);
    this.fwdMap = obj.map(NODE_MAP_NAMES.fwd);
    this.servicesMap = obj.map(NODE_MAP_NAMES.services);
    this.configMap = obj.map(NODE_MAP_NAMES.config);
    this.countersMap = obj.map(NODE_MAP_NAMES.counters);
    this.edgeSourcesMap = obj.map(NODE_MAP_NAMES.edgeSources);
    this.edgeMacsMap = obj.map(NODE_MAP_NAMES.edgeMacs);
    this.edgeAddrsMap = obj.map(NODE_MAP_NAMES.edgeAddrs);
    this.flows6Map = obj.map(NODE_MAP_NAMES.flows6);
    this.fwd6Map = obj.map(NODE_MAP_NAMES.fwd6);
    this.services6Map = obj.map(NODE_MAP_NAMES.services6);
    this.edgeSources6Map = obj.map(NODE_MAP_NAMES.edgeSources6);
    this.config6Map = obj.map(NODE_MAP_NAMES.config6);
    this.#log = opts.logger ?? silentLogger();
    this.#priority = opts.tcPriority ?? NODE_DEFAULTS.tcPriority;
    this.#handle = opts.tcHandle ?? NODE_DEFAULTS.tcHandle;
    this.#config = config;
  }

  /** Loads the programs, reusing maps pinned at pinPath, and writes the config. */
  static open(opts: NodeDatapathOptions = {}): NodeDatapath {
    const config: NodeConfigValue = {
      tcpIdleNs: seconds('tcpIdleSeconds', opts.tcpIdleSeconds, NODE_DEFAULTS.tcpIdleSeconds),
      udpIdleNs: seconds('udpIdleSeconds', opts.udpIdleSeconds, NODE_DEFAULTS.udpIdleSeconds),
      closeNs: seconds('closeSeconds', opts.closeSeconds, NODE_DEFAULTS.closeSeconds),
      rstNs: seconds('rstSeconds', opts.rstSeconds, NODE_DEFAULTS.rstSeconds),
      insertLimit: opts.flowInsertLimit ?? NODE_DEFAULTS.flowInsertLimit,
      nowNs: 0n,
      nodeIp: opts.nodeIp ?? '0.0.0.0',
      stripOption: opts.stripOption ?? true,
      checkOuterDst: opts.nodeIp !== undefined,
      verifyVip: opts.verifyVip ?? true,
    };
    encodeConfig(config); // validates before anything is loaded
    const config6 = encodeConfig6({ nodeIp6: opts.nodeIp6 ?? null });
    const sources = edgeSourceEntries(opts.edgeSources ?? [], opts.edgeRouters ?? []);
    const maxEntries: Record<string, number> = {};
    if (opts.maxFlows !== undefined) {
      maxEntries[NODE_MAP_NAMES.flows] = opts.maxFlows;
      maxEntries[NODE_MAP_NAMES.fwd] = opts.maxFlows;
      maxEntries[NODE_MAP_NAMES.flows6] = opts.maxFlows;
      maxEntries[NODE_MAP_NAMES.fwd6] = opts.maxFlows;
    }
    const obj = BpfObject.open(opts.objectPath ?? bpfObjectPath('node'), {
      ...(opts.pinPath !== undefined ? { pinMaps: opts.pinPath } : {}),
      maxEntries,
    });
    try {
      if (opts.pinPath !== undefined) unpinIncompatibleMaps(obj, opts.pinPath, opts.logger ?? silentLogger());
      obj.load();
      const dp = new NodeDatapath(obj, config, opts);
      dp.writeConfig();
      dp.config6Map.update(Buffer.alloc(4), config6);
      dp.writeEdgeSources(sources);
      dp.#log.info({ pinPath: opts.pinPath, flows: dp.flowsMap.keys().length }, 'node datapath loaded');
      return dp;
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  /** This node's IPv6 address as the program checks IP6IP6 against it (null: not checked). */
  nodeIp6(): string | null {
    const v = this.config6Map.lookup(Buffer.alloc(4));
    return v ? decodeConfig6(v).nodeIp6 : null;
  }

  get config(): NodeConfigValue {
    return { ...this.#config };
  }

  /**
   * Attaches ingress and egress on ifname (clsact created when missing),
   * replacing our own filters from an earlier run in place.
   */
  attach(ifname: string | number): void {
    if (this.#attached) throw new Error(`node datapath is already attached to ${this.#attached.ifname}`);
    const at: TcAttachment[] = [];
    try {
      for (const [dir, prog] of [['ingress', this.ingress], ['egress', this.egress]] as const) {
        at.push(prog.attachTc(ifname, dir, { priority: this.#priority, handle: this.#handle, replace: true }));
      }
    } catch (e) {
      for (const a of at) a.detach();
      throw e;
    }
    this.#attached = { ifname, at };
    this.#log.info({ ifname, priority: this.#priority, handle: this.#handle }, 'node datapath attached');
  }

  /**
   * Removes our two tc filters (the clsact qdisc and other filters stay).
   * Without ifname (or with the attached one), the filters this object
   * attached are removed in the namespace they were attached in; with
   * another ifname (say, after a restart, to clean up), ours are looked up
   * by priority/handle on it in the current namespace.
   */
  detach(ifname?: string | number): void {
    const mine = this.#attached;
    if (mine && (ifname === undefined || ifname === mine.ifname)) {
      for (const a of mine.at) {
        // Leave a filter that a newer instance has since replaced alone.
        if (inNetnsOfAttachment(a, () => tcQuery(a.ifindex, a.direction, a) === a.progId)) a.detach();
      }
      this.#attached = null;
      return;
    }
    if (ifname === undefined) return;
    for (const dir of ['ingress', 'egress'] as const) {
      const filter = { priority: this.#priority, handle: this.#handle };
      if (tcQuery(ifname, dir, filter) !== null) detachTc(ifname, dir, filter);
    }
  }

  /**
   * What the kernel runs on the hooks this object attached to: our
   * programs, or (detached by hand, replaced) not. Null before attach().
   */
  attachState(): { ingress: AttachState; egress: AttachState } | null {
    const mine = this.#attached;
    if (!mine) return null;
    const [ingress, egress] = mine.at;
    return { ingress: attachState(ingress!, this.ingress.info().id), egress: attachState(egress!, this.egress.info().id) };
  }

  /**
   * Programs node_services from desired state, keeping only this node's
   * backends (see localServiceEntries; omit `node` when the services are
   * already restricted to this node). Writes only what changed.
   */
  applyServices(services: readonly DesiredService[], node?: { name?: string; ip?: string }): ApplyLocalServicesResult {
    const local = localServiceEntries(services, node);
    const truncated = local.truncated;
    // Nothing here may throw for a large cluster: every map gets what fits.
    const { kept: entries, left: unprogrammed } = fitLocalEntries(local.entries, { 4: this.servicesMap.maxEntries, 6: this.services6Map.maxEntries });
    // Second chance: a handed-over packet arrives at its primary — a pod of
    // this node — so only frontends with a pod here need their backends'
    // nodes (docs/second-chance.md).
    const here = new Set(local.entries.filter((e) => e.backends.length > 0).map((e) => frontendKey({ vip: e.vip, port: e.port, protocol: e.proto })));
    const sc = scBackendEntries(services.filter((s) => here.has(frontendKey(s.frontend))));
    let secondChanceSkipped = 0;
    for (const name of [NODE_SC_MAP, NODE_SC6_MAP]) {
      const map = this.obj.map(name);
      const mine = sc.filter((e) => scBackendMapOf(e) === name);
      secondChanceSkipped += Math.max(0, mine.length - map.maxEntries);
      writeScBackends(map, mine.slice(0, map.maxEntries));
    }
    if (unprogrammed > 0 || secondChanceSkipped > 0) {
      this.#log.warn({ unprogrammed, secondChanceSkipped, frontends: local.entries.length, secondChanceEntries: sc.length }, 'more frontends with pods here than the node program\'s maps hold; traffic to those left out is dropped here');
    }
    let added = 0;
    let updated = 0;
    let removed = 0;
    for (const [map, fam] of [[this.servicesMap, false], [this.services6Map, true]] as const) {
      const want = new Map<string, Buffer>();
      const keys = new Map<string, Buffer>();
      for (const e of entries) {
        if (isV6(e.vip) !== fam) continue;
        const k = fam ? encodeSvc6Key(e) : encodeSvcKey(e);
        const id = k.toString('hex');
        want.set(id, fam ? encodeSvc6Value(e.backends, e.pick) : encodeSvcValue(e.backends, e.pick));
        keys.set(id, k);
      }
      for (const k of map.keys()) {
        if (!want.has(k.toString('hex')) && map.delete(k)) removed++;
      }
      for (const [id, v] of want) {
        const k = keys.get(id)!;
        const cur = map.lookup(k);
        if (cur && cur.equals(v)) continue;
        map.update(k, v);
        if (cur) updated++;
        else added++;
      }
    }
    if (truncated.length > 0) {
      this.#log.warn({ services: truncated, limit: NODE_MAX_LOCAL_BACKENDS }, 'more local backends than the node program holds; extra ones get no ipip flows');
    }
    if (local.conflicts.length > 0) this.#log.warn({ conflicts: local.conflicts }, 'two Services claim one frontend in their status; the first by key is programmed');
    return { added, updated, removed, truncated, unprogrammed, secondChanceEntries: sc.length, secondChanceSkipped, conflicts: local.conflicts };
  }

  /**
   * Replaces the edge sources (see NodeDatapathOptions.edgeSources); every
   * entry is validated before the map changes. Returns the list in effect.
   */
  setEdgeSources(cidrs: readonly string[], routers: readonly string[] = []): string[] {
    this.writeEdgeSources(edgeSourceEntries(cidrs, routers));
    return this.edgeSources();
  }

  /** The edge sources in effect, both families. */
  edgeSources(): string[] {
    return this.sourcesOfKind(EDGE_SRC_EDGE);
  }

  /** The edge routers in effect (NodeDatapathOptions.edgeRouters), both families. */
  edgeRouters(): string[] {
    return this.sourcesOfKind(EDGE_SRC_ROUTER);
  }

  private sourcesOfKind(kind: number): string[] {
    return [...this.edgeSourcesMap.entries(), ...this.edgeSources6Map.entries()].filter(([, v]) => v[0] === kind).map(([k]) => decodeEdgeSourceKey(k)).sort();
  }

  private writeEdgeSources(keys: readonly EdgeSourceEntry[]): void {
    let left6 = false;
    for (const [map, family] of [[this.edgeSourcesMap, 4], [this.edgeSources6Map, 6]] as const) {
      const mine = keys.filter((k) => k.family === family);
      const want = new Map(mine.map((k) => [k.key.toString('hex'), k.kind]));
      for (const [k, v] of map.entries()) {
        if (want.get(k.toString('hex')) === v[0]) continue;
        map.delete(k);
        if (family === 6) left6 = true;
      }
      for (const k of mine) map.update(k.key, Buffer.from([k.kind]));
    }
    this.forgetFormerEdges(left6);
  }

  /**
   * A neighbour is trusted as an edge for an address inside the edge
   * sources: once that address left them (an edge taken out of
   * --edge-sources, also across a restart over the pinned node_edge_macs),
   * its MAC is trusted no more — an option packet is judged by its sender's
   * MAC alone, so a stale entry let a removed edge go on handing pods flows.
   * An IPv6 edge's entry keeps no address (ip null): when an IPv6 source
   * left, every such entry goes, and the remaining IPv6 edges are taught
   * again by the agent's neighbour-table copy and their next NS/NA.
   */
  private forgetFormerEdges(left6: boolean): void {
    const sources = this.edgeSources();
    const routers = this.edgeRouters();
    for (const [k, v] of this.edgeMacsMap.entries()) {
      const n = decodeEdgeNeighbour(k, v);
      const stays = n.ip === null ? !left6 : (n.router ? routers : sources).some((c) => edgeSourceContains(c, n.ip!));
      if (!stays) {
        this.edgeMacsMap.delete(k);
        this.#log.info({ mac: n.mac, ip: n.ip }, 'edge neighbour no longer trusted: its address left the edge sources');
      }
    }
  }

  /**
   * Trusts `mac` as the link-layer sender of the edge at `ip` (either
   * family; the agent, from the kernel's neighbour table; the program
   * learns the others from their ARP or NS/NA), and confirms it for
   * EDGE_MAC_TTL_NS. `ip` must be an edge source. The MAC `ip` was at
   * before, if another, is trusted no more (as the program does, see
   * edge_address_at in node_trust.h). `readAt` (nowNs() when the table
   * was read): when the program has confirmed `ip` at another MAC since,
   * the table is older than what the program saw, and nothing is written —
   * else a read that just preceded the edge's ARP from its new MAC brought
   * the old MAC back until the next round.
   */
  trustEdgeNeighbour(ip: string, mac: string, readAt?: bigint): void {
    const inSources = this.edgeSources().some((c) => edgeSourceContains(c, ip));
    const router = !inSources && this.edgeRouters().some((c) => edgeSourceContains(c, ip));
    if (!inSources && !router) throw new Error(`edge neighbour ${ip} (${mac}) is not inside any edge source`);
    const key = encodeEdgeMacKey(mac);
    const addr = encodeEdgeAddrKey(ip);
    const was = this.edgeAddrsMap.lookup(addr);
    if (was && !was.equals(key)) {
      const old = this.edgeMacsMap.lookup(was);
      if (old && readAt !== undefined && decodeEdgeNeighbour(was, old).seenNs > readAt) return;
      // The old entry stood for this address (IPv4), or for IPv6 only (ip null).
      if (old && decodeEdgeNeighbour(was, old).ip === (isV6(ip) ? null : ip)) {
        this.edgeMacsMap.delete(was);
        this.#log.info({ ip, mac, formerMac: decodeEdgeNeighbour(was, old).mac }, 'edge neighbour moved to another MAC: the former one is trusted no more');
      }
    }
    this.edgeAddrsMap.update(addr, key);
    this.edgeMacsMap.update(key, encodeEdgeMacValue({ ip, how: 'agent', router, seenNs: this.nowNs() }));
  }

  /** The link-layer senders trusted as edges (confirmed within EDGE_MAC_TTL_NS). */
  edgeNeighbours(): EdgeNeighbour[] {
    const now = this.nowNs();
    return this.edgeMacsMap
      .entries()
      .map(([k, v]) => decodeEdgeNeighbour(k, v))
      .filter((n) => !(now > n.seenNs && now - n.seenNs > EDGE_MAC_TTL_NS));
  }

  localServices(): Array<SvcKey & { backends: LocalBackend[]; pick: number }> {
    return [
      ...this.servicesMap.entries().map(([k, v]) => ({ ...decodeSvcKey(k), backends: decodeSvcValue(v), pick: decodeSvcPick(v) })),
      ...this.services6Map.entries().map(([k, v]) => ({ ...decodeSvc6Key(k), backends: decodeSvc6Value(v), pick: decodeSvc6Pick(v) })),
    ];
  }

  /** Every entry of node_flows and node_flows6 (reply tuples), decoded. */
  flows(): NodeFlow[] {
    const now = this.nowNs();
    const out: NodeFlow[] = [];
    for (const [map, dk, dv] of [[this.flowsMap, decodeFlowKey, decodeFlowValue], [this.flows6Map, decodeFlow6Key, decodeFlow6Value]] as const) {
      for (const [k, v] of map.entries()) {
        const key = dk(k);
        const value = dv(v);
        out.push({ ...key, ...value, expired: this.isExpired(now, key.proto, value.flags, value.lastSeenNs) });
      }
    }
    return out;
  }

  flow(key: FlowKey): FlowValue | null {
    if (isV6(key.podIp)) {
      const v = this.flows6Map.lookup(encodeFlow6Key(key));
      return v ? decodeFlow6Value(v) : null;
    }
    const v = this.flowsMap.lookup(encodeFlowKey(key));
    return v ? decodeFlowValue(v) : null;
  }

  /** How many entries the flow maps and the forward-pin maps hold, both families (batch reads: cheap enough per scrape). */
  /** Entries in the flow and forward-pin maps, counted without copying them (a scrape of a busy node). */
  flowCounts(): { flows: number; forwardPins: number } {
    return {
      flows: this.flowsMap.count() + this.flows6Map.count(),
      forwardPins: this.fwdMap.count() + this.fwd6Map.count(),
    };
  }

  /** ipip / IP6IP6 forward pins (client → VIP to the chosen pod). */
  fwdEntries(): NodeFwd[] {
    return [
      ...this.fwdMap.entries().map(([k, v]) => ({ ...decodeFwdKey(k), ...decodeFwdValue(v) })),
      ...this.fwd6Map.entries().map(([k, v]) => ({ ...decodeFwd6Key(k), ...decodeFwd6Value(v) })),
    ];
  }

  /**
   * Deletes expired entries from the flow and forward-pin maps of both
   * families. The datapath already ignores them and the LRU bounds memory;
   * this keeps listings and map pressure honest. Returns how many were
   * deleted.
   */
  gc(): number {
    const now = this.nowNs();
    let n = 0;
    for (const [map, dk, dv] of [[this.flowsMap, decodeFlowKey, decodeFlowValue], [this.flows6Map, decodeFlow6Key, decodeFlow6Value]] as const) {
      for (const [k, v] of map.entries()) {
        const key = dk(k);
        const value = dv(v);
        if (this.isExpired(now, key.proto, value.flags, value.lastSeenNs) && map.delete(k)) n++;
      }
    }
    for (const [map, dk, dv] of [[this.fwdMap, decodeFwdKey, decodeFwdValue], [this.fwd6Map, decodeFwd6Key, decodeFwd6Value]] as const) {
      for (const [k, v] of map.entries()) {
        const key = dk(k);
        const value = dv(v);
        if (this.isExpired(now, key.proto, 0, value.lastSeenNs) && map.delete(k)) n++;
      }
    }
    return n;
  }

  /** Per-CPU counters summed. */
  counters(): Record<NodeCounterName, number> {
    return sumNodeCounters(this.countersMap);
  }

  /** Second-chance counters (docs/second-chance.md). */
  secondChanceCounters(): Record<NodeScStatName, number> {
    return sumScCounters(this.obj.map(NODE_SC_STATS_MAP));
  }

  /** Zeroes every counter (tests and benchmarks). */
  resetCounters(): void {
    for (let i = 0; i < NODE_COUNTER_NAMES.length; i++) {
      const k = Buffer.alloc(4);
      k.writeUInt32LE(i);
      this.countersMap.update(k, Buffer.alloc(8));
    }
  }

  /**
   * Test clock: the programs use `ns` as the time instead of the kernel's
   * clock; null returns to the kernel clock.
   */
  setTestClock(ns: bigint | null): void {
    this.#config = { ...this.#config, nowNs: ns ?? 0n };
    this.writeConfig();
  }

  /** Changes timeouts / option stripping at run time. */
  reconfigure(change: Partial<Pick<NodeConfigValue, 'tcpIdleNs' | 'udpIdleNs' | 'closeNs' | 'rstNs' | 'insertLimit' | 'stripOption' | 'checkOuterDst' | 'nodeIp' | 'verifyVip'>>): void {
    this.#config = { ...this.#config, ...change };
    this.writeConfig();
  }

  /** Closes our fds; attached programs and pinned maps stay in the kernel. */
  close(): void {
    this.obj.close();
  }

  /** The time the programs currently see (test clock or CLOCK_MONOTONIC). */
  nowNs(): bigint {
    return this.#config.nowNs !== 0n ? this.#config.nowNs : process.hrtime.bigint();
  }

  private isExpired(now: bigint, proto: 'TCP' | 'UDP', flags: number, lastSeen: bigint): boolean {
    const c = this.#config;
    const timeout = flags & FLOW_CLOSING ? c.closeNs : proto === 'TCP' ? c.tcpIdleNs : c.udpIdleNs;
    return now > lastSeen && now - lastSeen > timeout;
  }

  private writeConfig(): void {
    const k = Buffer.alloc(4);
    this.configMap.update(k, encodeConfig(this.#config));
    const back = decodeConfig(this.configMap.lookup(k)!);
    if (back.nowNs !== this.#config.nowNs) throw new Error('node_config did not take the written value');
  }
}

/** Per-CPU node counters summed, read from a counters map. */
function sumNodeCounters(map: BpfMap): Record<NodeCounterName, number> {
  const out = {} as Record<NodeCounterName, number>;
  NODE_COUNTER_NAMES.forEach((name, i) => {
    const k = Buffer.alloc(4);
    k.writeUInt32LE(i);
    const slots = map.lookupPerCpu(k) ?? [];
    out[name] = Number(slots.reduce((acc, b) => acc + b.readBigUInt64LE(0), 0n));
  });
  return out;
}

/** The counters of a node datapath whose maps are pinned under `pinDir` (another process's, e.g. a running node agent). */
export function pinnedNodeCounters(pinDir: string): Record<NodeCounterName, number> {
  const map = BpfMap.openPinned(join(pinDir, NODE_MAP_NAMES.counters));
  try {
    return sumNodeCounters(map);
  } finally {
    map.close();
  }
}
