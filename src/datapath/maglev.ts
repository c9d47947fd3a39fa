// Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights.
//
// Every edge must compute the same table for the same backend set, so the
// table depends only on the backends' identities ("ip:port"), their weights
// and the table size M — never on the order they arrive in or on anything
// local (backend ids, time). Backends are sorted by identity before
// population and the permutation hashes are fixed FNV-1a variants.
//
// Weights: in round r a backend with weight w takes a turn when
// floor((r+1)·w/wmax) > floor(r·w/wmax), i.e. w/wmax turns per round, so its
// share of the M slots is proportional to w.
//
// Table sizes: a service's M is a prime from a ladder (the largest prime
// below each power of two from 256, capped by maglevTableSize) chosen so
// that M ≥ 100 × active backends where possible. Ladder sizes let the region
// allocator hand out power-of-two blocks and let a service keep its M (and
// therefore Maglev's minimal disruption) while its backend count moves
// within a factor of ~4 (see chooseTableSize's hysteresis).

export interface MaglevMember {
  /** Stable identity shared by all edges, e.g. "10.0.0.5:8080". */
  key: string;
  weight: number;
}

/** 32-bit FNV-1a with a seed folded into the offset basis. */
function fnv1a(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // Final avalanche (murmur3 fmix32): FNV alone leaves similar keys
  // ("10.0.0.1:80", "10.0.0.2:80") with correlated low bits.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

export function largestPrimeAtMost(n: number): number {
  for (let p = Math.floor(n); p >= 2; p--) if (isPrime(p)) return p;
  throw new Error(`no prime ≤ ${n}`);
}

/** Smallest power-of-two block class (log2) considered for a region. */
export const MIN_CLASS = 8;

export interface TableSize {
  /** The region block is 2^cls slots. */
  cls: number;
  /** Maglev table size (prime, ≤ 2^cls). */
  m: number;
}

/** M for a block class under the configured cap. */
export function primeForClass(cls: number, maglevTableSize: number): number {
  const block = 2 ** cls;
  return largestPrimeAtMost(Math.min(block - 1, maglevTableSize));
}

/** Largest class worth using under the cap: the first block that holds maglevTableSize. */
export function maxClass(maglevTableSize: number): number {
  if (!Number.isInteger(maglevTableSize) || maglevTableSize < 3) {
    throw new Error(`maglevTableSize must be an integer ≥ 3, got ${maglevTableSize}`);
  }
  let cls = MIN_CLASS;
  while (2 ** cls - 1 < maglevTableSize) cls++;
  return cls;
}

/**
 * Pick the table size for `active` backends. With `current` (the class the
 * service has now) the size is kept while it is still ≥ 100 × active (or at
 * the cap) and at most 4× oversized — so adding or removing one backend does
 * not reshuffle the whole table.
 */
export function chooseTableSize(active: number, maglevTableSize: number, current?: number): TableSize {
  const top = maxClass(maglevTableSize);
  let want = MIN_CLASS;
  while (want < top && primeForClass(want, maglevTableSize) < 100 * Math.max(1, active)) want++;
  let cls = want;
  if (current !== undefined && current >= want && current <= Math.min(top, want + 2)) cls = current;
  return { cls, m: primeForClass(cls, maglevTableSize) };
}

/**
 * Populate a Maglev table of size m (prime). Returns, for each slot, the
 * index into `members` (the caller's order). Throws on an empty member list,
 * duplicate keys, bad weights or a non-prime m.
 */
export function maglevTable(members: readonly MaglevMember[], m: number): Int32Array {
  if (!isPrime(m)) throw new Error(`maglev table size ${m} is not prime`);
  if (members.length === 0) throw new Error('maglev table needs at least one member');
  const seen = new Set<string>();
  for (const mem of members) {
    if (seen.has(mem.key)) throw new Error(`duplicate maglev member ${mem.key}`);
    seen.add(mem.key);
    if (!Number.isInteger(mem.weight) || mem.weight < 1) {
      throw new Error(`maglev member ${mem.key}: weight must be an integer ≥ 1, got ${mem.weight}`);
    }
  }
  // Canonical order: by key (code-unit order, locale independent).
  const order = members.map((_, i) => i).sort((a, b) => {
    const ka = members[a]!.key;
    const kb = members[b]!.key;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  const n = order.length;
  // Int32 typed arrays keep the hot loop in small-integer arithmetic
  // (m < 2^31): about 10× faster than doubles here.
  const next = new Int32Array(n); // current permutation position (offset + j·skip mod m)
  const skip = new Int32Array(n);
  const weight = new Int32Array(n);
  const owner = new Int32Array(n);
  let wmax = 1;
  let uniform = true;
  for (let k = 0; k < n; k++) {
    const mem = members[order[k]!]!;
    next[k] = fnv1a(mem.key, 0x5bd1e995) % m;
    skip[k] = (fnv1a(mem.key, 0x27d4eb2f) % (m - 1)) + 1;
    weight[k] = mem.weight;
    owner[k] = order[k]!;
    if (mem.weight > wmax) wmax = mem.weight;
    if (k > 0 && mem.weight !== weight[0]) uniform = false;
  }
  const table = new Int32Array(m).fill(-1);
  let filled = 0;
  for (let round = 0; filled < m; round++) {
    for (let k = 0; k < n && filled < m; k++) {
      if (!uniform) {
        const w = weight[k]!;
        if (w !== wmax && Math.floor(((round + 1) * w) / wmax) === Math.floor((round * w) / wmax)) continue;
      }
      let c = next[k]!;
      const sk = skip[k]!;
      while (table[c] !== -1) {
        c += sk;
        if (c >= m) c -= m;
      }
      table[c] = owner[k]!;
      c += sk;
      if (c >= m) c -= m;
      next[k] = c;
      filled++;
    }
  }
  return table;
}
