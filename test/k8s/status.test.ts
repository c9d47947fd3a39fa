import test, { type ExecutionContext } from 'ava';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { V1Service } from '@kubernetes/client-node';
import { StatusWriter, statusMatches, statusPatch, strandedRelease, type DesiredStatus } from '../../src/k8s/status.js';
import { KubeConfig } from '../../src/k8s/kubeconfig.js';
import { RestClient } from '../../src/k8s/rest.js';
import { createLogger } from '../../src/log/logger.js';
import { waitFor } from './helpers.js';

const other = { type: 'example.com/Ready', status: 'True', reason: 'Fine', message: 'ok', lastTransitionTime: '2026-01-01T00:00:00Z' };

function svc(conditions: unknown[], ingress: string[]): V1Service {
  return { metadata: { namespace: 'ns', name: 'a', generation: 3 }, status: { loadBalancer: { ingress: ingress.map((ip) => ({ ip })) }, conditions: conditions as never } };
}

const desired: DesiredStatus = { ingress: ['192.0.2.1'], condition: { status: 'True', reason: 'Advertised', message: '192.0.2.1 advertised by 1 edge(s): e' } };


/** A RestClient to `server` (a stand-in API server on loopback), both closed when the test ends. */
async function restTo(t: ExecutionContext, server: Server): Promise<RestClient> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const rest = new RestClient(KubeConfig.fromYaml(`clusters: [{ name: c, cluster: { server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true } }]\ncontexts: [{ name: x, context: { cluster: c } }]\ncurrent-context: x\n`));
  t.teardown(() => {
    rest.close();
    server.closeAllConnections();
    server.close();
  });
  return rest;
}
test('status patch keeps other conditions and sets ours with a transition time', (t) => {
  const now = new Date('2026-11-22T06:00:00.123Z');
  const p = statusPatch(svc([other], []), desired, now) as { status: { loadBalancer: unknown; conditions: Record<string, unknown>[] } };
  t.deepEqual(p.status.loadBalancer, { ingress: [{ ip: '192.0.2.1' }] });
  t.deepEqual(p.status.conditions[0], other);
  t.like(p.status.conditions[1], { type: 'edgelb.io/Advertised', status: 'True', reason: 'Advertised', lastTransitionTime: '2026-11-22T06:00:00.123Z', observedGeneration: 3 });
});

test('transition time is kept while the condition status does not change', (t) => {
  const ours = { type: 'edgelb.io/Advertised', status: 'True', reason: 'Advertised', message: 'old text', lastTransitionTime: '2026-11-01T00:00:00Z' };
  const p = statusPatch(svc([ours], ['192.0.2.1']), desired, new Date()) as { status: { conditions: Record<string, unknown>[] } };
  t.is(p.status.conditions[0]!.lastTransitionTime, '2026-11-01T00:00:00Z');
  t.is(p.status.conditions[0]!.message, desired.condition!.message);
});

test('statusMatches compares addresses and our condition only', (t) => {
  const ours = { type: 'edgelb.io/Advertised', ...desired.condition, lastTransitionTime: '2026-11-01T00:00:00Z' };
  t.true(statusMatches(svc([other, ours], ['192.0.2.1']), desired));
  t.false(statusMatches(svc([other, ours], []), desired));
  t.false(statusMatches(svc([other], ['192.0.2.1']), desired));
  t.false(statusMatches(svc([other, { ...ours, reason: 'NoEdges' }], ['192.0.2.1']), desired));
  t.true(statusMatches(svc([other], []), { ingress: [], condition: null }));
  // Removing our condition keeps the others.
  const p = statusPatch(svc([other, ours], ['192.0.2.1']), { ingress: [], condition: null }, new Date()) as { status: { conditions: unknown[] } };
  t.deepEqual(p.status.conditions, [other]);
});

test('statusMatches: an ingress entry another writer left (a hostname, alone or beside our address) is not ours — the write that replaces the list is due', (t) => {
  const ours = { type: 'edgelb.io/Advertised', ...desired.condition, lastTransitionTime: '2026-11-01T00:00:00Z' };
  const withIngress = (ingress: unknown[]): V1Service => ({ ...svc([ours], []), status: { loadBalancer: { ingress: ingress as never }, conditions: [ours] as never } });
  t.true(statusMatches(withIngress([{ ip: '192.0.2.1', ipMode: 'VIP' }]), desired), 'the API server adds ipMode to our entry');
  t.false(statusMatches(withIngress([{ ip: '192.0.2.1' }, { hostname: 'lb.example.com' }]), desired));
  t.false(statusMatches(withIngress([{ hostname: 'lb.example.com' }, { ip: '192.0.2.1' }]), desired));
  t.false(statusMatches(withIngress([{ ip: '192.0.2.1', hostname: 'lb.example.com' }]), desired));
  t.false(statusMatches(withIngress([{ hostname: 'lb.example.com' }]), { ingress: [], condition: { ...desired.condition! } }));
});

// The real API server answers 429 (priority and fairness) or 500 (etcd
// timing out) only under load; a few lines of loopback HTTP answer those here.
test('a status write the API server refuses (500, 429) is tried again after a growing wait, not as fast as it answers; stop\'s flush waits for the retry', async (t) => {
  let failing = true;
  let patches = 0;
  const at: number[] = [];
  const server = createServer((req, res) => {
    req.resume();
    patches++;
    at.push(performance.now());
    const code = failing ? (patches % 2 === 0 ? 429 : 500) : 200;
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(code === 200 ? {} : { kind: 'Status', code, message: code === 429 ? 'too many requests' : 'etcdserver: request timed out' }));
  });
  const rest = await restTo(t, server);
  const cached: V1Service = { metadata: { namespace: 'ns', name: 'a', uid: 'u1', resourceVersion: '7' }, spec: {}, status: {} };
  const w = new StatusWriter({ rest, logger: createLogger({ level: 'error' }), get: () => cached, retryMs: 100, maxRetryMs: 400 });
  t.teardown(() => w.stop());
  w.set('ns/a', desired);
  // Tried at 0, then after 100 and 200 ms of backoff: the waits between
  // tries grow (timers fire late on a loaded machine, never early), so the
  // spacing is checked, not how many tries fit in a window of wall time.
  const deadline = performance.now() + 10_000;
  while (patches < 3 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.true(patches >= 3, `${patches} PATCHes in 10 s`);
  t.true(at[1]! - at[0]! >= 95, `first retry after ${(at[1]! - at[0]!).toFixed(0)} ms`);
  t.true(at[2]! - at[1]! >= 195, `second retry after ${(at[2]! - at[1]!).toFixed(0)} ms`);
  t.is(w.written, 0);
  t.true(w.pending() > 0, 'a write waiting to be tried again is pending (stop() waits for it, Events wait behind it)');
  failing = false;
  const tried = patches;
  await w.flush(5000);
  t.is(w.written, 1);
  // The flush waited for the retry, which succeeded: one more PATCH.
  t.is(patches, tried + 1);
  t.is(w.pending(), 0);
});

// A write on its way while the informer delivers a newer version (another
// controller's status write, a spec change) is refused 409 when it carries
// the older resourceVersion (a release). The newer version was handed to
// observe() while the write was in flight and dropped there: the retry then
// waited out the backoff (1 s at first), though what it needed was cached.
test('a release refused (409) because the Service changed while the write was on its way is written again from the newer version at once, not after the backoff', async (t) => {
  const bodies: { metadata?: { resourceVersion?: string }; status: { loadBalancer: { ingress: unknown[] }; conditions: unknown[] } }[] = [];
  let arrived = () => {};
  const first = new Promise<void>((r) => (arrived = r));
  let answer = () => {};
  const gate = new Promise<void>((r) => (answer = r));
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as (typeof bodies)[number]);
      const refuse = bodies.length === 1;
      if (refuse) arrived();
      void (refuse ? gate : Promise.resolve()).then(() => {
        res.writeHead(refuse ? 409 : 200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(refuse ? { kind: 'Status', code: 409, reason: 'Conflict', message: 'the object has been modified' } : {}));
      });
    });
  });
  const rest = await restTo(t, server);
  const ours = { type: 'edgelb.io/Advertised', status: 'True', reason: 'Advertised', message: 'm', lastTransitionTime: '2026-11-01T00:00:00Z' };
  // Left LoadBalancer: the API server emptied its ingress, our condition remains.
  let cached: V1Service = { metadata: { namespace: 'ns', name: 'a', uid: 'u1', resourceVersion: '7' }, spec: { type: 'ClusterIP' }, status: { conditions: [ours] as never } };
  const w = new StatusWriter({ rest, logger: createLogger({ level: 'error' }), get: () => cached, retryMs: 60_000, maxRetryMs: 60_000 });
  t.teardown(() => w.stop());
  w.set('ns/a', { ingress: [], condition: null, release: ['192.0.2.1'] });
  await first;
  t.is(bodies[0]!.metadata?.resourceVersion, '7');
  // Meanwhile: another class, and that controller's address in status.
  cached = { metadata: { namespace: 'ns', name: 'a', uid: 'u1', resourceVersion: '9' }, spec: { type: 'LoadBalancer', loadBalancerClass: 'example.com/other-lb' }, status: { loadBalancer: { ingress: [{ ip: '198.51.100.1' }] }, conditions: [ours] as never } };
  w.observe('ns/a');
  answer();
  await waitFor('the release written again', () => bodies.length === 2, 5000).catch(() => undefined);
  t.is(bodies.length, 2, 'PATCHes (the second one waits out the 60 s backoff)');
  t.is(bodies[1]?.metadata?.resourceVersion, '9');
  t.deepEqual(bodies[1]?.status.loadBalancer.ingress, [{ ip: '198.51.100.1' }]);
  t.deepEqual(bodies[1]?.status.conditions, []);
});

test('a stranded release names the addresses of our pools in a Service that carries our condition type; another installation\'s LoadBalancer keeps its condition', (t) => {
  const ourCondition = { type: 'edgelb.io/Advertised', status: 'True', reason: 'Advertised', message: 'x', lastTransitionTime: '2026-01-01T00:00:00Z' };
  const inPool = (ip: string) => ip.startsWith('192.0.2.');
  const lb = (s: V1Service): V1Service => ({ ...s, spec: { type: 'LoadBalancer', loadBalancerClass: 'example.com/other' } });
  t.deepEqual(strandedRelease(lb(svc([other, ourCondition], ['192.0.2.7', '198.51.100.1'])), inPool), ['192.0.2.7'], 'another controller\'s address stays');
  t.is(strandedRelease(lb(svc([ourCondition], ['198.51.100.1'])), inPool), null, 'another installation\'s Service: nothing of ours in it');
  t.deepEqual(strandedRelease(svc([ourCondition], []), inPool), [], 'no longer a LoadBalancer: the condition goes');
  t.is(strandedRelease(lb(svc([other], ['192.0.2.7'])), inPool), null, 'never ours: left alone');
});

// The writer keeps a desired status per name. A Service deleted and created
// again under that name (a new uid) before its round was given the old
// object's status — its address — by the re-check of the informer's add.
test('a status computed for one object is not written to another created under its name (a new uid): that one waits for its own', async (t) => {
  const bodies: { metadata?: { uid?: string }; status: { loadBalancer: { ingress: { ip: string }[] } } }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as (typeof bodies)[number]);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  const rest = await restTo(t, server);
  let cached: V1Service | undefined = { metadata: { namespace: 'ns', name: 'a', uid: 'u1', resourceVersion: '7' }, spec: {}, status: {} };
  const w = new StatusWriter({ rest, logger: createLogger({ level: 'error' }), get: () => cached });
  t.teardown(() => w.stop());
  w.set('ns/a', { ...desired, uid: 'u1' });
  await w.flush(5000);
  t.is(bodies.length, 1);
  // Deleted, and created again under the name: the informer's events.
  cached = undefined;
  w.observe('ns/a');
  cached = { metadata: { namespace: 'ns', name: 'a', uid: 'u2', resourceVersion: '9' }, spec: {}, status: {} };
  w.observe('ns/a');
  await w.flush(5000);
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(bodies.slice(1).map((b) => [b.metadata?.uid, b.status.loadBalancer.ingress]), [], 'the old object\'s address was written to the new one');
  // Its own round's status (the same text, by chance) is written.
  w.set('ns/a', { ...desired, uid: 'u2' });
  await w.flush(5000);
  t.deepEqual(bodies.slice(1).map((b) => b.metadata?.uid), ['u2']);
});
