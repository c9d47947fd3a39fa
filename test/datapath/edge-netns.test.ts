// The edge program's real forwarding decisions (FIB lookup, neighbour
// MACs, redirect vs TX, the per-CPU FIB cache) and attaching to an
// interface, inside a scratch network namespace. BPF_PROG_TEST_RUN looks
// routes up in the caller's namespace, so the runs happen inside it
// (inNetns).
import test from 'ava';
import { inNetns, XDP_PASS, XDP_REDIRECT, xdpQuery } from '../../src/datapath/loader.js';
import { buildPacket, dsrOption, parsePacket } from '../lib/packets.js';
import { Cleanup, createNetns, nsRun, uniqueId } from '../lib/netns.js';
import { pinDirFor } from '../lib/bpffs.js';
import { unlinkSync as unpinForTest } from 'node:fs';
import { VIP, backend, openEdge, service, tcpPacket, tcpSpec } from './edge-helpers.js';
import { BpfMap } from '../../src/datapath/loader.js';
import { createLogger } from '../../src/log/logger.js';

const NODE_MAC = '02:00:00:00:01:11';

async function scratch(t: import('ava').ExecutionContext): Promise<{ ns: string; upMac: string }> {
  const cleanup = new Cleanup();
  t.teardown(async () => {
    await cleanup.run();
  });
  const ns = await createNetns(`edgelb-edge-${uniqueId()}`, cleanup);
  await nsRun(ns, ['ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1']);
  await nsRun(ns, ['ip', 'addr', 'add', '10.0.0.1/24', 'dev', 'up0']);
  await nsRun(ns, ['ip', 'link', 'set', 'up0', 'up']);
  await nsRun(ns, ['ip', 'link', 'set', 'up1', 'up']);
  await nsRun(ns, ['sysctl', '-qw', 'net.ipv4.conf.all.forwarding=1']);
  await nsRun(ns, ['sysctl', '-qw', 'net.ipv4.conf.lo.forwarding=1']);
  await nsRun(ns, ['ip', 'neigh', 'replace', '10.0.0.11', 'lladdr', NODE_MAC, 'dev', 'up0', 'nud', 'permanent']);
  const link = JSON.parse((await nsRun(ns, ['ip', '-j', 'link', 'show', 'up0'])).stdout) as Array<{ address: string }>;
  return { ns, upMac: link[0]!.address };
}

test('FIB: SYN is redirected to the node with the neighbour MAC; the result is cached', async (t) => {
  const { ns, upMac } = await scratch(t);
  const dp = openEdge(t, { forward: { kind: 'fib' } });
  dp.applyServices([service()]);
  const syn = tcpPacket({ flags: { syn: true } });
  const r = inNetns(ns, () => dp.program('xdp').testRun({ data: syn }));
  t.is(r.retval, XDP_REDIRECT);
  const spec = tcpSpec({ flags: { syn: true } });
  const expected = buildPacket({
    ...spec,
    eth: { src: upMac, dst: NODE_MAC },
    ip: { ...spec.ip, dst: '10.244.1.1', ttl: 63, options: dsrOption(VIP, 80) },
    tcp: { ...spec.tcp!, dport: 8080 },
  });
  t.is(r.dataOut.toString('hex'), expected.toString('hex'));

  // The result went into the per-CPU cache (direct-mapped by destination).
  const slot = Buffer.alloc(4);
  slot.writeUInt32LE((0x0a00000b ^ (0x0a00000b >>> 8)) & 255);
  const cached = dp.map('edge_fib_cache').lookupPerCpu(slot)!;
  t.true(cached.some((v) => v.subarray(0, 4).equals(Buffer.from([10, 0, 0, 11])) && v.subarray(18, 24).equals(Buffer.from([2, 0, 0, 0, 1, 0x11]))));

  // A neighbour change is seen at once without the cache, within its TTL (1 s) with it.
  await nsRun(ns, ['ip', 'neigh', 'replace', '10.0.0.11', 'lladdr', '02:00:00:00:01:99', 'dev', 'up0', 'nud', 'permanent']);
  const mac = (): string => parsePacket(inNetns(ns, () => dp.program('xdp').testRun({ data: syn })).dataOut).eth!.dst;
  dp.reconfigure({ forward: { kind: 'fib', cache: false } });
  t.is(mac(), '02:00:00:00:01:99');
  dp.reconfigure({ forward: { kind: 'fib' } });
  await new Promise((res) => setTimeout(res, 1200));
  t.is(mac(), '02:00:00:00:01:99');
});

test('FIB failure: the rewritten packet goes to the stack, counted', async (t) => {
  const { ns } = await scratch(t);
  const dp = openEdge(t, { forward: { kind: 'fib' } });
  dp.applyServices([service({ backends: [backend(1, { nodeIp: '172.31.255.1' })] })]);
  const r = inNetns(ns, () => dp.program('xdp').testRun({ data: tcpPacket({ flags: { syn: true } }) }));
  t.is(r.retval, XDP_PASS);
  t.is(parsePacket(r.dataOut).ip.dst, '10.244.1.1');
  t.is(dp.counters().stats.fib_pass, 1);
});

test('attach: native XDP on a veth, and tc ingress; detach removes them', async (t) => {
  const { ns } = await scratch(t);
  const dp = openEdge(t);
  inNetns(ns, () => dp.attach('up1', 'native'));
  t.true(inNetns(ns, () => xdpQuery('up1')).drvProgId > 0);
  inNetns(ns, () => dp.detach());
  t.is(inNetns(ns, () => xdpQuery('up1')).drvProgId, 0);
  inNetns(ns, () => dp.attach('up1', 'tc'));
  // A second datapath (a restarted agent) takes the same tc slot over.
  const next = openEdge(t);
  inNetns(ns, () => next.attach('up1', 'tc'));
  const filters = await nsRun(ns, ['tc', 'filter', 'show', 'dev', 'up1', 'ingress']);
  t.is(filters.stdout.split('\n').filter((l) => l.includes('edge_tc')).length, 1, filters.stdout);
  inNetns(ns, () => dp.detach());
  t.notRegex((await nsRun(ns, ['tc', 'filter', 'show', 'dev', 'up1', 'ingress'])).stdout, /edge_tc/);
});

test('upgrade: a pinned map of another layout (an older or newer version) is replaced, named in a warning; the compatible ones keep their state', (t) => {
  const pin = pinDirFor(t, 'edge');
  const bs = Array.from({ length: 4 }, (_, i) => backend(i + 1));
  const first = openEdge(t, { pinPath: pin });
  first.applyServices([service({ backends: bs })]);
  const chosen = parsePacket(first.program('xdp').testRun({ data: tcpPacket({ flags: { ack: true }, sport: 50001 }) }).dataOut).ip.dst;
  first.close();
  // Another version's edge_affinity: same name, a value of another size.
  const info = BpfMap.openPinned(`${pin}/edge_affinity`);
  const spec = { type: info.type, keySize: info.keySize, valueSize: info.valueSize + 8, maxEntries: info.maxEntries, flags: info.flags, name: 'edge_affinity' };
  info.close();
  unpinForTest(`${pin}/edge_affinity`);
  const other = BpfMap.create(spec);
  other.pin(`${pin}/edge_affinity`);
  other.close();
  const lines: { level: number; msg: string; map?: string }[] = [];
  const logger = createLogger({ level: 'info', stream: { write: (l: string) => void lines.push(JSON.parse(l) as (typeof lines)[number]) } });
  const second = openEdge(t, { pinPath: pin, logger });
  t.is(second.map('edge_affinity').valueSize, spec.valueSize - 8);
  t.true(lines.some((l) => l.level === 40 && l.map === 'edge_affinity' && /value size/.test(l.msg)), JSON.stringify(lines));
  t.is(parsePacket(second.program('xdp').testRun({ data: tcpPacket({ flags: { ack: true }, sport: 50001 }) }).dataOut).ip.dst, chosen, 'the connection table was kept');
  t.deepEqual(second.keys(), [`${VIP}:80/TCP`], 'the frontends were kept');
});

test('restart: a reopened datapath reuses the pinned maps and keeps established flows', (t) => {
  const pin = pinDirFor(t, 'edge');
  const bs = Array.from({ length: 6 }, (_, i) => backend(i + 1));
  const first = openEdge(t, { pinPath: pin });
  first.applyServices([service({ backends: bs }), service({ service: 'x/udp', frontend: { vip: VIP, port: 53, protocol: 'UDP' }, sourceRanges: ['10.0.0.0/8'] })]);
  const chosen = parsePacket(first.program('xdp').testRun({ data: tcpPacket({ flags: { syn: true }, sport: 50000 }) }).dataOut).ip.dst;
  first.close();

  const second = openEdge(t, { pinPath: pin });
  const ack = tcpPacket({ flags: { ack: true }, sport: 50000 });
  t.is(parsePacket(second.program('xdp').testRun({ data: ack }).dataOut).ip.dst, chosen, 'flow survives the restart before any apply');
  // The rebuilt state matches: re-applying the same services changes no slot.
  const before = second.map('edge_ring').lookup(Buffer.alloc(4));
  const res = second.applyServices([service({ backends: bs }), service({ service: 'x/udp', frontend: { vip: VIP, port: 53, protocol: 'UDP' }, sourceRanges: ['10.0.0.0/8'] })]);
  t.deepEqual(res, { added: 0, updated: 2, removed: 0, unchanged: 0 });
  t.deepEqual(second.map('edge_ring').lookup(Buffer.alloc(4)), before);
  t.is(second.map('edge_services').keys().length, 3);
  // Backend ids were kept: the established flow still maps after a change.
  second.applyServices([service({ backends: [...bs, backend(40)] })]);
  t.is(parsePacket(second.program('xdp').testRun({ data: ack }).dataOut).ip.dst, chosen);
  t.is(second.map('edge_src_ranges').keys().length, 0, 'the removed service\'s ranges are gone');
});
