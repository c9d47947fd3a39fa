// Fuzz: ≥ 100 000 random and mutated frames through the edge program
// (XDP and, for a share of them, tc). Nothing may crash; every frame the
// program sends on (XDP_TX towards the configured gateway MAC, or a
// rewritten XDP_PASS) must be a well-formed IPv4 packet addressed to a
// configured backend (pod, or node for IPIP) or — SNAT replies — to the
// client from the VIP; checksums that were valid on input stay valid and
// invalid ones stay invalid (never laundered). An ICMP the program answers
// itself must be a well-formed fragmentation-needed from a VIP. A fragment of
// a SNAT reply (edge_snat_frag.h) translated: a first one only when it carries
// its whole TCP/UDP header, a UDP length past it and a multiple of 8 bytes,
// as the reverse map's entry for its ports says, its bytes kept but for
// ports and checksum (moved by exactly the rewrite's difference); a later
// one with the addresses of the last first fragment of its (backend, IP id,
// protocol) translated before it — never while another flow's first with
// that id is recent (ambiguous), nor long after, nor inside a TCP header.
import test from 'ava';
import { XDP_DROP, XDP_PASS, XDP_TX, TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT } from '../../src/datapath/loader.js';
import { buildPacket, icmpFragNeeded, parsePacket, verifyIpv4Checksum, verifyL4Checksum, type ParsedPacket } from '../lib/packets.js';
import { CLIENT, EDGE, VIP, backend, clientEth, openEdge, service, tcpPacket, udpPacket } from './edge-helpers.js';
import type { DesiredService } from '../../src/model/types.js';
import { xorshift32 as rng } from '../lib/seeded-random.js';

const GW_MAC = '02:00:00:00:00:fe';
const OWN_MAC = '02:00:00:00:00:fd';
const VIP2 = '203.0.113.20';
const TOTAL = 100_000;

function safe(f: () => boolean): boolean {
  try {
    return f();
  } catch {
    return false;
  }
}

test('fuzz: 100 000 random and mutated frames', (t) => {
  const seed = Number(process.env.EDGE_FUZZ_SEED ?? Date.now() % 0xffffffff);
  t.log(`seed ${seed} (EDGE_FUZZ_SEED to replay)`);
  const rand = rng(seed);
  const ri = (n: number): number => Math.floor(rand() * n);

  const dp = openEdge(t, { forward: { kind: 'gateway', gatewayMac: GW_MAC, ownMac: OWN_MAC }, mtu: 1400, snatPorts: { min: 20000, max: 20999 } });
  const bs = (base: number, n: number, port = 8080) => Array.from({ length: n }, (_, i) => backend(base + i, { port }));
  const services: DesiredService[] = [
    service({ backends: bs(1, 4) }),
    service({ frontend: { vip: VIP, port: 53, protocol: 'UDP' }, backends: bs(10, 3, 5353) }),
    service({ frontend: { vip: VIP, port: 81, protocol: 'TCP' }, dispatch: 'ipip', backends: bs(20, 3) }),
    service({ frontend: { vip: VIP2, port: 443, protocol: 'TCP' }, mode: 'snat', backends: bs(30, 2, 8443) }),
    service({ frontend: { vip: VIP2, port: 53, protocol: 'UDP' }, mode: 'hybrid', backends: bs(40, 2, 5353) }),
    service({ frontend: { vip: VIP2, port: 80, protocol: 'TCP' }, mode: 'hybrid', affinityTimeoutSeconds: 60, sourceRanges: ['0.0.0.0/1'], backends: bs(50, 5) }),
  ];
  dp.applyServices(services);
  const vips = new Set([VIP, VIP2]);
  const pods = new Set(services.flatMap((s) => s.backends.map((b) => b.ip)));
  const nodes = new Set(services.flatMap((s) => s.backends.map((b) => b.nodeIp)));
  const svcBy = new Map(services.map((s) => [`${s.frontend.vip}:${s.frontend.port}/${s.frontend.protocol === 'TCP' ? 6 : 17}`, s]));

  // Seeds: valid frames of every kind the program handles.
  const reply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, df: true }, tcp: { sport: 80, dport: 40000, flags: { ack: true }, payload: Buffer.alloc(100) } });
  const seeds: Buffer[] = [
    tcpPacket({ flags: { syn: true } }),
    tcpPacket({ flags: { ack: true }, payload: Buffer.alloc(200, 1) }),
    tcpPacket({ flags: { syn: true }, dport: 81 }),
    tcpPacket({ flags: { syn: true }, dst: VIP2, dport: 443 }),
    tcpPacket({ flags: { ack: true, psh: true }, dst: VIP2, dport: 80, payload: Buffer.from('x') }),
    tcpPacket({ flags: { syn: true }, payload: Buffer.alloc(1380) }), // too big with the option
    tcpPacket({ flags: { syn: true }, df: false, payload: Buffer.alloc(1380) }),
    udpPacket({}),
    udpPacket({ dst: VIP2, dport: 53 }),
    udpPacket({ checksum: 0 }),
    buildPacket({ eth: clientEth, ip: { src: '198.51.100.254', dst: VIP }, icmp: icmpFragNeeded({ mtu: 1280, original: reply }) }),
    buildPacket({ eth: clientEth, ip: { src: '10.244.1.30', dst: EDGE }, tcp: { sport: 8443, dport: 20000, flags: { ack: true } } }),
    buildPacket({ eth: clientEth, ip: { src: CLIENT, dst: VIP, mf: true }, udp: { sport: 1, dport: 53, payload: Buffer.alloc(32) } }),
    tcpPacket({ flags: { syn: true }, dst: '203.0.113.99' }),
  ];
  // Establish SNAT state so reverse packets can match.
  for (const s of seeds) dp.program('xdp').testRun({ data: s });
  // Each SNAT flow's reply in two fragments (each its own IP id): the first
  // with the TCP/UDP header, the rest.
  const unfragmented = seeds.length;
  let fragId = 0x1000;
  for (const [k] of dp.map('edge_snat_rev').entries()) {
    const be = ip4s(k, 0);
    const proto = k[8]!;
    const l4 = proto === 6
      ? buildPacket({ eth: false, ip: { src: be, dst: EDGE }, tcp: { sport: k.readUInt16BE(4), dport: k.readUInt16BE(6), seq: 7, ack: 9, flags: { ack: true }, payload: Buffer.alloc(300, 3) } }).subarray(20)
      : buildPacket({ eth: false, ip: { src: be, dst: EDGE }, udp: { sport: k.readUInt16BE(4), dport: k.readUInt16BE(6), payload: Buffer.alloc(1000, 5) } }).subarray(20);
    const cut = proto === 6 ? 48 : 608;
    fragId++;
    seeds.push(buildPacket({ eth: clientEth, ip: { src: be, dst: EDGE, id: fragId, mf: true, protocol: proto }, payload: Buffer.from(l4.subarray(0, cut)) }));
    seeds.push(buildPacket({ eth: clientEth, ip: { src: be, dst: EDGE, id: fragId, fragOffset: cut, protocol: proto }, payload: Buffer.from(l4.subarray(cut)) }));
  }
  t.true(seeds.length - unfragmented >= 4, 'fragments of a TCP and a UDP SNAT reply');

  const failures: string[] = [];
  const fail = (why: string, input: Buffer, out: Buffer): void => {
    if (failures.length < 10) failures.push(`${why}\n in  ${input.toString('hex')}\n out ${out.toString('hex')}`);
  };

  const mutate = (b: Buffer): Buffer => {
    let m = Buffer.from(b);
    const kind = ri(8);
    if (kind <= 2) {
      // flip a few bytes in the headers
      const n = 1 + ri(4);
      for (let i = 0; i < n; i++) {
        const at = ri(Math.min(m.length, 90));
        m[at] = kind === 0 ? ri(256) : m[at]! ^ (1 << ri(8));
      }
    } else if (kind === 3) {
      m = m.subarray(0, ri(m.length + 1));
    } else if (kind === 4) {
      m = Buffer.concat([m, Buffer.from(Array.from({ length: ri(64) }, () => ri(256)))]);
    } else if (kind === 5 && m.length >= 34) {
      // header fields: IHL, total length, flags/fragment
      const f = ri(3);
      if (f === 0) m[14] = 0x40 | ri(16);
      else if (f === 1) m.writeUInt16BE(ri(0x10000), 16);
      else m.writeUInt16BE(ri(0x10000), 20);
    } else if (kind === 6 && m.length >= 38) {
      // source address / ports: new flows, source ranges
      m.writeUInt32BE(ri(0x10000) * 0x10000 + ri(0x10000), 26);
      m.writeUInt16BE(ri(0x10000), 34);
    }
    return Buffer.from(m);
  };

  const checkForwarded = (input: Buffer, out: Buffer, p: ParsedPacket): string | null => {
    if (out.length < 34) return 'short output';
    const inIp = input.subarray(14);
    const ipOk = safe(() => verifyIpv4Checksum(inIp));
    const outIp = out.subarray(14);
    if (p.ip.totalLength > outIp.length) return 'IP total length beyond the frame';
    if (p.ip.protocol === 4) {
      if (!nodes.has(p.ip.dst)) return `IPIP to ${p.ip.dst}, not a node`;
      if (p.ip.src !== EDGE) return `IPIP from ${p.ip.src}`;
      if (!verifyIpv4Checksum(outIp)) return 'outer IPv4 checksum';
      const innerLen = inIp.length >= 4 ? inIp.readUInt16BE(2) : -1;
      if (p.ip.totalLength !== innerLen + 20) return 'outer length != inner + 20';
      const inner = outIp.subarray(20, 20 + innerLen);
      if (inner[9] === 1) {
        // A steered ICMP error: rewritten to the pod before encapsulation.
        if (!pods.has(p.inner?.ip.dst ?? '')) return `IPIP-steered ICMP to ${p.inner?.ip.dst}`;
        if (safe(() => verifyIpv4Checksum(inner)) !== ipOk) return 'inner IPv4 checksum validity changed';
        return null;
      }
      // The client's packet, untouched but for the hop: TTL − 1 (and the header checksum with it).
      const sent = inIp.subarray(0, innerLen);
      const same = (a: number, b: number): boolean => inner.subarray(a, b).equals(sent.subarray(a, b));
      if (inner.length !== sent.length || !same(0, 8) || !same(9, 10) || !same(12, inner.length)) return 'inner packet modified';
      if (inner[8] !== sent[8]! - 1) return `inner TTL ${inner[8]} after ${sent[8]}`;
      if (safe(() => verifyIpv4Checksum(inner)) !== ipOk) return 'inner IPv4 checksum validity changed';
      return null;
    }
    if (safe(() => verifyIpv4Checksum(outIp)) !== ipOk) return `IPv4 checksum validity changed (in ${ipOk})`;
    const l4In = safe(() => verifyL4Checksum(inIp));
    const l4Out = safe(() => verifyL4Checksum(outIp));
    if (l4In && !l4Out) return 'L4 checksum broken';
    if (!l4In && l4Out && ipOk) return 'L4 checksum laundered';
    if (p.ip.protocol === 1) {
      if (!pods.has(p.ip.dst)) return `ICMP steered to ${p.ip.dst}`;
      return null;
    }
    if (p.ip.fragOffset !== 0 || p.ip.mf) return snatFragment(inIp, outIp, p);
    if (p.truncated) return 'truncated headers';
    const l4 = p.tcp ?? p.udp;
    if (!l4) return `protocol ${p.ip.protocol} forwarded`;
    if (p.ip.ihl === 28) {
      const opt = p.ip.optionList.find((o) => o.type === 0x9e);
      if (!opt || opt.length !== 8) return 'IHL 7 without the DSR option';
      const vip = `${opt.data[2]}.${opt.data[3]}.${opt.data[4]}.${opt.data[5]}`;
      const s = svcBy.get(`${vip}:${opt.data.readUInt16BE(0)}/${p.ip.protocol}`);
      if (!s) return `option names ${vip}:${opt.data.readUInt16BE(0)}, not a service`;
      if (!s.backends.some((b) => b.ip === p.ip.dst && b.port === l4.dport)) return `option packet to ${p.ip.dst}:${l4.dport}, not a backend of ${s.service}`;
      return null;
    }
    if (p.ip.ihl !== 20) return `IHL ${p.ip.ihl} forwarded`;
    if (pods.has(p.ip.dst)) {
      const ok = services.some((s) => s.backends.some((b) => b.ip === p.ip.dst && b.port === l4.dport));
      return ok ? null : `to ${p.ip.dst}:${l4.dport}, not a backend`;
    }
    if (vips.has(p.ip.src)) return null; // SNAT reply: VIP → client
    return `forwarded to ${p.ip.dst} from ${p.ip.src}`;
  };

  /** The reverse map's entry for a backend's reply to an edge port. */
  const rev = (be: Buffer, bport: number, eport: number, proto: number): { client: string; vip: string; cport: number; vport: number } | null => {
    const k = Buffer.alloc(12);
    be.copy(k, 0, 0, 4);
    k.writeUInt16BE(bport, 4);
    k.writeUInt16BE(eport, 6);
    k[8] = proto;
    const v = dp.map('edge_snat_rev').lookup(k);
    return v ? { client: ip4s(v, 0), vip: ip4s(v, 4), cport: v.readUInt16BE(8), vport: v.readUInt16BE(10) } : null;
  };

  /** Per (backend, IP id, protocol): when each (client, VIP) last had a first fragment translated, and the latest. */
  const firsts = new Map<string, { latest: string; at: number; seen: Map<string, number> }>();
  const frags = { first: 0, later: 0 };

  /** A backend's reply fragment translated (edge_snat_frag.h). */
  const snatFragment = (inIp: Buffer, ip: Buffer, p: ParsedPacket): string | null => {
    if (inIp.length < 20 || ip4s(inIp, 16) !== EDGE) return 'a fragment not to the edge translated';
    if (inIp[0] !== 0x45 || p.ip.ihl !== 20) return 'a fragment with IP options translated';
    const len = p.ip.totalLength;
    if (len !== inIp.readUInt16BE(2)) return 'fragment length changed';
    if (!ip.subarray(4, 8).equals(inIp.subarray(4, 8)) || ip[9] !== inIp[9] || ip[1] !== inIp[1]) return 'fragment id, flags, offset, protocol or TOS changed';
    if (ip[8] !== inIp[8]! - 1) return 'fragment TTL not decremented';
    const proto = ip[9]!;
    if (proto !== 6 && proto !== 17) return `fragment of protocol ${proto} translated`;
    const key = `${ip4s(inIp, 12)}/${inIp.readUInt16BE(4)}/${proto}`;
    const to = `${p.ip.dst}/${p.ip.src}`;
    const now = Date.now();
    const l4len = len - 20;
    if (p.ip.fragOffset === 0) {
      // A first fragment: a reply's rules on the bytes it has.
      if (l4len < (proto === 6 ? 20 : 8)) return 'first fragment without its whole header translated';
      if (proto === 6 && (inIp[20 + 12]! >> 4) * 4 > l4len) return 'first fragment: TCP header beyond it';
      if (proto === 6 && inIp[20 + 12]! >> 4 < 5) return 'first fragment: TCP data offset below 5';
      if (proto === 17 && inIp.readUInt16BE(20 + 4) <= l4len) return 'first fragment: UDP length within it';
      if (l4len % 8 !== 0) return 'first fragment of a length not a multiple of 8';
      const v = rev(inIp.subarray(12, 16), inIp.readUInt16BE(20), inIp.readUInt16BE(22), proto);
      if (!v) return 'first fragment translated without a flow';
      if (p.ip.src !== v.vip || ip.readUInt16BE(20) !== v.vport || p.ip.dst !== v.client || ip.readUInt16BE(22) !== v.cport) return 'first fragment translated to another flow';
      const ck = proto === 6 ? 16 : 6;
      const outL4 = Buffer.from(ip.subarray(20, len));
      const inL4 = Buffer.from(inIp.subarray(20, len));
      const noSum = proto === 17 && inL4.readUInt16BE(6) === 0;
      if (noSum && outL4.readUInt16BE(6) !== 0) return 'a UDP checksum of 0 (none) was changed';
      for (const b of [outL4, inL4]) b.fill(0, 0, 4).fill(0, ck, ck + 2);
      if (!outL4.equals(inL4)) return 'first fragment changed beyond ports and checksum';
      // The checksum covers the whole datagram: it must move by exactly the
      // difference of addresses and ports, i.e. this fragment's share of the
      // sum (with the pseudo-header's addresses) stays the same.
      const share = (b: Buffer): number => onesSum(Buffer.concat([b.subarray(12, 20), b.subarray(20, len)]));
      if (!noSum && share(inIp) !== share(ip)) return 'first fragment checksum not moved by the rewrite';
      const f = firsts.get(key) ?? { latest: to, at: now, seen: new Map<string, number>() };
      f.latest = to;
      f.at = now;
      f.seen.set(to, now);
      firsts.set(key, f);
      frags.first++;
      return null;
    }
    const f = firsts.get(key);
    if (!f) return 'later fragment translated before any first of its id';
    if (f.latest !== to) return 'later fragment translated to another flow than its last first';
    if ([...f.seen].some(([other, at]) => other !== to && now - at < 1500)) return 'later fragment of an ambiguous id translated';
    if (now - f.at > 2500) return 'later fragment translated long after its first';
    if (proto === 6 && p.ip.fragOffset < 20) return 'later fragment overlapping the TCP header translated';
    if (!ip.subarray(20, len).equals(inIp.subarray(20, len))) return 'later fragment\'s payload changed';
    frags.later++;
    return null;
  };

  const started = Date.now();
  let n = 0;
  const verdicts = new Map<string, number>();
  const xdp = dp.program('xdp');
  const tc = dp.program('tc');
  for (; n < TOTAL && Date.now() - started < 90_000; n++) {
    let input: Buffer;
    const r = rand();
    if (r < 0.15) {
      input = Buffer.from(Array.from({ length: 14 + ri(120) }, () => ri(256)));
      if (rand() < 0.5) input.writeUInt16BE(0x0800, 12);
    } else {
      input = mutate(seeds[ri(seeds.length)]!);
      if (rand() < 0.3) input = mutate(input);
    }
    if (input.length < 14) input = Buffer.concat([input, Buffer.alloc(14 - input.length)]);
    const useTc = n % 10 === 0;
    let res;
    try {
      res = (useTc ? tc : xdp).testRun({ data: input });
    } catch (e) {
      // The kernel's tc test-run refuses frames without a whole fixed
      // header of the family their EtherType names (IPv4 20 bytes, IPv6 40).
      if (useTc && input.length < 14 + (input.readUInt16BE(12) === 0x86dd ? 40 : 20) && (e as { code?: string }).code === 'EINVAL') continue;
      fail(`${useTc ? 'tc' : 'xdp'} testRun threw ${(e as Error).message}`, input, Buffer.alloc(0));
      continue;
    }
    const { retval, dataOut: out } = res;
    const vk = `${useTc ? 'tc' : 'xdp'}:${retval}`;
    verdicts.set(vk, (verdicts.get(vk) ?? 0) + 1);
    const pass = useTc ? TC_ACT_OK : XDP_PASS;
    if (useTc) {
      if (![TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT].includes(retval)) fail(`tc verdict ${retval}`, input, out);
    } else if (![XDP_PASS, XDP_DROP, XDP_TX].includes(retval)) {
      fail(`verdict ${retval}`, input, out);
      continue;
    }
    if (retval === pass && out.equals(input)) continue;
    if (retval === XDP_DROP || retval === TC_ACT_SHOT) continue;
    let p: ParsedPacket;
    try {
      p = parsePacket(out);
    } catch (e) {
      fail(`unparseable output: ${(e as Error).message}`, input, out);
      continue;
    }
    const toGw = out.subarray(0, 6).equals(Buffer.from(GW_MAC.split(':').map((x) => parseInt(x, 16))));
    // Our own ICMP fragmentation-needed, recognised by what it is rather than
    // where it goes (in gateway mode it rightly leaves via the gateway MAC,
    // since the client is behind the router): a new packet, so its checksums
    // must be valid whatever the input's were.
    const inSrc = input.length >= 30 ? `${input[26]}.${input[27]}.${input[28]}.${input[29]}` : '';
    const ownIcmp = p.ip.protocol === 1 && p.ip.dst === inSrc &&
      ((p.icmp?.type === 3 && p.icmp.code === 4 && vips.has(p.ip.src)) || (p.icmp?.type === 11 && p.icmp.code === 0 && p.ip.src === EDGE));
    if (ownIcmp && (retval === XDP_TX || retval === TC_ACT_REDIRECT)) {
      if (!verifyIpv4Checksum(out.subarray(14)) || !verifyL4Checksum(out.subarray(14))) fail('ICMP checksum', input, out);
      continue;
    }
    if ((retval === XDP_TX || retval === TC_ACT_REDIRECT) && !toGw) {
      fail('TX that is neither forwarded nor our ICMP', input, out);
      continue;
    }
    if (retval === pass && !toGw) {
      // rewritten but handed to the stack (too big without DF): must still be a proper forward
      const why = checkForwarded(input, out, p);
      if (why) fail(`PASS rewritten: ${why}`, input, out);
      continue;
    }
    const why = checkForwarded(input, out, p);
    if (why) fail(why, input, out);
  }
  t.log(`${n} frames in ${Date.now() - started} ms; verdicts ${JSON.stringify([...verdicts])}`);
  t.true(n >= TOTAL, `only ${n} frames within the time bound`);
  t.deepEqual(failures, []);
  // The fuzz must actually have exercised the forwarding paths.
  t.true((verdicts.get(`xdp:${XDP_TX}`) ?? 0) > 1000);
  t.log(`SNAT reply fragments translated: ${JSON.stringify(frags)}`);
  t.true(frags.first > 100, 'first fragments of SNAT replies were exercised');
  t.true(frags.later > 100, 'later fragments of SNAT replies were exercised');
});

/** Dotted IPv4 address at b[at]. */
function ip4s(b: Buffer, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** One's-complement sum of big-endian 16-bit words (an odd byte padded), modulo 0xffff (0 and 0xffff are the same number). */
function onesSum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += i + 1 < b.length ? b.readUInt16BE(i) : b[i]! << 8;
  return sum % 0xffff;
}
