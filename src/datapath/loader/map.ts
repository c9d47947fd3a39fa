// BpfMap: a map of a loaded object, pinned on bpffs, opened by id or
// created standalone. Keys and values are raw bytes whose sizes are checked
// here (a wrong size throws RangeError); per-CPU values are split and joined.
import { native, isBpfError, type MapInfo } from './binding.js';
import { BPF_ANY, PER_CPU_TYPES } from './constants.js';
import { adoptFd, fdMemlock, FdHandle, type FdOwner } from './fd.js';

export interface MapCreateSpec {
  /** A BPF_MAP_TYPE value. */
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
  name?: string;
  /** Outer maps (ARRAY_OF_MAPS/HASH_OF_MAPS): a map of the inner type, as template. */
  innerMap?: BpfMap;
}

let cpuCount: number | undefined;

/** Number of possible CPUs: the slot count of per-CPU map values. */
export function possibleCpus(): number {
  cpuCount ??= native().possibleCpus();
  return cpuCount;
}

const roundup8 = (n: number): number => (n + 7) & ~7;

function checkLen(what: string, buf: Buffer, want: number): void {
  if (!Buffer.isBuffer(buf)) throw new TypeError(`${what} must be a Buffer`);
  if (buf.length !== want) throw new RangeError(`${what} is ${buf.length} bytes, the map expects ${want}`);
}

export class BpfMap extends FdHandle {
  readonly name: string;
  readonly type: number;
  readonly typeName: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  readonly perCpu: boolean;
  /** Bytes lookup() returns: valueSize, or possibleCpus() × roundup8(valueSize) for per-CPU maps. */
  readonly valueBufSize: number;

  private constructor(fd: number, info: MapInfo, owner: FdOwner | null) {
    super(fd, owner);
    this.name = info.name;
    this.type = info.type;
    this.typeName = info.typeName;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.flags = info.flags;
    this.perCpu = PER_CPU_TYPES.has(info.type);
    this.valueBufSize = this.perCpu ? possibleCpus() * roundup8(info.valueSize) : info.valueSize;
  }

  protected get what(): string {
    return `map ${this.name}`;
  }

  /** @internal A map whose fd belongs to `owner` (a BpfObject). */
  static fromObjectFd(fd: number, name: string, owner: FdOwner): BpfMap {
    const info = native().mapInfo(fd);
    // The kernel truncates names to 15 bytes; keep the ELF name.
    return new BpfMap(fd, { ...info, name }, owner);
  }

  /** Takes ownership of fd (closed by close()). */
  static fromFd(fd: number): BpfMap {
    return new BpfMap(fd, native().mapInfo(fd), null);
  }

  /** Opens a map pinned on bpffs; the returned map owns its fd. */
  static openPinned(path: string): BpfMap {
    return adoptFd(native().objGet(path), BpfMap.fromFd);
  }

  /**
   * Creates a standalone map (not part of any object); it owns its fd. Use it
   * for map-in-map inner maps: insert with outer.update(key, u32le(inner.fd));
   * looking the outer map up from user space returns the inner map's id.
   */
  static create(spec: MapCreateSpec): BpfMap {
    const fd = native().mapCreate(
      spec.type,
      spec.name ?? null,
      spec.keySize,
      spec.valueSize,
      spec.maxEntries,
      spec.flags ?? 0,
      spec.innerMap?.fd,
    );
    return adoptFd(fd, BpfMap.fromFd);
  }

  /** Opens a map by kernel id; the returned map owns its fd. */
  static fromId(id: number): BpfMap {
    return adoptFd(native().mapGetFdById(id), BpfMap.fromFd);
  }

  lookup(key: Buffer): Buffer | null {
    checkLen(`key of map ${this.name}`, key, this.keySize);
    const out = Buffer.allocUnsafe(this.valueBufSize);
    return native().mapLookup(this.fd, key, out) ? out : null;
  }

  /** Per-CPU maps: one valueSize-byte Buffer per possible CPU. */
  lookupPerCpu(key: Buffer): Buffer[] | null {
    this.requirePerCpu('lookupPerCpu');
    const all = this.lookup(key);
    if (!all) return null;
    const stride = roundup8(this.valueSize);
    const out: Buffer[] = [];
    for (let c = 0; c < possibleCpus(); c++) out.push(all.subarray(c * stride, c * stride + this.valueSize));
    return out;
  }

  /**
   * Sets key to value. For per-CPU maps value may be valueBufSize bytes (all
   * slots) or valueSize bytes (written to every CPU).
   */
  update(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    checkLen(`key of map ${this.name}`, key, this.keySize);
    native().mapUpdate(this.fd, key, this.fullValue(value), flags);
  }

  /** Per-CPU maps: one valueSize-byte value per possible CPU. */
  updatePerCpu(key: Buffer, values: Buffer[], flags = BPF_ANY): void {
    this.requirePerCpu('updatePerCpu');
    if (values.length !== possibleCpus()) {
      throw new RangeError(`map ${this.name}: ${values.length} per-CPU values given, ${possibleCpus()} CPUs are possible`);
    }
    const stride = roundup8(this.valueSize);
    const all = Buffer.alloc(this.valueBufSize);
    values.forEach((v, c) => {
      checkLen(`value for CPU ${c} of map ${this.name}`, v, this.valueSize);
      v.copy(all, c * stride);
    });
    this.update(key, all, flags);
  }

  /** Atomically reads and removes (hash/LRU/queue/stack maps); null when absent. */
  lookupAndDelete(key: Buffer): Buffer | null {
    checkLen(`key of map ${this.name}`, key, this.keySize);
    const out = Buffer.allocUnsafe(this.valueBufSize);
    return native().mapLookupAndDelete(this.fd, key, out) ? out : null;
  }

  /** Makes the map read-only for user space (BPF programs may still write). */
  freeze(): void {
    native().mapFreeze(this.fd);
  }

  /** Returns false when the key was absent. */
  delete(key: Buffer): boolean {
    checkLen(`key of map ${this.name}`, key, this.keySize);
    return native().mapDelete(this.fd, key);
  }

  /**
   * All keys, by get-next-key iteration. A datapath writing concurrently can
   * make the kernel restart the walk; the walk is bounded to 2 × maxEntries
   * steps and deduplicated.
   */
  keys(): Buffer[] {
    const seen = new Set<string>();
    const out: Buffer[] = [];
    let cur: Buffer | null = null;
    for (let i = 0; i < 2 * this.maxEntries + 1; i++) {
      const next = Buffer.allocUnsafe(this.keySize);
      if (!native().mapGetNextKey(this.fd, cur, next)) break;
      const id = next.toString('latin1');
      if (!seen.has(id)) {
        seen.add(id);
        out.push(next);
      }
      cur = next;
    }
    return out;
  }

  /** All [key, value] pairs (values as lookup() returns them); keys deleted meanwhile are skipped. */
  entries(): Array<[Buffer, Buffer]> {
    const out: Array<[Buffer, Buffer]> = [];
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v) out.push([k, v]);
    }
    return out;
  }

  /**
   * All [key, value] pairs using BPF_MAP_LOOKUP_BATCH (far fewer syscalls
   * than entries() for big maps); falls back to entries() for map types
   * without batch lookup. Like entries(), not a snapshot of a map the
   * datapath is writing to.
   */
  dump(batchSize = 256): Array<[Buffer, Buffer]> {
    const { keys, values, count } = this.dumpPacked(batchSize);
    const out: Array<[Buffer, Buffer]> = [];
    for (let i = 0; i < count; i++) {
      out.push([keys.subarray(i * this.keySize, (i + 1) * this.keySize), values.subarray(i * this.valueBufSize, (i + 1) * this.valueBufSize)]);
    }
    return out;
  }

  /**
   * Like dump(), packed: count keys back to back in `keys` and count values
   * (valueBufSize bytes each) in `values` -- no per-entry objects.
   */
  dumpPacked(batchSize = 256): { keys: Buffer; values: Buffer; count: number } {
    const kChunks: Buffer[] = [];
    const vChunks: Buffer[] = [];
    let total = 0;
    for (const chunk of this.lookupBatches(batchSize)) {
      kChunks.push(chunk.keys);
      vChunks.push(chunk.values);
      total += chunk.count;
    }
    return { keys: Buffer.concat(kChunks), values: Buffer.concat(vChunks), count: total };
  }

  /**
   * How many elements the map holds, counted chunk by chunk (lookupBatches)
   * without keeping them: a full 128 Ki-entry flow map costs one chunk of
   * memory to count, not a copy of the map.
   */
  count(batchSize = 4096): number {
    let n = 0;
    for (const chunk of this.lookupBatches(batchSize)) n += chunk.count;
    return n;
  }

  /**
   * The map in packed chunks of up to batchSize elements, one
   * BPF_MAP_LOOKUP_BATCH call each (count keys back to back in `keys`, count
   * values of valueBufSize bytes in `values`): a big map is read without
   * holding more than one chunk. Map types without batch lookup yield one
   * chunk built from entries(). Like entries(), not a snapshot of a map the
   * datapath is writing to.
   */
  *lookupBatches(batchSize = 256): Generator<{ keys: Buffer; values: Buffer; count: number }> {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`dump: batchSize must be a positive integer, got ${batchSize}`);
    // Hash maps use a 4-byte bucket cursor, other types the last key.
    const tokenSize = Math.max(this.keySize, 8);
    let cursorIn: Buffer | null = null;
    let n = Math.min(batchSize, Math.max(this.maxEntries, 1));
    for (;;) {
      const cursorOut = Buffer.alloc(tokenSize);
      const keys = Buffer.allocUnsafe(n * this.keySize);
      const values = Buffer.allocUnsafe(n * this.valueBufSize);
      let r: { count: number; done: boolean };
      try {
        r = native().mapLookupBatch(this.fd, cursorIn, cursorOut, keys, values, n);
      } catch (e) {
        if (isBpfError(e) && e.code === 'ENOSPC' && n < this.maxEntries) {
          // A hash bucket holds more elements than fit in one batch.
          n = Math.min(n * 2, this.maxEntries);
          continue;
        }
        // Only before the first chunk: a fallback later would repeat what was yielded.
        if (cursorIn === null && isBpfError(e) && (e.code === 'ENOTSUPP' || e.code === 'EOPNOTSUPP' || e.code === 'EINVAL')) {
          const entries = this.entries();
          yield {
            keys: Buffer.concat(entries.map(([k]) => k)),
            values: Buffer.concat(entries.map(([, v]) => v)),
            count: entries.length,
          };
          return;
        }
        throw e;
      }
      yield { keys: keys.subarray(0, r.count * this.keySize), values: values.subarray(0, r.count * this.valueBufSize), count: r.count };
      if (r.done) return;
      cursorIn = cursorOut;
    }
  }

  /**
   * updateBatch() for keys and values already packed back to back
   * (keySize / valueBufSize bytes each), e.g. built in one big Buffer.
   */
  updateBatchPacked(keys: Buffer, values: Buffer, flags = BPF_ANY): { count: number; batched: boolean } {
    if (!Buffer.isBuffer(keys) || !Buffer.isBuffer(values)) throw new TypeError('updateBatchPacked: keys and values must be Buffers');
    const count = keys.length / this.keySize;
    if (!Number.isInteger(count)) throw new RangeError(`updateBatchPacked on map ${this.name}: ${keys.length} key bytes is not a multiple of ${this.keySize}`);
    if (values.length !== count * this.valueBufSize) {
      throw new RangeError(`updateBatchPacked on map ${this.name}: ${count} keys need ${count * this.valueBufSize} value bytes, got ${values.length}`);
    }
    if (count === 0) return { count: 0, batched: true };
    return native().mapUpdateBatch(this.fd, keys, values, count, flags);
  }

  /**
   * Updates many elements with one BPF_MAP_UPDATE_BATCH syscall, or one
   * update per element when the map type has no batch support. Per-CPU
   * values must be valueBufSize bytes each. On failure the error has
   * .updated = elements written before it.
   */
  updateBatch(keys: Buffer[], values: Buffer[], flags = BPF_ANY): { count: number; batched: boolean } {
    if (keys.length !== values.length) {
      throw new RangeError(`updateBatch on map ${this.name}: ${keys.length} keys but ${values.length} values`);
    }
    keys.forEach((k, i) => checkLen(`key ${i} of map ${this.name}`, k, this.keySize));
    values.forEach((v, i) => checkLen(`value ${i} of map ${this.name}`, v, this.valueBufSize));
    if (keys.length === 0) return { count: 0, batched: true };
    return native().mapUpdateBatch(this.fd, Buffer.concat(keys), Buffer.concat(values), keys.length, flags);
  }

  /**
   * Deletes every key; returns how many were deleted. Arrays cannot delete
   * (EINVAL): zero them with update instead.
   */
  clear(): number {
    let n = 0;
    for (const k of this.keys()) if (this.delete(k)) n++;
    return n;
  }

  info(): MapInfo {
    return { ...native().mapInfo(this.fd), name: this.name };
  }

  memlockBytes(): number {
    return fdMemlock(this.fd);
  }

  private fullValue(value: Buffer): Buffer {
    if (!Buffer.isBuffer(value)) throw new TypeError(`value of map ${this.name} must be a Buffer`);
    if (this.perCpu && value.length === this.valueSize && this.valueSize !== this.valueBufSize) {
      const stride = roundup8(this.valueSize);
      const all = Buffer.alloc(this.valueBufSize);
      for (let c = 0; c < possibleCpus(); c++) value.copy(all, c * stride);
      return all;
    }
    checkLen(`value of map ${this.name}`, value, this.valueBufSize);
    return value;
  }

  private requirePerCpu(op: string): void {
    if (!this.perCpu) throw new TypeError(`${op}: map ${this.name} (${this.typeName}) is not a per-CPU map`);
  }
}
