// Runs native/probe/edgelb-probe (Node.js cannot set IP_OPTIONS or
// IPV6_DSTOPTS) and keeps one PathState per node address — IPv4 and IPv6
// paths alike, each probed with its family's marker — calling back when a
// path's dispatch changes.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import type { Logger } from '../log/logger.js';
import { probeBinaryPath } from '../assets.js';
import type { PathDispatch } from '../datapath/edge-datapath.js';
import { ipFamily, ipToBigInt } from '../net/ip.js';
import { decidePath, initialPathState, type PathState, type ProbeResult } from './decide.js';
import { PROBE_PORT } from './wire.js';

const run = promisify(execFile);

interface RawProbe {
  reply: boolean;
  optionSeen: boolean;
  rttUs: number;
}

export interface ProbeOptions {
  port?: number;
  timeoutMs?: number;
  /** Source address (of the targets' family). */
  source?: string;
  /** Command prefix, e.g. ['ip', 'netns', 'exec', NS] in tests and the lab. */
  wrap?: string[];
}

async function probeOnce(target: string, withOption: boolean, opts: ProbeOptions): Promise<RawProbe> {
  const timeoutMs = opts.timeoutMs ?? 300;
  const args = [target, '--port', String(opts.port ?? PROBE_PORT), '--timeout-ms', String(timeoutMs)];
  if (!withOption) args.push('--no-option');
  if (opts.source) args.push('--source', opts.source);
  const [cmd, ...pre] = [...(opts.wrap ?? []), probeBinaryPath()];
  const { stdout } = await run(cmd!, [...pre, ...args], { timeout: timeoutMs + 2000 });
  return JSON.parse(stdout) as RawProbe;
}

/** One probe round against a node (IPv4 or IPv6 address): the marked probe, and a plain one if that got no answer. */
export async function probePath(target: string, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const family = ipFamily(target);
  if (family === null) throw new Error(`probe target '${target}' is not an IP address`);
  const withOpt = await probeOnce(target, true, opts);
  if (withOpt.reply) return { family, optionReply: true, optionSeen: withOpt.optionSeen, plainReply: null, rttUs: withOpt.rttUs };
  const plain = await probeOnce(target, false, opts);
  return { family, optionReply: false, optionSeen: false, plainReply: plain.reply, rttUs: plain.rttUs };
}

export interface PathProberOptions extends ProbeOptions {
  intervalMs?: number;
  /** Dispatch used until a path has been proven (IPIP works on any fabric). */
  fallback?: PathDispatch;
  recoverAfter?: number;
  logger?: Logger;
  onChange: (nodeIp: string, dispatch: PathDispatch, reason: string) => void;
  /** Paths probed at once: each probe is a process (default 16). */
  concurrency?: number;
  /** The probe itself (tests); default probePath. */
  probe?: (target: string, opts: ProbeOptions) => Promise<ProbeResult>;
}

const DEFAULT_CONCURRENCY = 16;

export class PathProber {
  private readonly paths = new Map<string, PathState>();
  private targets: string[] = [];
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(private readonly opts: PathProberOptions) {
    if (!existsSync(probeBinaryPath())) throw new Error(`path probe helper ${probeBinaryPath()} is missing (run scripts/setup --build-only)`);
  }

  /** The node addresses to watch; new ones are probed at once. */
  setTargets(nodeIps: string[]): void {
    const fresh = nodeIps.filter((ip) => !this.paths.has(ip));
    this.targets = [...new Set(nodeIps)].sort();
    for (const ip of [...this.paths.keys()]) if (!this.targets.includes(ip)) this.paths.delete(ip);
    if (fresh.length > 0 && this.timer) void this.round();
  }

  start(): void {
    const tick = () => {
      void this.round().finally(() => {
        if (this.timer) this.timer = setTimeout(tick, this.opts.intervalMs ?? 5000);
      });
    };
    this.timer = setTimeout(tick, 0);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Probes every target once (concurrent rounds are merged). */
  round(): Promise<void> {
    this.running ??= this.probeAll().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async probeAll(): Promise<void> {
    // A fixed number of workers over the targets of this round: a thousand
    // nodes must not mean a thousand probe processes at once.
    const queue = [...this.targets];
    const worker = async (): Promise<void> => {
      for (let ip = queue.shift(); ip !== undefined; ip = queue.shift()) await this.probeOne(ip);
    };
    await Promise.all(Array.from({ length: Math.min(queue.length, this.opts.concurrency ?? DEFAULT_CONCURRENCY) }, worker));
  }

  private async probeOne(ip: string): Promise<void> {
    const now = Date.now();
    const prev = this.paths.get(ip) ?? initialPathState(this.opts.fallback ?? 'ipip', now);
    let next: PathState;
    try {
      const r = await (this.opts.probe ?? probePath)(ip, this.opts);
      next = decidePath(prev, r, now, this.opts.recoverAfter);
    } catch (e) {
      next = { ...prev, reason: `probe failed: ${(e as Error).message}` };
    }
    if (!this.targets.includes(ip)) return;
    this.paths.set(ip, next);
    if (next.dispatch !== prev.dispatch || prev.probes === 0) {
      this.opts.logger?.info({ node: ip, dispatch: next.dispatch, reason: next.reason }, 'path dispatch decided');
      // A callback that fails (a map write) must not reject the round: the
      // timer's promise would end the agent as an unhandled rejection.
      try {
        this.opts.onChange(ip, next.dispatch, next.reason);
      } catch (e) {
        this.opts.logger?.warn({ err: e, node: ip, dispatch: next.dispatch }, 'applying a path dispatch failed');
      }
    }
  }

  /** Every path's verdict: IPv4 paths first, then IPv6, each by address. */
  view(): { nodeIp: string; dispatch: PathDispatch; reason: string }[] {
    const order = (ip: string): [number, bigint] => {
      const { family, value } = ipToBigInt(ip);
      return [family, value];
    };
    return [...this.paths.entries()]
      .map(([nodeIp, s]) => ({ nodeIp, dispatch: s.dispatch, reason: s.reason, key: order(nodeIp) }))
      .sort((a, b) => a.key[0] - b.key[0] || (a.key[1] < b.key[1] ? -1 : a.key[1] > b.key[1] ? 1 : 0))
      .map(({ nodeIp, dispatch, reason }) => ({ nodeIp, dispatch, reason }));
  }
}
