// A SIGQUIT handover with 3 000 Services: the new agent computes the whole
// cluster in bounded rounds, and while it does, no VIP leaves the router and
// no frontend leaves the pinned maps. The cluster (scale-lab.ts) is sized so
// setup, cold start and handover fit in ava's 5-minute timeout on two cores.
import test from 'ava';
import { sleep } from '../lib/netns.js';
import { until } from './harness.js';
import { pinnedFrontends as pinned, scaleLabPerFile, vipRoutes as routes } from './scale-lab.js';

const N = 3000;
const { lab, setupMs } = scaleLabPerFile('h', N);

/** VIP routes the router has installed (all of them /32s from the pool). */
const vipRoutes = async (): Promise<number> => (await routes(lab)).size;
const pinnedFrontends = (): Map<string, number> => pinned(lab);

test.serial(`SIGQUIT handover with ${N} Services: no VIP leaves the router, no frontend leaves the pinned maps`, async (t) => {
  const t0 = Date.now();
  await lab.startAgent();
  await until(async () => (await vipRoutes()) === N, 240_000, `${N} VIP routes at the router`, 500);
  await until(() => pinnedFrontends().size === N, 30_000, `${N} frontends in the pinned maps`, 500);
  const before = pinnedFrontends();
  t.log(`setup: ${N} Services and EndpointSlices created in ${setupMs()} ms`);
  t.log(`cold start: ${N} Services announced and programmed ${Date.now() - t0} ms after the agent started`);

  let minRoutes = Infinity;
  let minFrontends = Infinity;
  let samples = 0;
  let polling = true;
  const poll = (async () => {
    while (polling) {
      minRoutes = Math.min(minRoutes, await vipRoutes());
      minFrontends = Math.min(minFrontends, pinnedFrontends().size);
      samples++;
      await sleep(200);
    }
  })();
  const t1 = Date.now();
  t.is(await lab.stopAgent('SIGQUIT'), 0);
  const logFrom = lab.log.length;
  await lab.startAgent();
  await until(() => /first pass complete/.test(lab.log.slice(logFrom)), 240_000, 'the new agent to compute every Service once', 200);
  const firstPassMs = Date.now() - t1;
  await sleep(3000); // and a little after: removals would come now
  polling = false;
  await poll;
  t.log(`handover: first pass complete ${firstPassMs} ms after SIGQUIT; ${samples} samples, fewest VIP routes ${minRoutes}, fewest pinned frontends ${minFrontends}`);
  t.true(samples > 10, `${samples} samples`);
  t.is(minRoutes, N, 'a VIP left the router during the handover');
  t.is(minFrontends, N, 'a frontend left the pinned maps during the handover');
  // Same keys with the same service ids: nothing was removed and added back between two samples.
  const after = pinnedFrontends();
  t.is([...before].filter(([k, id]) => after.get(k) !== id).length, 0, 'a frontend was replaced during the handover');
  const st = JSON.parse((await lab.cli('status', '-o', 'json')).out) as { datapath: { services: number }; bgp: { vipsAnnounced: number } };
  t.is(st.datapath.services, N);
});
