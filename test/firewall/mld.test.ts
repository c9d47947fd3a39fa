// The host firewall on a switched IPv6 link with MLD snooping: a Linux bridge
// in its own namespace plays the switch (snooping, querier, short timers, and
// unregistered multicast not flooded to the edge's port, as many switches
// do), with the BGP peer's address on it. The edge must keep answering MLD
// queries behind its ruleset, or the switch forgets its solicited-node group
// and stops delivering neighbour solicitations: IPv6 — the BGP session to an
// IPv6 peer included — dies one membership interval after the ruleset is
// applied (260 s with default timers, 3 s here).
import test from 'ava';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { parseConfig } from '../../src/config/load.js';
import { applyRuleset } from '../../src/firewall/apply.js';
import { firewallRuleset } from '../../src/firewall/ruleset.js';

const id = `${process.pid % 10000}${Math.floor(Math.random() * 100)}`;
const SWITCH = `elbmlds${id}`;
const EDGE = `elbmlde${id}`;
const NET6 = `fd00:fe78:${(process.pid % 0xffff).toString(16)}`;
const EDGE6 = `${NET6}::11`;
const PEER6 = `${NET6}::1`;
// Solicited-node group of EDGE6 (ff02::1:ff + its low 24 bits).
const EDGE_SNM = 'ff02::1:ff00:11';

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
let listener: ChildProcess | undefined;

test.before(() => {
  ip('netns', 'add', SWITCH);
  ip('netns', 'add', EDGE);
  // Bridge timers are in centiseconds: query every 1 s, answer within 0.5 s, forget after 3 s.
  ip('-n', SWITCH, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '1', 'mcast_querier', '1', 'mcast_query_interval', '100',
    'mcast_query_response_interval', '50', 'mcast_membership_interval', '300', 'mcast_startup_query_interval', '100', 'mcast_last_member_interval', '50');
  ip('-n', SWITCH, 'link', 'set', 'br0', 'up');
  ip('link', 'add', `ms${id}`, 'netns', SWITCH, 'type', 'veth', 'peer', 'name', `me${id}`, 'netns', EDGE);
  ip('-n', SWITCH, 'link', 'set', `ms${id}`, 'master', 'br0');
  ip('-n', SWITCH, 'link', 'set', `ms${id}`, 'up');
  execFileSync('bridge', ['-n', SWITCH, 'link', 'set', 'dev', `ms${id}`, 'mcast_flood', 'off']);
  ip('-n', EDGE, 'link', 'set', 'lo', 'up');
  ip('-n', EDGE, 'link', 'set', `me${id}`, 'up');
  ip('-n', SWITCH, 'addr', 'add', `${PEER6}/64`, 'dev', 'br0', 'nodad');
  ip('-n', EDGE, 'addr', 'add', `${EDGE6}/64`, 'dev', `me${id}`, 'nodad');
  listener = spawn('ip', ['netns', 'exec', EDGE, 'socat', 'TCP6-LISTEN:179,reuseaddr,fork', 'SYSTEM:echo hi'], { stdio: 'ignore' });
});

test.after.always(() => {
  listener?.kill('SIGKILL');
  for (const ns of [SWITCH, EDGE]) spawnSync('ip', ['netns', 'del', ns]);
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The switch's snooping table has the edge's solicited-node group on the edge's port. */
function switchKnowsEdge(): boolean {
  const out = execFileSync('bridge', ['-n', SWITCH, 'mdb', 'show'], { encoding: 'utf8' });
  return out.split('\n').some((l) => l.includes(`port ms${id} `) && l.includes(`grp ${EDGE_SNM} `));
}

/** The peer opens a BGP connection to the edge, resolving its address afresh. */
function peerReachesBgp(): boolean {
  for (const ns of [SWITCH, EDGE]) ip('-n', ns, 'neigh', 'flush', 'all');
  const r = spawnSync('ip', ['netns', 'exec', SWITCH, 'socat', '-T', '2', 'STDIO', `TCP6:[${EDGE6}]:179,bind=[${PEER6}],connect-timeout=2`], {
    input: '', timeout: 8000, encoding: 'utf8',
  });
  return r.status === 0 && r.stdout.includes('hi');
}

test('behind the firewall the edge answers MLD queries: the switch keeps its group, the IPv6 peer keeps reaching BGP', async (t) => {
  const cfg = parseConfig(`
node: {name: mld, routerId: 10.0.0.11, asn: 64512, uplink: me${id}}
bgp:
  peers: [{address: "${PEER6}", asn: 64500}]
pools: [{name: v6, cidrs: ["fd00:96::/120"]}]
`, 'mld.yaml');
  await applyRuleset(firewallRuleset(cfg), { netns: EDGE });
  // Two membership intervals: a group learned before the ruleset has expired by now unless refreshed.
  await sleep(6000);
  t.true(switchKnowsEdge(), execFileSync('bridge', ['-n', SWITCH, 'mdb', 'show'], { encoding: 'utf8' }));
  t.true(peerReachesBgp(), 'the IPv6 peer reaches 179/tcp after neighbour discovery through the snooping switch');
});
