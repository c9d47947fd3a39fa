// The edgelb command line. Commands that talk to a running agent go through
// its control socket; `run` is the agent itself.
import { configCheck, configCheckHelp } from './config-check.js';
import { UsageError } from './args.js';
import { ConfigError, formatProblems } from '../config/load.js';

/** Ours, or node:util parseArgs's (unknown option, missing value) from a command that parses its own. */
const isUsageError = (e: unknown): boolean =>
  e instanceof UsageError || (typeof (e as { code?: unknown })?.code === 'string' && (e as { code: string }).code.startsWith('ERR_PARSE_ARGS_'));
import { edgelbVersion } from '../version.js';
import { commands as agentCommands } from './agent-commands.js';

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);

const HELP = `edgelb ${edgelbVersion()} — BGP edge load balancer with an eBPF DSR datapath

Usage: edgelb COMMAND [options]

Commands:
  run [--config FILE] [--log-level L]   run the agent (default config /etc/edgelb/edgelb.yaml)
  config check [FILE]                  validate a configuration file
  node run --interface IF              run the node side on a Kubernetes node
  upgrade IMAGE | rollback | status    appliance A/B upgrade (docs/flash.md)
  firewall show|apply --config FILE    the host nftables ruleset for a config
${agentCommands.map((c) => `  ${c.usage.padEnd(37)}${c.summary}`).join('\n')}
  version                              print the version

Every command takes --help. Commands that talk to the agent take
--socket PATH (default /run/edgelb/control.sock) and -o json.
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      out(HELP);
      return cmd === undefined ? 2 : 0;
    case 'version':
    case '--version':
      if (rest.includes('--help') || rest.includes('-h')) {
        out('Usage: edgelb version\n\nPrints the edgelb version.');
        return 0;
      }
      out(`edgelb ${edgelbVersion()} (node ${process.versions.node})`);
      return 0;
    case 'config': {
      const [sub, ...subArgs] = rest;
      if (sub === 'check') return configCheck(subArgs, out, err);
      if (sub === undefined || sub === '--help' || sub === '-h') {
        out(configCheckHelp);
        return sub === undefined ? 2 : 0;
      }
      throw new UsageError(`edgelb config: unknown subcommand "${sub}" (try: edgelb config check FILE)`);
    }
    case 'upgrade': {
      // Writes an appliance image into the inactive root slot and boots it
      // once on trial (docs/flash.md); `rollback` and `status` too.
      const { upgradeMain } = await import('../image/upgrade.js');
      try {
        return await upgradeMain(rest, out);
      } catch (e) {
        if (isUsageError(e)) throw e;
        // What stops an upgrade (no slot, bad signature, short image) is a
        // sentence for the operator, as edgelb-upgrade prints it.
        err(`edgelb upgrade: ${e instanceof Error ? e.message : String(e)}`);
        return 1;
      }
    }
    case 'firewall': {
      const { firewallMain } = await import('../firewall/main.js');
      return firewallMain(rest);
    }
    case 'node': {
      const { nodeCommand } = await import('./node.js');
      return nodeCommand(rest, out);
    }
    case 'run': {
      const { runAgentCommand } = await import('./run.js');
      return runAgentCommand(rest, out, err);
    }
    default: {
      const words = [cmd, ...rest];
      const c = agentCommands.find((c) => c.words.every((w, i) => words[i] === w));
      if (c) return c.run(words.slice(c.words.length), out, err);
      throw new UsageError(`edgelb: unknown command "${cmd}" (see edgelb --help)`);
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (isUsageError(e)) {
      err(e instanceof UsageError ? e.message : `edgelb: ${(e as Error).message}`);
      process.exitCode = 2;
    } else if (e instanceof ConfigError) {
      // A command that reads the config (firewall show|apply) refuses it as config check does.
      for (const line of formatProblems(e.file, e.problems)) err(line);
      err(`${e.file}: ${e.problems.length} problem${e.problems.length === 1 ? '' : 's'}; nothing was applied`);
      process.exitCode = 2;
    } else {
      err(`edgelb: ${(e as Error).stack ?? String(e)}`);
      process.exitCode = 1;
    }
  },
);
