// The agent on a Kubernetes node: the node datapath (option/IPIP ingress,
// reply rewrite on egress) on the fabric interface, the probe marker in
// front of it, the probe responder, and — given a kubeconfig — this node's
// local frontends (needed for IPIP and for checking option VIPs).
import type { Logger } from '../log/logger.js';
import { BpfObject, type TcAttachment } from '../datapath/loader.js';
import { bpfObjectPath } from '../assets.js';
import { NodeDatapath, NODE_DEFAULTS } from '../datapath/node-datapath.js';
import { ProbeResponder } from '../probe/responder.js';
import { PROBE_PORT } from '../probe/wire.js';
import { LocalServices } from './local-services.js';
import { requireBpffs } from '../datapath/bpffs.js';
import type { DatapathConfig, KubernetesConfig } from '../config/types.js';
import { EdgeNeighbourSync } from './edge-neighbours.js';
import { NodeMetrics } from './metrics.js';

export interface NodeAgentOptions {
  interface: string;
  nodeName: string;
  nodeIp?: string;
  /** This node's IPv6 address: IP6IP6 must be addressed to it. */
  nodeIp6?: string;
  /** The edges' addresses (CIDRs): the only senders of DSR options and IPIP this node accepts. */
  edgeSources: readonly string[];
  /** Routers the edges' IPIP crosses (see NodeDatapathOptions.edgeRouters): trusted for IPIP only. */
  edgeRouters?: readonly string[];
  /** New flows per CPU per window (see NodeDatapathOptions.flowInsertLimit). */
  flowInsertLimit?: number;
  /** "ADDRESS:PORT" for Prometheus metrics; absent = none. */
  metricsListen?: string;
  pinPath?: string;
  probePort?: number;
  kubeconfig?: string;
  kubernetes: Pick<KubernetesConfig, 'loadBalancerClass' | 'defaultClass'>;
  datapath: Pick<DatapathConfig, 'mode' | 'dispatch'>;
  logger: Logger;
}

export class NodeAgent {
  private dp: NodeDatapath | null = null;
  private probeObj: BpfObject | null = null;
  private probeTc: TcAttachment | null = null;
  private responder: ProbeResponder | null = null;
  private local: LocalServices | null = null;
  private neighbours: EdgeNeighbourSync | null = null;
  private metrics: NodeMetrics | null = null;
  frontends = 0;
  /** What the last programming of the local frontends left out (metrics). */
  private programmed: { unprogrammed: number; conflicts: number; secondChanceSkipped: number } = { unprogrammed: 0, conflicts: 0, secondChanceSkipped: 0 };

  constructor(private readonly o: NodeAgentOptions) {}

  async start(): Promise<void> {
    const o = this.o;
    if (o.pinPath) requireBpffs(o.pinPath, '--pin-path');
    const dp = NodeDatapath.open({ ...(o.pinPath ? { pinPath: o.pinPath } : {}), ...(o.nodeIp ? { nodeIp: o.nodeIp } : {}), ...(o.nodeIp6 ? { nodeIp6: o.nodeIp6 } : {}), edgeSources: o.edgeSources, ...(o.edgeRouters ? { edgeRouters: o.edgeRouters } : {}), ...(o.flowInsertLimit !== undefined ? { flowInsertLimit: o.flowInsertLimit } : {}), logger: o.logger });
    this.dp = dp;
    dp.attach(o.interface);
    this.neighbours = new EdgeNeighbourSync({ ifname: o.interface, sources: [...o.edgeSources, ...(o.edgeRouters ?? [])], trust: (ip, mac, readAt) => dp.trustEdgeNeighbour(ip, mac, readAt), now: () => dp.nowNs(), logger: o.logger });
    await this.neighbours.start().catch((e: unknown) => o.logger.warn({ err: e }, 'could not read the neighbour table; edges are learnt from their ARP only'));
    if (o.metricsListen) {
      this.metrics = new NodeMetrics({
        counters: () => dp.counters(),
        flows: () => dp.flowCounts(),
        edgeNeighbours: () => dp.edgeNeighbours().length,
        attached: () => {
          const st = dp.attachState();
          return [
            { program: 'node_ingress', interface: o.interface, attached: st?.ingress.attached ?? false },
            { program: 'node_egress', interface: o.interface, attached: st?.egress.attached ?? false },
          ];
        },
        programming: () => this.programmed,
        probes: () => ({ answered: this.responder?.answered ?? 0, refused: this.responder?.refused ?? 0, overLimit: this.responder?.overLimit ?? 0 }),
      });
      await this.metrics.listen(o.metricsListen, o.logger);
    }
    // The marker must see the probe before the node program does. A fixed
    // handle, replaced: a handover leaves the filter for the next agent and a
    // crash leaves it behind, and a handle of the kernel's choosing made each
    // start add one more.
    this.probeObj = BpfObject.load(bpfObjectPath('node_probe'), { initialValues: { 'node_pro.rodata': rodataPort(o.probePort ?? PROBE_PORT) } });
    this.probeTc = this.probeObj.program('node_probe').attachTc(o.interface, 'ingress', { priority: NODE_DEFAULTS.tcPriority - 1, handle: NODE_DEFAULTS.tcHandle, replace: true });
    this.responder = new ProbeResponder({ port: o.probePort ?? PROBE_PORT, allowSources: o.edgeSources });
    await this.responder.start();
    if (o.kubeconfig) {
      this.local = new LocalServices({
        kubeconfig: o.kubeconfig, kubernetes: o.kubernetes, datapath: o.datapath, logger: o.logger,
        onChange: (services) => {
          const r = this.dp?.applyServices(services, { name: o.nodeName, ...(o.nodeIp ? { ip: o.nodeIp } : {}) });
          this.frontends = services.length;
          if (r) this.programmed = { unprogrammed: r.unprogrammed, conflicts: r.conflicts.length, secondChanceSkipped: r.secondChanceSkipped };
          o.logger.info({ frontends: services.length, result: r }, 'local services programmed');
        },
      });
      void this.local.start().catch((e: unknown) => o.logger.error({ err: e }, 'cluster watch failed to start'));
    }
  }

  /** `handover`: leave the programs attached and the flow maps pinned. */
  async stop(mode: 'handover' | 'shutdown'): Promise<void> {
    this.neighbours?.stop();
    await this.metrics?.close();
    await this.local?.stop();
    await this.responder?.stop();
    if (mode === 'shutdown') {
      this.probeTc?.detach();
      this.dp?.detach();
    }
    this.probeObj?.close();
    this.dp?.close();
  }
}

/** node_probe.o's .rodata (libbpf names it after the first 8 characters of the object) holds only `probe_port` (u16). */
function rodataPort(port: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(port);
  return b;
}
