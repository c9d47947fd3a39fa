// Unix socket paths named by the config (control.socket, bgp.gobgp.socket):
// a stale socket left by a crashed process is removed or replaced before
// listening, but only a socket — the path may name another file by mistake.
import { randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, renameSync, rmSync } from 'node:fs';
import type { Server } from 'node:net';
import { dirname, join } from 'node:path';

/** Removes a unix socket at `path`; true when nothing else is there (a missing path too). */
export function removeStaleSocket(path: string): boolean {
  if (!socketOrNothing(path)) return false;
  rmSync(path, { force: true });
  return true;
}

/** Whether `path` is free for a socket: missing, or a socket (a stale one, or another process's). */
export function socketOrNothing(path: string): boolean {
  try {
    return lstatSync(path).isSocket();
  } catch {
    return true;
  }
}

/** The socket file a server made: it is ours to remove only while the path still names it. */
export interface SocketFile {
  path: string;
  dev: number;
  ino: number;
}

/**
 * Makes `server` listen on a unix socket at `path` with `mode`, replacing
 * whatever socket is there in one step (clients never find the path missing
 * or with the wrong mode). The server is bound at a temporary name in the
 * same directory and renamed into place, because libuv unlinks the path a
 * server listened on when that server closes: listening at `path` itself,
 * an agent stopping after its successor had bound the path (a handover)
 * removed the successor's socket. Remove it with removeOwnSocket().
 */
export async function listenReplacing(server: Server, path: string, mode: number): Promise<SocketFile> {
  const temp = join(dirname(path), `.${randomBytes(4).toString('hex')}`);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(temp, () => {
      server.off('error', reject);
      resolve();
    });
  });
  try {
    chmodSync(temp, mode);
    const st = lstatSync(temp);
    renameSync(temp, path);
    return { path, dev: st.dev, ino: st.ino };
  } catch (e) {
    server.close();
    rmSync(temp, { force: true });
    throw e;
  }
}

/** Removes the socket `own` names, unless its path now names another file (a successor's socket). */
export function removeOwnSocket(own: SocketFile): void {
  let st;
  try {
    st = lstatSync(own.path);
  } catch {
    return;
  }
  if (st.isSocket() && st.dev === own.dev && st.ino === own.ino) rmSync(own.path, { force: true });
}
