// The agents' own kubeconfig reader: the forms operators use (token, token
// file, client certificates inline or as files next to the kubeconfig, exec
// plugins, $KUBECONFIG lists, the in-cluster ServiceAccount) give the
// credentials kubectl would send; everything else is refused naming the
// file, the entry and the field.
import test from 'ava';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { KubeConfig, KubeConfigError } from '../../src/k8s/kubeconfig.js';

function tmp(t: { teardown: (f: () => void) => void }): string {
  const d = mkdtempSync(join(tmpdir(), 'edgelb-kc-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

function doc(cluster: string, user: string, extra = ''): string {
  return `apiVersion: v1
kind: Config
clusters:
- name: prod
  cluster: ${cluster}
users:
- name: edge
  user: ${user}
contexts:
- name: main
  context: { cluster: prod, user: edge, namespace: edgelb-system }
current-context: main
${extra}`;
}

test('a token user against a CA given inline: Bearer header, the CA, verification on', async (t) => {
  const kc = KubeConfig.fromYaml(doc(`{ server: "https://10.0.0.1:6443", certificate-authority-data: "${b64('CA PEM')}", tls-server-name: api.internal }`, '{ token: abc.def }'));
  t.is(kc.server.href, 'https://10.0.0.1:6443/');
  t.is(kc.namespace, 'edgelb-system');
  const c = await kc.connection();
  t.deepEqual(c.headers, { authorization: 'Bearer abc.def' });
  t.is(c.ca?.toString(), 'CA PEM');
  t.true(c.rejectUnauthorized);
  t.is(c.servername, 'api.internal');
  t.is(c.cert, undefined);
});

test('files named relative to the kubeconfig resolve next to it; a token file is re-read (it rotates)', async (t) => {
  const d = tmp(t);
  writeFileSync(join(d, 'ca.pem'), 'CA FILE');
  writeFileSync(join(d, 'edge.crt'), 'CERT FILE');
  writeFileSync(join(d, 'edge.key'), 'KEY FILE');
  writeFileSync(join(d, 'token'), 'first\n');
  const path = join(d, 'config');
  writeFileSync(path, doc('{ server: "https://api:6443", certificate-authority: ca.pem }', '{ client-certificate: edge.crt, client-key: edge.key, tokenFile: token }'));
  const kc = KubeConfig.load(path);
  const a = await kc.connection();
  t.is(a.ca?.toString(), 'CA FILE');
  t.is(a.cert?.toString(), 'CERT FILE');
  t.is(a.key?.toString(), 'KEY FILE');
  t.is(a.headers.authorization, 'Bearer first');
  writeFileSync(join(d, 'token'), 'second\n');
  t.is((await kc.connection()).headers.authorization, 'Bearer second');
});

test("the DaemonSet manifest's kubeconfig of earlier releases (client-node's auth-provider spelling of a token file) still reads the token", async (t) => {
  const d = tmp(t);
  writeFileSync(join(d, 'token'), 'sa');
  const kc = KubeConfig.fromYaml(doc('{ server: "https://api:6443" }', `{ auth-provider: { name: tokenFile, config: { tokenFile: "${join(d, 'token')}" } } }`));
  t.is((await kc.connection()).headers.authorization, 'Bearer sa');
});

test('an exec credential plugin is run with its args and env, and its credential cached until it expires', async (t) => {
  const d = tmp(t);
  const plugin = join(d, 'plugin.sh');
  const count = join(d, 'runs');
  writeFileSync(
    plugin,
    `#!/bin/sh\necho x >> "${count}"\necho "{\\"apiVersion\\":\\"client.authentication.k8s.io/v1\\",\\"kind\\":\\"ExecCredential\\",\\"status\\":{\\"token\\":\\"$1-$EDGE_ROLE\\",\\"expirationTimestamp\\":\\"2999-01-01T00:00:00Z\\"}}"\n`,
  );
  chmodSync(plugin, 0o755);
  const kc = KubeConfig.fromYaml(doc('{ server: "https://api:6443" }', `{ exec: { apiVersion: client.authentication.k8s.io/v1, command: "${plugin}", args: [tok], env: [{ name: EDGE_ROLE, value: edge }] } }`));
  t.is((await kc.connection()).headers.authorization, 'Bearer tok-edge');
  t.is((await kc.connection()).headers.authorization, 'Bearer tok-edge');
  const { readFileSync } = await import('node:fs');
  t.is(readFileSync(count, 'utf8').trim().split('\n').length, 1, 'the credential is cached');
  const failing = KubeConfig.fromYaml(doc('{ server: "https://api:6443" }', `{ exec: { command: "${join(d, 'missing')}" } }`));
  await t.throwsAsync(failing.connection(), { instanceOf: KubeConfigError, message: /exec credential plugin .*missing failed/ });
});

test('$KUBECONFIG lists files: the first definition of each name wins, the context may live in another file than its cluster', async (t) => {
  const d = tmp(t);
  writeFileSync(join(d, 'a'), 'apiVersion: v1\nkind: Config\ncontexts: [{ name: main, context: { cluster: prod, user: edge } }]\ncurrent-context: main\n');
  writeFileSync(join(d, 'b'), doc('{ server: "https://second:6443" }', '{ token: from-b }').replace('current-context: main', 'current-context: other'));
  const saved = process.env.KUBECONFIG;
  process.env.KUBECONFIG = [join(d, 'a'), join(d, 'b')].join(delimiter);
  t.teardown(() => {
    if (saved === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = saved;
  });
  const kc = KubeConfig.load();
  t.is(kc.server.host, 'second:6443');
  t.is((await kc.connection()).headers.authorization, 'Bearer from-b');
});

test('in-cluster: the ServiceAccount token, CA and namespace of the pod; an IPv6 service host is bracketed', async (t) => {
  const d = tmp(t);
  writeFileSync(join(d, 'token'), 'sa-token');
  writeFileSync(join(d, 'ca.crt'), 'SA CA');
  writeFileSync(join(d, 'namespace'), 'edgelb-system\n');
  const saved = { h: process.env.KUBERNETES_SERVICE_HOST, p: process.env.KUBERNETES_SERVICE_PORT };
  process.env.KUBERNETES_SERVICE_HOST = 'fd00::1';
  process.env.KUBERNETES_SERVICE_PORT = '443';
  t.teardown(() => {
    for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.h], ['KUBERNETES_SERVICE_PORT', saved.p]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  const kc = KubeConfig.inCluster(d);
  t.is(kc.server.href, 'https://[fd00::1]/', 'URL drops the default port');
  t.is(kc.namespace, 'edgelb-system');
  const c = await kc.connection();
  t.is(c.headers.authorization, 'Bearer sa-token');
  t.is(c.ca?.toString(), 'SA CA');
});

test('what it cannot use is refused naming the file, the entry and the field', (t) => {
  const d = tmp(t);
  const at = (text: string): string => {
    const p = join(d, `k${Math.random().toString(36).slice(2)}`);
    writeFileSync(p, text);
    const e = t.throws(() => KubeConfig.load(p), { instanceOf: KubeConfigError });
    t.true(e!.message.includes(p), `names the file: ${e!.message}`);
    return e!.message;
  };
  t.regex(at('apiVersion: v1\nkind: Config\n'), /no current-context/);
  t.regex(at(doc('{ server: "https://a" }', '{ token: x }').replace('current-context: main', 'current-context: nope')), /current-context "nope" is not among its contexts/);
  t.regex(at(doc('{ server: "https://a" }', '{ token: x }').replace('cluster: prod, user', 'cluster: gone, user')), /context "main" names cluster "gone", which is not defined/);
  t.regex(at(doc('{ server: "https://a" }', '{ token: x }').replace('user: edge, namespace', 'user: ghost, namespace')), /context "main" names user "ghost", which is not defined/);
  t.regex(at(doc('{ server: "not a url" }', '{ token: x }')), /cluster "prod": cluster server "not a url" is not a URL/);
  t.regex(at(doc('{ server: "https://a" }', '{ auth-provider: { name: oidc } }')), /user "edge": auth-provider is not supported/);
  t.regex(at(doc('{ server: "https://a" }', '{ client-certificate-data: eA== }')), /user "edge": a client certificate needs its key/);
  t.regex(at(doc('{ server: "https://a", certificate-authority: /nonexistent/ca.pem }', '{ token: x }')), /cluster "prod"\.certificate-authority \/nonexistent\/ca\.pem: cannot read it \(ENOENT\)/);
  t.regex(at('clusters: [unclosed'), /not YAML/);
  const missing = t.throws(() => KubeConfig.load(join(d, 'absent')), { instanceOf: KubeConfigError });
  t.regex(missing!.message, /absent: cannot read it \(ENOENT\)/);
});
