// IPv6 VIPs over IPv6 sessions with real daemons: an FRR router and two
// gobgpd edges, each with an IPv4 and an IPv6 session, BFD (200 ms × 5) on
// both, and TCP-MD5 on edge 1's. IPv6 VIPs travel only over the IPv6
// sessions, with the session's own address as next hop; the steps build on
// each other, so they run serially.
import anyTest, { type TestFn } from 'ava';
import { NO_ATTRS, type DesiredVip, type VipAttrs } from '../../src/bgp/attributes.js';
import { createBgpLab, writePasswordFile, type BgpLab, type LabEdge } from '../lib/gobgpd.js';
import { blackhole, gatewaysOf, kernelRoutes, nsRun, RouteMonitor, sleep, waitFor } from '../lib/netns.js';

const test = anyTest as TestFn<{ lab: BgpLab }>;
const VIP6 = '2001:db8:99::1/128';
const VIP4 = '10.97.0.1/32';
const ATTRS: VipAttrs = { communities: ['65000:100', '65000:200'], largeCommunities: ['65000:7:8'], localPref: null, med: 42, asPathPrepend: 2, peers: [] };
// Detection in 1 s: tight enough to tell BFD from the hold time, loose
// enough that a machine shared with other test runs does not flap it.
const BFD = { minRxMs: 200, minTxMs: 200, multiplier: 5 };
// Hold time 9 s on every session: a nexthop gone within 3 s is BFD's doing.
const DETECT_BOUND_MS = 3000;
const GSHUT = ['gracefulShutdown', 'graceful-shutdown', '65535:0'];

const desired = (attrs: VipAttrs = ATTRS): DesiredVip[] => [
  { prefix: VIP6, attrs },
  { prefix: VIP4, attrs },
];

async function kernelGateways(lab: BgpLab, prefix: string): Promise<string[]> {
  return gatewaysOf(await kernelRoutes(lab.routerNs, prefix.includes(':') ? 6 : 4), prefix);
}

async function waitGateways(lab: BgpLab, prefix: string, want: string[], timeoutMs: number, intervalMs = 50): Promise<string[]> {
  const sorted = JSON.stringify([...want].sort());
  let got: string[] = [];
  await waitFor(
    async () => {
      got = await kernelGateways(lab, prefix);
      return JSON.stringify(got) === sorted;
    },
    timeoutMs,
    intervalMs,
  );
  return got;
}

/** The edge's own bfdd sessions (local discriminator `id` changes when a session is re-created). */
async function edgeBfd(e: LabEdge): Promise<{ peer: string; id: number; status: string }[]> {
  const { stdout } = await nsRun(e.ns, ['vtysh', '--vty_socket', e.config.bgp.bfdd.runDir, '-d', 'bfdd', '-c', 'show bfd peers json']);
  return JSON.parse(stdout) as { peer: string; id: number; status: string }[];
}

/** Write an IPv6 address the long way round (upper case, no "::"), as an operator might. */
function spelledOut(addr: string): string {
  const [head = '', tail = ''] = addr.split('::');
  const h = head ? head.split(':') : [];
  const tl = tail ? tail.split(':') : [];
  return [...h, ...Array<string>(8 - h.length - tl.length).fill('0'), ...tl].join(':').toUpperCase();
}

test.before(async (t) => {
  t.timeout(90000);
  const bfdPeer = { bfd: { enabled: true, ...BFD } };
  const lab = await createBgpLab([
    { v6: true, secondary: true, routerSide: { bfd: BFD }, peer: bfdPeer },
    { v6: true, routerSide: { bfd: BFD, password: 'sekret6' }, peer: bfdPeer },
  ]);
  t.context.lab = lab;
  const e1 = lab.edges[1]!;
  const pw = writePasswordFile(e1.dir, 'pw', 'sekret6');
  for (const p of e1.config.bgp.peers) p.passwordFile = pw;
  await Promise.all([lab.startSpeaker(0), lab.startSpeaker(1)]);
});

test.after.always(async (t) => {
  await t.context.lab?.destroy();
});

test.serial('IPv6 sessions (one with TCP-MD5) and BFD over IPv6 come up', async (t) => {
  const { lab } = t.context;
  for (const e of lab.edges) {
    t.true(await waitFor(() => lab.router.established(e.address6), 20000), `IPv6 session ${e.address6}`);
    t.true(await waitFor(() => lab.router.established(e.address), 20000), `IPv4 session ${e.address}`);
    const up = await waitFor(async () => (await lab.router.bfdPeer(e.address6))?.status === 'up', 10000);
    t.true(up, await lab.router.vtysh('show bfd peers'));
    t.is((await lab.router.bfdPeer(e.address6))?.local, lab.routerAddress6);
  }
  const st = await lab.edges[0]!.speaker!.status();
  t.deepEqual(st.bfd?.sessions.find((s) => s.peer === lab.routerAddress6), { peer: lab.routerAddress6, status: 'up' });
});

test.serial('an IPv6 VIP from both edges: one nexthop per edge in show ipv6 route and the kernel, over the IPv6 sessions only', async (t) => {
  const { lab } = t.context;
  await Promise.all(lab.edges.map((e) => e.speaker!.setDesired(desired())));
  const v6s = lab.edges.map((e) => e.address6).sort();
  t.deepEqual(await waitGateways(lab, VIP6, v6s, 10000), v6s, 'ip -6 route: ECMP over both edges');
  t.deepEqual(await lab.router.fibNexthops(VIP6), v6s, 'show ipv6 route: one installed nexthop per edge');
  const r = await lab.router.bgpRoute(VIP6);
  t.deepEqual(r.paths?.map((p) => p.peer?.peerId).sort(), v6s, 'received over the IPv6 sessions');
  for (const p of r.paths ?? []) {
    // Next hop = the edge's address on the session it came over (gobgpd's next-hop-self).
    t.is(p.nexthops?.[0]?.ip, p.peer?.peerId);
    t.true(p.multipath ?? p.bestpath?.overall ?? false);
  }
  const r4 = await lab.router.bgpRoute(VIP4);
  t.deepEqual(r4.paths?.map((p) => p.peer?.peerId).sort(), lab.edges.map((e) => e.address).sort(), 'the IPv4 VIP over the IPv4 sessions only');
  t.deepEqual(await kernelGateways(lab, VIP4), lab.edges.map((e) => e.address).sort());
});

test.serial('per-pool attributes apply to IPv6 paths; adj-out matches for IPv4 and IPv6 peers', async (t) => {
  const { lab } = t.context;
  const e0 = lab.edges[0]!;
  const p = (await lab.router.bgpRoute(VIP6)).paths?.find((x) => x.peer?.peerId === e0.address6);
  t.deepEqual(p?.community?.list?.slice().sort(), ['65000:100', '65000:200']);
  t.deepEqual(p?.largeCommunity?.list, ['65000:7:8']);
  t.is(p?.med ?? p?.metric, 42);
  t.is(p?.aspath?.string, `${e0.asn} ${e0.asn} ${e0.asn}`, 'two extra prepends plus the eBGP one');
  for (const e of lab.edges) t.deepEqual(await e.speaker!.checkAdjOut(false), [], `edge ${e.index}`);
});

test.serial('withdrawing the IPv6 VIP on one edge leaves one nexthop; re-announcing restores two', async (t) => {
  const { lab } = t.context;
  const [e0, e1] = lab.edges as [LabEdge, LabEdge];
  await e1.speaker!.setDesired([{ prefix: VIP4, attrs: ATTRS }]);
  t.deepEqual(await waitGateways(lab, VIP6, [e0.address6], 5000), [e0.address6]);
  t.deepEqual(await lab.router.fibNexthops(VIP6), [e0.address6]);
  t.is((await kernelGateways(lab, VIP4)).length, 2, 'the IPv4 VIP is untouched');
  await e1.speaker!.setDesired(desired());
  t.is((await waitGateways(lab, VIP6, [e0.address6, e1.address6], 5000)).length, 2);
});

test.serial('advertise.peers restricts an IPv6 VIP to one of two IPv6 sessions (added by reload, nothing reset)', async (t) => {
  const { lab } = t.context;
  const e0 = lab.edges[0]!;
  const before6 = await lab.router.sessionCounters(e0.address6);
  const before4 = await lab.router.sessionCounters(e0.address);
  const cfg = structuredClone(e0.config);
  // The session to the second router address goes from the edge's second address.
  cfg.bgp.peers.push({ ...structuredClone(cfg.bgp.peers[1]!), address: lab.routerAddress6b, localAddress: e0.address6b });
  const diff = await e0.speaker!.reload(cfg);
  e0.config = cfg;
  t.deepEqual(diff.add.map((p) => p.address), [lab.routerAddress6b]);
  t.deepEqual([diff.update, diff.delete], [[], []]);
  t.true(await waitFor(() => lab.router.established(e0.address6b), 15000), 'second IPv6 session');
  const restricted = '2001:db8:99::3/128';
  await e0.speaker!.setDesired([...desired(), { prefix: restricted, attrs: { ...NO_ATTRS, peers: [lab.routerAddress6b] } }]);
  const got = await waitFor(async () => {
    const r = await lab.router.bgpRoute(restricted);
    return r.paths?.length ? r : null;
  }, 5000);
  t.deepEqual(got?.paths?.map((p) => p.peer?.peerId), [e0.address6b], 'only via the second IPv6 session');
  t.is(got?.paths?.[0]?.nexthops?.[0]?.ip, e0.address6b, 'next hop: the address of that session');
  t.deepEqual(got?.paths?.[0]?.largeCommunity, undefined, 'mark stripped');
  const all = await lab.router.bgpRoute(VIP6);
  t.deepEqual(all.paths?.map((p) => p.peer?.peerId).sort(), [e0.address6, e0.address6b, lab.edges[1]!.address6].sort(), 'unrestricted: every IPv6 session');
  t.deepEqual(await e0.speaker!.checkAdjOut(false), [], 'adj-out matches for all three peers');
  t.deepEqual(await lab.router.sessionCounters(e0.address6), before6, 'first IPv6 session never dropped');
  t.deepEqual(await lab.router.sessionCounters(e0.address), before4, 'IPv4 session never dropped');
  await e0.speaker!.setDesired(desired());
  t.true(await waitFor(async () => !(await lab.router.bgpRoute(restricted)).paths?.length, 5000), 'restricted VIP withdrawn');
});

test.serial('a reload that spells the IPv6 peers differently resets neither BGP nor BFD', async (t) => {
  const { lab } = t.context;
  const e0 = lab.edges[0]!;
  const bgpBefore = await lab.router.sessionCounters(e0.address6);
  const bfdBefore = (await edgeBfd(e0)).find((s) => s.peer === lab.routerAddress6);
  t.is(bfdBefore?.status, 'up');
  const cfg = structuredClone(e0.config);
  for (const p of cfg.bgp.peers) if (p.address.includes(':')) p.address = spelledOut(p.address);
  const diff = await e0.speaker!.reload(cfg);
  t.deepEqual(diff, { add: [], update: [], delete: [] }, 'the same peers');
  await e0.speaker!.setDesired([...desired(), { prefix: '2001:db8:99::4/128', attrs: { ...NO_ATTRS, peers: [spelledOut(lab.routerAddress6b)] } }]);
  await sleep(2000); // several reconcile rounds, and twice BFD's 1 s detection time
  const bfdAfter = (await edgeBfd(e0)).find((s) => s.peer === lab.routerAddress6);
  t.is(bfdAfter?.id, bfdBefore?.id, 'the BFD session was not re-created');
  t.is(bfdAfter?.status, 'up');
  t.deepEqual(await lab.router.sessionCounters(e0.address6), bgpBefore, 'the IPv6 session never dropped');
  t.deepEqual((await lab.router.bgpRoute('2001:db8:99::4/128')).paths?.map((p) => p.peer?.peerId), [e0.address6b], 'the restriction names the same peer');
  t.deepEqual(await e0.speaker!.checkAdjOut(false), []);
  await e0.speaker!.setDesired(desired());
  // Back to one IPv6 session per edge (one nexthop per edge from here on); the other sessions stay.
  const before4 = await lab.router.sessionCounters(e0.address);
  const back = structuredClone(cfg);
  back.bgp.peers = back.bgp.peers.filter((p) => p.localAddress !== e0.address6b);
  t.deepEqual(await e0.speaker!.reload(back), { add: [], update: [], delete: [lab.routerAddress6b] });
  e0.config = back;
  t.true(await waitFor(async () => !(await lab.router.established(e0.address6b)), 5000));
  t.deepEqual(await lab.router.sessionCounters(e0.address6), bgpBefore, 'the first IPv6 session never dropped');
  t.deepEqual(await lab.router.sessionCounters(e0.address), before4, 'the IPv4 session never dropped');
  t.is((await edgeBfd(e0)).find((s) => s.peer === lab.routerAddress6)?.id, bfdBefore?.id);
});

test.serial('BFD over IPv6: IPv6 dead on one edge\'s link takes its IPv6 nexthop away in BFD time; IPv4 keeps both', async (t) => {
  const { lab } = t.context;
  const [e0, e1] = lab.edges as [LabEdge, LabEdge];
  const both6 = [e0.address6, e1.address6].sort();
  t.deepEqual(await waitGateways(lab, VIP6, both6, 5000), both6);
  // The kernel route change is timestamped by `ip monitor` as it happens, so
  // a slow poll on a loaded machine cannot stretch or shrink the measurement.
  const mon = await RouteMonitor.start(lab.routerNs, 6);
  const dst = VIP6.replace('/128', '');
  const t0 = performance.now();
  await blackhole(e1.ns, 'eth0', true, 'ip6');
  try {
    let since = t0;
    let took = Infinity;
    while (took === Infinity) {
      const ev = await mon.next((x) => x.dst === dst, 15000, since);
      if (JSON.stringify(await kernelGateways(lab, VIP6)) === JSON.stringify([e0.address6])) took = ev.at - t0;
      since = ev.at + 0.001;
    }
    t.log(`IPv6 nexthop gone ${Math.round(took)} ms after IPv6 was blackholed`);
    t.true(took < DETECT_BOUND_MS, `took ${Math.round(took)} ms (hold time 9 s, BFD 1 s)`);
    t.deepEqual(await kernelGateways(lab, VIP4), [e0.address, e1.address].sort(), 'IPv4 (its own BFD up) is untouched');
    t.is((await lab.router.bfdPeer(e1.address6))?.status, 'down');
    t.is((await lab.router.bfdPeer(e1.address))?.status, 'up');
  } finally {
    mon.stop();
    await blackhole(e1.ns, 'eth0', false);
  }
  t.deepEqual(await waitGateways(lab, VIP6, both6, 20000), both6, 'back once IPv6 works again');
});

test.serial('health coupling takes the IPv6 BFD session down too; healthy restores', async (t) => {
  const { lab } = t.context;
  const [e0, e1] = lab.edges as [LabEdge, LabEdge];
  await e1.speaker!.setDatapathHealthy(false);
  try {
    t.deepEqual(await waitGateways(lab, VIP6, [e0.address6], DETECT_BOUND_MS, 20), [e0.address6]);
    t.deepEqual(await waitGateways(lab, VIP4, [e0.address], DETECT_BOUND_MS, 20), [e0.address]);
  } finally {
    await e1.speaker!.setDatapathHealthy(true);
  }
  t.is((await waitGateways(lab, VIP6, [e0.address6, e1.address6], 20000)).length, 2);
});

test.serial('drain: the IPv6 path carries GRACEFUL_SHUTDOWN, then is withdrawn; undrain restores', async (t) => {
  const { lab } = t.context;
  const [e0, e1] = lab.edges as [LabEdge, LabEdge];
  const sp = e1.speaker!;
  let sawGshut = false;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const r = await lab.router.bgpRoute(VIP6).catch(() => ({ paths: [] }));
      const p = r.paths?.find((x) => x.peer?.peerId === e1.address6);
      if (p?.community?.list?.some((c) => GSHUT.includes(c))) sawGshut = true;
      await sleep(50);
    }
  })();
  // A 3 s window (the lab's default is 1 s), so the poller catches the path on a loaded machine.
  e1.config = { ...e1.config, bgp: { ...e1.config.bgp, drainSeconds: 3 } };
  await sp.reload(e1.config);
  await sp.drain();
  polling = false;
  await poller;
  t.true(sawGshut, 'the router saw GRACEFUL_SHUTDOWN on the IPv6 path');
  t.deepEqual(await waitGateways(lab, VIP6, [e0.address6], 5000), [e0.address6]);
  t.deepEqual(await kernelGateways(lab, VIP4), [e0.address], 'drain withdraws both families');
  await sp.undrain();
  e1.config = { ...e1.config, bgp: { ...e1.config.bgp, drainSeconds: 1 } };
  await sp.reload(e1.config);
  t.is((await waitGateways(lab, VIP6, [e0.address6, e1.address6], 5000)).length, 2);
  const p = (await lab.router.bgpRoute(VIP6)).paths?.find((x) => x.peer?.peerId === e1.address6);
  t.false(p?.community?.list?.some((c) => GSHUT.includes(c)) ?? true, 'no GRACEFUL_SHUTDOWN after undrain');
});

test.serial('agent restart: the IPv6 route never changes and the IPv6 BFD session is adopted, not re-created', async (t) => {
  const { lab } = t.context;
  const e0 = lab.edges[0]!;
  const both6 = lab.edges.map((e) => e.address6).sort();
  t.deepEqual(await waitGateways(lab, VIP6, both6, 5000), both6);
  const bfdBefore = (await edgeBfd(e0)).find((s) => s.peer === lab.routerAddress6);
  const mon = await RouteMonitor.start(lab.routerNs, 6);
  const changes: string[] = [];
  mon.listeners.push((ev) => {
    if (ev.dst === VIP6.replace('/128', '')) changes.push(ev.line);
  });
  try {
    await e0.speaker!.close();
    await sleep(300);
    const s = await lab.startSpeaker(0);
    await s.setDesired(desired());
    await sleep(1000);
  } finally {
    mon.stop();
  }
  t.deepEqual(changes, [], 'no kernel route change for the IPv6 VIP');
  t.deepEqual(await kernelGateways(lab, VIP6), both6);
  t.is((await edgeBfd(e0)).find((s) => s.peer === lab.routerAddress6)?.id, bfdBefore?.id, 'same BFD session');
});
