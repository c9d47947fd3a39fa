// Run once at image build time, inside the root (chroot), with
// NODE_COMPILE_CACHE pointing into /opt/edgelb: loads what the agent and the
// boot-time config check load, so V8's code cache for them ships in the
// read-only root and the appliance skips most compiling at every boot.
// Bundled next to the CLI (src/image/bundle.ts), so its dynamic imports are
// the very chunks the agent loads.
//   node dist/app/warm.js [CONFIG FIREWALL_JSON]
import { configCheck } from '../cli/config-check.js';

const [config, out] = process.argv.slice(2);
const loaders: [string, () => Promise<unknown>][] = [
  ['agent', () => import('../cli/run.js')],
  ['BGP speaker', () => import('../bgp/speaker.js')],
  ['kubernetes controller', () => import('../k8s/controller.js')],
  ['upgrade', () => import('./upgrade.js')],
  ['firewall', () => import('../firewall/main.js')],
];
if (config && out) {
  const rc = configCheck([config, '--firewall-out', out], () => undefined, (s) => process.stderr.write(`warm: ${s}\n`));
  if (rc !== 0) process.stderr.write(`warm: config check of ${config} exited ${rc}\n`);
}
let loaded = 0;
for (const [name, load] of loaders) {
  try {
    await load();
    loaded++;
  } catch (e) {
    process.stderr.write(`warm: ${name}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}\n`);
  }
}
process.stdout.write(`warm: ${loaded}/${loaders.length} module groups\n`);
