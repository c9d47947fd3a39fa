// Edge presence against an in-memory Lease API whose answers take a moment
// (an API server under load): what it writes and how often.
import test from 'ava';
import type { Lease, LeaseApi } from '../../src/k8s/lease-api.js';
import { EdgePresence, presenceLeaseName } from '../../src/k8s/presence.js';
import { createLogger, silentLogger } from '../../src/log/logger.js';
import { ApiStatusError } from '../../src/k8s/rest.js';

class SlowLeases {
  readonly leases = new Map<string, Lease>();
  rv = 0;
  writes = 0;
  inflight = 0;
  constructor(private readonly delayMs: number) {}
  private async slow<T>(f: () => T): Promise<T> {
    this.inflight++;
    try {
      await new Promise((r) => setTimeout(r, this.delayMs));
      return f();
    } finally {
      this.inflight--;
    }
  }
  readonly api: LeaseApi = {
    readNamespacedLease: ({ name }) =>
      this.slow(() => {
        const l = this.leases.get(name);
        if (!l) throw Object.assign(new Error('not found'), { code: 404 });
        return structuredClone(l);
      }),
    createNamespacedLease: ({ body }) =>
      this.slow(() => {
        this.writes++;
        const l = { ...structuredClone(body), metadata: { ...body.metadata, resourceVersion: String(++this.rv) } };
        this.leases.set(body.metadata!.name!, l);
        return structuredClone(l);
      }),
    replaceNamespacedLease: ({ name, body }) =>
      this.slow(() => {
        if (body.metadata?.resourceVersion !== this.leases.get(name)?.metadata?.resourceVersion) throw Object.assign(new Error('conflict'), { code: 409 });
        this.writes++;
        const l = { ...structuredClone(body), metadata: { ...body.metadata, resourceVersion: String(++this.rv) } };
        this.leases.set(name, l);
        return structuredClone(l);
      }),
    deleteNamespacedLease: ({ name }) => this.slow(() => this.leases.delete(name)),
    listNamespacedLease: () => this.slow(() => ({ items: [...this.leases.values()].map((l) => structuredClone(l)) })),
  };
}

test('advertising flapping (a BGP session going up and down) while a renewal is under way renews at once, and does not start another renewal loop each time', async (t) => {
  const fake = new SlowLeases(40);
  // D = 0.6 s: a renewal every 200 ms, each taking three requests of 40 ms.
  const p = new EdgePresence({ api: fake.api, namespace: 'ns', prefix: 'edgelb', nodeName: 'edge-a', instance: 'i', leaseDurationSeconds: 0.6, logger: silentLogger() });
  t.teardown(() => p.stop(false));
  await p.start();
  const rate = async (ms: number): Promise<number> => {
    const before = fake.writes;
    await new Promise((r) => setTimeout(r, ms));
    return fake.writes - before;
  };
  const steady = await rate(1500);
  let advertising = true;
  for (let i = 0; i < 10; i++) {
    // Each change while a renewal is in flight.
    while (fake.inflight === 0) await new Promise((r) => setTimeout(r, 2));
    advertising = !advertising;
    p.setAdvertising(advertising);
    await new Promise((r) => setTimeout(r, 60));
  }
  await new Promise((r) => setTimeout(r, 300)); // the last change written
  const lease = fake.leases.get('edgelb-edge-edge-a');
  t.is(lease?.metadata?.annotations?.['edgelb.io/advertising'], String(advertising), 'the last change is what the Lease says');
  const after = await rate(1500);
  t.true(after <= steady + 2, `${steady} renewals in 1.5 s before the flapping, ${after} after`);
});

test('an edge that stopped renewing drops out 1.5 D later on a monotonic clock, whatever the wall clock does meanwhile', async (t) => {
  const fake = new SlowLeases(0);
  const clock = { wall: 1_000_000_000, mono: 1000 };
  const mk = (node: string) =>
    new EdgePresence({ api: fake.api, namespace: 'ns', prefix: 'edgelb', nodeName: node, instance: node, leaseDurationSeconds: 60, logger: silentLogger(), now: () => clock.wall, elapsed: () => clock.mono });
  const a = mk('edge-a');
  const b = mk('edge-b');
  t.teardown(() => Promise.all([a.stop(false), b.stop(false)]));
  await a.start();
  await b.start();
  t.deepEqual(await a.refresh(), ['edge-a', 'edge-b']);
  await b.stop(false); // gone without deleting its Lease (a crash)
  // NTP sets edge-a's clock an hour back; 1.5 D pass.
  clock.wall -= 3_600_000;
  clock.mono += 90_001;
  t.deepEqual(await a.refresh(), [], 'edge-b (and edge-a, which renewed nothing meanwhile) counted out');
});

test('the edges\' addresses: this edge\'s written to its Lease, the others\' read from theirs (canonical, garbage skipped, at most 64 per Lease), a change reported once', async (t) => {
  const fake = new SlowLeases(1);
  const huge = Array.from({ length: 10_000 }, (_, i) => `10.${i >> 8}.${i & 255}.1`).join(',');
  fake.leases.set('edgelb-edge-edge-b', { metadata: { name: 'edgelb-edge-edge-b', resourceVersion: '1', annotations: { 'edgelb.io/addresses': ' 2001:DB8::0:2 ,x,10.9.0.2,' } }, spec: { holderIdentity: 'edge-b' } });
  fake.leases.set('edgelb-edge-edge-c', { metadata: { name: 'edgelb-edge-edge-c', resourceVersion: '1', annotations: { 'edgelb.io/addresses': huge } }, spec: { holderIdentity: 'edge-c' } });
  let changes = 0;
  const p = new EdgePresence({ api: fake.api, namespace: 'ns', prefix: 'edgelb', nodeName: 'edge-a', instance: 'i', leaseDurationSeconds: 60, logger: silentLogger(), addresses: ['10.9.0.1'], onAddresses: () => changes++ });
  t.teardown(() => p.stop(false));
  await p.start();
  t.is(fake.leases.get('edgelb-edge-edge-a')?.metadata?.annotations?.['edgelb.io/addresses'], '10.9.0.1');
  const all = p.addresses();
  t.is(all.get('10.9.0.1'), 'edge-a');
  t.is(all.get('10.9.0.2'), 'edge-b');
  t.is(all.get('2001:db8::2'), 'edge-b');
  t.is([...all.values()].filter((e) => e === 'edge-c').length, 64);
  t.is(changes, 1);
  await p.refresh();
  t.is(changes, 1, 'the same Leases again: no change');
  p.setAddresses(['10.9.0.1', '10.9.0.3']);
  t.is(p.addresses().get('10.9.0.3'), 'edge-a');
  t.is(changes, 2);
});

test('a presence Lease claiming this edge\'s name under another name: its addresses are refused by every edge alike, this one included (the edges compute the same backends)', async (t) => {
  const fake = new SlowLeases(0);
  fake.leases.set('edgelb-edge-zzz', { metadata: { name: 'edgelb-edge-zzz', resourceVersion: '1', labels: { 'edgelb.io/edge-presence': 'true' }, annotations: { 'edgelb.io/addresses': '10.1.0.9' } }, spec: { holderIdentity: 'edge-a' } });
  const mk = (node: string, ip: string) => new EdgePresence({ api: fake.api, namespace: 'ns', prefix: 'edgelb', nodeName: node, instance: node, leaseDurationSeconds: 60, logger: silentLogger(), addresses: [ip] });
  const a = mk('edge-a', '10.9.0.1');
  const b = mk('edge-b', '10.9.0.2');
  t.teardown(() => Promise.all([a.stop(false), b.stop(false)]));
  await a.start();
  await b.start();
  await a.refresh();
  const seen = (p: EdgePresence) => [...p.addresses()].sort();
  t.deepEqual(seen(a), seen(b));
  t.is(a.addresses().get('10.1.0.9'), 'edge-a');
  t.is(a.addresses().get('10.9.0.1'), 'edge-a', 'this edge\'s own addresses as it knows them');
});

test('a presence Lease whose holder cannot be an edge\'s name (300 000 characters, upper case, spaces) counts for nothing: five of them put megabytes into every Service\'s condition', async (t) => {
  const fake = new SlowLeases(0);
  const bogus = ['x'.repeat(300_000), 'Edge-B', 'edge c', `${'y'.repeat(254)}`];
  for (const [i, holder] of bogus.entries()) {
    const name = presenceLeaseName('edgelb', holder);
    fake.leases.set(name, { metadata: { name, resourceVersion: String(i + 1), labels: { 'edgelb.io/edge-presence': 'true' }, annotations: { 'edgelb.io/addresses': `10.1.0.${i + 1}` } }, spec: { holderIdentity: holder, renewTime: new Date().toISOString() } });
  }
  const a = new EdgePresence({ api: fake.api, namespace: 'ns', prefix: 'edgelb', nodeName: 'edge-a', instance: 'a', leaseDurationSeconds: 60, logger: silentLogger(), addresses: ['10.9.0.1'] });
  t.teardown(() => a.stop(false));
  await a.start();
  await a.refresh();
  t.deepEqual(a.edges(), ['edge-a']);
  t.deepEqual([...a.addresses().keys()], ['10.9.0.1']);
});

test('a presence renewal the API server refuses for what it carries (422) is said once at warn, naming the Lease; a connection error stays a debug line', async (t) => {
  const fake = new SlowLeases(0);
  const lines: { level: number; object?: string }[] = [];
  const logger = createLogger({ level: 'debug', stream: { write: (s: string) => void lines.push(JSON.parse(s) as { level: number }) } });
  const p = new EdgePresence({ api: fake.api, namespace: 'ns', prefix: 'edgelb', nodeName: 'edge-a', instance: 'a', leaseDurationSeconds: 0.3, logger });
  t.teardown(() => p.stop(false));
  let refuse: (() => Error) | null = () => new ApiStatusError(422, 'HTTP 422 metadata.annotations: Too long', {});
  const create = fake.api.createNamespacedLease.bind(fake.api);
  fake.api.createNamespacedLease = async (q) => {
    if (refuse) throw refuse();
    return create(q);
  };
  await p.start();
  await new Promise((r) => setTimeout(r, 500)); // several renewals (every D/3)
  const warns = () => lines.filter((l) => l.level === 40);
  t.is(warns().length, 1);
  t.is(warns()[0]!.object, 'presence Lease ns/edgelb-edge-edge-a');
  refuse = () => Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
  await new Promise((r) => setTimeout(r, 300));
  t.is(warns().length, 1);
});
