// The operator's view with the real kubectl of the pinned release against
// the real control plane: `kubectl create service loadbalancer` (no class:
// the edge takes class-less Services with kubernetes.defaultClass), a Ready
// pod behind it, EXTERNAL-IP in `kubectl get svc -o wide`, our Events in
// `kubectl describe svc`, the Advertised condition in the object.
import test from 'ava';
import { existsSync } from 'node:fs';
import { KubernetesController } from '../../src/k8s/controller.js';
import { silentLogger } from '../../src/log/logger.js';
import { TestCluster } from '../lib/kube.js';
import { KUBECTL } from '../../src/lab/paths.js';
import { EDGE_SERVICE_ACCOUNT, EDGELB_NAMESPACE } from '../../src/lab/kube/rbac.js';
import { node, RecordingSink, testConfig, waitFor } from './helpers.js';

let cluster: TestCluster;

test.before(async () => {
  cluster = await TestCluster.start({ tag: 'kubectl' });
});

test.after.always(async () => {
  await cluster?.close();
});

test('kubectl create service loadbalancer → EXTERNAL-IP in get -o wide, Events in describe, the Advertised condition', async (t) => {
  t.true(existsSync(KUBECTL), `kubectl at ${KUBECTL}`);
  const version = await cluster.kubectl(['version', '-o', 'json']);
  const v = JSON.parse(version) as { clientVersion: { gitVersion: string }; serverVersion: { gitVersion: string } };
  t.is(v.clientVersion.gitVersion, v.serverVersion.gitVersion, 'kubectl and the API server are one release');
  t.regex(v.serverVersion.gitVersion, /^v1\.(3[4-9]|[4-9]\d)\.\d+$/);

  await cluster.create(node('n1', '10.0.0.1'));
  const base = testConfig([{ cidrs: ['198.51.100.0/29'] }]);
  const config = { ...base, kubernetes: { ...base.kubernetes, defaultClass: true, leaseName: 'edgelb-kubectl', leaseNamespace: EDGELB_NAMESPACE } };
  const sink = new RecordingSink();
  const c = new KubernetesController({ config, kubeconfigPath: await cluster.kubeconfigFor(EDGE_SERVICE_ACCOUNT), nodeName: 'edge-a', logger: silentLogger(), sink });
  t.teardown(() => c.stop());
  await c.start();

  const created = await cluster.kubectl(['create', 'service', 'loadbalancer', 'web', '--tcp=80:8080']);
  t.regex(created, /service\/web created/);
  await cluster.readyPod('default', 'web-1', { app: 'web' }, '10.1.0.1', 'n1');
  await waitFor('VIP programmed', () => sink.vipAddresses().includes('198.51.100.1'), 20_000);
  let line = '';
  await waitFor('EXTERNAL-IP shown', async () => {
    line = await cluster.kubectl(['get', 'svc', 'web', '-o', 'wide', '--no-headers']);
    return line.split(/\s+/)[3] === '198.51.100.1';
  }, 20_000);
  t.regex(line, /^web\s+LoadBalancer\s+\S+\s+198\.51\.100\.1\s+80:\d+\/TCP\s+\S+\s+app=web/);

  let described = '';
  await waitFor('our Event in describe', async () => {
    described = await cluster.kubectl(['describe', 'svc', 'web']);
    return /IPAllocated/.test(described);
  }, 20_000);
  t.regex(described, /LoadBalancer Ingress:\s+198\.51\.100\.1/);
  t.regex(described, /Normal\s+IPAllocated\s+.*edgelb/);
  const cond = await cluster.kubectl(['get', 'svc', 'web', '-o', 'jsonpath={.status.conditions[?(@.type=="edgelb.io/Advertised")].status} {.status.conditions[?(@.type=="edgelb.io/Advertised")].message}']);
  t.regex(cond, /^True 198\.51\.100\.1 advertised by 1 edge\(s\): edge-a/);
});
