// The per-frontend and per-backend families of /metrics (service-metrics.ts):
// the same text prom-client's gauges wrote, produced in steps so that an edge
// with thousands of frontends keeps its event loop turning during a scrape.
import test from 'ava';
import { createServer } from 'node:net';
import { get } from 'node:http';
import { Gauge, Registry } from 'prom-client';
import { Metrics } from '../../src/agent/metrics.js';
import { ROWS_PER_STEP, SERVICE_FAMILIES, serviceMetricsText, type ServiceCounterRow } from '../../src/agent/service-metrics.js';
import { silentLogger } from '../../src/log/logger.js';

const source = {
  dropCounters: () => [], bgpPeers: () => [], bfdSessions: () => [], poolUsage: () => [],
  rejectedFrontends: () => ({}), duplicateName: () => false, ready: () => ({ ready: true, problems: [] }),
};

/** `n` frontends with `per` backends each. */
function rows(n: number, per: number): ServiceCounterRow[] {
  const out: ServiceCounterRow[] = [];
  for (let s = 0; s < n; s++) {
    const fe = `10.${100 + (s >> 16)}.${(s >> 8) & 255}.${s & 255}:80/TCP`;
    out.push({ frontend: fe, backend: null, packets: s * 7, bytes: s * 700 });
    for (let b = 0; b < per; b++) out.push({ frontend: fe, backend: `10.244.${s & 255}.${b}:8080`, packets: b, bytes: b * 100 + s });
  }
  return out;
}

/** One GET /metrics, the whole body. */
function scrape(port: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    get(`http://127.0.0.1:${port}/metrics`, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (b += c));
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
}

test('the four families are the text prom-client\'s gauges wrote: names, help, labels (escaped), values', async (t) => {
  const sample = [
    ...rows(3, 2),
    { frontend: 'odd "quoted" \\ back\nslash', backend: null, packets: 1, bytes: 2 },
    { frontend: 'odd "quoted" \\ back\nslash', backend: 'a"b\\c\nd:1', packets: 3, bytes: 4 },
  ];
  const r = new Registry();
  for (const f of SERVICE_FAMILIES) {
    const g = new Gauge({ name: f.name, help: f.help, labelNames: f.perBackend ? ['frontend', 'backend'] : ['frontend'], registers: [r] });
    for (const x of sample) {
      if ((x.backend !== null) !== f.perBackend) continue;
      g.set(f.perBackend ? { frontend: x.frontend, backend: x.backend! } : { frontend: x.frontend }, x[f.value]);
    }
  }
  const want = await r.metrics();
  let got = '';
  for await (const c of serviceMetricsText(sample)) got += c;
  // prom-client: families joined by a blank line, one newline at the end; ours: a blank line before each.
  t.is(got, `\n${want}`);
});

test('a scrape reads the counters and writes the text a step at a time: the event loop turns at least every ROWS_PER_STEP rows', async (t) => {
  const all = rows(2000, 10); // 22 000 rows
  let pulled = 0;
  function* counted(): Generator<ServiceCounterRow> {
    for (const r of all) {
      pulled++;
      yield r;
    }
  }
  const m = new Metrics({ ...source, serviceCounters: () => counted() });
  const seen: number[] = [];
  let on = true;
  const sample = () => {
    seen.push(pulled);
    if (on) setImmediate(sample);
  };
  setImmediate(sample);
  let chunks = 0;
  let text = '';
  for await (const c of m.chunks()) {
    chunks++;
    text += c;
  }
  on = false;
  t.is(pulled, all.length);
  const steps = seen.slice(1).map((v, i) => v - seen[i]!);
  t.true(Math.max(...steps) <= ROWS_PER_STEP, `up to ${Math.max(...steps)} rows read in one turn of the event loop`);
  t.true(chunks > (2 * all.length) / ROWS_PER_STEP, `${chunks} chunks`);
  for (const f of SERVICE_FAMILIES) t.is(text.split('\n').filter((l) => l.startsWith(`${f.name}{`)).length, f.perBackend ? 20_000 : 2000, f.name);
  t.regex(text, /^edgelb_backend_bytes\{frontend="10\.100\.7\.207:80\/TCP",backend="10\.244\.207\.3:8080"\} 2299$/m);
});

test('over HTTP the scrape streams every line; a client that goes away mid-scrape leaves the endpoint serving', async (t) => {
  const all = rows(2000, 10);
  let pulled = 0;
  const m = new Metrics({
    ...source,
    serviceCounters: function* () {
      for (const r of all) {
        pulled++;
        yield r;
      }
    },
  });
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  await m.listen(`127.0.0.1:${port}`, silentLogger());
  t.teardown(() => m.close());
  const body = await scrape(port);
  t.is(body.split('\n').filter((l) => l.startsWith('edgelb_backend_packets{')).length, 20_000);
  t.regex(body, /^# TYPE edgelb_bgp_announces_total counter$/m, 'the registry\'s families too');
  // A client that reads the first bytes and leaves; the next scrape is whole.
  await new Promise<void>((resolve, reject) => {
    const req = get(`http://127.0.0.1:${port}/metrics`, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', () => undefined);
    setTimeout(() => reject(new Error('no data')), 10_000);
  });
  await new Promise((r) => setTimeout(r, 500));
  pulled = 0;
  const again = await scrape(port);
  t.is(again.split('\n').filter((l) => l.startsWith('edgelb_service_bytes{')).length, 2000);
  t.is(pulled, all.length);
});
