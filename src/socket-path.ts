// Unix socket paths named by the config (control.socket, bgp.gobgp.socket):
// a stale socket left by a crashed process is removed before listening, but
// only a socket — the path may name another file by mistake.
import { lstatSync, rmSync } from 'node:fs';

/** Removes a unix socket at `path`; true when nothing else is there (a missing path too). */
export function removeStaleSocket(path: string): boolean {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return true;
  }
  if (!st.isSocket()) return false;
  rmSync(path, { force: true });
  return true;
}
