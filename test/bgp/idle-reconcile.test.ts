// The speaker's idle reconcile rounds against a real gobgpd holding a few
// hundred VIPs: what they cost (full reads of gobgpd's RIB, counted on the
// client's ListPath streams) and what they still repair — paths deleted,
// added or altered behind the speaker's back with the gobgp CLI, and a
// gobgpd restarted.
//
// No BGP listener (listenPort -1) and no peers: nothing goes on the network,
// so no namespace is needed. Bounds are in reconcile rounds (counted on the
// client's per-round health check), not in time.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NO_ATTRS, type DesiredVip } from '../../src/bgp/attributes.js';
import { FAMILY_V4 } from '../../src/bgp/gobgp-client.js';
import { GobgpdProcess } from '../../src/bgp/gobgpd-process.js';
import { BgpSpeaker, type SpeakerOptions } from '../../src/bgp/speaker.js';
import { edgeBgpConfig } from '../lib/gobgpd.js';
import { run, waitFor } from '../lib/netns.js';

const N = 300;
/** ribFullReadEvery in these tests: a full read at least every this many rounds. */
const EVERY = 10;

const vip = (i: number): string => `198.18.${i >> 8}.${i & 255}/32`;
const vips = (from: number, to: number): DesiredVip[] => Array.from({ length: to - from }, (_, k) => ({ prefix: vip(from + k), attrs: NO_ATTRS }));

interface Rig {
  sp: BgpSpeaker;
  socket: string;
  /** Reconcile rounds begun so far (each starts with one reachable() call). */
  rounds(): number;
  /** ListPath streams of the global RIB the speaker opened so far. */
  globalReads(): number;
  /** Prefix → communities of every path in gobgpd's global IPv4 RIB. */
  rib(): Promise<Map<string, string>>;
  /** The gobgp CLI against this gobgpd (what an operator would type). */
  cli(...args: string[]): Promise<string>;
  restartGobgpd(): Promise<void>;
}

async function rig(t: { teardown: (fn: () => Promise<void>) => void }, asn: number, opts: SpeakerOptions): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-idle-reconcile-'));
  const base = edgeBgpConfig(dir, []);
  const bgp = { ...base, gobgp: { ...base.gobgp, manage: false } };
  const gobgpd = (): GobgpdProcess => new GobgpdProcess({ binary: 'gobgpd', socket: bgp.gobgp.socket, logFile: join(dir, 'gobgpd.log') });
  let g = gobgpd();
  const sp = new BgpSpeaker({ node: { asn, routerId: '192.0.2.60' }, bgp }, { listenPort: -1, ...opts });
  t.teardown(async () => {
    await sp.close();
    await g.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  await g.start();
  let rounds = 0;
  let globalReads = 0;
  const c = sp.client;
  const reachable = c.reachable.bind(c);
  const listPath = c.listPath.bind(c);
  c.reachable = (ms) => (rounds++, reachable(ms));
  c.listPath = (table, family, name) => (table === 'GLOBAL' && globalReads++, listPath(table, family, name));
  const socket = bgp.gobgp.socket;
  return {
    sp,
    socket,
    rounds: () => rounds,
    globalReads: () => globalReads,
    async rib() {
      const m = new Map<string, string>();
      for (const d of await listPath('GLOBAL', FAMILY_V4).catch(() => [])) {
        for (const p of d.paths) {
          const comm = p.pattrs.find((a) => String(a['@type']).endsWith('CommunitiesAttribute')) as { communities?: number[] } | undefined;
          m.set(d.prefix, (comm?.communities ?? []).map((x) => `${x >>> 16}:${x & 0xffff}`).join(' '));
        }
      }
      return m;
    },
    async cli(...args) {
      return (await run(['gobgp', '--target', `unix://${socket}`, ...args])).stdout;
    },
    async restartGobgpd() {
      await g.stop();
      g = gobgpd();
      await g.start();
    },
  };
}

/** The RIB is exactly these prefixes, each with these communities ('' = none). */
function ribIs(rib: Map<string, string>, want: DesiredVip[]): boolean {
  return rib.size === want.length && want.every((v) => rib.get(v.prefix) === v.attrs.communities.join(' '));
}

/**
 * Wait until `cond` holds; how many reconcile rounds began meanwhile (null
 * if it never held within 30 s). The round that repairs is the last one
 * counted, unless the next one began while `cond` was being checked.
 */
async function roundsUntil(r: Rig, cond: () => Promise<boolean>): Promise<number | null> {
  const r0 = r.rounds();
  return (await waitFor(cond, 30_000, 20)) ? r.rounds() - r0 : null;
}

test.serial(`idle rounds at ${N} VIPs read gobgpd's whole RIB at most once every ribFullReadEvery rounds; changes, drain and undrain still apply at once and exactly`, async (t) => {
  t.timeout(90_000);
  const r = await rig(t, 65160, { reconcileIntervalMs: 50, ribFullReadEvery: EVERY });
  await r.sp.start();
  const want = vips(0, N);
  await r.sp.setDesired(want);
  t.true(ribIs(await r.rib(), want));
  const rounds0 = r.rounds();
  const reads0 = r.globalReads();
  const counted0 = r.sp.ribFullReads;
  t.truthy(await waitFor(() => r.rounds() - rounds0 >= 3 * EVERY, 60_000, 20), 'the reconcile loop runs');
  const rounds = r.rounds() - rounds0;
  // One full read is a ListPath stream per family.
  const fullReads = (r.globalReads() - reads0) / 2;
  t.log(`${rounds} idle rounds at ${N} VIPs: ${fullReads} full RIB reads (every round before: ${rounds})`);
  // One more than the pace allows: a round slow enough to time out (a loaded machine) reads in full after it.
  t.true(fullReads <= Math.ceil(rounds / EVERY) + 2, `${fullReads} full RIB reads in ${rounds} idle rounds; at most one per ${EVERY} rounds allowed`);
  t.true(fullReads >= Math.floor(rounds / EVERY) - 1, `${fullReads} full RIB reads in ${rounds} idle rounds: the periodic full read must still happen`);
  t.is(r.sp.ribFullReads - counted0, fullReads, 'ribFullReads (edgelb_bgp_rib_full_reads_total) counts them');
  // Our own changes: applied by the time setDesired resolves, not at the next full read.
  const changed = [
    ...vips(10, N - 5).map((v, i) => (i < 5 ? { prefix: v.prefix, attrs: { ...NO_ATTRS, communities: ['65000:7'] } } : v)),
    ...vips(N, N + 10),
  ];
  await r.sp.setDesired(changed);
  t.true(ribIs(await r.rib(), changed), 'a change (10 VIPs gone, 10 new, 5 with a new community) is in the RIB when setDesired resolves');
  await r.sp.drain();
  t.is((await r.rib()).size, 0, 'drained: nothing announced');
  await r.sp.undrain();
  t.true(ribIs(await r.rib(), changed), 'undrained: the VIPs again, as they were');
});

test.serial(`tampering at ${N} VIPs: a path deleted or added with the gobgp CLI is repaired in the next round, one altered in place within ribFullReadEvery rounds, a gobgpd restart at once`, async (t) => {
  t.timeout(120_000);
  const r = await rig(t, 65161, { reconcileIntervalMs: 200, ribFullReadEvery: EVERY });
  await r.sp.start();
  const want = vips(0, N);
  await r.sp.setDesired(want);
  await waitFor(() => r.rounds() >= 5, 10_000, 20); // idle now: counts checked, the RIB not read
  const intact = async (): Promise<boolean> => ribIs(await r.rib(), want);

  await r.cli('global', 'rib', '-a', 'ipv4', 'del', vip(5));
  t.false((await r.rib()).has(vip(5)), 'the CLI deleted the path');
  const afterDelete = await roundsUntil(r, intact);
  t.log(`deleted path back after ${afterDelete} rounds`);
  // The round that was running when the CLI struck may have checked already: the next one repairs.
  t.true(afterDelete !== null && afterDelete <= 2, `deleted path repaired after ${afterDelete} rounds; bound: the next round`);

  await r.cli('global', 'rib', '-a', 'ipv4', 'add', '198.18.200.1/32');
  const afterAdd = await roundsUntil(r, intact);
  t.log(`foreign path withdrawn after ${afterAdd} rounds`);
  t.true(afterAdd !== null && afterAdd <= 2, `added path withdrawn after ${afterAdd} rounds; bound: the next round`);

  // Same prefix, other attributes: gobgpd replaces our path, and its counts do not change.
  await r.cli('global', 'rib', '-a', 'ipv4', 'add', vip(7), 'community', '65000:666');
  t.is((await r.rib()).get(vip(7)), '65000:666', 'the CLI replaced the path in place');
  t.deepEqual(await r.sp.client.getTable('GLOBAL', FAMILY_V4), { destinations: N, paths: N }, 'counts unchanged by an in-place replacement');
  const afterAlter = await roundsUntil(r, intact);
  t.log(`altered path repaired after ${afterAlter} rounds`);
  // The next full read comes at most EVERY rounds on; one more for the round that began while we looked.
  t.true(afterAlter !== null && afterAlter <= EVERY + 1, `altered path repaired after ${afterAlter} rounds; bound: ${EVERY} rounds (the next full read)`);

  // A delete and an add together keep the counts too: the next full read.
  await r.cli('global', 'rib', '-a', 'ipv4', 'del', vip(9));
  await r.cli('global', 'rib', '-a', 'ipv4', 'add', '198.18.200.2/32');
  const afterSwap = await roundsUntil(r, intact);
  t.true(afterSwap !== null && afterSwap <= EVERY + 1, `a delete plus an add repaired after ${afterSwap} rounds; bound: ${EVERY} rounds`);

  await r.restartGobgpd(); // an empty RIB, BGP not started
  const afterRestart = await roundsUntil(r, intact);
  t.log(`all ${N} VIPs back after ${afterRestart} rounds once the new gobgpd answered`);
  t.true(afterRestart !== null && afterRestart <= 2, `re-announced after ${afterRestart} rounds; bound: the next round`);
  t.is(r.sp.resyncs, 1, 'the restart was detected as one');
});
