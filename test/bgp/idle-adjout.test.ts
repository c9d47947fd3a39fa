// The speaker's periodic adjacency-out check against a real FRR router and
// three established sessions (two IPv4, one IPv6) with a few hundred VIPs:
// what its idle rounds cost (whole adj-outs read, counted on the client's
// ListPath(ADJ_OUT) streams) and that it still repairs what it exists for —
// the export policy detached, a path whose attributes changed in place, an
// export statement altered in place, a session that came up again.
//
// Bounds are in reconcile rounds (counted on the client's per-round health
// check), not in time. The RIB's own periodic full read is pushed out of the
// way (ribFullReadEvery) so that the repairs seen are the adj-out check's.
import anyTest, { type TestFn } from 'ava';
import { NO_ATTRS, type DesiredVip } from '../../src/bgp/attributes.js';
import { FAMILY_V4, FAMILY_V6 } from '../../src/bgp/gobgp-client.js';
import { expectedAdjOut, readAdjOut } from '../../src/bgp/path-reconciler.js';
import type { BgpSpeaker, SpeakerOptions } from '../../src/bgp/speaker.js';
import { createBgpLab, defaultPeer, type BgpLab } from '../lib/gobgpd.js';
import { run, waitFor } from '../lib/netns.js';

interface Ctx {
  lab: BgpLab;
  sp: BgpSpeaker;
  peers: string[];
  vips: DesiredVip[];
  /** Reconcile rounds begun so far (each starts with one reachable() call). */
  rounds(): number;
  /** ListPath(ADJ_OUT) streams the speaker opened so far, per peer. */
  adjOutReads(peer?: string): number;
  /** (Re)start the edge's speaker with this adjOutFullReadEvery, counted by rounds() and adjOutReads(), and give it the VIPs. */
  restart(fullEvery: number): Promise<BgpSpeaker>;
}
const test = anyTest as TestFn<Ctx>;

const N4 = 300;
const N6 = 40;
/** Reconcile rounds per adj-out round, and adj-out rounds per periodic full read, in these tests. */
const ADJ_OUT_EVERY = 2;
const FULL_EVERY = 4;

const vip4 = (i: number): string => `198.18.${i >> 8}.${i & 255}/32`;
const vip6 = (i: number): string => `2001:db8:77::${i.toString(16)}/128`;

test.before(async (t) => {
  t.timeout(90_000);
  const lab = await createBgpLab([{ secondary: true, v6: true }]);
  const e = lab.edges[0]!;
  e.config.bgp.peers.push(defaultPeer(lab.routerAddress2, { localAddress: e.address2 }));
  const peers = [lab.routerAddress, lab.routerAddress6, lab.routerAddress2];
  let rounds = 0;
  const reads = new Map<string, number>();
  // Some IPv4 VIPs only to the second IPv4 session: the export policy's restriction is part of what is checked.
  const vips: DesiredVip[] = [
    ...Array.from({ length: N4 }, (_, i) => ({ prefix: vip4(i), attrs: i < 20 ? { ...NO_ATTRS, peers: [lab.routerAddress2] } : NO_ATTRS })),
    ...Array.from({ length: N6 }, (_, i) => ({ prefix: vip6(i + 1), attrs: NO_ATTRS })),
  ];
  const ctx: Ctx = {
    lab, peers, vips,
    sp: null as unknown as BgpSpeaker,
    rounds: () => rounds,
    adjOutReads: (peer) => (peer === undefined ? [...reads.values()].reduce((a, b) => a + b, 0) : reads.get(peer) ?? 0),
    async restart(fullEvery) {
      await e.speaker?.close();
      const opts: SpeakerOptions = { reconcileIntervalMs: 100, adjOutEvery: ADJ_OUT_EVERY, adjOutFullReadEvery: fullEvery, ribFullReadEvery: 100_000 };
      const sp = await lab.startSpeaker(0, opts);
      const c = sp.client;
      const reachable = c.reachable.bind(c);
      const listPath = c.listPath.bind(c);
      c.reachable = (ms) => (rounds++, reachable(ms));
      c.listPath = (table, family, name) => {
        if (table === 'ADJ_OUT') reads.set(name ?? '', (reads.get(name ?? '') ?? 0) + 1);
        return listPath(table, family, name);
      };
      await sp.setDesired(vips);
      return sp;
    },
  };
  t.context = ctx;
  const sp = await ctx.restart(FULL_EVERY);
  ctx.sp = sp;
  const up = await waitFor(async () => (await sp.status()).peers.filter((p) => p.state === 'established').length === peers.length, 30_000, 100);
  if (!up) throw new Error(`sessions not established: ${JSON.stringify((await sp.status()).peers)}`);
});

test.after.always(async (t) => {
  await t.context.lab?.destroy();
});

/** Each peer's adj-out, as gobgpd computes it, has the paths that peer should get: count per peer. */
async function adjOutCountsRight(c: Ctx): Promise<boolean> {
  for (const peer of c.peers) {
    const want = expectedAdjOut(c.vips, peer, { localAsn: c.lab.edges[0]!.asn, gracefulShutdown: false }).size;
    const got = await c.sp.client.getTable('ADJ_OUT', peer.includes(':') ? FAMILY_V6 : FAMILY_V4, peer).catch(() => null);
    if (got?.paths !== want) return false;
  }
  return true;
}

/** Wait until `cond` holds; how many reconcile rounds began meanwhile (null if it never held within 30 s). */
async function roundsUntil(c: Ctx, cond: () => Promise<boolean>): Promise<number | null> {
  const r0 = c.rounds();
  return (await waitFor(cond, 30_000, 20)) ? c.rounds() - r0 : null;
}

async function cli(c: Ctx, ...args: string[]): Promise<string> {
  return (await run(['gobgp', '--target', `unix://${c.lab.edges[0]!.socket}`, ...args])).stdout;
}

test.serial(`idle adj-out rounds with three established peers read each peer's whole adj-out at most once every adjOutFullReadEvery adj-out rounds`, async (t) => {
  t.timeout(90_000);
  const c = t.context;
  t.deepEqual(await c.sp.checkAdjOut(false), [], 'adj-out as desired for all three peers');
  const rounds0 = c.rounds();
  const reads0 = c.adjOutReads();
  const counted0 = c.sp.adjOutFullReads;
  t.truthy(await waitFor(() => c.rounds() - rounds0 >= 12 * ADJ_OUT_EVERY * FULL_EVERY / 2, 60_000, 20), 'the reconcile loop runs');
  const rounds = c.rounds() - rounds0;
  const adjRounds = Math.floor(rounds / ADJ_OUT_EVERY);
  const reads = c.adjOutReads() - reads0;
  const peers = c.peers.length;
  t.log(`${rounds} idle rounds (${adjRounds} adj-out rounds), ${peers} established peers, ${N4 + N6} VIPs: ${reads} whole adj-outs read (every adj-out round before: ${adjRounds * peers})`);
  // One more per peer than the pace allows: the window may start just before a peer's full read.
  t.true(reads <= peers * (Math.ceil(adjRounds / FULL_EVERY) + 1), `${reads} adj-out reads in ${adjRounds} adj-out rounds with ${peers} peers; at most one per peer every ${FULL_EVERY} adj-out rounds allowed`);
  t.true(reads >= peers * (Math.floor(adjRounds / FULL_EVERY) - 1), `${reads} adj-out reads in ${adjRounds} adj-out rounds: the periodic full read must still happen`);
  t.is(c.sp.adjOutFullReads - counted0, reads, 'adjOutFullReads (edgelb_bgp_adjout_full_reads_total) counts them');
});

test.serial('the export policy detached: repaired in the next adj-out round', async (t) => {
  t.timeout(60_000);
  const c = t.context;
  await waitFor(() => false, 300); // a few idle rounds: counts checked, no full read due
  // (No look at the damage first: with 100 ms rounds the loop may repair it before we could.)
  await c.sp.client.setPolicyAssignment({ name: 'global', direction: 'EXPORT', policies: [], default_action: 'REJECT' });
  const after = await roundsUntil(c, () => adjOutCountsRight(c));
  t.log(`export policy back after ${after} rounds`);
  // The adj-out round that was running may have looked already: the next one repairs.
  t.true(after !== null && after <= 2 * ADJ_OUT_EVERY + 1, `repaired after ${after} rounds; bound: the next adj-out round (${ADJ_OUT_EVERY} rounds)`);
  t.deepEqual(await c.sp.checkAdjOut(false), []);
});

test.serial('a path altered in place (same counts everywhere): repaired within adjOutFullReadEvery adj-out rounds', async (t) => {
  t.timeout(60_000);
  const c = t.context;
  const prefix = vip4(100);
  const communities = async (): Promise<number[]> => {
    const d = (await c.sp.client.listPath('GLOBAL', FAMILY_V4)).find((x) => x.prefix === prefix);
    const a = d?.paths[0]?.pattrs.find((x) => String(x['@type']).endsWith('CommunitiesAttribute')) as { communities?: number[] } | undefined;
    return a?.communities ?? [];
  };
  const reads0 = c.adjOutReads();
  await cli(c, 'global', 'rib', '-a', 'ipv4', 'add', prefix, 'community', '65000:666');
  t.deepEqual(await communities(), [65000 * 65536 + 666], 'the CLI replaced the path in place');
  t.true(await adjOutCountsRight(c), 'counts unchanged');
  const after = await roundsUntil(c, async () => (await communities()).length === 0);
  t.log(`altered path repaired after ${after} rounds`);
  t.true(c.adjOutReads() > reads0, 'found by a full adj-out read (the RIB\'s periodic read is out of the way)');
  t.true(after !== null && after <= (FULL_EVERY + 1) * ADJ_OUT_EVERY + 1, `repaired after ${after} rounds; bound: ${FULL_EVERY} adj-out rounds (${FULL_EVERY * ADJ_OUT_EVERY} rounds)`);
  t.deepEqual(await c.sp.checkAdjOut(false), []);
});

test.serial('an export statement altered in place (same counts): repaired within adjOutFullReadEvery adj-out rounds', async (t) => {
  t.timeout(60_000);
  const c = t.context;
  const peer = c.lab.routerAddress;
  const tampered = async (): Promise<boolean> => [...(await readAdjOut(c.sp.client, peer)).values()].some((p) => p.communities.includes('65000:666'));
  await cli(c, 'policy', 'statement', 'edgelb-export-local', 'add', 'action', 'community', 'add', '65000:666');
  t.true(await tampered(), 'the statement now adds a community to everything sent');
  t.true(await adjOutCountsRight(c), 'counts unchanged');
  const after = await roundsUntil(c, async () => !(await tampered()));
  t.log(`export statement repaired after ${after} rounds`);
  t.true(after !== null && after <= (FULL_EVERY + 1) * ADJ_OUT_EVERY + 1, `repaired after ${after} rounds; bound: ${FULL_EVERY} adj-out rounds`);
  t.deepEqual(await c.sp.checkAdjOut(false), []);
});

test.serial('a session reset: that peer\'s whole adj-out is read in the first adj-out round after it is up again', async (t) => {
  t.timeout(90_000);
  const c = t.context;
  // No periodic full read in this test's time: only the reset can cause one.
  // Last in the file: later tests would get the closed speaker (each test has its own copy of the context).
  c.sp = await c.restart(100_000);
  const peer = c.lab.routerAddress2;
  const established = async (): Promise<boolean> => (await c.sp.status()).peers.find((p) => p.address === peer)?.state === 'established';
  const r0 = c.rounds();
  await waitFor(() => c.rounds() - r0 >= 3 * ADJ_OUT_EVERY, 10_000, 20); // the restarted speaker's first look at every peer
  const idle0 = c.adjOutReads();
  await waitFor(() => c.rounds() - r0 >= 6 * ADJ_OUT_EVERY, 10_000, 20);
  t.is(c.adjOutReads() - idle0, 0, 'idle: no whole adj-out read');
  // Reset from the router's side: gobgpd's own hard reset waits 30 s before it reconnects.
  await c.lab.router.vtysh(`clear ip bgp ${c.lab.edges[0]!.address2}`);
  t.truthy(await waitFor(async () => !(await established()), 10_000, 20), 'the session went down');
  const reads0 = c.adjOutReads(peer);
  const others0 = c.adjOutReads() - reads0;
  t.truthy(await waitFor(established, 45_000, 20), 'and came up again');
  const after = await roundsUntil(c, async () => c.adjOutReads(peer) > reads0);
  t.log(`reset peer's adj-out read ${after} rounds after it was up again`);
  t.true(after !== null && after <= ADJ_OUT_EVERY + 1, `read after ${after} rounds; bound: the next adj-out round`);
  t.is(c.adjOutReads() - c.adjOutReads(peer) - others0, 0, 'the other peers are not read for it');
});
