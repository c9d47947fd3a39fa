// Fuzz: 100 000 random and mutated IPv6 frames through the edge's IPv6
// program (edge_ip6.h) on each hook — edge_xdp → edge_xdp6, and the tc
// fallback edge_tc → edge_tc6. Nothing may crash; every frame it sends on
// (XDP_TX / tc's redirect to the gateway MAC) must be one of exactly three
// things, checked against an independent model:
//   - DNAT + the 24-byte Destination Options header (dsr_option.h) naming a
//     service, to a backend of that service, from the client, L4 checksum
//     valid exactly when it was valid on input (never laundered);
//   - DNAT alone (a TCP segment that is not a SYN), the same checks;
//   - IPv6-in-IPv6 from the edge to a node, the inner packet the client's
//     but for its hop limit − 1, flow label = the flow hash's 20 bits;
//   - SNAT (snat, hybrid UDP): from the edge's address and a port of the
//     range to a backend of the frontend the packet was sent to, and the
//     reverse map holding exactly that flow under that port; or a backend's
//     reply turned into VIP:port → client as the reverse map's entry for
//     its key says (a reply matching no entry must pass untouched);
//   - a fragment of such a reply (Fragment header right behind the fixed
//     header, edge_snat_frag6.h), its Fragment header and bytes kept: a
//     first one matched by its ports as a reply is, its checksum moved by
//     exactly the address and port difference; a later one with the
//     addresses of the last first fragment of its (backend, id, protocol)
//     translated before it — never while another flow's first with that id
//     is recent (ambiguous), nor long after;
// or our own Packet Too Big (from a VIP) or Time Exceeded (from the edge)
// back to the input's source (on tc with the quoted L4 checksum a pending
// completion would store, checked by completing it). A pass must leave the
// frame untouched.
import test from 'ava';
import { TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_DROP, XDP_PASS, XDP_TX } from '../../src/datapath/loader.js';
import type { DesiredService } from '../../src/model/types.js';
import { buildPacket6, dsr6Header, fragHeader, padHeader, verifyL4Checksum6, NH_HOPOPTS, ip6Bytes } from '../lib/packets6.js';
import { openEdge } from './edge-helpers.js';
import { BE6_ID0, CLIENT6, EDGE6, RING6_OFF, SVC6_ID, VIP6, apply6, backend6, completionStores, eth6, flowHash6, quoteChecksumAt, service6, tcp6, udp6 } from './edge6-helpers.js';
import { xorshift32 as rng } from '../lib/seeded-random.js';

const GW_MAC = '02:00:00:00:00:fe';
const OWN_MAC = '02:00:00:00:00:fd';
const VIP6B = '2001:db8:100::20';
const SNAT_LO = 20000;
const SNAT_HI = 20999;
const TOTAL = 100_000;
/** Our Packet Too Big frame: Ethernet + IPv6 + ICMPv6 + a 128-byte quote (edge_dsr6.h). */
const EDGE6_PTB_FRAME = 14 + 40 + 8 + 128;

function safe(f: () => boolean): boolean {
  try {
    return f();
  } catch {
    return false;
  }
}

const hexAddr = (b: Buffer, off: number): string => b.subarray(off, off + 16).toString('hex');
const A = (a: string): string => ip6Bytes(a).toString('hex');

for (const hook of ['xdp', 'tc'] as const) test(`${hook}: fuzz: 100 000 random and mutated IPv6 frames, zero mis-forwards`, (t) => {
  const V = hook === 'xdp' ? { pass: XDP_PASS, drop: XDP_DROP, tx: XDP_TX } : { pass: TC_ACT_OK, drop: TC_ACT_SHOT, tx: TC_ACT_REDIRECT };
  const seed = Number(process.env.EDGE_FUZZ_SEED ?? Date.now() % 0xffffffff);
  t.log(`seed ${seed} (EDGE_FUZZ_SEED to replay)`);
  const rand = rng(seed);
  const ri = (n: number): number => Math.floor(rand() * n);

  const dp = openEdge(t, { forward: { kind: 'gateway', gatewayMac: GW_MAC, ownMac: OWN_MAC }, mtu: 1400, address6: EDGE6, ipv6: true, hooks: [hook], snatPorts: { min: SNAT_LO, max: SNAT_HI } });
  const bs = (base: number, n: number, port = 8080) => Array.from({ length: n }, (_, i) => backend6(base + i, { port }));
  const services: DesiredService[] = [
    service6({ backends: bs(1, 4) }),
    service6({ frontend: { vip: VIP6, port: 53, protocol: 'UDP' }, backends: bs(10, 3, 5353) }),
    service6({ frontend: { vip: VIP6, port: 81, protocol: 'TCP' }, dispatch: 'ipip', backends: bs(20, 3) }),
    service6({ frontend: { vip: VIP6B, port: 443, protocol: 'TCP' }, affinityTimeoutSeconds: 60, sourceRanges: ['2001:db8:1::/48'], backends: bs(30, 2, 8443) }),
    service6({ frontend: { vip: VIP6B, port: 53, protocol: 'UDP' }, dispatch: 'ipip', backends: bs(40, 2, 5353) }),
    service6({ frontend: { vip: VIP6B, port: 8443, protocol: 'TCP' }, mode: 'snat', backends: bs(50, 2, 8443) }),
    service6({ frontend: { vip: VIP6B, port: 5353, protocol: 'UDP' }, mode: 'hybrid', dispatch: 'ipip', backends: bs(60, 3, 5353) }),
    service6({ frontend: { vip: VIP6, port: 8080, protocol: 'TCP' }, mode: 'hybrid', affinityTimeoutSeconds: 60, backends: bs(70, 2) }),
    service6({ frontend: { vip: VIP6, port: 54, protocol: 'UDP' }, mode: 'snat', sourceRanges: ['2001:db8:1::/48'], backends: bs(80, 2, 5353) }),
  ];
  services.forEach((d, i) => apply6(dp, d, { svcId: SVC6_ID + i, ringOff: RING6_OFF - i * 4096, backendIds: d.backends.map((_, j) => BE6_ID0 + i * 10 + j) }));
  const proto = (d: DesiredService): number => (d.frontend.protocol === 'TCP' ? 6 : 17);
  const isSnat = (d: DesiredService): boolean => d.mode === 'snat' || (d.mode === 'hybrid' && d.frontend.protocol === 'UDP');
  const svcBy = new Map(services.map((d) => [`${A(d.frontend.vip)}:${d.frontend.port}/${proto(d)}`, d]));
  const vips = new Set([A(VIP6), A(VIP6B)]);
  const nodes = new Set(services.flatMap((d) => d.backends.map((b) => A(b.nodeIp))));
  const gw = Buffer.from(GW_MAC.split(':').map((x) => parseInt(x, 16)));

  const seeds: Buffer[] = [
    tcp6({ flags: { syn: true } }),
    tcp6({ flags: { ack: true }, payload: Buffer.alloc(200, 1) }),
    tcp6({ flags: { syn: true }, dport: 81 }),
    tcp6({ flags: { ack: true, psh: true }, dport: 81, payload: Buffer.from('x') }),
    tcp6({ flags: { syn: true }, dst: VIP6B, dport: 443 }),
    tcp6({ flags: { ack: true }, dst: VIP6B, dport: 443, payload: Buffer.alloc(20) }),
    tcp6({ flags: { syn: true }, payload: Buffer.alloc(1340) }), // too big with the header
    udp6({ dport: 53 }),
    udp6({ dst: VIP6B, dport: 53, payload: Buffer.alloc(1330) }), // too big with IP6IP6
    udp6({ dport: 53, checksum: 0 }),
    tcp6({ ext: [fragHeader(0, true)] }),
    tcp6({ ext: [padHeader(NH_HOPOPTS)] }),
    udp6({ dport: 53, ext: [dsr6Header(VIP6, 53)] }),
    tcp6({ dst: '2001:db8:100::99' }),
    tcp6({ hopLimit: 1 }),
    buildPacket6({ eth: eth6, ip: { src: '2001:db8:ff::1', dst: VIP6 }, icmp6: { type: 2, body: Buffer.concat([Buffer.from('00000500', 'hex'), tcp6().subarray(14)]) } }),
    // Errors about replies from the VIPs (steered to the flow's backend).
    ...[[VIP6, 80, 6], [VIP6, 81, 6], [VIP6, 53, 17], [VIP6B, 53, 17]].map(([vip, port, nh]) => {
      const reply = buildPacket6({ eth: false, ip: { src: vip as string, dst: CLIENT6 }, raw: { nh: nh as number, bytes: Buffer.concat([Buffer.from([0, 0, 0, 0]), Buffer.alloc(36, 3)]) } });
      reply.writeUInt16BE(port as number, 40);
      reply.writeUInt16BE(40000, 42);
      return buildPacket6({ eth: eth6, ip: { src: '2001:db8:ff::1', dst: vip as string }, icmp6: { type: 2, body: Buffer.concat([Buffer.from('000004d0', 'hex'), reply]) } });
    }),
    tcp6({ flags: { syn: true }, dst: VIP6B, dport: 8443 }),
    tcp6({ flags: { ack: true }, dst: VIP6B, dport: 8443, payload: Buffer.alloc(30, 2) }),
    udp6({ dst: VIP6B, dport: 5353 }),
    tcp6({ flags: { syn: true }, dport: 8080 }),
    udp6({ dport: 54, payload: Buffer.alloc(1340) }),
  ];
  // SNAT state for the replies to match: each SNAT seed's flow, then its
  // backend's answer (and a forged one to a port no flow holds).
  const unseeded = seeds.length;
  for (const f of seeds.slice(-5)) {
    const r = dp.program(hook).testRun({ data: f });
    const o = r.dataOut;
    if (r.retval !== V.tx || hexAddr(o, 22) !== A(EDGE6)) continue;
    const nh = o[20]!;
    const reply = buildPacket6({ eth: { src: '02:00:00:00:00:09', dst: OWN_MAC }, ip: { src: ip6s(o, 38), dst: EDGE6 }, raw: { nh, bytes: Buffer.from(o.subarray(54)) } });
    reply.writeUInt16BE(o.readUInt16BE(56), 54);
    reply.writeUInt16BE(o.readUInt16BE(54), 56);
    const ck = nh === 6 ? 54 + 16 : 54 + 6;
    reply.writeUInt16BE(0, ck);
    reply.writeUInt16BE(l4Checksum6(reply.subarray(14)), ck);
    seeds.push(reply);
    const forged = Buffer.from(reply);
    forged.writeUInt16BE(SNAT_LO + ((reply.readUInt16BE(56) - SNAT_LO + 1) % (SNAT_HI - SNAT_LO + 1)), 56);
    seeds.push(forged);
  }
  t.is(seeds.length - unseeded, 8, 'a reply and a forged one for each of the four SNAT flows');
  // Each reply whose header fits a first fragment, in two fragments (each
  // reply its own fragment id): the first with the TCP/UDP header, the rest.
  let fragId = 0x1000;
  for (const reply of seeds.slice(unseeded).filter((_, i) => i % 2 === 0)) {
    const nh = reply[20]!;
    const l4 = reply.subarray(54);
    const cut = Math.min(608, Math.floor((l4.length - 1) / 8) * 8);
    const hdr = nh === 6 ? (l4[12]! >> 4) * 4 : 8;
    if (cut < hdr) continue;
    const ip = { src: ip6s(reply, 22), dst: EDGE6 };
    const eth = { src: '02:00:00:00:00:09', dst: OWN_MAC };
    fragId++;
    seeds.push(buildPacket6({ eth, ip, ext: [fragHeader(0, true, fragId)], raw: { nh, bytes: Buffer.from(l4.subarray(0, cut)) } }));
    seeds.push(buildPacket6({ eth, ip, ext: [fragHeader(cut / 8, false, fragId)], raw: { nh, bytes: Buffer.from(l4.subarray(cut)) } }));
  }
  t.true(seeds.length - unseeded >= 12, 'fragments of at least two replies');

  const failures: string[] = [];
  const fail = (why: string, input: Buffer, out: Buffer): void => {
    if (failures.length < 10) failures.push(`${why}\n in  ${input.toString('hex')}\n out ${out.toString('hex')}`);
  };

  const mutate = (b: Buffer): Buffer => {
    let m = Buffer.from(b);
    const kind = ri(9);
    if (kind <= 2) {
      const n = 1 + ri(4);
      for (let i = 0; i < n; i++) {
        const at = ri(Math.min(m.length, 110));
        m[at] = kind === 0 ? ri(256) : m[at]! ^ (1 << ri(8));
      }
    } else if (kind === 3) {
      m = m.subarray(0, ri(m.length + 1));
    } else if (kind === 4) {
      m = Buffer.concat([m, Buffer.from(Array.from({ length: ri(64) }, () => ri(256)))]);
    } else if (kind === 5 && m.length >= 54) {
      const f = ri(3);
      if (f === 0) m.writeUInt16BE(ri(0x10000), 18); // payload length
      else if (f === 1) m[20] = [0, 6, 17, 41, 43, 44, 58, 59, 60, ri(256)][ri(10)]!; // next header
      else m[21] = ri(4); // hop limit
    } else if (kind === 6 && m.length >= 58) {
      // new flows: source address bits and ports
      m.writeUInt32BE(ri(0x10000) * 0x10000 + ri(0x10000), 34);
      if (rand() < 0.3) m.writeUInt32BE(ri(0x10000) * 0x10000 + ri(0x10000), 22);
      m.writeUInt16BE(ri(0x10000), 54);
    } else if (kind === 7 && m.length >= 14) {
      m.writeUInt16BE([0x86dd, 0x8100, 0x0800][ri(3)]!, 12);
    }
    return Buffer.from(m);
  };

  /** Why `out` (XDP_TX) is not a faithful forward of `input`, or null. */
  const check = (input: Buffer, out: Buffer): string | null => {
    if (!out.subarray(0, 6).equals(gw)) {
      // Our own Packet Too Big goes back to the client's MAC.
      return null;
    }
    if (out.length < 54 || out.readUInt16BE(12) !== 0x86dd || out[14]! >> 4 !== 6) return 'not IPv6';
    const ip = out.subarray(14);
    const inIp = input.subarray(14);
    const plen = ip.readUInt16BE(4);
    if (40 + plen > ip.length) return 'payload length beyond the frame';
    const inPlen = inIp.readUInt16BE(4);
    if (ip[6] === 41 && ip.length >= 80 && ip[46] === 58) {
      // A steered ICMPv6 error inside the tunnel: to a pod on the outer destination node.
      if (hexAddr(ip, 8) !== A(EDGE6) || !nodes.has(hexAddr(ip, 24))) return 'steered IP6IP6 outer addresses';
      const why = steered(inIp, ip.subarray(40));
      if (why) return why;
      if (!services.some((d) => d.backends.some((b) => A(b.ip) === hexAddr(ip, 40 + 24) && A(b.nodeIp) === hexAddr(ip, 24)))) return 'steered to a pod not on that node';
      return null;
    }
    if (ip[6] === 58) return steered(inIp, ip);
    if (ip[6] === 44) return snatFragment(inIp, ip);
    if ((ip[6] === 6 || ip[6] === 17) && hexAddr(ip, 8) === A(EDGE6)) return snatForward(inIp, ip);
    if ((ip[6] === 6 || ip[6] === 17) && vips.has(hexAddr(ip, 8))) return snatReverse(inIp, ip);
    if (ip[6] === 41) {
      if (hexAddr(ip, 8) !== A(EDGE6)) return 'IP6IP6 source is not the edge';
      if (!nodes.has(hexAddr(ip, 24))) return 'IP6IP6 to a non-node';
      if (plen !== 40 + inPlen) return 'outer length != inner + 40';
      if (ip[7] !== 64) return 'outer hop limit';
      const inner = ip.subarray(40, 40 + plen);
      const sent = inIp.subarray(0, 40 + inPlen);
      if (inner[7] !== sent[7]! - 1) return 'inner hop limit';
      if (!inner.subarray(0, 7).equals(sent.subarray(0, 7)) || !inner.subarray(8).equals(sent.subarray(8))) return 'inner packet modified';
      if (((ip.readUInt32BE(0) >>> 20) & 0xff) !== ((sent.readUInt32BE(0) >>> 20) & 0xff)) return 'traffic class not copied';
      const sport = sent.readUInt16BE(40);
      const dport = sent.readUInt16BE(42);
      const want = flowHash6(ip6s(sent, 8), ip6s(sent, 24), sport, dport, sent[6]!) & 0xfffff;
      if ((ip.readUInt32BE(0) & 0xfffff) !== want) return 'flow label is not the flow hash';
      const d = svcBy.get(`${hexAddr(sent, 24)}:${dport}/${sent[6]}`);
      if (!d || d.dispatch !== 'ipip') return 'IP6IP6 for no ipip service';
      if (isSnat(d)) return 'IP6IP6 for a SNAT frontend';
      if (!d.backends.some((b) => A(b.nodeIp) === hexAddr(ip, 24))) return 'IP6IP6 to a node of no backend of the service';
      return null;
    }
    if (hexAddr(ip, 8) !== hexAddr(inIp, 8)) return 'source changed';
    if (ip[7] !== inIp[7]! - 1) return 'hop limit not decremented';
    let l4off = 40;
    let svcKey: string;
    let l4proto: number;
    if (ip[6] === 60) {
      const h = ip.subarray(40, 64);
      if (h[1] !== 2 || h[2] !== 0x5e || h[3] !== 18 || h[22] !== 1 || h[23] !== 0) return 'Destination Options header layout';
      l4proto = h[0]!;
      svcKey = `${h.subarray(6, 22).toString('hex')}:${h.readUInt16BE(4)}/${l4proto}`;
      if (plen !== inPlen + 24) return 'payload length != input + 24';
      l4off = 64;
      if (l4proto === 6 && (ip[l4off + 13]! & 0x12) !== 0x02) return 'header on a TCP segment that is not a SYN';
    } else if (ip[6] === 6) {
      l4proto = 6;
      if ((ip[l4off + 13]! & 0x12) === 0x02) return 'SYN without the header';
      svcKey = `${hexAddr(inIp, 24)}:${inIp.readUInt16BE(42)}/6`;
      if (plen !== inPlen) return 'payload length changed';
    } else {
      return `next header ${ip[6]} forwarded`;
    }
    const d = svcBy.get(svcKey);
    if (!d || proto(d) !== l4proto) return `names ${svcKey}, not a service`;
    if (d.dispatch === 'ipip') return 'ipip service dispatched by header';
    if (isSnat(d)) return 'SNAT frontend dispatched by DSR';
    if (svcKey !== `${hexAddr(inIp, 24)}:${inIp.readUInt16BE(42)}/${inIp[6]}`) return 'header names another frontend than the packet was sent to';
    const dport = ip.readUInt16BE(l4off + 2);
    if (!d.backends.some((b) => A(b.ip) === hexAddr(ip, 24) && b.port === dport)) return 'to no backend of the service';
    // The segment itself: only the destination port and the checksum may differ.
    const outL4 = Buffer.from(ip.subarray(l4off, l4off + inPlen));
    const inL4 = Buffer.from(inIp.subarray(40, 40 + inPlen));
    const ck = l4proto === 6 ? 16 : 6;
    for (const b of [outL4, inL4]) b.fill(0, 2, 4).fill(0, ck, ck + 2);
    if (!outL4.equals(inL4)) return 'L4 segment changed beyond port and checksum';
    const inOk = safe(() => verifyL4Checksum6(inIp.subarray(0, 40 + inPlen)));
    const outOk = safe(() => verifyL4Checksum6(ip.subarray(0, 40 + plen)));
    if (inOk !== outOk) return `L4 checksum validity ${inOk} → ${outOk}`;
    return null;
  };

  /** The reverse map's entry for a reply's key {backend, backend port, edge port, proto} (struct edge_snat6_key / _val), or null. */
  const rev = (backend: string, bport: number, eport: number, nh: number): { client: string; vip: string; cport: number; vport: number } | null => {
    const k = Buffer.alloc(24);
    Buffer.from(backend, 'hex').copy(k, 0);
    k.writeUInt16BE(bport, 16);
    k.writeUInt16BE(eport, 18);
    k[20] = nh;
    const v = dp.map('edge_snat_rev6').lookup(k);
    return v ? { client: hexAddr(v, 0), vip: hexAddr(v, 16), cport: v.readUInt16BE(32), vport: v.readUInt16BE(34) } : null;
  };

  /** The parts of a SNAT translation that must not change: lengths, traffic class and flow label, the segment but for ports and checksum (whose validity must be kept). */
  const snatKept = (inIp: Buffer, ip: Buffer): string | null => {
    const plen = ip.readUInt16BE(4);
    const inPlen = inIp.readUInt16BE(4);
    if (plen !== inPlen) return 'SNAT changed the payload length';
    if (ip.readUInt32BE(0) !== inIp.readUInt32BE(0)) return 'SNAT changed traffic class or flow label';
    if (ip[6] !== inIp[6]) return 'SNAT changed the next header';
    if (ip[7] !== inIp[7]! - 1) return 'SNAT hop limit not decremented';
    const ck = ip[6] === 6 ? 16 : 6;
    const outL4 = Buffer.from(ip.subarray(40, 40 + plen));
    const inL4 = Buffer.from(inIp.subarray(40, 40 + inPlen));
    for (const b of [outL4, inL4]) b.fill(0, 0, 4).fill(0, ck, ck + 2);
    if (!outL4.equals(inL4)) return 'SNAT changed the segment beyond ports and checksum';
    const inOk = safe(() => verifyL4Checksum6(inIp.subarray(0, 40 + inPlen)));
    const outOk = safe(() => verifyL4Checksum6(ip.subarray(0, 40 + plen)));
    if (inOk !== outOk) return `SNAT L4 checksum validity ${inOk} → ${outOk}`;
    return null;
  };

  /** A client's packet SNATed: to a backend of the frontend it was sent to, from the edge and a port whose reverse entry is exactly this flow. */
  const snatForward = (inIp: Buffer, ip: Buffer): string | null => {
    const nh = ip[6]!;
    const d = svcBy.get(`${hexAddr(inIp, 24)}:${inIp.readUInt16BE(42)}/${nh}`);
    if (!d) return 'SNAT for no service';
    if (!isSnat(d)) return 'SNAT of a frontend that is not snat';
    if (d.sourceRanges.length > 0 && !hexAddr(inIp, 8).startsWith('20010db80001')) return 'SNAT of a client outside the source ranges';
    const eport = ip.readUInt16BE(40);
    if (eport < SNAT_LO || eport > SNAT_HI) return `SNAT port ${eport} outside the range`;
    const bport = ip.readUInt16BE(42);
    if (!d.backends.some((b) => A(b.ip) === hexAddr(ip, 24) && b.port === bport)) return 'SNAT to no backend of the service';
    const v = rev(hexAddr(ip, 24), bport, eport, nh);
    if (!v) return 'SNAT without its reverse entry';
    if (v.client !== hexAddr(inIp, 8) || v.cport !== inIp.readUInt16BE(40) || v.vip !== hexAddr(inIp, 24) || v.vport !== inIp.readUInt16BE(42)) return 'the port\'s reverse entry names another flow';
    return snatKept(inIp, ip);
  };

  /** A backend's reply translated: it was addressed to the edge, and leaves exactly as its key's reverse entry says. */
  const snatReverse = (inIp: Buffer, ip: Buffer): string | null => {
    if (hexAddr(inIp, 24) !== A(EDGE6)) return 'VIP-sourced output of a packet not to the edge';
    const v = rev(hexAddr(inIp, 8), inIp.readUInt16BE(40), inIp.readUInt16BE(42), ip[6]!);
    if (!v) return 'reply translated without a flow';
    if (hexAddr(ip, 8) !== v.vip || ip.readUInt16BE(40) !== v.vport || hexAddr(ip, 24) !== v.client || ip.readUInt16BE(42) !== v.cport) return 'reply translated to another flow';
    return snatKept(inIp, ip);
  };

  /** Per (backend, fragment id, protocol): when each (client, VIP) last had a first fragment translated, and the latest. */
  const firsts = new Map<string, { latest: string; at: number; seen: Map<string, number> }>();

  /** A backend's reply fragment translated (edge_snat_frag6.h). */
  const snatFragment = (inIp: Buffer, ip: Buffer): string | null => {
    if (inIp[6] !== 44) return 'a Fragment header appeared';
    if (hexAddr(inIp, 24) !== A(EDGE6)) return 'a fragment not to the edge translated';
    const plen = ip.readUInt16BE(4);
    if (plen !== inIp.readUInt16BE(4)) return 'fragment length changed';
    if (plen < 8) return 'fragment shorter than its Fragment header';
    if (ip.readUInt32BE(0) !== inIp.readUInt32BE(0)) return 'fragment traffic class or flow label changed';
    if (ip[7] !== inIp[7]! - 1) return 'fragment hop limit not decremented';
    if (!ip.subarray(40, 48).equals(inIp.subarray(40, 48))) return 'Fragment header changed';
    const nh = ip[40]!;
    const fo = ip.readUInt16BE(42);
    if (nh !== 6 && nh !== 17) return `fragment of next header ${nh} translated`;
    const key = `${hexAddr(inIp, 8)}/${ip.readUInt32BE(44)}/${nh}`;
    const to = `${hexAddr(ip, 24)}/${hexAddr(ip, 8)}`;
    const now = Date.now();
    const l4len = plen - 8;
    if ((fo & 0xfff8) === 0) {
      // A first (or atomic) fragment: a reply's rules on the bytes it has.
      if (l4len < (nh === 6 ? 20 : 8)) return 'first fragment without its whole header translated';
      if (nh === 6 && (inIp[48 + 12]! >> 4) * 4 > l4len) return 'first fragment: TCP header beyond it';
      if (nh === 17 && inIp.readUInt16BE(48 + 6) === 0) return 'first fragment without a UDP checksum translated';
      if (fo & 1 && l4len % 8 !== 0) return 'first fragment of a length not a multiple of 8';
      const v = rev(hexAddr(inIp, 8), inIp.readUInt16BE(48), inIp.readUInt16BE(50), nh);
      if (!v) return 'first fragment translated without a flow';
      if (hexAddr(ip, 8) !== v.vip || ip.readUInt16BE(48) !== v.vport || hexAddr(ip, 24) !== v.client || ip.readUInt16BE(50) !== v.cport) return 'first fragment translated to another flow';
      const ck = nh === 6 ? 16 : 6;
      const outL4 = Buffer.from(ip.subarray(48, 40 + plen));
      const inL4 = Buffer.from(inIp.subarray(48, 40 + plen));
      for (const b of [outL4, inL4]) b.fill(0, 0, 4).fill(0, ck, ck + 2);
      if (!outL4.equals(inL4)) return 'first fragment changed beyond ports and checksum';
      // The checksum covers the whole datagram: it must move by exactly the
      // difference of addresses and ports, i.e. this fragment's share of the
      // sum (with the addresses of the pseudo-header) stays the same.
      const share = (b: Buffer): number => onesSum(Buffer.concat([b.subarray(8, 40), b.subarray(48, 40 + plen)]));
      if (share(inIp) !== share(ip)) return 'first fragment checksum not moved by the rewrite';
      if (fo & 1) {
        const f = firsts.get(key) ?? { latest: to, at: now, seen: new Map<string, number>() };
        f.latest = to;
        f.at = now;
        f.seen.set(to, now);
        firsts.set(key, f);
      }
      return null;
    }
    const f = firsts.get(key);
    if (!f) return 'later fragment translated before any first of its id';
    if (f.latest !== to) return 'later fragment translated to another flow than its last first';
    if ([...f.seen].some(([other, at]) => other !== to && now - at < 1500)) return 'later fragment of an ambiguous id translated';
    if (now - f.at > 2500) return 'later fragment translated long after its first';
    if (nh === 6 && (fo & 0xfff8) < 20) return 'later fragment overlapping the TCP header translated';
    if (!ip.subarray(48, 40 + plen).equals(inIp.subarray(48, 40 + plen))) return 'later fragment\'s bytes changed';
    return null;
  };

  /** A steered ICMPv6 error: the input's, rewritten to a pod (outer destination, quoted source and port). */
  const steered = (inIp: Buffer, ip: Buffer): string | null => {
    if (ip.length < 40 + 8 + 40 + 4) return 'short steered ICMPv6';
    if (ip[40] !== 1 && ip[40] !== 2) return `ICMPv6 type ${ip[40]} steered`;
    const pod = hexAddr(ip, 24);
    if (hexAddr(ip, 48 + 8) !== pod) return 'quote source is not the outer destination';
    const qport = ip.readUInt16BE(88);
    const qproto = ip[48 + 6]!;
    const svc = services.find((d) => A(d.frontend.vip) === hexAddr(inIp, 48 + 8) && d.frontend.port === inIp.readUInt16BE(88) && proto(d) === qproto);
    if (!svc) return 'steered an error about no service';
    if (!svc.backends.some((b) => A(b.ip) === pod && b.port === qport)) return 'steered to no backend of the service';
    if (hexAddr(ip, 8) !== hexAddr(inIp, 8)) return 'steered error source changed';
    const plen = ip.readUInt16BE(4);
    const inPlen = inIp.readUInt16BE(4);
    if (plen !== inPlen) return 'steered length changed';
    const inOk = safe(() => verifyL4Checksum6(inIp.subarray(0, 40 + inPlen)));
    const outOk = safe(() => verifyL4Checksum6(ip.subarray(0, 40 + plen)));
    if (inOk !== outOk) return `ICMPv6 checksum validity ${inOk} → ${outOk}`;
    return null;
  };

  const ptbOk = (input: Buffer, out: Buffer): string | null => {
    const ip = out.subarray(14);
    if (ip[6] !== 58 || (ip[40] !== 2 && ip[40] !== 3)) return 'not a Packet Too Big or Time Exceeded';
    if (hexAddr(ip, 24) !== hexAddr(input, 22)) return 'ICMPv6 error not to the sender';
    if (!out.subarray(0, 6).equals(input.subarray(6, 12))) return 'ICMPv6 error not to the sender MAC';
    if (!verifyL4Checksum6(ip)) return 'ICMPv6 error checksum';
    if (ip[40] === 3) {
      if (hexAddr(ip, 8) !== A(EDGE6)) return 'Time Exceeded not from the edge';
      if (input[21]! > 1) return `Time Exceeded for hop limit ${input[21]}`;
      const q = Math.min(40 + input.readUInt16BE(18), 128) & ~3;
      if (out.length !== 62 + q || !quoted(ip.subarray(48), input.subarray(14, 14 + q))) return 'Time Exceeded quote';
      return null;
    }
    if (out.length !== EDGE6_PTB_FRAME) return 'PTB length';
    if (!vips.has(hexAddr(ip, 8))) return 'PTB not from a VIP';
    const mtu = ip.readUInt32BE(44);
    if (mtu !== 1376 && mtu !== 1360) return `PTB MTU ${mtu}`;
    if (!quoted(ip.subarray(48), input.subarray(14, 14 + 128))) return 'PTB quote';
    return null;
  };

  /** Our ICMPv6 error's quote of `sent`: as received on XDP; on tc its L4 checksum settled — what completing it would store. */
  const quoted = (quote: Buffer, sent: Buffer): boolean => {
    if (hook === 'xdp') return quote.equals(sent);
    const at = quoteChecksumAt(sent);
    const a = Buffer.from(quote).fill(0, at, at + 2);
    const b = Buffer.from(sent).fill(0, at, at + 2);
    return a.equals(b) && completionStores(quote.subarray(40)) === quote.readUInt16BE(at);
  };

  const started = Date.now();
  let n = 0;
  const verdicts = new Map<string, number>();
  const kinds = { forwarded: 0, ptb: 0, timeExceeded: 0, steered: 0, snat: 0, snatReverse: 0, fragFirst: 0, fragLater: 0 };
  const prog = dp.program(hook);
  let refused = 0;
  for (; n < TOTAL && Date.now() - started < 120_000; n++) {
    let input: Buffer;
    if (rand() < 0.1) {
      input = Buffer.from(Array.from({ length: 14 + ri(120) }, () => ri(256)));
      if (rand() < 0.7) input.writeUInt16BE(0x86dd, 12);
      if (rand() < 0.5 && input.length > 15) input[14] = 0x60 | (input[14]! & 0xf);
    } else {
      input = mutate(seeds[ri(seeds.length)]!);
      if (rand() < 0.3) input = mutate(input);
    }
    if (input.length < 14) input = Buffer.concat([input, Buffer.alloc(14 - input.length)]);
    let res;
    try {
      res = prog.testRun({ data: input });
    } catch (e) {
      // tc's test run refuses an IPv4 / IPv6 frame shorter than its fixed header.
      if (hook === 'tc' && input.length < 14 + 40 && (e as { code?: string }).code === 'EINVAL') {
        refused++;
        n--; // not a frame the program saw: the count is of frames run
        continue;
      }
      throw e;
    }
    const { retval, dataOut: out } = res;
    verdicts.set(String(retval), (verdicts.get(String(retval)) ?? 0) + 1);
    if (retval === V.drop) continue;
    if (retval === V.pass) {
      if (!out.equals(input)) fail('pass with a modified frame', input, out);
      continue;
    }
    if (retval !== V.tx) {
      fail(`verdict ${retval}`, input, out);
      continue;
    }
    // Our own Packet Too Big, recognised by what it is (a mutated sender
    // MAC may equal the gateway's): a new packet from a VIP to the sender.
    const ownPtb = out.length >= 62 && out[20] === 58 && ((out[54] === 2 && vips.has(hexAddr(out, 22))) || (out[54] === 3 && hexAddr(out, 22) === A(EDGE6))) && input.length >= 38 && hexAddr(out, 38) === hexAddr(input, 22);
    if (ownPtb || !out.subarray(0, 6).equals(gw)) {
      const why = ptbOk(input, out);
      if (why) fail(why, input, out);
      else if (out[54] === 3) kinds.timeExceeded++;
      else kinds.ptb++;
      continue;
    }
    const why = check(input, out);
    if (why) fail(why, input, out);
    else if (out[20] === 58 || (out[20] === 41 && out[54 + 6] === 58)) kinds.steered++;
    else if (out[20] === 44 && (out.readUInt16BE(56) & 0xfff8) === 0) kinds.fragFirst++;
    else if (out[20] === 44) kinds.fragLater++;
    else if (hexAddr(out, 22) === A(EDGE6)) kinds.snat++;
    else if (vips.has(hexAddr(out, 22))) kinds.snatReverse++;
    else kinds.forwarded++;
  }
  t.log(`${n} frames in ${Date.now() - started} ms; verdicts ${JSON.stringify([...verdicts])}; ${JSON.stringify(kinds)}; refused by the kernel ${refused}`);
  t.true(n >= TOTAL, `only ${n} frames within the time bound`);
  t.deepEqual(failures, []);
  t.true(kinds.forwarded > 1000, 'the forwarding paths were exercised');
  t.true(kinds.ptb > 10, 'Packet Too Big was exercised');
  t.true(kinds.steered > 10, 'ICMPv6 steering was exercised');
  t.true(kinds.timeExceeded > 10, 'Time Exceeded was exercised');
  t.true(kinds.snat > 500, 'SNAT was exercised');
  t.true(kinds.snatReverse > 100, 'SNAT replies were exercised');
  t.true(kinds.fragFirst > 100, 'first fragments of SNAT replies were exercised');
  t.true(kinds.fragLater > 100, 'later fragments of SNAT replies were exercised');
});

/** TCP/UDP checksum of a bare IPv6 packet without extension headers (its field taken as 0). */
function l4Checksum6(ip: Buffer): number {
  const plen = ip.readUInt16BE(4);
  const ph = Buffer.alloc(40);
  ip.copy(ph, 0, 8, 40);
  ph.writeUInt32BE(plen, 32);
  ph[39] = ip[6]!;
  const all = Buffer.concat([ph, ip.subarray(40, 40 + plen), Buffer.alloc(plen % 2)]);
  let sum = 0;
  for (let i = 0; i < all.length; i += 2) sum += all.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff || 0xffff;
}

/** One's-complement sum of big-endian 16-bit words (an odd byte padded), modulo 0xffff (0 and 0xffff are the same number). */
function onesSum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += i + 1 < b.length ? b.readUInt16BE(i) : b[i]! << 8;
  return sum % 0xffff;
}

function ip6s(b: Buffer, off: number): string {
  const g: string[] = [];
  for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(off + i * 2).toString(16));
  return g.join(':');
}
