// The lab's stand-in for a node agent: keeps each node's node_services map
// equal to its local pods of every LoadBalancer Service (IPIP dispatch needs
// it). Runs in the mgmt namespace (where the API server listens) and polls:
//
//   node dist/src/lab/node-sync-main.js --api http://10.255.0.1:6443 \
//       --node node1=/sys/fs/bpf/edgelb-lab-x/node1 [--node ...] [--interval-ms 300]
import { parseArgs } from 'node:util';
import { localServices, writeLocalServices } from './node-side.js';

const { values } = parseArgs({
  options: { api: { type: 'string' }, node: { type: 'string', multiple: true }, 'interval-ms': { type: 'string', default: '300' } },
});
if (!values.api || !values.node?.length) {
  process.stderr.write('usage: node-sync-main.js --api URL --node NAME=PINDIR [...]\n');
  process.exit(2);
}
const api = values.api;
const nodes = values.node.map((s) => {
  const i = s.indexOf('=');
  if (i < 1) {
    process.stderr.write(`--node ${s}: expected NAME=PINDIR\n`);
    process.exit(2);
  }
  return { name: s.slice(0, i), pinDir: s.slice(i + 1) };
});
const interval = Math.max(50, Number(values['interval-ms']));

async function get<T>(path: string): Promise<T> {
  const r = await fetch(`${api}${path}`, { signal: AbortSignal.timeout(5000) });
  if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

let lastError = '';
let first = true;
for (;;) {
  try {
    const [svcs, slices] = await Promise.all([
      get<Parameters<typeof localServices>[0]>('/api/v1/services'),
      get<Parameters<typeof localServices>[1]>('/apis/discovery.k8s.io/v1/endpointslices'),
    ]);
    for (const n of nodes) {
      const want = localServices(svcs, slices, n.name);
      const changed = writeLocalServices(n.pinDir, want);
      if (changed > 0) process.stdout.write(`${new Date().toISOString()} ${n.name}: ${changed} change(s), ${want.length} local service(s)\n`);
    }
    if (first) process.stdout.write('NODE SYNC READY\n');
    first = false;
    lastError = '';
  } catch (e) {
    const msg = (e as Error).message;
    if (msg !== lastError) process.stderr.write(`${new Date().toISOString()} sync failed: ${msg}\n`);
    lastError = msg;
  }
  await new Promise((r) => setTimeout(r, interval));
}
