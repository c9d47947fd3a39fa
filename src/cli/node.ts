// `edgelb node run`: the agent for Kubernetes nodes that host backends.
import { hostname } from 'node:os';
import { createLogger } from '../log/logger.js';
import type { LogLevel } from '../config/types.js';
import { NodeAgent } from '../node-agent/node-agent.js';
import { parse, UsageError } from './args.js';
import { untilStopped } from './signals.js';
import { parseEdgeSource } from '../datapath/node-maps.js';
import { isIpv4, isIpv6 } from '../net/ip.js';
import { cidrsOverlap } from '../net/cidr.js';
import { NOWHERE_BLOCKS } from '../net/special-blocks.js';
import { parseListen } from '../node-agent/metrics.js';

/**
 * A comma-separated list of addresses or CIDRs for `flag`, each parsed and
 * refused when no trust may rest on it (what `hint` says to list instead).
 */
function trustedSourceList(flag: string, arg: string, hint: (text: string, why: string) => string): { text: string; src: ReturnType<typeof parseEdgeSource> }[] {
  return arg.split(',').map((s) => s.trim()).filter((s) => s !== '').map((text) => {
    let src: ReturnType<typeof parseEdgeSource>;
    try {
      src = parseEdgeSource(text);
    } catch (e) {
      throw new UsageError(`edgelb node run: ${flag}: ${(e as Error).message}`);
    }
    const why = untrustworthySource(src);
    if (why) throw new UsageError(`edgelb node run: ${flag}: ${hint(text, why)}`);
    return { text, src };
  });
}

/** --edge-sources: comma-separated CIDRs or addresses, each checked, at least one. */
export function parseEdgeSources(arg: string | undefined): string[] {
  if (arg === undefined || arg.trim() === '') {
    throw new UsageError('edgelb node run: --edge-sources is required: the addresses the edges send from (e.g. --edge-sources 10.0.0.11,10.0.0.12,2001:db8::11)');
  }
  return trustedSourceList('--edge-sources', arg, (s, why) => `edge source '${s}' ${why}; list the edges' own addresses (and their IPIP source blocks)`).map((x) => x.text);
}

/**
 * --edge-routers: routers on this node's link that the edges' IPIP crosses
 * (optional), checked as edge sources are, and apart from them: a block
 * in both lists would make a router an edge.
 */
export function parseEdgeRouters(arg: string | undefined, edgeSources: readonly string[]): string[] {
  if (arg === undefined || arg.trim() === '') return [];
  const list = trustedSourceList('--edge-routers', arg, (s, why) => `'${s}' ${why}; list the routers' own addresses on this node's link`);
  for (const { text, src } of list) {
    const edge = edgeSources.find((e) => cidrsOverlap(parseEdgeSource(e).cidr, src.cidr));
    if (edge !== undefined) throw new UsageError(`edgelb node run: --edge-routers: '${text}' overlaps edge source '${edge}': a router is trusted for IPIP only, an edge for DSR options too`);
  }
  return list.map((x) => x.text);
}

/**
 * Why a source block cannot be the edges': every packet from it may carry a
 * DSR option or IPIP that the node believes, so a block that holds every
 * address gives that trust to anyone (a forged option then gets answers
 * from a VIP), and one in a block no host sends from is a mistake.
 */
function untrustworthySource(src: ReturnType<typeof parseEdgeSource>): string | null {
  if (src.bits === 0) return 'holds every address: the DSR option and IPIP from anyone would be trusted';
  const nowhere = NOWHERE_BLOCKS.find((b) => cidrsOverlap(b.cidr, src.cidr));
  return nowhere ? `overlaps ${nowhere.what}, which no edge sends from` : null;
}

/** --node-ip: one address, or one of each family ("192.0.2.21,fd00::21"). */
export function parseNodeIps(arg: string | undefined): { nodeIp?: string; nodeIp6?: string } {
  if (arg === undefined) return {};
  const out: { nodeIp?: string; nodeIp6?: string } = {};
  const list = arg.split(',').map((s) => s.trim());
  if (list.length > 2 || list.some((s) => s === '')) throw new UsageError(`edgelb node run: --node-ip takes one address or one of each family, comma-separated (got '${arg}')`);
  for (const a of list) {
    const v4 = isIpv4(a);
    if (!v4 && !isIpv6(a)) throw new UsageError(`edgelb node run: --node-ip: '${a}' is not an IPv4 or IPv6 address`);
    const key = v4 ? 'nodeIp' : 'nodeIp6';
    if (out[key] !== undefined) throw new UsageError(`edgelb node run: --node-ip: two ${v4 ? 'IPv4' : 'IPv6'} addresses ('${out[key]}', '${a}'); give one of each family`);
    out[key] = a;
  }
  return out;
}

export const nodeHelp = `Usage: edgelb node run --interface IF --edge-sources CIDR[,CIDR…] [options]

Runs the node side of edgelb on a Kubernetes node: the tc programs that
record DSR flows and rewrite pod replies to come from the VIP, the path
probe responder (UDP 4790) for dispatch: auto, and, with --kubeconfig, the
frontends that have backends on this node.

Options:
  --interface IF          fabric-facing interface (required)
  --edge-sources CIDRS    the edges' addresses, comma-separated IPv4 or IPv6 CIDRs or
                          addresses (required): only they may send DSR options
                          (IPv4 option, IPv6 Destination Options header) and
                          IPIP / IP6IP6 to this node's frontends; anything else carrying them is
                          dropped and counted (edgelb_node_drops{reason="untrusted_source"}).
                          List each edge's address on this node's link and its IPIP
                          source block if it has one
  --edge-routers CIDRS    for edges behind a router (ipip only): that router's
                          addresses on this node's link. Its link-layer address is
                          trusted as the sender of IPIP / IP6IP6 from an edge
                          source, never of a DSR option: everything behind the
                          router arrives with its MAC, and an option packet keeps
                          its own sender's address (a router listed in
                          --edge-sources let anyone behind it forge options)
  --metrics-listen ADDR   serve Prometheus metrics on ADDR:PORT (/metrics, /healthz)
  --flow-insert-limit N   new flows per CPU per second (default 10000; 0 = no
                          limit): beyond it new flows are dropped, so a flood
                          cannot evict established ones
  --node-name NAME        Kubernetes node name (default: hostname)
  --node-ip IP[,IP6]      this node's address, or one of each family: IPIP packets
                          must be addressed to the IPv4 one, IP6IP6 to the IPv6 one
  --kubeconfig FILE       watch the cluster for this node's frontends
  --pin-path DIR          bpffs directory for the flow maps (default /sys/fs/bpf/edgelb-node)
  --probe-port N          path probe port (default 4790)
  --load-balancer-class C (default edgelb.io/dsr)
  --default-class         also take LoadBalancer Services without a class (as the
                          edges do with kubernetes.defaultClass: true)
  --log-level L

Prints "EDGELB NODE READY node=NAME interface=IF" once attached. SIGTERM
detaches; SIGQUIT exits leaving the programs and flows for the next agent.
`;

export async function nodeCommand(args: string[], out: (s: string) => void): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    out(nodeHelp);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'run') throw new UsageError(`edgelb node: unknown subcommand "${sub}" (try: edgelb node run --help)`);
  const { values } = parse('node run', rest, {
    interface: { type: 'string' },
    'edge-sources': { type: 'string' },
    'edge-routers': { type: 'string' },
    'metrics-listen': { type: 'string' },
    'flow-insert-limit': { type: 'string', default: '10000' },
    'node-name': { type: 'string', default: hostname() },
    'node-ip': { type: 'string' },
    kubeconfig: { type: 'string' },
    'pin-path': { type: 'string', default: '/sys/fs/bpf/edgelb-node' },
    'probe-port': { type: 'string', default: '4790' },
    'load-balancer-class': { type: 'string', default: 'edgelb.io/dsr' },
    'default-class': { type: 'boolean', default: false },
    'log-level': { type: 'string', default: 'info' },
  });
  if (values.help) {
    out(nodeHelp);
    return 0;
  }
  if (!values.interface) throw new UsageError('edgelb node run: --interface is required');
  const edgeSources = parseEdgeSources(values['edge-sources'] as string | undefined);
  const edgeRouters = parseEdgeRouters(values['edge-routers'] as string | undefined, edgeSources);
  const insertLimit = Number(values['flow-insert-limit']);
  if (!Number.isInteger(insertLimit) || insertLimit < 0 || insertLimit > 0xffffffff) {
    throw new UsageError(`edgelb node run: --flow-insert-limit must be a whole number ≥ 0 (got ${String(values['flow-insert-limit'])})`);
  }
  if (values['metrics-listen'] !== undefined) {
    try {
      parseListen(values['metrics-listen'] as string);
    } catch (e) {
      throw new UsageError(`edgelb node run: ${(e as Error).message}`);
    }
  }
  const port = Number(values['probe-port']);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`edgelb node run: --probe-port must be 1-65535 (got ${String(values['probe-port'])})`);
  const log = createLogger({ level: values['log-level'] as LogLevel, fd: 2 });
  const agent = new NodeAgent({
    interface: values.interface as string,
    nodeName: values['node-name'] as string,
    ...parseNodeIps(values['node-ip'] as string | undefined),
    edgeSources,
    ...(edgeRouters.length > 0 ? { edgeRouters } : {}),
    flowInsertLimit: insertLimit,
    ...(values['metrics-listen'] ? { metricsListen: values['metrics-listen'] as string } : {}),
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig as string } : {}),
    pinPath: values['pin-path'] as string,
    probePort: port,
    kubernetes: { loadBalancerClass: values['load-balancer-class'] as string, defaultClass: values['default-class'] === true },
    datapath: { mode: 'dsr', dispatch: 'ip-option' },
    logger: log,
  });
  try {
    await agent.start();
  } catch (e) {
    log.fatal({ err: e }, 'node agent failed to start');
    await agent.stop('shutdown').catch(() => undefined);
    return 1;
  }
  out(`EDGELB NODE READY node=${values['node-name'] as string} interface=${values.interface as string}`);
  return untilStopped(log, (mode) => agent.stop(mode));
}
