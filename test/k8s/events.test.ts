import test from 'ava';
import { EventRecorder, truncateNote } from '../../src/k8s/events.js';
import type { RestClient } from '../../src/k8s/rest.js';
import { silentLogger } from '../../src/log/logger.js';

function fakeRest() {
  const calls: { method: string; path: string; body: Record<string, unknown> }[] = [];
  const rest = {
    send: async (method: string, path: string, body: Record<string, unknown>) => {
      calls.push({ method, path, body });
      await new Promise((r) => setTimeout(r, 5));
      return undefined;
    },
  } as unknown as RestClient;
  return { rest, calls };
}

const svc = { metadata: { namespace: 'ns', name: 'web', uid: 'u1' } };

test('repeats of one Event become a count, not new Events', async (t) => {
  const { rest, calls } = fakeRest();
  const r = new EventRecorder({ rest, component: 'edgelb', host: 'edge-a', logger: silentLogger() });
  for (let i = 0; i < 5; i++) r.record(svc, 'Warning', 'PoolExhausted', 'no free address');
  r.record(svc, 'Warning', 'PoolExhausted', 'different text');
  for (let i = 0; i < 100 && r.pending() > 0; i++) await new Promise((res) => setTimeout(res, 10));
  const posts = calls.filter((c) => c.method === 'POST');
  t.is(posts.length, 2);
  t.like(posts[0]!.body, { apiVersion: 'events.k8s.io/v1', reason: 'PoolExhausted', type: 'Warning', note: 'no free address', regarding: { kind: 'Service', name: 'web', uid: 'u1' }, reportingController: 'edgelb', reportingInstance: 'edge-a' });
  t.regex(String(posts[0]!.body.eventTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'eventTime is a MicroTime');
  t.true(posts.every((p) => p.path === '/apis/events.k8s.io/v1/namespaces/ns/events'));
  const patches = calls.filter((c) => c.method === 'PATCH');
  t.true(patches.length >= 1);
  t.is((patches.at(-1)!.body.series as { count: number }).count, 5);
  t.true(patches.every((p) => p.path.startsWith('/apis/events.k8s.io/v1/namespaces/ns/events/web.')));
});

test('events wait while status writes are pending', async (t) => {
  const { rest, calls } = fakeRest();
  let hold = true;
  const r = new EventRecorder({ rest, component: 'edgelb', host: 'edge-a', logger: silentLogger(), holdWhile: () => hold });
  r.record(svc, 'Normal', 'IPAllocated', 'Assigned 192.0.2.1');
  await new Promise((res) => setTimeout(res, 150));
  t.is(calls.length, 0);
  hold = false;
  for (let i = 0; i < 100 && r.pending() > 0; i++) await new Promise((res) => setTimeout(res, 10));
  t.is(calls.length, 1);
  r.stop();
});

test('a note over 1 KiB is cut to fit (the API server rejects longer ones)', (t) => {
  t.is(truncateNote('short'), 'short');
  const long = 'é'.repeat(2000);
  const cut = truncateNote(long);
  t.true(Buffer.byteLength(cut) <= 1024);
  t.true(cut.endsWith('…'));
  t.true(long.startsWith(cut.slice(0, -1)));
});

test('an Event repeated at every recomputation (a Service with a standing problem whose endpoints churn, or every Service at once when an edge\'s BGP session flaps) is patched once, then at most once per refresh interval, with the full count', async (t) => {
  const { rest, calls } = fakeRest();
  const r = new EventRecorder({ rest, component: 'edgelb', host: 'edge-a', logger: silentLogger(), seriesRefreshMs: 400 });
  t.teardown(() => r.stop());
  for (let i = 0; i < 200; i++) {
    r.record(svc, 'Warning', 'NodeAddressUnknown', 'endpoint 10.1.0.1 is not used');
    await new Promise((res) => setTimeout(res, 5));
  }
  const patches = () => calls.filter((c) => c.method === 'PATCH');
  // ~1.2 s of repeats: the first series write, then about one per 400 ms.
  t.true(patches().length <= 5, `${patches().length} PATCHes for 200 repeats`);
  await new Promise((res) => setTimeout(res, 600));
  for (let i = 0; i < 100 && r.pending() > 0; i++) await new Promise((res) => setTimeout(res, 10));
  t.is((patches().at(-1)!.body.series as { count: number }).count, 200, 'the count catches up');
  t.is(calls.filter((c) => c.method === 'POST').length, 1);
});
