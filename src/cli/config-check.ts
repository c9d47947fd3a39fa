import { renameSync, writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { loadConfigFile, ConfigError, formatProblems } from '../config/load.js';
import { DEFAULT_CONFIG_PATH } from '../config/schema.js';
import { firewallRuleset } from '../firewall/ruleset.js';
import { sysctlFile } from '../firewall/sysctl.js';
import { parse, UsageError } from './args.js';

export const configCheckHelp = `Usage: edgelb config check [FILE] [--config FILE] [--firewall-out JSON] [--sysctl-out CONF]

Validates an edgelb configuration file (default ${DEFAULT_CONFIG_PATH}).
On success prints the normalised configuration (every default filled in)
and exits 0. On failure prints one line per problem and exits 2:

  FILE:LINE: key.path: what is wrong (got VALUE)

--firewall-out JSON  when the file is valid, also write its host firewall
                     ruleset (for nft -j -f); the appliance's boot-time check
                     does both in one start of Node.
--sysctl-out CONF    when the file is valid, also write the sysctl.d file the
                     datapath needs on node.uplink (forwarding, rp_filter).
`;

export function configCheck(args: string[], out: (s: string) => void, err: (s: string) => void): number {
  const { values, positionals } = parse('config check', args, { config: { type: 'string', short: 'c' }, 'firewall-out': { type: 'string' }, 'sysctl-out': { type: 'string' } });
  if (values.help) {
    out(configCheckHelp);
    return 0;
  }
  if (positionals.length > 1) throw new UsageError('edgelb config check: takes one FILE');
  const file = positionals[0] ?? (values.config as string | undefined) ?? DEFAULT_CONFIG_PATH;
  try {
    const config = loadConfigFile(file);
    const firewallOut = values['firewall-out'] as string | undefined;
    const sysctlOut = values['sysctl-out'] as string | undefined;
    // Both computed before either is written: nothing half-applied.
    const outputs: [string, string][] = [];
    if (firewallOut) outputs.push([firewallOut, `${JSON.stringify(firewallRuleset(config))}\n`]);
    if (sysctlOut) outputs.push([sysctlOut, sysctlFile(config)]);
    for (const [file, text] of outputs) {
      writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
      renameSync(`${file}.tmp`, file);
    }
    out(`# ${file}: valid\n${stringify(config, { lineWidth: 0 })}`);
    return 0;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const line of formatProblems(e.file, e.problems)) err(line);
    err(`${e.file}: ${e.problems.length} problem${e.problems.length === 1 ? '' : 's'}; nothing was applied`);
    return 2;
  }
}
