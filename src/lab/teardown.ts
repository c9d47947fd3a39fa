// Removes a lab: its processes (by pid), namespaces, pinned maps and files,
// and labs whose owning test or demo process is gone.
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { run } from './netns.js';
import { checkPrefix } from './topology.js';
import { listLabs, loadState, removeState, STATE_DIR, type LabState } from './state.js';
import { alive, sameProcess, stopPid } from './procs.js';
import type { Say } from './handle.js';

/** Removes a lab: processes (by pid), namespaces, pinned maps, files. Returns what could not be removed. */
export async function labDown(prefix: string, say: Say = () => undefined): Promise<string[]> {
  checkPrefix(prefix);
  const problems: string[] = [];
  let state: LabState | null = null;
  try {
    state = loadState(prefix);
  } catch {
    /* no record: clean up by name below */
  }
  // 1. Our recorded processes, agents first (they stop their gobgpd/bfdd).
  const procs = (state?.processes ?? []).filter((x) => alive(x.pid) && sameProcess(x));
  const order = (n: string): number => (n.startsWith('agent-') ? 0 : n.startsWith('frr-') ? 2 : 1);
  for (const group of [0, 1, 2]) {
    await Promise.all(procs.filter((x) => order(x.name) === group).map((x) => stopPid(x.pid, x.name.startsWith('agent-') ? 'SIGQUIT' : 'SIGTERM', 4000)));
  }
  // 2. Anything else still inside the lab's namespaces (children such as gobgpd).
  const { stdout } = await run(['ip', 'netns', 'list']).catch(() => ({ stdout: '' }));
  const namespaces = new Set([...(state?.namespaces ?? []), ...stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(prefix))]);
  for (const ns of namespaces) {
    const pids = await run(['ip', 'netns', 'pids', ns]).then((r) => r.stdout.split(/\s+/).filter(Boolean).map(Number), () => [] as number[]);
    await Promise.all(pids.map((pid) => stopPid(pid, 'SIGTERM', 3000)));
    for (const pid of pids) for (const d of ['zebra', 'bgpd', 'bfdd']) rmSync(`/var/tmp/frr/${d}.${pid}`, { recursive: true, force: true });
  }
  // 2b. Processes outside any listed namespace that still belong to this lab
  // (a namespace deleted under a running daemon hides it from `ip netns
  // pids`): their command line names the lab's own directory.
  const labDir = state?.dir ?? join(STATE_DIR, prefix.slice(0, -1));
  const strays = readdirSync('/proc').filter((d) => /^\d+$/.test(d) && Number(d) !== process.pid).filter((d) => {
    try {
      return readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').some((arg) => arg.includes(`${labDir}/`));
    } catch {
      return false;
    }
  });
  await Promise.all(strays.map((d) => stopPid(Number(d), 'SIGTERM', 3000)));
  // 3. Namespaces (their interfaces, and with them the attached programs, go too).
  for (const ns of namespaces) {
    await run(['ip', 'netns', 'delete', ns]).catch((e: Error) => problems.push(`netns ${ns}: ${e.message}`));
  }
  // 4. Pinned maps and files.
  const bpffs = state?.bpffsDir ?? `/sys/fs/bpf/edgelb-lab-${prefix.slice(4, 8)}`;
  try {
    rmSync(bpffs, { recursive: true, force: true });
  } catch (e) {
    problems.push(`${bpffs}: ${(e as Error).message}`);
  }
  rmSync(state?.dir ?? join(STATE_DIR, prefix.slice(0, -1)), { recursive: true, force: true });
  removeState(prefix);
  say(`lab ${prefix} removed (${namespaces.size} namespaces)${problems.length ? `; problems: ${problems.join('; ')}` : ''}`);
  return problems;
}

/** Removes test/demo labs whose owning process is gone (a killed test run leaves them behind). */
export async function removeOrphanLabs(say: Say = () => undefined): Promise<string[]> {
  const removed: string[] = [];
  for (const prefix of listLabs()) {
    let st: LabState;
    try {
      st = loadState(prefix);
    } catch {
      continue;
    }
    if (st.owner && st.owner.kind !== 'cli' && !alive(st.owner.pid)) {
      await labDown(prefix, say);
      removed.push(prefix);
    }
  }
  return removed;
}
