// Network-namespace plumbing for the lab (and the tests and benchmarks that
// build their own topologies): commands run in a namespace, uniquely named
// namespaces, veth pairs, bridges, addresses, kernel routes, and a LIFO
// cleanup list that runs fully even when a step fails (delete what we made,
// nothing else).
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface RunResult {
  stdout: string;
  stderr: string;
}

/**
 * Multiplier for the lab's time bounds, from EDGELB_LAB_TIMEOUT_SCALE (≥ 1,
 * default 1). bench:e2e:vm runs the lab under QEMU TCG, where every process
 * start and TLS handshake takes many times longer; the bounds only guard
 * against hangs, so stretching them changes no measurement.
 */
export function timeoutScale(env: NodeJS.ProcessEnv = process.env): number {
  const s = Number(env.EDGELB_LAB_TIMEOUT_SCALE || 1);
  return Number.isFinite(s) && s >= 1 ? s : 1;
}

/** A time bound (ms) stretched by timeoutScale(). */
export const scaled = (ms: number): number => Math.round(ms * timeoutScale());

/** Run a command (no shell), `input` on its stdin; throws with the command line and stderr on failure. */
export async function run(cmd: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  const timeoutMs = scaled(opts.timeoutMs ?? 15000);
  if (opts.input !== undefined) return runWithInput(cmd, opts.input, timeoutMs);
  try {
    const { stdout, stderr } = await execFileP(cmd[0] as string, cmd.slice(1), { timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024 });
    return { stdout, stderr };
  } catch (e) {
    const err = e as Error & { stderr?: string; code?: number };
    throw new Error(`${cmd.join(' ')} failed (${err.code ?? '?'}): ${(err.stderr ?? err.message).trim()}`, { cause: e });
  }
}

// execFile cannot feed stdin; spawn does.
function runWithInput(argv: string[], input: string, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${argv.join(' ')} failed (${code ?? 'killed'}): ${stderr.trim()}`));
    });
    child.stdin.end(input);
  });
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
