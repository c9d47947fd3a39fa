// Real daemons: an FRR router (zebra+bgpd+bfdd) and two gobgpd edges driven by
// BgpSpeaker, in private network namespaces. One lab for the whole file; the
// steps build on each other, so they run serially.
import anyTest, { type TestFn } from 'ava';
import { pidAlive } from '../../src/bgp/daemon-files.js';
import { NO_ATTRS, type DesiredVip, type VipAttrs } from '../../src/bgp/attributes.js';
import { FAMILY_V4 } from '../../src/bgp/gobgp-client.js';
import { createBgpLab, defaultPeer, type BgpLab } from '../lib/gobgpd.js';
import { gatewaysOf, kernelRoutes, RouteMonitor, waitFor, sleep } from '../lib/netns.js';

const test = anyTest as TestFn<{ lab: BgpLab }>;

const VIP = '10.99.0.1/32';
const ATTRS: VipAttrs = { communities: ['65000:100', '65000:200'], largeCommunities: ['65000:7:8'], localPref: null, med: 42, asPathPrepend: 2, peers: [] };
const ROUTER_NET = '10.250.0.0/24';

async function gateways(lab: BgpLab, prefix: string): Promise<string[]> {
  return gatewaysOf(await kernelRoutes(lab.routerNs), prefix);
}

async function waitGateways(lab: BgpLab, prefix: string, want: string[], timeoutMs: number): Promise<string[]> {
  const sorted = [...want].sort();
  let got: string[] = [];
  await waitFor(async () => {
    got = await gateways(lab, prefix);
    return JSON.stringify(got) === JSON.stringify(sorted);
  }, timeoutMs);
  return got;
}

test.before(async (t) => {
  t.timeout(60000);
  const lab = await createBgpLab([{ secondary: true }, {}], { networks: [ROUTER_NET] });
  t.context.lab = lab;
  await Promise.all([lab.startSpeaker(0), lab.startSpeaker(1)]);
});

test.after.always(async (t) => {
  await t.context.lab?.destroy();
});

test.serial('sessions establish with both edges', async (t) => {
  const { lab } = t.context;
  const up = await waitFor(async () => (await lab.router.established(lab.edges[0]!.address)) && (await lab.router.established(lab.edges[1]!.address)), 20000);
  t.true(up, JSON.stringify(await lab.router.neighbors()));
  const st = await lab.edges[0]!.speaker!.status();
  t.is(st.peers.length, 1);
  t.is(st.peers[0]!.state, 'established');
  t.true(st.gobgpdHealthy);
});

test.serial('a VIP announced by both edges is one kernel route with two nexthops', async (t) => {
  const { lab } = t.context;
  const vips: DesiredVip[] = [{ prefix: VIP, attrs: ATTRS }];
  await Promise.all(lab.edges.map((e) => e.speaker!.setDesired(vips)));
  const got = await waitGateways(lab, VIP, [lab.edges[0]!.address, lab.edges[1]!.address], 10000);
  t.deepEqual(got, [lab.edges[0]!.address, lab.edges[1]!.address].sort());
});

test.serial('attributes arrive at the router', async (t) => {
  const { lab } = t.context;
  const r = await lab.router.bgpRoute(VIP);
  t.is(r.paths?.length, 2);
  for (const p of r.paths ?? []) {
    t.deepEqual(p.community?.list?.sort(), ['65000:100', '65000:200']);
    // Only our large community: the internal restriction mark never leaves the edge.
    t.deepEqual(p.largeCommunity?.list, ['65000:7:8']);
    t.is(p.med ?? p.metric, 42);
    const asn = lab.edges.find((e) => e.address === p.peer?.peerId)!.asn;
    t.is(p.aspath?.string, `${asn} ${asn} ${asn}`, 'our ASN + 2 prepends');
  }
});

test.serial('import nothing: the router\'s own prefix is not in the edge RIB', async (t) => {
  const { lab } = t.context;
  const client = lab.edges[0]!.speaker!.client;
  const sent = await waitFor(async () => (await client.listPath('ADJ_IN', FAMILY_V4, lab.routerAddress)).some((d) => d.prefix === ROUTER_NET), 5000);
  t.true(sent, 'router did send it');
  const rib = await client.listPath('GLOBAL', FAMILY_V4);
  t.deepEqual(rib.map((d) => d.prefix), [VIP]);
});

test.serial('withdraw on one edge removes its nexthop', async (t) => {
  const { lab } = t.context;
  const e1 = lab.edges[1]!;
  await e1.speaker!.setDesired([]);
  t.deepEqual(await waitGateways(lab, VIP, [lab.edges[0]!.address], 5000), [lab.edges[0]!.address]);
  await e1.speaker!.setDesired([{ prefix: VIP, attrs: ATTRS }]);
  t.is((await waitGateways(lab, VIP, [lab.edges[0]!.address, e1.address], 5000)).length, 2);
});

test.serial('a peer added by reload comes up; the existing session is not reset', async (t) => {
  const { lab } = t.context;
  const e0 = lab.edges[0]!;
  const before = await lab.router.sessionCounters(e0.address);
  const upSince = (await e0.speaker!.status()).peers[0]!.upSince;
  t.is(before.state, 'Established');
  const cfg = structuredClone(e0.config);
  cfg.bgp.peers.push(defaultPeer(lab.routerAddress2, { localAddress: e0.address2 }));
  const diff = await e0.speaker!.reload(cfg);
  t.deepEqual(diff.add.map((p) => p.address), [lab.routerAddress2]);
  t.deepEqual(diff.update, []);
  t.true(await waitFor(() => lab.router.established(e0.address2), 15000), 'second session established');
  t.deepEqual(await lab.router.sessionCounters(e0.address), before, 'first session never dropped');
  const st = await e0.speaker!.status();
  t.is(st.peers.find((p) => p.address === lab.routerAddress)!.upSince, upSince);
  e0.config = cfg;
});

test.serial('advertise.peers restricts a VIP to a subset of peers', async (t) => {
  const { lab } = t.context;
  const e0 = lab.edges[0]!;
  const restricted = '10.99.0.3/32';
  await e0.speaker!.setDesired([
    { prefix: VIP, attrs: ATTRS },
    { prefix: restricted, attrs: { ...NO_ATTRS, peers: [lab.routerAddress2] } },
  ]);
  const got = await waitFor(async () => {
    const r = await lab.router.bgpRoute(restricted);
    return r.paths?.length ? r : null;
  }, 5000);
  t.deepEqual(got?.paths?.map((p) => p.peer?.peerId), [e0.address2], 'only via the second session');
  t.deepEqual(got?.paths?.[0]?.largeCommunity, undefined, 'mark stripped');
  // The unrestricted VIP still goes to both sessions of edge 0.
  const all = await lab.router.bgpRoute(VIP);
  t.deepEqual(all.paths?.map((p) => p.peer?.peerId).sort(), [e0.address, e0.address2, lab.edges[1]!.address].sort());
  t.deepEqual(await e0.speaker!.checkAdjOut(false), [], 'adj-out matches desired for both peers');
  // Widen to all peers: the restriction lifts without withdrawing the VIP elsewhere.
  await e0.speaker!.setDesired([{ prefix: VIP, attrs: ATTRS }, { prefix: restricted, attrs: NO_ATTRS }]);
  const wide = await waitFor(async () => {
    const r = await lab.router.bgpRoute(restricted);
    return r.paths?.length === 2 ? r : null;
  }, 5000);
  t.deepEqual(wide?.paths?.map((p) => p.peer?.peerId).sort(), [e0.address, e0.address2].sort());
  await e0.speaker!.setDesired([{ prefix: VIP, attrs: ATTRS }]);
});

test.serial('agent restart before the first desired state: a restricted VIP stays announced to its peers, and to them only', async (t) => {
  t.timeout(120_000);
  const { lab } = t.context;
  const e0 = lab.edges[0]!;
  const restricted = '10.99.0.4/32';
  const peersOf = async (prefix: string): Promise<string[]> => ((await lab.router.bgpRoute(prefix)).paths ?? []).map((p) => p.peer?.peerId ?? '?').sort();
  await e0.speaker!.setDesired([
    { prefix: VIP, attrs: ATTRS },
    { prefix: restricted, attrs: { ...NO_ATTRS, peers: [lab.routerAddress2] } },
  ]);
  t.true(await waitFor(async () => JSON.stringify(await peersOf(restricted)) === JSON.stringify([e0.address2]), 5000), `restricted VIP via ${JSON.stringify(await peersOf(restricted))}`);
  // A handover: the new speaker adopts gobgpd's paths and is told nothing
  // yet (its Kubernetes side has not finished the first pass).
  await e0.speaker!.close();
  const s = await lab.startSpeaker(0);
  const seen = new Set<string>();
  for (let i = 0; i < 20; i++) {
    seen.add(JSON.stringify(await peersOf(restricted)));
    await sleep(100); // 2 s: four reconcile rounds of the new speaker
  }
  t.deepEqual([...seen], [JSON.stringify([e0.address2])], 'the restricted VIP, over the restart, was announced by these sessions');
  t.deepEqual(await peersOf(VIP), [e0.address, e0.address2, lab.edges[1]!.address].sort());
  // Still before the first desired state, the session to its peer starts
  // again (a router reboot, a link flap): gobgpd sends it its table anew.
  await s.client.resetPeer(lab.routerAddress2, false);
  t.true(await waitFor(async () => !(await peersOf(VIP)).includes(e0.address2), 10_000), 'the session went down');
  // gobgpd holds a peer it reset idle for 30 s before it connects again.
  t.true(await waitFor(async () => (await peersOf(VIP)).includes(e0.address2), 60_000), 'the session came back');
  t.true(await waitFor(async () => JSON.stringify(await peersOf(restricted)) === JSON.stringify([e0.address2]), 5000), `after the session came back, the restricted VIP via ${JSON.stringify(await peersOf(restricted))}`);
  t.deepEqual(await peersOf(VIP), [e0.address, e0.address2, lab.edges[1]!.address].sort());
  await s.setDesired([{ prefix: VIP, attrs: ATTRS }]);
  t.true(await waitFor(async () => (await peersOf(restricted)).length === 0, 5000), 'withdrawn once the desired state no longer has it');
});

test.serial('a peer removed by reload goes away; the other session is not reset', async (t) => {
  const { lab } = t.context;
  const e0 = lab.edges[0]!;
  const before = await lab.router.sessionCounters(e0.address);
  const cfg = structuredClone(e0.config);
  cfg.bgp.peers = cfg.bgp.peers.filter((p) => p.address !== lab.routerAddress2);
  const diff = await e0.speaker!.reload(cfg);
  e0.config = cfg;
  t.deepEqual(diff, { add: [], update: [], delete: [lab.routerAddress2] });
  t.true(await waitFor(async () => !(await lab.router.established(e0.address2)), 5000));
  t.deepEqual(await lab.router.sessionCounters(e0.address), before, 'first session never dropped');
  t.deepEqual(await waitGateways(lab, VIP, [e0.address, lab.edges[1]!.address], 5000), [e0.address, lab.edges[1]!.address].sort());
});

test.serial('agent restart: the route never leaves the router and gobgpd is adopted', async (t) => {
  const { lab } = t.context;
  const e0 = lab.edges[0]!;
  const pid = e0.speaker!.gobgpd!.pid!;
  const both = [e0.address, lab.edges[1]!.address].sort();
  t.deepEqual(await gateways(lab, VIP), both);
  // Every kernel change to the VIP's route (delete, or replace with another
  // nexthop set) shows up on `ip monitor route`; there must be none.
  const mon = await RouteMonitor.start(lab.routerNs);
  const changes: string[] = [];
  mon.listeners.push((ev) => {
    if (ev.dst === VIP.replace('/32', '')) changes.push(ev.line);
  });
  let polling = true;
  const samples: string[][] = [];
  const poller = (async () => {
    while (polling) {
      samples.push(await gateways(lab, VIP));
      await sleep(10);
    }
  })();
  try {
    await e0.speaker!.close();
    await sleep(300);
    const s = await lab.startSpeaker(0);
    t.true(s.gobgpd!.adopted);
    t.is(s.gobgpd!.pid, pid);
    await s.setDesired([{ prefix: VIP, attrs: ATTRS }]);
    await sleep(1000); // a few reconcile rounds of the new speaker
  } finally {
    polling = false;
    await poller;
    mon.stop();
  }
  t.deepEqual(changes, [], 'no kernel route change for the VIP during the restart');
  t.true(samples.length > 0);
  t.true(
    samples.every((g) => JSON.stringify(g) === JSON.stringify(both)),
    `route changed during restart: ${JSON.stringify(samples.filter((g) => JSON.stringify(g) !== JSON.stringify(both)).slice(0, 3))}`,
  );
  t.true(pidAlive(pid));
});

test.serial('gobgpd killed: restarted and its VIPs re-announced', async (t) => {
  const { lab } = t.context;
  const e1 = lab.edges[1]!;
  const sp = e1.speaker!;
  const oldPid = sp.gobgpd!.pid!;
  sp.gobgpd!.kill();
  t.deepEqual(await waitGateways(lab, VIP, [lab.edges[0]!.address], 5000), [lab.edges[0]!.address], 'nexthop gone with the session');
  const back = await waitGateways(lab, VIP, [lab.edges[0]!.address, e1.address], 20000);
  t.is(back.length, 2, 'route re-announced by the restarted gobgpd');
  t.not(sp.gobgpd!.pid, oldPid);
  t.true(sp.resyncs >= 1);
});

test.serial('drain: GRACEFUL_SHUTDOWN seen, then withdrawn; undrain restores', async (t) => {
  const { lab } = t.context;
  const e1 = lab.edges[1]!;
  const sp = e1.speaker!;
  let sawGshut = false;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const r = await lab.router.bgpRoute(VIP).catch(() => ({ paths: [] }));
      const p = r.paths?.find((x) => x.peer?.peerId === e1.address);
      if (p?.community?.list?.some((c) => c === 'gracefulShutdown' || c === 'graceful-shutdown' || c === '65535:0')) sawGshut = true;
      await sleep(50);
    }
  })();
  // A window of 3 s (the lab's default is 1 s): long enough for the poller
  // to catch the GRACEFUL_SHUTDOWN path at the router on a loaded machine.
  e1.config = { ...e1.config, bgp: { ...e1.config.bgp, drainSeconds: 3 } };
  await sp.reload(e1.config);
  const drained = sp.drain();
  await sleep(100);
  t.is((await sp.status()).drain, 'draining');
  await drained;
  polling = false;
  await poller;
  t.true(sawGshut, 'router saw the GRACEFUL_SHUTDOWN community');
  t.is((await sp.status()).drain, 'drained');
  t.deepEqual(await waitGateways(lab, VIP, [lab.edges[0]!.address], 5000), [lab.edges[0]!.address]);
  await sp.undrain();
  e1.config = { ...e1.config, bgp: { ...e1.config.bgp, drainSeconds: 1 } };
  await sp.reload(e1.config);
  t.is((await waitGateways(lab, VIP, [lab.edges[0]!.address, e1.address], 5000)).length, 2);
  const r = await lab.router.bgpRoute(VIP);
  const p = r.paths?.find((x) => x.peer?.peerId === e1.address);
  t.false(p?.community?.list?.some((c) => c === 'gracefulShutdown' || c === 'graceful-shutdown') ?? false);
});

test.serial('an operator drain (persist) survives an agent restart until undrain', async (t) => {
  const { lab } = t.context;
  const [e0, e1] = lab.edges;
  await e1!.speaker!.drain({ persist: true });
  t.deepEqual(await waitGateways(lab, VIP, [e0!.address], 5000), [e0!.address]);
  await e1!.speaker!.close();
  const s = await lab.startSpeaker(1);
  t.is((await s.status()).drain, 'drained');
  await s.setDesired([{ prefix: VIP, attrs: ATTRS }]);
  await sleep(1000);
  t.deepEqual(await gateways(lab, VIP), [e0!.address], 'still withdrawn after the restart');
  await s.undrain();
  t.is((await waitGateways(lab, VIP, [e0!.address, e1!.address], 5000)).length, 2);
});

test.serial('drift is repaired: a path deleted behind our back and a broken export assignment', async (t) => {
  const { lab } = t.context;
  const e0 = lab.edges[0]!;
  const sp = e0.speaker!;
  const both = [e0.address, lab.edges[1]!.address];
  t.is((await waitGateways(lab, VIP, both, 5000)).length, 2);
  // Someone withdraws our VIP directly in gobgpd: the next reconcile round
  // re-adds it. The loop (500 ms) may do so before we could look, so the
  // proof is the path's age: a path added again is younger than the one deleted.
  const ourPath = async () => (await sp.client.listPath('GLOBAL', FAMILY_V4)).find((d) => d.prefix === VIP)?.paths[0];
  const before = (await ourPath())!;
  const addedAt = Number(before.age?.seconds ?? 0);
  await waitFor(() => Date.now() / 1000 >= addedAt + 1.5, 2000); // ages have a 1 s resolution
  await sp.client.deletePath({ path: before });
  t.true(await waitFor(async () => Number((await ourPath())?.age?.seconds ?? 0) > addedAt, 5000, 20), 'deleted, then re-added by the reconcile loop');
  t.is((await waitGateways(lab, VIP, both, 5000)).length, 2, 'and back at the router');
  // Someone detaches our export policy: adj-out no longer matches; checkAdjOut
  // reports and repairs it. The loop re-asserts the assignment every round
  // too, and may win the race: then detach again (bounded).
  let found: Awaited<ReturnType<typeof sp.checkAdjOut>> = [];
  for (let i = 0; i < 5 && found.length === 0; i++) {
    await sp.client.setPolicyAssignment({ name: 'global', direction: 'EXPORT', policies: [], default_action: 'REJECT' });
    found = await sp.checkAdjOut(true);
  }
  t.deepEqual(found.map((m) => [m.peer, m.missing]), [[lab.routerAddress, [VIP]]]);
  t.deepEqual(await sp.checkAdjOut(false), [], 'repaired');
  t.is((await waitGateways(lab, VIP, both, 5000)).length, 2);
});
