// RBAC refusals reach the operator as one error line naming the verb and
// the resource (the API server's own sentence), whichever client made the
// request; anything else is not called a permission problem.
import test from 'ava';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { KubeConfig } from '../../src/k8s/kubeconfig.js';
import { makePki } from '../../src/lab/kube/pki.js';
import { ApiStatusError, RestClient, permissionProblem, reportPermissionProblem } from '../../src/k8s/rest.js';

/** A one-context kubeconfig with a token user. */
function kubeconfigYaml(server: string, clusterExtra = '{}'): string {
  const extra = clusterExtra.replace(/^\{\s*|\s*\}$/g, '');
  return `apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "${server}"${extra ? `, ${extra}` : ''} } }]
users: [{ name: u, user: { token: t } }]
contexts: [{ name: x, context: { cluster: c, user: u } }]
current-context: x
`;
}

const message = 'services "web" is forbidden: User "system:serviceaccount:edgelb-system:edgelb-node" cannot patch resource "services/status" in API group "" in the namespace "ns"';

test('a 403 from the lean client or from client-node becomes the server sentence plus where the permission comes from', (t) => {
  const lean = new ApiStatusError(403, 'PATCH …: HTTP 403', { kind: 'Status', code: 403, reason: 'Forbidden', message });
  t.is(permissionProblem(lean), `permission denied by the API server: ${message} (grant it to this agent's ServiceAccount; deploy/rbac.yaml has what edgelb needs)`);
  // client-node's ApiException: code + the body as text.
  const generated = Object.assign(new Error('HTTP-Code: 403'), { code: 403, body: JSON.stringify({ kind: 'Status', message }) });
  t.regex(permissionProblem(generated)!, /cannot patch resource "services\/status"/);
  t.is(permissionProblem(new ApiStatusError(404, 'not found', {})), null);
  t.is(permissionProblem(new Error('ECONNREFUSED')), null);
  t.is(permissionProblem(null), null);
});

test('each distinct refusal is logged once, at error level', (t) => {
  const logged: string[] = [];
  const logger = { error: (_o: object, msg: string) => void logged.push(msg) };
  const e = new ApiStatusError(403, 'x', { message: `${message} (once)` });
  for (let i = 0; i < 5; i++) t.true(reportPermissionProblem(logger, e, 'status'));
  t.false(reportPermissionProblem(logger, new ApiStatusError(500, 'x', {}), 'status'));
  t.is(logged.length, 1);
});

test('a settled request does not keep its response alive (a keep-alive socket holds its last request until reused)', async (t) => {
  // At 10 000 Services the last 1000-object page of each list stayed in
  // memory this way, through the request's listeners.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-rest-'));
  const pki = await makePki(dir, ['127.0.0.1'], []);
  // HTTPS: the TLS socket's session listener is what reaches the request.
  const server = createServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) }, (_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ items: [{ name: 'x'.repeat(1000) }] }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const kc = KubeConfig.fromYaml(kubeconfigYaml(`https://127.0.0.1:${port}`, '{ insecure-skip-tls-verify: true }'));
  const rest = new RestClient(kc);
  try {
    const refs: WeakRef<object>[] = [];
    for (let i = 0; i < 3; i++) refs.push(new WeakRef((await rest.get<{ items: object[] }>('/api/v1/things')).items));
    for (let i = 0; i < 5; i++) {
      gc();
      await new Promise((r) => setImmediate(r));
    }
    t.deepEqual(refs.map((r) => r.deref() === undefined), [true, true, true]);
  } finally {
    rest.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('requests verified against a CA share one keep-alive connection (the pool is named by the TLS identity digest, not by the PEM text per request)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-rest-'));
  const pki = await makePki(dir, ['127.0.0.1'], []);
  let connections = 0;
  const server = createServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) }, (_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end('{"ok":true}');
  });
  server.on('secureConnection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const ca = readFileSync(pki.caCert).toString('base64');
  const kc = KubeConfig.fromYaml(kubeconfigYaml(`https://127.0.0.1:${port}`, `{ certificate-authority-data: "${ca}" }`));
  const rest = new RestClient(kc);
  try {
    for (let i = 0; i < 20; i++) t.deepEqual(await rest.get('/api/v1/things'), { ok: true });
    await Promise.all(Array.from({ length: 10 }, () => rest.send('PATCH', '/api/v1/x', { a: 1 }, 'application/merge-patch+json', true)));
    t.true(connections >= 1 && connections <= 10, `connections: ${connections}`);
    const before = connections;
    for (let i = 0; i < 20; i++) await rest.get('/api/v1/things');
    t.is(connections, before, 'sequential requests reuse the pooled connections');
  } finally {
    rest.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('credentials the API server refuses (401) are fetched again once: an exec plugin\'s token without an expiry, revoked', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-rest-401-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // Each run hands out the next token, with no expirationTimestamp (kept for the process's life).
  const count = join(dir, 'runs');
  const plugin = join(dir, 'plugin.sh');
  writeFileSync(plugin, `#!/bin/sh\nn=$(( $(cat "${count}" 2>/dev/null || echo 0) + 1 ))\necho $n > "${count}"\necho "{\\"apiVersion\\":\\"client.authentication.k8s.io/v1\\",\\"kind\\":\\"ExecCredential\\",\\"status\\":{\\"token\\":\\"tok-$n\\"}}"\n`);
  chmodSync(plugin, 0o755);
  const runs = (): number => Number(readFileSync(count, 'utf8'));
  let accepted = 'Bearer tok-2';
  const server = createHttpServer((req, res) => {
    const ok = req.headers.authorization === accepted;
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' });
    res.end(JSON.stringify(ok ? { kind: 'NamespaceList', items: [] } : { kind: 'Status', code: 401, reason: 'Unauthorized', message: 'Unauthorized' }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const rest = new RestClient(KubeConfig.fromYaml(`apiVersion: v1
kind: Config
clusters: [{ name: c, cluster: { server: "http://127.0.0.1:${port}", insecure-skip-tls-verify: true } }]
users: [{ name: u, user: { exec: { apiVersion: client.authentication.k8s.io/v1, command: "${plugin}" } } }]
contexts: [{ name: x, context: { cluster: c, user: u } }]
current-context: x
`));
  t.teardown(() => rest.close());
  await t.throwsAsync(rest.get('/api/v1/namespaces'), { message: /HTTP 401/ }, 'tok-1 is refused (revoked)');
  t.deepEqual(await rest.get('/api/v1/namespaces'), { kind: 'NamespaceList', items: [] }, 'the next request fetches tok-2');
  t.is(runs(), 2);
  // Revoked again: five requests refused at once run the plugin once more, not five times.
  accepted = 'Bearer tok-3';
  const refused = await Promise.allSettled(Array.from({ length: 5 }, () => rest.get('/api/v1/namespaces')));
  t.true(refused.every((r) => r.status === 'rejected'));
  await rest.get('/api/v1/namespaces');
  t.is(runs(), 3);
});

/** A TCP server that accepts and never answers (a blackholed API server); counts the connections it holds open. */
async function silentServer(): Promise<{ port: number; accepted: () => number; open: () => number; close: () => void }> {
  const held = new Set<Socket>();
  let accepted = 0;
  const server = createNetServer((s) => {
    accepted++;
    held.add(s);
    s.resume(); // reads (and drops) the requests, so the client's close is seen
    s.on('error', () => undefined);
    s.on('close', () => held.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    accepted: () => accepted,
    open: () => held.size,
    close: () => {
      for (const s of held) s.destroy();
      server.close();
    },
  };
}

test('close() ends every request against a server that never answers — in flight and queued for a socket — and a request after it opens no connection', async (t) => {
  const silent = await silentServer();
  t.teardown(() => silent.close());
  // One socket: the second request waits in the pool's queue for it.
  const rest = new RestClient(KubeConfig.fromYaml(kubeconfigYaml(`http://127.0.0.1:${silent.port}`, '{ insecure-skip-tls-verify: true }')), 1);
  const outcomes = [rest.get('/api/v1/a'), rest.send('PUT', '/api/v1/b', { x: 1 })].map((p) => p.then(() => 'answered', (e: Error) => e.message));
  const deadline = Date.now() + 5000;
  while (silent.accepted() < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.is(silent.accepted(), 1);
  const closedAt = Date.now();
  rest.close();
  const messages = await Promise.all(outcomes);
  t.true(Date.now() - closedAt < 1000, `settled ${Date.now() - closedAt} ms after close()`);
  for (const m of messages) t.regex(m, /closed/);
  t.is(await rest.get('/api/v1/c').then(() => 'answered', (e: Error) => e.message), 'GET /api/v1/c: the API client is closed');
  await new Promise((r) => setTimeout(r, 200));
  t.is(silent.accepted(), 1, 'no connection was opened after close() (the queued request did not take a new socket)');
  t.is(silent.open(), 0, 'no connection is left open');
});
