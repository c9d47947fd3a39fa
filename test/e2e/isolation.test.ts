// End to end, one lab: the scenario of issue 12. A Service this datapath
// cannot serve (its only source range is IPv6) used to stop every change on
// the edges; now it is reported on its Service while a Service created
// afterwards is served and a Service deleted afterwards leaves the router.
import test from 'ava';
import { bringUp, need, summary, tearDown, type LabHolder } from './helpers.js';
import type { LabServiceSpec } from '../../src/lab/manifests.js';

let h: LabHolder | undefined;

test.before(async () => {
  h = await bringUp();
});

test.after.always(async () => {
  await tearDown(h);
});

interface SvcJson {
  status?: { conditions?: { type: string; status: string; reason: string; message: string }[] };
}
/** An events.k8s.io/v1 Event (what the agents write). */
interface EventJson {
  type: string;
  reason: string;
  note: string;
  regarding: { kind: string; name: string };
  reportingInstance?: string;
}

test.serial('a Service with an IPv6-only source range: Warning Events and a False condition; a new Service is served and a deleted one leaves the router meanwhile', async (t) => {
  const lab = need(t, h);
  const edges = lab.plan.edges.map((e) => e.address);
  const doomed: LabServiceSpec = { name: 'doomed', udpPort: null };
  const unservable: LabServiceSpec = { name: 'v6ranges', udpPort: null, sourceRanges: ['2001:db8::/32'] };
  const later: LabServiceSpec = { name: 'later', udpPort: null };

  await lab.applyService(doomed);
  const doomedVip = await lab.waitForVip(doomed.name);
  await lab.waitForGateways(doomedVip, edges);

  // The unservable Service first, then the changes that must not wait for it.
  await lab.applyService(unservable);
  const badVip = await lab.waitForVip(unservable.name);
  await lab.applyService(later);
  // Its EndpointSlice is the EndpointSlice controller's: it goes with the Service.
  await lab.kubectl(['delete', 'service', doomed.name]);

  const laterVip = await lab.waitForVip(later.name);
  await lab.waitForGateways(laterVip, edges);
  await lab.waitServing(laterVip);
  const r = await lab.load({ kind: 'http', target: laterVip, port: 80, count: 40, concurrency: 2, timeoutMs: 2000 });
  t.is(r.failed, 0, summary(r));
  t.is(r.ok, 40, summary(r));
  const gone = await lab.waitForGateways(doomedVip, [], 20000);
  t.log(`deleted Service's VIP ${doomedVip} left the router ${gone} ms after the check began; new Service ${laterVip}: ${summary(r)}`);

  // The unservable one: not announced, condition False with the reason, a Warning from each edge.
  t.deepEqual(await lab.routerGateways(badVip), [], 'the unservable VIP is not announced');
  const deadline = Date.now() + 20000;
  let cond: NonNullable<SvcJson['status']>['conditions'] = [];
  let warnings: EventJson[] = [];
  while (Date.now() < deadline) {
    const svc = await lab.kubectlJson<SvcJson>(['get', 'service', unservable.name]);
    cond = svc.status?.conditions ?? [];
    const ev = await lab.kubectlJson<{ items: EventJson[] }>(['get', 'events.events.k8s.io', '--field-selector', `regarding.name=${unservable.name}`]);
    warnings = ev.items.filter((e) => e.type === 'Warning' && e.reason === 'SourceRangeFamily');
    if (cond.some((c) => c.type === 'edgelb.io/Advertised' && c.status === 'False' && c.reason === 'SourceRangeFamily') && warnings.length >= edges.length) break;
    await new Promise((res) => setTimeout(res, 250));
  }
  const ours = cond.find((c) => c.type === 'edgelb.io/Advertised');
  t.like(ours, { status: 'False', reason: 'SourceRangeFamily' }, JSON.stringify(cond));
  t.regex(ours?.message ?? '', /has no IPv4 range/);
  t.is(new Set(warnings.map((w) => w.note.replace(/.*not served by edge (\S+)\)$/, '$1'))).size, edges.length, `a Warning from each edge: ${JSON.stringify(warnings.map((w) => w.note))}`);

  // Each edge says it in `edgelb status`.
  for (const e of lab.plan.edges) {
    const st = await lab.edgelb(e.name, ['status']);
    t.regex(st.stdout, /^Rejected:\s+1 frontend\(s\) not served: SourceRangeFamily 1/m, `${e.name}: ${st.stdout}`);
  }
});
