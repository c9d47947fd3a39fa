// Seeded churn of what the BGP speaker is asked to do, against a real FRR
// router and a real gobgpd in namespaces: VIP sets and their attributes
// changing (communities, MED, prepends, peer restrictions), a second session
// added and removed by reload, drains begun and cut short, gobgpd killed,
// the speaker (the agent) restarted — in random order, without waiting for
// one to land before the next. When it stops, the router must hold exactly
// what the last desired set says, per session, with the attributes it says:
// the truth is what the router received, not what the speaker believes.
// A failure names the seed; EDGELB_BGP_CHURN_SEED=<seed> replays it,
// EDGELB_BGP_CHURN_RUNS=N explores N fresh seeds, EDGELB_BGP_CHURN_STEPS scales.
import anyTest, { type TestFn } from 'ava';
import { NO_ATTRS, type DesiredVip, type VipAttrs } from '../../src/bgp/attributes.js';
import { createBgpLab, defaultPeer, type BgpLab } from '../lib/gobgpd.js';
import { mulberry32 } from '../lib/seeded-random.js';
import { sleep, waitFor } from '../lib/netns.js';

const test = anyTest as TestFn<{ lab: BgpLab }>;

const CANDIDATES = Array.from({ length: 24 }, (_, i) => `10.99.1.${i}/32`);

test.before(async (t) => {
  t.timeout(60_000);
  const lab = await createBgpLab([{ secondary: true }]);
  t.context.lab = lab;
  await lab.startSpeaker(0);
});

test.after.always(async (t) => {
  await t.context.lab?.destroy();
});

/** What one session (named by the edge address the router sees it from) should carry: prefix → attributes, in the router's words. */
type SessionView = Map<string, string>;

function describe(communities: readonly string[], med: number | null, pathLength: number): string {
  return `communities=${[...communities].sort().join(',')} med=${med ?? '-'} aspath=${pathLength}`;
}

async function routerView(lab: BgpLab): Promise<Map<string, SessionView>> {
  const out = new Map<string, SessionView>();
  for (const prefix of CANDIDATES) {
    const r = await lab.router.bgpRoute(prefix).catch(() => ({ paths: [] }));
    for (const p of r.paths ?? []) {
      const session = p.peer?.peerId ?? '?';
      if (!out.has(session)) out.set(session, new Map());
      const med = p.med ?? p.metric ?? null;
      out.get(session)!.set(prefix, describe(p.community?.list ?? [], med, (p.aspath?.string ?? '').split(' ').filter(Boolean).length));
    }
  }
  return out;
}

function show(v: Map<string, SessionView>): string {
  return [...v].sort().map(([s, m]) => `${s}: ${[...m].sort().map(([p, a]) => `${p} ${a}`).join('; ') || '(nothing)'}`).join('\n') || '(no session carries anything)';
}

async function churn(t: { log: (...s: string[]) => void; fail: (m: string) => void; pass: () => void }, lab: BgpLab, seed: number, steps: number): Promise<void> {
  const rnd = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const chance = (p: number) => rnd() < p;
  const e0 = lab.edges[0]!;
  const primary = defaultPeer(lab.routerAddress);
  const secondary = defaultPeer(lab.routerAddress2, { localAddress: e0.address2 });
  const randomAttrs = (): VipAttrs => ({
    ...NO_ATTRS,
    communities: [pick(['65000:1', '65000:2']), ...(chance(0.3) ? ['65000:3'] : [])],
    med: chance(0.5) ? Math.floor(rnd() * 100) : null,
    asPathPrepend: Math.floor(rnd() * 3),
    peers: chance(0.6) ? [] : [pick([lab.routerAddress, lab.routerAddress2])],
  });
  let desired: DesiredVip[] = [];
  let withSecondary = false;
  const ops: string[] = [];
  const pending: Promise<unknown>[] = [];
  let sp = e0.speaker!;
  for (let i = 0; i < steps; i++) {
    const op = rnd();
    try {
      if (op < 0.4) {
        desired = CANDIDATES.filter(() => chance(0.35)).map((prefix) => ({ prefix, attrs: randomAttrs() }));
        // Not awaited now and then: the next change comes while this one is on its way.
        const p = sp.setDesired(desired);
        if (chance(0.5)) await p;
        else pending.push(p.catch(() => undefined));
        ops.push(`set ${desired.length}`);
      } else if (op < 0.55) {
        desired = desired.map((v) => (chance(0.3) ? { prefix: v.prefix, attrs: randomAttrs() } : v));
        await sp.setDesired(desired);
        ops.push('attributes');
      } else if (op < 0.67) {
        withSecondary = !withSecondary;
        e0.config = { ...e0.config, bgp: { ...e0.config.bgp, peers: withSecondary ? [primary, secondary] : [primary] } };
        await sp.reload(e0.config);
        ops.push(withSecondary ? 'second session added' : 'second session removed');
      } else if (op < 0.75) {
        // A drain that may be cut short by an undrain below.
        pending.push(sp.drain({ persist: chance(0.5) }).catch(() => undefined));
        ops.push('drain');
      } else if (op < 0.83) {
        await sp.undrain();
        ops.push('undrain');
      } else if (op < 0.88) {
        sp.gobgpd?.kill();
        ops.push('gobgpd killed');
      } else if (op < 0.93) {
        await sp.close();
        sp = await lab.startSpeaker(0);
        // The agent hands the speaker its VIPs once its Kubernetes part has them.
        if (chance(0.7)) await sp.setDesired(desired);
        else pending.push(sp.setDesired(desired).catch(() => undefined));
        ops.push('agent restarted');
      } else {
        await sleep(Math.floor(rnd() * 300));
        ops.push('pause');
      }
    } catch (e) {
      ops.push(`failed (${(e as Error).message.slice(0, 80)})`);
    }
  }
  // The end: whatever was cut short, the last word is an undrain and the
  // last set (each may fail while gobgpd restarts; the speaker keeps them).
  await sp.undrain().catch(() => undefined);
  await Promise.all(pending);
  await sp.setDesired(desired).catch(() => undefined);
  const sessions = withSecondary ? [lab.routerAddress, lab.routerAddress2] : [lab.routerAddress];
  const fromEdge = (peer: string) => (peer === lab.routerAddress ? e0.address : e0.address2);
  const want = new Map<string, SessionView>();
  for (const v of desired) {
    for (const peer of v.attrs.peers.length > 0 ? v.attrs.peers.filter((p) => sessions.includes(p)) : sessions) {
      const s = fromEdge(peer);
      if (!want.has(s)) want.set(s, new Map());
      want.get(s)!.set(v.prefix, describe(v.attrs.communities, v.attrs.med, v.attrs.asPathPrepend + 1));
    }
  }
  let got = new Map<string, SessionView>();
  const ok = await waitFor(async () => {
    got = await routerView(lab);
    return show(got) === show(want);
  }, 45_000);
  if (!ok) {
    t.log(`operations: ${ops.join('; ')}`);
    t.fail(`seed ${seed}: the router holds\n${show(got)}\nbut the last desired set says\n${show(want)}`);
    return;
  }
  t.log(`seed ${seed} (EDGELB_BGP_CHURN_SEED=${seed} replays it): ${ops.filter((o) => o.startsWith('failed')).length} of ${steps} operations failed on the way (${[...new Set(ops.filter((o) => o.startsWith('failed')))].join(' | ') || 'none'}); at the end ${desired.length} VIPs over ${sessions.length} session(s)`);
  t.pass();
}

const fixed = process.env.EDGELB_BGP_CHURN_SEED;
const runs = Number(process.env.EDGELB_BGP_CHURN_RUNS ?? 0);
const seeds = fixed ? [Number(fixed)] : runs > 0 ? Array.from({ length: runs }, (_, i) => (Date.now() * (2 * i + 1)) % 1_000_000) : [20261207, 99];
const steps = Number(process.env.EDGELB_BGP_CHURN_STEPS ?? 120);
for (const [i, seed] of seeds.entries()) {
  test.serial(`BGP churn ${i + 1}: VIP sets, attributes, a second session, drains, gobgpd kills and agent restarts in random order — the router ends with exactly the last desired set, per session`, async (t) => {
    t.timeout(180_000);
    await churn(t, t.context.lab, seed, steps);
  });
}
