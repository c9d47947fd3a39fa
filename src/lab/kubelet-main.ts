// The lab's kubelets (see kube/kubelet.ts): one process per lab, in the
// mgmt namespace, one PlayedKubelet per node, each with that node's client
// certificate. Reads the lab's state file every round for the pods and
// their processes (pods added later by `addPod` are picked up).
//
//   node dist/src/lab/kubelet-main.js --prefix elb-xxxx- [--interval-ms 500]
import { parseArgs } from 'node:util';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { loadState } from './state.js';
import { alive, stopPid } from './procs.js';
import { KubeHttp } from './kube/http.js';
import { PlayedKubelet, type PodFacts } from './kube/kubelet.js';

const { values } = parseArgs({ options: { prefix: { type: 'string' }, 'interval-ms': { type: 'string', default: '500' } } });
if (!values.prefix) {
  process.stderr.write('usage: kubelet-main.js --prefix elb-xxxx-\n');
  process.exit(2);
}
const prefix = values.prefix;
const interval = Math.max(100, Number(values['interval-ms']));
const log = (line: string): void => void process.stdout.write(`${new Date().toISOString()} ${line}\n`);

const first = loadState(prefix);
const cp = first.controlPlane;
if (!cp) {
  process.stderr.write(`lab ${prefix} has no control plane recorded\n`);
  process.exit(2);
}

function facts(name: string): PodFacts | undefined {
  const st = loadState(prefix);
  const pod = st.plan.nodes.flatMap((n) => n.pods).find((p) => p.name === name);
  if (!pod) return undefined;
  const proc = [...st.processes].reverse().find((p) => p.name === `pod-${name}`);
  const running = proc !== undefined && alive(proc.pid);
  let startedAt = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  if (proc) {
    try {
      startedAt = statSync(`/proc/${proc.pid}`).mtime.toISOString().replace(/\.\d+Z$/, 'Z');
    } catch {
      /* exited */
    }
  }
  return { ip: pod.ip, ...(st.options.ipv6 ? { ip6: pod.ip6 } : {}), running, startedAt };
}

async function stop(name: string): Promise<void> {
  const st = loadState(prefix);
  const proc = [...st.processes].reverse().find((p) => p.name === `pod-${name}` && alive(p.pid));
  if (proc) await stopPid(proc.pid, 'SIGTERM', 12_000);
}

const kubelets = first.plan.nodes.map(
  (n) =>
    new PlayedKubelet(
      { name: n.name, address: n.address, ...(first.options.ipv6 ? { address6: n.address6 } : {}), podCidr: n.podCidr },
      new KubeHttp({ server: cp.server, caFile: cp.pki.caCert, certFile: join(cp.pki.dir, `node-${n.name}.crt`), keyFile: join(cp.pki.dir, `node-${n.name}.key`) }),
      { facts, stop, log: (l) => log(`${n.name}: ${l}`) },
    ),
);

let announced = false;
let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
});
while (!stopping) {
  const results = await Promise.allSettled(kubelets.map((k) => k.tick()));
  results.forEach((r, i) => {
    if (r.status === 'rejected') log(`${kubelets[i]!.node.name}: ${String(r.reason)}`);
  });
  if (!announced && results.every((r) => r.status === 'fulfilled')) {
    announced = true;
    log('KUBELETS READY');
  }
  await new Promise((r) => setTimeout(r, interval));
}
process.exit(0);
