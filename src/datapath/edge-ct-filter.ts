// The edge's connection-table filter (bpf/include/edge_ct_filter.h): which
// 5-tuples may have an edge_ct entry, so a SYN of a new tuple skips the
// lookup. A generation is a snapshot W (written here) and the bits P the
// program set since (on every insert, in both generations, never
// cleared by it). This module rebuilds the generation not in use and then
// makes it the one in use, so bits of ended flows go away without ever
// losing one of a live flow:
//   1. clear that generation's P;
//   2. walk edge_ct and write W from every entry found — an entry inserted
//      before the walk began is found by it; one inserted after the clear
//      set its own bit in P (the program sets it after the insert);
//   3. switch edge_config.ct_filter to that generation (the caller).
// Only the program writes P and only this module writes W, so nothing is
// read-modified-written across the two.
// The flow hash is the program's (bpf/include/edge_hash.h: murmur3 over the
// key's fields as the program loads them).
import { BPF_ANY, type BpfMap } from './loader.js';

/** Words (u64) per bit set: 2^19 bits. Mirrors EDGE_CT_FILTER_WORDS. */
export const EDGE_CT_FILTER_WORDS = 1 << 13;
const EDGE_HASH_SEED = 0x2f6b5a13;
const CT_KEY_SIZE = 16;

function rotl(x: number, r: number): number {
  return ((x << r) | (x >>> (32 - r))) >>> 0;
}

function mix(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = rotl(k, 15);
  k = Math.imul(k, 0x1b873593);
  h = (h ^ k) >>> 0;
  h = rotl(h, 13);
  return (Math.imul(h, 5) + 0xe6546b64) >>> 0;
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * edge_flow_hash of an edge_ct key (16 bytes: saddr, daddr, sport, dport,
 * proto — network order, which the program reads as little-endian words).
 */
export function ctKeyFlowHash(key: Buffer, offset = 0): number {
  const saddr = key.readUInt32LE(offset);
  const daddr = key.readUInt32LE(offset + 4);
  const sport = key.readUInt16LE(offset + 8);
  const dport = key.readUInt16LE(offset + 10);
  const proto = key.readUInt8(offset + 12);
  let h = (EDGE_HASH_SEED ^ proto) >>> 0;
  h = mix(h, saddr);
  h = mix(h, daddr);
  h = mix(h, ((sport << 16) | dport) >>> 0);
  return fmix(h);
}

/** The word (within a bank) and bit of a flow hash. */
export function ctFilterPosition(hash: number): { word: number; bit: number } {
  return { word: (hash >>> 6) & (EDGE_CT_FILTER_WORDS - 1), bit: hash & 63 };
}

/** edge_config.ct_filter: the generation in use + 1; 0 = no filter. */
export type CtFilterState = 0 | 1 | 2;

/** Array key of a generation's W (p = 0) or P (p = 1) word: both generations' words share a cache line. */
export function ctFilterKey(gen: number, word: number, p: 0 | 1): number {
  return word * 4 + gen * 2 + p;
}

/**
 * Rebuilds the generation not named by `current` from edge_ct and returns
 * the state that puts it in use (the caller writes it to edge_config).
 * From 0 (no filter yet) it builds generation 0.
 */
export function rebuildCtFilter(filter: BpfMap, ct: BpfMap, current: CtFilterState): { state: CtFilterState; entries: number; bitsSet: number } {
  if (filter.maxEntries !== 4 * EDGE_CT_FILTER_WORDS || filter.valueSize !== 8) {
    throw new Error(`edge_ct_filter is ${filter.maxEntries} × ${filter.valueSize} B, this build expects ${4 * EDGE_CT_FILTER_WORDS} × 8 B`);
  }
  if (ct.keySize !== CT_KEY_SIZE) throw new Error(`edge_ct keys are ${ct.keySize} B, this build expects ${CT_KEY_SIZE}`);
  const gen = current === 1 ? 1 : 0;
  const keysOf = (p: 0 | 1): Buffer => {
    const keys = Buffer.alloc(EDGE_CT_FILTER_WORDS * 4);
    for (let i = 0; i < EDGE_CT_FILTER_WORDS; i++) keys.writeUInt32LE(ctFilterKey(gen, i, p), i * 4);
    return keys;
  };
  // 1. P cleared
  filter.updateBatchPacked(keysOf(1), Buffer.alloc(EDGE_CT_FILTER_WORDS * 8), BPF_ANY);
  // 2. W from the walk
  const words = new BigUint64Array(EDGE_CT_FILTER_WORDS);
  let entries = 0;
  for (const { keys, count } of ct.lookupBatches(8192)) {
    for (let i = 0; i < count; i++) {
      const { word, bit } = ctFilterPosition(ctKeyFlowHash(keys, i * CT_KEY_SIZE));
      words[word]! |= 1n << BigInt(bit);
    }
    entries += count;
  }
  let bitsSet = 0;
  for (const w of words) if (w !== 0n) bitsSet += popcount64(w);
  filter.updateBatchPacked(keysOf(0), Buffer.from(words.buffer, words.byteOffset, words.byteLength), BPF_ANY);
  return { state: gen === 0 ? 1 : 2, entries, bitsSet };
}

function popcount64(w: bigint): number {
  let n = 0;
  for (let x = w; x !== 0n; x &= x - 1n) n++;
  return n;
}
