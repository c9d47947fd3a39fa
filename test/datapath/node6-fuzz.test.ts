// Fuzz, IPv6: ≥ 100 000 random, well-formed and mutated IPv6 frames through
// the node program's ingress and egress. Nothing may crash; every verdict is
// "pass" or "drop"; only frames carrying Destination Options or IP6IP6 may
// be dropped; a frame the program changed must be exactly one of:
//   ingress header strip → the same frame minus the 24 bytes after the
//     fixed header, Next Header and payload length restored, and only when
//     those 24 bytes were our header, from the trusted edge neighbour,
//     naming a configured frontend whose local pod is the destination;
//   ingress IP6IP6 → the inner packet, from the trusted neighbour and an
//     edge source, DNATed to a local pod of its frontend (checksum valid
//     whenever the input's was);
//   egress → the source rewritten to a configured frontend VIP:port,
//     nothing else but the checksum, valid whenever the input's was (a
//     later fragment: the source to a frontend VIP, nothing else).
// Deterministic per seed (FUZZ_SEED=n to replay; the seed is logged).
import test from 'ava';
import { buildNd6, buildPacket6, dsr6Header, fragHeader, ip6Bytes, NH_DSTOPTS, NH_HOPOPTS, NH_ROUTING, padHeader, parse6, verifyL4Checksum6, type ExtHeader, type Packet6Spec } from '../lib/packets6.js';
import { localServiceEntries } from '../../src/datapath/node-datapath.js';
import { EDGE6, loadNode6, MAC_A, MAC_ROUTER, NODE_NAME, OTHER_NODE_POD6, run, standardServices6, TC_SHOT, TC_UNSPEC } from './node-fixtures.js';
import { mulberry32 } from '../lib/seeded-random.js';

const TARGET_RUNS = 100_000;
const TIME_LIMIT_MS = 150_000;

const hex = (b: Buffer): string => b.toString('hex');

test('fuzz IPv6: ≥ 100 000 random and mutated frames through ingress and egress, zero mis-forwards', (t) => {
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
  t.log(`FUZZ_SEED=${seed}`);
  const rnd = mulberry32(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number): boolean => rnd() < p;

  const dp = loadNode6(t, { maxFlows: 65536, tcpIdleSeconds: 60, udpIdleSeconds: 20, closeSeconds: 5 });
  dp.setTestClock(1_000_000_000_000n);
  dp.trustEdgeNeighbour(EDGE6, MAC_A); // confirmed at the test clock's time, not the host's uptime

  const { entries } = localServiceEntries(standardServices6(), { name: NODE_NAME });
  const key = (vip: Buffer, port: number, proto: number): string => `${hex(vip)}:${port}/${proto}`;
  const pods = new Map(entries.map((e) => [key(ip6Bytes(e.vip), e.port, e.proto === 'TCP' ? 6 : 17), new Set(e.backends.map((b) => `${hex(ip6Bytes(b.ip))}:${b.port}`))]));
  const frontends = entries.map((e) => ({ vip: e.vip, port: e.port, proto: e.proto }));
  const vips = new Set(entries.map((e) => hex(ip6Bytes(e.vip))));
  /** Is this IPv6 packet a fragment with a non-zero offset (its chain walked up to the Fragment header)? */
  const later6 = (ip: Buffer): boolean => {
    let nh = ip[6]!;
    let off = 40;
    for (let i = 0; i < 8 && off + 8 <= ip.length; i++) {
      if (nh === 44) return (ip.readUInt16BE(off + 2) & 0xfff8) !== 0;
      if (nh !== NH_HOPOPTS && nh !== NH_DSTOPTS && nh !== NH_ROUTING) return false;
      [nh, off] = [ip[off]!, off + (ip[off + 1]! + 1) * 8];
    }
    return false;
  };
  const podIps = [...new Set(entries.flatMap((e) => e.backends.map((b) => b.ip))), OTHER_NODE_POD6];
  const clients = Array.from({ length: 20 }, (_, i) => `2001:db8:c::${i + 1}`);
  const randomExt = (): ExtHeader[] => Array.from({ length: int(3) }, () => (chance(0.2) ? fragHeader(int(2) * 100, chance(0.5)) : padHeader(pick([NH_HOPOPTS, NH_DSTOPTS, NH_ROUTING]))));
  const l4 = (proto: 'TCP' | 'UDP', sport: number, dport: number): Pick<Packet6Spec, 'tcp' | 'udp'> =>
    proto === 'TCP'
      ? { tcp: { sport, dport, seq: int(2 ** 32), flags: int(256), payload: Buffer.alloc(int(40), int(256)) } }
      : { udp: { sport, dport, payload: Buffer.alloc(int(40), int(256)) } };

  function ingressFrame(): Buffer {
    const f = pick(frontends);
    const proto = chance(0.9) ? f.proto : f.proto === 'TCP' ? 'UDP' : 'TCP';
    const mac = chance(0.9) ? MAC_A : MAC_ROUTER;
    switch (int(4)) {
      case 0:
      case 1: {
        const hdr = chance(0.85) ? dsr6Header(chance(0.9) ? f.vip : '2001:db8:f::99', chance(0.9) ? f.port : int(65536)) : dsr6Header(f.vip, f.port, { optLen: int(40), pad: [int(3), int(3)] });
        return buildPacket6({ eth: { src: mac }, ip: { src: pick(clients), dst: pick(podIps) }, ext: [hdr, ...(chance(0.2) ? randomExt() : [])], ...l4(proto, 1024 + int(2000), pick([8080, 5353, int(65536)])) });
      }
      case 2:
        if (chance(0.15)) return ingressIcmp();
        return buildPacket6({ eth: { src: mac }, ip: { src: chance(0.9) ? EDGE6 : '2001:db8:bad::1', dst: 'fd00::21' }, inner: { ip: { src: pick(clients), dst: chance(0.9) ? f.vip : pick(podIps) }, ...(chance(0.1) ? { ext: randomExt() } : {}), ...l4(proto, 1024 + int(2000), chance(0.9) ? f.port : int(65536)) } });
      default:
        return chance(0.3)
          ? buildNd6({ kind: pick(['ns', 'na'] as const), src: chance(0.5) ? EDGE6 : pick(clients), dst: 'ff02::1', target: chance(0.5) ? EDGE6 : 'fd00::21', lladdr: chance(0.8) ? mac : MAC_ROUTER, ethSrc: mac, hopLimit: chance(0.8) ? 255 : 64 })
          : buildPacket6({ eth: { src: mac }, ip: { src: pick(clients), dst: pick(podIps) }, ext: randomExt(), ...l4(proto, 1024 + int(2000), pick([8080, 5353])) });
    }
  }

  /** Flows an ingress frame set up (client:cp → pod:pp, proto): ICMPv6 errors quote them so some find a live flow. */
  const seen: Array<{ client: string; cport: number; pod: string; pport: number; proto: 'TCP' | 'UDP'; vip: string; vport: number }> = [];
  const quoted = (src: string, dst: string, sport: number, dport: number, proto: 'TCP' | 'UDP'): Buffer =>
    buildPacket6({ eth: false, ip: { src, dst }, ...l4(proto, sport, dport) }).subarray(0, 40 + 8 + int(40));
  const icmpError = (eth: Packet6Spec['eth'], src: string, dst: string, quote: Buffer): Packet6Spec => ({
    eth, ip: { src, dst }, icmp6: { type: pick([1, 2, 3, 4, 1, 2, 128]), code: int(5), body: Buffer.concat([Buffer.alloc(4, int(256)), quote]) },
  });

  /** A pod's ICMPv6 error about a client's packet (egress), mostly about a flow the fuzz set up. */
  function egressIcmp(): Buffer {
    const s = seen.length > 0 && chance(0.8) ? pick(seen) : { client: pick(clients), cport: 1024 + int(2000), pod: pick(podIps), pport: pick([8080, 5353]), proto: pick(['TCP', 'UDP'] as const) };
    const src = chance(0.9) ? s.pod : pick(podIps);
    const dst = chance(0.9) ? s.client : pick(clients);
    return buildPacket6(icmpError({}, src, dst, quoted(s.client, s.pod, s.cport, s.pport, s.proto)));
  }

  /** An edge's IP6IP6 carrying a router's ICMPv6 error about a reply from a VIP (ingress). */
  function ingressIcmp(): Buffer {
    const s = seen.length > 0 && chance(0.8) ? pick(seen) : { client: pick(clients), cport: 1024 + int(2000), vip: pick(frontends).vip, vport: pick(frontends).port, proto: pick(['TCP', 'UDP'] as const) };
    const quote = quoted(s.vip, s.client, s.vport, s.cport, s.proto);
    return buildPacket6({ eth: { src: chance(0.9) ? MAC_A : MAC_ROUTER }, ip: { src: chance(0.9) ? EDGE6 : '2001:db8:bad::1', dst: 'fd00::21' }, inner: icmpError(undefined, '2001:db8:7::1', chance(0.9) ? s.vip : pick(podIps), quote) });
  }

  function egressFrame(): Buffer {
    if (chance(0.15)) return egressIcmp();
    const f = pick(frontends);
    return buildPacket6({ eth: {}, ip: { src: pick(podIps), dst: pick(clients) }, ...(chance(0.2) ? { ext: randomExt() } : {}), ...l4(chance(0.9) ? f.proto : 'UDP', pick([8080, 5353]), 1024 + int(2000)) });
  }

  function mutate(f: Buffer): Buffer {
    const m = Buffer.from(f);
    const r = int(10);
    if (r < 3) return m.subarray(0, 14 + int(m.length - 14));
    if (r < 7) for (let i = 0; i < 1 + int(4); i++) m[14 + int(m.length - 14)] = int(256);
    return m;
  }

  const upperValid = (ip: Buffer): boolean => {
    try {
      return verifyL4Checksum6(ip);
    } catch {
      return false;
    }
  };

  /** Link-layer senders trusted right now: MAC_A, and whatever a fuzzed NS/NA taught (an on-link sender may claim an edge's address: outside the trust model). */
  const trusted = (f: Buffer): boolean => {
    const mac = [...f.subarray(6, 12)].map((x) => x.toString(16).padStart(2, '0')).join(':');
    return dp.edgeNeighbours().some((n) => n.mac === mac);
  };

  /** Our header right after the fixed header of a frame, as the program must judge it. */
  function acceptableStrip(inp: Buffer, out: Buffer): string | null {
    if (out.length !== inp.length - 24 || inp[20] !== NH_DSTOPTS) return 'strip of a frame without our header first';
    const h = inp.subarray(54, 78);
    if (h[1] !== 2 || h[2] !== 0x5e || h[3] !== 18 || h[22] !== 1 || h[23] !== 0) return 'strip of a malformed header';
    if (!trusted(inp)) return 'strip from an untrusted sender';
    const e = Buffer.concat([inp.subarray(0, 54), inp.subarray(78)]);
    e[20] = h[0]!;
    e.writeUInt16BE(inp.readUInt16BE(18) - 24, 18);
    if (!e.equals(out)) return 'strip changed more than the header';
    // Flow recorded only for TCP/UDP right behind our header; it must name a frontend whose pod is the destination.
    if (h[0] === 6 || h[0] === 17) {
      const set = pods.get(key(h.subarray(6, 22), h.readUInt16BE(4), h[0]));
      if (!set || !set.has(`${hex(inp.subarray(38, 54))}:${inp.readUInt16BE(78 + 2)}`)) return 'strip for a frontend/pod pair that is not configured';
    }
    return null;
  }

  function acceptableDecap(inp: Buffer, out: Buffer): string | null {
    if (out.length !== inp.length - 40 || inp[20] !== 41) return 'decap of a frame that is no IP6IP6';
    if (!trusted(inp) || !inp.subarray(22, 38).equals(ip6Bytes(EDGE6))) return 'decap from an untrusted edge';
    const inner = inp.subarray(54);
    const ip = out.subarray(14);
    if (!out.subarray(0, 14).equals(inp.subarray(0, 14))) return 'decap changed the Ethernet header';
    const q = parse6(Buffer.from(inner));
    const proto = q.chain[q.chain.length - 1]!;
    const set = pods.get(key(inner.subarray(24, 40), inner.readUInt16BE(q.upperOffset + 2), proto));
    if (!set || !set.has(`${hex(ip.subarray(24, 40))}:${ip.readUInt16BE(q.upperOffset + 2)}`)) return 'decap to an address that is no pod of the frontend';
    if (!ip.subarray(0, 24).equals(inner.subarray(0, 24))) return 'decap changed the inner header beyond the destination';
    for (let i = 40; i < ip.length; i++) {
      const o = i - q.upperOffset;
      if (o === 2 || o === 3 || o === (proto === 6 ? 16 : 6) || o === (proto === 6 ? 17 : 7)) continue;
      if (ip[i] !== inner[i]) return `decap changed inner byte ${i}`;
    }
    if (upperValid(inner) && !upperValid(ip)) return 'decap broke the checksum';
    return null;
  }

  /** ICMPv6 error bytes (IP offsets) a re-addressing may change: `addr` (16), the quote's `qaddr` (16) and `qport` (2), the checksum. */
  function onlyReaddressed(before: Buffer, after: Buffer, addr: number, qaddr: number, qport: number): string | null {
    for (let i = 0; i < after.length; i++) {
      if ((i >= addr && i < addr + 16) || (i >= qaddr && i < qaddr + 16) || i === qport || i === qport + 1 || i === 42 || i === 43) continue;
      if (after[i] !== before[i]) return `changed byte ${i} of the ICMPv6 error`;
    }
    if (upperValid(before) && !upperValid(after)) return 'broke the ICMPv6 checksum';
    return null;
  }

  /** A pod's ICMPv6 error sent as the VIP's: source and quoted destination one frontend's VIP:port, whose pod the error came from. */
  function acceptableIcmpRewrite(inp: Buffer, out: Buffer): string | null {
    if (out.length !== inp.length || out[20] !== 58) return 'egress rewrote an ICMPv6 error into something else';
    const ip = out.subarray(14);
    const before = inp.subarray(14);
    const q = 48;
    if (!ip.subarray(8, 24).equals(ip.subarray(q + 24, q + 40))) return 'ICMPv6 error: source and quoted destination differ';
    const set = pods.get(key(ip.subarray(8, 24), ip.readUInt16BE(q + 42), ip[q + 6]!));
    if (!set || !set.has(`${hex(before.subarray(8, 24))}:${before.readUInt16BE(q + 42)}`)) return 'ICMPv6 error sent as a frontend the pod is not behind';
    const why = onlyReaddressed(before, ip, 8, q + 24, q + 42);
    return why ? `egress ${why}` : null;
  }

  /** A router's ICMPv6 error steered to a pod: decapsulated, destination and quoted source one pod of the frontend the quote names. */
  function acceptableIcmpDecap(inp: Buffer, out: Buffer): string | null {
    if (!trusted(inp) || !inp.subarray(22, 38).equals(ip6Bytes(EDGE6))) return 'ICMPv6 decap from an untrusted edge';
    if (!out.subarray(0, 14).equals(inp.subarray(0, 14))) return 'ICMPv6 decap changed the Ethernet header';
    const inner = inp.subarray(54);
    const ip = out.subarray(14);
    const q = 48;
    if (ip.equals(inner)) return null; // the quote named one of our pods' flows already: only decapsulated
    if (!ip.subarray(24, 40).equals(ip.subarray(q + 8, q + 24))) return 'ICMPv6 decap: destination and quoted source differ';
    const set = pods.get(key(inner.subarray(q + 8, q + 24), inner.readUInt16BE(q + 40), inner[q + 6]!));
    if (!set || !set.has(`${hex(ip.subarray(24, 40))}:${ip.readUInt16BE(q + 40)}`)) return 'ICMPv6 error steered to no pod of the quoted frontend';
    const why = onlyReaddressed(inner, ip, 24, q + 8, q + 40);
    return why ? `ingress ${why}` : null;
  }

  function acceptableRewrite(inp: Buffer, out: Buffer): string | null {
    if (inp.length > 20 && inp[20] === 58) return acceptableIcmpRewrite(inp, out);
    if (out.length !== inp.length) return 'egress changed the length';
    const ip = out.subarray(14);
    const q = parse6(Buffer.from(ip));
    const proto = q.chain[q.chain.length - 1]!;
    const later = later6(inp.subarray(14));
    if (later) {
      // A later fragment of a rewritten reply (node_frags6): its source
      // becomes a VIP; nothing else changes.
      if (!vips.has(hex(ip.subarray(8, 24)))) return 'egress fragment source is no frontend VIP';
      for (let i = 0; i < out.length; i++) if (out[i] !== inp[i] && (i - 14 < 8 || i - 14 >= 24)) return `egress fragment changed byte ${i}`;
      return null;
    }
    if (proto !== 6 && proto !== 17) return 'egress rewrote a packet whose upper layer is not TCP/UDP';
    if (!pods.has(key(ip.subarray(8, 24), ip.readUInt16BE(q.upperOffset), proto))) return 'egress source is no frontend';
    const csum = q.upperOffset + (proto === 6 ? 16 : 6);
    for (let i = 0; i < out.length; i++) {
      const o = i - 14;
      if ((o >= 8 && o < 24) || o === q.upperOffset || o === q.upperOffset + 1 || o === csum || o === csum + 1) continue;
      if (out[i] !== inp[i]) return `egress changed byte ${i}`;
    }
    if (upperValid(inp.subarray(14)) && !upperValid(ip)) return 'egress broke the checksum';
    return null;
  }

  /** A frame the ingress delivered to a pod: its flow, for the ICMPv6 frames to quote. */
  function remember(out: Buffer): void {
    try {
      const ip = out.subarray(14);
      const p = parse6(Buffer.from(ip));
      const nh = p.chain[p.chain.length - 1]!;
      if ((nh !== 6 && nh !== 17) || p.chain.length !== 1) return;
      const pod = `${hex(ip.subarray(24, 40))}:${ip.readUInt16BE(40 + 2)}`;
      const fe = [...pods.entries()].find(([, set]) => set.has(pod));
      const f = fe ? frontends.find((x) => key(ip6Bytes(x.vip), x.port, x.proto === 'TCP' ? 6 : 17) === fe[0]) : undefined;
      if (!f || seen.length > 500) return;
      seen.push({ client: p.src, cport: ip.readUInt16BE(40), pod: p.dst, pport: ip.readUInt16BE(42), proto: nh === 6 ? 'TCP' : 'UDP', vip: f.vip, vport: f.port });
    } catch {
      // not a packet we can read back
    }
  }

  const start = Date.now();
  let runs = 0;
  let changed = 0;
  let icmpChanged = 0;
  let dropped = 0;
  const problems: string[] = [];
  while (runs < TARGET_RUNS && Date.now() - start < TIME_LIMIT_MS && problems.length < 5) {
    const egress = chance(0.3);
    let f = egress ? egressFrame() : ingressFrame();
    if (chance(0.4)) f = mutate(f);
    let r;
    try {
      r = run(egress ? dp.egress : dp.ingress, f);
    } catch {
      continue; // shorter than the kernel builds an skb from
    }
    runs++;
    if (r.retval !== TC_UNSPEC && r.retval !== TC_SHOT) problems.push(`verdict ${r.retval}`);
    if (r.retval === TC_SHOT) {
      dropped++;
      // Only ingress frames whose chain starts with, or walks through, Destination Options, or that are IP6IP6, may be dropped.
      let chain: number[] = f.length > 20 ? [f[20]!] : [];
      try {
        chain = parse6(Buffer.from(f.subarray(14))).chain;
      } catch {
        // a chain running past the frame: its first Next Header still says what it is
      }
      if (egress || !(chain.includes(NH_DSTOPTS) || chain.includes(41))) problems.push(`dropped ${f.toString('hex')}`);
      continue;
    }
    if (r.out.equals(f)) continue;
    changed++;
    if ((egress && f[20] === 58) || (!egress && r.out.length === f.length - 40 && r.out[20] === 58)) icmpChanged++;
    const icmpInside = !egress && f.length > 54 + 6 && f[20] === 41 && f[54 + 6] === 58 && r.out.length === f.length - 40;
    const why = egress ? acceptableRewrite(f, r.out) : r.out.length === f.length - 24 ? acceptableStrip(f, r.out) : icmpInside ? acceptableIcmpDecap(f, r.out) : acceptableDecap(f, r.out);
    if (!why && !egress && (f[20] === 41 || f[20] === NH_DSTOPTS) && r.out[20] !== 58) remember(r.out);
    if (why) problems.push(`${why}: in ${f.toString('hex')} out ${r.out.toString('hex')}`);
    if (runs % 20_000 === 0) {
      dp.setTestClock(1_000_000_000_000n + BigInt(runs) * 1_000_000_000n);
      dp.trustEdgeNeighbour(EDGE6, MAC_A); // the agent confirms it every 30 s (the clock outruns the neighbour TTL)
    }
  }
  t.log(`${runs} runs in ${Date.now() - start} ms: ${changed} changed (${icmpChanged} ICMPv6 errors re-addressed), ${dropped} dropped`);
  t.deepEqual(problems, []);
  t.true(runs >= TARGET_RUNS || Date.now() - start >= TIME_LIMIT_MS, 'ran to the target or the time limit');
  t.true(changed > 1000, 'the fuzz reached the rewriting paths');
  t.true(icmpChanged > 20, 'the fuzz reached the ICMPv6 error paths');
});
