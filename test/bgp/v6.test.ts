// IPv6 VIPs over IPv6 sessions with real daemons (FRR router, two gobgpd edges).
import anyTest, { type TestFn } from 'ava';
import { NO_ATTRS } from '../../src/bgp/attributes.js';
import { createBgpLab, type BgpLab } from '../lib/gobgpd.js';
import { kernelRoutes, waitFor } from '../lib/netns.js';

const test = anyTest as TestFn<{ lab: BgpLab }>;
const VIP6 = '2001:db8:99::1/128';
const VIP4 = '10.97.0.1/32';

test.before(async (t) => {
  t.timeout(60000);
  const lab = await createBgpLab([{ v6: true }, { v6: true }]);
  t.context.lab = lab;
  await Promise.all([lab.startSpeaker(0), lab.startSpeaker(1)]);
});

test.after.always(async (t) => {
  await t.context.lab?.destroy();
});

async function nexthops6(lab: BgpLab): Promise<number> {
  const r = (await kernelRoutes(lab.routerNs, 6)).find((x) => x.dst === VIP6 || x.dst === VIP6.replace('/128', ''));
  return r ? (r.nexthops?.length ?? 1) : 0;
}

test.serial('an IPv6 VIP from both edges is one route with two nexthops; it travels only on the IPv6 sessions', async (t) => {
  const { lab } = t.context;
  for (const e of lab.edges) {
    t.true(await waitFor(() => lab.router.established(e.address6), 20000), `v6 session ${e.address6}`);
  }
  await Promise.all(lab.edges.map((e) => e.speaker!.setDesired([{ prefix: VIP6, attrs: { ...NO_ATTRS, communities: ['65000:6'] } }, { prefix: VIP4, attrs: NO_ATTRS }])));
  t.true(await waitFor(async () => (await nexthops6(lab)) === 2, 10000), JSON.stringify(await kernelRoutes(lab.routerNs, 6)));
  const r = await lab.router.bgpRoute(VIP6);
  t.deepEqual(r.paths?.map((p) => p.peer?.peerId).sort(), lab.edges.map((e) => e.address6).sort());
  t.deepEqual(r.paths?.[0]?.community?.list, ['65000:6']);
  // The IPv4 VIP comes over the IPv4 sessions only.
  const r4 = await lab.router.bgpRoute(VIP4);
  t.deepEqual(r4.paths?.map((p) => p.peer?.peerId).sort(), lab.edges.map((e) => e.address).sort());
  t.deepEqual(await lab.edges[0]!.speaker!.checkAdjOut(false), []);
});

test.serial('withdrawing the IPv6 VIP on one edge leaves one nexthop', async (t) => {
  const { lab } = t.context;
  await lab.edges[1]!.speaker!.setDesired([{ prefix: VIP4, attrs: NO_ATTRS }]);
  t.true(await waitFor(async () => (await nexthops6(lab)) === 1, 5000));
});
