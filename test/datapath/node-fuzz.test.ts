// Fuzz: ≥ 100 000 random, well-formed and mutated frames through the node
// program's ingress and egress. Nothing may crash; every verdict is "pass"
// or "drop"; a packet the program changed must be well-formed (IPv4 header
// and L4 checksums valid whenever the input's were, lengths) and carry
// only addresses from the configured tables:
//   ingress option strip → the same packet minus exactly our 8 bytes,
//   ingress ipip → the inner packet DNATed to a local pod of its frontend,
//     or an ICMP error re-addressed (with its quote) to a local pod,
//   egress → source rewritten to a configured frontend VIP:port (for a
//     pod's ICMP error: source and quoted destination; for a later
//     fragment: source to a frontend VIP, nothing else).
// Deterministic per seed (FUZZ_SEED=n to replay; the seed is logged).
import test from 'ava';
import {
  buildPacket,
  dsrOption,
  icmpFragNeeded,
  parsePacket,
  verifyIpv4Checksum,
  verifyL4Checksum,
  type PacketSpec,
  type ParsedPacket,
} from '../lib/packets.js';
import { localServiceEntries } from '../../src/datapath/node-datapath.js';
import { EDGE_IP, loadNode, MAC_A, MAC_ROUTER, NODE_IP, NODE_NAME, run, standardServices, TC_SHOT, TC_UNSPEC } from './node-fixtures.js';
import { mulberry32 } from '../lib/seeded-random.js';

const TARGET_RUNS = 100_000;
const TIME_LIMIT_MS = 150_000;

test('fuzz: ≥ 100 000 random and mutated frames through ingress and egress', (t) => {
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
  t.log(`FUZZ_SEED=${seed}`);
  const rnd = mulberry32(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number): boolean => rnd() < p;
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));

  const dp = loadNode(t, { nodeIp: NODE_IP, maxFlows: 65536, tcpIdleSeconds: 60, udpIdleSeconds: 20, closeSeconds: 5 });
  dp.setTestClock(1_000_000_000_000n);
  dp.trustEdgeNeighbour(EDGE_IP, MAC_A); // confirmed at the test clock's time, not the host's uptime
  let clock = 1_000_000_000_000n;

  // The configured tables, as the checks see them.
  const { entries } = localServiceEntries(standardServices(), { name: NODE_NAME });
  const frontends = entries.map((e) => ({ vip: e.vip, port: e.port, proto: e.proto }));
  const frontendKey = (vip: string, port: number, proto: string): string => `${vip}:${port}/${proto}`;
  const frontendSet = new Set(frontends.map((f) => frontendKey(f.vip, f.port, f.proto)));
  const frontendVips = new Set(frontends.map((f) => f.vip));
  const podsOf = new Map(entries.map((e) => [frontendKey(e.vip, e.port, e.proto), new Set(e.backends.map((b) => `${b.ip}:${b.port}`))]));
  const localPods = [...new Set(entries.flatMap((e) => e.backends.map((b) => b.ip)))];
  const clients = Array.from({ length: 40 }, (_, i) => `198.51.${100 + (i % 3)}.${1 + i}`);
  const randomIp = (): string => `${int(256)}.${int(256)}.${int(256)}.${int(256)}`;

  // Tuples seen on ingress, so generated replies hit the flow table often.
  const tuples: Array<{ client: string; cport: number; pod: string; pport: number; proto: 'TCP' | 'UDP' }> = [];
  const remember = (tu: (typeof tuples)[number]): void => {
    if (tuples.length < 4000) tuples.push(tu);
    else tuples[int(tuples.length)] = tu;
  };

  const l4 = (proto: 'TCP' | 'UDP', sport: number, dport: number): Pick<PacketSpec, 'tcp' | 'udp'> => {
    const payload = chance(0.5) ? Buffer.alloc(0) : bytes(int(300));
    if (proto === 'TCP') {
      const flags = chance(0.5) ? 0x02 : pick([0x10, 0x18, 0x11, 0x04, 0x14, 0x12, int(256)]);
      return { tcp: { sport, dport, seq: int(2 ** 32), ack: int(2 ** 32), flags, payload, ...(chance(0.2) ? { options: bytes(4 * (1 + int(4))) } : {}) } };
    }
    return { udp: { sport, dport, payload, ...(chance(0.05) ? { checksum: 0 } : {}) } };
  };

  // Mostly the edge's frames; some from a stranger (a router forwarding a
  // client's forgery), which must never be acted on.
  const edgeOrNot = (): string => (chance(0.95) ? MAC_A : MAC_ROUTER);
  const EDGE_MAC_BYTES = Buffer.from(MAC_A.split(':').map((x) => parseInt(x, 16)));

  const genOption = (): Buffer => {
    const f = chance(0.9) ? pick(frontends) : { vip: randomIp(), port: int(65536), proto: pick(['TCP', 'UDP'] as const) };
    const client = pick(clients);
    const cport = 1024 + int(60000);
    // Mostly one of the frontend's own pods; else any local pod, or anything.
    const own = [...(podsOf.get(frontendKey(f.vip, f.port, f.proto)) ?? [])];
    const [pod, pport] = own.length > 0 && chance(0.8)
      ? (() => { const [a, p] = pick(own).split(':'); return [a!, Number(p)] as const; })()
      : [chance(0.8) ? pick(localPods) : randomIp(), chance(0.8) ? pick([8080, 5353]) : int(65536)] as const;
    remember({ client, cport, pod, pport, proto: f.proto });
    let options = dsrOption(f.vip, f.port);
    if (chance(0.1)) options = Buffer.concat([options, Buffer.from([1, 1, 1, 0])]);
    return buildPacket({
      eth: { src: edgeOrNot(), dst: '02:00:00:00:00:02' },
      ip: { src: client, dst: pod, ttl: 1 + int(255), id: int(65536), tos: int(256), df: chance(0.5), options },
      ...l4(f.proto, cport, pport),
    });
  };

  // Forward tuples sent over ipip, so generated ICMP errors quote real flows.
  const fwdTuples: Array<{ client: string; cport: number; vip: string; vport: number; proto: 'TCP' | 'UDP' }> = [];
  const genIpipIcmp = (): Buffer => {
    const fw = fwdTuples.length > 0 && chance(0.9) ? pick(fwdTuples) : { client: pick(clients), cport: int(65536), vip: pick(frontends).vip, vport: int(65536), proto: pick(['TCP', 'UDP'] as const) };
    const quoted = buildPacket({ eth: false, ip: { src: fw.vip, dst: fw.client, df: true, id: int(65536) }, ...l4(fw.proto, fw.vport, fw.cport) });
    const inner: Omit<PacketSpec, 'eth'> = { ip: { src: randomIp(), dst: fw.vip, ttl: 1 + int(255) }, icmp: icmpFragNeeded({ mtu: 576 + int(1000), original: quoted }) };
    return buildPacket({ eth: { src: edgeOrNot() }, ip: { src: chance(0.95) ? EDGE_IP : pick(clients), dst: NODE_IP }, inner });
  };

  const genIpip = (): Buffer => {
    const f = chance(0.9) ? pick(frontends) : { vip: randomIp(), port: int(65536), proto: pick(['TCP', 'UDP'] as const) };
    const client = pick(clients);
    const cport = 1024 + int(60000);
    if (fwdTuples.length < 2000) fwdTuples.push({ client, cport, vip: f.vip, vport: f.port, proto: f.proto });
    else fwdTuples[int(fwdTuples.length)] = { client, cport, vip: f.vip, vport: f.port, proto: f.proto };
    const inner: Omit<PacketSpec, 'eth'> = { ip: { src: client, dst: f.vip, ttl: 1 + int(255), id: int(65536), tos: int(256) }, ...l4(f.proto, cport, f.port) };
    const frame = buildPacket({ eth: { src: edgeOrNot() }, ip: { src: chance(0.95) ? EDGE_IP : pick(clients), dst: chance(0.95) ? NODE_IP : randomIp(), tos: inner.ip.tos ?? 0 }, inner });
    // The reply tuple is only known after the ingress run; record it then.
    return frame;
  };

  const genReply = (): Buffer => {
    const tu = tuples.length > 0 && chance(0.85) ? pick(tuples) : { client: pick(clients), cport: int(65536), pod: pick(localPods), pport: pick([8080, 5353]), proto: pick(['TCP', 'UDP'] as const) };
    return buildPacket({ eth: {}, ip: { src: tu.pod, dst: tu.client, id: int(65536), ttl: 64 }, ...l4(tu.proto, tu.pport, tu.cport) });
  };

  // A pod's ICMP error about a flow it served (or about anything).
  const genPodIcmp = (): Buffer => {
    const tu = tuples.length > 0 && chance(0.85) ? pick(tuples) : { client: pick(clients), cport: int(65536), pod: pick(localPods), pport: pick([8080, 5353]), proto: pick(['TCP', 'UDP'] as const) };
    const quoted = buildPacket({ eth: false, ip: { src: tu.client, dst: tu.pod, id: int(65536) }, ...l4(tu.proto, tu.cport, tu.pport) });
    return buildPacket({ eth: {}, ip: { src: tu.pod, dst: tu.client, id: int(65536) }, icmp: { type: 3, code: int(16), payload: quoted.subarray(0, 28 + int(Math.max(1, quoted.length - 27))) } });
  };

  const genRandom = (): Buffer => {
    const b = bytes(14 + int(200));
    if (chance(0.7)) b.writeUInt16BE(pick([0x0800, 0x0800, 0x8100, 0x86dd]), 12);
    if (b.readUInt16BE(12) === 0x0800 && b.length > 14 && chance(0.8)) b[14] = 0x40 | (5 + int(11));
    if (b.length > 23 && chance(0.5)) b[23] = pick([4, 6, 17, 1]);
    return b;
  };

  const mutate = (f: Buffer): Buffer => {
    const b = Buffer.from(f);
    switch (int(5)) {
      case 0: // flip a few bytes anywhere
        for (let i = 1 + int(4); i > 0; i--) b[int(b.length)] = int(256);
        return b;
      case 1: // truncate
        return b.subarray(0, 14 + int(Math.max(1, b.length - 14)));
      case 2: // IPv4 header fields: IHL, total length, fragment, protocol
        if (b.length >= 34) {
          const which = int(4);
          if (which === 0) b[14] = 0x40 | int(16);
          else if (which === 1) b.writeUInt16BE(int(65536), 16);
          else if (which === 2) b.writeUInt16BE(int(65536), 20);
          else b[23] = pick([0, 1, 4, 6, 17, int(256)]);
        }
        return b;
      case 3: // option bytes (type/length) right after the base header
        if (b.length >= 36) {
          b[34] = chance(0.5) ? 0x9e : int(256);
          b[35] = pick([0, 1, 2, 6, 8, 10, 40, int(256)]);
        }
        return b;
      default: // trailing bytes (Ethernet padding)
        return Buffer.concat([b, bytes(1 + int(40))]);
    }
  };

  const l4Valid = (ipBytes: Buffer): boolean => {
    try {
      return verifyL4Checksum(ipBytes);
    } catch {
      return false;
    }
  };
  // packets.ts refuses malformed IP option lists, which the program never
  // reads (except ours): parse a copy whose options are NOPs, verify
  // checksums on the real bytes.
  const nopOptions = (b: Buffer, off: number): number => {
    if (b.length < off + 20 || b[off]! >> 4 !== 4) return -1;
    const ihl = (b[off]! & 15) * 4;
    if (ihl > 20 && b.length >= off + ihl) b.fill(1, off + 20, off + ihl);
    return ihl;
  };
  const tryParse = (f: Buffer): ParsedPacket | null => {
    const c = Buffer.from(f);
    if (c.length >= 14 && c.readUInt16BE(12) === 0x0800) {
      const ihl = nopOptions(c, 14);
      if (ihl >= 20 && c[14 + 9] === 4) nopOptions(c, 14 + ihl);
    }
    try {
      return parsePacket(c);
    } catch {
      // IPIP whose payload is no IPv4 packet: parse the outer header alone.
      if (c.length < 34 || c[23] !== 4) return null;
      c[23] = 253;
      try {
        return parsePacket(c);
      } catch {
        return null;
      }
    }
  };

  let runs = 0;
  let changed = 0;
  let dropped = 0;
  let refused = 0;
  const failures: string[] = [];
  const fail = (what: string, f: Buffer): void => {
    if (failures.length < 10) failures.push(`${what}: ${f.toString('hex')}`);
  };

  const exec = (dir: 'ingress' | 'egress', f: Buffer): void => {
    let r;
    try {
      r = run(dir === 'ingress' ? dp.ingress : dp.egress, f);
    } catch (e) {
      // The kernel refuses frames it cannot build an skb from (no Ethernet
      // header, or a short IPv4/IPv6 base header); nothing else may throw.
      if (f.length < 14 || (f.readUInt16BE(12) === 0x0800 && f.length < 34) || (f.readUInt16BE(12) === 0x86dd && f.length < 54)) {
        refused++;
        return;
      }
      fail(`${dir} threw ${(e as Error).message}`, f);
      return;
    }
    runs++;
    if (r.retval === TC_SHOT) {
      dropped++;
      return;
    }
    if (r.retval !== TC_UNSPEC) return fail(`${dir} verdict ${r.retval}`, f);
    if (r.out.equals(f)) return;
    changed++;
    const inP = tryParse(f);
    const outP = tryParse(r.out);
    if (!inP || !outP) return fail(`${dir} changed an unparseable frame`, f);
    const inIp = f.subarray(14);
    const outIp = r.out.subarray(14);
    // Header checksums are updated incrementally: valid stays valid, and a
    // corrupted header is not laundered into a valid one.
    const ipOk = (ip: Buffer): boolean => {
      try {
        return verifyIpv4Checksum(ip);
      } catch {
        return false;
      }
    };
    // The program looks for our option before it looks at the protocol.
    const hasOption = inP.ip.ihl > 20 && f[34] === 0x9e;
    const isIpip = dir === 'ingress' && !hasOption && inP.ip.protocol === 4 && inP.inner !== undefined;
    // The trust boundary: only the edge's frames (its link-layer address;
    // for IPIP also an edge outer source) are ever acted on.
    const fromEdge = f.subarray(6, 12).equals(EDGE_MAC_BYTES) && (!isIpip || inP.ip.src === EDGE_IP);
    if (dir === 'ingress' && !fromEdge) return fail('ingress rewrote a frame that is no edge\'s', f);
    const srcHeader = isIpip ? inIp.subarray(inP.ip.ihl) : inIp;
    if (ipOk(srcHeader) !== ipOk(outIp)) return fail(`${dir} output IPv4 checksum validity changed`, f);
    if (outP.ip.totalLength > outIp.length || outP.ip.totalLength < outP.ip.ihl) return fail(`${dir} output total length`, f);
    const unfragmented = !outP.ip.mf && outP.ip.fragOffset === 0;

    if (dir === 'egress' && outP.icmp) {
      const q = outP.icmp.embedded;
      const ql4 = q?.tcp ?? q?.udp;
      if (!q || !ql4) return fail('egress ICMP output without a quote', f);
      const proto = q.tcp ? 'TCP' : 'UDP';
      if (!frontendSet.has(frontendKey(outP.ip.src, ql4.dport, proto)) || q.ip.dst !== outP.ip.src) return fail(`egress ICMP from ${outP.ip.src}, quote to ${q.ip.dst}:${ql4.dport}: no frontend`, f);
      if (outP.ip.dst !== inP.ip.dst) return fail('egress ICMP changed the destination', f);
      if (l4Valid(inIp) && !l4Valid(outIp)) return fail('egress broke a valid ICMP checksum', f);
      return;
    }
    if (dir === 'egress' && inP.ip.fragOffset !== 0) {
      // A later fragment of a rewritten reply (node_frags): its source
      // becomes a VIP, with the header checksum; nothing else changes.
      if (!frontendVips.has(outP.ip.src)) return fail(`egress fragment from ${outP.ip.src}: no frontend VIP`, f);
      for (let i = 0; i < f.length; i++) if (r.out[i] !== f[i] && i !== 24 && i !== 25 && (i < 26 || i >= 30)) return fail(`egress fragment changed byte ${i}`, f);
      return;
    }
    if (dir === 'egress') {
      const l4o = outP.tcp ?? outP.udp;
      const l4i = inP.tcp ?? inP.udp;
      if (!l4o || !l4i) return fail('egress rewrote a non-TCP/UDP packet', f);
      const proto = outP.tcp ? 'TCP' : 'UDP';
      if (!frontendSet.has(frontendKey(outP.ip.src, l4o.sport, proto))) return fail(`egress source ${outP.ip.src}:${l4o.sport}/${proto} is no frontend`, f);
      if (outP.ip.dst !== inP.ip.dst || l4o.dport !== l4i.dport) return fail('egress changed the destination', f);
      if (unfragmented && l4Valid(inIp) && !l4Valid(outIp)) return fail('egress broke a valid L4 checksum', f);
      if (r.out.length !== f.length) return fail('egress changed the length', f);
      return;
    }

    if (isIpip && inP.inner?.icmp && outP.icmp) {
      // An ICMP error about one of our flows, re-addressed to its pod.
      const q = outP.icmp.embedded;
      const ql4 = q?.tcp ?? q?.udp;
      if (!q || !ql4) return fail('ipip ICMP output without a quote', f);
      if (!localPods.includes(outP.ip.dst)) return fail(`ipip ICMP to ${outP.ip.dst}, no local pod`, f);
      if (q.ip.src !== outP.ip.dst) return fail('ipip ICMP quote source is not the pod', f);
      if (outP.ip.src !== inP.inner.ip.src) return fail('ipip ICMP changed the source', f);
      if (l4Valid(inIp.subarray(inP.ip.ihl)) && !l4Valid(outIp)) return fail('ipip ICMP broke a valid ICMP checksum', f);
      return;
    }
    if (isIpip && inP.inner) {
      const inner = inP.inner;
      const l4o = outP.tcp ?? outP.udp;
      const l4i = inner.tcp ?? inner.udp;
      if (!l4o || !l4i) return fail('ipip output without TCP/UDP', f);
      const proto = outP.tcp ? 'TCP' : 'UDP';
      const pods = podsOf.get(frontendKey(inner.ip.dst, l4i.dport, proto));
      if (!pods?.has(`${outP.ip.dst}:${l4o.dport}`)) return fail(`ipip DNAT to ${outP.ip.dst}:${l4o.dport}, not a pod of ${inner.ip.dst}:${l4i.dport}/${proto}`, f);
      if (outP.ip.src !== inner.ip.src || l4o.sport !== l4i.sport) return fail('ipip changed the source', f);
      if (unfragmented && l4Valid(inIp.subarray(inP.ip.ihl)) && !l4Valid(outIp)) return fail('ipip broke a valid L4 checksum', f);
      if (!r.out.subarray(0, 14).equals(f.subarray(0, 14))) return fail('ipip changed L2', f);
      remember({ client: outP.ip.src, cport: l4o.sport, pod: outP.ip.dst, pport: l4o.dport, proto });
      return;
    }

    // Option strip: exactly bytes 34..41 removed, header fixed, nothing else.
    if (!hasOption) return fail('ingress changed a packet without our option', f);
    if (outP.ip.ihl !== inP.ip.ihl - 8 || outP.ip.totalLength !== inP.ip.totalLength - 8) return fail('strip lengths', f);
    if (!r.out.subarray(14 + 20).equals(f.subarray(14 + 28))) return fail('strip changed bytes after the option', f);
    const same = (a: number, b: number): boolean => r.out.subarray(a, b).equals(f.subarray(a, b));
    if (!same(0, 14) || !same(15, 16) || !same(18, 24) || !same(26, 34)) return fail('strip changed L2, TOS, id/frag/ttl/proto or addresses', f);
    if (unfragmented && l4Valid(inIp) !== l4Valid(outIp)) return fail('strip changed L4 checksum validity', f);
  };

  const started = Date.now();
  let i = 0;
  while (runs < TARGET_RUNS) {
    if (Date.now() - started > TIME_LIMIT_MS) break;
    if (i % 4000 === 3999) {
      clock += BigInt(int(30)) * 1_000_000_000n;
      dp.setTestClock(clock);
      dp.trustEdgeNeighbour(EDGE_IP, MAC_A); // the agent confirms it every 30 s (the clock outruns the neighbour TTL)
    }
    i++;
    const kind = int(10);
    let f: Buffer;
    let dirs: Array<'ingress' | 'egress'>;
    if (kind < 3) [f, dirs] = [genOption(), ['ingress']];
    else if (kind < 5) [f, dirs] = [chance(0.1) ? genIpipIcmp() : genIpip(), ['ingress']];
    else if (kind < 7) [f, dirs] = [chance(0.1) ? genPodIcmp() : genReply(), ['egress']];
    else if (kind < 8) [f, dirs] = [genRandom(), ['ingress', 'egress']];
    else [f, dirs] = [mutate(pick([genOption, genIpip, genIpipIcmp, genReply, genPodIcmp])()), ['ingress', 'egress']];
    for (const d of dirs) exec(d, f);
  }
  const secs = (Date.now() - started) / 1000;
  t.log(`${runs} runs in ${secs.toFixed(1)} s: ${changed} rewritten, ${dropped} dropped, ${refused} refused by the kernel`);
  t.log(JSON.stringify(dp.counters()));
  t.deepEqual(failures, []);
  t.true(runs >= TARGET_RUNS, `only ${runs} runs within ${TIME_LIMIT_MS / 1000} s`);
  t.true(changed > 10_000, 'the fuzz reached the rewriting paths');

  // Every remembered flow replies from a configured frontend.
  // ... towards one of that frontend's pods (an option naming any other destination is refused).
  for (const fl of dp.flows()) {
    const what = `flow ${JSON.stringify(fl, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`;
    t.true(frontendSet.has(frontendKey(fl.vip, fl.vipPort, fl.proto)), what);
    t.true(podsOf.get(frontendKey(fl.vip, fl.vipPort, fl.proto))?.has(`${fl.podIp}:${fl.podPort}`) ?? false, what);
  }
  for (const fw of dp.fwdEntries()) t.true(podsOf.get(frontendKey(fw.vip, fw.vipPort, fw.proto))?.has(`${fw.podIp}:${fw.podPort}`) ?? false);
});
