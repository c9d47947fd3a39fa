// Packed key/value byte arrays for one batched map update, built without
// touching a map (the planner fills them, the writer flushes them).
// Buffer.write* per field is the bottleneck at 10^7 ring slots, so the
// batch also offers host-order u32 views and a word-copy fast path.

export class PackedBatch {
  keys: Buffer;
  vals: Buffer;
  k32: Uint32Array;
  v32: Uint32Array;
  n = 0;

  constructor(
    readonly keySize: number,
    readonly valSize: number,
  ) {
    this.keys = Buffer.alloc(keySize * 1024);
    this.vals = Buffer.alloc(valSize * 1024);
    this.k32 = view32(this.keys);
    this.v32 = view32(this.vals);
  }

  /** Room for one more element; returns its byte offsets (key, value). May grow the buffers: take the offsets first. */
  push(): { k: number; v: number } {
    if ((this.n + 1) * this.keySize > this.keys.length) this.grow();
    const r = { k: this.n * this.keySize, v: this.n * this.valSize };
    this.n++;
    return r;
  }

  /** One element with a 4-byte little-endian key and an all-zero value (invalidation, counter reset). */
  pushZeroed(key: number): void {
    const o = this.push();
    this.keys.writeUInt32LE(key, o.k);
    this.vals.fill(0, o.v, o.v + this.valSize);
  }

  /** Fast path for a 4-byte key and a value of host-order u32 words copied from `src` (the ring). */
  pushU32s(key: number, src: Uint32Array, from: number): void {
    if ((this.n + 1) * this.keySize > this.keys.length) this.grow();
    const words = this.valSize / 4;
    this.k32[this.n] = key;
    this.v32.set(src.subarray(from, from + words), this.n * words);
    this.n++;
  }

  /** Keys and values of elements [from, to), packed back to back. */
  slice(from: number, to: number): { keys: Buffer; vals: Buffer } {
    return { keys: this.keys.subarray(from * this.keySize, to * this.keySize), vals: this.vals.subarray(from * this.valSize, to * this.valSize) };
  }

  private grow(): void {
    const nk = Buffer.alloc(this.keys.length * 4);
    this.keys.copy(nk);
    this.keys = nk;
    const nv = Buffer.alloc(this.vals.length * 4);
    this.vals.copy(nv);
    this.vals = nv;
    this.k32 = view32(this.keys);
    this.v32 = view32(this.vals);
  }
}

/** Host-order u32 view; Buffer.alloc of ≥ 4 KiB never shares the pool, so offsets are aligned. */
function view32(b: Buffer): Uint32Array {
  if (b.byteOffset % 4 !== 0) throw new Error('batch buffer not 4-byte aligned');
  return new Uint32Array(b.buffer, b.byteOffset, Math.floor(b.length / 4));
}
