// readSnapshot (src/datapath/edge-restore.ts) against stand-in maps: what a
// restarted agent reads back, and how. The restart tests in
// edge-second-chance.test.ts cover the same path through real pinned maps.
import test from 'ava';
import { readSnapshot } from '../../src/datapath/edge-restore.js';
import { SC_PREV_SIZE } from '../../src/datapath/edge-maps.js';
import type { BpfMap } from '../../src/datapath/loader.js';

/** A map that refuses the one-syscall-per-element walks and serves its array from one batch. */
function batchOnlyArray(slots: number, fill: (i: number, v: Buffer) => void): BpfMap {
  const keys = Buffer.alloc(slots * 4);
  const values = Buffer.alloc(slots * SC_PREV_SIZE);
  for (let i = 0; i < slots; i++) {
    keys.writeUInt32LE(i, i * 4);
    fill(i, values.subarray(i * SC_PREV_SIZE, (i + 1) * SC_PREV_SIZE));
  }
  const perElement = () => {
    throw new Error('walked one element at a time');
  };
  return {
    entries: perElement,
    keys: perElement,
    lookup: perElement,
    *lookupBatches() {
      yield { keys, values, count: slots };
    },
  } as unknown as BpfMap;
}

const empty = (): BpfMap => ({ entries: () => [], keys: () => [], *lookupBatches() {} }) as unknown as BpfMap;

test('a restart reads the 65 536 second-chance slots in batches, not a lookup each (seconds at boot under emulation), and keeps only the open ones', (t) => {
  const scPrev = batchOnlyArray(65536, (i, v) => {
    if (i !== 7 && i !== 65535) return;
    v.writeUInt32LE(4096 * i, 0);
    v.writeUInt32LE(1024, 4);
    v.writeBigUInt64LE(123_456_789n, 8);
    v.writeUInt32LE(1, 16);
  });
  const snap = readSnapshot({ edge_sc_prev: scPrev, edge_services: empty(), edge_backends: empty(), edge_src_ranges: empty() });
  t.deepEqual(snap.scPrev, [
    { svcId: 7, ringOff: 4096 * 7, ringSize: 1024, untilNs: 123_456_789n, flags: 1 },
    { svcId: 65535, ringOff: 4096 * 65535, ringSize: 1024, untilNs: 123_456_789n, flags: 1 },
  ]);
  t.deepEqual(snap.services, []);
});
