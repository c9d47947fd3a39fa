// Pinned maps only outlive the agent on a bpffs. Under `ip netns exec`,
// /sys is remounted and /sys/fs/bpf becomes a plain sysfs directory: pins
// there fail (libbpf may even hang), so check first and say what to do.
import { existsSync, statfsSync } from 'node:fs';
import { dirname } from 'node:path';

export const BPF_FS_MAGIC = 0xcafe4a11;

/** The nearest existing ancestor of `path` (or itself). */
function existingAncestor(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}

export function isOnBpffs(path: string): boolean {
  try {
    return statfsSync(existingAncestor(path)).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/** Throws an operator-facing error unless `pinPath` lives on a bpffs. */
export function requireBpffs(pinPath: string, what = 'datapath.pinPath'): void {
  if (isOnBpffs(pinPath)) return;
  throw new Error(
    `${what} ${pinPath} is not on a BPF filesystem, so pinned maps could not survive a restart. ` +
      `Mount one (mount -t bpf bpf ${existingAncestor(pinPath)}) or choose a directory on one; ` +
      `note that \`ip netns exec\` remounts /sys, hiding /sys/fs/bpf — use a bpffs mounted outside /sys there.`,
  );
}
