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
import { loadConfigFile } from '../../src/config/load.js';
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
