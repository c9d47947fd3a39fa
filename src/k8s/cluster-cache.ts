// The controller's view of the cluster: informers for Services,
// EndpointSlices and Nodes (lists fetched raw and trimmed), the indexes
// over them, and the filter that turns informer events into "this Service
// must be recomputed" — most Service updates are echoes of our own status
// writes and change nothing reconciliation reads.
import { isDeepStrictEqual } from 'node:util';
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import { CONDITION_ADVERTISED, ingressAddresses, serviceKey } from '../model/service.js';
import type { NodeAddresses } from '../model/desired.js';
import { ResilientInformer, type InformerStats } from './informer.js';
import type { RestClient } from './rest.js';
import { ClusterIndex, parseKey } from './cluster-index.js';
import { shareUnchanged, trimNode, trimService } from './trim.js';
import { packSlice, type PackedSlice } from './packed-slice.js';
import { sameList } from '../shared-lists.js';

/** Failure reasons the allocating edge writes into the condition (they matter on edges that follow status). */
export const FAILURE_REASONS: ReadonlySet<string> = new Set(['InvalidRequest', 'RequestRefused', 'NoPool', 'PoolExhausted', 'AddressesReserved', 'SharingConflict', 'UnsupportedProtocol']);

/** The failure our condition reports ('' when none): a change there is read by reconciliation, a message or other reason is not. */
function failureOf(svc: V1Service): string {
  const c = svc.status?.conditions?.find((x) => x.type === CONDITION_ADVERTISED);
  return c && FAILURE_REASONS.has(c.reason) ? c.reason : '';
}

/**
 * How a Service differs from the version it replaces in the cache:
 * 'changed' when anything reconciliation reads outside status changed (its
 * uid, spec, labels, annotations) or there is no earlier version;
 * 'status' when only the addresses in status or the failure reported in our
 * condition changed (most often the echo of our own status write); 'same'
 * otherwise. Compared in place — an update shares its unchanged parts with
 * the cached version (shareUnchanged), so most comparisons are by
 * reference — instead of a digest per Service: hashing each update made
 * ~15 MB of short-lived garbage survive young-generation collections at
 * 10 000 Services, and the digests were a map of their own.
 */
export function serviceChange(before: V1Service | undefined, now: V1Service): 'same' | 'status' | 'changed' {
  if (before === undefined) return 'changed';
  const a = before.metadata;
  const b = now.metadata;
  if (a?.uid !== b?.uid || !isDeepStrictEqual(before.spec, now.spec) || !isDeepStrictEqual(a?.labels, b?.labels) || !isDeepStrictEqual(a?.annotations, b?.annotations)) return 'changed';
  if (failureOf(before) !== failureOf(now) || !sameList(ingressAddresses(before), ingressAddresses(now))) return 'status';
  return 'same';
}

export interface ClusterCacheOptions {
  rest: RestClient;
  logger: Logger;
  /** An informer finished a (re)list. */
  onListed: () => void;
  /** Every Service event (status writes re-check their Service). */
  onServiceSeen: (key: string) => void;
  /** A Service must be recomputed. */
  onDirty: (key: string) => void;
  /**
   * Only the addresses or failure in a Service's status changed (most often
   * the echo of our own status write); the consumer decides whether that
   * needs a recomputation. Without it, such a Service is dirty.
   */
  onStatusChanged?: (key: string, svc: V1Service) => void;
  /** A node's dispatch addresses changed. */
  onNodeChanged: (name: string) => void;
}

export class ClusterCache {
  private readonly services: ResilientInformer<V1Service>;
  private readonly slices: ResilientInformer<V1EndpointSlice, PackedSlice>;
  private readonly nodes: ResilientInformer<V1Node>;
  private readonly index = new ClusterIndex();

  constructor(o: ClusterCacheOptions) {
    const common = { rest: o.rest, logger: o.logger, onListed: o.onListed };
    this.services = new ResilientInformer<V1Service>({
      ...common,
      name: 'services',
      path: '/api/v1/services',
      project: trimService,
      share: shareUnchanged,
      onEvent: (ev, svc, before) => {
        const key = serviceKey(svc);
        o.onServiceSeen(key);
        if (ev === 'delete') {
          o.onDirty(key);
          return;
        }
        const change = serviceChange(before, svc);
        if (change === 'same') return;
        if (change === 'status' && o.onStatusChanged) o.onStatusChanged(key, svc);
        else o.onDirty(key);
      },
    });
    this.slices = new ResilientInformer<V1EndpointSlice, PackedSlice>({
      ...common,
      name: 'endpointslices',
      path: '/apis/discovery.k8s.io/v1/endpointslices',
      project: packSlice,
      onEvent: (ev, s) => {
        for (const key of this.index.onSlice(ev, s)) o.onDirty(key);
      },
    });
    this.nodes = new ResilientInformer<V1Node>({
      ...common,
      name: 'nodes',
      path: '/api/v1/nodes',
      project: trimNode,
      onEvent: (ev, n) => {
        if (this.index.onNode(ev, n)) o.onNodeChanged(n.metadata?.name ?? '');
      },
    });
  }

  async start(): Promise<void> {
    await Promise.all([this.services.start(), this.slices.start(), this.nodes.start()]);
  }

  async stop(): Promise<void> {
    await Promise.all([this.services.stop(), this.slices.stop(), this.nodes.stop()]);
  }

  stats(): Record<string, InformerStats> {
    return { services: this.services.stats(), endpointslices: this.slices.stats(), nodes: this.nodes.stats() };
  }

  /** Every informer has listed once (a computation from missing data would remove what is merely not loaded). */
  synced(): boolean {
    return this.services.stats().synced && this.slices.stats().synced && this.nodes.stats().synced;
  }

  serviceList(): readonly V1Service[] {
    return this.services.list();
  }

  /**
   * Every cached Service's key (as serviceKey makes it). The first pass
   * keeps these for as long as it runs: the informer's own key strings, not
   * 10 000 new ones made from the Services.
   */
  serviceKeys(): string[] {
    return this.services.keys();
  }

  service(key: string): V1Service | undefined {
    const [ns, name] = parseKey(key);
    return this.services.get(name, ns);
  }

  slicesOf(key: string): V1EndpointSlice[] {
    return this.index.slicesOf(key, (name, ns) => this.slices.get(name, ns));
  }

  get nodeAddrs(): ReadonlyMap<string, NodeAddresses> {
    return this.index.nodeAddrs;
  }
}
