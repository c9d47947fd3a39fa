// Prometheus metrics and health endpoints. Gauges and counters mirror the
// agent's state at scrape time (collect callbacks), so there is one source
// of truth: the components' own counters and the datapath's per-CPU maps.
import { createServer, type Server, type ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../log/logger.js';
import { parseHostPort } from '../net/l4.js';
import { closeNow } from './http-close.js';
import { limitScrapeServer } from './http-limits.js';
import { REJECT_REASONS } from '../model/types.js';
import type { BgpCounters } from './agent.js';
import { serviceMetricsText, type ServiceCounterRow } from './service-metrics.js';

/** What the BGP families read before there is a speaker. */
export const NO_BGP_COUNTERS: Readonly<BgpCounters> = { announces: 0, withdraws: 0, resyncs: 0, ribFullReads: 0, adjOutFullReads: 0 };

export interface MetricsSource {
  /**
   * Per frontend (VIP:port/proto) and per backend packet/byte counters, read
   * as they are iterated (a scrape pulls them a chunk at a time).
   */
  serviceCounters(): Iterable<ServiceCounterRow>;
  dropCounters(): { reason: string; packets: number }[];
  bgpPeers(): { peer: string; up: boolean }[];
  /** VIP paths sent to gobgpd, full re-syncs after gobgpd lost its state (restarted) and full reads of its RIB and of peers' adj-out, since the agent started. */
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
  /** The configuration in force (its sha256 prefix, as status shows it), whether the last reload was taken, and when the one in force was applied. */
  config?(): { hash: string; lastReloadOk: boolean; appliedAtMs: number };
}

export class Metrics {
  readonly registry = new Registry();
  readonly announces: Counter;
  readonly withdraws: Counter;
  readonly watchRestarts: Counter;
  readonly reconcileSeconds: Histogram;
  private server: Server | null = null;

  constructor(private readonly source: MetricsSource) {
    const r = this.registry;
    collectDefaultMetrics({ register: r, prefix: 'edgelb_process_' });
    const src = this.source;
    new Gauge({
      name: 'edgelb_datapath_drops', help: 'Packets dropped by the datapath, by reason', labelNames: ['reason'], registers: [r],
      collect() { this.reset(); for (const d of src.dropCounters()) this.set({ reason: d.reason }, d.packets); },
    });
    new Gauge({
      name: 'edgelb_bgp_peer_up', help: '1 when the BGP session is established', labelNames: ['peer'], registers: [r],
      collect() { this.reset(); for (const p of src.bgpPeers()) this.set({ peer: p.peer }, p.up ? 1 : 0); },
    });
    new Gauge({
      name: 'edgelb_config_info', help: 'The configuration in force: 1, labelled with its sha256 prefix (as edgelb status shows it)', labelNames: ['sha256'], registers: [r],
      collect() { this.reset(); const c = src.config?.(); if (c) this.set({ sha256: c.hash }, 1); },
    });
    new Gauge({
      name: 'edgelb_config_last_reload_successful', help: '1 when the last reload was applied (or none was tried since start), 0 when it was refused or failed', registers: [r],
      collect() { const c = src.config?.(); this.set(c === undefined || c.lastReloadOk ? 1 : 0); },
    });
    new Gauge({
      name: 'edgelb_config_last_reload_success_timestamp_seconds', help: 'When the configuration in force was applied (agent start or the last successful reload), Unix seconds', registers: [r],
      collect() { const c = src.config?.(); if (c) this.set(c.appliedAtMs / 1000); },
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
          this.inc(pick(src.bgpCounters?.() ?? NO_BGP_COUNTERS));
        },
      });
    this.announces = bgpCounter('edgelb_bgp_announces_total', 'VIP announcements sent to gobgpd', (c) => c.announces);
    this.withdraws = bgpCounter('edgelb_bgp_withdraws_total', 'VIP withdrawals sent to gobgpd', (c) => c.withdraws);
    bgpCounter('edgelb_bgp_gobgpd_resyncs_total', 'Times gobgpd was found without its state (restarted) and peers, policy and every VIP were applied again', (c) => c.resyncs);
    bgpCounter('edgelb_bgp_rib_full_reads_total', 'Reads of gobgpd\'s whole global RIB: each VIP change, drain and reload; an idle reconcile round only when gobgpd\'s path counts changed, and every 15th', (c) => c.ribFullReads);
    bgpCounter('edgelb_bgp_adjout_full_reads_total', 'Reads of one established peer\'s whole adjacency-out by the adj-out check (every 5th reconcile round): only when its path count differs from what it should get, after a change or a session reset, and every 6th check', (c) => c.adjOutFullReads);
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

  /**
   * The exposition text: the registry's families, then the per-frontend and
   * per-backend ones (service-metrics.ts), which come in chunks — the
   * datapath's counter maps are read and the text written a step at a time.
   */
  async *chunks(): AsyncGenerator<string> {
    yield await this.registry.metrics();
    yield* serviceMetricsText(this.source.serviceCounters());
  }

  /** The whole exposition text as one string (the HTTP endpoint streams chunks()). */
  async render(): Promise<string> {
    let text = '';
    for await (const c of this.chunks()) text += c;
    return text;
  }

  async listen(address: string, log: Logger): Promise<void> {
    const hp = parseHostPort(address);
    if (!hp) throw new Error(`metrics.listen: cannot parse ${address}`);
    const { address: host, port } = hp;
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics') {
        void this.stream(res).catch((e: unknown) => {
          log.error({ err: e }, 'metrics collection failed');
          if (!res.headersSent) res.writeHead(500).end();
          else res.destroy();
        });
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

  /** chunks() to the response as they come, waiting for the socket when it is full; a client gone stops the scrape. */
  private async stream(res: ServerResponse): Promise<void> {
    let started = false;
    for await (const c of this.chunks()) {
      if (res.destroyed) return;
      if (!started) {
        res.writeHead(200, { 'content-type': this.registry.contentType });
        started = true;
      }
      if (!res.write(c)) await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
    res.end();
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    await closeNow(s);
  }
}
