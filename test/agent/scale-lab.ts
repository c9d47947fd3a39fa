// The set-up the agent's scale tests share: an AgentLab whose edge serves a
// /20 pool, and N selector-less LoadBalancer Services with one hand-made
// EndpointSlice each (a managed-by of our own), created concurrently with a
// bounded pool. The cluster is the real kube-apiserver + etcd without a
// kubelet or controller manager (no Pods; its garbage collector and
// EndpointSlice controller would only spend CPU on the objects), and the
// Services ask for no node ports (thousands would exhaust 30000-32767).
import test from 'ava';
import { BpfMap } from '../../src/datapath/loader.js';
import { kernelRoutes } from '../lib/netns.js';
import { pool } from '../lib/kube.js';
import { AgentLab } from './harness.js';

/** The VIP pool every scale lab's edge allocates from. */
const POOL = '198.19.0.0/20';

export function scaleLab(tag: string): AgentLab {
  return new AgentLab({
    tag,
    cluster: { controllerManager: false },
    config: ({ NET, PIN, dir, controlSock }) => `node: { name: edge-${tag}, routerId: ${NET}.2, asn: 64512, uplink: up0 }
bgp:
  gobgp: { socket: ${dir}/gobgp.sock, manage: true }
  bfdd: { runDir: ${dir}/bfdd }
  peers: [{ address: ${NET}.1, asn: 64500, holdTime: 9, keepalive: 3 }]
pools: [{ name: big, cidrs: [${POOL}] }]
datapath: { pinPath: ${PIN}, xdp: native }
kubernetes: { kubeconfig: ${dir}/kubeconfig, leaseNamespace: edgelb-system, leaseDurationSeconds: 5 }
control: { socket: ${controlSock} }
metrics: { listen: "" }
`,
  });
}

/** Opens the lab and creates Services s0…s{n-1} (port 80 → 8080) with one ready endpoint each; returns the milliseconds it took. */
export async function openWithServices(lab: AgentLab, n: number): Promise<number> {
  await lab.open();
  await lab.api.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' }, status: { addresses: [{ type: 'InternalIP', address: `${lab.NET}.10` }] } });
  const t0 = Date.now();
  await pool(n, 8, async (i) => {
    await lab.api.create({
      apiVersion: 'v1', kind: 'Service', metadata: { name: `s${i}`, namespace: 'default' },
      spec: { type: 'LoadBalancer', loadBalancerClass: 'edgelb.io/dsr', allocateLoadBalancerNodePorts: false, ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }] },
    });
    await lab.api.create({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: `s${i}-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': `s${i}`, 'endpointslice.kubernetes.io/managed-by': 'edgelb-test' } },
      addressType: 'IPv4', ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [{ addresses: [`10.244.${i >> 8}.${i & 255}`], nodeName: 'node-1', conditions: { ready: true } }],
    });
  });
  return Date.now() - t0;
}

/** VIP routes the router has installed (/32s from the pool; ip -j shows host routes without the length). */
export async function vipRoutes(lab: AgentLab): Promise<Set<string>> {
  return new Set((await kernelRoutes(lab.R)).map((r) => r.dst.replace(/\/32$/, '')).filter((d) => d.startsWith('198.19.')));
}

/** Frontends in the pinned edge_services map (VIP markers have port 0): key (hex) → service id. */
export function pinnedFrontends(lab: AgentLab): Map<string, number> {
  const m = BpfMap.openPinned(`${lab.PIN}/edge_services`);
  try {
    const out = new Map<string, number>();
    for (const [k, v] of m.entries()) if (k.readUInt16BE(4) !== 0) out.set(k.toString('hex'), v.readUInt32LE(0));
    return out;
  } finally {
    m.close();
  }
}

/**
 * A scale lab for this test file: opened with `n` Services before its tests,
 * closed after them, the agent's log printed under a failed test.
 */
export function scaleLabPerFile(tag: string, n: number): { lab: AgentLab; setupMs: () => number } {
  const lab = scaleLab(tag);
  let ms = 0;
  test.before(async () => {
    ms = await openWithServices(lab, n);
  });
  test.after.always(async () => {
    await lab.close();
  });
  test.afterEach.always((t) => {
    if (!t.passed) console.error(`--- agent log (last 4000 chars) ---\n${lab.log.slice(-4000)}`);
  });
  return { lab, setupMs: () => ms };
}
