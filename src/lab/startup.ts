// Brings a lab up: the network, the router, the API server, the pods, the
// nodes' datapath and the edge agents, in that order. Every step records
// what it made in the state file first, so `down` (or a test's teardown)
// removes exactly that, even after a failure half-way.
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { FrrRouter, type FrrNeighbor } from './frr.js';
import { ensureBpffs } from './bpffs.js';
import { allPods, checkPrefix, newPrefix, NODE_METRICS_PORT, planLab } from './topology.js';
import { DEFAULT_OPTIONS, listLabs, STATE_DIR, type LabOptions, type LabState } from './state.js';
import { spawnInNs, waitForLog, type LabProcess } from './procs.js';
import { startControlPlane } from './kube/control-plane.js';
import { clientCert } from './kube/pki.js';
import { podObject, toYaml } from './manifests.js';
import { edgeConfig } from './agent-config.js';
import { userIds } from '../bgp/daemon-files.js';
import { buildNetwork, echoArgv } from './network.js';
import { prepareOciNode } from './oci-node.js';
import { NODE_IMAGE_LAYOUT, nodeImageTag } from '../image/oci.js';
import { Lab, oneLine, type Say, type UpOptions } from './handle.js';
import { labDown } from './teardown.js';
import { dist, nodeBin, root } from './paths.js';
import { APPLIANCE_EDGE, applianceBgpPassword, bootApplianceEdge } from './appliance.js';

/** Builds a lab. On failure the partial lab is torn down and the error rethrown (keepOnFailure keeps it for inspection). */
export async function labUp(opts: UpOptions & { keepOnFailure?: boolean } = {}): Promise<Lab> {
  const say: Say = opts.say ?? (() => undefined);
  const prefix = checkPrefix(opts.prefix ?? newPrefix());
  const options: LabOptions = { ...DEFAULT_OPTIONS, ...Object.fromEntries(Object.entries(opts).filter(([k, v]) => k in DEFAULT_OPTIONS && v !== undefined)) };
  if (listLabs().includes(prefix)) throw new Error(`lab ${prefix} already exists (npm run lab -- down ${prefix})`);
  const plan = planLab(prefix);
  const dir = join(STATE_DIR, prefix.slice(0, -1));
  ensureBpffs();
  const state: LabState = {
    prefix,
    createdAt: new Date().toISOString(),
    dir,
    plan,
    options,
    namespaces: [],
    processes: [],
    bpffsDir: `/sys/fs/bpf/edgelb-lab-${prefix.slice(4, 8)}`,
    frrDir: join(dir, 'router'),
    kubeconfig: join(dir, 'kubeconfig'),
    agents: [],
    nodes: [],
    phase: 'building',
    problems: [],
    owner: { pid: process.pid, kind: options.ownerKind },
    workarounds: [],
  };
  const lab = new Lab(state);
  mkdirSync(dir, { recursive: true });
  // FRR drops to user frr and needs to reach its directory below this one.
  chmodSync(STATE_DIR, 0o755);
  chmodSync(dir, 0o755);
  lab.save();
  const t0 = Date.now();
  const step = async (what: string, fn: () => Promise<void>): Promise<void> => {
    const t = Date.now();
    await fn();
    say(`  ${what} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  };
  try {
    await step('namespaces, veths, bridges, addresses, routes', () =>
      buildNetwork(
        plan,
        (ns) => {
          state.namespaces.push(ns);
          lab.save();
        },
        options.ipv6,
      ),
    );
    await step('router: FRR zebra + bgpd + bfdd', () => startRouter(lab));
    await step('Kubernetes: etcd, kube-apiserver, kube-controller-manager, kubelets', () => startKubernetes(lab, say));
    await step('pods: HTTP + UDP echo servers', () => startPods(lab));
    await step('nodes: edgelb node run (tc programs, this node\'s frontends from the API server)', () => startNodes(lab));
    if (options.agents) await step('edges: edgelb agents (gobgpd, bfdd, XDP)', () => startAgents(lab, say));
    state.phase = state.problems.length ? 'partial' : 'up';
    lab.save();
    say(`lab ${prefix} ${state.phase} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return lab;
  } catch (e) {
    state.phase = 'partial';
    state.problems.push((e as Error).message);
    lab.save();
    if (!opts.keepOnFailure) await labDown(prefix).catch(() => undefined);
    throw e;
  }
}


async function startRouter(lab: Lab): Promise<void> {
  const p = lab.plan;
  const bfd = lab.state.options.bfd ? { ...lab.state.options.bfdTimers } : undefined;
  // A dual-stack lab: each edge has an IPv6 session beside its IPv4 one (IPv6 VIPs travel over it).
  const sessions = p.edges.flatMap((e) => (lab.state.options.ipv6 ? [{ e, address: e.address }, { e, address: e.address6 }] : [{ e, address: e.address }]));
  const neighbors: FrrNeighbor[] = sessions.map(({ e, address }) => ({
    address, asn: e.asn, holdTime: 9, keepalive: 3, ...(bfd ? { bfd } : {}),
    // The appliance gets its BGP password as a secret on its config stick.
    ...(lab.state.options.appliance && e.name === APPLIANCE_EDGE ? { password: applianceBgpPassword(lab.state.dir) } : {}),
  }));
  const r = new FrrRouter(p.router.ns, lab.state.frrDir, { hostname: 'router', asn: p.router.asn, routerId: p.router.address, neighbors });
  await r.start();
  const ids = userIds('frr');
  if (ids) chownSync(lab.state.frrDir, ids.uid, ids.gid);
  for (const d of ['zebra', 'bgpd', 'bfdd'] as const) {
    const pid = r.pidOf(d);
    if (pid) lab.state.processes.push({ name: `frr-${d}`, ns: p.router.ns, pid, argv: [`/usr/lib/frr/${d}`], log: join(lab.state.frrDir, `${d}.log`) });
  }
  lab.save();
}

/**
 * etcd, kube-apiserver and kube-controller-manager in the mgmt namespace;
 * edgelb's Namespace, ServiceAccounts and RBAC from deploy/; then the
 * lab's kubelets, which register the Nodes and keep their Leases.
 */
async function startKubernetes(lab: Lab, say: Say): Promise<void> {
  const p = lab.plan;
  const record = (proc: LabProcess): void => {
    lab.state.processes.push(proc);
    lab.save();
  };
  const cp = await startControlPlane({ dir: join(lab.state.dir, 'kube'), ns: p.mgmt.ns, host: p.mgmt.address, nodeLifecycle: true, dualStack: lab.state.options.ipv6, onProcess: record, say });
  lab.state.controlPlane = cp;
  lab.state.kubeconfig = cp.adminKubeconfig;
  lab.save();
  await lab.kubectl(['apply', '-f', join(root, 'deploy/rbac.yaml')]);
  for (const n of p.nodes) await clientCert(cp.pki, `node-${n.name}`, `system:node:${n.name}`, ['system:nodes']);
  const proc = spawnInNs('kubelets', p.mgmt.ns, [nodeBin, dist('src/lab/kubelet-main.js'), '--prefix', lab.prefix], join(lab.state.dir, 'kubelets.log'));
  record(proc);
  await waitForLog(proc, /KUBELETS READY/, 30000);
}

async function startPods(lab: Lab): Promise<void> {
  const p = lab.plan;
  const procs = allPods(p).map((pod) => {
    const proc = spawnInNs(`pod-${pod.name}`, pod.ns, echoArgv(pod.name, p, lab.state.options.ipv6), join(lab.state.dir, `${pod.name}.log`));
    lab.state.processes.push(proc);
    return proc;
  });
  lab.save();
  await Promise.all(procs.map((x) => waitForLog(x, /ECHO READY/, 15000)));
  await lab.kubectl(['apply', '-f', '-'], { input: toYaml(p.nodes.flatMap((n) => n.pods.map((pod) => podObject(pod, n.name, p)))) });
}

/** The product's node agent (`edgelb node run`: tc programs, local frontends from the API server, probe responder) on each node, with the edgelb-node ServiceAccount's token. */
async function startNodes(lab: Lab): Promise<void> {
  const p = lab.plan;
  const procs = [];
  for (const n of p.nodes) {
    const pinDir = join(lab.state.bpffsDir, n.name);
    lab.state.nodes.push({ node: n.name, pinDir, attached: false, detail: 'edgelb node run starting' });
    const kubeconfig = await lab.kubeconfigFor(n.name);
    const args = (kc: string): string[] => ['node', 'run', '--interface', n.ifname, '--node-name', n.name, '--node-ip', lab.state.options.ipv6 ? `${n.address},${n.address6}` : n.address, '--edge-sources', p.edges.flatMap((e) => (lab.state.options.ipv6 ? [e.address, e.address6] : [e.address])).join(','), '--kubeconfig', kc, '--pin-path', pinDir, '--default-class', '--metrics-listen', `127.0.0.1:${NODE_METRICS_PORT}`];
    const log = join(lab.state.dir, `node-agent-${n.name}.log`);
    let proc: LabProcess;
    if (lab.state.options.ociNodes.includes(n.name)) {
      // The DaemonSet's image under runc, in the node's namespace.
      const argv = await prepareOciNode({ layout: NODE_IMAGE_LAYOUT, tag: nodeImageTag(), bundle: join(lab.state.dir, `oci-${n.name}`), netnsPath: `/run/netns/${n.ns}`, kubeconfig, args: args('/etc/edgelb/kubeconfig') });
      proc = spawnInNs(`node-agent-${n.name}`, '', argv, log);
      lab.state.nodes.at(-1)!.detail = 'edgelb node run (OCI image, runc) starting';
    } else {
      proc = spawnInNs(`node-agent-${n.name}`, n.ns, [nodeBin, dist('src/cli/main.js'), ...args(kubeconfig)], log);
    }
    lab.state.processes.push(proc);
    procs.push({ n, proc });
  }
  lab.save();
  await Promise.all(
    procs.map(async ({ n, proc }) => {
      await waitForLog(proc, /EDGELB NODE READY/, 30000);
      const rec = lab.state.nodes.find((x) => x.node === n.name)!;
      rec.attached = true;
      rec.detail = `edgelb node run (pid ${proc.pid}${lab.state.options.ociNodes.includes(n.name) ? ', runc, OCI image' : ''}) on ${n.ifname}`;
    }),
  );
  lab.save();
}

async function startAgents(lab: Lab, say: Say): Promise<void> {
  const p = lab.plan;
  const vmEdge = lab.state.options.appliance ? p.edges.find((e) => e.name === APPLIANCE_EDGE) : undefined;
  const vm = vmEdge ? lab.kubeconfigFor(vmEdge.name).then((kc) => bootApplianceEdge(lab, vmEdge, kc, say)) : null;
  const agentEdges = p.edges.filter((x) => x !== vmEdge);
  for (const e of agentEdges) {
    const edir = join(lab.state.dir, e.name);
    mkdirSync(edir, { recursive: true });
    const cfg = edgeConfig(p, e, lab.state.options, { dir: edir, pinPath: join(lab.state.bpffsDir, e.name), kubeconfig: await lab.kubeconfigFor(e.name) });
    const file = join(edir, 'edgelb.yaml');
    writeFileSync(file, `# edgelb config of lab edge ${e.name} (written by npm run lab)\n${stringify(cfg)}`);
    lab.state.agents.push({ edge: e.name, config: file, socket: (cfg.control as { socket: string }).socket, log: join(edir, 'agent.log'), state: 'starting', detail: '' });
  }
  lab.save();
  const results = await Promise.allSettled([...agentEdges.map((e) => lab.startAgent(e.name)), ...(vm ? [vm] : [])]);
  results.forEach((r, i) => {
    if (r.status === 'rejected') {
      const msg = `${i < agentEdges.length ? `agent on ${agentEdges[i]!.name}` : `appliance ${APPLIANCE_EDGE}`} not ready: ${oneLine((r.reason as Error).message)}`;
      lab.state.problems.push(msg);
      say(`  ! ${msg.split('\n')[0]}`);
    }
  });
  lab.save();
}

