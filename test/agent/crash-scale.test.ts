// The agent SIGKILLed (no handover, no goodbye) with 2 000 Services announced
// and programmed, and 20 of them deleted while no agent runs: the next agent
// should adopt what the dead one left (gobgpd's paths, the pinned maps) and
// remove exactly the 20 — no other VIP leaves the router, no other frontend
// leaves the maps, nothing is replaced. The cluster: scale-lab.ts (real
// kube-apiserver and etcd, selector-less Services, hand-made slices).
//
// Status writes trail the datapath by seconds (~900 of 2 000 Services had
// no address in their status 0.6 s after all were announced), and a SIGKILL
// skips stop()'s flush. Restoring allocations from status alone, the next
// agent auto-assigned those Services the lowest free address — 20 of them
// the deleted Services' addresses — and withdrew 20 VIPs that stay desired.
// It now gives them back the adopted frontends' addresses
// (src/k8s/held-allocations.ts).
import test from 'ava';
import { sleep } from '../lib/netns.js';
import { until } from './harness.js';
import { pinnedFrontends as pinned, scaleLabPerFile, vipRoutes as routes } from './scale-lab.js';

const N = Number(process.env.EDGELB_CRASH_SCALE_N ?? 2000);
const GONE = 20;
const { lab, setupMs } = scaleLabPerFile('k', N);

const vipRoutes = (): Promise<Set<string>> => routes(lab);
const pinnedFrontends = (): Map<string, number> => pinned(lab);

/** The VIP (dotted IPv4) a frontend key starts with. */
const keyVip = (hex: string): string => [...Buffer.from(hex, 'hex').subarray(0, 4)].join('.');

/** The address the agent wrote to the Service's status (status writes trail the datapath: waited for). */
async function serviceVip(name: string): Promise<string> {
  return until(async () => {
    const s = (await lab.api.get('services', 'default', name)) as { status?: { loadBalancer?: { ingress?: { ip: string }[] } } } | null;
    return s?.status?.loadBalancer?.ingress?.[0]?.ip ?? null;
  }, 60_000, `${name}'s address in its status`, 200);
}

test.serial(`agent SIGKILLed with ${N} Services: the next one adopts them and removes only the ${GONE} deleted meanwhile`, async (t) => {
  t.timeout(300_000);
  const t0 = Date.now();
  await lab.startAgent();
  await until(async () => (await vipRoutes()).size === N, 240_000, `${N} VIP routes at the router`, 500);
  await until(() => pinnedFrontends().size === N, 30_000, `${N} frontends in the pinned maps`, 500);
  t.log(`setup ${setupMs()} ms; cold start: ${N} Services announced and programmed ${Date.now() - t0} ms after the agent started`);
  const routesBefore = await vipRoutes();
  const before = pinnedFrontends();
  const gone = new Set(await Promise.all(Array.from({ length: GONE }, (_, i) => serviceVip(`s${i}`))));
  const stay = [...routesBefore].filter((v) => !gone.has(v));
  t.is(stay.length, N - GONE);

  const missing = new Map<string, number>(); // VIP that stays → samples it was missing from (router or maps)
  let samples = 0;
  let missingFrom = -1;
  let polling = true;
  const poll = (async () => {
    while (polling) {
      const routes = await vipRoutes();
      const fronts = new Set([...pinnedFrontends().keys()].map(keyVip));
      for (const v of stay) {
        if (!routes.has(v)) missing.set(`route ${v}`, (missing.get(`route ${v}`) ?? 0) + 1);
        if (!fronts.has(v)) missing.set(`frontend ${v}`, (missing.get(`frontend ${v}`) ?? 0) + 1);
      }
      if ([...missing.values()].length > 0 && missingFrom < 0) missingFrom = samples;
      samples++;
      await sleep(200);
    }
  })();
  await sleep(600);
  const unwritten = (await lab.api.list('services', 'default')).filter((x) => !(x as { status?: { loadBalancer?: { ingress?: unknown[] } } }).status?.loadBalancer?.ingress?.length).length;
  const killedAt = samples;
  t.is(await lab.stopAgent('SIGKILL' as 'SIGQUIT'), null, 'killed');
  await Promise.all(Array.from({ length: GONE }, (_, i) => lab.api.delete('services', 'default', `s${i}`)));
  const logFrom = lab.log.length;
  const t1 = Date.now();
  await lab.startAgent();
  await until(() => /first pass complete/.test(lab.log.slice(logFrom)), 240_000, 'the new agent to compute every Service once', 200);
  const firstPassMs = Date.now() - t1;
  const passAt = samples;
  await until(async () => (await vipRoutes()).size === N - GONE, 30_000, `the ${GONE} deleted VIPs withdrawn`, 200);
  await sleep(3000);
  polling = false;
  await poll;
  t.log(`first pass complete ${firstPassMs} ms after the new agent started; ${samples} samples`);
  t.true(samples > 10, `${samples} samples`);
  const holders = (await lab.api.list('services', 'default'))
    .map((x) => x as { metadata: { name: string }; status?: { loadBalancer?: { ingress?: { ip: string }[] } } })
    .filter((x) => gone.has(x.status?.loadBalancer?.ingress?.[0]?.ip ?? ''))
    .map((x) => `${x.metadata.name}=${x.status!.loadBalancer!.ingress![0]!.ip}`);
  t.log(`at the kill ${unwritten} Services had no address in their status; the deleted Services' addresses are now held by: ${holders.slice(0, 5).join(' ')} (${holders.length})`);
  t.log(`samples: killed at ${killedAt}, first pass at ${passAt}, first miss at ${missingFrom}`);
  t.deepEqual([...missing.entries()].slice(0, 10), [], `${missing.size} times a VIP that stays left the router or the pinned maps`);
  const routesAfter = await vipRoutes();
  t.deepEqual([...gone].filter((v) => routesAfter.has(v)), [], 'a deleted Service is still announced');
  const after = pinnedFrontends();
  t.deepEqual([...after.keys()].filter((k) => gone.has(keyVip(k))), [], 'a deleted Service is still in the maps');
  t.is([...before].filter(([k, id]) => !gone.has(keyVip(k)) && after.get(k) !== id).length, 0, 'a frontend that stays was replaced');
  t.is(after.size, N - GONE);
});
