import { stringify } from 'yaml';
import { loadConfigFile, ConfigError, formatProblems } from '../config/load.js';
import { DEFAULT_CONFIG_PATH } from '../config/schema.js';
import { parse, UsageError } from './args.js';

export const configCheckHelp = `Usage: edgelb config check [FILE] [--config FILE]

Validates an edgelb configuration file (default ${DEFAULT_CONFIG_PATH}).
On success prints the normalised configuration (every default filled in)
and exits 0. On failure prints one line per problem and exits 2:

  FILE:LINE: key.path: what is wrong (got VALUE)
`;

export function configCheck(args: string[], out: (s: string) => void, err: (s: string) => void): number {
  const { values, positionals } = parse('config check', args, { config: { type: 'string', short: 'c' } });
  if (values.help) {
    out(configCheckHelp);
    return 0;
  }
  if (positionals.length > 1) throw new UsageError('edgelb config check: takes one FILE');
  const file = positionals[0] ?? (values.config as string | undefined) ?? DEFAULT_CONFIG_PATH;
  try {
    const config = loadConfigFile(file);
    out(`# ${file}: valid\n${stringify(config, { lineWidth: 0 })}`);
    return 0;
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const line of formatProblems(e.file, e.problems)) err(line);
    err(`${e.file}: ${e.problems.length} problem${e.problems.length === 1 ? '' : 's'}; nothing was applied`);
    return 2;
  }
}
