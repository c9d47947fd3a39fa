// The metrics endpoint against a flood of idle connections: it may listen
// beyond loopback (metrics.listen 0.0.0.0:9472 opens the port in the host
// firewall to everyone), and every connection Node holds costs agent heap
// (NODE_OPTIONS caps it at 512 MB): the agent must not be the one to give.
import test, { type ExecutionContext } from 'ava';
import { connect, createServer, type Socket } from 'node:net';
import { get } from 'node:http';
import { Metrics } from '../../src/agent/metrics.js';
import { NodeMetrics } from '../../src/node-agent/metrics.js';
import { silentLogger } from '../../src/log/logger.js';

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const nodeSource = {
  counters: () => ({}), flows: () => ({ flows: 0, forwardPins: 0 }), edgeNeighbours: () => 0,
  attached: () => [], programming: () => ({ unprogrammed: 0, conflicts: 0, secondChanceSkipped: 0 }), probes: () => ({ answered: 0, refused: 0, overLimit: 0 }),
};

const source = {
  serviceCounters: () => [], dropCounters: () => [], bgpPeers: () => [], bfdSessions: () => [], poolUsage: () => [],
  rejectedFrontends: () => ({}), duplicateName: () => false, ready: () => ({ ready: true, problems: [] }),
};

interface ScrapeEndpoint {
  listen(address: string, log: ReturnType<typeof silentLogger>): Promise<void>;
  close(): Promise<void>;
}

/** Opens 400 idle connections; the endpoint must hold a bounded number and answer /healthz once they end. */
async function floodHoldsBounded(t: ExecutionContext, m: ScrapeEndpoint): Promise<void> {
  const port = await freePort();
  await m.listen(`127.0.0.1:${port}`, silentLogger());
  t.teardown(() => m.close());
  const flood: Socket[] = [];
  try {
    for (let i = 0; i < 400; i++) {
      const s = connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      flood.push(s);
    }
    await Promise.all(flood.map((s) => new Promise<void>((r) => { s.once('connect', () => r()); s.once('close', () => r()); })));
    await new Promise((r) => setTimeout(r, 300));
    const server = (m as unknown as { server: import('node:net').Server }).server;
    const held = await new Promise<number>((r, j) => server.getConnections((e, n) => (e ? j(e) : r(n))));
    t.true(held <= 100, `the process holds ${held} idle connections`);
  } finally {
    for (const s of flood) s.destroy();
  }
  await new Promise((r) => setTimeout(r, 300));
  const status = await new Promise<number>((r, j) => get(`http://127.0.0.1:${port}/healthz`, (res) => { res.resume(); r(res.statusCode ?? 0); }).on('error', j));
  t.is(status, 200);
}

test('a flood of idle connections to metrics.listen holds a bounded number of sockets; the endpoint answers once it ends', async (t) => {
  t.timeout(60_000);
  await floodHoldsBounded(t, new Metrics(source));
});

test('the node agent\'s --metrics-listen holds a bounded number of sockets under the same flood', async (t) => {
  t.timeout(60_000);
  await floodHoldsBounded(t, new NodeMetrics(nodeSource));
});

test('the node agent counts its flow maps once per scrape, for both families that show them', async (t) => {
  let reads = 0;
  const m = new NodeMetrics({ ...nodeSource, flows: () => (reads++, { flows: 7, forwardPins: 3 }) });
  const text = await m.render();
  t.regex(text, /^edgelb_node_flows 7$/m);
  t.regex(text, /^edgelb_node_forward_pins 3$/m);
  t.is(reads, 1);
  await m.render();
  t.is(reads, 2, 'read afresh by the next scrape');
});
