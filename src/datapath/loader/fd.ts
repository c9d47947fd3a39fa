// The fd behind every map and program wrapper, and fd-level helpers. An fd
// is either the wrapper's own (opened from bpffs, by id, or created: closed
// by close(), or by the reaper when the wrapper is collected first) or its
// object's (valid until the object is closed).
import { readFileSync, unlinkSync } from 'node:fs';
import { native } from './binding.js';

/** Bytes of locked memory charged for a map or program fd (from /proc/self/fdinfo). */
export function fdMemlock(fd: number): number {
  const text = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const m = /^memlock:\s+(\d+)/m.exec(text);
  if (!m?.[1]) throw new Error(`no memlock line in /proc/self/fdinfo/${fd}`);
  return Number(m[1]);
}

/** Removes a bpffs pin; returns false when nothing was pinned there. */
export function unpin(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

// fds this module owns (opened from bpffs / by id) are closed if their
// wrapper is collected without close(); close() unregisters first.
const fdReaper = new FinalizationRegistry<number>((fd) => {
  try {
    native().closeFd(fd);
  } catch {
    // already closed: nothing to reclaim
  }
});

/** Something that holds fds and may be closed (an object, or an owned pinned map/program). */
export interface FdOwner {
  readonly closed: boolean;
  readonly label: string;
}

/**
 * The fd behind a map or program wrapper: its own (closed by close(), or by
 * fdReaper if the wrapper is collected first) or its object's (valid until
 * the object is closed).
 */
export abstract class FdHandle {
  readonly #fd: number;
  readonly #owner: FdOwner | null;
  #closed = false;
  readonly #token = {};

  protected constructor(fd: number, owner: FdOwner | null) {
    this.#fd = fd;
    this.#owner = owner;
    if (!owner) fdReaper.register(this, fd, this.#token);
  }

  /** "map NAME" / "program NAME", for errors. */
  protected abstract get what(): string;

  get fd(): number {
    if (this.#closed) throw new Error(`${this.what} is closed`);
    if (this.#owner?.closed) throw new Error(`${this.what} belongs to ${this.#owner.label}, which is closed`);
    return this.#fd;
  }

  get closed(): boolean {
    return this.#closed || (this.#owner?.closed ?? false);
  }

  /** Pins it at path (on bpffs); it lives on after every fd is closed. */
  pin(path: string): void {
    native().objPin(this.fd, path);
  }

  /** Closes an owned fd; no-op for one that belongs to an object. */
  close(): void {
    if (this.#closed || this.#owner) return;
    this.#closed = true;
    fdReaper.unregister(this.#token);
    native().closeFd(this.#fd);
  }
}

/** Wraps an fd just opened (bpffs, by id, created); closes it if wrapping fails. */
export function adoptFd<T>(fd: number, wrap: (fd: number) => T): T {
  try {
    return wrap(fd);
  } catch (e) {
    native().closeFd(fd);
    throw e;
  }
}
