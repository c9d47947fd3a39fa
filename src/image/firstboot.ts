// The appliance's boot-time config step in one Node process (Node starts
// slowly on small or emulated CPUs, so the boot pays for it once):
//   node firstboot.js CONFIG FIREWALL_JSON
// checks CONFIG exactly as `edgelb config check` does (same function, same
// output: FILE:LINE: key.path: problem (got VALUE), exit 2 when invalid) and,
// when it is valid, writes the host firewall ruleset for `nft -j -f`.
import { writeFileSync, renameSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configCheck } from '../cli/config-check.js';
import { loadConfigFile } from '../config/load.js';
import { firewallRuleset } from '../firewall/ruleset.js';

export function firstboot(configFile: string, firewallOut: string, print: (s: string) => void): number {
  const rc = configCheck([configFile], () => undefined, print);
  if (rc !== 0) return rc;
  const rs = firewallRuleset(loadConfigFile(configFile));
  writeFileSync(`${firewallOut}.tmp`, `${JSON.stringify(rs)}\n`, { mode: 0o600 });
  renameSync(`${firewallOut}.tmp`, firewallOut);
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [config, out] = process.argv.slice(2);
  if (!config || !out) {
    process.stderr.write('usage: firstboot.js CONFIG FIREWALL_JSON\n');
    process.exit(2);
  }
  try {
    process.exit(firstboot(config, out, (s) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`)));
  } catch (e) {
    process.stdout.write(`${config}: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
