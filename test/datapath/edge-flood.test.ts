// A SYN flood must not wash out established flows: the connection table is
// an LRU, so anything a flood could insert would push established entries
// out. SYNs never insert (their ACK pins the flow), so a flood many times
// the table's size leaves it exactly as it was, and every established flow
// keeps its backend even after the backend set changes under it.
import test from 'ava';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';
import { parsePacket } from '../lib/packets.js';
import { backend, openEdge, service, tcpPacket } from './edge-helpers.js';

const SYN = { syn: true };
const ACK = { ack: true };

function dst(dp: EdgeDatapath, data: Buffer): string {
  return parsePacket(dp.program('xdp').testRun({ data }).dataOut).ip.dst;
}

test('a SYN flood 20 × the table size leaves the connection table as it was: established flows keep their backends across a backend change', (t) => {
  const dp = openEdge(t, { maxEntries: { edge_ct: 1024 } });
  const first = Array.from({ length: 4 }, (_, i) => backend(i + 1));
  dp.applyServices([service({ backends: first })]);
  const est = new Map<number, string>();
  for (let p = 53000; p < 53100; p++) {
    const b = dst(dp, tcpPacket({ flags: SYN, sport: p }));
    t.is(dst(dp, tcpPacket({ flags: ACK, sport: p })), b);
    est.set(p, b);
  }
  const table = (): string[] => dp.map('edge_ct').entries().map(([k, v]) => `${k.toString('hex')}=${v.toString('hex')}`).sort();
  const before = table();
  t.is(before.length, est.size);
  // Spoofed SYNs from many sources and ports: 20 × the table's 1024 slots.
  for (let i = 0; i < 20_480; i++) {
    dp.program('xdp').testRun({ data: tcpPacket({ flags: SYN, src: `198.18.${(i >> 8) & 255}.${i & 255}`, sport: 1024 + (i % 60000) }) });
  }
  t.deepEqual(table(), before, 'no SYN entered the table, no flow was evicted or changed');
  // Many new pods, the old ones terminating: Maglev now sends new tuples elsewhere, the flows stay.
  dp.applyServices([service({ backends: [...first.map((b) => ({ ...b, state: 'terminating' as const })), ...Array.from({ length: 8 }, (_, i) => backend(20 + i))] })]);
  let moved = 0;
  for (const [p, b] of est) {
    t.is(dst(dp, tcpPacket({ flags: ACK, sport: p })), b);
    if (dst(dp, tcpPacket({ flags: SYN, sport: p + 1000 })) !== b) moved++;
  }
  t.true(moved > est.size / 2, `the backend change moves new tuples (${moved} of ${est.size})`);
});
