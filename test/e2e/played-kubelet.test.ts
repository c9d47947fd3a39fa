// The lab's played kubelet (src/lab/kube/kubelet.ts) against the real
// kube-apiserver: a dual-stack node keeps reporting its status (two
// InternalIP addresses: a strategic merge patch keyed by address type
// rejects the second report as a duplicate), and one failing duty (node
// status, Lease) never stops the pods' status from being kept — a pod added
// later must still become Running and Ready.
import test from 'ava';
import { TestCluster } from '../lib/kube.js';
import { PlayedKubelet, type KubeletNode, type PodFacts } from '../../src/lab/kube/kubelet.js';
import type { KubeHttp } from '../../src/lab/kube/http.js';

let cluster: TestCluster | undefined;

test.before(async () => {
  cluster = await TestCluster.start({ tag: 'played-kubelet', controllerManager: false });
  // No controller manager: the ServiceAccount admission needs the namespace's default account.
  await cluster.admin.ok('POST', '/api/v1/namespaces/default/serviceaccounts', { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'default' } });
});

test.after.always(async () => {
  await cluster?.close();
});

const node: KubeletNode = { name: 'lab-node1', address: '10.0.0.21', address6: 'fd00::21', podCidr: '10.244.1.0/24' };

function pod(name: string): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: 'default' }, spec: { nodeName: node.name, containers: [{ name: 'echo', image: 'edgelb.local/lab-echo' }] } };
}

interface PodJson {
  status?: { phase?: string; podIPs?: { ip: string }[]; conditions?: { type: string; status: string }[] };
}

async function podStatus(api: KubeHttp, name: string): Promise<PodJson['status']> {
  return (await api.ok<PodJson>('GET', `/api/v1/namespaces/default/pods/${name}`)).status;
}

const facts = (name: string): PodFacts | undefined =>
  name.startsWith('echo-') ? { ip: `10.244.1.${10 + Number(name.slice(5))}`, ip6: `fd44:1::${10 + Number(name.slice(5))}`, running: true, startedAt: '2026-01-01T00:00:00Z' } : undefined;

test.serial('a dual-stack node: every status report is accepted (both InternalIPs kept), and a pod added after the first report becomes Running and Ready with both addresses', async (t) => {
  const api = cluster!.admin;
  const errors: string[] = [];
  // Report the node on every tick (a real one every minute): the second report is where it broke.
  const k = new PlayedKubelet(node, api, { facts, stop: async () => undefined, log: (l) => errors.push(l) }, { renewMs: 0, nodeStatusMs: 0 });
  await k.tick();
  await k.tick();
  await k.tick();
  const n = await api.ok<{ status: { addresses: { type: string; address: string }[] } }>('GET', `/api/v1/nodes/${node.name}`);
  t.deepEqual(n.status.addresses, [{ type: 'InternalIP', address: '10.0.0.21' }, { type: 'InternalIP', address: 'fd00::21' }, { type: 'Hostname', address: node.name }]);
  await api.ok('POST', '/api/v1/namespaces/default/pods', pod('echo-1'));
  await k.tick(); // Running with its addresses
  await k.tick(); // then Ready
  const st = await podStatus(api, 'echo-1');
  t.is(st?.phase, 'Running');
  t.deepEqual(st?.podIPs, [{ ip: '10.244.1.11' }, { ip: 'fd44:1::11' }]);
  t.is(st?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
  t.deepEqual(errors, []);
});

test.serial('a failing node-status report or Lease renewal does not stop the pods\' status: the tick reports what failed and the pod still becomes Ready', async (t) => {
  const admin = cluster!.admin;
  // The same server, but every node-status and Lease call answers 503.
  const failing = (path: string): boolean => path.includes('/status') && path.includes('/nodes/') || path.includes('/leases');
  const api = {
    request: (method: string, path: string, body?: unknown, contentType?: string) =>
      failing(path) ? Promise.resolve({ code: 503, body: { message: 'injected' } }) : admin.request(method, path, body, contentType),
    ok: <T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> =>
      failing(path) ? Promise.reject(new Error(`${method} ${path}: HTTP 503 injected`)) : admin.ok<T>(method, path, body, contentType),
  };
  const second: KubeletNode = { ...node, name: 'lab-node2' };
  await admin.ok('POST', '/api/v1/nodes', { apiVersion: 'v1', kind: 'Node', metadata: { name: second.name } });
  const k = new PlayedKubelet(second, api, { facts, stop: async () => undefined, log: () => undefined }, { renewMs: 0, nodeStatusMs: 0 });
  await admin.ok('POST', '/api/v1/namespaces/default/pods', { ...pod('echo-2'), spec: { nodeName: second.name, containers: [{ name: 'echo', image: 'edgelb.local/lab-echo' }] } });
  const e1 = await t.throwsAsync(k.tick());
  t.regex(e1!.message, /nodes\/lab-node2\/status: HTTP 503/);
  t.regex(e1!.message, /lease/i);
  await t.throwsAsync(k.tick());
  const st = await podStatus(admin, 'echo-2');
  t.is(st?.phase, 'Running');
  t.is(st?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
});
