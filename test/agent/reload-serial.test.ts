// Two reloads at once (SIGHUP while `edgelb reload` is applying, or two
// operators): each is applied whole, one after the other, so every part and
// the agent itself end on the same, last file.
import test from 'ava';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, type AgentParts } from '../../src/agent/agent.js';
import { loadConfigFile } from '../../src/config/load.js';
import { silentLogger } from '../../src/log/logger.js';
import type { EdgelbConfig } from '../../src/config/types.js';

const text = (pool: string, cidr: string) =>
  `node: { name: edge-r, routerId: 10.0.0.11, asn: 64512, uplink: eth0 }\npools: [{ name: ${pool}, cidrs: [${cidr}] }]\ncontrol: { socket: /nonexistent/control.sock }\nmetrics: { listen: "" }\n`;

test('a reload that comes while another is being applied waits for it: every part ends on the last file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-reload-serial-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'edgelb.yaml');
  writeFileSync(file, text('first', '10.96.100.0/24'));
  const seen: { part: string; pool: string }[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  let calls = 0;
  const part = (name: string, slow: boolean) => ({
    name,
    start: async () => undefined,
    stop: async () => undefined,
    health: () => ({ ok: true, detail: '' }),
    reload: async (c: EdgelbConfig) => {
      // The first reload's BGP step waits on gobgpd.
      if (slow && calls++ === 0) await gate;
      seen.push({ part: name, pool: c.pools[0]!.name });
    },
  });
  const parts = { bgp: part('bgp', true), kubernetes: part('kubernetes', false) } as unknown as AgentParts;
  const agent = new Agent(loadConfigFile(file), file, silentLogger(), parts);

  const first = agent.reload();
  await new Promise((r) => setTimeout(r, 50));
  writeFileSync(file, text('second', '10.96.200.0/24'));
  const second = agent.reload();
  await new Promise((r) => setTimeout(r, 50));
  release();
  await Promise.all([first, second]);

  t.deepEqual(seen.filter((s) => s.part === 'kubernetes').at(-1), { part: 'kubernetes', pool: 'second' }, JSON.stringify(seen));
  t.deepEqual(seen.filter((s) => s.part === 'bgp').at(-1), { part: 'bgp', pool: 'second' }, JSON.stringify(seen));
  t.is(agent.currentConfig.pools[0]?.name, 'second');
});

test('the hash a reload reports is of the bytes it applied, not of the file as it is once the parts are done', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-reload-hash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'edgelb.yaml');
  writeFileSync(file, text('first', '10.96.100.0/24'));
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const bgp = { name: 'bgp', start: async () => undefined, stop: async () => undefined, health: () => ({ ok: true, detail: '' }), reload: () => gate };
  const agent = new Agent(loadConfigFile(file), file, silentLogger(), { bgp } as unknown as AgentParts);
  writeFileSync(file, text('applied', '10.96.150.0/24'));
  const applied = createHash('sha256').update(readFileSync(file)).digest('hex').slice(0, 12);
  const reload = agent.reload();
  await new Promise((r) => setTimeout(r, 50));
  writeFileSync(file, text('edited', '10.96.200.0/24')); // the operator saves again meanwhile
  release();
  t.regex(await reload, new RegExp(`sha256 ${applied}`));
  t.is(agent.configDigest, applied);
  t.is(agent.currentConfig.pools[0]?.name, 'applied');
});

test('a part that fails to apply a reload (the checks passed) leaves no part on the new file: those done and the failing one get the configuration in force back; the reload fails naming the part, and /metrics says so', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-reload-back-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'edgelb.yaml');
  writeFileSync(file, text('first', '10.96.100.0/24'));
  const holds: Record<string, string> = { datapath: 'first', bgp: 'first', kubernetes: 'first' };
  let failBgp = true;
  const part = (name: string) => ({
    name,
    start: async () => undefined,
    stop: async () => undefined,
    health: () => ({ ok: true, detail: '' }),
    // What a scrape reads of each part.
    drops: () => [], counterRows: () => [], peers: () => [], poolUsage: () => [], watchRestarts: () => [], view: () => ({ rejected: {}, duplicateName: null }),
    reload: async (c: EdgelbConfig) => {
      holds[name] = c.pools[0]!.name; // taken, at least in part, before failing
      if (name === 'bgp' && failBgp && c.pools[0]!.name !== 'first') throw new Error('gobgpd refused the policy');
    },
  });
  const parts = { datapath: part('datapath'), bgp: part('bgp'), kubernetes: part('kubernetes') } as unknown as AgentParts;
  const agent = new Agent(loadConfigFile(file), file, silentLogger(), parts);
  const digest = agent.configDigest;
  const metric = async (name: string): Promise<string> => {
    const m = new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, 'm').exec(await agent.metrics.registry.metrics());
    return m ? `${m[1] ?? ''} ${m[2]}`.trim() : 'absent';
  };
  t.is(await metric('edgelb_config_last_reload_successful'), '1');
  t.is(await metric('edgelb_config_info'), `{sha256="${digest}"} 1`);
  const startedAt = Number(await metric('edgelb_config_last_reload_success_timestamp_seconds'));

  writeFileSync(file, text('second', '10.96.200.0/24'));
  const err = await t.throwsAsync(agent.reload());
  t.regex(err!.message, /the bgp part could not apply it \(gobgpd refused the policy\); every part is back on the configuration in force/);
  t.deepEqual(holds, { datapath: 'first', bgp: 'first', kubernetes: 'first' });
  t.is(agent.currentConfig.pools[0]?.name, 'first');
  t.is(agent.configDigest, digest);
  t.is(await metric('edgelb_config_last_reload_successful'), '0');
  t.is(await metric('edgelb_config_info'), `{sha256="${digest}"} 1`);

  failBgp = false;
  await new Promise((r) => setTimeout(r, 20));
  t.regex(await agent.reload(), /^reloaded /);
  t.deepEqual(holds, { datapath: 'second', bgp: 'second', kubernetes: 'second' });
  t.is(await metric('edgelb_config_last_reload_successful'), '1');
  t.is(await metric('edgelb_config_info'), `{sha256="${agent.configDigest}"} 1`);
  t.not(agent.configDigest, digest);
  t.true(Number(await metric('edgelb_config_last_reload_success_timestamp_seconds')) > startedAt);
});
