// bench/lib/baseline.ts: `bench:datapath --baseline REF` builds REF in a
// temporary git worktree, which must be gone afterwards whatever happened.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../../src/assets.js';
import { buildBaseline, importEdgeDatapath, importNodeDatapath, resolveCommit } from '../../bench/lib/baseline.js';

const repo = repoRoot();
/** Baseline worktrees registered in the repository (other worktrees come and go with other work). */
const worktrees = (): string[] =>
  execFileSync('git', ['-C', repo, 'worktree', 'list', '--porcelain'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.startsWith('worktree ') && l.includes('edgelb-baseline-'));

test.serial('a revision that is not a commit is refused by name, before anything is made', async (t) => {
  const before = worktrees();
  await t.throwsAsync(buildBaseline('no-such-revision-xyz', { repo }), { message: /baseline 'no-such-revision-xyz' is not a commit/ });
  t.throws(() => resolveCommit(repo, '--output=x'), { message: /not a git revision name/ });
  t.deepEqual(worktrees(), before);
});

test.serial('a failing build names REF and the command, and leaves no worktree behind', async (t) => {
  const before = worktrees();
  const err = await t.throwsAsync(buildBaseline('HEAD', { repo, buildCommand: ['sh', '-c', 'echo broken >&2; exit 3'] }));
  t.regex(err!.message, /baseline HEAD: sh -c .* failed:\nbroken/);
  t.deepEqual(worktrees(), before);
});

test.serial("HEAD: its edge.o is built in the worktree and its own EdgeDatapath module loads; remove() deletes the worktree", async (t) => {
  const before = worktrees();
  const b = await buildBaseline('HEAD', { repo, buildCommand: ['make', '-s', '-C', 'bpf', 'out/edge.o'] });
  try {
    t.is(b.commit, resolveCommit(repo, 'HEAD'));
    t.true(existsSync(`${b.bpfOut}/edge.o`));
    t.true(worktrees().includes(`worktree ${b.dir}`));
    const mod = await importEdgeDatapath(b.modulePath, 'baseline HEAD');
    t.is(typeof mod.EdgeDatapath.open, 'function');
    // Its node datapath is bundled too: the bench configures REF's node.o with REF's own code.
    t.truthy(b.nodeModulePath);
    const nodeMod = await importNodeDatapath(b.nodeModulePath!);
    t.is(typeof nodeMod?.NodeDatapath.open, 'function');
  } finally {
    b.remove();
  }
  t.false(existsSync(b.dir));
  t.deepEqual(worktrees(), before);
});

test('a baseline whose node datapath predates NodeDatapath.open (bbabe23 had load and no applyServices) is measured as a bare node.o, not refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-node-mod-'));
  try {
    const old = join(dir, 'old.mjs');
    writeFileSync(old, 'export class NodeDatapath { static load() { return {}; } }\n');
    t.is(await importNodeDatapath(old), null);
    const none = join(dir, 'none.mjs');
    writeFileSync(none, 'export const nothing = 1;\n');
    t.is(await importNodeDatapath(none), null);
    const cur = join(dir, 'cur.mjs');
    writeFileSync(cur, 'export class NodeDatapath { static open() { return {}; } applyServices() {} trustEdgeNeighbour() {} }\n');
    t.is(typeof (await importNodeDatapath(cur))?.NodeDatapath.open, 'function');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
