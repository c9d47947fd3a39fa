// bench/lib/wrk.ts: bench:e2e's reading of Debian wrk's report — checked on
// a real wrk run against a loopback server, and on reports with every unit
// and error line wrk prints.
import test from 'ava';
import { createServer } from 'node:http';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { AddressInfo } from 'node:net';
import { parseWrk, wrkArgv } from '../../bench/lib/wrk.js';

const execFileP = promisify(execFile);

test('a real wrk run against a loopback server parses, and its count matches what the server answered', async (t) => {
  let answered = 0;
  const server = createServer((_req, res) => {
    answered++;
    res.end('ok\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  for (const close of [false, true]) {
    answered = 0;
    const argv = wrkArgv({ url: `http://127.0.0.1:${port}/`, seconds: 1, threads: 1, connections: 2, close });
    const { stdout } = await execFileP(argv[0]!, argv.slice(1), { timeout: 20_000 });
    const r = parseWrk(stdout);
    t.true(r.requests > 0, stdout);
    // wrk counts completed requests; the server may have answered a few more that wrk cut off at the end.
    t.true(r.requests <= answered && answered - r.requests <= 4, `wrk ${r.requests}, server ${answered} (close=${close})`);
    t.true(r.p99Ms !== null && r.p99Ms >= (r.p50Ms ?? 0), stdout);
    t.is(r.non2xx, 0);
    t.true(Math.abs(r.rps - r.requests / r.seconds) / r.rps < 0.05, stdout);
  }
});

const REPORT = `Running 5s test @ http://198.51.100.1:8080/
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.21ms    2.10ms   1.20s    89.33%
    Req/Sec     2.51k   312.45     3.12k    70.00%
  Latency Distribution
     50%  812.00us
     75%    3.50ms
     90%    4.80ms
     99%    1.02s
  25012 requests in 5.01s, 3.45MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:   4992.45
Transfer/sec:    705.12KB
`;

test('units, socket errors and non-2xx answers', (t) => {
  const r = parseWrk(REPORT);
  t.is(r.requests, 25012);
  t.is(r.seconds, 5.01);
  t.is(r.rps, 4992.45);
  t.is(r.p50Ms, 0.812);
  t.is(r.p99Ms, 1020);
  t.is(r.socketErrors, 10);
  t.is(r.timeouts, 4);
  t.is(r.non2xx, 5);
});

test('a report without its totals is an error that quotes the end of the output', (t) => {
  t.throws(() => parseWrk('unable to connect to 198.51.100.1:8080 Connection refused\n'), { message: /no "N requests in T" line[\s\S]*Connection refused/ });
});

test('the command line: bounded duration, latency percentiles, Connection: close on request', (t) => {
  t.deepEqual(wrkArgv({ url: 'http://x/', seconds: 5, threads: 2, connections: 16, close: true }), ['wrk', '-t', '2', '-c', '16', '-d', '5s', '--latency', '--timeout', '2s', '-H', 'Connection: close', 'http://x/']);
  t.throws(() => wrkArgv({ url: 'http://x/', seconds: 0, threads: 1, connections: 1, close: false }), { message: /1\.\.300/ });
});
