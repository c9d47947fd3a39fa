// Small lists that thousands of cached objects hold alike (a Service's
// ports, its IP families, an address user's ports): one frozen copy of each
// distinct list instead of one per object. Used by the agent's caches
// (src/k8s/trim.ts) and the address allocator (src/ipam). Lists held alike
// compare by reference first (sameList).

/** Distinct lists kept per cache; past that a list is frozen but not shared. */
const MAX_LISTS = 10_000;

export class SharedLists<T> {
  private readonly lists = new Map<string, readonly T[]>();

  /**
   * The shared copy of the list named `key` (a digest of its content);
   * `make` builds its items on a miss only. Items are copied and frozen.
   */
  get(key: string, make: () => readonly T[]): readonly T[] {
    let have = this.lists.get(key);
    if (!have) {
      have = Object.freeze(make().map((x) => (typeof x === 'object' && x !== null ? Object.freeze({ ...x }) : x)));
      if (this.lists.size < MAX_LISTS) this.lists.set(key, have);
    }
    return have;
  }
}

/** Whether two lists hold the same items in the same order (`same` per item, === by default); one shared list is the same at once. */
export function sameList<T>(a: readonly T[], b: readonly T[], same: (x: T, y: T) => boolean = (x, y) => x === y): boolean {
  return a === b || (a.length === b.length && a.every((x, i) => same(x, b[i]!)));
}
