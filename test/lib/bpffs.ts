/**
 * Test-unique pin directories on bpffs: /sys/fs/bpf/edgelb-test-<tag>-<pid>-<random>,
 * removed recursively on teardown. Mounts bpffs at /sys/fs/bpf first when it
 * is not mounted (it is shared by every network namespace).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { BPFFS_ROOT, ensureBpffs } from '../../src/lab/bpffs.js';

export { BPFFS_ROOT, bpffsMounted, ensureBpffs } from '../../src/lab/bpffs.js';

export interface PinDir {
  path: string;
  /** Removes the directory and everything pinned under it (idempotent). */
  remove(): void;
}

export function makePinDir(tag = 'test'): PinDir {
  if (!/^[a-zA-Z0-9_-]{1,40}$/.test(tag)) throw new Error(`pin dir tag '${tag}' must be 1-40 of [a-zA-Z0-9_-]`);
  ensureBpffs();
  const path = join(BPFFS_ROOT, `edgelb-test-${tag}-${process.pid}-${randomBytes(4).toString('hex')}`);
  mkdirSync(path);
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** A pin dir removed when the test ends (pass or fail). */
export function pinDirFor(t: ExecutionContext, tag = 'test'): string {
  const dir = makePinDir(tag);
  t.teardown(() => dir.remove());
  return dir.path;
}
