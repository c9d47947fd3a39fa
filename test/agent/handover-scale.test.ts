// A SIGQUIT handover with 3 000 Services: the new agent computes the whole
// cluster in bounded rounds, and while it does, no VIP leaves the router and
// no frontend leaves the pinned maps.
//
// The cluster is the real kube-apiserver + etcd (test/lib/kube.ts) as the
// edgelb-edge ServiceAccount, without a kubelet or controller manager (no
// Pods; its garbage collector and EndpointSlice controller would only spend
// CPU on 6 000 objects): selector-less Services with hand-made EndpointSlices
// (a managed-by of our own), no node ports (3 000 Services would exhaust
// 30000-32767), created concurrently with a bounded pool so setup, cold
// start and handover fit in ava's 5-minute timeout on two cores.
import test from 'ava';
import { BpfMap } from '../../src/datapath/loader.js';
import { kernelRoutes, sleep } from '../lib/netns.js';
import { pool } from '../lib/kube.js';
import { AgentLab, until } from './harness.js';

const N = 3000;
let setupMs = 0;

const lab = new AgentLab({
  tag: 'h',
  cluster: { controllerManager: false },
  config: ({ NET, PIN, dir, controlSock }) => `node: { name: edge-h, routerId: ${NET}.2, asn: 64512, uplink: up0 }
bgp:
  gobgp: { socket: ${dir}/gobgp.sock, manage: true }
  bfdd: { runDir: ${dir}/bfdd }
  peers: [{ address: ${NET}.1, asn: 64500, holdTime: 9, keepalive: 3 }]
pools: [{ name: big, cidrs: [198.19.0.0/20] }]
datapath: { pinPath: ${PIN}, xdp: native }
kubernetes: { kubeconfig: ${dir}/kubeconfig, leaseNamespace: edgelb-system, leaseDurationSeconds: 5 }
control: { socket: ${controlSock} }
metrics: { listen: "" }
`,
});

test.before(async () => {
  await lab.open();
  await lab.api.create({ apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' }, status: { addresses: [{ type: 'InternalIP', address: `${lab.NET}.10` }] } });
  const t0 = Date.now();
  await pool(N, 8, async (i) => {
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
  setupMs = Date.now() - t0;
});

test.after.always(async () => {
  await lab.close();
});

test.afterEach.always((t) => {
  if (!t.passed) console.error(`--- agent log (last 4000 chars) ---\n${lab.log.slice(-4000)}`);
});

/** VIP routes the router has installed (all of them /32s from the pool). */
async function vipRoutes(): Promise<number> {
  return (await kernelRoutes(lab.R)).filter((r) => r.dst.startsWith('198.19.')).length;
}

/** Frontends in the pinned edge_services map (VIP markers have port 0), each with its service id. */
function pinnedFrontends(): Map<string, number> {
  const m = BpfMap.openPinned(`${lab.PIN}/edge_services`);
  try {
    const out = new Map<string, number>();
    for (const [k, v] of m.entries()) if (k.readUInt16BE(4) !== 0) out.set(k.toString('hex'), v.readUInt32LE(0));
    return out;
  } finally {
    m.close();
  }
}

test.serial(`SIGQUIT handover with ${N} Services: no VIP leaves the router, no frontend leaves the pinned maps`, async (t) => {
  const t0 = Date.now();
  await lab.startAgent();
  await until(async () => (await vipRoutes()) === N, 240_000, `${N} VIP routes at the router`, 500);
  await until(() => pinnedFrontends().size === N, 30_000, `${N} frontends in the pinned maps`, 500);
  const before = pinnedFrontends();
  t.log(`setup: ${N} Services and EndpointSlices created in ${setupMs} ms`);
  t.log(`cold start: ${N} Services announced and programmed ${Date.now() - t0} ms after the agent started`);

  let minRoutes = Infinity;
  let minFrontends = Infinity;
  let samples = 0;
  let polling = true;
  const poll = (async () => {
    while (polling) {
      minRoutes = Math.min(minRoutes, await vipRoutes());
      minFrontends = Math.min(minFrontends, pinnedFrontends().size);
      samples++;
      await sleep(200);
    }
  })();
  const t1 = Date.now();
  t.is(await lab.stopAgent('SIGQUIT'), 0);
  const logFrom = lab.log.length;
  await lab.startAgent();
  await until(() => /first pass complete/.test(lab.log.slice(logFrom)), 240_000, 'the new agent to compute every Service once', 200);
  const firstPassMs = Date.now() - t1;
  await sleep(3000); // and a little after: removals would come now
  polling = false;
  await poll;
  t.log(`handover: first pass complete ${firstPassMs} ms after SIGQUIT; ${samples} samples, fewest VIP routes ${minRoutes}, fewest pinned frontends ${minFrontends}`);
  t.true(samples > 10, `${samples} samples`);
  t.is(minRoutes, N, 'a VIP left the router during the handover');
  t.is(minFrontends, N, 'a frontend left the pinned maps during the handover');
  // Same keys with the same service ids: nothing was removed and added back between two samples.
  const after = pinnedFrontends();
  t.is([...before].filter(([k, id]) => after.get(k) !== id).length, 0, 'a frontend was replaced during the handover');
  const st = JSON.parse((await lab.cli('status', '-o', 'json')).out) as { datapath: { services: number }; bgp: { vipsAnnounced: number } };
  t.is(st.datapath.services, N);
});
