// A baseline revision for same-run comparisons (`bench:datapath --baseline REF`).
//
// REF's eBPF objects are built in a temporary git worktree (`make -C bpf`
// there) and REF's own edge datapath code (src/datapath/edge-datapath.ts and
// what it imports: map layouts, Maglev, config encoding) is bundled next to
// them. The benchmark then loads REF's edge.o through REF's own
// EdgeDatapath, so the baseline is configured exactly the way that revision
// configures itself: a baseline whose map keys, values or flags differ from
// today's (a new connection-table layout, IPv6 keys) is still measured
// right, with no layout knowledge in the benchmark. Only EdgeDatapath's
// public surface is assumed (open, applyServices, reconfigure, program,
// counters, memlockBytes, close); a revision without it is refused by name.
// REF's node datapath (src/datapath/node-datapath.ts) is bundled the same way
// when REF has one, so that its node.o is configured by its own code too (a
// bare node.o trusts no edge and rewrites nothing since the trust boundary).
//
// Both revisions use this checkout's native addon (EDGELB_BPF_LOADER): the
// addon only ever grows (native/bpf-loader-napi is additive), so an older
// loader finds every call it makes.
//
// The worktree is removed by remove(), and by buildBaseline itself when a
// step fails; nothing of it is needed once the objects are in the kernel.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DesiredService } from '../../src/model/types.js';

/** What the benchmark needs of a program: its fd (it measures through the current addon). */
export interface ProgramLike {
  readonly fd: number;
}

/** EdgeDatapath's public surface as the benchmark uses it, in any revision. */
export interface EdgeDatapathLike {
  program(hook?: 'xdp' | 'tc'): ProgramLike;
  applyServices(desired: readonly DesiredService[]): unknown;
  reconfigure(patch: Record<string, unknown>): void;
  memlockBytes(): number;
  counters(): { services: { service: string; packets: number }[] };
  close(): void;
  /** Revisions with the edge's IPv6 path (absent before it). */
  servesIpv6?(): boolean;
  map?(name: string): { memlockBytes(): number };
}

export interface EdgeDatapathModule {
  EdgeDatapath: { open(opts: Record<string, unknown>): EdgeDatapathLike };
}

/** NodeDatapath's public surface as the benchmark uses it (open, applyServices, trustEdgeNeighbour, flows, close). */
export interface NodeDatapathLike {
  readonly ingress: ProgramLike;
  readonly egress: ProgramLike;
  applyServices(services: readonly DesiredService[]): unknown;
  trustEdgeNeighbour(ip: string, mac: string): void;
  flows(): unknown[];
  close(): void;
}

export interface NodeDatapathModule {
  NodeDatapath: { open(opts: Record<string, unknown>): NodeDatapathLike };
}

export interface BaselineBuild {
  /** The revision as given. */
  ref: string;
  /** Its full commit hash. */
  commit: string;
  /** The temporary worktree (gone after remove()). */
  dir: string;
  /** REF's bpf/out. */
  bpfOut: string;
  /** REF's edge datapath module, bundled into the worktree (import it before remove()). */
  modulePath: string;
  /** REF's node datapath module, bundled the same way; null when REF has none. */
  nodeModulePath: string | null;
  remove(): void;
}

export interface BaselineOptions {
  /** Repository to take REF from (default: the one this file is in). */
  repo: string;
  /** Build command run in the worktree (default make -s -C bpf); tests swap it. */
  buildCommand?: string[];
  say?: (line: string) => void;
}

function git(repo: string, args: string[]): string {
  try {
    return execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`git ${args.join(' ')}: ${(err.stderr ?? err.message).trim()}`, { cause: e });
  }
}

/** Full hash of REF, or an error naming REF. */
export function resolveCommit(repo: string, ref: string): string {
  if (!/^[\w./@^~{}-]+$/.test(ref) || ref.startsWith('-')) throw new Error(`baseline '${ref}' is not a git revision name`);
  try {
    return git(repo, ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`]);
  } catch {
    throw new Error(`baseline '${ref}' is not a commit in ${repo}`);
  }
}

/** Removes a worktree made by buildBaseline; safe to call twice or on a half-made one. */
function removeWorktree(repo: string, dir: string): void {
  try {
    git(repo, ['worktree', 'remove', '--force', dir]);
  } catch {
    // not (or no longer) registered: fall through to the directory and the registry
  }
  rmSync(dir, { recursive: true, force: true });
  try {
    git(repo, ['worktree', 'prune']);
  } catch {
    // nothing to prune
  }
}

/**
 * Checks REF out into a temporary worktree, builds its eBPF objects and
 * bundles its edge datapath module. The caller must call remove() (in a
 * finally); on failure here the worktree is already gone.
 */
export async function buildBaseline(ref: string, opts: BaselineOptions): Promise<BaselineBuild> {
  const say = opts.say ?? (() => undefined);
  const repo = opts.repo;
  const commit = resolveCommit(repo, ref);
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-baseline-'));
  let removed = false;
  const remove = (): void => {
    if (removed) return;
    removed = true;
    removeWorktree(repo, dir);
  };
  try {
    git(repo, ['worktree', 'add', '--detach', dir, commit]);
    const cmd = opts.buildCommand ?? ['make', '-s', '-C', 'bpf'];
    say(`baseline ${ref} (${commit.slice(0, 12)}): ${cmd.join(' ')} in ${dir}`);
    try {
      execFileSync(cmd[0]!, cmd.slice(1), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], timeout: 10 * 60_000 });
    } catch (e) {
      const err = e as { stderr?: Buffer; message: string };
      const tail = (err.stderr?.toString() ?? err.message).trim().split('\n').slice(-5).join('\n');
      throw new Error(`baseline ${ref}: ${cmd.join(' ')} failed:\n${tail}`, { cause: e });
    }
    const bpfOut = join(dir, 'bpf', 'out');
    if (!existsSync(join(bpfOut, 'edge.o'))) throw new Error(`baseline ${ref}: the build made no bpf/out/edge.o`);
    const entry = join(dir, 'src', 'datapath', 'edge-datapath.ts');
    if (!existsSync(entry)) throw new Error(`baseline ${ref}: it has no src/datapath/edge-datapath.ts`);
    // npm packages stay imports (packages: 'external'): REF resolves them
    // from this checkout's node_modules (pino, since the edge datapath
    // takes its silent default logger from src/log).
    if (existsSync(join(repo, 'node_modules')) && !existsSync(join(dir, 'node_modules'))) symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'));
    // Bundled under dist/ of the worktree, so that REF's loader finds its
    // repository root (bpf/Makefile above it) the way it does at home.
    const modulePath = join(dir, 'dist', 'src', 'datapath', 'edge-datapath.js');
    const { build } = await import('esbuild');
    await build({ entryPoints: [entry], outfile: modulePath, bundle: true, platform: 'node', format: 'esm', target: 'node22', packages: 'external', logLevel: 'silent' });
    const nodeEntry = join(dir, 'src', 'datapath', 'node-datapath.ts');
    let nodeModulePath: string | null = null;
    if (existsSync(nodeEntry)) {
      nodeModulePath = join(dir, 'dist', 'src', 'datapath', 'node-datapath.js');
      await build({ entryPoints: [nodeEntry], outfile: nodeModulePath, bundle: true, platform: 'node', format: 'esm', target: 'node22', packages: 'external', logLevel: 'silent' });
    }
    return { ref, commit, dir, bpfOut, modulePath, nodeModulePath, remove };
  } catch (e) {
    remove();
    throw e;
  }
}

/** Imports a bundled EdgeDatapath module and checks it has the surface the benchmark uses. */
export async function importEdgeDatapath(modulePath: string, what: string): Promise<EdgeDatapathModule> {
  const mod = (await import(pathToFileURL(modulePath).href)) as Partial<EdgeDatapathModule>;
  if (typeof mod.EdgeDatapath?.open !== 'function') throw new Error(`${what}: its edge-datapath module exports no EdgeDatapath.open`);
  return mod as EdgeDatapathModule;
}

/** Imports a bundled NodeDatapath module and checks it has the surface the benchmark uses. */
/**
 * Imports a bundled NodeDatapath module. null when REF's module has not the
 * surface the benchmark drives (older revisions, e.g. bbabe23, had
 * `NodeDatapath.load` and no applyServices): the bench then measures REF's
 * node.o as a bare object, as for a REF without the module.
 */
export async function importNodeDatapath(modulePath: string): Promise<NodeDatapathModule | null> {
  const mod = (await import(pathToFileURL(modulePath).href)) as { NodeDatapath?: { open?: unknown; prototype?: Record<string, unknown> } };
  const cls = mod.NodeDatapath;
  const usable = typeof cls?.open === 'function' && typeof cls.prototype?.applyServices === 'function' && typeof cls.prototype?.trustEdgeNeighbour === 'function';
  return usable ? (mod as unknown as NodeDatapathModule) : null;
}
