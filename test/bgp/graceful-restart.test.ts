// Graceful restart (RFC 4724) against a real FRR router, as the edge is
// configured by default (bgp.peers[].gracefulRestart.enabled: true): the
// router keeps an edge's routes while that edge's gobgpd restarts (a crash,
// systemd starting it again) and its agent puts the VIPs back — the edge
// keeps forwarding meanwhile, the XDP program does not need gobgpd — but a
// silent edge (hung, or dead without closing its sessions) is taken out at
// the hold time, graceful restart or not.
import test from 'ava';
import { NO_ATTRS } from '../../src/bgp/attributes.js';
import { createBgpLab, type BgpLab } from '../lib/gobgpd.js';
import { RouteMonitor, gatewaysOf, kernelRoutes, sleep, waitFor } from '../lib/netns.js';

const VIP = '10.99.0.1/32';
const HOLD = 3;

async function gateways(lab: BgpLab): Promise<string[]> {
  return gatewaysOf(await kernelRoutes(lab.routerNs), VIP);
}

test.serial('gobgpd killed with graceful restart on: the router keeps the route throughout its restart, then holds it fresh; a hung gobgpd is taken out at the hold time', async (t) => {
  t.timeout(120_000);
  const session = { holdTime: HOLD, keepalive: 1 };
  const lab = await createBgpLab([{ peer: { ...session, gracefulRestart: { enabled: true, restartTime: 120 } }, routerSide: session }, { routerSide: session, peer: session }], {});
  try {
    await Promise.all([lab.startSpeaker(0), lab.startSpeaker(1)]);
    const [e0, e1] = lab.edges as [BgpLab['edges'][number], BgpLab['edges'][number]];
    t.true(await waitFor(async () => (await lab.router.established(e0.address)) && (await lab.router.established(e1.address)), 20000), 'sessions up');
    await Promise.all(lab.edges.map((e) => e.speaker!.setDesired([{ prefix: VIP, attrs: NO_ATTRS }])));
    const both = [e0.address, e1.address].sort();
    t.true(await waitFor(async () => JSON.stringify(await gateways(lab)) === JSON.stringify(both), 10000), 'one route, both edges');

    // SIGKILL: the session ends with the process; the speaker starts a new
    // gobgpd and re-applies paths before peers, so the re-established
    // session carries the VIP before its End-of-RIB.
    const before = await lab.router.sessionCounters(e0.address);
    const mon = await RouteMonitor.start(lab.routerNs);
    const changes: string[] = [];
    mon.listeners.push((ev) => {
      if (ev.dst === VIP.replace('/32', '')) changes.push(ev.line);
    });
    const sp = e0.speaker!;
    const oldPid = sp.gobgpd!.pid!;
    try {
      sp.gobgpd!.kill();
      const again = await waitFor(async () => {
        const c = await lab.router.sessionCounters(e0.address);
        return c.state === 'Established' && c.established > before.established;
      }, 30000, 100);
      t.true(again, 'the session came back with the new gobgpd');
      t.not(sp.gobgpd!.pid, oldPid);
      // The restarted edge's path must be fresh again (not FRR's stale copy).
      t.true(
        await waitFor(async () => {
          const paths = (await lab.router.bgpRoute(VIP)).paths ?? [];
          return paths.length === 2 && paths.every((p) => !(p as { stale?: boolean }).stale);
        }, 10000, 100),
        `paths: ${JSON.stringify((await lab.router.bgpRoute(VIP)).paths)}`,
      );
      await sleep(1500); // the End-of-RIB and a reconcile round after it: still nothing may move
    } finally {
      mon.stop();
    }
    t.deepEqual(changes, [], 'no kernel route change for the VIP while gobgpd restarted');
    t.deepEqual(await gateways(lab), both);

    // SIGSTOP: no FIN, no keepalives — as an edge that lost power. Graceful
    // restart must not keep its routes: the hold timer takes it out.
    const pid = sp.gobgpd!.pid!;
    const t0 = Date.now();
    process.kill(pid, 'SIGSTOP');
    try {
      const gone = await waitFor(async () => JSON.stringify(await gateways(lab)) === JSON.stringify([e1.address]), (HOLD + 3) * 1000, 50);
      const ms = Date.now() - t0;
      t.true(gone, `the silent edge's nexthop is still there after ${ms} ms`);
      t.log(`hung gobgpd: nexthop removed ${ms} ms after SIGSTOP (hold time ${HOLD} s)`);
      t.deepEqual((await lab.router.bgpRoute(VIP)).paths?.map((p) => p.peer?.peerId), [e1.address], 'no stale copy kept either');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    t.true(await waitFor(async () => JSON.stringify(await gateways(lab)) === JSON.stringify(both), 20000), 'back once it answers again');
  } finally {
    await lab.destroy();
  }
});
