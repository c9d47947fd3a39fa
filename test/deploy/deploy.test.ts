// deploy/ against the real API server: the manifests pass server-side
// validation, each ServiceAccount holds exactly what its agent needs, an
// agent missing a permission says which verb on which resource, and the
// documented kubeconfig script mints a working edge identity.
import test from 'ava';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { TestCluster } from '../lib/kube.js';
import { KubernetesController } from '../../src/k8s/controller.js';
import { KubeConfig } from '../../src/k8s/kubeconfig.js';
import { RestClient } from '../../src/k8s/rest.js';
import { run } from '../../src/lab/netns.js';
import { KUBECTL, root } from '../../src/lab/paths.js';
import { EDGE_SERVICE_ACCOUNT, EDGELB_NAMESPACE, NODE_SERVICE_ACCOUNT } from '../../src/lab/kube/rbac.js';
import { RecordingSink, testConfig, waitFor } from '../k8s/helpers.js';

let cluster: TestCluster;
const deploy = (f: string): string => join(root, 'deploy', f);

test.before(async () => {
  cluster = await TestCluster.start({ tag: 'deploy', controllerManager: false });
});

test.after.always(async () => {
  await cluster?.close();
});

test('the manifests pass server-side validation (kubectl apply --dry-run=server); a broken one does not', async (t) => {
  const out = await cluster.kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', deploy('rbac.yaml'), '-f', deploy('node-agent.yaml')]);
  for (const obj of ['namespace/edgelb-system', 'serviceaccount/edgelb-edge', 'serviceaccount/edgelb-node', 'clusterrole.rbac.authorization.k8s.io/edgelb-edge', 'clusterrole.rbac.authorization.k8s.io/edgelb-node', 'role.rbac.authorization.k8s.io/edgelb-edge-leases', 'configmap/edgelb-node', 'daemonset.apps/edgelb-node']) {
    t.regex(out, new RegExp(`${obj.replace(/[./]/g, '\\$&')} .*\\(server dry run\\)`), obj);
  }
  // The check can fail: an unknown field and a capability list of the wrong type.
  const broken = readFileSync(deploy('node-agent.yaml'), 'utf8').replace('hostNetwork: true', 'hostNetwork: true\n      hostNetworkk: true');
  const file = join(cluster.dir, 'broken.yaml');
  writeFileSync(file, broken);
  const err = await cluster.kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', file]).then(() => '', (e: Error) => e.message);
  t.regex(err, /unknown field "spec\.template\.spec\.hostNetworkk"/);
});

test('the DaemonSet runs unprivileged with host network, the bpffs mount, the interface and --edge-sources', (t) => {
  const text = readFileSync(deploy('node-agent.yaml'), 'utf8');
  t.regex(text, /hostNetwork: true/);
  t.regex(text, /privileged: false/);
  t.regex(text, /drop: \[ALL\]/);
  t.regex(text, /add: \[BPF, NET_ADMIN, PERFMON\]/);
  t.regex(text, /mountPath: \/sys\/fs\/bpf/);
  t.regex(text, /--edge-sources=\$\(EDGELB_EDGE_SOURCES\)/);
  t.regex(text, /--interface=\$\(EDGELB_INTERFACE\)/);
  t.regex(text, new RegExp(`serviceAccountName: ${NODE_SERVICE_ACCOUNT}`));
});

test("the DaemonSet's kubeconfig, read by the node agent's own reader with a pod's ServiceAccount files, is the edgelb-node account", async (t) => {
  const docs = parseAllDocuments(readFileSync(deploy('node-agent.yaml'), 'utf8')).map((d) => d.toJS() as { kind?: string; data?: Record<string, string> });
  const text = docs.find((d) => d.kind === 'ConfigMap')?.data?.kubeconfig;
  if (text === undefined) return t.fail('no kubeconfig in the ConfigMap');
  // The pod's projected ServiceAccount volume, here a directory with a token of edgelb-node and the cluster's CA.
  const sa = mkdtempSync(join(cluster.dir, 'sa-'));
  writeFileSync(join(sa, 'token'), (await cluster.kubectl(['create', 'token', NODE_SERVICE_ACCOUNT, '-n', EDGELB_NAMESPACE, '--duration', '10m'])).trim());
  const ca = /certificate-authority-data: (\S+)/.exec(readFileSync(cluster.adminKubeconfig, 'utf8'))?.[1];
  writeFileSync(join(sa, 'ca.crt'), Buffer.from(ca ?? '', 'base64'));
  t.true(text.includes('https://kubernetes.default.svc') && text.includes('/var/run/secrets/kubernetes.io/serviceaccount/token'));
  const local = text.replaceAll('/var/run/secrets/kubernetes.io/serviceaccount', sa).replace('https://kubernetes.default.svc', cluster.server);
  const rest = new RestClient(KubeConfig.fromYaml(local));
  t.teardown(() => rest.close());
  const review = (await rest.send('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' })) as { status?: { userInfo?: { username?: string } } };
  t.is(review.status?.userInfo?.username, `system:serviceaccount:${EDGELB_NAMESPACE}:${NODE_SERVICE_ACCOUNT}`);
});

/** kubectl auth can-i: prints yes/no; exits 0 for yes, 1 for no, other codes for errors. */
async function can(sa: string, verb: string, resource: string, ns?: string, sub?: string): Promise<boolean> {
  const args = ['--kubeconfig', cluster.adminKubeconfig, '--cache-dir', join(cluster.dir, 'can-i-cache'), 'auth', 'can-i', verb, resource, `--as=system:serviceaccount:${EDGELB_NAMESPACE}:${sa}`, ...(ns ? ['-n', ns] : ['--all-namespaces']), ...(sub ? [`--subresource=${sub}`] : [])];
  const { execFile } = await import('node:child_process');
  return new Promise((resolve, reject) =>
    execFile(KUBECTL, args, { timeout: 30_000 }, (e, stdout, stderr) => {
      const answer = stdout.trim();
      if (answer === 'yes' && !e) resolve(true);
      else if (answer === 'no' && (e as { code?: number } | null)?.code === 1) resolve(false);
      else reject(new Error(`kubectl auth can-i ${verb} ${resource}: ${answer} ${stderr} ${e?.message ?? ''}`));
    }),
  );
}

test('each ServiceAccount holds exactly the permissions of its agent (kubectl auth can-i)', async (t) => {
  const E = EDGE_SERVICE_ACCOUNT;
  const N = NODE_SERVICE_ACCOUNT;
  const matrix: [string, string, string, string | undefined, string | undefined, boolean][] = [
    [E, 'list', 'services', undefined, undefined, true],
    [E, 'watch', 'endpointslices.discovery.k8s.io', undefined, undefined, true],
    [E, 'watch', 'nodes', undefined, undefined, true],
    [E, 'patch', 'services', 'default', 'status', true],
    [E, 'create', 'events.events.k8s.io', 'default', undefined, true],
    [E, 'patch', 'events.events.k8s.io', 'default', undefined, true],
    // DuplicateEdgeName is an Event about the edge's presence Lease, in the Leases' namespace.
    [E, 'create', 'events.events.k8s.io', EDGELB_NAMESPACE, undefined, true],
    [E, 'create', 'leases.coordination.k8s.io', EDGELB_NAMESPACE, undefined, true],
    [E, 'update', 'leases.coordination.k8s.io', EDGELB_NAMESPACE, undefined, true],
    [E, 'create', 'leases.coordination.k8s.io', 'kube-system', undefined, false],
    [E, 'update', 'services', 'default', undefined, false],
    [E, 'patch', 'services', 'default', undefined, false],
    [E, 'delete', 'services', 'default', undefined, false],
    [E, 'get', 'secrets', 'default', undefined, false],
    [E, 'create', 'pods', 'default', undefined, false],
    [E, 'patch', 'nodes', undefined, undefined, false],
    [N, 'list', 'services', undefined, undefined, true],
    [N, 'watch', 'endpointslices.discovery.k8s.io', undefined, undefined, true],
    [N, 'list', 'nodes', undefined, undefined, true],
    [N, 'patch', 'services', 'default', 'status', false],
    [N, 'create', 'events.events.k8s.io', 'default', undefined, false],
    [N, 'create', 'leases.coordination.k8s.io', EDGELB_NAMESPACE, undefined, false],
    [N, 'get', 'secrets', 'default', undefined, false],
    [N, 'patch', 'nodes', undefined, undefined, false],
  ];
  const got = await Promise.all(matrix.map(([sa, verb, res, ns, sub]) => can(sa, verb, res, ns, sub)));
  matrix.forEach(([sa, verb, res, ns, sub, want], i) => t.is(got[i], want, `${sa} ${verb} ${res}${sub ? `/${sub}` : ''} in ${ns ?? 'all namespaces'}`));
});

test('an edge agent running with only the node role says which verb on which resource it lacks', async (t) => {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, new Writable({ write: (chunk: Buffer, _enc, cb) => (lines.push(chunk.toString()), cb()) }));
  const base = testConfig([{ cidrs: ['198.51.100.0/29'] }]);
  const config = { ...base, kubernetes: { ...base.kubernetes, leaseName: 'edgelb-deploy', leaseNamespace: EDGELB_NAMESPACE } };
  const c = new KubernetesController({ config, kubeconfigPath: await cluster.kubeconfigFor(NODE_SERVICE_ACCOUNT), nodeName: 'edge-a', logger, sink: new RecordingSink() });
  t.teardown(() => c.stop());
  await c.start().catch(() => undefined);
  const err = () => lines.map((l) => JSON.parse(l) as { level: number; msg: string }).find((l) => l.level >= 50 && /permission denied/.test(l.msg));
  await waitFor('an error naming the missing permission', () => err() !== undefined, 20_000);
  t.regex(err()!.msg, /User "system:serviceaccount:edgelb-system:edgelb-node" cannot (get|create|list) resource "leases" in API group "coordination\.k8s\.io" in the namespace "edgelb-system"/);
  t.regex(err()!.msg, /deploy\/rbac\.yaml/);
});

test('deploy/edge-kubeconfig.sh mints a kubeconfig that is the edgelb-edge account and nothing more', async (t) => {
  const env = { ...process.env, KUBECTL, KUBECONFIG: cluster.adminKubeconfig, HOME: cluster.dir };
  const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) => {
    import('node:child_process').then(({ execFile }) =>
      execFile(deploy('edge-kubeconfig.sh'), ['--duration', '1h'], { env, timeout: 30_000 }, (e, so, se) => (e ? reject(new Error(`${e.message} ${se}`)) : resolve({ stdout: so }))),
    );
  });
  const file = join(cluster.dir, 'edge.kubeconfig');
  writeFileSync(file, stdout);
  const as = (args: string[]) => run([KUBECTL, '--kubeconfig', file, '--cache-dir', join(cluster.dir, 'edge-cache'), ...args], { timeoutMs: 30_000 });
  t.regex((await as(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'])).stdout, /^system:serviceaccount:edgelb-system:edgelb-edge$/);
  await t.notThrowsAsync(as(['get', 'services', '--all-namespaces']));
  await t.throwsAsync(as(['get', 'secrets', '-n', 'default']), { message: /forbidden: User "system:serviceaccount:edgelb-system:edgelb-edge" cannot list resource "secrets"/ });
  // The agent reads it with its own kubeconfig reader, not kubectl's: the same identity.
  const rest = new RestClient(KubeConfig.load(file));
  t.teardown(() => rest.close());
  const review = await rest.send('POST', '/apis/authentication.k8s.io/v1/selfsubjectreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });
  t.is((review as { status?: { userInfo?: { username?: string } } }).status?.userInfo?.username, 'system:serviceaccount:edgelb-system:edgelb-edge');
});
