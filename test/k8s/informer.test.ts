// The informer's list/watch protocol at the edges the real API server does
// not produce on demand: a watch ending cleanly (resume from the last
// resourceVersion, bookmarks included, no relist), an ERROR event with 410
// (relist at once; what vanished is deleted, what did not change is no
// event), a line that is not JSON and an event without a name (the informer
// survives both). A few lines of HTTP on loopback stand in for the server's
// side of those exchanges; the informer against the real kube-apiserver,
// restarts and compaction included, is in controller.test.
import test from 'ava';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ResilientInformer, type InformerEvent } from '../../src/k8s/informer.js';
import { KubeConfig } from '../../src/k8s/kubeconfig.js';
import { RestClient } from '../../src/k8s/rest.js';
import { createLogger } from '../../src/log/logger.js';

interface Obj {
  metadata: { name?: string; namespace?: string; resourceVersion?: string };
  v?: number;
}

const obj = (name: string, rv: string, v = 0): Obj => ({ metadata: { name, namespace: 'ns', resourceVersion: rv }, v });

async function until(what: string, f: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A loopback HTTP server answering as `handler` says, and a RestClient for it (plain HTTP, allowed by insecure-skip-tls-verify). */
async function loopbackApi(handler: (req: IncomingMessage, res: ServerResponse) => void, user = ''): Promise<{ rest: RestClient; close: () => void }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const users = user ? `users: [{ name: u, user: ${user} }]\n` : '';
  const context = user ? '{ cluster: c, user: u }' : '{ cluster: c }';
  const rest = new RestClient(KubeConfig.fromYaml(`clusters: [{ name: c, cluster: { server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true } }]\n${users}contexts: [{ name: x, context: ${context} }]\ncurrent-context: x\n`));
  return {
    rest,
    close: () => {
      rest.close();
      server.closeAllConnections();
      server.close();
    },
  };
}

test('a clean end resumes from the last resourceVersion; 410 relists; a broken line and a nameless event stop nothing', async (t) => {
  const lists: string[][] = [[], []];
  let listItems: Obj[] = [obj('a', '5'), obj('b', '6')];
  let listRv = '10';
  const watches: URLSearchParams[] = [];
  const scripts: ((res: ServerResponse) => void)[] = [];
  const api = await loopbackApi((req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/json');
    if (u.searchParams.get('watch') !== 'true') {
      lists[0]!.push(u.search);
      res.end(JSON.stringify({ metadata: { resourceVersion: listRv }, items: listItems }));
      return;
    }
    watches.push(u.searchParams);
    res.writeHead(200);
    const next = scripts.shift();
    if (next) next(res);
    // otherwise: an idle watch, ended when the test closes the server
  }, '{ token: t }');
  const { rest } = api;
  const errors: string[] = [];
  const logger = createLogger({ level: 'warn', stream: { write: (l: string) => void errors.push((JSON.parse(l) as { msg: string }).msg) } });
  const events: string[] = [];
  const line = (res: ServerResponse, ev: unknown): boolean => res.write(`${JSON.stringify(ev)}\n`);
  // Watch 1: two events and a bookmark, then the server's timeout (a clean end) after the minimum watch time.
  scripts.push((res) => {
    line(res, { type: 'ADDED', object: obj('c', '11') });
    line(res, { type: 'MODIFIED', object: obj('a', '12', 1) });
    line(res, { type: 'BOOKMARK', object: { metadata: { resourceVersion: '15' } } });
    setTimeout(() => res.end(), 1100);
  });
  // Watch 2 (resumed at 15): an event without a name (skipped), one that is fine, then 410 Gone.
  scripts.push((res) => {
    line(res, { type: 'ADDED', object: { metadata: { namespace: 'ns' } } });
    line(res, { type: 'ADDED', object: obj('d', '16') });
    listItems = [obj('a', '12', 1), obj('c', '11'), obj('e', '20')];
    listRv = '21';
    line(res, { type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version: 15 (20)' } });
  });
  // Watch 3 (after the relist, at 21): half a line of garbage, then a newline.
  scripts.push((res) => {
    res.write('{"type":"ADDED","obj');
    setTimeout(() => res.write('ect": nope}\n'), 20);
  });
  const inf = new ResilientInformer<Obj>({
    rest,
    path: '/api/v1/things',
    name: 'things',
    logger,
    backoffInitialMs: 50,
    onEvent: (ev: InformerEvent, o: Obj) => void events.push(`${ev} ${o.metadata.name}@${o.metadata.resourceVersion}`),
  });
  try {
    await inf.start();
    await until('the fourth watch', () => watches.length >= 4, 10_000);
    t.is(watches[0]!.get('resourceVersion'), '10', 'watches from the list');
    t.is(watches[0]!.get('allowWatchBookmarks'), 'true');
    t.true(Number(watches[0]!.get('timeoutSeconds')) >= 300);
    t.is(watches[1]!.get('resourceVersion'), '15', 'a clean end resumes from the bookmark, without a relist');
    t.is(watches[2]!.get('resourceVersion'), '21', 'after 410: relisted, watching from the new list');
    t.is(watches[3]!.get('resourceVersion'), '21', 'after a broken line: relisted again');
    t.is(lists[0]!.length, 3, 'lists: the first, after 410, after the broken line');
    t.deepEqual(events, [
      'add a@5',
      'add b@6',
      'add c@11',
      'update a@12',
      'add d@16',
      // the 410 relist: b and d vanished, e is new; a and c are unchanged (no event)
      'delete b@6',
      'delete d@16',
      'add e@20',
    ]);
    t.deepEqual(inf.list().map((o) => o.metadata.name).sort(), ['a', 'c', 'e']);
    t.is(inf.get('a', 'ns')?.v, 1);
    const st = inf.stats();
    t.is(st.objectErrors, 1, 'the nameless event');
    t.true(st.synced);
    t.true(errors.some((m) => m.includes('(no name)')), 'the nameless event is logged');
  } finally {
    await inf.stop();
    api.close();
  }
});

test('a list refused or unreachable keeps retrying with backoff, and the first good list syncs', async (t) => {
  let calls = 0;
  const api = await loopbackApi((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.searchParams.get('watch') === 'true') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return;
    }
    calls++;
    if (calls < 3) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', code: 503, message: 'etcd unavailable' }));
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ metadata: { resourceVersion: '7' }, items: [obj('a', '7')] }));
  });
  const { rest } = api;
  const warnings: string[] = [];
  const logger = createLogger({ level: 'warn', stream: { write: (l: string) => void warnings.push(l) } });
  const inf = new ResilientInformer<Obj>({ rest, path: '/api/v1/things', name: 'things', logger, backoffInitialMs: 20, onEvent: () => undefined });
  try {
    await inf.start();
    t.false(inf.stats().synced);
    // An agent that never got through says why, in its status and once in its log.
    t.regex(inf.stats().lastError ?? '', /GET \/api\/v1\/things.*503.*etcd unavailable/);
    await until('synced', () => inf.stats().synced);
    t.is(calls, 3);
    t.is(inf.stats().errors, 2);
    t.is(inf.stats().lastError, undefined);
    t.is(warnings.length, 1, warnings.join(''));
    t.regex(warnings[0]!, /cannot list \/api\/v1\/things.*etcd unavailable.*retrying/);
    t.deepEqual(inf.list().map((o) => o.metadata.name), ['a']);
  } finally {
    await inf.stop();
    api.close();
  }
});

test('a watch stream that never ends its line is cut at 16 MiB and relisted, not buffered without bound', async (t) => {
  let lists = 0;
  let watches = 0;
  const api = await loopbackApi((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/json');
    if (u.searchParams.get('watch') !== 'true') {
      lists++;
      res.end(JSON.stringify({ metadata: { resourceVersion: '7' }, items: [obj('a', '7')] }));
      return;
    }
    watches++;
    res.writeHead(200);
    if (watches > 1) return; // the second watch idles
    const block = 'x'.repeat(1 << 20);
    let sent = 0;
    const more = (): void => {
      while (sent < 20 && !res.destroyed) {
        sent++;
        if (!res.write(block)) return void res.once('drain', more);
      }
    };
    res.write('{"type":"ADDED","object":{"metadata":{"name":"');
    more();
  });
  const { rest } = api;
  const warnings: string[] = [];
  const logger = createLogger({ level: 'warn', stream: { write: (l: string) => void warnings.push(JSON.parse(l).err as string) } });
  const inf = new ResilientInformer<Obj>({ rest, path: '/api/v1/things', name: 'things', logger, backoffInitialMs: 20, onEvent: () => undefined });
  try {
    await inf.start();
    await until('a relist after the cut', () => lists >= 2 && watches >= 2, 10_000);
    t.true(warnings.some((w) => /a line longer than 16777216 bytes/.test(w)), warnings.join('; '));
    t.deepEqual(inf.list().map((o) => o.metadata.name), ['a']);
  } finally {
    await inf.stop();
    api.close();
  }
});

test('a watch silent past its idle limit is reopened from the last resourceVersion, without a relist', async (t) => {
  let lists = 0;
  const watchRvs: string[] = [];
  const api = await loopbackApi((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/json');
    if (u.searchParams.get('watch') !== 'true') {
      lists++;
      res.end(JSON.stringify({ metadata: { resourceVersion: '7' }, items: [obj('a', '7')] }));
      return;
    }
    watchRvs.push(u.searchParams.get('resourceVersion') ?? '');
    res.writeHead(200);
    // One event, then silence (a peer that died without closing the connection).
    if (watchRvs.length === 1) res.write(`${JSON.stringify({ type: 'MODIFIED', object: obj('a', '9', 2) })}\n`);
  });
  const { rest } = api;
  const inf = new ResilientInformer<Obj>({ rest, path: '/api/v1/things', name: 'things', logger: createLogger({ level: 'silent' }), watchIdleMs: 1200, onEvent: () => undefined });
  try {
    await inf.start();
    await until('a second watch', () => watchRvs.length >= 2, 10_000);
    t.deepEqual(watchRvs.slice(0, 2), ['7', '9'], 'reopened from the last event, not from the list');
    t.is(lists, 1, 'no relist');
    t.is(inf.stats().errors, 0);
    t.is(inf.get('a', 'ns')?.v, 2);
  } finally {
    await inf.stop();
    api.close();
  }
});

test('410 on the watch request relists at once, but a server that keeps answering 410 is not relisted in a tight loop', async (t) => {
  let lists = 0;
  let watches = 0;
  const api = await loopbackApi((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/json');
    if (u.searchParams.get('watch') !== 'true') {
      lists++;
      res.end(JSON.stringify({ metadata: { resourceVersion: String(lists) }, items: [obj('a', '1')] }));
      return;
    }
    watches++;
    res.writeHead(410);
    res.end(JSON.stringify({ kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' }));
  });
  const { rest } = api;
  const inf = new ResilientInformer<Obj>({ rest, path: '/api/v1/things', name: 'things', logger: createLogger({ level: 'silent' }), backoffInitialMs: 100, onEvent: () => undefined });
  try {
    await inf.start();
    await until('the first expiry relisted at once', () => lists >= 2, 2000);
    await new Promise((r) => setTimeout(r, 1500));
    t.true(lists <= 8, `${lists} lists in 1.5 s`);
    t.true(watches >= 2);
    t.deepEqual(inf.list().map((o) => o.metadata.name), ['a'], 'the cache stays');
  } finally {
    await inf.stop();
    api.close();
  }
});

test('a watch the server cuts as soon as it answers (a garbage line, an end at once) is relisted with a growing backoff, which a watch that lasts resets', async (t) => {
  let lists = 0;
  let mode: 'garbage' | 'end' | 'lasting' = 'garbage';
  const listedAt: number[] = [];
  const api = await loopbackApi((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/json');
    if (u.searchParams.get('watch') !== 'true') {
      lists++;
      listedAt.push(Date.now());
      res.end(JSON.stringify({ metadata: { resourceVersion: '7' }, items: [obj('a', '7')] }));
      return;
    }
    res.writeHead(200);
    if (mode === 'garbage') res.end('<html>502 Bad Gateway</html>\n');
    else if (mode === 'end') res.end();
    // 'lasting': works for 1.2 s, then a torn line.
    else setTimeout(() => res.end('{"type":"MODIFIED","obj'), 1200);
  });
  const { rest } = api;
  const inf = new ResilientInformer<Obj>({ rest, path: '/api/v1/things', name: 'things', logger: createLogger({ level: 'silent' }), backoffInitialMs: 100, backoffMaxMs: 800, onEvent: () => undefined });
  try {
    await inf.start();
    // 100, 200, 400, 800, 800 ms between relists: about 6 lists in 2.5 s (a relist every 100 ms was 25).
    await new Promise((r) => setTimeout(r, 2500));
    t.true(lists <= 8, `${lists} lists in 2.5 s of garbage lines`);
    mode = 'end';
    const before = lists;
    await new Promise((r) => setTimeout(r, 2000));
    t.true(lists - before <= 4, `${lists - before} lists in 2 s of watches ended at once`);
    // A watch that worked for longer than a moment: the next relist comes after the initial backoff, not the grown one.
    mode = 'lasting';
    const n = lists;
    // List n+1 comes after the grown backoff; its watch lasts 1.2 s, then list n+2 after 100 ms (800 without the reset).
    await until('a lasting watch cut, then relisted', () => lists >= n + 2, 8000);
    const gap = listedAt[n + 1]! - listedAt[n]!;
    t.true(gap >= 1200 && gap < 1200 + 500, `${gap} ms from one relist to the next (1.2 s of watch, then the initial 100 ms)`);
    t.deepEqual(inf.list().map((o) => o.metadata.name), ['a'], 'the cache stays');
  } finally {
    await inf.stop();
    api.close();
  }
});

test('a watch resumed while the credentials cannot be read (token file gone, exec plugin failing) is retried with backoff, not abandoned', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-informer-'));
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, 'first\n');
  let lists = 0;
  const watches: ServerResponse[] = [];
  const api = await loopbackApi((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    res.setHeader('content-type', 'application/json');
    if (u.pathname === '/probe') {
      res.writeHead(401);
      res.end(JSON.stringify({ kind: 'Status', code: 401, message: 'Unauthorized' }));
      return;
    }
    if (u.searchParams.get('watch') !== 'true') {
      lists++;
      res.end(JSON.stringify({ metadata: { resourceVersion: '7' }, items: [obj('a', '7')] }));
      return;
    }
    res.writeHead(200);
    res.write('\n');
    watches.push(res);
  }, `{ tokenFile: "${tokenFile}" }`);
  const { rest } = api;
  const inf = new ResilientInformer<Obj>({ rest, path: '/api/v1/things', name: 'things', logger: createLogger({ level: 'silent' }), backoffInitialMs: 50, onEvent: () => undefined });
  try {
    await inf.start();
    await until('the first watch', () => watches.length === 1);
    // The token file goes (a volume remounted, a rotation gone wrong) and a 401 elsewhere makes the client read it again at its next request.
    unlinkSync(tokenFile);
    await t.throwsAsync(rest.get('/probe'), { message: /401/ });
    // The server ends the watch after it lasted: resuming it needs the credentials, which cannot be read now.
    await new Promise((r) => setTimeout(r, 1100));
    watches[0]!.end();
    await until('the failure counted', () => inf.stats().errors >= 1, 3000);
    t.regex(inf.stats().lastError ?? '', /token file .*cannot read it/);
    writeFileSync(tokenFile, 'second\n');
    await until('a relist and a new watch', () => lists >= 2 && watches.length >= 2, 5000);
    t.true(inf.stats().connected);
  } finally {
    await inf.stop();
    api.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
