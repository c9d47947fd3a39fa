// Prometheus metrics of the node side (`edgelb node run --metrics-listen
// ADDR`): drops by reason, the other datapath counters, flows remembered,
// trusted edge neighbours and whether the kernel really runs our two
// programs. Everything is read at scrape time from the pinned maps and the
// kernel, so the numbers are the datapath's, not the agent's memory.
import { createServer, type Server } from 'node:http';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../log/logger.js';
import { closeNow } from '../agent/http-close.js';
import { limitScrapeServer } from '../agent/http-limits.js';
import { parseHostPort } from '../net/l4.js';

export interface NodeMetricsSource {
  /** Summed per-CPU counters by name (drop_* are drops). */
  counters(): Record<string, number>;
  /** Entries in node_flows / node_fwd. */
  flows(): { flows: number; forwardPins: number };
  edgeNeighbours(): number;
  /** Per program: does the kernel run it where we attached it? */
  attached(): { program: string; interface: string; attached: boolean }[];
  /** What the last programming of the local frontends left out (ApplyLocalServicesResult). */
  programming(): { unprogrammed: number; conflicts: number; secondChanceSkipped: number };
  /** The probe responder's answers and refusals. */
  probes(): { answered: number; refused: number; overLimit: number };
}

/** "ADDRESS:PORT" or "[V6]:PORT". */
export function parseListen(address: string): { host: string; port: number } {
  const hp = parseHostPort(address);
  if (!hp) throw new Error(`--metrics-listen: '${address}' is not ADDRESS:PORT (e.g. 0.0.0.0:9101)`);
  return { host: hp.address, port: hp.port };
}

export class NodeMetrics {
  readonly registry = new Registry();
  private server: Server | null = null;
  /** The flow maps counted once per scrape: two families read them, and a count walks four maps of up to 128 Ki entries. */
  private flowsRead: ReturnType<NodeMetricsSource['flows']> | null = null;

  constructor(private readonly source: NodeMetricsSource) {
    const r = this.registry;
    const src = { ...source, flows: () => (this.flowsRead ??= source.flows()) };
    collectDefaultMetrics({ register: r, prefix: 'edgelb_node_process_' });
    new Gauge({
      name: 'edgelb_node_drops', help: 'Packets the node program dropped, by reason', labelNames: ['reason'], registers: [r],
      collect() {
        this.reset();
        for (const [k, v] of Object.entries(src.counters())) if (k.startsWith('drop_')) this.set({ reason: k.slice('drop_'.length) }, v);
      },
    });
    new Gauge({
      name: 'edgelb_node_packets', help: 'Packets by what the node program did with them (datapath counters)', labelNames: ['action'], registers: [r],
      collect() {
        this.reset();
        for (const [k, v] of Object.entries(src.counters())) if (!k.startsWith('drop_')) this.set({ action: k }, v);
      },
    });
    new Gauge({
      name: 'edgelb_node_flows', help: 'Flows remembered (reply tuple → VIP, node_flows entries)', registers: [r],
      collect() { this.set(src.flows().flows); },
    });
    new Gauge({
      name: 'edgelb_node_forward_pins', help: 'IPIP flows pinned to a local pod (node_fwd entries)', registers: [r],
      collect() { this.set(src.flows().forwardPins); },
    });
    new Gauge({
      name: 'edgelb_node_edge_neighbours', help: 'Link-layer senders trusted as edges', registers: [r],
      collect() { this.set(src.edgeNeighbours()); },
    });
    // What the last programming of the local frontends had to leave out.
    const leftOut = [
      ['edgelb_node_frontends_unprogrammed', 'Frontends with a pod on this node that node_services had no room for (traffic to them is dropped here)', 'unprogrammed'],
      ['edgelb_node_frontend_conflicts', 'Frontends two Services claim in their status (the smaller key is programmed)', 'conflicts'],
      ['edgelb_node_second_chance_skipped', 'Second-chance backend entries node_sc_backends had no room for', 'secondChanceSkipped'],
    ] as const;
    for (const [name, help, field] of leftOut) {
      new Gauge({ name, help, registers: [r], collect() { this.set(src.programming()[field]); } });
    }
    new Gauge({
      name: 'edgelb_node_probes', help: 'Path probes by what the responder did: answered, refused (source outside --edge-sources), over_limit (over the rate cap)', labelNames: ['result'], registers: [r],
      collect() {
        const p = src.probes();
        this.set({ result: 'answered' }, p.answered);
        this.set({ result: 'refused' }, p.refused);
        this.set({ result: 'over_limit' }, p.overLimit);
      },
    });
    new Gauge({
      name: 'edgelb_node_program_attached', help: '1 when the kernel runs our program on the interface (queried at scrape time)', labelNames: ['program', 'interface'], registers: [r],
      collect() {
        this.reset();
        for (const a of src.attached()) this.set({ program: a.program, interface: a.interface }, a.attached ? 1 : 0);
      },
    });
  }

  async render(): Promise<string> {
    this.flowsRead = null;
    try {
      return await this.registry.metrics();
    } finally {
      this.flowsRead = null;
    }
  }

  async listen(address: string, log: Logger): Promise<void> {
    const { host, port } = parseListen(address);
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics') {
        this.render().then(
          (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
          (e: unknown) => {
            log.error({ err: e }, 'metrics collection failed');
            res.writeHead(500).end();
          },
        );
      } else if (path === '/healthz') {
        const down = this.source.attached().filter((a) => !a.attached);
        res.writeHead(down.length === 0 ? 200 : 503, { 'content-type': 'text/plain' }).end(down.length === 0 ? 'ok\n' : `not attached: ${down.map((a) => `${a.program} on ${a.interface}`).join(', ')}\n`);
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('try /metrics or /healthz\n');
      }
    });
    limitScrapeServer(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    log.info({ address }, 'node metrics listening');
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = null;
    await closeNow(s);
  }
}
