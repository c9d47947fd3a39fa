// Network namespaces for the loader: run synchronous code with the calling
// thread inside one (attach, detach and ifindex lookups then act there),
// and remember where an attachment was made, since an ifindex names another
// device in another namespace.
import { closeSync, openSync, statSync } from 'node:fs';
import { native } from './binding.js';

/**
 * Where an attachment was made. An ifindex means nothing outside its network
 * namespace (the same number is another device elsewhere), so detach()
 * re-enters the namespace it was attached in, or refuses.
 */
export interface NetnsRef {
  /** Inode of the namespace (identity). */
  ino: number;
  /** The inNetns() target in effect at attach time; null outside inNetns(). */
  path: string | null;
}

let inNetnsTarget: string | null = null;

function netnsIno(): number {
  return statSync('/proc/thread-self/ns/net').ino;
}

export function currentNetns(): NetnsRef {
  return { ino: netnsIno(), path: inNetnsTarget };
}

export function inNetnsOf<T>(ref: NetnsRef, what: string, fn: () => T): T {
  if (netnsIno() === ref.ino) return fn();
  if (ref.path) return inNetns(ref.path, fn);
  throw new Error(`${what}: attached in another network namespace (inode ${ref.ino}); call it inside inNetns()`);
}

/**
 * Runs fn with the calling thread inside a network namespace (a name under
 * /run/netns, or a path such as /proc/PID/ns/net) and moves back afterwards.
 * fn must be synchronous: anything it leaves pending would run outside.
 */
export function inNetns<T>(netns: string, fn: () => T): T {
  const target = netns.includes('/') ? netns : `/run/netns/${netns}`;
  const back = openSync('/proc/thread-self/ns/net', 'r');
  const outerTarget = inNetnsTarget;
  let result: T;
  try {
    const fd = openSync(target, 'r');
    try {
      native().setNetns(fd);
    } finally {
      closeSync(fd);
    }
    inNetnsTarget = target;
    try {
      result = fn();
    } finally {
      inNetnsTarget = outerTarget;
      native().setNetns(back);
    }
  } finally {
    closeSync(back);
  }
  if (result instanceof Promise) throw new TypeError('inNetns: fn must be synchronous (it returned a Promise)');
  return result;
}
