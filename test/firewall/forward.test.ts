// The appliance's forwarding settings, judged by real packets: the generated
// sysctl.d file (src/firewall/sysctl.ts) and host ruleset (forward chain,
// src/firewall/ruleset.ts) applied to an edge namespace that runs the real
// XDP program on its uplink.
//
//   client C ── R router ── fabric bridge F ──┬── E edge (uplink up0, XDP)
//   172.16.0.10   .1 / 10.0.0.1               │     └── m0 ── M mgmt 10.255.0.1
//                                             └── N node 10.0.0.21, pod 10.244.1.10
//
// E starts as a distribution leaves it: forwarding off, strict rp_filter.
// Each trial flushes E's neighbours (so the first packet takes the
// datapath's slow path: rewritten, handed to the stack, which resolves the
// node's MAC), applies a variant of the settings and counts, with nft
// counters: datagrams that reached the pod, datagrams to a VIP port that is
// no frontend that came back out of the edge to the router, and datagrams
// routed through the edge into the management network. Every setting is
// shown to matter by a variant without it.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/load.js';
import { applyRuleset, runNft } from '../../src/firewall/apply.js';
import { firewallRuleset, removeRuleset, type NftRuleset } from '../../src/firewall/ruleset.js';
import { sysctlFile } from '../../src/firewall/sysctl.js';
import { BpfObject, inNetns } from '../../src/datapath/loader.js';
import { bpfObjectPath } from '../../src/assets.js';
import { Cleanup, createNetns, nsRun, run, sleep, uniqueId } from '../lib/netns.js';
import { openEdge, service, backend } from '../datapath/edge-helpers.js';

const VIP = '198.51.100.1';
const POD = '10.244.1.10';
const SYSTEMD_SYSCTL = '/usr/lib/systemd/systemd-sysctl';

const CONFIG = parseConfig(`
node: {name: edge1, routerId: 10.0.0.11, asn: 64512, uplink: up0}
bgp:
  peers: [{address: 10.0.0.1, asn: 64500}]
pools: [{name: lab, cidrs: [198.51.100.0/28]}]
metrics: {listen: "10.255.0.11:9472"}
`, 'forward.yaml');

interface Lab {
  C: string; R: string; F: string; E: string; M: string; N: string;
  dir: string;
}

let lab: Lab | null = null;
const cleanup = new Cleanup();
test.after.always(async () => {
  await cleanup.run();
});

const sh = async (ns: string, ...cmds: string[][]): Promise<void> => {
  for (const c of cmds) await nsRun(ns, c);
};

async function counter(ns: string, name: string): Promise<number> {
  const out = JSON.parse((await nsRun(ns, ['/usr/sbin/nft', '-j', 'list', 'counter', 'inet', 'probe', name])).stdout) as { nftables: { counter?: { packets: number } }[] };
  return out.nftables.find((o) => o.counter)?.counter?.packets ?? 0;
}

async function probeTable(ns: string, name: string, match: string): Promise<void> {
  const file = join(lab!.dir, `${ns}-${name}.nft`);
  writeFileSync(file, `table inet probe {\n counter ${name} {}\n chain pre { type filter hook prerouting priority -300\n  ${match} counter name ${name}\n }\n}\n`);
  await nsRun(ns, ['/usr/sbin/nft', '-f', file]);
}

async function setUp(): Promise<Lab> {
  if (lab) return lab;
  const id = uniqueId();
  const ns = async (n: string) => createNetns(`elfw${n}-${id}`, cleanup);
  const l: Lab = { C: await ns('c'), R: await ns('r'), F: await ns('f'), E: await ns('e'), M: await ns('m'), N: await ns('n'), dir: mkdtempSync(join(tmpdir(), 'edgelb-fwd-')) };
  lab = l;
  cleanup.add('tmpdir', () => rmSync(l.dir, { recursive: true, force: true }));
  // E as a distribution leaves it, before any interface exists (new
  // interfaces take the "default" values): IPv4 settings of a new namespace
  // are copied from the host's, so set them explicitly.
  await sh(l.E,
    ['sysctl', '-qw', 'net.ipv4.conf.all.forwarding=0'], ['sysctl', '-qw', 'net.ipv4.conf.default.forwarding=0'],
    ['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=1'], ['sysctl', '-qw', 'net.ipv4.conf.default.rp_filter=1']);
  const link = (a: string, ia: string, b: string, ib: string) => run(['ip', 'link', 'add', `x${id}${ia}`, 'netns', a, 'type', 'veth', 'peer', 'name', `y${id}${ib}`, 'netns', b]).then(async () => {
    await nsRun(a, ['ip', 'link', 'set', `x${id}${ia}`, 'name', ia]);
    await nsRun(b, ['ip', 'link', 'set', `y${id}${ib}`, 'name', ib]);
  });
  await link(l.C, 'c0', l.R, 'rc');
  await link(l.R, 'rf', l.F, 'pr');
  await link(l.E, 'up0', l.F, 'pe');
  await link(l.N, 'n0', l.F, 'pn');
  await link(l.E, 'm0', l.M, 'm1');
  await sh(l.F, ['ip', 'link', 'add', 'br0', 'type', 'bridge'], ['ip', 'link', 'set', 'br0', 'up'],
    ...['pr', 'pe', 'pn'].flatMap((p) => [['ip', 'link', 'set', p, 'master', 'br0'], ['ip', 'link', 'set', p, 'up']]));
  await sh(l.C, ['ip', 'addr', 'add', '172.16.0.10/24', 'dev', 'c0'], ['ip', 'link', 'set', 'c0', 'up'], ['ip', 'route', 'add', 'default', 'via', '172.16.0.1'],
    ['ethtool', '-K', 'c0', 'tx', 'off']);
  await sh(l.R, ['ip', 'addr', 'add', '172.16.0.1/24', 'dev', 'rc'], ['ip', 'addr', 'add', '10.0.0.1/24', 'dev', 'rf'], ['ip', 'link', 'set', 'rc', 'up'], ['ip', 'link', 'set', 'rf', 'up'],
    ['sysctl', '-qw', 'net.ipv4.ip_forward=1'], ['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0'], ['sysctl', '-qw', 'net.ipv4.conf.rf.rp_filter=0'],
    // The VIP is announced by the edge; the management network is not routed through it, but a router (or anyone on the fabric) could try.
    ['ip', 'route', 'add', `${VIP}/32`, 'via', '10.0.0.11'], ['ip', 'route', 'add', '10.255.0.0/24', 'via', '10.0.0.11']);
  await sh(l.E, ['ip', 'addr', 'add', '10.0.0.11/24', 'dev', 'up0'], ['ip', 'addr', 'add', '10.255.0.11/24', 'dev', 'm0'], ['ip', 'link', 'set', 'up0', 'up'], ['ip', 'link', 'set', 'm0', 'up'],
    ['ip', 'link', 'set', 'lo', 'up'], ['ip', 'route', 'add', '10.244.1.0/24', 'via', '10.0.0.21']);
  await sh(l.M, ['ip', 'addr', 'add', '10.255.0.1/24', 'dev', 'm1'], ['ip', 'link', 'set', 'm1', 'up']);
  await sh(l.N, ['ip', 'addr', 'add', '10.0.0.21/24', 'dev', 'n0'], ['ip', 'link', 'set', 'n0', 'up'], ['ip', 'addr', 'add', `${POD}/32`, 'dev', 'lo'], ['ip', 'link', 'set', 'lo', 'up'],
    ['ip', 'route', 'add', 'default', 'via', '10.0.0.1'], ['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0'], ['sysctl', '-qw', 'net.ipv4.conf.n0.rp_filter=0']);
  // XDP_TX on a veth reaches the other end only when that end runs NAPI (an XDP program).
  const pass = BpfObject.load(bpfObjectPath('xdp_pass'));
  cleanup.add('xdp_pass', () => pass.close());
  inNetns(l.F, () => pass.program('xdp_pass').attachXdp('pe', 'native'));
  await probeTable(l.N, 'delivered', `ip daddr ${POD} udp dport 5353`);
  await probeTable(l.R, 'looped', `iifname "rf" ip daddr ${VIP} udp dport 54`);
  await probeTable(l.M, 'transit', 'ip daddr 10.255.0.1 udp dport 9999');
  return l;
}

interface Counts {
  delivered: number;
  looped: number;
  transit: number;
}

/**
 * One trial: E's settings back to the distribution's, then `sysctl` and
 * `ruleset` applied; 3 datagrams to the frontend, 3 to a VIP port with no
 * frontend, 3 routed at the management network. Returns the counters' growth.
 */
async function trial(l: Lab, o: { sysctl: string | null; ruleset: NftRuleset | null; defaultVia: 'mgmt' | 'router' }): Promise<Counts> {
  // (Per interface: writing "all" changes nothing when "all" already has that value.)
  await sh(l.E, ['sysctl', '-qw', 'net.ipv4.conf.up0.forwarding=0'], ['sysctl', '-qw', 'net.ipv4.conf.up0.rp_filter=1'],
    ['sysctl', '-qw', 'net.ipv4.conf.up0.send_redirects=1'], ['ip', 'neigh', 'flush', 'all'],
    ['ip', 'route', 'replace', 'default', 'via', o.defaultVia === 'mgmt' ? '10.255.0.1' : '10.0.0.1']);
  await applyRuleset(o.ruleset ?? removeRuleset(), { netns: l.E });
  if (o.sysctl !== null) {
    const file = join(l.dir, 'sysctl.conf');
    writeFileSync(file, o.sysctl);
    await nsRun(l.E, [SYSTEMD_SYSCTL, file]);
  }
  const before = { delivered: await counter(l.N, 'delivered'), looped: await counter(l.R, 'looped'), transit: await counter(l.M, 'transit') };
  for (let i = 0; i < 3; i++) {
    await nsRun(l.C, ['sh', '-c', `printf 'x' | socat -u - UDP-SENDTO:${VIP}:53,sourceport=${41000 + i}`]);
    await nsRun(l.C, ['sh', '-c', `printf 'y' | socat -u - UDP-SENDTO:${VIP}:54,sourceport=${42000 + i}`]);
    await nsRun(l.R, ['sh', '-c', `printf 'z' | socat -u - UDP-SENDTO:10.255.0.1:9999,sourceport=${43000 + i}`]);
    // Let the first one's ARP exchange finish before the next.
    await sleep(300);
  }
  await sleep(300);
  return {
    delivered: (await counter(l.N, 'delivered')) - before.delivered,
    looped: (await counter(l.R, 'looped')) - before.looped,
    transit: (await counter(l.M, 'transit')) - before.transit,
  };
}

const withoutLine = (text: string, re: RegExp) => text.split('\n').filter((l) => !re.test(l)).join('\n');
const withoutRule = (rs: NftRuleset, comment: RegExp): NftRuleset => ({
  nftables: rs.nftables.filter((o) => !comment.test(((o.add as { rule?: { comment?: string } } | undefined)?.rule?.comment) ?? '')),
});

test.serial('the generated settings forward frontend traffic, drop a VIP port with no frontend, route nothing else', async (t) => {
  const l = await setUp();
  const dp = openEdge(t, { forward: { kind: 'fib', cache: false }, address: '10.0.0.11' });
  dp.applyServices([service({ frontend: { vip: VIP, port: 53, protocol: 'UDP' }, backends: [backend(1, { ip: POD, port: 5353, nodeIp: '10.0.0.21' })] })]);
  inNetns(l.E, () => dp.attach('up0', 'native'));
  t.teardown(() => inNetns(l.E, () => dp.detach()));
  const full = { sysctl: sysctlFile(CONFIG), ruleset: firewallRuleset(CONFIG) };

  // As flashed, default route via the management network.
  const ok = await trial(l, { ...full, defaultVia: 'mgmt' });
  t.is(ok.delivered, 3, 'every datagram to the frontend reached the pod (the first through the stack, which resolved the node)');
  t.is(ok.transit, 0, 'nothing routed into the management network');
  t.true(dp.counters().stats.fib_pass >= 1, 'the first one took the slow path');
  // Default route via the router: a VIP port with no frontend must not go back to it.
  const viaRouter = await trial(l, { ...full, defaultVia: 'router' });
  t.is(viaRouter.delivered, 3);
  t.is(viaRouter.looped, 0, 'no datagram to VIP:54 came back out of the edge');
  t.is(viaRouter.transit, 0);
  const dropped = (await runNft(['list', 'chain', 'inet', 'edgelb_host', 'forward'], undefined, { netns: l.E })).split('\n').find((x) => x.includes('no frontend'));
  t.regex(dropped ?? '', /counter packets [1-9]/, 'counted where it was dropped');

  // Each setting matters.
  t.is((await trial(l, { ...full, sysctl: null, defaultVia: 'router' })).delivered, 0, 'without the sysctl file nothing is forwarded');
  t.is((await trial(l, { ...full, sysctl: withoutLine(full.sysctl, /forwarding/), defaultVia: 'router' })).delivered, 0, 'without forwarding on the uplink: nothing (the FIB lookup refuses)');
  t.is((await trial(l, { ...full, sysctl: withoutLine(full.sysctl, /rp_filter/), defaultVia: 'mgmt' })).delivered, 0, 'with strict rp_filter the slow path drops the client\'s packets when the route back is not via the uplink');
  t.is((await trial(l, { ...full, ruleset: withoutRule(full.ruleset, /next hop not yet resolved/), defaultVia: 'router' })).delivered, 0, 'without the forward accept rule the first packet is dropped and the node is never resolved');
  const looping = await trial(l, { ...full, ruleset: withoutRule(full.ruleset, /no frontend/), defaultVia: 'router' });
  t.true(looping.looped >= 3, `without the VIP rule, VIP:54 goes back to the router (${looping.looped} times)`);
  const open = await trial(l, { sysctl: full.sysctl, ruleset: null, defaultVia: 'router' });
  t.true(open.transit >= 3, `without the forward chain the edge routes into the management network (${open.transit})`);
});

const VIP6 = '2001:db8:100::1';
const POD6 = 'fd00:244::10';

const CONFIG6 = parseConfig(`
node: {name: edge1, routerId: 10.0.0.11, asn: 64512, uplink: up0}
bgp:
  peers: [{address: 10.0.0.1, asn: 64500}, {address: "fd00:f::1", asn: 64500}]
pools: [{name: lab, cidrs: [198.51.100.0/28]}, {name: lab6, cidrs: ["2001:db8:100::/64"]}]
metrics: {listen: "10.255.0.11:9472"}
`, 'forward6.yaml');

/** The lab's IPv6 half: the same wires, IPv6 addresses and routes; the pod's datagrams counted on the node. */
async function setUp6(l: Lab): Promise<void> {
  await sh(l.C, ['ip', '-6', 'addr', 'add', '2001:db8:c::10/64', 'dev', 'c0', 'nodad'], ['ip', '-6', 'route', 'add', 'default', 'via', '2001:db8:c::1']);
  await sh(l.R, ['ip', '-6', 'addr', 'add', '2001:db8:c::1/64', 'dev', 'rc', 'nodad'], ['ip', '-6', 'addr', 'add', 'fd00:f::1/64', 'dev', 'rf', 'nodad'],
    ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1'], ['ip', '-6', 'route', 'add', `${VIP6}/128`, 'via', 'fd00:f::11']);
  await sh(l.E, ['ip', '-6', 'addr', 'add', 'fd00:f::11/64', 'dev', 'up0', 'nodad'], ['ip', '-6', 'route', 'add', 'fd00:244::/64', 'via', 'fd00:f::21'],
    ['ip', '-6', 'route', 'add', 'default', 'via', 'fd00:f::1']);
  await sh(l.N, ['ip', '-6', 'addr', 'add', 'fd00:f::21/64', 'dev', 'n0', 'nodad'], ['ip', '-6', 'addr', 'add', `${POD6}/128`, 'dev', 'lo'],
    ['ip', '-6', 'route', 'add', 'default', 'via', 'fd00:f::1']);
  await probeTable(l.N, 'delivered6', `ip6 daddr ${POD6} meta l4proto udp`);
}

/** One IPv6 trial: E's IPv6 forwarding off (a distribution's default), `sysctl` and `ruleset` applied, neighbours flushed; 3 datagrams to the IPv6 frontend. */
async function trial6(l: Lab, o: { sysctl: string; ruleset: NftRuleset }): Promise<number> {
  await sh(l.E, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=0'], ['sysctl', '-qw', 'net.ipv6.conf.up0.forwarding=0'], ['ip', '-6', 'neigh', 'flush', 'all'],
    ['ip', 'route', 'replace', 'default', 'via', '10.0.0.1']);
  await applyRuleset(o.ruleset, { netns: l.E });
  const file = join(l.dir, 'sysctl6.conf');
  writeFileSync(file, o.sysctl);
  await nsRun(l.E, [SYSTEMD_SYSCTL, file]);
  const before = await counter(l.N, 'delivered6');
  for (let i = 0; i < 3; i++) {
    await nsRun(l.C, ['sh', '-c', `printf 'x' | socat -u - UDP6-SENDTO:[${VIP6}]:53,sourceport=${44000 + i}`]);
    await sleep(300); // the first one's neighbour discovery
  }
  await sleep(300);
  return (await counter(l.N, 'delivered6')) - before;
}

test.serial('IPv6 frontends: the generated settings forward them too, the first datagram through the stack while it resolves the node', async (t) => {
  const l = await setUp();
  await setUp6(l);
  const dp = openEdge(t, { forward: { kind: 'fib', cache: false }, address: '10.0.0.11', ipv6: true, address6: 'fd00:f::11' });
  dp.applyServices([service({ frontend: { vip: VIP6, port: 53, protocol: 'UDP' }, backends: [backend(1, { ip: POD6, port: 5353, nodeIp: 'fd00:f::21' })] })]);
  inNetns(l.E, () => dp.attach('up0', 'native'));
  t.teardown(() => inNetns(l.E, () => dp.detach()));
  const full = { sysctl: sysctlFile(CONFIG6), ruleset: firewallRuleset(CONFIG6) };
  t.is(await trial6(l, full), 3, 'every datagram to the IPv6 frontend reached the pod');
  t.true(dp.counters().stats.fib_pass >= 1, 'the first one took the slow path');
  t.is(await trial6(l, { ...full, sysctl: withoutLine(full.sysctl, /ipv6\.conf\.all\.forwarding/) }), 0, 'without IPv6 forwarding in the stack the slow path drops it, and the node is never resolved');
  t.is(await trial6(l, { ...full, ruleset: withoutRule(full.ruleset, /next hop not yet resolved/) }), 0, 'without the forward accept rule (both families) the same');
  t.is(await trial6(l, full), 3, 'and back');
});
