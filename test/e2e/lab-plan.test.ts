// The lab's pure parts (no namespaces): names, addresses, generated agent
// config (checked by the real config loader), manifests, echo format.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { allNamespaces, allPods, checkPrefix, newPrefix, planLab } from '../../src/lab/topology.js';
import { edgeConfig } from '../../src/lab/agent-config.js';
import { DEFAULT_OPTIONS } from '../../src/lab/state.js';
import { loadConfigFile } from '../../src/config/load.js';
import { memberLabel, podObject, POD_LABEL, serviceObject } from '../../src/lab/manifests.js';
import { podStatusFor, PRESTOP_ANNOTATION } from '../../src/lab/kube/kubelet.js';
import { echoLine, parseEcho } from '../../src/lab/echo.js';
import { oneLine } from '../../src/lab/lab.js';

test('prefixes: fresh ones are valid, malformed ones are refused with the rule', (t) => {
  for (let i = 0; i < 20; i++) t.notThrows(() => checkPrefix(newPrefix()));
  for (const bad of ['elb-12-', 'elb-12345-', 'ELB-abcd-', 'elb-abcd', 'x-abcd-', 'elb-zzzz-']) {
    t.throws(() => checkPrefix(bad), { message: /must look like elb-1a2b-/ }, bad);
  }
});

test('plan: every namespace is unique, prefixed and short enough; every interface fits 15 characters', (t) => {
  const p = planLab('elb-abcd-');
  const ns = allNamespaces(p);
  t.is(new Set(ns).size, ns.length);
  t.true(ns.every((n) => n.startsWith('elb-abcd-') && n.length <= 30));
  const ifs = [p.client.ifname, p.router.clientIf, p.router.fabricIf, p.router.fabricPort, ...p.edges.flatMap((e) => [e.uplink, e.fabricPort, e.mgmtIf, e.mgmtPort]), ...p.nodes.flatMap((n) => [n.ifname, n.fabricPort, n.bridge, n.mgmtIf, n.mgmtPort, ...n.pods.map((x) => x.hostIf)])];
  t.true(ifs.every((i) => i.length <= 15), ifs.join(' '));
  const addrs = [p.router.address, ...p.edges.map((e) => e.address), ...p.nodes.map((n) => n.address), ...p.edges.map((e) => e.mgmtAddress), ...p.nodes.map((n) => n.mgmtAddress), p.mgmt.address];
  t.is(new Set(addrs).size, addrs.length, 'no address used twice');
  t.is(allPods(p).length, 4);
  t.throws(() => planLab('elb-abcd-', { edges: 0 }), { message: /1-8 edges/ });
});

test('the generated edge config passes the real config loader', (t) => {
  const p = planLab('elb-abcd-');
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-labcfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const e of p.edges) {
    const file = join(dir, `${e.name}.yaml`);
    writeFileSync(file, stringify(edgeConfig(p, e, { ...DEFAULT_OPTIONS, dispatch: 'auto', mode: 'hybrid' }, { dir, pinPath: '/sys/fs/bpf/x', kubeconfig: join(dir, 'kubeconfig') })));
    const c = loadConfigFile(file);
    t.is(c.node.name, e.name);
    t.is(c.bgp.peers[0]!.address, p.router.address);
    t.is(c.datapath.dispatch, 'auto');
    t.is(c.datapath.mode, 'hybrid');
    t.true(c.bgp.peers[0]!.bfd.enabled);
    t.deepEqual(c.pools[0]!.cidrs, [p.pool]);
  }
});

test('a dual-stack plan: every IPv6 address unique, pods inside their node\'s /64; its edge config (two sessions, two pools) passes the real config loader', (t) => {
  const p = planLab('elb-abcd-');
  const v6 = [p.client.address6, p.client.otherAddress6, p.router.address6, p.router.clientAddress6, ...p.edges.map((e) => e.address6), ...p.nodes.flatMap((n) => [n.address6, n.gateway6, ...n.pods.map((x) => x.ip6)])];
  t.is(new Set(v6).size, v6.length, 'no IPv6 address used twice');
  for (const n of p.nodes) for (const pod of n.pods) t.true(pod.ip6.startsWith(n.podCidr6.replace('/64', '')), `${pod.ip6} in ${n.podCidr6}`);
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-labcfg6-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const e = p.edges[0]!;
  const file = join(dir, 'edge.yaml');
  writeFileSync(file, stringify(edgeConfig(p, e, { ...DEFAULT_OPTIONS, ipv6: true }, { dir, pinPath: '/sys/fs/bpf/x', kubeconfig: join(dir, 'kubeconfig') })));
  const c = loadConfigFile(file);
  t.deepEqual(c.bgp.peers.map((x) => [x.address, x.localAddress]), [[p.router.address, e.address], [p.router.address6, e.address6]]);
  t.deepEqual(c.pools.map((x) => x.cidrs), [[p.pool], [p.pool6]]);
  const single = stringify(edgeConfig(p, e, DEFAULT_OPTIONS, { dir, pinPath: '/sys/fs/bpf/x', kubeconfig: join(dir, 'kubeconfig') }));
  t.false(single.includes('fd10::'), 'an IPv4 lab has no IPv6 session');
  const svc = serviceObject(p, { name: 'ds', ipFamilyPolicy: 'RequireDualStack', ipFamilies: ['IPv4', 'IPv6'] }) as { spec: Record<string, unknown> };
  t.is(svc.spec.ipFamilyPolicy, 'RequireDualStack');
  t.deepEqual(svc.spec.ipFamilies, ['IPv4', 'IPv6']);
  // The played kubelet reports both families of a dual-stack pod and node.
  const pod = { metadata: { name: 'p', namespace: 'default' }, spec: { nodeName: 'node1', containers: [{ name: 'echo' }] } };
  const node = { name: 'node1', address: '10.0.0.21', address6: 'fd10::21', podCidr: '10.244.1.0/24' };
  const st = podStatusFor(pod, node, { ip: '10.244.1.10', ip6: 'fd44:1::10', running: true, startedAt: '2026-01-01T00:00:00Z' });
  t.deepEqual(st.podIPs, [{ ip: '10.244.1.10' }, { ip: 'fd44:1::10' }]);
  t.deepEqual(st.hostIPs, [{ ip: '10.0.0.21' }, { ip: 'fd10::21' }]);
});

test('manifests: class, affinity, ranges; Pods bound to their node carry the membership label of each Service they back', (t) => {
  const p = planLab('elb-abcd-');
  const spec = { name: 's', sessionAffinity: { timeoutSeconds: 30 }, sourceRanges: ['1.2.3.0/24'], udpPort: null };
  const svc = serviceObject(p, spec) as { spec: Record<string, unknown> };
  t.is(svc.spec.loadBalancerClass, 'edgelb.io/dsr');
  t.is(svc.spec.sessionAffinity, 'ClientIP');
  t.deepEqual(svc.spec.loadBalancerSourceRanges, ['1.2.3.0/24']);
  t.is((svc.spec.ports as unknown[]).length, 1);
  t.deepEqual(svc.spec.selector, { [memberLabel('s')]: 'true' }, 'the Service selects its member pods');
  const pod = p.nodes[0]!.pods[0]!;
  const obj = podObject(pod, 'node1', p, ['s']) as { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: { nodeName: string; containers: { name: string }[] } };
  t.is(obj.spec.nodeName, 'node1', 'bound to its node: no scheduler runs');
  t.is(obj.metadata.labels[memberLabel('s')], 'true');
  t.is(obj.metadata.labels[POD_LABEL], pod.name);
  t.is(obj.metadata.annotations[PRESTOP_ANNOTATION], '1.5');
  t.deepEqual(obj.spec.containers.map((c) => c.name), ['echo']);
});

test('the played kubelet: Running with its address first, then Ready while the process runs, podIP from the plan, Pending for a pod the lab does not know; transition times kept', (t) => {
  const pod = { metadata: { name: 'p', namespace: 'default' }, spec: { nodeName: 'node1', containers: [{ name: 'echo' }] } };
  const node = { name: 'node1', address: '10.0.0.21', podCidr: '10.244.1.0/24' };
  const started = podStatusFor(pod, node, { ip: '10.244.1.10', running: true, startedAt: '2026-01-01T00:00:00Z' }, '2026-01-01T00:00:00Z');
  t.is(started.phase, 'Running');
  t.is(started.podIP, '10.244.1.10');
  t.is(started.conditions!.find((c) => c.type === 'Ready')!.status, 'False', 'first reported with its address, not ready yet (its endpoint is listed not ready first)');
  const up = podStatusFor({ ...pod, status: started }, node, { ip: '10.244.1.10', running: true, startedAt: '2026-01-01T00:00:00Z' }, '2026-01-01T00:00:01Z');
  t.is(up.phase, 'Running');
  t.is(up.podIP, '10.244.1.10');
  t.is(up.hostIP, '10.0.0.21');
  t.is(up.conditions!.find((c) => c.type === 'Ready')!.status, 'True');
  const later = podStatusFor({ ...pod, status: up }, node, { ip: '10.244.1.10', running: true, startedAt: '2026-01-01T00:00:00Z' }, '2026-01-01T00:05:00Z');
  t.is(later.conditions!.find((c) => c.type === 'Ready')!.lastTransitionTime, '2026-01-01T00:00:01Z', 'no transition, time kept');
  const down = podStatusFor({ ...pod, status: up }, node, { ip: '10.244.1.10', running: false, startedAt: '2026-01-01T00:00:00Z' }, '2026-01-01T00:06:00Z');
  t.is(down.conditions!.find((c) => c.type === 'Ready')!.status, 'False');
  t.is(down.conditions!.find((c) => c.type === 'Ready')!.lastTransitionTime, '2026-01-01T00:06:00Z');
  t.deepEqual(podStatusFor(pod, node, undefined), { phase: 'Pending', hostIP: '10.0.0.21', hostIPs: [{ ip: '10.0.0.21' }] });
});

test('echo answers round-trip; anything else is not an answer', (t) => {
  t.deepEqual(parseEcho(echoLine('echo-1a', '::ffff:172.16.0.10', 4242)), { pod: 'echo-1a', client: '172.16.0.10', port: 4242 });
  t.is(parseEcho('HTTP/1.1 502 Bad Gateway'), null);
  t.is(parseEcho(`${echoLine('p', '1.2.3.4', 1)}xxxx\n`)?.pod, 'p', 'padding after the first line is ignored');
  t.is(parseEcho(''), null);
});

test('oneLine keeps the first line and the last line of a quoted log', (t) => {
  t.is(oneLine('agent exited\nline a\n\nlast words\n'), 'agent exited … last words');
  t.is(oneLine('single'), 'single');
});
