/**
 * Fidelity of the test API server with the real kubectl (Debian's 1.20
 * kubernetes-client) as a black box: create, apply (create, then strategic
 * merge patch), get -o wide with EXTERNAL-IP, get -w, delete, and the other
 * resources the project uses.
 */
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TestApiServer } from './server.js';

const KUBECTL = process.env['KUBECTL'] ?? resolve('.tools/kubectl/usr/bin/kubectl');

interface Ctx {
  api: TestApiServer;
  dir: string;
  kubectl(args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }>;
}

async function setup(t: { teardown(fn: () => Promise<void> | void): void }): Promise<Ctx> {
  const api = await TestApiServer.start();
  const dir = await mkdtemp(join(tmpdir(), 'edgelb-kubectl-'));
  t.teardown(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });
  const kubectl = (args: string[], stdin?: string): Promise<{ code: number; stdout: string; stderr: string }> =>
    new Promise((done) => {
      const child = execFile(
        KUBECTL,
        ['--kubeconfig', api.kubeconfigPath, '--cache-dir', join(dir, 'cache'), ...args],
        { timeout: 20_000, env: { ...process.env, HOME: dir } },
        (err, stdout, stderr) => done({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
      );
      if (stdin !== undefined) child.stdin?.end(stdin);
    });
  return { api, dir, kubectl };
}

/** Splits `kubectl get` output into rows of whitespace-separated columns. */
function rows(out: string): string[][] {
  return out.trim().split('\n').map((l) => l.trim().split(/\s{2,}|\t/));
}

test.serial('kubectl is Debian\'s 1.20 client', async (t) => {
  t.true(existsSync(KUBECTL), `kubectl at ${KUBECTL}`);
  const { kubectl } = await setup(t);
  const v = await kubectl(['version', '--client', '--short']);
  t.is(v.code, 0, v.stderr);
  t.regex(v.stdout, /Client Version: v1\.20\./);
});

test('create service loadbalancer, get -o wide with EXTERNAL-IP from status, delete', async (t) => {
  const { api, kubectl } = await setup(t);
  const c = await kubectl(['create', 'service', 'loadbalancer', 'web', '--tcp=80:8080']);
  t.is(c.code, 0, c.stderr);
  t.is(c.stdout.trim(), 'service/web created');
  const svc = api.get('services', 'default', 'web')!;
  t.is(svc.spec.type, 'LoadBalancer');
  t.like(svc.spec.ports[0], { port: 80, targetPort: 8080, protocol: 'TCP' });
  t.true(svc.spec.ports[0].nodePort >= 30000 && svc.spec.ports[0].nodePort <= 32767);

  let g = await kubectl(['get', 'svc', '-o', 'wide']);
  t.is(g.code, 0, g.stderr);
  let table = rows(g.stdout);
  t.deepEqual(table[0], ['NAME', 'TYPE', 'CLUSTER-IP', 'EXTERNAL-IP', 'PORT(S)', 'AGE', 'SELECTOR']);
  let web = table.find((r) => r[0] === 'web')!;
  t.deepEqual([web[1], web[2], web[3], web[4], web[6]], ['LoadBalancer', svc.spec.clusterIP, '<pending>', `80:${svc.spec.ports[0].nodePort}/TCP`, 'app=web']);

  api.mergePatch('services', 'default', 'web', { status: { loadBalancer: { ingress: [{ ip: '192.0.2.10' }] } } }, 'status');
  g = await kubectl(['get', 'svc', 'web', '-o', 'wide']);
  t.is(g.code, 0, g.stderr);
  table = rows(g.stdout);
  web = table.find((r) => r[0] === 'web')!;
  t.is(web[3], '192.0.2.10');

  const j = await kubectl(['get', 'svc', 'web', '-o', 'jsonpath={.status.loadBalancer.ingress[0].ip}']);
  t.is(j.stdout, '192.0.2.10');

  const d = await kubectl(['delete', 'svc', 'web']);
  t.is(d.code, 0, d.stderr);
  t.is(d.stdout.trim(), 'service "web" deleted');
  t.is(api.get('services', 'default', 'web'), undefined);
  const gone = await kubectl(['get', 'svc', 'web']);
  t.not(gone.code, 0);
  t.regex(gone.stderr, /Error from server \(NotFound\): services "web" not found/);
});

test('apply -f creates, then a changed manifest is applied as a strategic merge patch', async (t) => {
  const { api, dir, kubectl } = await setup(t);
  const manifest = (targetPort: number, extraPorts: string, label: string): string => `apiVersion: v1
kind: Service
metadata:
  name: app
  labels:
    tier: ${label}
spec:
  type: LoadBalancer
  loadBalancerClass: edgelb.io/dsr
  selector:
    app: app
  ports:
  - name: http
    port: 80
    targetPort: ${targetPort}
${extraPorts}`;
  const file = join(dir, 'svc.yaml');
  await writeFile(file, manifest(8080, '  - name: https\n    port: 443\n', 'a'));
  let a = await kubectl(['apply', '-f', file]);
  t.is(a.code, 0, a.stderr);
  t.is(a.stdout.trim(), 'service/app created');
  const first = api.get('services', 'default', 'app')!;
  t.truthy(first.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration']);
  const nodePorts = first.spec.ports.map((p: { nodePort: number }) => p.nodePort);

  // Unchanged manifest: nothing to patch, nothing written.
  const rv = first.metadata.resourceVersion;
  a = await kubectl(['apply', '-f', file]);
  t.is(a.code, 0, a.stderr);
  t.is(a.stdout.trim(), 'service/app unchanged');
  t.is(api.get('services', 'default', 'app')!.metadata.resourceVersion, rv);

  // Change a targetPort, drop the https port, add dns, change a label.
  api.resetRequestLog();
  await writeFile(file, manifest(9090, '  - name: dns\n    port: 53\n    protocol: UDP\n', 'b'));
  a = await kubectl(['apply', '-f', file]);
  t.is(a.code, 0, a.stderr);
  t.is(a.stdout.trim(), 'service/app configured');
  t.is(api.requestCount('patch', 'services'), 1);
  const now = api.get('services', 'default', 'app')!;
  t.is(now.metadata.labels.tier, 'b');
  t.deepEqual(now.spec.ports.map((p: { name: string; port: number; targetPort: number; protocol: string }) => [p.name, p.port, p.targetPort, p.protocol]),
    [['http', 80, 9090, 'TCP'], ['dns', 53, 53, 'UDP']]);
  // The http port kept its node port through the patch.
  t.is(now.spec.ports[0].nodePort, nodePorts[0]);
  t.is(now.spec.clusterIP, first.spec.clusterIP);
  t.is(now.metadata.uid, first.metadata.uid);

  // Changing the class of a LoadBalancer is refused like the real server does.
  await writeFile(file, manifest(9090, '', 'b').replace('edgelb.io/dsr', 'other.io/lb'));
  a = await kubectl(['apply', '-f', file]);
  t.not(a.code, 0);
  t.regex(a.stderr, /spec\.loadBalancerClass: Invalid value: "other\.io\/lb": may not change once set/);
});

test('get svc -w prints the row again when status changes', async (t) => {
  const { api, dir, kubectl } = await setup(t);
  t.is((await kubectl(['create', 'service', 'loadbalancer', 'web', '--tcp=80:8080'])).code, 0);
  const child = spawn(KUBECTL, ['--kubeconfig', api.kubeconfigPath, '--cache-dir', join(dir, 'watch-cache'), 'get', 'svc', 'web', '-w'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const killTimer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  t.teardown(() => {
    clearTimeout(killTimer);
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const sawLine = (re: RegExp): Promise<boolean> => new Promise((done) => {
    const check = (): void => {
      if (re.test(out)) {
        child.stdout.off('data', onData);
        clearTimeout(timer);
        done(true);
      }
    };
    const onData = (d: Buffer): void => {
      out += d.toString();
      check();
    };
    const timer = setTimeout(() => {
      child.stdout.off('data', onData);
      done(false);
    }, 10_000);
    child.stdout.on('data', onData);
    check();
  });
  t.true(await sawLine(/web\s+LoadBalancer\s+\S+\s+<pending>/), `initial row; stderr: ${err}`);
  // Wait for the watch to be open before changing anything.
  const end = Date.now() + 5000;
  while (api.openWatches === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  t.is(api.openWatches, 1);
  api.mergePatch('services', 'default', 'web', { status: { loadBalancer: { ingress: [{ ip: '192.0.2.77' }] } } }, 'status');
  t.true(await sawLine(/web\s+LoadBalancer\s+\S+\s+192\.0\.2\.77\s+80:\d+\/TCP/), `updated row; got: ${out}`);
  t.is(out.trim().split('\n').filter((l) => l.startsWith('NAME')).length, 1, 'header printed once');
  child.kill('SIGTERM');
});

test('get endpointslices, leases -A, nodes, events; patch and label; errors', async (t) => {
  const { api, kubectl } = await setup(t);
  api.create({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { name: 'web-abcde', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
    addressType: 'IPv4',
    endpoints: [1, 2, 3, 4].map((i) => ({ addresses: [`10.0.0.${i}`], conditions: { ready: true } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  });
  api.create({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'edgelb-ipam', namespace: 'kube-system' }, spec: { holderIdentity: 'edge-a', leaseDurationSeconds: 15 } });
  api.create({
    apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1', labels: { 'node-role.kubernetes.io/worker': '' } },
    status: { conditions: [{ type: 'Ready', status: 'True' }], addresses: [{ type: 'InternalIP', address: '172.16.0.11' }], nodeInfo: { kubeletVersion: 'v1.30.0' } },
  });
  api.create({
    apiVersion: 'events.k8s.io/v1', kind: 'Event', metadata: { name: 'web.1', namespace: 'default' },
    eventTime: new Date().toISOString(), reportingController: 'edgelb.io/agent', reportingInstance: 'edge-a', action: 'Allocate',
    reason: 'IPAllocated', note: 'assigned 192.0.2.10', type: 'Normal', regarding: { kind: 'Service', namespace: 'default', name: 'web' },
  });

  const es = await kubectl(['get', 'endpointslices']);
  t.is(es.code, 0, es.stderr);
  t.deepEqual(rows(es.stdout)[0], ['NAME', 'ADDRESSTYPE', 'PORTS', 'ENDPOINTS', 'AGE']);
  t.deepEqual(rows(es.stdout)[1]!.slice(0, 4), ['web-abcde', 'IPv4', '8080', '10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...']);

  const l = await kubectl(['get', 'leases', '-A']);
  t.is(l.code, 0, l.stderr);
  t.deepEqual(rows(l.stdout)[0], ['NAMESPACE', 'NAME', 'HOLDER', 'AGE']);
  t.deepEqual(rows(l.stdout)[1]!.slice(0, 3), ['kube-system', 'edgelb-ipam', 'edge-a']);

  const n = await kubectl(['get', 'nodes', '-o', 'wide']);
  t.is(n.code, 0, n.stderr);
  t.deepEqual(rows(n.stdout)[1]!.slice(0, 3), ['node-1', 'Ready', 'worker']);
  t.true(rows(n.stdout)[1]!.includes('172.16.0.11'));

  // The events.k8s.io Event is visible through core/v1 too.
  const ev = await kubectl(['get', 'events']);
  t.is(ev.code, 0, ev.stderr);
  t.regex(ev.stdout, /Normal\s+IPAllocated\s+service\/web\s+assigned 192\.0\.2\.10/);

  t.is((await kubectl(['create', 'service', 'loadbalancer', 'web', '--tcp=80:8080'])).code, 0);
  // A class cannot be added to an existing LoadBalancer (as in Kubernetes).
  const cls = await kubectl(['patch', 'svc', 'web', '--type', 'merge', '-p', '{"spec":{"loadBalancerClass":"edgelb.io/dsr"}}']);
  t.not(cls.code, 0);
  t.regex(cls.stderr, /may not change once set/);
  const p = await kubectl(['patch', 'svc', 'web', '--type', 'merge', '-p', '{"spec":{"externalTrafficPolicy":"Local"}}']);
  t.is(p.code, 0, p.stderr);
  t.true(api.get('services', 'default', 'web')!.spec.healthCheckNodePort >= 30000, 'health-check node port allocated');
  const sp = await kubectl(['patch', 'svc', 'web', '-p', '{"spec":{"ports":[{"port":80,"targetPort":9000}]}}']);
  t.is(sp.code, 0, sp.stderr);
  t.is(api.get('services', 'default', 'web')!.spec.ports[0].targetPort, 9000);
  const lab = await kubectl(['label', 'svc', 'web', 'edgelb.io/pool=blue']);
  t.is(lab.code, 0, lab.stderr);
  const sel = await kubectl(['get', 'svc', '-l', 'edgelb.io/pool in (blue)', '--field-selector', 'metadata.name=web', '-o', 'name']);
  t.is(sel.stdout.trim(), 'service/web');

  const dup = await kubectl(['create', 'service', 'loadbalancer', 'web', '--tcp=80:8080']);
  t.not(dup.code, 0);
  t.regex(dup.stderr, /services "web" already exists/);
  const badSel = await kubectl(['get', 'svc', '--field-selector', 'spec.nope=x']);
  t.not(badSel.code, 0);
  t.regex(badSel.stderr, /field label not supported: spec\.nope/);
});
