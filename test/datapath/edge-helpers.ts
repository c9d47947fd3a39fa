// Shared fixtures for the edge datapath tests: small maps, a bypassed FIB
// (the program rewrites and returns XDP_PASS, so tests see the bytes), and
// packet shorthands.
import type { ExecutionContext } from 'ava';
import type { Backend, DesiredService } from '../../src/model/types.js';
import { EdgeDatapath, type EdgeDatapathOptions } from '../../src/datapath/edge-datapath.js';
import { buildPacket, type PacketSpec, type TcpFlags } from '../lib/packets.js';

export const CLIENT = '198.51.100.7';
export const VIP = '203.0.113.10';
export const EDGE = '192.0.2.1';
export const CLIENT_MAC = '02:00:00:00:00:01';
export const EDGE_MAC = '02:00:00:00:00:02';

export const SMALL_MAPS: Record<string, number> = {
  edge_ring: 1 << 12,
  edge_backends: 4096,
  edge_be_stats: 4096,
  edge_services: 4096,
  edge_svc_stats: 4096,
  edge_ct: 1 << 16,
  edge_affinity: 4096,
  edge_snat_rev: 4096,
  edge_src_ranges: 1024,
  edge_sc_prev: 4096,
  edge_sc_flows: 4096,
  edge_services6: 4096,
  edge_backends6: 4096,
  edge_ct6: 1 << 16,
  edge_affinity6: 4096,
  edge_src_ranges6: 1024,
  edge_sc_flows6: 4096,
  edge_snat_rev6: 4096,
};

export function openEdge(t: ExecutionContext, opts: Partial<EdgeDatapathOptions> = {}): EdgeDatapath {
  const dp = EdgeDatapath.open({
    maglevTableSize: 16381,
    mtu: 1500,
    address: EDGE,
    forward: { kind: 'bypass' },
    maxEntries: SMALL_MAPS,
    ...opts,
  });
  t.teardown(() => dp.close());
  return dp;
}

export function backend(i: number, over: Partial<Backend> = {}): Backend {
  return {
    ip: `10.244.${1 + (i >> 8)}.${i & 255}`,
    port: 8080,
    nodeIp: `10.0.0.${10 + (i % 5)}`,
    nodeName: `node${i % 5}`,
    weight: 1,
    state: 'active',
    ...over,
  };
}

export function service(over: Partial<DesiredService> = {}): DesiredService {
  return {
    service: 'default/web',
    frontend: { vip: VIP, port: 80, protocol: 'TCP' },
    mode: 'dsr',
    dispatch: 'ip-option',
    sourceRanges: [],
    affinityTimeoutSeconds: 0,
    backends: [backend(1)],
    ...over,
  };
}

/** Test clock of the edge program (edge_config.now_ns); null = the kernel's. */
export function setEdgeClock(dp: EdgeDatapath, ns: bigint | null): void {
  const m = dp.map('edge_config');
  const k = Buffer.alloc(4);
  const v = m.lookup(k)!;
  v.writeBigUInt64LE(ns ?? 0n, 40);
  m.update(k, v);
}

export const SEC = 1_000_000_000n;

const eth = { src: CLIENT_MAC, dst: EDGE_MAC };

/** What a test may vary in a client TCP packet; everything else is the usual client → VIP:80. */
export interface TcpOpts {
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  flags?: TcpFlags;
  payload?: Buffer;
  df?: boolean;
  options?: Buffer;
  id?: number;
  tos?: number;
  /** Sequence number (default 1000) and ACK number (default 2000 with ACK, else 0). */
  seq?: number;
  ack?: number;
}

export function tcpPacket(o: TcpOpts): Buffer {
  return buildPacket(tcpSpec(o));
}

export function tcpSpec(o: TcpOpts): PacketSpec {
  return {
    eth,
    ip: { src: o.src ?? CLIENT, dst: o.dst ?? VIP, df: o.df ?? true, id: o.id ?? 0x1234, tos: o.tos ?? 0, ...(o.options ? { options: o.options } : {}) },
    tcp: {
      sport: o.sport ?? 40000,
      dport: o.dport ?? 80,
      seq: o.seq ?? 1000,
      ack: o.ack ?? (o.flags?.ack ? 2000 : 0),
      flags: o.flags ?? { syn: true },
      ...(o.flags?.syn ? { options: Buffer.from([2, 4, 0x05, 0xb4]) } : {}),
      payload: o.payload ?? Buffer.alloc(0),
    },
  };
}

export function udpPacket(o: { src?: string; dst?: string; sport?: number; dport?: number; payload?: Buffer; df?: boolean; checksum?: number }): Buffer {
  return buildPacket({
    eth,
    ip: { src: o.src ?? CLIENT, dst: o.dst ?? VIP, df: o.df ?? false, id: 0x4321 },
    udp: { sport: o.sport ?? 5353, dport: o.dport ?? 53, payload: o.payload ?? Buffer.from('hello edge'), ...(o.checksum !== undefined ? { checksum: o.checksum } : {}) },
  });
}

export { eth as clientEth };
