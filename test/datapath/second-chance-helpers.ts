// Shared by the second-chance packet tests (edge and node): the 20-byte
// option (and its IPv6 header) as docs/second-chance.md specifies it, built independently of the
// datapath's code; for the node's tests of both families, a node whose
// hand-overs come back as bytes, the fuzz of hand-overs and the network
// namespace for hand-overs through the FIB.
import type { ExecutionContext } from 'ava';
import { DSR_OPT_TYPE, ipv4ToBytes } from '../lib/packets.js';
import { DSR6_OPT_TYPE, NH_DSTOPTS, ip6Bytes, type ExtHeader } from '../lib/packets6.js';
import type { NodeDatapath } from '../../src/datapath/node-datapath.js';
import { NODE_CFG_SC_FIB_BYPASS } from '../../src/datapath/node-second-chance.js';
import { Cleanup, createNetns, nsRun, uniqueId } from '../lib/netns.js';
import { TC_SHOT, TC_UNSPEC } from './node-fixtures.js';

export function scOption(o: { vip: string; port: number; secIp: string; secPort: number; secNode: string; flags?: number }): Buffer {
  const b = Buffer.alloc(20);
  b[0] = DSR_OPT_TYPE;
  b[1] = 20;
  b.writeUInt16BE(o.port, 2);
  ipv4ToBytes(o.vip).copy(b, 4);
  ipv4ToBytes(o.secIp).copy(b, 8);
  b.writeUInt16BE(o.secPort, 12);
  b[14] = o.flags ?? 0;
  b[15] = 0;
  ipv4ToBytes(o.secNode).copy(b, 16);
  return b;
}

/** The IPv6 form (bpf/include/sc_option.h): a 64-byte Destination Options header; its Next Header byte is the builder's. */
export function sc6Header(o: { vip: string; port: number; secIp: string; secPort: number; secNode: string; flags?: number }, over: Partial<{ hdrlen: number; optLen: number; pad: number[]; reserved: number }> = {}): ExtHeader {
  const b = Buffer.alloc(64);
  b[1] = over.hdrlen ?? 7;
  b[2] = DSR6_OPT_TYPE;
  b[3] = over.optLen ?? 54;
  b.writeUInt16BE(o.port, 4);
  ip6Bytes(o.vip).copy(b, 6);
  ip6Bytes(o.secIp).copy(b, 22);
  b.writeUInt16BE(o.secPort, 38);
  b[40] = o.flags ?? 0;
  b[41] = over.reserved ?? 0;
  ip6Bytes(o.secNode).copy(b, 42);
  Buffer.from(over.pad ?? [1, 4, 0, 0, 0, 0]).copy(b, 58);
  return { type: NH_DSTOPTS, bytes: b };
}

/** Hand-overs come back from the program as bytes (FIB bypassed: NODE_CFG_SC_FIB_BYPASS in node_config). */
export function bypassScFib(dp: NodeDatapath): NodeDatapath {
  const k = Buffer.alloc(4);
  const v = dp.configMap.lookup(k)!;
  v.writeUInt32LE(v.readUInt32LE(36) | NODE_CFG_SC_FIB_BYPASS, 36);
  dp.configMap.update(k, v);
  return dp;
}

/**
 * 3000 second-chance frames from an edge, each one of `bases` in turn with
 * 1–4 bytes mutated among the first `span` bytes after the Ethernet header
 * (the MACs stay the edge's): every verdict is pass or drop, and a frame
 * passed with another destination address (read raw at `dst`, its offset
 * and length: a mutated header need not parse; `show` formats it) went to
 * one in `allowed`. FUZZ_SEED replays a run.
 */
export function fuzzHandOvers(t: ExecutionContext, dp: NodeDatapath, o: { bases: Buffer[]; span: number; dst: [number, number]; show: (addr: Buffer) => string; allowed: Set<string> }): void {
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
  t.log(`FUZZ_SEED=${seed}`);
  let x = seed || 1;
  const rnd = (n: number): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const [at, len] = o.dst;
  let moved = 0;
  for (let i = 0; i < 3000; i++) {
    const f = Buffer.from(o.bases[i % o.bases.length]!);
    for (let k = 0, n = 1 + rnd(4); k < n; k++) f[14 + rnd(Math.min(f.length - 14, o.span))] = rnd(256);
    const r = dp.ingress.testRun({ data: f });
    t.true(r.retval === TC_UNSPEC || r.retval === TC_SHOT, `verdict ${r.retval}`);
    if (r.retval !== TC_UNSPEC || r.dataOut.length < at + len) continue;
    const outDst = o.show(r.dataOut.subarray(at, at + len));
    if (outDst !== o.show(f.subarray(at, at + len))) {
      moved++;
      t.true(o.allowed.has(outDst), `re-addressed to ${outDst}`);
    }
  }
  t.log(`${moved} re-addressed frames, counters ${JSON.stringify(dp.secondChanceCounters())}`);
}

/** Node B's MAC in the FIB tests' namespace, and the verdict of a redirect. */
export const NODE_B_MAC = '02:00:00:00:02:99';
export const TC_REDIRECT = 7;

/**
 * A namespace where this node (`nodeIp`, IPv4 /24 or IPv6 /64) and node B
 * (`nodeB`) share fab0, forwarding on; `neigh`: node B's MAC is known
 * (NODE_B_MAC). Returns the namespace and fab0's MAC.
 */
export async function scFabric(t: ExecutionContext, o: { nodeIp: string; nodeB: string; neigh: boolean }): Promise<{ ns: string; mac: string }> {
  const v6 = o.nodeIp.includes(':');
  const cleanup = new Cleanup();
  t.teardown(async () => {
    await cleanup.run();
  });
  const ns = await createNetns(`edgelb-nsc${v6 ? '6' : ''}-${uniqueId()}`, cleanup);
  await nsRun(ns, ['ip', 'link', 'add', 'fab0', 'type', 'veth', 'peer', 'name', 'fab1']);
  if (v6) {
    await nsRun(ns, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
    await nsRun(ns, ['ip', 'link', 'set', 'fab0', 'up']);
    await nsRun(ns, ['ip', 'link', 'set', 'fab1', 'up']);
    await nsRun(ns, ['ip', '-6', 'addr', 'add', `${o.nodeIp}/64`, 'dev', 'fab0', 'nodad']);
  } else {
    await nsRun(ns, ['ip', 'addr', 'add', `${o.nodeIp}/24`, 'dev', 'fab0']);
    await nsRun(ns, ['ip', 'link', 'set', 'fab0', 'up']);
    await nsRun(ns, ['ip', 'link', 'set', 'fab1', 'up']);
    await nsRun(ns, ['sysctl', '-qw', 'net.ipv4.conf.all.forwarding=1']);
    await nsRun(ns, ['sysctl', '-qw', 'net.ipv4.conf.lo.forwarding=1']);
  }
  if (o.neigh) await nsRun(ns, ['ip', ...(v6 ? ['-6'] : []), 'neigh', 'replace', o.nodeB, 'lladdr', NODE_B_MAC, 'dev', 'fab0', 'nud', 'permanent']);
  const link = JSON.parse((await nsRun(ns, ['ip', '-j', 'link', 'show', 'fab0'])).stdout) as Array<{ address: string }>;
  return { ns, mac: link[0]!.address };
}
