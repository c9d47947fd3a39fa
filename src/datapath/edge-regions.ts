// Region allocator for the Maglev slot array (edge_ring): a binary buddy
// allocator over 2^order slots. Every service owns one block of 2^cls slots
// (cls from chooseTableSize), so blocks are naturally aligned, a freed block
// merges back with its buddy, and churn cannot fragment the array beyond
// what buddy allocation allows. Freed blocks go to the back of their free
// list, so a region is not handed to another service right away (a packet
// already past the service lookup may still read the old region).

export class RegionAllocator {
  readonly order: number;
  /** Free blocks of 2^k slots: membership (freeSet) plus FIFO order
   * (freeQueue, may hold stale offsets that were merged or reserved since;
   * they are skipped). Sets alone degrade: V8 iterates over deleted
   * entries, so "take the first" becomes linear. */
  private readonly freeSet: Array<Set<number>>;
  private readonly freeQueue: Array<{ q: number[]; head: number }>;
  private readonly used = new Map<number, number>(); // offset → order

  constructor(order: number) {
    if (!Number.isInteger(order) || order < 0 || order > 30) throw new Error(`region allocator order ${order} must be 0..30`);
    this.order = order;
    this.freeSet = Array.from({ length: order + 1 }, () => new Set<number>());
    this.freeQueue = Array.from({ length: order + 1 }, () => ({ q: [], head: 0 }));
    this.addFree(order, 0);
  }

  private addFree(k: number, off: number): void {
    this.freeSet[k]!.add(off);
    this.freeQueue[k]!.q.push(off);
  }

  private takeFree(k: number): number | null {
    const set = this.freeSet[k]!;
    if (set.size === 0) return null;
    const fq = this.freeQueue[k]!;
    while (fq.head < fq.q.length) {
      const off = fq.q[fq.head++]!;
      if (set.delete(off)) {
        if (fq.head > 1024 && fq.head * 2 > fq.q.length) {
          fq.q.splice(0, fq.head);
          fq.head = 0;
        }
        return off;
      }
    }
    throw new Error('region allocator: free set and queue disagree');
  }

  /** Allocates a block of 2^k slots; returns its offset, or null when full. */
  alloc(k: number): number | null {
    if (!Number.isInteger(k) || k < 0 || k > this.order) throw new Error(`region order ${k} out of range 0..${this.order}`);
    let j = k;
    while (j <= this.order && this.freeSet[j]!.size === 0) j++;
    if (j > this.order) return null;
    const off = this.takeFree(j)!;
    // Split down to k, keeping the lower half each time.
    while (j > k) {
      j--;
      this.addFree(j, off + 2 ** j);
    }
    this.used.set(off, k);
    return off;
  }

  /** Marks a specific aligned block as used (rebuilding state from pinned maps). */
  reserve(off: number, k: number): void {
    if (off % 2 ** k !== 0) throw new Error(`region ${off} is not aligned to 2^${k}`);
    // Find the free block containing it.
    let j = k;
    let base = off;
    while (j <= this.order && !this.freeSet[j]!.has(base)) {
      j++;
      base = off - (off % 2 ** j);
    }
    if (j > this.order) throw new Error(`region ${off} (2^${k} slots) overlaps a used region`);
    this.freeSet[j]!.delete(base);
    while (j > k) {
      j--;
      const half = 2 ** j;
      if (off >= base + half) {
        this.addFree(j, base);
        base += half;
      } else {
        this.addFree(j, base + half);
      }
    }
    this.used.set(off, k);
  }

  release(off: number): void {
    let k = this.used.get(off);
    if (k === undefined) throw new Error(`region ${off} is not allocated`);
    this.used.delete(off);
    let base = off;
    while (k < this.order) {
      const buddy = base ^ (2 ** k);
      if (!this.freeSet[k]!.has(buddy)) break;
      this.freeSet[k]!.delete(buddy);
      base = Math.min(base, buddy);
      k++;
    }
    this.addFree(k, base);
  }

  /** Slots currently allocated. */
  usedSlots(): number {
    let n = 0;
    for (const k of this.used.values()) n += 2 ** k;
    return n;
  }
}

/** FIFO id allocator over [first, limit): fresh ids first, then the oldest freed. */
export class IdAllocator {
  private next: number;
  private readonly freed: number[] = [];
  private head = 0;
  private readonly inUse = new Set<number>();

  constructor(
    readonly first: number,
    readonly limit: number,
    readonly what: string,
  ) {
    this.next = first;
  }

  alloc(): number {
    let id: number;
    if (this.next < this.limit) {
      id = this.next++;
      while (this.inUse.has(id) && this.next < this.limit) id = this.next++;
      if (!this.inUse.has(id)) {
        this.inUse.add(id);
        return id;
      }
    }
    while (this.head < this.freed.length) {
      id = this.freed[this.head++]!;
      if (this.head > 4096 && this.head * 2 > this.freed.length) {
        this.freed.splice(0, this.head);
        this.head = 0;
      }
      if (!this.inUse.has(id)) {
        this.inUse.add(id);
        return id;
      }
    }
    throw new Error(`out of ${this.what} ids (limit ${this.limit - this.first})`);
  }

  /** Marks an id as used (rebuilding state). */
  reserve(id: number): void {
    if (id < this.first || id >= this.limit) throw new Error(`${this.what} id ${id} out of range`);
    this.inUse.add(id);
  }

  release(id: number): void {
    if (!this.inUse.delete(id)) throw new Error(`${this.what} id ${id} is not allocated`);
    this.freed.push(id);
  }

  get size(): number {
    return this.inUse.size;
  }
}
