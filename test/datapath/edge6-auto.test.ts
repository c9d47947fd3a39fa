// dispatch: auto for IPv6 frontends through the planner and the real edge
// programs, XDP and the tc fallback (BPF_PROG_TEST_RUN): the IPv6 node addresses of `auto` backends
// are probe targets, and each IPv6 node path's verdict (setPathDispatch)
// switches exactly that node's backends between the Destination Options
// header and IPv6-in-IPv6 — exact bytes of what reaches each node.
import test from 'ava';
import type { EdgeDatapath } from '../../src/datapath/edge-datapath.js';
import { dsr6Header, ip6Bytes } from '../lib/packets6.js';
import { backend6, CLIENT6, EDGE6, flowHash6, maglevPick, service6, tcp6, udp6, VIP6 } from './edge6-helpers.js';
import { openEdge, service, tcpPacket } from './edge-helpers.js';

type Hook = 'xdp' | 'tc';
let hook: Hook = 'xdp';

function run(dp: EdgeDatapath, data: Buffer): Buffer {
  return dp.program(hook).testRun({ data }).dataOut;
}

/** The case once per hook; serial, since `run` reads the hook the running case set. */
function both(title: string, fn: (t: import('ava').ExecutionContext) => void): void {
  for (const h of ['xdp', 'tc'] as const) {
    test.serial(`${h}: ${title}`, (t) => {
      hook = h;
      fn(t);
    });
  }
}

const A = backend6(1); // on fd00:10::b
const B = backend6(2); // on fd00:10::c
const auto6 = service6({ dispatch: 'auto', backends: [A, B] });

/** Source ports of flows Maglev sends to A and to B (independent model). */
function flowsTo(): { a: number[]; b: number[] } {
  const a: number[] = [], b: number[] = [];
  for (let sport = 41000; a.length < 4 || b.length < 4; sport++) (maglevPick(auto6, flowHash6(CLIENT6, VIP6, sport, 80, 6)) === 0 ? a : b).push(sport);
  return { a, b };
}

/** What the node of `backend` must receive for a SYN of `sport`: header DSR or IP6IP6, checked by bytes. */
function expectHeader(t: import('ava').ExecutionContext, out: Buffer, backend: typeof A, what: string): void {
  t.is(out[20], 60, `${what}: next header Destination Options`);
  const hdr = Buffer.from(dsr6Header(VIP6, 80).bytes);
  hdr[0] = 6;
  t.is(out.subarray(54, 78).toString('hex'), hdr.toString('hex'), `${what}: the DSR header names [${VIP6}]:80`);
  t.is(out.subarray(38, 54).toString('hex'), ip6Bytes(backend.ip).toString('hex'), `${what}: DNAT to the pod`);
}

function expectIp6ip6(t: import('ava').ExecutionContext, out: Buffer, backend: typeof A, what: string): void {
  t.is(out[20], 41, `${what}: next header IPv6 (IP6IP6)`);
  t.is(out.subarray(22, 38).toString('hex'), ip6Bytes(EDGE6).toString('hex'), `${what}: outer source the edge`);
  t.is(out.subarray(38, 54).toString('hex'), ip6Bytes(backend.nodeIp).toString('hex'), `${what}: outer destination ${backend.nodeIp}`);
}

both('IPv6 auto frontends: their nodes\' IPv6 addresses are probe targets beside IPv4 ones; fixed-dispatch frontends add none', (t) => {
  const dp = openEdge(t, { hooks: [hook], ipv6: true, address6: EDGE6 });
  dp.applyServices([service({ dispatch: 'auto' }), auto6, service6({ service: 'default/fixed6', frontend: { vip: VIP6, port: 443, protocol: 'TCP' }, backends: [backend6(3)] })]);
  const targets = dp.autoNodes().sort();
  t.deepEqual(targets, [...new Set([...service({ dispatch: 'auto' }).backends.map((b) => b.nodeIp), A.nodeIp, B.nodeIp])].sort());
  t.false(targets.includes(backend6(3).nodeIp), 'ip-option frontend: not probed');
});

both('IPv6 auto: unproven paths use IP6IP6; each IPv6 node path follows its own verdict, back and forth; a re-applied frontend keeps it', (t) => {
  const dp = openEdge(t, { hooks: [hook], ipv6: true, address6: EDGE6 });
  dp.applyServices([auto6]);
  const { a, b } = flowsTo();
  for (const sport of [...a, ...b]) expectIp6ip6(t, run(dp, tcp6({ sport })), a.includes(sport) ? A : B, `unproven, flow ${sport}`);

  dp.setPathDispatch(A.nodeIp, 'ip-option');
  for (const sport of a) expectHeader(t, run(dp, tcp6({ sport })), A, `A's path proven, flow ${sport}`);
  for (const sport of b) expectIp6ip6(t, run(dp, tcp6({ sport })), B, `B's path unproven, flow ${sport}`);
  // UDP: the header on every datagram.
  const u = service6({ service: 'default/dns6', dispatch: 'auto', frontend: { vip: VIP6, port: 53, protocol: 'UDP' }, backends: [{ ...A, port: 5353 }] });
  dp.applyServices([auto6, u]);
  t.is(run(dp, udp6({ dport: 53 }))[20], 60, 'a new auto frontend on a proven path starts with the header');

  t.deepEqual(dp.applyServices([auto6, u]), { added: 0, updated: 0, removed: 0, unchanged: 2 });
  for (const sport of a) t.is(run(dp, tcp6({ sport }))[20], 60, 'still the header after re-applying');

  // The fabric starts stripping the header before A: only A's entries change.
  dp.setPathDispatch(A.nodeIp, 'ipip');
  dp.setPathDispatch(B.nodeIp, 'ip-option');
  for (const sport of a) expectIp6ip6(t, run(dp, tcp6({ sport })), A, `A's path broken, flow ${sport}`);
  for (const sport of b) expectHeader(t, run(dp, tcp6({ sport })), B, `B's path proven, flow ${sport}`);
  t.is(run(dp, udp6({ dport: 53 }))[20], 41);
});

both('IPv6 verdicts touch no IPv4 auto path and no fixed-dispatch IPv6 frontend', (t) => {
  const dp = openEdge(t, { hooks: [hook], ipv6: true, address6: EDGE6 });
  const fixed = service6({ service: 'default/fixed6', frontend: { vip: VIP6, port: 443, protocol: 'TCP' }, dispatch: 'ipip', backends: [A] });
  const v4 = service({ dispatch: 'auto' });
  dp.applyServices([auto6, fixed, v4]);
  const syn4 = tcpPacket({ flags: { syn: true } });
  const v4Before = run(dp, syn4);
  t.is(v4Before[23], 4, 'IPv4 auto path unproven: IPIP');
  dp.setPathDispatch(A.nodeIp, 'ip-option');
  dp.setPathDispatch(B.nodeIp, 'ip-option');
  t.is(run(dp, tcp6({ dport: 443 }))[20], 41, 'ipip frontend stays IP6IP6');
  t.deepEqual(run(dp, syn4), v4Before, 'the IPv4 auto frontend is unchanged');
});
