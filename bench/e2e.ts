// npm run bench:e2e — edgelb against what users run instead, in the lab.
//
// One lab (src/lab: client → FRR router, ECMP over BGP → two edges → two
// nodes with two echo pods each), the same client, pods and router for every
// variant; only what the edges do changes:
//   edgelb       the agent's XDP program, ip-option DSR (the default dispatch)
//   edgelb_ipip  the same, IPIP dispatch (nodes decapsulate in tc)
//   ipvs         Linux IPVS direct routing set up with ipvsadm (kube-proxy-IPVS + BGP style DSR)
//   nftdsr       stateless DSR in nftables netdev ingress (nftlb-style)
//   snat         nftables DNAT + masquerade through the edge (replies return via the edge)
// For the kernel variants the agents keep running (BGP keeps announcing the
// VIP, so the router's ECMP route is the same) but their XDP program is
// taken off the uplinks and put back afterwards (bench/lib/e2e-lab.ts).
// See bench/lib/e2e-variants.ts for the exact configuration; a variant whose
// kernel support is missing (IPVS where CONFIG_IP_VS is off) is reported as
// unavailable with the reason, never faked.
//
// Loads, each bounded in time (BENCH_E2E_SECONDS, default 5 s):
//   keepalive  wrk, HTTP/1.1 keep-alive connections (wrk's default)
//   close      wrk with `Connection: close`: a new TCP connection per request
//   udp        the lab's UDP load: a request/answer per datagram, each from a new socket
// Per variant and load: requests per second, wrk's p99 latency, and the CPU
// time the edges spent per 1 000 requests — the poll time of the edges'
// uplink NAPI threads (bench/lib/napi-cpu.ts), i.e. the receive path where
// XDP, or GRO + forwarding + netfilter/IPVS, runs (the threads' whole run
// time, wake-ups included, is shown next to it). Rounds (BENCH_E2E_ROUNDS,
// default 3) alternate the variant order; medians, with the spread shown.
// Everything shares the machine's 2 CPUs with the client, the pods and other
// work: the edges' CPU per request is the comparable figure, rps mostly
// measures the echo pods.
//
// Output: a table, then as the LAST line JSON:
// {"edgelb_rps","ipvs_rps","snat_rps","edgelb_edge_cpu_ms_per_1k","ipvs_edge_cpu_ms_per_1k",
//  "snat_edge_cpu_ms_per_1k","edgelb_p99_ms","ipvs_p99_ms", … the same for edgelb_ipip and nftdsr,
//  "loads":{keepalive|close|udp:{variant:{…}}}, "unavailable":{variant:reason}, "host":{…}}
// (the top-level figures are the keep-alive load; null where a variant could not run).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { bringUp, tearDown } from '../test/e2e/helpers.js';
import { nsRun } from '../test/lib/netns.js';
import type { Lab } from '../src/lab/lab.js';
import type { LabServiceSpec } from '../src/lab/manifests.js';
import { kernelVariant, type E2eTopology, type KernelVariant, type VariantPlan } from './lib/e2e-variants.js';
import { applySteps, macOf, XdpPark } from './lib/e2e-lab.js';
import { cpuNs, PollMeter, prepareVethNapi, realtime, rxPackets, threadedNapi, type NapiThread } from './lib/napi-cpu.js';
import { parseWrk, wrkArgv } from './lib/wrk.js';

const SECONDS = Number(process.env.BENCH_E2E_SECONDS ?? 5);
const ROUNDS = Number(process.env.BENCH_E2E_ROUNDS ?? 3);
const WRK_THREADS = Number(process.env.BENCH_E2E_WRK_THREADS ?? 2);
const WRK_CONNECTIONS = Number(process.env.BENCH_E2E_WRK_CONNECTIONS ?? 16);
const UDP_CONCURRENCY = Number(process.env.BENCH_E2E_UDP_CONCURRENCY ?? 8);
const TCP_PORT = 8080; // = the pods' port: direct routing cannot change ports
const UDP_PORT = 9090;

type VariantKey = 'edgelb' | 'edgelb_ipip' | KernelVariant;
type LoadKind = 'keepalive' | 'close' | 'udp';
const LOADS: LoadKind[] = ['keepalive', 'close', 'udp'];

interface Variant {
  key: VariantKey;
  label: string;
  vip: string;
  /** Kernel variants: what to set up and take down; null = edgelb (XDP attached). */
  plan: VariantPlan | null;
  /** Whose address the pods should see: the client's (DSR) or an edge's (SNAT). */
  podsSee: 'client' | 'edge';
}

interface Sample {
  requests: number;
  rps: number;
  p99Ms: number | null;
  cpuMsPer1k: number;
  threadMsPer1k: number;
  /** Frames the edges received per request, and edge CPU per frame (ns). */
  packetsPerRequest: number;
  cpuNsPerPacket: number;
  errors: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function hostInfo(): { cpu: string; kernel: string; cpus: number; loadavg_1m: number } {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^Model name:\s*(.+)$/m.exec(execFileSync('lscpu', { encoding: 'utf8' }));
    if (m) cpu = m[1]!.trim();
  } catch {
    // keep os.cpus()'s model
  }
  return { cpu, kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), cpus: cpus().length, loadavg_1m: Math.round(loadavg()[0]! * 100) / 100 };
}

async function serviceVip(lab: Lab, spec: LabServiceSpec): Promise<string> {
  await lab.applyService(spec);
  const vip = await lab.waitForVip(spec.name, 60_000);
  await lab.waitForGateways(vip, lab.plan.edges.map((e) => e.address), 60_000);
  return vip;
}

/** Functional check before measuring: answers from the VIP, pods see who they should. */
async function verify(lab: Lab, v: Variant): Promise<string | null> {
  try {
    await lab.waitServing(v.vip, TCP_PORT, 20_000);
  } catch (e) {
    return (e as Error).message;
  }
  const tcp = await lab.load({ kind: 'http', target: v.vip, port: TCP_PORT, count: 40, concurrency: 4, timeoutMs: 2000 });
  const udp = await lab.load({ kind: 'udp', target: v.vip, port: UDP_PORT, count: 20, concurrency: 2, timeoutMs: 1000 });
  if (tcp.failed || udp.failed) return `check load failed: tcp ${tcp.failed}/${tcp.sent}, udp ${udp.failed}/${udp.sent} (${tcp.failures[0]?.error ?? udp.failures[0]?.error ?? ''})`;
  if (udp.wrongSource) return `${udp.wrongSource} UDP answers not from the VIP`;
  const want = v.podsSee === 'client' ? [lab.plan.client.address] : lab.plan.edges.map((e) => e.address);
  const seen = Object.keys(tcp.clients);
  if (!seen.every((c) => want.includes(c))) return `pods saw ${seen.join(', ')}, expected ${want.join(' or ')}`;
  return null;
}

interface EdgeCpu {
  /** The uplink NAPI threads' poll time (the edge's work). */
  pollNs: number;
  /** Their whole run time (adds wake-ups, switches and softirqs run inside). */
  threadNs: number;
}

async function runLoad(lab: Lab, kind: LoadKind, vip: string, edgeCpu: () => EdgeCpu): Promise<Sample> {
  const rx = (): number => lab.plan.edges.reduce((a, e) => a + rxPackets(e.ns, e.uplink), 0);
  const r0 = rx();
  const c0 = edgeCpu();
  let requests: number;
  let rps: number;
  let p99Ms: number | null = null;
  let errors: number;
  if (kind === 'udp') {
    const r = await lab.load({ kind: 'udp', target: vip, port: UDP_PORT, durationMs: SECONDS * 1000, concurrency: UDP_CONCURRENCY, timeoutMs: 1000 });
    requests = r.ok;
    rps = r.ok / (r.durationMs / 1000);
    errors = r.failed + r.wrongSource;
  } else {
    const argv = wrkArgv({ url: `http://${vip}:${TCP_PORT}/`, seconds: SECONDS, threads: WRK_THREADS, connections: WRK_CONNECTIONS, close: kind === 'close' });
    const out = await nsRun(lab.plan.client.ns, argv, { timeoutMs: (SECONDS + 30) * 1000 });
    const w = parseWrk(out.stdout);
    requests = w.requests;
    rps = w.rps;
    p99Ms = w.p99Ms;
    errors = w.socketErrors + w.non2xx;
  }
  const c1 = edgeCpu();
  const cpuMs = (c1.pollNs - c0.pollNs) / 1e6;
  const threadMs = (c1.threadNs - c0.threadNs) / 1e6;
  const packets = rx() - r0;
  return {
    requests,
    rps,
    p99Ms,
    cpuMsPer1k: requests > 0 ? cpuMs / (requests / 1000) : NaN,
    threadMsPer1k: requests > 0 ? threadMs / (requests / 1000) : NaN,
    packetsPerRequest: requests > 0 ? packets / requests : NaN,
    cpuNsPerPacket: packets > 0 ? (cpuMs * 1e6) / packets : NaN,
    errors,
  };
}

async function main(): Promise<void> {
  const host = hostInfo();
  const say = (l: string): void => console.error(l);
  const h = await bringUp({ say });
  const results = new Map<string, Sample[]>(); // `${load}/${variant}`
  const unavailable = new Map<VariantKey, string>();
  const failures: string[] = [];
  const variants: Variant[] = [];
  let park: XdpPark | null = null;
  let meter: PollMeter | null = null;
  try {
    if (!h.lab || h.error) throw h.error ?? new Error('lab not available');
    const lab = h.lab;
    const p = lab.plan;
    say(`lab ${lab.prefix} up; services…`);
    const svc = (name: string, dispatch: string): LabServiceSpec => ({ name, tcpPort: TCP_PORT, udpPort: UDP_PORT, annotations: { 'edgelb.io/mode': 'dsr', 'edgelb.io/dispatch': dispatch } });
    const vipOption = await serviceVip(lab, svc('bench-option', 'ip-option'));
    const vipIpip = await serviceVip(lab, svc('bench-ipip', 'ipip'));
    // The kernel variants' VIP: a Service of its own, so BGP announces it
    // from both edges exactly like the others.
    const vipKernel = await serviceVip(lab, svc('bench-kernel', 'ip-option'));

    // CPU accounting: the edges' uplinks poll in threads of their own. The
    // fabric ports they send into stay in softirq: their work then runs at
    // the edge thread's bottom-half enable, outside the measured polls
    // (a threaded peer would put a cross-CPU wake-up — an IPI, expensive on
    // a VM — inside every edge poll).
    const threads: NapiThread[] = [];
    for (const e of p.edges) {
      await prepareVethNapi(e.ns, e.uplink, { ns: p.fabric.ns, ifname: e.fabricPort });
      const mine = await threadedNapi(e.ns, e.uplink, `${e.name} ${e.uplink}`);
      for (const t of mine) realtime(t);
      threads.push(...mine);
    }
    say(`edge NAPI threads: ${threads.map((t) => `${t.label}=${t.comm}`).join(', ')}`);
    meter = PollMeter.start(threads);
    const m = meter;
    const edgeCpu = (): EdgeCpu => ({ pollNs: m.read(threads).ns, threadNs: cpuNs(threads) });

    const topo: E2eTopology = {
      vip: vipKernel,
      tcpPort: TCP_PORT,
      udpPort: UDP_PORT,
      edges: await Promise.all(p.edges.map(async (e) => ({ name: e.name, ns: e.ns, uplink: e.uplink, address: e.address, mac: await macOf(e.ns, e.uplink) }))),
      nodes: await Promise.all(p.nodes.map(async (n) => ({ name: n.name, ns: n.ns, ifname: n.ifname, address: n.address, mac: await macOf(n.ns, n.ifname), pods: n.pods.map((x) => x.ip) }))),
    };
    variants.push(
      { key: 'edgelb', label: 'edgelb ip-option DSR (XDP)', vip: vipOption, plan: null, podsSee: 'client' },
      { key: 'edgelb_ipip', label: 'edgelb IPIP DSR (XDP)', vip: vipIpip, plan: null, podsSee: 'client' },
      { key: 'ipvs', label: 'IPVS DR (ipvsadm)', vip: vipKernel, plan: kernelVariant('ipvs', topo), podsSee: 'client' },
      { key: 'nftdsr', label: 'nftables DSR (netdev fwd)', vip: vipKernel, plan: kernelVariant('nftdsr', topo), podsSee: 'client' },
      { key: 'snat', label: 'SNAT (nftables masquerade)', vip: vipKernel, plan: kernelVariant('snat', topo), podsSee: 'edge' },
    );
    for (const v of variants) {
      if (!v.plan?.probe) continue;
      try {
        await applySteps([v.plan.probe]);
      } catch (e) {
        unavailable.set(v.key, `${v.plan.probe.argv.join(' ')}: ${(e as Error).message.split('\n').slice(-2).join(' ').trim()}`);
      }
    }
    park = new XdpPark(p.edges.map((e) => ({ ns: e.ns, ifname: e.uplink, sender: { ns: p.fabric.ns, ifname: e.fabricPort } })));

    for (let r = 0; r < ROUNDS; r++) {
      const order = r % 2 ? [...variants].reverse() : variants;
      for (const v of order) {
        if (unavailable.has(v.key)) continue;
        say(`round ${r + 1}/${ROUNDS}: ${v.label}`);
        try {
          if (v.plan) {
            park.park();
            await applySteps(v.plan.setup);
          } else {
            park.restore();
          }
          const bad = await verify(lab, v);
          if (bad) {
            failures.push(`round ${r + 1} ${v.key}: ${bad}`);
            continue;
          }
          for (const load of LOADS) {
            const s = await runLoad(lab, load, v.vip, edgeCpu);
            const k = `${load}/${v.key}`;
            results.set(k, [...(results.get(k) ?? []), s]);
          }
        } catch (e) {
          failures.push(`round ${r + 1} ${v.key}: ${(e as Error).message.split('\n')[0]}`);
        } finally {
          if (v.plan) await applySteps(v.plan.teardown).catch((e: Error) => failures.push(`teardown ${v.key}: ${e.message}`));
        }
      }
    }
    park.restore();
  } finally {
    park?.close();
    meter?.close();
    await tearDown(h);
  }
  report(variants, results, unavailable, failures, host);
}

function report(variants: Variant[], results: Map<string, Sample[]>, unavailable: Map<VariantKey, string>, failures: string[], host: ReturnType<typeof hostInfo>): void {
  const end = hostInfo();
  console.log(`bench:e2e — ${ROUNDS} rounds × ${SECONDS} s per load and variant, medians (min–max); host ${host.cpu}, kernel ${host.kernel}, ${host.cpus} CPUs`);
  console.log(`load average ${host.loadavg_1m} at start, ${end.loadavg_1m} at the end: the machine is shared (client, pods, edges and other work on the same CPUs)`);
  console.log('edge CPU = poll time of the two edges\' uplink NAPI threads (threaded NAPI, SCHED_FIFO) per 1 000 requests: XDP and its transmits, or GRO +');
  console.log('  IP stack + netfilter/IPVS + forwarding + transmit; without the thread wake-ups and the softirqs that ran inside the threads (both in "thread ms/1k").');
  console.log('pkts/req = frames the edges received per request; ns/pkt = edge CPU per frame. Per-frame cost at saturation: bench:datapath (live frames, kernel rows).');
  const loadName: Record<LoadKind, string> = {
    keepalive: `HTTP keep-alive (wrk -t${WRK_THREADS} -c${WRK_CONNECTIONS})`,
    close: `HTTP, new connection per request (wrk -t${WRK_THREADS} -c${WRK_CONNECTIONS}, Connection: close)`,
    udp: `UDP request/answer, new socket per datagram (${UDP_CONCURRENCY} in flight)`,
  };
  const json: Record<string, unknown> = {};
  const loads: Record<string, Record<string, unknown>> = {};
  const spread = (xs: number[], d: number): string => (xs.length > 1 ? ` (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})` : '');
  for (const load of LOADS) {
    console.log(`\n${loadName[load]}`);
    console.log(`${'variant'.padEnd(30)} ${'req/s'.padStart(18)} ${'p99 ms'.padStart(18)} ${'edge CPU ms / 1k req'.padStart(22)} ${'pkts/req'.padStart(8)} ${'ns/pkt'.padStart(7)} ${'thread ms/1k'.padStart(12)} ${'errors'.padStart(6)}`);
    loads[load] = {};
    for (const v of variants) {
      const why = unavailable.get(v.key);
      const xs = results.get(`${load}/${v.key}`) ?? [];
      if (why || xs.length === 0) {
        console.log(`${v.label.padEnd(30)} ${why ? `unavailable: ${why}` : 'no successful round (see below)'}`);
        loads[load]![v.key] = null;
        continue;
      }
      const rps = xs.map((x) => x.rps);
      const cpu = xs.map((x) => x.cpuMsPer1k);
      const p99 = xs.map((x) => x.p99Ms).filter((x): x is number => x !== null);
      const errors = xs.reduce((a, x) => a + x.errors, 0);
      const ppr = median(xs.map((x) => x.packetsPerRequest));
      const nspp = median(xs.map((x) => x.cpuNsPerPacket));
      const thr = median(xs.map((x) => x.threadMsPer1k));
      const fig = {
        rps: Math.round(median(rps)),
        p99_ms: p99.length ? Math.round(median(p99) * 100) / 100 : null,
        edge_cpu_ms_per_1k: Math.round(median(cpu) * 1000) / 1000,
        rounds: xs.length,
        requests: xs.reduce((a, x) => a + x.requests, 0),
        errors,
        rps_min: Math.round(Math.min(...rps)),
        rps_max: Math.round(Math.max(...rps)),
        edge_cpu_min: Math.round(Math.min(...cpu) * 1000) / 1000,
        edge_cpu_max: Math.round(Math.max(...cpu) * 1000) / 1000,
        edge_packets_per_request: Math.round(ppr * 100) / 100,
        edge_ns_per_packet: Math.round(nspp),
        edge_thread_ms_per_1k: Math.round(thr * 1000) / 1000,
      };
      loads[load]![v.key] = fig;
      console.log(
        `${v.label.padEnd(30)} ${`${fig.rps}${spread(rps, 0)}`.padStart(18)} ${(fig.p99_ms === null ? '—' : `${fig.p99_ms.toFixed(1)}${spread(p99, 1)}`).padStart(18)} ${`${fig.edge_cpu_ms_per_1k.toFixed(2)}${spread(cpu, 2)}`.padStart(22)} ${ppr.toFixed(2).padStart(8)} ${String(fig.edge_ns_per_packet).padStart(7)} ${thr.toFixed(1).padStart(12)} ${String(errors).padStart(6)}`,
      );
    }
  }
  for (const v of variants) {
    const k = (loads.keepalive?.[v.key] ?? null) as { rps: number; p99_ms: number | null; edge_cpu_ms_per_1k: number } | null;
    json[`${v.key}_rps`] = k?.rps ?? null;
    json[`${v.key}_p99_ms`] = k?.p99_ms ?? null;
    json[`${v.key}_edge_cpu_ms_per_1k`] = k?.edge_cpu_ms_per_1k ?? null;
  }
  console.log('');
  for (const v of variants) if (v.plan) console.log(`${v.key}: ${v.plan.describe}`);
  for (const f of failures) console.log(`! ${f}`);
  json.loads = loads;
  json.unavailable = Object.fromEntries(unavailable);
  json.failures = failures;
  json.host = { ...host, loadavg_1m_end: end.loadavg_1m };
  console.log(JSON.stringify(json));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
