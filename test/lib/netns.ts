// Network-namespace lab plumbing for tests and benchmarks: uniquely named
// namespaces, veth pairs, bridges, and a LIFO cleanup list that runs fully
// even when a step fails (delete what we made, nothing else).
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

// Absolute: the project's node_modules/.bin (first on PATH under scripts/with-node) has an unrelated `nft`.
const NFT = '/usr/sbin/nft';

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Run a command (no shell); throws with the command line and stderr on failure. */
export async function run(cmd: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  try {
    const { stdout, stderr } = await execFileP(cmd[0] as string, cmd.slice(1), { timeout: opts.timeoutMs ?? 15000, maxBuffer: 256 * 1024 * 1024 });
    return { stdout, stderr };
  } catch (e) {
    const err = e as Error & { stderr?: string; code?: number };
    throw new Error(`${cmd.join(' ')} failed (${err.code ?? '?'}): ${(err.stderr ?? err.message).trim()}`, { cause: e });
  }
}

/** Run inside a namespace. */
export function nsRun(ns: string, cmd: string[], opts?: { timeoutMs?: number }): Promise<RunResult> {
  return run(['ip', 'netns', 'exec', ns, ...cmd], opts);
}

export function nsWrap(ns: string): string[] {
  return ['ip', 'netns', 'exec', ns];
}

/** Short random id; namespaces and links are named `<prefix><id>…` so parallel runs never collide. */
export function uniqueId(bytes = 3): string {
  return randomBytes(bytes).toString('hex');
}

export class Cleanup {
  private readonly steps: { what: string; fn: () => Promise<unknown> | unknown }[] = [];

  add(what: string, fn: () => Promise<unknown> | unknown): void {
    this.steps.push({ what, fn });
  }

  /** Run every step, last added first; returns the errors instead of stopping at the first. */
  async run(): Promise<Error[]> {
    const errors: Error[] = [];
    while (this.steps.length > 0) {
      const s = this.steps.pop()!;
      try {
        await s.fn();
      } catch (e) {
        errors.push(new Error(`cleanup ${s.what}: ${(e as Error).message}`));
      }
    }
    return errors;
  }
}

export async function createNetns(name: string, cleanup?: Cleanup): Promise<string> {
  if (name.length > 30) throw new Error(`netns name ${name} is too long`);
  await run(['ip', 'netns', 'add', name]);
  cleanup?.add(`netns ${name}`, () => deleteNetns(name));
  await nsRun(name, ['ip', 'link', 'set', 'lo', 'up']);
  return name;
}

export async function deleteNetns(name: string): Promise<void> {
  // Processes still inside keep the namespace alive but unnamed; callers stop them first.
  await run(['ip', 'netns', 'delete', name]).catch(() => undefined);
}

/** A veth pair with one end in each namespace (interface names ≤ 15 chars). */
export async function vethPair(nsA: string, ifA: string, nsB: string, ifB: string): Promise<void> {
  for (const n of [ifA, ifB]) if (n.length > 15) throw new Error(`interface name ${n} is longer than 15 characters`);
  const tmp = `v${uniqueId(4)}`;
  await run(['ip', 'link', 'add', tmp, 'type', 'veth', 'peer', 'name', `${tmp}p`]);
  await run(['ip', 'link', 'set', tmp, 'netns', nsA]);
  await run(['ip', 'link', 'set', `${tmp}p`, 'netns', nsB]);
  await nsRun(nsA, ['ip', 'link', 'set', tmp, 'name', ifA]);
  await nsRun(nsB, ['ip', 'link', 'set', `${tmp}p`, 'name', ifB]);
  await nsRun(nsA, ['ip', 'link', 'set', ifA, 'up']);
  await nsRun(nsB, ['ip', 'link', 'set', ifB, 'up']);
}

export async function addBridge(ns: string, name: string, address?: string): Promise<void> {
  await nsRun(ns, ['ip', 'link', 'add', name, 'type', 'bridge']);
  await nsRun(ns, ['ip', 'link', 'set', name, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0']);
  await nsRun(ns, ['ip', 'link', 'set', name, 'up']);
  if (address) await addAddress(ns, name, address);
}

export async function setMaster(ns: string, ifname: string, bridge: string): Promise<void> {
  await nsRun(ns, ['ip', 'link', 'set', ifname, 'master', bridge]);
}

export async function addAddress(ns: string, ifname: string, cidr: string): Promise<void> {
  await nsRun(ns, ['ip', 'addr', 'add', cidr, 'dev', ifname, ...(cidr.includes(':') ? ['nodad'] : [])]);
}

export async function sysctl(ns: string, key: string, value: string): Promise<void> {
  await nsRun(ns, ['sysctl', '-q', '-w', `${key}=${value}`]);
}

/** Drop every packet on an interface in both directions (a "blackholed uplink"), or undo it. */
export async function blackhole(ns: string, ifname: string, on: boolean): Promise<void> {
  const table = `elbbh_${ifname.replace(/[^a-zA-Z0-9]/g, '_')}`;
  if (on) {
    // One nft run (one transaction): both directions go dark at the same instant.
    const chains = (['ingress', 'egress'] as const).map(
      (hook) => `add chain netdev ${table} ${hook} { type filter hook ${hook} device "${ifname}" priority -500; policy drop; }`,
    );
    await nsRun(ns, [NFT, [`add table netdev ${table}`, ...chains].join('; ')]);
  } else {
    await nsRun(ns, [NFT, 'delete', 'table', 'netdev', table]).catch(() => undefined);
  }
}

export interface JsonRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  nexthops?: { gateway?: string; dev?: string; weight?: number }[];
}

/** The kernel's routes in a namespace (`ip -j route`), optionally for one destination. */
export async function kernelRoutes(ns: string, family: 4 | 6 = 4): Promise<JsonRoute[]> {
  const { stdout } = await nsRun(ns, ['ip', `-${family}`, '-j', 'route', 'show']);
  return stdout.trim() ? (JSON.parse(stdout) as JsonRoute[]) : [];
}

/** Gateways of the route to `dst` ("10.0.0.1" or "10.0.0.1/32"), sorted; [] when absent. */
export function gatewaysOf(routes: JsonRoute[], dst: string): string[] {
  const key = dst.replace(/\/(32|128)$/, '');
  const r = routes.find((x) => x.dst === key || x.dst === dst);
  if (!r) return [];
  if (r.nexthops) return r.nexthops.map((n) => n.gateway ?? n.dev ?? '').sort();
  return [r.gateway ?? r.dev ?? ''];
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a truthy value or `timeoutMs` passes (bounded; returns the last value). */
export async function waitFor<T>(fn: () => Promise<T> | T, timeoutMs: number, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await fn();
  while (!last && Date.now() < deadline) {
    await sleep(intervalMs);
    last = await fn();
  }
  return last;
}

export interface RouteEvent {
  kind: 'add' | 'del';
  dst: string;
  /** performance.now() when the line arrived. */
  at: number;
  line: string;
}

/**
 * Streams `ip monitor route` of a namespace and timestamps each change on
 * arrival — precise enough for ms-scale convergence measurements without
 * polling. `waitFor` resolves on the first event (past or future) matching.
 */
export class RouteMonitor {
  private readonly child: import('node:child_process').ChildProcess;
  private readonly events: RouteEvent[] = [];
  private readonly waiters: { pred: (e: RouteEvent) => boolean; resolve: (e: RouteEvent) => void }[] = [];
  private buf = '';
  listeners: ((e: RouteEvent) => void)[] = [];

  private constructor(child: import('node:child_process').ChildProcess) {
    this.child = child;
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      const at = performance.now();
      this.buf += chunk;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        this.onLine(line, at);
      }
    });
  }

  static async start(ns: string, family: 4 | 6 = 4): Promise<RouteMonitor> {
    const { spawn } = await import('node:child_process');
    const child = spawn('ip', ['netns', 'exec', ns, 'ip', `-${family}`, 'monitor', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const m = new RouteMonitor(child);
    await sleep(100); // let the netlink subscription open before callers act
    return m;
  }

  private onLine(line: string, at: number): void {
    const del = line.startsWith('Deleted ');
    const rest = del ? line.slice(8) : line;
    const dst = rest.split(' ')[0] ?? '';
    if (!dst || line.startsWith(' ') || line.startsWith('\t')) return;
    const e: RouteEvent = { kind: del ? 'del' : 'add', dst, at, line };
    this.events.push(e);
    if (this.events.length > 200000) this.events.splice(0, 100000);
    for (const l of this.listeners) l(e);
    for (let k = this.waiters.length - 1; k >= 0; k--) {
      const w = this.waiters[k]!;
      if (w.pred(e)) {
        this.waiters.splice(k, 1);
        w.resolve(e);
      }
    }
  }

  /** Next event (after `since`, a performance.now() value) matching pred; rejects after timeoutMs. */
  next(pred: (e: RouteEvent) => boolean, timeoutMs: number, since = 0): Promise<RouteEvent> {
    const past = this.events.find((e) => e.at >= since && pred(e));
    if (past) return Promise.resolve(past);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve: (e: RouteEvent) => (clearTimeout(timer), resolve(e)) };
      const timer = setTimeout(() => {
        const k = this.waiters.indexOf(w);
        if (k >= 0) this.waiters.splice(k, 1);
        reject(new Error(`no matching route event within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  stop(): void {
    this.child.kill('SIGTERM');
  }
}
