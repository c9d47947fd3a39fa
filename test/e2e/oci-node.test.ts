// The node agent's OCI image (npm run image:node: mmdebstrap + buildah, no
// Docker engine) run by runc as the node agent of node1 in the lab, with only
// the DaemonSet's capabilities and a read-only root: it starts, attaches its
// tc programs, reads the cluster with the edgelb-node token, and node1's pods
// are served through the VIP with DSR.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { buildNodeImage, type NodeImage } from '../../src/image/oci.js';
import { NODE_AGENT_CAPS } from '../../src/lab/oci-node.js';
import { nsRun, run } from '../../src/lab/netns.js';
import { bringUp, need, summary, tearDown, type LabHolder } from './helpers.js';

let h: LabHolder | undefined;
let image: NodeImage | undefined;
let imageError: Error | null = null;

test.before(async () => {
  try {
    image = await buildNodeImage();
  } catch (e) {
    imageError = e as Error;
    return;
  }
  h = await bringUp({ ociNodes: ['node1'] });
});

test.after.always(async () => {
  await tearDown(h);
});

// Capability bits (linux/capability.h).
const CAP_BITS: Record<string, number> = { CAP_NET_ADMIN: 12, CAP_PERFMON: 38, CAP_BPF: 39 };

test.serial('the image runs under runc as node1\'s agent with only BPF, NET_ADMIN and PERFMON; node1\'s pods serve through the VIP with DSR', async (t) => {
  if (imageError) t.fail(`image build failed: ${imageError.message}`);
  const lab = need(t, h);
  t.truthy(image);
  t.log(`image ${image!.ref} built in ${image!.seconds.toFixed(1)} s`);
  const agent = lab.state.processes.find((p) => p.name === 'node-agent-node1')!;
  t.is(agent.argv[0], 'runc');
  // The container's process: its capabilities are exactly the DaemonSet's.
  const pids = (await run(['ip', 'netns', 'pids', lab.plan.nodes[0]!.ns])).stdout.split(/\s+/).filter(Boolean);
  const agentPid = pids.find((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('/opt/edgelb/');
    } catch {
      return false;
    }
  });
  t.truthy(agentPid, 'a process of the image runs in node1\'s namespace');
  const status = readFileSync(`/proc/${agentPid}/status`, 'utf8');
  const eff = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(status)![1]}`);
  const want = NODE_AGENT_CAPS.reduce((m, c) => m | (1n << BigInt(CAP_BITS[c]!)), 0n);
  t.is(eff.toString(16), want.toString(16), 'effective capabilities are BPF, NET_ADMIN, PERFMON only');
  t.regex(readFileSync(agent.log, 'utf8'), /EDGELB NODE READY node=node1/);
  // Its programs are attached to node1's fabric interface.
  const tc = await nsRun(lab.plan.nodes[0]!.ns, ['tc', 'filter', 'show', 'dev', lab.plan.nodes[0]!.ifname, 'ingress']);
  t.regex(tc.stdout, /bpf/);

  await lab.applyService({ name: 'oci', udpPort: null });
  const vip = await lab.waitForVip('oci');
  await lab.waitForGateways(vip, lab.plan.edges.map((e) => e.address));
  await lab.waitServing(vip);
  const r = await lab.load({ kind: 'http', target: vip, port: 80, count: 80, concurrency: 2, timeoutMs: 2000 });
  t.is(r.failed, 0, summary(r));
  const node1Pods = lab.plan.nodes[0]!.pods.map((p) => p.name);
  t.true(node1Pods.some((p) => (r.pods[p] ?? 0) > 0), `node1's pods answered: ${summary(r)}`);
  t.deepEqual(Object.keys(r.clients), [lab.plan.client.address], 'the pods saw the client (DSR)');
});
