// What /metrics says about BGP after gobgpd was killed with 2 000 VIPs
// announced: the real BGP part (a managed gobgpd in a namespace the test
// makes, no peers) inside an Agent, scraped as Prometheus would.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { BgpAgentPart } from '../../src/agent/bgp-part.js';
import { loadConfigFile } from '../../src/config/load.js';
import { silentLogger } from '../../src/log/logger.js';
import { FAMILY_V4 } from '../../src/bgp/gobgp-client.js';
import type { DesiredVip } from '../../src/model/types.js';
import { createNetns, deleteNetns, nsWrap, uniqueId, waitFor } from '../lib/netns.js';

const N = 2000;

const advertise = { communities: [], largeCommunities: [], localPref: null, med: null, asPathPrepend: 0, peers: [] };
const vips = (from: number, to: number): DesiredVip[] =>
  Array.from({ length: to - from }, (_, k) => ({ address: `198.19.${(from + k) >> 8}.${(from + k) & 255}`, pool: 'big', advertise, services: [] }));

/** One sample's value from the exposition text (0 when absent). */
function sample(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

test(`gobgpd killed with ${N} VIPs announced: /metrics counts the announcements, the withdrawals, the resync and the full RIB and adj-out reads`, async (t) => {
  t.timeout(60_000);
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-bgp-metrics-'));
  const ns = `elbm${uniqueId()}`;
  await createNetns(ns);
  const file = join(dir, 'edgelb.yaml');
  writeFileSync(file, `node: { name: edge-m, routerId: 10.0.0.12, asn: 64512, uplink: eth0 }
bgp:
  gobgp: { socket: ${dir}/gobgp.sock, manage: true }
  bfdd: { runDir: ${dir}/bfdd }
pools: [{ name: big, cidrs: [198.19.0.0/20] }]
control: { socket: ${dir}/control.sock }
metrics: { listen: "" }
`);
  const config = loadConfigFile(file);
  // gobgpd listens on 179 inside the test's namespace only.
  const bgp = new BgpAgentPart(config, silentLogger(), () => true, { wrap: nsWrap(ns), gobgpdLogFile: join(dir, 'gobgpd.log') });
  t.teardown(async () => {
    await bgp.stop('shutdown');
    await deleteNetns(ns);
    rmSync(dir, { recursive: true, force: true });
  });
  const agent = new Agent(config, file, silentLogger(), { bgp });
  await bgp.start();
  await bgp.setVips(vips(0, N));
  await bgp.setVips(vips(10, N)); // 10 withdrawn
  const rib = async () => (await bgp.speaker.client.listPath('GLOBAL', FAMILY_V4).catch(() => [])).length;
  t.is(await rib(), N - 10);
  process.kill(bgp.speaker.gobgpd!.pid!, 'SIGKILL');
  t.truthy(await waitFor(async () => bgp.speaker.resyncs > 0 && (await rib()) === N - 10, 20_000, 100), 'the VIPs are back in the restarted gobgpd');
  const readsBefore = bgp.speaker.ribFullReads;
  const text = await agent.metrics.render();
  const readsAfter = bgp.speaker.ribFullReads; // a reconcile round may run meanwhile
  t.is(sample(text, 'edgelb_bgp_announces_total'), N + (N - 10), 'announced: the first set, then every VIP again after the restart');
  t.is(sample(text, 'edgelb_bgp_withdraws_total'), 10);
  t.is(sample(text, 'edgelb_bgp_gobgpd_resyncs_total'), 1);
  // The two changes, the first round, and the round after the restart read the whole RIB, at least.
  const fullReads = sample(text, 'edgelb_bgp_rib_full_reads_total');
  t.true(fullReads >= 4, `edgelb_bgp_rib_full_reads_total ${fullReads}`);
  t.true(fullReads >= readsBefore && fullReads <= readsAfter, `edgelb_bgp_rib_full_reads_total ${fullReads}, the speaker's count ${readsBefore}…${readsAfter}`);
  t.is(sample(text, 'edgelb_bgp_adjout_full_reads_total'), 0, 'no established peer: no adj-out read');
});
