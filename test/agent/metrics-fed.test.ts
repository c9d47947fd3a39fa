// Metrics the README promises must say what happened, not sit at zero:
// Kubernetes watch restarts per resource and the time each change took to
// reach the datapath and BGP (edgelb_reconcile_seconds).
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, type AgentParts } from '../../src/agent/agent.js';
import { ApplyTimer } from '../../src/agent/apply-timer.js';
import { Metrics } from '../../src/agent/metrics.js';
import { loadConfigFile } from '../../src/config/load.js';
import { silentLogger } from '../../src/log/logger.js';

const source = {
  serviceCounters: () => [], dropCounters: () => [], bgpPeers: () => [], bfdSessions: () => [], poolUsage: () => [],
  rejectedFrontends: () => ({}), duplicateName: () => false, ready: () => ({ ready: true, problems: [] }),
};

const sample = (text: string, name: string, labels: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(' ').pop());
};

test('edgelb_kubernetes_watch_restarts_total counts each informer\'s restarts, as the controller counts them', async (t) => {
  let restarts = [{ resource: 'services', restarts: 0 }, { resource: 'endpointslices', restarts: 0 }];
  const m = new Metrics({ ...source, watchRestarts: () => restarts });
  t.is(sample(await m.render(), 'edgelb_kubernetes_watch_restarts_total', 'resource="services"'), 0);
  restarts = [{ resource: 'services', restarts: 3 }, { resource: 'endpointslices', restarts: 1 }];
  const text = await m.render();
  t.is(sample(text, 'edgelb_kubernetes_watch_restarts_total', 'resource="services"'), 3);
  t.is(sample(text, 'edgelb_kubernetes_watch_restarts_total', 'resource="endpointslices"'), 1);
});

test('edgelb_reconcile_seconds observes every change handed to the datapath and to BGP, by target; a failed one is not a latency', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-metrics-fed-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'edgelb.yaml');
  writeFileSync(file, 'node: { name: edge-m, routerId: 10.0.0.11, asn: 64512, uplink: eth0 }\npools: [{ name: p, cidrs: [10.96.100.0/24] }]\ncontrol: { socket: /nonexistent/control.sock }\nmetrics: { listen: "" }\n');
  const timer = new ApplyTimer();
  const agent = new Agent(loadConfigFile(file), file, silentLogger(), { applyTimer: timer } as AgentParts);
  t.is(timer.time('datapath', () => 7), 7);
  timer.time('datapath', () => undefined);
  await timer.timeAsync('bgp', async () => { await new Promise((r) => setTimeout(r, 20)); });
  await t.throwsAsync(timer.timeAsync('bgp', async () => { throw new Error('gobgpd away'); }));
  t.throws(() => timer.time('datapath', () => { throw new Error('map full'); }));
  const text = await agent.metrics.render();
  t.is(sample(text, 'edgelb_reconcile_seconds_count', 'target="datapath"'), 2);
  t.is(sample(text, 'edgelb_reconcile_seconds_count', 'target="bgp"'), 1);
  t.true(sample(text, 'edgelb_reconcile_seconds_sum', 'target="bgp"')! >= 0.015);
});
