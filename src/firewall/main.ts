// edgelb-firewall: the host firewall from the command line (the appliance's
// edgelb-firewall.service runs it).
//   apply  --config FILE [--check]   generate and load table inet edgelb_host
//   show   --config FILE             print the JSON ruleset
//   remove                           delete the table
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfigFile } from '../config/load.js';
import { applyRuleset } from './apply.js';
import { firewallRuleset, removeRuleset, TABLE } from './ruleset.js';

const USAGE = 'usage: edgelb-firewall apply|show --config FILE [--check] | remove';

export async function firewallMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { config: { type: 'string' }, check: { type: 'boolean', default: false }, nft: { type: 'string' } },
    allowPositionals: true,
  });
  const cmd = positionals[0];
  if (cmd === 'remove') {
    await applyRuleset(removeRuleset(), { nft: values.nft });
    console.log(`edgelb-firewall: table inet ${TABLE} removed`);
    return 0;
  }
  if ((cmd !== 'apply' && cmd !== 'show') || !values.config) {
    console.error(USAGE);
    return 2;
  }
  const cfg = loadConfigFile(values.config);
  const rs = firewallRuleset(cfg);
  if (cmd === 'show') {
    console.log(JSON.stringify(rs, null, 2));
    return 0;
  }
  await applyRuleset(rs, { nft: values.nft, check: values.check });
  const rules = rs.nftables.filter((o) => 'add' in o && 'rule' in (o.add as object)).length;
  console.log(cfg.firewall.enabled
    ? `edgelb-firewall: table inet ${TABLE} ${values.check ? 'checked' : 'loaded'} (${rules} rules, ${cfg.bgp.peers.length} peers, ssh from ${cfg.firewall.sshFrom.join(',') || 'nowhere'})`
    : `edgelb-firewall: firewall.enabled is false; table inet ${TABLE} removed`);
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  firewallMain(process.argv.slice(2)).then((code) => process.exit(code), (e: unknown) => {
    console.error(`edgelb-firewall: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
