// A reload as the agent runs it (file read, every part's check, every part's
// reload) reaching a real edge datapath: the program is loaded (not attached:
// packets go through BPF_PROG_TEST_RUN), and what a reload says it applied
// must be what the next packet meets.
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, type AgentParts } from '../../src/agent/agent.js';
import { DatapathAgentPart } from '../../src/agent/datapath-part.js';
import { loadConfigFile, parseConfig } from '../../src/config/load.js';
import { changedAtStartOnly } from '../../src/agent/restart-only.js';
import { silentLogger } from '../../src/log/logger.js';
import { EDGE, VIP, openEdge, service, tcpPacket } from '../datapath/edge-helpers.js';
import { parsePacket } from '../lib/packets.js';

const text = (datapath: string) =>
  [
    `node: { name: edge-dr, routerId: 10.0.0.11, asn: 64512, uplink: eth0, address: ${EDGE} }`,
    'pools: [{ name: p, cidrs: [203.0.113.0/24] }]',
    `datapath: { ${datapath} }`,
    'control: { socket: /nonexistent/control.sock }',
    'metrics: { listen: "" }',
    '',
  ].join('\n');

/** An agent whose datapath part holds a loaded edge program with one IPIP frontend (the part's start would attach it to the uplink). */
function agentWithDatapath(t: ExecutionContext, datapath: string) {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-dp-reload-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'edgelb.yaml');
  writeFileSync(file, text(datapath));
  const config = loadConfigFile(file);
  const dp = openEdge(t, { mtu: config.datapath.mtu });
  dp.applyServices([service({ dispatch: 'ipip' })]);
  const part = new DatapathAgentPart(config, silentLogger(), { kind: 'bypass' });
  Object.assign(part, { dp });
  const agent = new Agent(config, file, silentLogger(), { datapath: part } as AgentParts);
  const outerSource = (sport: number): string => {
    const p = parsePacket(dp.program('xdp').testRun({ data: tcpPacket({ flags: { syn: true }, sport }) }).dataOut);
    t.is(p.inner?.ip.dst, VIP, 'an IPIP packet to the node');
    return p.ip.src;
  };
  return { file, agent, outerSource };
}

test('a reload that sets or clears datapath.ipipSourceCidr changes the IPIP outer sources of the running datapath', async (t) => {
  const { file, agent, outerSource } = agentWithDatapath(t, 'mtu: 1500');
  t.is(outerSource(44000), EDGE, 'no block: the edge address');

  writeFileSync(file, text('mtu: 1500, ipipSourceCidr: 10.99.0.0/24'));
  t.regex(await agent.reload(), /^reloaded /);
  const sources = new Set<string>();
  for (let port = 44000; port < 44032; port++) sources.add(outerSource(port));
  t.true([...sources].every((s) => s.startsWith('10.99.0.')), `outer sources after the reload: ${[...sources].join(' ')}`);

  writeFileSync(file, text('mtu: 1500'));
  t.regex(await agent.reload(), /^reloaded /);
  t.is(outerSource(44001), EDGE, 'block removed: the edge address again');
});

test('a reload that changes a setting read only at start is refused, naming each with both values: nothing applied, status unchanged', async (t) => {
  const { file, agent, outerSource } = agentWithDatapath(t, 'mtu: 1500');
  const before = agent.configDigest;
  // A runtime change (the IPIP block) in the same file must not land either.
  writeFileSync(file, text('mtu: 1500, ipipSourceCidr: 10.99.0.0/24, maglevTableSize: 65537, xdp: generic').replace('uplink: eth0', 'uplink: eth1'));
  const err = await t.throwsAsync(agent.reload());
  t.regex(err?.message ?? '', /datapath\.maglevTableSize \(16381 in force, 65537 in the file\)/);
  t.regex(err?.message ?? '', /datapath\.xdp \(native in force, generic in the file\)/);
  t.regex(err?.message ?? '', /node\.uplink \(eth0 in force, eth1 in the file\)/);
  t.regex(err?.message ?? '', /restart the agent/);
  t.regex(err?.message ?? '', /nothing was applied$/);
  t.is(agent.configDigest, before, 'the running config is still the one before');
  const view = agent.status().datapath;
  t.is(view.maglevTableSize, 16381);
  t.deepEqual(view.xdp.map((x) => [x.interface, x.mode]), [['eth0', 'native']]);
  t.is(outerSource(44000), EDGE, 'the IPIP block in the refused file is not in force');
});

test('what a reload applies at once is not among the settings read at start; an IPv6 pool on an IPv4-only edge is', (t) => {
  const base = parseConfig(text('mtu: 1500'), 'a.yaml');
  const runtime = parseConfig(text('mtu: 1400, ipipSourceCidr: 10.99.0.0/24, mode: snat, dispatch: ipip, maxPortsPerService: 10').replace('asn: 64512', 'asn: 64513').replace('203.0.113.0/24', '198.18.0.0/24'), 'b.yaml');
  t.deepEqual(changedAtStartOnly(base, runtime), []);
  const v6 = parseConfig(text('mtu: 1500').replace('[203.0.113.0/24]', '[203.0.113.0/24, "2001:db8:5::/120"]'), 'c.yaml');
  t.deepEqual(changedAtStartOnly(base, v6), ['IPv6 serving (datapath.ipv6, or with ipv6 auto whether a pool is IPv6) (off in force, on in the file)']);
  t.deepEqual(changedAtStartOnly(base, parseConfig(text('mtu: 1500').replace('name: edge-dr', 'name: edge-b'), 'd.yaml')), ['node.name (edge-dr in force, edge-b in the file)']);
});
