// The controller's view of the cluster: informers for Services,
// EndpointSlices and Nodes (lists fetched raw and trimmed), the indexes
// over them, and the filter that turns informer events into "this Service
// must be recomputed" — most Service updates are echoes of our own status
// writes and change nothing reconciliation reads.
import { createHash } from 'node:crypto';
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { Logger } from '../log/logger.js';
import { CONDITION_ADVERTISED, ingressAddresses, serviceKey } from '../model/service.js';
import type { NodeAddresses } from '../model/desired.js';
import { ResilientInformer, type InformerStats } from './informer.js';
import type { RestClient } from './rest.js';
import { ClusterIndex, parseKey } from './cluster-index.js';
import { shareUnchanged, trimNode, trimService } from './trim.js';
import { packSlice, type PackedSlice } from './packed-slice.js';

/** Failure reasons the allocating edge writes into the condition (they matter on edges that follow status). */
export const FAILURE_REASONS: ReadonlySet<string> = new Set(['InvalidRequest', 'RequestRefused', 'NoPool', 'PoolExhausted', 'SharingConflict', 'UnsupportedProtocol']);

/** Bytes of the spec digest: a multiple of 3, so it is the first SPEC_CHARS characters of the base64 text. */
const SPEC_BYTES = 18;
const SPEC_CHARS = (SPEC_BYTES / 3) * 4;
const STATUS_BYTES = 12;

/**
 * What reconciliation reads from a Service, as one string of 40 base64
 * characters: a digest of its spec, uid, labels and annotations (the first
 * 24), then one of the addresses in status and a failure reported in our
 * condition — compared on their own, since a change there alone is most
 * often the echo of our own status write. (One digest buffer turned into
 * text once: a concatenation of two strings would keep both.)
 */
export function serviceFingerprint(svc: V1Service): string {
  const md = svc.metadata;
  const c = svc.status?.conditions?.find((x) => x.type === CONDITION_ADVERTISED);
  const failed = c && FAILURE_REASONS.has(c.reason) ? c.reason : '';
  const out = Buffer.allocUnsafe(SPEC_BYTES + STATUS_BYTES);
  createHash('sha1').update(JSON.stringify([md?.uid, svc.spec, md?.labels, md?.annotations])).digest().copy(out, 0, 0, SPEC_BYTES);
  createHash('sha1').update(JSON.stringify([ingressAddresses(svc), failed])).digest().copy(out, SPEC_BYTES, 0, STATUS_BYTES);
  return out.toString('base64');
}

/**
 * How a Service's new fingerprint differs from the one seen before:
 * 'same', 'status' (only the addresses or failure in status changed) or
 * 'changed' (anything else, or first seen).
 */
export function fingerprintChange(before: string | undefined, now: string): 'same' | 'status' | 'changed' {
  if (before === now) return 'same';
  if (before === undefined || before.length !== now.length || before.slice(0, SPEC_CHARS) !== now.slice(0, SPEC_CHARS)) return 'changed';
  return 'status';
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
  private readonly fingerprints = new Map<string, string>();

  constructor(o: ClusterCacheOptions) {
    const common = { rest: o.rest, logger: o.logger, onListed: o.onListed };
    this.services = new ResilientInformer<V1Service>({
      ...common,
      name: 'services',
      path: '/api/v1/services',
      project: trimService,
      share: shareUnchanged,
      onEvent: (ev, svc) => {
        const key = serviceKey(svc);
        o.onServiceSeen(key);
        if (ev === 'delete') {
          this.fingerprints.delete(key);
          o.onDirty(key);
          return;
        }
        const fp = serviceFingerprint(svc);
        const change = fingerprintChange(this.fingerprints.get(key), fp);
        if (change === 'same') return;
        this.fingerprints.set(key, fp);
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
