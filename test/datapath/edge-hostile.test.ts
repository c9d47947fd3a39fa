// Edge program against hostile packets from the wire (BPF_PROG_TEST_RUN):
// forged ICMP errors, fragments, malformed headers. Each test names the
// defect it pins down; exact verdicts, bytes and counters.
import test from 'ava';
import { TC_ACT_OK, XDP_DROP, XDP_PASS, XDP_TX } from '../../src/datapath/loader.js';
import { buildPacket, icmpFragNeeded, parsePacket, verifyIpv4Checksum, verifyL4Checksum } from '../lib/packets.js';
import { CLIENT, VIP, backend, clientEth, openEdge, service, tcpPacket } from './edge-helpers.js';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';

function run(dp: EdgeDatapath, data: Buffer, hook: 'xdp' | 'tc' = 'xdp'): { retval: number; out: Buffer } {
  const r = dp.program(hook).testRun({ data });
  return { retval: r.retval, out: r.dataOut };
}

const hex = (b: Buffer): string => b.toString('hex');
const ACK = { ack: true };

test('an ICMP error about an IPIP flow too big to encapsulate is never answered with an ICMP error (RFC 1122 3.2.2.1), nor one from the pod\'s address', (t) => {
  const dp = openEdge(t, { mtu: 1500 });
  dp.applyServices([service({ frontend: { vip: VIP, port: 81, protocol: 'TCP' }, dispatch: 'ipip', backends: [backend(1)] })]);
  // A "router" (anyone) quotes VIP:81 → client and pads the error to 1490
  // bytes with DF: 1490 + 20 (IPIP) > 1500.
  const reply = buildPacket({ eth: false, ip: { src: VIP, dst: CLIENT, df: true }, tcp: { sport: 81, dport: 47000, flags: ACK, seq: 1, payload: Buffer.alloc(1600) } });
  const err = buildPacket({
    eth: clientEth,
    ip: { src: '198.51.100.254', dst: VIP, df: true },
    icmp: icmpFragNeeded({ mtu: 1280, original: reply, embedBytes: 1490 - 28 }),
  });
  t.is(err.length, 14 + 1490);
  for (const hook of ['xdp', 'tc'] as const) {
    const r = run(dp, err, hook);
    // Left to the stack untouched, as edge_steer6.h does for IPv6 (before:
    // XDP_TX of a fragmentation-needed from 10.244.1.1, the pod, to the sender).
    t.is(r.retval, hook === 'xdp' ? XDP_PASS : TC_ACT_OK, hook);
    t.is(hex(r.out), hex(err), `${hook}: untouched`);
  }
  t.like(dp.counters().stats, { icmp_too_big_sent: 0, icmp_steered: 0, icmp_not_steered: 2 });
  // One that fits the tunnel is still steered (IPIP to the node).
  const small = buildPacket({ eth: clientEth, ip: { src: '198.51.100.254', dst: VIP, df: true }, icmp: icmpFragNeeded({ mtu: 1280, original: reply, embedBytes: 1480 - 28 }) });
  const r = run(dp, small);
  t.is(r.retval, XDP_PASS);
  const out = parsePacket(r.out);
  t.is(out.ip.protocol, 4);
  t.is(out.inner!.ip.dst, '10.244.1.1');
  t.true(verifyIpv4Checksum(out.ipBytes));
  t.true(verifyL4Checksum(out.inner!.ipBytes));
});
