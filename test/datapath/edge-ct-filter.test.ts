// The connection-table filter (bpf/include/edge_ct_filter.h,
// src/datapath/edge-ct-filter.ts): a SYN of a tuple the filter has never
// seen skips the edge_ct lookup. What must hold: the program and user space
// agree on every bit's position, every inserted flow is in the filter (so a
// SYN never re-routes a live tuple), a rebuild keeps live flows and drops
// ended ones, and a SYN flood touches neither the table nor the filter.
import test from 'ava';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';
import { EDGE_CT_FILTER_WORDS, ctFilterKey, ctFilterPosition, ctKeyFlowHash } from '../../src/datapath/edge-ct-filter.js';
import { encodeCtKey, encodeCtValue, u32Key } from '../../src/datapath/edge-maps.js';
import { parsePacket } from '../lib/packets.js';
import { CLIENT, VIP, backend, openEdge, service, tcpPacket, udpPacket } from './edge-helpers.js';

const SYN = { syn: true };
const ACK = { ack: true };

function dst(dp: EdgeDatapath, data: Buffer): string {
  return parsePacket(dp.program('xdp').testRun({ data }).dataOut).ip.dst;
}

/** The filter's words: gen 0/1, W (0) or P (1). */
function words(dp: EdgeDatapath, gen: number, p: 0 | 1): bigint[] {
  const m = dp.map('edge_ct_filter');
  return Array.from({ length: EDGE_CT_FILTER_WORDS }, (_, i) => m.lookup(u32Key(ctFilterKey(gen, i, p)))!.readBigUInt64LE(0));
}

function has(ws: bigint[], key: Buffer): boolean {
  const { word, bit } = ctFilterPosition(ctKeyFlowHash(key));
  return ((ws[word]! >> BigInt(bit)) & 1n) === 1n;
}

function bitCount(ws: bigint[]): number {
  let n = 0;
  for (const w of ws) for (let x = w; x !== 0n; x &= x - 1n) n++;
  return n;
}

function configFilter(dp: EdgeDatapath): number {
  return dp.map('edge_config').lookup(u32Key(0))!.readUInt16LE(22);
}

test('every flow the program inserts (first ACK, UDP, SNAT SYN) is in both generations at the position user space computes, and nothing else is', (t) => {
  const dp = openEdge(t, { ctFilterRefreshMs: 0 });
  dp.applyServices([
    service({ backends: [backend(1), backend(2)] }),
    service({ service: 'default/dns', frontend: { vip: VIP, port: 53, protocol: 'UDP' } }),
    service({ service: 'default/snat', frontend: { vip: VIP, port: 8443, protocol: 'TCP' }, mode: 'snat' }),
  ]);
  t.is(configFilter(dp), 1, 'open rebuilt generation 0 and put it in use');
  for (let p = 50000; p < 50300; p++) dst(dp, tcpPacket({ flags: ACK, sport: p }));
  for (let p = 6000; p < 6020; p++) dst(dp, udpPacket({ sport: p }));
  for (let p = 7000; p < 7010; p++) dp.program('xdp').testRun({ data: tcpPacket({ flags: SYN, sport: p, dport: 8443 }) });
  const keys = dp.map('edge_ct').keys();
  t.is(keys.length, 330);
  const positions = new Set(keys.map((k) => JSON.stringify(ctFilterPosition(ctKeyFlowHash(k)))));
  for (const gen of [0, 1]) {
    const p = words(dp, gen, 1);
    t.true(keys.every((k) => has(p, k)), `gen ${gen}: every entry's bit`);
    t.is(bitCount(p), positions.size, `gen ${gen}: no other bit`);
    t.is(bitCount(words(dp, gen, 0)), 0, `gen ${gen}: the program never writes W`);
  }
});

test('a SYN consults the table only for tuples in the filter: an entry the program never inserted is seen after a rebuild', (t) => {
  const dp = openEdge(t, { ctFilterRefreshMs: 0 });
  const bs = Array.from({ length: 4 }, (_, i) => backend(i + 1));
  dp.applyServices([service({ backends: bs })]);
  const sport = 51000;
  const maglev = dst(dp, tcpPacket({ flags: SYN, sport }));
  const other = bs.find((b) => b.ip !== maglev)!;
  // An entry written behind the program's back (no filter bit).
  const key = encodeCtKey({ saddr: CLIENT, daddr: VIP, sport, dport: 80, proto: 6 });
  dp.map('edge_ct').update(key, encodeCtValue({ backendId: dp.backendId(VIP, 80, 'TCP', other)!, snatPort: 0 }));
  t.is(dst(dp, tcpPacket({ flags: SYN, sport })), maglev, 'not in the filter: the SYN did not look');
  t.is(dst(dp, tcpPacket({ flags: ACK, sport })), other.ip, 'every other packet looks');
  const r = dp.refreshCtFilter();
  t.is(r.entries, 1);
  t.is(configFilter(dp), 2, 'the rebuilt generation 1 is in use');
  t.is(dst(dp, tcpPacket({ flags: SYN, sport })), other.ip, 'found by the rebuild: the SYN follows the live tuple');
});

test('rebuilds keep live flows and drop ended ones; across generation switches a SYN never re-routes a live tuple', (t) => {
  const dp = openEdge(t, { ctFilterRefreshMs: 0 });
  const first = Array.from({ length: 4 }, (_, i) => backend(i + 1));
  dp.applyServices([service({ backends: first })]);
  const live = new Map<number, string>();
  for (let p = 52000; p < 52040; p++) {
    const b = dst(dp, tcpPacket({ flags: SYN, sport: p }));
    t.is(dst(dp, tcpPacket({ flags: ACK, sport: p })), b);
    live.set(p, b);
  }
  // Every new tuple now goes to new pods; the old ones only keep their flows.
  dp.applyServices([service({ backends: [...first.map((b) => ({ ...b, state: 'terminating' as const })), ...Array.from({ length: 8 }, (_, i) => backend(20 + i))] })]);
  // Half the flows end and leave the table (as LRU eviction would take them).
  const ended = [...live.keys()].filter((p) => p % 2 === 0);
  for (const p of ended) t.true(dp.map('edge_ct').delete(encodeCtKey({ saddr: CLIENT, daddr: VIP, sport: p, dport: 80, proto: 6 })));
  for (let round = 0; round < 3; round++) {
    dp.refreshCtFilter();
    for (const [p, b] of live) if (p % 2 === 1) t.is(dst(dp, tcpPacket({ flags: SYN, sport: p })), b, `round ${round}: live flow ${p}`);
  }
  // Both generations were rebuilt: the generation in use holds exactly the live flows.
  const gen = configFilter(dp) - 1;
  const w = words(dp, gen, 0);
  const p = words(dp, gen, 1);
  const inUse = w.map((x, i) => x | p[i]!);
  const keyOf = (sport: number): Buffer => encodeCtKey({ saddr: CLIENT, daddr: VIP, sport, dport: 80, proto: 6 });
  t.true([...live.keys()].filter((x) => x % 2 === 1).every((x) => has(inUse, keyOf(x))));
  const positions = new Set([...live.keys()].filter((x) => x % 2 === 1).map((x) => JSON.stringify(ctFilterPosition(ctKeyFlowHash(keyOf(x))))));
  t.is(bitCount(inUse), positions.size, 'ended flows left the filter');
  t.is(bitCount(p), 0, 'nothing was inserted since that generation was cleared');
});

test('a SYN flood leaves the table and the filter as they were: established flows keep their backends across a backend change', (t) => {
  const dp = openEdge(t, { ctFilterRefreshMs: 0, maxEntries: { edge_ct: 1024 } });
  const first = Array.from({ length: 4 }, (_, i) => backend(i + 1));
  dp.applyServices([service({ backends: first })]);
  const est = new Map<number, string>();
  for (let p = 53000; p < 53100; p++) {
    const b = dst(dp, tcpPacket({ flags: SYN, sport: p }));
    dst(dp, tcpPacket({ flags: ACK, sport: p }));
    est.set(p, b);
  }
  const before = [0, 1].map((g) => [words(dp, g, 0), words(dp, g, 1)]);
  // 20 × the table's size in spoofed SYNs from many sources.
  for (let i = 0; i < 20_000; i++) {
    dp.program('xdp').testRun({ data: tcpPacket({ flags: SYN, src: `198.18.${(i >> 8) & 255}.${i & 255}`, sport: 1024 + (i % 60000) }) });
  }
  t.is(dp.map('edge_ct').keys().length, est.size, 'no SYN entered the table, no flow was evicted');
  t.deepEqual([0, 1].map((g) => [words(dp, g, 0), words(dp, g, 1)]), before, 'nor the filter');
  dp.applyServices([service({ backends: [...first.map((b) => ({ ...b, state: 'terminating' as const })), ...Array.from({ length: 8 }, (_, i) => backend(20 + i))] })]);
  for (const [p, b] of est) t.is(dst(dp, tcpPacket({ flags: ACK, sport: p })), b);
});

test('ctFilterRefreshMs must be a non-negative integer', (t) => {
  t.throws(() => openEdge(t, { ctFilterRefreshMs: -1 }), { message: /ctFilterRefreshMs -1/ });
});
