import test from 'ava';
import {
  buildPacket,
  buildIpv4,
  buildUdp,
  dsrOption,
  findDsrOption,
  icmpEcho,
  icmpFragNeeded,
  internetChecksum,
  ipv4ToBytes,
  ipv4ToNumber,
  ipv4ToString,
  macToBytes,
  macToString,
  numberToIpv4,
  parsePacket,
  verifyIpv4Checksum,
  verifyL4Checksum,
  IPPROTO_IPIP,
  IPPROTO_UDP,
} from './packets.js';

// Known answers: IPv4 packets sent by Linux 6.18 over a veth with checksum
// offload off, captured with tcpdump (which reported every checksum correct).
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const KERNEL_TCP_SYN = hex(`4500 003c 536b 4000 4006 d288 0a63 0001 0a63 0002 91ae 1f90 e893 dfd2 0000 0000
  a002 faf0 bc33 0000 0204 05b4 0402 080a e0d9 2191 0000 0000 0103 030a`);
const KERNEL_UDP = hex(`4500 0022 30a8 4000 4011 f55a 0a63 0001 0a63 0002 af41 14e9 000e e302 6865 6c6c 6f0a`);
const KERNEL_ICMP_PORT_UNREACH = hex(`45c0 003e 7a10 0000 4001 eb26 0a63 0002 0a63 0001 0303 11e5 0000 0000 4500 0022
  30a8 4000 4011 f55a 0a63 0001 0a63 0002 af41 14e9 000e e302 6865 6c6c 6f0a`);
const KERNEL_ICMP_ECHO = hex(`4500 0028 40c1 4000 4001 e54b 0a63 0001 0a63 0002 0800 1810 5867 0001 4141 4141
  4141 4141 4141 4141`);

test('RFC 1071 example sum and the textbook IPv4 header checksum', (t) => {
  // RFC 1071 section 3: the ones'-complement sum of these bytes is 0xddf2.
  t.is(internetChecksum(hex('0001 f203 f4f5 f6f7')), ~0xddf2 & 0xffff);
  // The classic example header (192.168.0.1 → 192.168.0.199) has checksum 0xb861.
  const hdr = hex('4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7');
  t.is(internetChecksum(hdr), 0xb861);
  hdr.writeUInt16BE(0xb861, 10);
  t.true(verifyIpv4Checksum(hdr));
  hdr.writeUInt16BE(0xb862, 10);
  t.false(verifyIpv4Checksum(hdr));
});

test('kernel-built packets verify and rebuild byte for byte', (t) => {
  for (const p of [KERNEL_TCP_SYN, KERNEL_UDP, KERNEL_ICMP_PORT_UNREACH, KERNEL_ICMP_ECHO]) {
    t.true(verifyIpv4Checksum(p));
    t.true(verifyL4Checksum(p));
  }
  const syn = parsePacket(KERNEL_TCP_SYN, { l2: false });
  t.is(syn.ip.id, 0x536b);
  t.true(syn.ip.df);
  t.is(syn.tcp?.sport, 37294);
  t.is(syn.tcp?.dport, 8080);
  t.true(syn.tcp?.flags.syn);
  t.false(syn.tcp?.flags.ack);
  const rebuilt = buildPacket({
    eth: false,
    ip: { src: '10.99.0.1', dst: '10.99.0.2', id: 0x536b, df: true, ttl: 64 },
    tcp: { sport: 37294, dport: 8080, seq: 3902005202, flags: { syn: true }, window: 64240, options: syn.tcp!.options },
  });
  t.deepEqual(rebuilt, KERNEL_TCP_SYN);

  const udp = buildPacket({
    eth: false,
    ip: { src: '10.99.0.1', dst: '10.99.0.2', id: 12456, df: true },
    udp: { sport: 44865, dport: 5353, payload: Buffer.from('hello\n') },
  });
  t.deepEqual(udp, KERNEL_UDP);

  const echo = buildPacket({
    eth: false,
    ip: { src: '10.99.0.1', dst: '10.99.0.2', id: 16577, df: true },
    icmp: icmpEcho({ id: 22631, seq: 1, payload: Buffer.alloc(12, 0x41) }),
  });
  t.deepEqual(echo, KERNEL_ICMP_ECHO);

  const unreach = parsePacket(KERNEL_ICMP_PORT_UNREACH, { l2: false });
  t.is(unreach.ip.tos, 0xc0);
  t.is(unreach.icmp?.type, 3);
  t.is(unreach.icmp?.code, 3);
  t.is(unreach.icmp?.embedded?.ip.src, '10.99.0.1');
  t.is(unreach.icmp?.embedded?.udp?.dport, 5353);
});

test('verifiers catch a corrupted payload byte and a wrong pseudo-header', (t) => {
  const p = Buffer.from(KERNEL_TCP_SYN);
  p[p.length - 1]! ^= 0x10;
  t.true(verifyIpv4Checksum(p));
  t.false(verifyL4Checksum(p));
  // Changing the source address keeps the IP checksum wrong and the TCP one too
  // (the pseudo-header covers it).
  const q = Buffer.from(KERNEL_UDP);
  q[15] = 9;
  t.false(verifyIpv4Checksum(q));
  t.false(verifyL4Checksum(q));
  // UDP without checksum is valid.
  const r = buildPacket({ eth: false, ip: { src: '1.2.3.4', dst: '5.6.7.8' }, udp: { sport: 1, dport: 2, checksum: 0 } });
  t.true(verifyL4Checksum(r));
});

test('Ethernet frame round trip with TCP options, flags, payload and IP options', (t) => {
  const frame = buildPacket({
    eth: { src: '02:00:00:00:00:01', dst: 'aa:bb:cc:dd:ee:ff' },
    ip: { src: '198.51.100.7', dst: '203.0.113.10', tos: 0x10, ttl: 33, id: 777, options: dsrOption('192.0.2.80', 443) },
    tcp: {
      sport: 40000,
      dport: 443,
      seq: 0xfffffff0,
      ack: 12345,
      flags: { ack: true, psh: true, ece: true },
      window: 1000,
      options: hex('020405b4 01'),
      payload: Buffer.from('GET / HTTP/1.1\r\n'),
    },
  });
  const p = parsePacket(frame);
  t.is(p.eth?.src, '02:00:00:00:00:01');
  t.is(p.eth?.dst, 'aa:bb:cc:dd:ee:ff');
  t.is(p.ip.ihl, 28);
  t.is(p.ip.tos, 0x10);
  t.is(p.ip.ttl, 33);
  t.is(p.ip.id, 777);
  t.is(p.ip.totalLength, frame.length - 14);
  t.deepEqual(findDsrOption(p.ip), { vip: '192.0.2.80', port: 443 });
  t.is(p.tcp?.seq, 0xfffffff0);
  t.is(p.tcp?.ack, 12345);
  t.deepEqual(p.tcp?.flags, { fin: false, syn: false, rst: false, psh: true, ack: true, urg: false, ece: true, cwr: false });
  t.is(p.tcp?.dataOffset, 28);
  t.is(p.tcp?.payload.toString(), 'GET / HTTP/1.1\r\n');
  t.true(verifyIpv4Checksum(p.ipBytes));
  t.true(verifyL4Checksum(p.ipBytes));
  // The option sits right after the base header: type, length, port, VIP.
  t.deepEqual(frame.subarray(14 + 20, 14 + 28), hex('9e08 01bb c0000250'));
});

test('fragments: flags and offset, no L4 parse of a non-first fragment', (t) => {
  const first = buildPacket({ eth: false, ip: { src: '10.0.0.1', dst: '10.0.0.2', id: 9, mf: true }, udp: { sport: 5, dport: 6, payload: Buffer.alloc(16) } });
  const pf = parsePacket(first, { l2: false });
  t.true(pf.ip.mf);
  t.is(pf.ip.fragOffset, 0);
  t.is(pf.udp?.dport, 6);
  const later = buildPacket({ eth: false, ip: { src: '10.0.0.1', dst: '10.0.0.2', id: 9, fragOffset: 1480, protocol: IPPROTO_UDP }, payload: Buffer.alloc(40, 7) });
  const pl = parsePacket(later, { l2: false });
  t.is(pl.ip.fragOffset, 1480);
  t.false(pl.ip.mf);
  t.is(pl.udp, undefined);
  t.is(pl.l4Bytes.length, 40);
  t.true(verifyIpv4Checksum(later));
  t.throws(() => verifyL4Checksum(later), { message: /fragment/ });
  t.throws(() => buildIpv4({ src: '1.1.1.1', dst: '2.2.2.2', fragOffset: 12 }, Buffer.alloc(0), 17), { message: /multiple of 8/ });
});

test('ICMP fragmentation needed embeds the original header and 8 bytes', (t) => {
  const orig = buildPacket({ eth: false, ip: { src: '198.51.100.7', dst: '203.0.113.10', df: true }, tcp: { sport: 1234, dport: 80, seq: 42, payload: Buffer.alloc(1400) } });
  const icmp = buildPacket({ eth: false, ip: { src: '192.0.2.1', dst: '198.51.100.7' }, icmp: icmpFragNeeded({ mtu: 1400, original: orig }) });
  t.true(verifyL4Checksum(icmp));
  const p = parsePacket(icmp, { l2: false });
  t.is(p.icmp?.type, 3);
  t.is(p.icmp?.code, 4);
  t.is(p.icmp?.mtu, 1400);
  t.is(p.icmp?.payload.length, 28);
  t.is(p.icmp?.embedded?.ip.dst, '203.0.113.10');
  t.true(p.icmp?.embedded?.truncated);
  t.is(p.icmp?.embedded?.tcp?.sport, 1234);
  t.is(p.icmp?.embedded?.tcp?.seq, 42);
});

test('IPIP builds outer and inner with their own checksums', (t) => {
  const frame = buildPacket({
    eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' },
    ip: { src: '10.1.0.1', dst: '10.2.0.9', ttl: 64 },
    inner: { ip: { src: '198.51.100.7', dst: '203.0.113.10' }, udp: { sport: 53000, dport: 53, payload: Buffer.from('q') } },
  });
  const p = parsePacket(frame);
  t.is(p.ip.protocol, IPPROTO_IPIP);
  t.is(p.inner?.ip.dst, '203.0.113.10');
  t.is(p.inner?.udp?.payload.toString(), 'q');
  t.true(verifyIpv4Checksum(p.ipBytes));
  t.true(verifyIpv4Checksum(p.inner!.ipBytes));
  t.true(verifyL4Checksum(p.inner!.ipBytes));
});

test('overrides produce deliberately broken packets', (t) => {
  const p = buildPacket({ eth: false, ip: { src: '1.2.3.4', dst: '5.6.7.8', checksum: 0x1234 }, tcp: { sport: 1, dport: 2, checksum: 0 } });
  t.false(verifyIpv4Checksum(p));
  t.false(verifyL4Checksum(p));
  t.throws(() => buildPacket({ ip: { src: '1.2.3.4', dst: '5.6.7.8' }, tcp: { sport: 1, dport: 2 }, udp: { sport: 1, dport: 2 } }), { message: /only one/ });
});

test('UDP checksum that computes to zero is sent as 0xffff', (t) => {
  // Search a payload whose checksum would be 0; the builder must send 0xffff.
  for (let v = 0; v < 0x10000; v++) {
    const payload = Buffer.alloc(2);
    payload.writeUInt16BE(v);
    const d = buildUdp({ sport: 1, dport: 2, payload }, '10.0.0.1', '10.0.0.2');
    if (d.readUInt16BE(6) === 0xffff) {
      const ip = buildIpv4({ src: '10.0.0.1', dst: '10.0.0.2' }, d, IPPROTO_UDP);
      t.true(verifyL4Checksum(ip));
      return;
    }
  }
  t.fail('no payload produced a zero checksum');
});

test('address helpers', (t) => {
  t.is(ipv4ToNumber('192.0.2.1'), 0xc0000201);
  t.is(numberToIpv4(0xc0000201), '192.0.2.1');
  t.deepEqual(ipv4ToBytes('10.0.0.255'), hex('0a0000ff'));
  t.is(ipv4ToString(hex('ff000001')), '255.0.0.1');
  t.is(macToString(macToBytes('0A-1b-2C-3d-4E-5f')), '0a:1b:2c:3d:4e:5f');
  t.throws(() => ipv4ToNumber('1.2.3.256'), { message: /invalid IPv4/ });
  t.throws(() => ipv4ToNumber('1.2.3'), { message: /invalid IPv4/ });
  t.throws(() => macToBytes('01:02:03:04:05'), { message: /invalid MAC/ });
});
