// The operator's view: a Service applied with the real kubectl (Debian's
// 1.20 client) gets its EXTERNAL-IP from the controller.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { KubernetesController } from '../../src/k8s/controller.js';
import { silentLogger } from '../../src/log/logger.js';
import { TestApiServer } from '../apiserver/server.js';
import { RecordingSink, testConfig, waitFor } from './helpers.js';

const KUBECTL = process.env['KUBECTL'] ?? resolve('.tools/kubectl/usr/bin/kubectl');

const manifest = `apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
  annotations:
    edgelb.io/mode: dsr
spec:
  type: LoadBalancer
  loadBalancerClass: edgelb.io/dsr
  selector: { app: web }
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: { kubernetes.io/service-name: web }
addressType: IPv4
ports: [{ name: http, port: 8080, protocol: TCP }]
endpoints:
- addresses: [10.1.0.1]
  conditions: { ready: true }
`;

test('kubectl apply → EXTERNAL-IP in kubectl get svc -o wide', async (t) => {
  t.true(existsSync(KUBECTL), `kubectl at ${KUBECTL}`);
  const api = await TestApiServer.start();
  const dir = await mkdtemp(join(tmpdir(), 'edgelb-k8s-kubectl-'));
  const sink = new RecordingSink();
  const c = new KubernetesController({ config: testConfig([{ cidrs: ['198.51.100.0/29'] }]), kubeconfigPath: api.kubeconfigPath, nodeName: 'edge-a', logger: silentLogger(), sink });
  t.teardown(async () => {
    await c.stop();
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });
  const kubectl = (args: string[], stdin?: string) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
      const child = execFile(KUBECTL, ['--kubeconfig', api.kubeconfigPath, '--cache-dir', join(dir, 'cache'), ...args], { timeout: 20_000, env: { ...process.env, HOME: dir } }, (err, stdout, stderr) =>
        done({ code: err ? 1 : 0, stdout, stderr }),
      );
      if (stdin !== undefined) child.stdin?.end(stdin);
    });
  await c.start();
  const applied = await kubectl(['apply', '-f', '-'], manifest);
  t.is(applied.code, 0, applied.stderr);
  await waitFor('VIP programmed', () => sink.vipAddresses().includes('198.51.100.1'));
  let line = '';
  await waitFor('EXTERNAL-IP shown', async () => {
    const r = await kubectl(['get', 'svc', 'web', '-o', 'wide', '--no-headers']);
    line = r.stdout;
    return r.code === 0 && line.split(/\s+/)[3] === '198.51.100.1';
  });
  t.regex(line, /^web\s+LoadBalancer\s+\S+\s+198\.51\.100\.1\s+80:\d+\/TCP/);
});
