// Prometheus metrics and health endpoints. Gauges and counters mirror the
// agent's state at scrape time (collect callbacks), so there is one source
// of truth: the components' own counters and the datapath's per-CPU maps.
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../log/logger.js';
import { parseHostPort } from '../net/l4.js';
import { closeNow } from './http-close.js';
import { limitScrapeServer } from './http-limits.js';
import { REJECT_REASONS } from '../model/types.js';
import type { BgpCounters } from './agent.js';

export interface MetricsSource {
  /** Per frontend (VIP:port/proto) and per backend packet/byte counters. */
  serviceCounters(): { frontend: string; backend: string | null; packets: number; bytes: number }[];
  dropCounters(): { reason: string; packets: number }[];
  bgpPeers(): { peer: string; up: boolean }[];
  /** VIP paths sent to gobgpd, full re-syncs after gobgpd lost its state (restarted) and full reads of its RIB, since the agent started. */
  bgpCounters?(): BgpCounters;
  bfdSessions(): { peer: string; up: boolean }[];
  poolUsage(): { pool: string; used: number; size: number }[];
  /** Frontends this edge does not serve, by reason. */
  rejectedFrontends(): Record<string, number>;
  /** Another machine presents this edge's name. */
  duplicateName(): boolean;
  /** Kubernetes watch restarts per resource, since the agent started. */
  watchRestarts?(): { resource: string; restarts: number }[];
  ready(): { ready: boolean; problems: string[] };
}

export class Metrics {
  readonly registry = new Registry();
  readonly announces: Counter;
  readonly withdraws: Counter;
  readonly watchRestarts: Counter;
  readonly reconcileSeconds: Histogram;
  private server: Server | null = null;

  /** One read of the datapath counters per scrape, shared by the four families built from it. */
  private scrape: ReturnType<MetricsSource['serviceCounters']> | null = null;

  constructor(private readonly source: MetricsSource) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'edgelb_process_' });
    const src = { ...this.source, serviceCounters: () => this.scrape ?? this.source.serviceCounters() };
    new Gauge({
      name: 'edgelb_service_packets', help: 'Packets forwarded per frontend (datapath counter)', labelNames: ['frontend'], registers: [r],
      collect() { this.reset(); for (const c of src.serviceCounters()) if (c.backend === null) this.set({ frontend: c.frontend }, c.packets); },
    });
    new Gauge({
      name: 'edgelb_service_bytes', help: 'Bytes forwarded per frontend (datapath counter)', labelNames: ['frontend'], registers: [r],
      collect() { this.reset(); for (const c of src.serviceCounters()) if (c.backend === null) this.set({ frontend: c.frontend }, c.bytes); },
    });
    new Gauge({
      name: 'edgelb_backend_packets', help: 'Packets forwarded per backend', labelNames: ['frontend', 'backend'], registers: [r],
      collect() { this.reset(); for (const c of src.serviceCounters()) if (c.backend !== null) this.set({ frontend: c.frontend, backend: c.backend }, c.packets); },
    });
    new Gauge({
      name: 'edgelb_backend_bytes', help: 'Bytes forwarded per backend', labelNames: ['frontend', 'backend'], registers: [r],
      collect() { this.reset(); for (const c of src.serviceCounters()) if (c.backend !== null) this.set({ frontend: c.frontend, backend: c.backend }, c.bytes); },
    });
    new Gauge({
      name: 'edgelb_datapath_drops', help: 'Packets dropped by the datapath, by reason', labelNames: ['reason'], registers: [r],
      collect() { this.reset(); for (const d of src.dropCounters()) this.set({ reason: d.reason }, d.packets); },
    });
    new Gauge({
      name: 'edgelb_bgp_peer_up', help: '1 when the BGP session is established', labelNames: ['peer'], registers: [r],
      collect() { this.reset(); for (const p of src.bgpPeers()) this.set({ peer: p.peer }, p.up ? 1 : 0); },
    });
    new Gauge({
      name: 'edgelb_bfd_session_up', help: '1 when the BFD session is up', labelNames: ['peer'], registers: [r],
      collect() { this.reset(); for (const p of src.bfdSessions()) this.set({ peer: p.peer }, p.up ? 1 : 0); },
    });
    new Gauge({
      name: 'edgelb_ipam_pool_addresses_used', help: 'Addresses allocated from a pool', labelNames: ['pool'], registers: [r],
      collect() { this.reset(); for (const p of src.poolUsage()) this.set({ pool: p.pool }, p.used); },
    });
    new Gauge({
      name: 'edgelb_ipam_pool_addresses_total', help: 'Addresses a pool can allocate', labelNames: ['pool'], registers: [r],
      collect() { this.reset(); for (const p of src.poolUsage()) this.set({ pool: p.pool }, p.size); },
    });
    new Gauge({
      name: 'edgelb_frontends_rejected', help: 'Frontends this edge does not serve, by reason (each has a Warning Event and the Advertised condition False)', labelNames: ['reason'], registers: [r],
      collect() {
        this.reset();
        const now = src.rejectedFrontends();
        for (const reason of REJECT_REASONS) this.set({ reason }, now[reason] ?? 0);
      },
    });
    new Gauge({
      name: 'edgelb_edge_name_duplicate', help: '1 while another machine presents this edge\'s node.name (only one of them may allocate)', registers: [r],
      collect() { this.set(src.duplicateName() ? 1 : 0); },
    });
    new Gauge({
      name: 'edgelb_ready', help: '1 when datapath, gobgpd and the cluster connection are all good', registers: [r],
      collect() { this.set(src.ready().ready ? 1 : 0); },
    });
    // The speaker keeps the counts (it is what sends); these read them at scrape time.
    const bgpCounter = (name: string, help: string, pick: (c: BgpCounters) => number) =>
      new Counter({
        name, help, registers: [r],
        collect() {
          this.reset();
          this.inc(pick(src.bgpCounters?.() ?? { announces: 0, withdraws: 0, resyncs: 0, ribFullReads: 0 }));
        },
      });
    this.announces = bgpCounter('edgelb_bgp_announces_total', 'VIP announcements sent to gobgpd', (c) => c.announces);
    this.withdraws = bgpCounter('edgelb_bgp_withdraws_total', 'VIP withdrawals sent to gobgpd', (c) => c.withdraws);
    bgpCounter('edgelb_bgp_gobgpd_resyncs_total', 'Times gobgpd was found without its state (restarted) and peers, policy and every VIP were applied again', (c) => c.resyncs);
    bgpCounter('edgelb_bgp_rib_full_reads_total', 'Reads of gobgpd\'s whole global RIB: each VIP change, drain and reload; an idle reconcile round only when gobgpd\'s path counts changed, and every 15th', (c) => c.ribFullReads);
    this.watchRestarts = new Counter({
      name: 'edgelb_kubernetes_watch_restarts_total', help: 'Kubernetes watches restarted (a server timeout, an error, 410 Gone), per resource', labelNames: ['resource'], registers: [r],
      collect() {
        this.reset();
        for (const w of src.watchRestarts?.() ?? []) this.inc({ resource: w.resource }, w.restarts);
      },
    });
    this.reconcileSeconds = new Histogram({
      name: 'edgelb_reconcile_seconds', help: 'Time to apply a change, by target', labelNames: ['target'], registers: [r],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    });
  }

  /** The exposition text, with the per-CPU counter maps read once for the whole scrape. */
  async render(): Promise<string> {
    this.scrape = this.source.serviceCounters();
    try {
      return await this.registry.metrics();
    } finally {
      this.scrape = null;
    }
  }

  async listen(address: string, log: Logger): Promise<void> {
    const hp = parseHostPort(address);
    if (!hp) throw new Error(`metrics.listen: cannot parse ${address}`);
    const { address: host, port } = hp;
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics') {
        this.render().then(
          (text) => {
            res.writeHead(200, { 'content-type': this.registry.contentType });
            res.end(text);
          },
          (e: unknown) => {
            log.error({ err: e }, 'metrics collection failed');
            res.writeHead(500).end();
          },
        );
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        const r = this.source.ready();
        res.writeHead(r.ready ? 200 : 503, { 'content-type': 'text/plain' }).end(r.ready ? 'ready\n' : `not ready: ${r.problems.join('; ')}\n`);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('try /metrics, /healthz or /readyz\n');
      }
    });
    limitScrapeServer(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    await closeNow(s);
  }
}
