// CLI commands that talk to the running agent over its control socket.
import { parse, UsageError } from './args.js';
import { callAgent } from './control-client.js';
import { DRAIN_SECONDS_MAX } from '../config/schema.js';
import { renderPeers, renderRoutes, renderServices, renderStatus } from './render.js';
import type { AgentStatus, PeerView, RouteView, ServiceView } from '../agent/control-types.js';

const DEFAULT_SOCKET = '/run/edgelb/control.sock';
// A read answers at once from the agent's memory; a hung agent (stopped,
// its event loop blocked) must not hold the operator's shell for minutes.
const READ_TIMEOUT_MS = 10_000;
// drain answers once the VIPs are withdrawn, bgp.drainSeconds later.
const DRAIN_TIMEOUT_MS = (DRAIN_SECONDS_MAX + 120) * 1000;
type Out = (s: string) => void;

export interface AgentCommand {
  words: string[];
  usage: string;
  summary: string;
  /** How long the command waits for the agent's answer. */
  timeoutMs: number;
  run(args: string[], out: Out, err: Out): Promise<number>;
}

function command(words: string[], usage: string, summary: string, method: 'GET' | 'POST', path: string, render: (body: unknown, verbose: boolean) => string, extra = '', timeoutMs = READ_TIMEOUT_MS): AgentCommand {
  const help = `Usage: edgelb ${usage} [--socket PATH] [-o json|text]\n\n${summary}.${extra}\n`;
  return {
    words,
    usage,
    summary,
    timeoutMs,
    async run(args, out, err) {
      const { values, positionals } = parse(words.join(' '), args, {
        socket: { type: 'string', default: process.env.EDGELB_CONTROL_SOCKET ?? DEFAULT_SOCKET },
        output: { type: 'string', short: 'o', default: 'text' },
        verbose: { type: 'boolean', short: 'v', default: false },
      });
      if (values.help) {
        out(help);
        return 0;
      }
      if (positionals.length > 0) throw new UsageError(`edgelb ${words.join(' ')}: unexpected argument "${positionals[0]}"`);
      if (values.output !== 'json' && values.output !== 'text') throw new UsageError(`edgelb ${words.join(' ')}: -o must be json or text`);
      try {
        const body = await callAgent(values.socket as string, method, path, undefined, timeoutMs);
        out(values.output === 'json' ? JSON.stringify(body, null, 2) : render(body, values.verbose as boolean));
        return 0;
      } catch (e) {
        err(`edgelb ${words.join(' ')}: ${(e as Error).message}`);
        return 1;
      }
    },
  };
}

const message = (b: unknown) => (b as { message: string }).message;

export const commands: AgentCommand[] = [
  command(['status'], 'status [--verbose]', 'show what the agent is doing and anything wrong', 'GET', '/status', (b, v) => renderStatus(b as AgentStatus, v)),
  command(['service', 'list'], 'service list', 'list frontends (VIP:port/proto) with their backends and counters', 'GET', '/services', (b) => renderServices(b as ServiceView[])),
  command(['bgp', 'peers'], 'bgp peers', 'list BGP peers with state and uptime', 'GET', '/bgp/peers', (b) => renderPeers(b as PeerView[])),
  command(['bgp', 'routes'], 'bgp routes', 'routes as actually sent to each peer (adjacency-out)', 'GET', '/bgp/routes', (b) => renderRoutes(b as RouteView[])),
  command(['drain'], 'drain', 'announce VIPs with GRACEFUL_SHUTDOWN (65535:0), wait bgp.drainSeconds, then withdraw', 'POST', '/drain', message, '\nReturns once the VIPs are withdrawn.', DRAIN_TIMEOUT_MS),
  command(['undrain'], 'undrain', 'announce VIPs normally again after a drain', 'POST', '/undrain', message, '', 120_000),
  command(['reload'], 'reload', 're-read the config file and apply the difference (same as SIGHUP)', 'POST', '/reload', message, '\nAn invalid file changes nothing; its problems are printed.', 120_000),
];
