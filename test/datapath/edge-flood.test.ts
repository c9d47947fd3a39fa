// A SYN flood must not wash out established flows: the connection table is
// an LRU, so anything a flood could insert would push established entries
// out. SYNs never insert (their ACK pins the flow), so a flood many times
// the table's size leaves it exactly as it was, and every established flow
// keeps its backend even after the backend set changes under it.
import test from 'ava';
import { availableParallelism } from 'node:os';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';
import { parsePacket } from '../lib/packets.js';
import { parse6 } from '../lib/packets6.js';
import { SEC, SMALL_MAPS, backend, openEdge, service, setEdgeClock, tcpPacket } from './edge-helpers.js';
import { EDGE6, apply6, backend6, service6, tcp6, udp6 } from './edge6-helpers.js';

const SYN = { syn: true };
const ACK = { ack: true };

function dst(dp: EdgeDatapath, data: Buffer): string {
  return parsePacket(dp.program('xdp').testRun({ data }).dataOut).ip.dst;
}

function dst6(dp: EdgeDatapath, data: Buffer): string {
  return parse6(dp.program('xdp').testRun({ data }).dataOut.subarray(14)).dst;
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

// Session affinity (ClientIP) is an LRU too: before, every SYN of a new flow
// wrote its client's entry, so spoofed SYNs from fresh sources pushed the
// real clients' entries out, and after the next backend change those clients
// were spread by Maglev like strangers. An entry is now written only when a
// flow is confirmed — with the first non-SYN packet that pins it — so a SYN
// flood writes none.
test('a spoofed SYN flood 20 × the affinity table\'s size evicts no client\'s affinity: after a backend change every real client still reaches its backend (IPv4 and IPv6)', (t) => {
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, maxEntries: { ...SMALL_MAPS, edge_affinity: 1024, edge_affinity6: 1024 } });
  const first = Array.from({ length: 4 }, (_, i) => backend(i + 1));
  const first6 = Array.from({ length: 4 }, (_, i) => backend6(i + 1));
  dp.applyServices([service({ affinityTimeoutSeconds: 3600, backends: first })]);
  apply6(dp, service6({ affinityTimeoutSeconds: 3600, backends: first6 }));
  const clients = Array.from({ length: 100 }, (_, i) => `198.51.100.${i + 1}`);
  const clients6 = Array.from({ length: 100 }, (_, i) => `2001:db8:1::${(i + 1).toString(16)}`);
  const home = new Map<string, string>();
  for (const src of clients) {
    const b = dst(dp, tcpPacket({ flags: SYN, src, sport: 50000 }));
    t.is(dst(dp, tcpPacket({ flags: ACK, src, sport: 50000 })), b);
    home.set(src, b);
  }
  for (const src of clients6) {
    const b = dst6(dp, tcp6({ src, sport: 50000 }));
    t.is(dst6(dp, tcp6({ src, sport: 50000, flags: ACK })), b);
    home.set(src, b);
  }
  t.is(dp.map('edge_affinity').keys().length, clients.length, 'each client\'s handshake wrote its entry');
  t.is(dp.map('edge_affinity6').keys().length, clients6.length);
  for (let i = 0; i < 20_480; i++) {
    dp.program('xdp').testRun({ data: tcpPacket({ flags: SYN, src: `198.18.${(i >> 8) & 255}.${i & 255}`, sport: 1024 + (i % 60000) }) });
    dp.program('xdp').testRun({ data: tcp6({ src: `2001:db8:66::${(i + 1).toString(16)}`, sport: 1024 + (i % 60000) }) });
  }
  t.is(dp.map('edge_affinity').keys().length, clients.length, 'no SYN wrote an entry');
  t.is(dp.map('edge_affinity6').keys().length, clients6.length);
  // Many new pods: Maglev now sends most clients elsewhere, affinity keeps them.
  dp.applyServices([service({ affinityTimeoutSeconds: 3600, backends: [...first, ...Array.from({ length: 12 }, (_, i) => backend(20 + i))] })]);
  apply6(dp, service6({ affinityTimeoutSeconds: 3600, backends: [...first6, ...Array.from({ length: 12 }, (_, i) => backend6(20 + i))] }));
  let kept = 0;
  for (const src of clients) if (dst(dp, tcpPacket({ flags: SYN, src, sport: 50001 })) === home.get(src)) kept++;
  for (const src of clients6) if (dst6(dp, tcp6({ src, sport: 50001 })) === home.get(src)) kept++;
  t.is(kept, clients.length + clients6.length, 'every real client kept its backend');
});

// A non-SYN without an entry is a new flow and enters the table (edge
// restarts and ECMP moves must not lose flows), so a flood of spoofed ACKs
// or UDP can insert — up to the per-CPU insert limit, whose default is sized
// for the IPv4 table. Before, IPv6 shared that one budget: edge_ct6 holds a
// quarter of the flow budget (FLOW_BUDGET_SHARE), so a flood at the limit
// rewrote it three to four times faster than edge_ct, and an IPv4 flood used
// up the IPv6 clients' inserts (and the other way round). Each family now
// has its own budget, IPv6's scaled by its table's share.
test('a spoofed non-SYN flood at the insert limit: edge_ct6 gets a budget of its own scaled to its size — IPv6 established flows survive, and an IPv4 flood does not use up IPv6\'s inserts', (t) => {
  const limit = 1100;
  const cpus = availableParallelism();
  const dp = openEdge(t, { ipv6: true, address6: EDGE6, ctInsertLimit: limit, maxEntries: { ...SMALL_MAPS, edge_ct: 4096, edge_ct6: 1024 } });
  setEdgeClock(dp, 1000n * SEC); // one insert window for the whole test
  const first = Array.from({ length: 4 }, (_, i) => backend(i + 1));
  const first6 = Array.from({ length: 4 }, (_, i) => backend6(i + 1));
  dp.applyServices([service({ backends: first })]);
  apply6(dp, service6({ backends: first6 }));
  const est = new Map<number, string>();
  for (let p = 53000; p < 53100; p++) {
    const b = dst(dp, tcpPacket({ flags: SYN, sport: p }));
    t.is(dst(dp, tcpPacket({ flags: ACK, sport: p })), b);
    est.set(p, b);
  }
  // IPv4 spoofed ACKs: 8 × the limit.
  for (let i = 0; i < 8 * limit; i++) {
    dp.program('xdp').testRun({ data: tcpPacket({ flags: ACK, src: `198.18.${(i >> 8) & 255}.${i & 255}`, sport: 1024 + i }) });
  }
  t.true(dp.counters().stats.ct_insert_skipped > 0, 'the IPv4 flood met the limit');
  const est6 = new Map<number, string>();
  for (let p = 53000; p < 53100; p++) {
    const b = dst6(dp, tcp6({ sport: p }));
    t.is(dst6(dp, tcp6({ sport: p, flags: ACK })), b);
    est6.set(p, b);
  }
  const ct6 = (): number => dp.map('edge_ct6').keys().length;
  t.is(ct6(), est6.size, 'the IPv6 clients\' flows were remembered after the IPv4 flood');
  // IPv6 spoofed ACKs and UDP: 8 × the limit, 17 × edge_ct6.
  for (let i = 0; i < 8 * limit; i++) {
    const src = `2001:db8:66::${(i + 1).toString(16)}`;
    dp.program('xdp').testRun({ data: i % 2 ? tcp6({ src, sport: 1024 + i, flags: ACK }) : udp6({ src, sport: 1024 + i, dport: 80 }) });
  }
  const share = Math.ceil((limit * 1024) / 4096);
  t.true(ct6() - est6.size <= cpus * share, `the IPv6 flood inserted ${ct6() - est6.size}, at most ${share} per CPU`);
  // Many new pods, the old ones terminating: every established flow of either family keeps its backend.
  dp.applyServices([service({ backends: [...first.map((b) => ({ ...b, state: 'terminating' as const })), ...Array.from({ length: 8 }, (_, i) => backend(20 + i))] })]);
  apply6(dp, service6({ backends: [...first6.map((b) => ({ ...b, state: 'terminating' as const })), ...Array.from({ length: 8 }, (_, i) => backend6(20 + i))] }));
  let kept = 0;
  for (const [p, b] of est) if (dst(dp, tcpPacket({ flags: ACK, sport: p })) === b) kept++;
  for (const [p, b] of est6) if (dst6(dp, tcp6({ sport: p, flags: ACK })) === b) kept++;
  t.is(kept, est.size + est6.size, 'every established flow kept its backend');
});
