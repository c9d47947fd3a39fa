// Real daemons: TCP-MD5 (matching and mismatching passwords) and BFD with
// FRR's bfdd run standalone next to gobgpd, including failover when the edge's
// uplink is blackholed and when the agent declares itself unhealthy.
import anyTest, { type TestFn } from 'ava';
import type { VipAttrs } from '../../src/bgp/attributes.js';
import { createBgpLab, writePasswordFile, type BgpLab } from '../lib/gobgpd.js';
import { blackhole, gatewaysOf, kernelRoutes, sleep, waitFor } from '../lib/netns.js';

const test = anyTest as TestFn<{ lab: BgpLab }>;
const VIP = '10.98.0.1/32';
const ATTRS: VipAttrs = { communities: [], largeCommunities: [], localPref: null, med: null, asPathPrepend: 0, peers: [] };
const BFD = { minRxMs: 100, minTxMs: 100, multiplier: 3 };
// Hold time 9 s on every session: a nexthop that disappears within ~2 s can only be BFD's doing.
const DETECT_BOUND_MS = 2500;

async function gateways(lab: BgpLab): Promise<string[]> {
  return gatewaysOf(await kernelRoutes(lab.routerNs), VIP);
}

test.before(async (t) => {
  t.timeout(60000);
  const lab = await createBgpLab([
    { routerSide: { password: 'sekret' } },
    { routerSide: { password: 'sekret' } },
    { routerSide: { bfd: BFD }, peer: { bfd: { enabled: true, ...BFD } } },
  ]);
  t.context.lab = lab;
  lab.edges[0]!.config.bgp.peers[0]!.passwordFile = writePasswordFile(lab.edges[0]!.dir, 'pw', 'sekret');
  lab.edges[1]!.config.bgp.peers[0]!.passwordFile = writePasswordFile(lab.edges[1]!.dir, 'pw', 'not-the-password');
  await Promise.all(lab.edges.map((_, i) => lab.startSpeaker(i)));
});

test.after.always(async (t) => {
  await t.context.lab?.destroy();
});

test.serial('MD5: matching password establishes, a mismatch never does', async (t) => {
  const { lab } = t.context;
  const [good, bad] = lab.edges;
  t.true(await waitFor(() => lab.router.established(good!.address), 15000), 'matching password');
  // The good session is up, so both have had several connect attempts (connect timer 1 s).
  await sleep(3000);
  const st = (await lab.router.neighbors())[bad!.address];
  t.not(st?.state, 'Established');
  t.is((await lab.router.sessionCounters(bad!.address)).established, 0);
  const edge = await bad!.speaker!.status();
  t.not(edge.peers[0]!.state, 'established');
});

test.serial('BFD comes up between the router and the standalone bfdd', async (t) => {
  const { lab } = t.context;
  const e = lab.edges[2]!;
  t.true(await waitFor(() => lab.router.established(e.address), 15000));
  const up = await waitFor(async () => {
    const peers = await lab.router.vtyshJson<{ peer: string; status: string }[]>('show bfd peers json');
    return peers.find((p) => p.peer === e.address)?.status === 'up';
  }, 10000);
  t.true(up, await lab.router.vtysh('show bfd peers'));
  const st = await e.speaker!.status();
  t.deepEqual(st.bfd, { running: true, healthy: true, peers: [lab.routerAddress], sessions: [{ peer: lab.routerAddress, status: 'up' }] });
});

test.serial('BFD failover: blackholed uplink drops the nexthop well before the hold time', async (t) => {
  const { lab } = t.context;
  const [good, , bfdEdge] = lab.edges;
  await good!.speaker!.setDesired([{ prefix: VIP, attrs: ATTRS }]);
  await bfdEdge!.speaker!.setDesired([{ prefix: VIP, attrs: ATTRS }]);
  const both = [good!.address, bfdEdge!.address].sort();
  t.true(await waitFor(async () => JSON.stringify(await gateways(lab)) === JSON.stringify(both), 5000));
  await blackhole(bfdEdge!.ns, 'eth0', true);
  try {
    const gone = await waitFor(async () => JSON.stringify(await gateways(lab)) === JSON.stringify([good!.address]), DETECT_BOUND_MS, 20);
    t.true(gone, `still ${JSON.stringify(await gateways(lab))}`);
  } finally {
    await blackhole(bfdEdge!.ns, 'eth0', false);
  }
  t.true(await waitFor(async () => JSON.stringify(await gateways(lab)) === JSON.stringify(both), 20000), 'comes back after the blackhole lifts');
});

test.serial('health coupling: an unhealthy agent takes BFD down and the router fails over; healthy restores', async (t) => {
  const { lab } = t.context;
  const [good, , bfdEdge] = lab.edges;
  const both = [good!.address, bfdEdge!.address].sort();
  t.true(await waitFor(async () => JSON.stringify(await gateways(lab)) === JSON.stringify(both), 5000));
  await bfdEdge!.speaker!.setDatapathHealthy(false);
  const gone = await waitFor(async () => JSON.stringify(await gateways(lab)) === JSON.stringify([good!.address]), DETECT_BOUND_MS, 20);
  t.true(gone, `still ${JSON.stringify(await gateways(lab))}`);
  await bfdEdge!.speaker!.setDatapathHealthy(true);
  t.true(await waitFor(async () => JSON.stringify(await gateways(lab)) === JSON.stringify(both), 20000), 'route returns');
});
