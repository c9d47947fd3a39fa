import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { applyRuleset, runNft } from '../../src/firewall/apply.js';
import { firewallRuleset, forwardRules, inputRules, parseListen, removeRuleset, TABLE } from '../../src/firewall/ruleset.js';
import { sysctlFile, uplinkSysctls } from '../../src/firewall/sysctl.js';
import { golden } from '../lib/golden.js';

// Golden files: test/golden/firewall/NAME.json (test/lib/golden.ts).

const CASES: Record<string, string> = {
  minimal: `
node: {name: edge1, routerId: 10.0.0.11, asn: 64512, uplink: eth0}
bgp:
  peers: [{address: 10.0.0.1, asn: 64500}]
pools: [{name: default, cidrs: [10.96.100.0/24]}]
`,
  full: `
node: {name: edge1, routerId: 10.0.0.11, asn: 64512, uplink: eth0}
bgp:
  peers:
    - {address: 10.0.0.1, asn: 64500, bfd: {enabled: true}}
    - {address: 10.0.1.1, asn: 64500}
    - {address: "2001:db8::1", asn: 64500, bfd: {enabled: true}}
pools: [{name: default, cidrs: [10.96.100.0/24]}]
metrics: {listen: "10.0.0.11:9472"}
firewall: {sshFrom: [192.0.2.0/24, 198.51.100.7/32, "2001:db8:1::/48"]}
`,
  'metrics-any-no-ssh': `
node: {name: edge1, routerId: 10.0.0.11, asn: 64512, uplink: eth0}
bgp:
  peers: [{address: "2001:db8::1", asn: 64500}]
pools: [{name: default, cidrs: ["2001:db8:100::/120"]}]
metrics: {listen: "0.0.0.0:9100"}
`,
  // An IPv6 edge: IPv6 peers (BFD on one), metrics and SSH over IPv6; the IPv4 peer carries the IPv4 half of the pool.
  'ipv6-peers': `
node: {name: edge1, routerId: 10.0.0.11, asn: 64512, uplink: eth0}
bgp:
  peers:
    - {address: 10.0.0.1, asn: 64500}
    - {address: "2001:db8::1", asn: 64500, bfd: {enabled: true}}
    - {address: "2001:DB8:0:1::1", asn: 64500, localAddress: "2001:db8:0:1::11"}
pools: [{name: dual, cidrs: [10.96.100.0/24, "2001:db8:100::/120"]}]
metrics: {listen: "[2001:db8::11]:9472"}
firewall: {sshFrom: ["2001:db8:1::/48"]}
`,
  'metrics-off': `
node: {name: edge1, routerId: 10.0.0.11, asn: 64512, uplink: eth0}
bgp:
  peers: [{address: 10.0.0.1, asn: 64500}]
pools: [{name: default, cidrs: [10.96.100.0/24]}]
metrics: {listen: ""}
`,
  disabled: `
node: {name: edge1, routerId: 10.0.0.11, asn: 64512, uplink: eth0}
bgp:
  peers: [{address: 10.0.0.1, asn: 64500}]
pools: [{name: default, cidrs: [10.96.100.0/24]}]
firewall: {enabled: false, sshFrom: [192.0.2.0/24]}
`,
};

const cfg = (name: string) => parseConfig(CASES[name] ?? '', `${name}.yaml`);
const tmp = mkdtempSync(join(tmpdir(), 'edgelb-fw-test-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

for (const name of Object.keys(CASES)) {
  test(`golden: ${name}`, (t) => {
    const got = `${JSON.stringify(firewallRuleset(cfg(name)), null, 2)}\n`;
    t.is(got, golden(`firewall/${name}.json`, got));
  });

  test(`nft -j -c accepts: ${name}`, async (t) => {
    const file = join(tmp, `${name}.json`);
    writeFileSync(file, JSON.stringify(firewallRuleset(cfg(name))));
    await t.notThrowsAsync(runNft(['-j', '-c', '-f', file], undefined));
  });
}

test('BGP and BFD only from peers, BFD only for peers that run it', (t) => {
  const rules = inputRules(cfg('full'));
  const text = (c: string) => JSON.stringify(rules.filter((r) => r.comment.startsWith(c)).map((r) => r.expr));
  t.true(text('BGP from peers (IPv4)').includes('"10.0.0.1"'));
  t.true(text('BGP from peers (IPv4)').includes('"10.0.1.1"'));
  t.true(text('BFD single-hop from peers (IPv4)').includes('"10.0.0.1"'));
  t.false(text('BFD single-hop from peers (IPv4)').includes('10.0.1.1'));
  t.true(text('BFD single-hop from peers (IPv6)').includes('2001:db8::1'));
  t.deepEqual(inputRules(cfg('minimal')).filter((r) => r.comment.startsWith('BFD')), []);
  t.deepEqual(inputRules(cfg('minimal')).filter((r) => r.comment.startsWith('SSH')), []);
});

test('IPv6 peers: BGP and BFD rules name exactly the IPv6 peers (canonical), as ip6 saddr', (t) => {
  const rules = inputRules(cfg('ipv6-peers'));
  const one = (c: string) => rules.filter((r) => r.comment === c).map((r) => r.expr[0]);
  t.deepEqual(one('BGP from peers (IPv6)'), [{ match: { op: '==', left: { payload: { protocol: 'ip6', field: 'saddr' } }, right: { set: ['2001:db8::1', '2001:db8:0:1::1'] } } }]);
  t.deepEqual(one('BGP from peers (IPv4)'), [{ match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '10.0.0.1' } }]);
  t.deepEqual(one('BFD single-hop from peers (IPv6)'), [{ match: { op: '==', left: { payload: { protocol: 'ip6', field: 'saddr' } }, right: '2001:db8::1' } }]);
  t.deepEqual(one('BFD single-hop from peers (IPv4)'), []);
});

test('everything else is dropped: last rule drops, chain policy drop', (t) => {
  const rs = firewallRuleset(cfg('minimal'));
  const last = rs.nftables.at(-1) as { add: { rule: { expr: unknown[] } } };
  t.deepEqual(last.add.rule.expr.at(-1), { drop: null });
  const chain = rs.nftables.find((o) => 'add' in o && 'chain' in (o.add as object)) as { add: { chain: { policy: string; hook: string } } };
  t.is(chain.add.chain.policy, 'drop');
  t.is(chain.add.chain.hook, 'input');
});

test('disabled firewall only removes our table', (t) => {
  t.deepEqual(firewallRuleset(cfg('disabled')), removeRuleset());
});

test('bad addresses and listen strings are rejected with the value', (t) => {
  const c = cfg('minimal');
  t.throws(() => firewallRuleset({ ...c, firewall: { enabled: true, sshFrom: ['10.0.0.0/40'] } }), { message: /10\.0\.0\.0\/40/ });
  t.throws(() => firewallRuleset({ ...c, firewall: { enabled: true, sshFrom: ['nope'] } }), { message: /nope/ });
  t.throws(() => parseListen('9472'), { message: /ADDRESS:PORT/ });
  t.deepEqual(parseListen('[::1]:9472'), { address: '::1', port: 9472 });
  t.is(parseListen(''), null);
});

test('applying twice replaces, removing twice is fine (in a scratch netns)', async (t) => {
  const ns = `elbfw${process.pid}${Math.floor(Math.random() * 1e4)}`;
  const { execFileSync } = await import('node:child_process');
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => execFileSync('ip', ['netns', 'del', ns]));
  await applyRuleset(firewallRuleset(cfg('full')), { netns: ns });
  await applyRuleset(firewallRuleset(cfg('minimal')), { netns: ns });
  const listed = await runNft(['list', 'table', 'inet', TABLE], undefined, { netns: ns });
  t.false(listed.includes('SSH'), 'second apply replaced the first');
  t.true(listed.includes('BGP from peers'));
  await applyRuleset(removeRuleset(), { netns: ns });
  await applyRuleset(removeRuleset(), { netns: ns });
  t.false((await runNft(['list', 'tables'], undefined, { netns: ns })).includes(TABLE));
});

test('nft -c rejects a broken ruleset (the check can fail)', async (t) => {
  const rs = firewallRuleset(cfg('minimal'));
  rs.nftables.push({ add: { rule: { family: 'inet', table: TABLE, chain: 'input', expr: [{ match: { op: '==', left: { payload: { protocol: 'tcp', field: 'nosuchfield' } }, right: 1 } }] } } });
  await t.throwsAsync(applyRuleset(rs, { check: true }), { message: /nft .*failed/ });
});

test('forward chain: policy drop; VIPs of every pool dropped first, then only uplink → uplink', (t) => {
  const rs = firewallRuleset(cfg('full'));
  const chain = rs.nftables.find((o) => 'add' in o && (o.add as { chain?: { name: string } }).chain?.name === 'forward') as { add: { chain: { policy: string; hook: string } } };
  t.is(chain.add.chain.policy, 'drop');
  t.is(chain.add.chain.hook, 'forward');
  const rules = forwardRules(cfg('full'));
  t.regex(rules[0]?.comment ?? '', /VIP on a port that is no frontend \(IPv4\)/);
  t.true(JSON.stringify(rules[0]?.expr).includes('"10.96.100.0"'));
  t.deepEqual(rules[0]?.expr.at(-1), { drop: null });
  t.deepEqual(rules.at(-1)?.expr, [{ counter: null }, { drop: null }]);
  const uplink = JSON.stringify(rules.find((r) => /uplink/.test(r.comment))?.expr);
  t.true(uplink.includes('"iifname"') && uplink.includes('"oifname"') && uplink.includes('"eth0"'));
  // An IPv6 pool gets its own drop rule.
  t.true(forwardRules(cfg('ipv6-peers')).some((r) => /IPv6/.test(r.comment) && JSON.stringify(r.expr).includes('2001:db8:100::')));
});

test('sysctl: forwarding and loose rp_filter on the uplink only (IPv6: forwarding in the stack too, when the edge serves it); dotted names use "/"; odd names refused', (t) => {
  const text = sysctlFile(cfg('minimal'));
  t.regex(text, /^net\.ipv4\.conf\.eth0\.forwarding = 1$/m);
  t.regex(text, /^net\.ipv4\.conf\.eth0\.rp_filter = 2$/m);
  t.regex(text, /^net\.ipv4\.conf\.eth0\.send_redirects = 0$/m);
  t.notRegex(text, /conf\.(all|default)\./, 'no other interface forwards');
  t.deepEqual(uplinkSysctls('eth0.100')[0], ['net/ipv4/conf/eth0.100/forwarding', '1']);
  // An edge that serves IPv6: forwarding on the uplink (the FIB lookup) and in the IPv6 stack (the slow
  // path: no per-interface switch before Linux 6.17), Router Advertisements still taken on the uplink.
  const six = sysctlFile(cfg('ipv6-peers'));
  t.regex(six, /^net\.ipv6\.conf\.all\.forwarding = 1\n(.*\n)*net\.ipv6\.conf\.eth0\.forwarding = 1$/m, 'all first, then the uplink');
  t.regex(six, /^net\.ipv6\.conf\.eth0\.accept_ra = 2$/m);
  t.regex(six, /^net\.ipv6\.conf\.eth0\.accept_redirects = 0$/m);
  t.notRegex(text, /ipv6/, 'an IPv4-only edge leaves IPv6 alone');
  t.deepEqual(uplinkSysctls('eth0.100', true).at(-3), ['net/ipv6/conf/eth0.100/forwarding', '1']);
  t.throws(() => uplinkSysctls('a=b'), { message: /a=b/ });
});
