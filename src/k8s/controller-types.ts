// The controller's public shapes: what it is given and what it reports.
import type { EdgelbConfig } from '../config/types.js';
import type { Logger } from '../log/logger.js';
import type { DesiredConfig } from '../model/desired.js';
import type { KubeConfig } from './kubeconfig.js';
import type { InformerStats } from './informer.js';
import type { DesiredStateSink } from './sink.js';
import type { computeService } from './service-compute.js';

export interface KubernetesControllerOptions {
  /** An EdgelbConfig fits; only kubernetes, pools and datapath.mode/dispatch and the per-Service caps are read. */
  config: DesiredConfig & Pick<EdgelbConfig, 'kubernetes'>;
  /** Overrides config.kubernetes.kubeconfig; empty = in-cluster / $KUBECONFIG. */
  kubeconfigPath?: string;
  /** An already loaded KubeConfig (tests); wins over paths. */
  kubeConfig?: KubeConfig;
  /** This edge's name: Lease identity and Event source. */
  nodeName: string;
  /**
   * This machine, to tell two edges apart that present the same name.
   * Default: derived from /etc/machine-id (a restart on the same machine is
   * the same instance), else random per process.
   */
  instanceId?: string;
  /**
   * This edge's own addresses (node.address, node.address6, its interfaces'):
   * endpoints and node addresses among them are refused, and the other
   * edges learn them from this edge's presence Lease.
   */
  ownAddresses?: readonly string[];
  logger: Logger;
  sink: DesiredStateSink;
  /** Whether this edge advertises until setAdvertising() says otherwise (the agent starts with false). Default true. */
  advertising?: boolean;
  /** Batching window for informer events (ms). */
  debounceMs?: number;
  /** Services reconciled per round (a larger change takes several rounds); default ROUND_SIZE. */
  roundSize?: number;
  /** Backend and source-range entries a round computes before it leaves the remaining Services to the next one; default ROUND_BACKENDS. */
  roundBackends?: number;
  /** Concurrent status writes. */
  statusConcurrency?: number;
  /** The per-Service computation (tests put a failing one in); default computeService. */
  compute?: typeof computeService;
}

export interface ControllerStatus {
  connected: boolean;
  synced: boolean;
  /** Every Service known at the first sync has been computed once (removals allowed from then on). */
  firstPassDone: boolean;
  leader: boolean;
  /** Current Lease holder as last read ('' = unknown/none). */
  leaderIdentity: string;
  /** Watch (re)starts beyond the first one per informer. */
  watchRestarts: number;
  /** Lists beyond the initial one per informer (relists after 410 or outage). */
  relists: number;
  informers: Record<string, InformerStats>;
  /** Why the API server is not reached, naming the informer ('' when connected or nothing failed yet). */
  lastError: string;
  /** Services edgelb handles. */
  services: number;
  /** Frontends the sink accepted. */
  frontends: number;
  /** Frontends not served by this edge, by reason. */
  rejected: Record<string, number>;
  /** Backends summed over frontends (a pod serving two ports counts twice). */
  endpoints: number;
  /** Distinct addresses in use per pool (from allocations or status). */
  pools: { pool: string; used: number }[];
  vips: number;
  /** Services waiting for an address (refused, exhausted...). */
  unallocated: number;
  advertisingEdges: string[];
  /** Another machine presents this edge's name (its instance id), or null. */
  duplicateName: string | null;
  statusWritesPending: number;
  statusWrites: number;
  eventsPending: number;
  sinkErrors: number;
}
