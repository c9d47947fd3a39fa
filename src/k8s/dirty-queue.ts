// The Services waiting to be recomputed, taken a bounded round at a time.
//
// The allocating edge takes them in allocation order (allocationOrder:
// Services with an address first, then oldest first). Sorting the whole
// set again for every round made a big change quadratic: at startup 10 000
// Services went out 200 a round, so 50 sorts of up to 10 000 keys, each
// building a rank object per key — bench:k8s's survival profile showed them
// as the largest source of objects V8 promoted (~16 MB), which is what
// grows its heap. The order is now kept until a key is added (an informer
// event, a retry, a freed address): whatever changes a Service's rank also
// marks it, so an order computed since the last addition is still right.

/** Sorts keys into the order they should be computed in. */
export type KeyOrder = (keys: string[]) => string[];

export class DirtyQueue {
  private readonly keys = new Set<string>();
  /** Bumped by every add: an order computed at an older version is stale. */
  private version = 0;
  private order: { keys: string[]; pos: number; version: number; by: KeyOrder } | null = null;

  get size(): number {
    return this.keys.size;
  }

  add(key: string): void {
    this.keys.add(key);
    this.version++;
  }

  /**
   * Removes and returns up to `max` keys: the first ones in `by`'s order
   * (computed again only if a key was added since, or `by` changed), or in
   * insertion order when `by` is null.
   */
  take(max: number, by: KeyOrder | null): string[] {
    const out: string[] = [];
    if (by === null) {
      this.order = null;
      for (const k of this.keys) {
        if (out.length >= max) break;
        out.push(k);
      }
    } else {
      if (this.order === null || this.order.version !== this.version || this.order.by !== by) {
        this.order = { keys: by([...this.keys]), pos: 0, version: this.version, by };
      }
      // Only take removes keys, and it moves past them: the rest of the
      // order is exactly the keys still waiting.
      const o = this.order;
      while (out.length < max && o.pos < o.keys.length) out.push(o.keys[o.pos++]!);
    }
    for (const k of out) this.keys.delete(k);
    return out;
  }
}
