// `edgelb run`: the agent process. Signals: SIGHUP reloads; SIGTERM/SIGINT
// drain (GRACEFUL_SHUTDOWN, wait, withdraw) and exit; SIGQUIT exits for a
// handover (systemd's RestartKillSignal) leaving routes and maps in place, so
// a restart never takes the VIPs off the routers.
import { loadConfigFile, ConfigError, formatProblems } from '../config/load.js';
import { DEFAULT_CONFIG_PATH, LOG_LEVELS } from '../config/schema.js';
import type { LogLevel } from '../config/types.js';
import { createLogger } from '../log/logger.js';
import { Agent } from '../agent/agent.js';
import { buildParts } from '../agent/parts.js';
import { sdNotify } from '../agent/sd-notify.js';
import { parse, UsageError } from './args.js';
import { holdHangups, untilStopped, type StopMode } from './signals.js';

export const runHelp = `Usage: edgelb run [--config FILE] [--log-level LEVEL]

Runs the edgelb agent (default config ${DEFAULT_CONFIG_PATH}).
Prints "EDGELB READY node=NAME peers=N config=HASH" once started.

Signals: SIGHUP reloads the config; SIGTERM and SIGINT drain the VIPs and
exit; SIGQUIT exits leaving routes and pinned maps for the next agent.
`;

/** Slack after a shutdown's drain: the parts' own stop (pending status writes and the Lease release: 10 s at most). */
const STOP_SLACK_SECONDS = 60;

/**
 * What the agent tells systemd as it stops. A shutdown drains first
 * (bgp.drainSeconds, up to an hour), longer than edgelb.service's
 * TimeoutStopSec: without EXTEND_TIMEOUT_USEC systemd would SIGKILL the
 * agent mid-drain, leaving the VIPs announced by an edge that is going away.
 */
export function stoppingNotice(mode: StopMode, drainSeconds: number): Record<string, string> {
  if (mode === 'handover') return { STOPPING: '1', STATUS: 'handing over to the next agent' };
  return { STOPPING: '1', STATUS: 'draining, then exiting', EXTEND_TIMEOUT_USEC: String((drainSeconds + STOP_SLACK_SECONDS) * 1_000_000) };
}

export async function runAgentCommand(args: string[], out: (s: string) => void, err: (s: string) => void): Promise<number> {
  const { values } = parse('run', args, {
    config: { type: 'string', short: 'c', default: DEFAULT_CONFIG_PATH },
    'log-level': { type: 'string' },
  });
  if (values.help) {
    out(runHelp);
    return 0;
  }
  const file = values.config as string;
  const levelArg = values['log-level'] as string | undefined;
  if (levelArg !== undefined && !(LOG_LEVELS as readonly string[]).includes(levelArg)) {
    throw new UsageError(`edgelb run: --log-level must be one of ${LOG_LEVELS.join(', ')} (got ${JSON.stringify(levelArg)})`);
  }
  let config;
  try {
    config = loadConfigFile(file);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const line of formatProblems(e.file, e.problems)) err(line);
    err(`${file}: not starting: ${e.problems.length} problem(s) in the configuration`);
    return 2;
  }
  const level = (values['log-level'] as LogLevel | undefined) ?? config.log.level;
  const log = createLogger({ level, fd: 2 });
  const hangups = holdHangups(log);
  const parts = await buildParts(config, log);
  const agent = new Agent(config, file, log, parts);
  try {
    await agent.start();
  } catch (e) {
    log.fatal({ err: e }, 'agent failed to start');
    await agent.stop('handover').catch(() => undefined);
    return 1; // still holding SIGHUP: this exit says it failed, a signal's would not
  }
  out(`EDGELB READY node=${config.node.name} peers=${config.bgp.peers.length} config=${agent.configDigest}`);
  log.info({ node: config.node.name, config: agent.configDigest }, 'agent ready');
  sdNotify({ READY: '1', STATUS: `ready: ${config.bgp.peers.length} peers, config ${agent.configDigest}` }, log);

  const reload = () => {
    agent.reload().then(
      (msg) => log.info(msg),
      (e: unknown) => log.error({ problems: e instanceof ConfigError ? formatProblems(e.file, e.problems) : String(e) }, 'reload refused; the running configuration is unchanged'),
    );
  };
  const stopped = untilStopped(log, (mode) => {
    sdNotify(stoppingNotice(mode, agent.currentConfig.bgp.drainSeconds), log); // as reloaded
    return agent.stop(mode);
  }, reload);
  hangups.release(reload);
  return stopped;
}
