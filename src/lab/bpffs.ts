// The lab's pins live on the host's bpffs at /sys/fs/bpf (shared by every
// network namespace); mount it there first when the machine has not.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';

export const BPFFS_ROOT = '/sys/fs/bpf';

export function bpffsMounted(root = BPFFS_ROOT): boolean {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((line) => {
      const [, mountPoint, fsType] = line.split(' ');
      return mountPoint === root && fsType === 'bpf';
    });
}

export function ensureBpffs(root = BPFFS_ROOT): void {
  if (bpffsMounted(root)) return;
  mkdirSync(root, { recursive: true });
  execFileSync('mount', ['-t', 'bpf', 'bpf', root], { stdio: 'pipe' });
}
