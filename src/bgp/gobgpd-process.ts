// Starts gobgpd for development and tests (`bgp.gobgp.manage: true`); on the
// appliance systemd runs it (systemd/gobgpd.service) and this module is unused.
//
// Lifetime rule: gobgpd holds the announced paths in memory, so the agent must
// never take it down just because the agent itself stops or restarts — that
// would withdraw every VIP. gobgpd is therefore spawned *detached* (own
// process group, not killed with the agent), its pid is recorded next to the
// socket, and a later agent adopts a gobgpd that already answers on the
// socket instead of starting a second one. Only an explicit `stop()` (tests,
// `edgelb` shutdown with stopGobgpd requested) ends it.
import { spawn } from 'node:child_process';
import { removeStaleSocket } from '../socket-path.js';
import { closeSync, existsSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { killAndWait, livePidFrom, pidAlive, processStartTime } from './daemon-files.js';
import { dirname } from 'node:path';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/logger.js';
import { GobgpClient } from './gobgp-client.js';

export interface GobgpdProcessOptions {
  binary: string;
  socket: string;
  protoDir?: string;
  /** Command prefix, e.g. ['ip', 'netns', 'exec', 'edge1'] in tests. */
  wrap?: string[];
  /** Optional TOML config file (-f); without it the agent configures everything over the API. */
  configFile?: string;
  logFile?: string;
  logLevel?: string;
  logger?: Logger;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class GobgpdProcess {
  private readonly opts: GobgpdProcessOptions;
  private readonly log: Logger;
  pid: number | undefined;
  /** When `pid` started (processStartTime): with it, `pid` names our gobgpd and no later process. */
  private startTime: string | undefined;
  /** True when this object found a running gobgpd instead of starting one. */
  adopted = false;

  constructor(opts: GobgpdProcessOptions) {
    this.opts = opts;
    this.log = opts.logger ?? silentLogger();
  }

  get pidFile(): string {
    return `${this.opts.socket}.pid`;
  }

  private recordedPid(): number | undefined {
    return livePidFrom(this.pidFile);
  }

  /** The recorded pid when it is a live gobgpd (a pid file can outlive its process, and pids are reused). */
  private recordedGobgpd(): number | undefined {
    return livePidFrom(this.pidFile, this.opts.binary);
  }

  private adopt(pid: number | undefined): void {
    this.pid = pid;
    this.startTime = pid === undefined ? undefined : processStartTime(pid);
    this.adopted = true;
    this.log.info({ socket: this.opts.socket, pid }, 'adopting running gobgpd');
  }

  /**
   * Start gobgpd unless one already runs; resolve once its API answers. A
   * recorded gobgpd that is alive but slow to answer (a loaded machine, a
   * large RIB) is waited for, never replaced: a second gobgpd would remove
   * the first one's socket — leaving it announcing, unreachable — and could
   * not bind the BGP port itself.
   */
  async start(timeoutMs = 10000): Promise<void> {
    const probe = new GobgpClient({ socket: this.opts.socket, protoDir: this.opts.protoDir, timeoutMs: 500 });
    try {
      if (existsSync(this.opts.socket) && (await probe.reachable(500))) {
        this.adopt(this.recordedPid());
        return;
      }
      const running = this.recordedGobgpd();
      if (running !== undefined) {
        this.log.warn({ socket: this.opts.socket, pid: running }, 'gobgpd runs but does not answer yet; waiting for it');
        const deadline = Date.now() + timeoutMs;
        while (Date.now() < deadline && pidAlive(running)) {
          if (existsSync(this.opts.socket) && (await probe.reachable(500))) {
            this.adopt(running);
            return;
          }
          await sleep(100);
        }
        if (pidAlive(running)) {
          throw new Error(`gobgpd (pid ${running}) runs but does not answer on ${this.opts.socket} within ${timeoutMs} ms; not starting a second one`);
        }
        this.log.warn({ pid: running }, 'the unanswering gobgpd exited; starting a new one');
      }
      // A stale socket from a crashed gobgpd makes its successor fail to listen.
      if (!removeStaleSocket(this.opts.socket)) throw new Error(`bgp.gobgp.socket ${this.opts.socket} exists and is not a socket; not removing it (name a path for the socket)`);
      mkdirSync(dirname(this.opts.socket), { recursive: true });
      // Some gobgpd releases (3.36) ignore --pprof-disable; a pprof address no
      // interface can hold makes their listener fail instead (systemd/gobgpd.service).
      const args = ['-p', '--pprof-disable', '--pprof-host=0.0.0.1:6060', '--api-hosts', `unix://${this.opts.socket}`];
      if (this.opts.configFile) args.push('-f', this.opts.configFile);
      if (this.opts.logLevel) args.push('-l', this.opts.logLevel);
      const wrap = this.opts.wrap ?? [];
      const cmd = [...wrap, this.opts.binary, ...args];
      const out = this.opts.logFile ? openSync(this.opts.logFile, 'a') : 'ignore';
      const child = spawn(cmd[0] as string, cmd.slice(1), { detached: true, stdio: ['ignore', out, out] });
      if (typeof out === 'number') closeSync(out);
      child.unref();
      if (child.pid === undefined) throw new Error(`could not start ${this.opts.binary}`);
      // `ip netns exec` execs the command, so the pid is gobgpd's own.
      this.pid = child.pid;
      this.startTime = processStartTime(child.pid);
      this.adopted = false;
      writeFileSync(this.pidFile, `${child.pid}\n`);
      let exited: number | null | undefined;
      child.once('exit', (code) => (exited = code));
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (exited !== undefined) throw new Error(`gobgpd exited during start (code ${exited}); see ${this.opts.logFile ?? 'its output'}`);
        if (existsSync(this.opts.socket) && (await probe.reachable(300))) {
          this.log.info({ socket: this.opts.socket, pid: this.pid }, 'gobgpd started');
          return;
        }
        await sleep(50);
      }
      throw new Error(`gobgpd did not answer on ${this.opts.socket} within ${timeoutMs} ms`);
    } finally {
      probe.close();
    }
  }

  /** SIGTERM (then SIGKILL) the gobgpd we started or adopted, and wait for it to exit. */
  async stop(timeoutMs = 5000): Promise<void> {
    const pid = this.pid ?? this.recordedGobgpd();
    if (pid === undefined) return;
    await killAndWait(pid, timeoutMs, pid === this.pid ? this.startTime : undefined);
    this.pid = undefined;
    this.startTime = undefined;
    rmSync(this.pidFile, { force: true });
    removeStaleSocket(this.opts.socket);
  }

  /** Hard kill without cleanup, as a crash would (tests). */
  kill(): void {
    if (this.running()) process.kill(this.pid!, 'SIGKILL');
  }

  /** Our gobgpd's process exists (its pid not yet reused by another). */
  running(): boolean {
    return this.pid !== undefined && this.startTime !== undefined && processStartTime(this.pid) === this.startTime;
  }
}
