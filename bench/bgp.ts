// npm run bench:bgp — BGP convergence with real daemons in namespaces:
// an FRR router and three gobgpd edges driven by BgpSpeaker.
//   announce/withdraw: speaker.setDesired() → route appears/disappears in the
//     router's kernel table (timestamped by `ip monitor route`), ≥ 20 runs,
//     for an IPv4 VIP over an IPv4 session and an IPv6 VIP over an IPv6 one;
//   bulk: 1 000 and 10 000 VIPs → all in the router's kernel table;
//   failover: uplink of an edge blackholed (nft drop both ways) → its nexthop
//     leaves the router's ECMP route; with BFD 100 ms × 3 and with hold 3 s;
//     and IPv6 alone dropped → the IPv6 VIP's nexthop leaves (BFD over IPv6).
// Prints a table, then the JSON summary as the last line.
import { performance } from 'node:perf_hooks';
import { NO_ATTRS, type DesiredVip } from '../src/bgp/attributes.js';
import { createBgpLab, type BgpLab } from '../test/lib/gobgpd.js';
import { blackhole, gatewaysOf, kernelRoutes, RouteMonitor, sleep, waitFor } from '../test/lib/netns.js';

const RUNS = Number(process.env['BENCH_BGP_RUNS'] ?? 25);
const FAILOVER_RUNS = Number(process.env['BENCH_BGP_FAILOVER_RUNS'] ?? 3);
const BFD = { minRxMs: 100, minTxMs: 100, multiplier: 3 };

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

const vip = (prefix: string): DesiredVip => ({ prefix, attrs: NO_ATTRS });

function bulkVips(n: number, second: number): DesiredVip[] {
  return Array.from({ length: n }, (_, i) => vip(`10.${second + Math.floor(i / 65536)}.${Math.floor(i / 256) % 256}.${i % 256}/32`));
}

const v4Vip = (i: number): string => `10.77.${Math.floor(i / 250)}.${(i % 250) + 1}`;
const v6Vip = (i: number): string => `2001:db8:77::${(i + 1).toString(16)}`;

async function announceWithdraw(lab: BgpLab, mon: RouteMonitor, address: (i: number) => string, runs: number): Promise<{ announce: number[]; withdraw: number[] }> {
  const sp = lab.edges[0]!.speaker!;
  const announce: number[] = [];
  const withdraw: number[] = [];
  for (let i = 0; i < runs; i++) {
    const addr = address(i);
    let t0 = performance.now();
    await sp.setDesired([vip(`${addr}/${addr.includes(':') ? 128 : 32}`)]);
    const a = await mon.next((e) => e.kind === 'add' && e.dst === addr, 10000, t0);
    announce.push(a.at - t0);
    await sleep(50);
    t0 = performance.now();
    await sp.setDesired([]);
    const d = await mon.next((e) => e.kind === 'del' && e.dst === addr, 10000, t0);
    withdraw.push(d.at - t0);
    await sleep(50);
  }
  return { announce, withdraw };
}

/** Reject after ms unless `p` settles first; the timer never keeps the process alive. */
function within<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what())), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

async function bulk(lab: BgpLab, mon: RouteMonitor, n: number, second: number): Promise<{ up: number; down: number }> {
  const sp = lab.edges[0]!.speaker!;
  const vips = bulkVips(n, second);
  const want = new Set(vips.map((v) => v.prefix.replace('/32', '')));
  const seen = new Set<string>();
  let done: (() => void) | null = null;
  const finished = new Promise<void>((r) => (done = r));
  let kind: 'add' | 'del' = 'add';
  const listener = (e: { kind: string; dst: string }) => {
    if (e.kind !== kind || !want.has(e.dst) || seen.has(e.dst)) return;
    seen.add(e.dst);
    if (seen.size === want.size) done?.();
  };
  mon.listeners.push(listener);
  try {
    let t0 = performance.now();
    await sp.setDesired(vips);
    await within(finished, 120000, () => `only ${seen.size}/${n} routes arrived`);
    const up = (performance.now() - t0) / 1000;
    seen.clear();
    kind = 'del';
    const finished2 = new Promise<void>((r) => (done = r));
    t0 = performance.now();
    await sp.setDesired([]);
    await within(finished2, 120000, () => `only ${seen.size}/${n} routes withdrawn`);
    const down = (performance.now() - t0) / 1000;
    return { up, down };
  } finally {
    mon.listeners.splice(mon.listeners.indexOf(listener), 1);
  }
}

async function bfdUp(lab: BgpLab, peer: string): Promise<boolean> {
  const peers = await lab.router.vtyshJson<{ peer: string; status: string }[]>('show bfd peers json');
  return peers.find((p) => p.peer === peer)?.status === 'up';
}

/**
 * Blackhole edge `i`'s uplink and time until its nexthop leaves the router's
 * route: from just before the nft command is spawned (conservative) to the
 * `ip monitor route` event of the kernel route change that left one nexthop.
 */
async function failover(lab: BgpLab, mon: RouteMonitor, i: number, prefix: string, withBfd: boolean): Promise<number[]> {
  const keep = lab.edges[0]!;
  const e = lab.edges[i]!;
  // An IPv6 VIP: only IPv6 is dropped on the uplink, so only the IPv6 session's BFD can notice.
  const v6 = prefix.includes(':');
  const addr = (x: typeof e) => (v6 ? x.address6 : x.address);
  const dst = prefix.replace(/\/(32|128)$/, '');
  const both = JSON.stringify([addr(keep), addr(e)].sort());
  const only = JSON.stringify([addr(keep)]);
  const gws = async () => JSON.stringify(gatewaysOf(await kernelRoutes(lab.routerNs, v6 ? 6 : 4), prefix));
  await keep.speaker!.setDesired([vip(prefix)]);
  await e.speaker!.setDesired([vip(prefix)]);
  const out: number[] = [];
  for (let run = 0; run < FAILOVER_RUNS; run++) {
    if (!(await waitFor(async () => (await gws()) === both, 30000))) throw new Error(`edge ${i}: ECMP route never formed (${await gws()})`);
    if (withBfd && !(await waitFor(() => bfdUp(lab, addr(e)), 30000, 50))) throw new Error(`edge ${i}: BFD never came up`);
    await sleep(1000); // let keepalives settle after a re-establish
    const t0 = performance.now();
    await blackhole(e.ns, 'eth0', true, v6 ? 'ip6' : undefined);
    try {
      let since = t0;
      for (;;) {
        const ev = await mon.next((x) => x.dst === dst, 30000, since);
        if ((await gws()) === only) {
          out.push(ev.at - t0);
          break;
        }
        since = ev.at + 0.001;
      }
    } finally {
      await blackhole(e.ns, 'eth0', false);
    }
  }
  await e.speaker!.setDesired([]);
  await keep.speaker!.setDesired([]);
  return out;
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const lab = await createBgpLab([
    { v6: true },
    { v6: true, routerSide: { bfd: BFD }, peer: { bfd: { enabled: true, ...BFD } } },
    { routerSide: { holdTime: 3, keepalive: 1 }, peer: { holdTime: 3, keepalive: 1 } },
  ]);
  let mon: RouteMonitor | null = null;
  let mon6: RouteMonitor | null = null;
  try {
    await Promise.all(lab.edges.map((_, i) => lab.startSpeaker(i, { reconcileIntervalMs: 2000 })));
    for (const a of lab.edges.flatMap((e) => [e.address, e.address6].filter(Boolean))) {
      if (!(await waitFor(() => lab.router.established(a), 20000))) throw new Error(`session with ${a} did not establish`);
    }
    mon = await RouteMonitor.start(lab.routerNs);
    mon6 = await RouteMonitor.start(lab.routerNs, 6);
    // Alternating families, so a slower period of the shared machine hits both alike.
    const aw = { announce: [] as number[], withdraw: [] as number[] };
    const aw6 = { announce: [] as number[], withdraw: [] as number[] };
    const half = Math.ceil(RUNS / 2);
    for (let round = 0; round < 2; round++) {
      const a = await announceWithdraw(lab, mon, (i) => v4Vip(round * half + i), half);
      const b = await announceWithdraw(lab, mon6, (i) => v6Vip(round * half + i), half);
      aw.announce.push(...a.announce);
      aw.withdraw.push(...a.withdraw);
      aw6.announce.push(...b.announce);
      aw6.withdraw.push(...b.withdraw);
    }
    const k1 = await bulk(lab, mon, 1000, 200);
    const k10 = await bulk(lab, mon, 10000, 210);
    const bfd = await failover(lab, mon, 1, '10.66.0.1/32', true);
    const bfd6 = await failover(lab, mon6, 1, '2001:db8:66::1/128', true);
    const hold = await failover(lab, mon, 2, '10.66.0.2/32', false);
    const ratio6 = pct(aw6.announce, 50) / pct(aw.announce, 50);

    const rows: [string, string][] = [
      [`announce → router kernel (${aw.announce.length} runs)`, `p50 ${pct(aw.announce, 50).toFixed(1)} ms, p95 ${pct(aw.announce, 95).toFixed(1)} ms`],
      [`withdraw → router kernel (${aw.withdraw.length} runs)`, `p50 ${pct(aw.withdraw, 50).toFixed(1)} ms, p95 ${pct(aw.withdraw, 95).toFixed(1)} ms`],
      [
        `IPv6 announce → router kernel (${aw6.announce.length} runs)`,
        `p50 ${pct(aw6.announce, 50).toFixed(1)} ms, p95 ${pct(aw6.announce, 95).toFixed(1)} ms (${ratio6.toFixed(2)}× IPv4's p50, same run)`,
      ],
      [`IPv6 withdraw → router kernel (${aw6.withdraw.length} runs)`, `p50 ${pct(aw6.withdraw, 50).toFixed(1)} ms, p95 ${pct(aw6.withdraw, 95).toFixed(1)} ms`],
      ['1 000 VIPs → all in router table', `${k1.up.toFixed(2)} s (withdraw all ${k1.down.toFixed(2)} s)`],
      ['10 000 VIPs → all in router table', `${k10.up.toFixed(2)} s (withdraw all ${k10.down.toFixed(2)} s)`],
      [`failover, BFD 100 ms × 3 (${bfd.length} runs)`, `median ${pct(bfd, 50).toFixed(0)} ms [${bfd.map((x) => x.toFixed(0)).join(', ')}]`],
      [`failover, BFD over IPv6, IPv6 dropped (${bfd6.length} runs)`, `median ${pct(bfd6, 50).toFixed(0)} ms [${bfd6.map((x) => x.toFixed(0)).join(', ')}]`],
      [`failover, hold 3 s / keepalive 1 s (${hold.length} runs)`, `median ${pct(hold, 50).toFixed(0)} ms [${hold.map((x) => x.toFixed(0)).join(', ')}]`],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    console.log(`edgelb bench:bgp — FRR 8.4 router, gobgpd edges, namespaces (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
    console.log(
      JSON.stringify({
        announce_p50_ms: Number(pct(aw.announce, 50).toFixed(1)),
        announce_p95_ms: Number(pct(aw.announce, 95).toFixed(1)),
        withdraw_p50_ms: Number(pct(aw.withdraw, 50).toFixed(1)),
        announce6_p50_ms: Number(pct(aw6.announce, 50).toFixed(1)),
        announce6_p95_ms: Number(pct(aw6.announce, 95).toFixed(1)),
        withdraw6_p50_ms: Number(pct(aw6.withdraw, 50).toFixed(1)),
        announce6_vs_v4: Number(ratio6.toFixed(2)),
        vips_1k_s: Number(k1.up.toFixed(2)),
        vips_10k_s: Number(k10.up.toFixed(2)),
        failover_bfd_ms: Number(pct(bfd, 50).toFixed(0)),
        failover_bfd6_ms: Number(pct(bfd6, 50).toFixed(0)),
        failover_hold_ms: Number(pct(hold, 50).toFixed(0)),
      }),
    );
  } finally {
    mon?.stop();
    mon6?.stop();
    const td = Date.now();
    await lab.destroy();
    if (Date.now() - td > 10000) console.error(`slow lab teardown: ${((Date.now() - td) / 1000).toFixed(1)} s`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
