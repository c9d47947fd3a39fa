// Read-only view of the cluster for a Kubernetes node: which frontends have
// backends here. The node never allocates or writes status; it follows the
// addresses the edges' leader wrote into status.loadBalancer.ingress.
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import type { DatapathConfig, KubernetesConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';
import { ResilientInformer } from '../k8s/informer.js';
import { KubeConfig } from '../k8s/kubeconfig.js';
import { RestClient } from '../k8s/rest.js';
import { trimNode, trimService, trimSlice } from '../k8s/trim.js';
import { computeDesiredState } from '../model/desired.js';
import { ingressAddresses, isOurs, serviceKey } from '../model/service.js';
import type { DesiredService } from '../model/types.js';

export interface LocalServicesOptions {
  kubeconfig: string;
  kubernetes: Pick<KubernetesConfig, 'loadBalancerClass' | 'defaultClass'>;
  datapath: Pick<DatapathConfig, 'mode' | 'dispatch'>;
  logger: Logger;
  /** Receives the complete desired frontends each time something changed. */
  onChange: (services: DesiredService[]) => void;
  debounceMs?: number;
}

/**
 * Every frontend of our Services, from cached objects, at the addresses the
 * edges' leader wrote into status (the one whole-cluster desired state of
 * src/model; the edge's controller computes the same per Service), read
 * through acceptanceSlices: the node lists every pod an edge may send to.
 */
export function localDesired(
  services: readonly V1Service[],
  slices: readonly V1EndpointSlice[],
  nodes: readonly V1Node[],
  o: Pick<LocalServicesOptions, 'kubernetes' | 'datapath'>,
): DesiredService[] {
  const ours = services.filter((svc) => isOurs(svc, o.kubernetes));
  const allocations = new Map(ours.map((svc) => [serviceKey(svc), ingressAddresses(svc).map((ip) => ({ ip, pool: '' }))]));
  return computeDesiredState(ours, acceptanceSlices(slices), [...nodes], { datapath: o.datapath, pools: [] }, allocations).services;
}

/**
 * The slices as a node reads them. The node accepts an option only towards
 * one of the frontend's pods here, and the edges start sending to a pod the
 * moment its endpoint turns ready — an update this node receives no sooner
 * than they do, so a SYN can arrive first and be dropped (twice in a row
 * when a second pod is added a retransmission later: a failed request in a
 * rolling update). A pod's endpoint is listed, not ready, from the moment it
 * has an address, well before it turns ready: the node takes that as the
 * moment to accept it. So every endpoint listed that is not ready is read as
 * serving-but-terminating: accepted in options, never picked for new ipip
 * flows while a ready pod is here (node-datapath localServiceEntries).
 */
export function acceptanceSlices(slices: readonly V1EndpointSlice[]): V1EndpointSlice[] {
  return slices.map((s) => ({
    ...s,
    endpoints: (s.endpoints ?? []).map((ep) => {
      const c = ep.conditions;
      const ready = c?.ready ?? true;
      if (ready && !(c?.terminating ?? false)) return ep;
      return { ...ep, conditions: { ready: false, serving: true, terminating: true } };
    }),
  }));
}

export class LocalServices {
  private readonly services: ResilientInformer<V1Service>;
  private readonly slices: ResilientInformer<V1EndpointSlice>;
  private readonly nodes: ResilientInformer<V1Node>;
  private readonly rest: RestClient;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly o: LocalServicesOptions) {
    this.rest = new RestClient(KubeConfig.load(o.kubeconfig), 8);
    const onEvent = () => this.schedule();
    const common = { rest: this.rest, logger: o.logger, onEvent, onListed: onEvent };
    this.services = new ResilientInformer<V1Service>({ ...common, name: 'services', path: '/api/v1/services', project: trimService });
    this.slices = new ResilientInformer<V1EndpointSlice>({ ...common, name: 'endpointslices', path: '/apis/discovery.k8s.io/v1/endpointslices', project: trimSlice });
    this.nodes = new ResilientInformer<V1Node>({ ...common, name: 'nodes', path: '/api/v1/nodes', project: trimNode });
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      // Until every cache has listed once, a partial view would remove
      // frontends that are merely not loaded yet.
      if (![this.services, this.slices, this.nodes].every((i) => i.stats().synced)) return;
      // A failure here (a computation or a map write) must not end the node
      // agent from inside a timer: what is programmed stays, the next
      // change tries again.
      try {
        this.o.onChange(localDesired(this.services.list(), this.slices.list(), this.nodes.list(), this.o));
      } catch (e) {
        this.o.logger.error({ err: e }, 'local services not programmed; the previous ones stay until the next change');
      }
    }, this.o.debounceMs ?? 50);
  }

  async start(): Promise<void> {
    await Promise.all([this.services.start(), this.slices.start(), this.nodes.start()]);
  }

  connected(): boolean {
    return [this.services, this.slices, this.nodes].every((i) => i.stats().connected);
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await Promise.all([this.services.stop(), this.slices.stop(), this.nodes.stop()]);
    this.rest.close();
  }
}
