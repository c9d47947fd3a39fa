// Run once at image build time, inside the root (chroot), with
// NODE_COMPILE_CACHE pointing into /opt/edgelb: loads what the agent and
// the boot-time config check load, so V8's code cache for them ships in the
// read-only root and the appliance skips most compiling at every boot.
import { firstboot } from './firstboot.js';

const MODULES = [
  '../cli/run.js', '../agent/agent.js', '../agent/parts.js',
  '@kubernetes/client-node', '@grpc/grpc-js', '@grpc/proto-loader', 'pino', 'prom-client', 'yaml', 'convict',
];

const [config, out] = process.argv.slice(2);
if (config && out) firstboot(config, out, () => undefined);
let loaded = 0;
for (const m of MODULES) {
  try {
    await import(m);
    loaded++;
  } catch (e) {
    process.stderr.write(`warm: ${m}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}\n`);
  }
}
process.stdout.write(`warm: ${loaded}/${MODULES.length} modules\n`);
