// Tells the node program which link-layer senders are edges (see
// bpf/include/node_trust.h). The program learns an edge from its ARP, which
// an edge sends before its first packet to a node it has not resolved yet;
// an edge that resolved this node before the program (or the node) started
// sends none. So at start, and now and then, the agent copies the kernel's
// neighbour entries for edge-source addresses into the program's map, and
// asks every single edge address it has no entry for (one empty UDP
// datagram to the discard port makes the kernel resolve it; the edge's ARP
// reply is then learnt by the program as well). IPv6 entries come from the
// kernel over netlink (the native addon's neighbours6: /proc has no IPv6
// table); single IPv6 edge addresses are asked the same way (the kernel's
// multicast Neighbor Solicitation draws an Advertisement the program learns
// from). Asked every round, not only at start: the program trusts a MAC
// only while something confirms it (EDGE_MAC_TTL_NS), and a busy node's
// kernel forgets an unused entry while an edge forwarding in XDP never asks
// for the node again.
import { createSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { requireNativeAddon } from '../assets.js';
import type { Logger } from '../log/logger.js';
import { edgeSourceContains, parseEdgeSource } from '../datapath/node-maps.js';
import { isIp, isIpv6 } from '../net/ip.js';

/** One neighbour entry (the shape of a row of `ip -j neigh show`). */
export interface NeighbourRow {
  dst: string;
  lladdr?: string;
  state?: string[];
}

/** Pure: the neighbours that hold an edge-source address and have a usable link-layer address. */
export function edgeNeighbourEntries(rows: readonly NeighbourRow[], sources: readonly string[]): { ip: string; mac: string }[] {
  const out: { ip: string; mac: string }[] = [];
  for (const r of rows) {
    if (!r.lladdr || !isIp(r.dst)) continue; // either family (a source of the other one never matches)
    if (r.state?.some((s) => s === 'FAILED' || s === 'INCOMPLETE' || s === 'NOARP')) continue;
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(r.lladdr) || r.lladdr === '00:00:00:00:00:00') continue;
    if (sources.some((s) => edgeSourceContains(s, r.dst))) out.push({ ip: r.dst, mac: r.lladdr.toLowerCase() });
  }
  return out;
}

/** Pure: the edge sources that name one address (worth resolving), minus those already in the table. */
export function unresolvedEdges(rows: readonly NeighbourRow[], sources: readonly string[]): string[] {
  const known = new Set(edgeNeighbourEntries(rows, sources).map((e) => e.ip));
  return sources.map(parseEdgeSource).filter((s) => s.bits === (s.family === 4 ? 32 : 128) && !known.has(s.addr)).map((s) => s.addr);
}

// /proc/net/arp flags (linux/if_arp.h).
const ATF_COM = 0x02;
const ATF_PERM = 0x04;

/**
 * Pure: the IPv4 neighbours of one interface out of /proc/net/arp's text.
 * Read from /proc rather than `ip neigh` because the node agent's OCI image
 * has no iproute2 (without it the agent could not trust an edge that had
 * resolved the node before the program started: every option was dropped
 * as untrusted until the edge's entry went stale and it ARPed again).
 */
export function parseProcArp(text: string, ifname: string): NeighbourRow[] {
  const out: NeighbourRow[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || f[5] !== ifname) continue;
    const flags = Number.parseInt(f[2]!, 16);
    if (!Number.isFinite(flags)) continue;
    const state = (flags & ATF_PERM) !== 0 ? 'PERMANENT' : (flags & ATF_COM) !== 0 ? 'REACHABLE' : 'INCOMPLETE';
    out.push({ dst: f[0]!, lladdr: f[3]!, state: [state] });
  }
  return out;
}

/**
 * The kernel's IPv4 neighbour table of the calling process's network
 * namespace, for one interface (/proc/net/arp).
 */
export async function readNeighbours(ifname: string): Promise<NeighbourRow[]> {
  return parseProcArp(await readFile('/proc/net/arp', 'utf8'), ifname);
}

/** NUD_* bits (linux/neighbour.h) by the names `ip neigh` prints. */
const NUD_STATES: ReadonlyArray<[number, string]> = [
  [0x01, 'INCOMPLETE'],
  [0x02, 'REACHABLE'],
  [0x04, 'STALE'],
  [0x08, 'DELAY'],
  [0x10, 'PROBE'],
  [0x20, 'FAILED'],
  [0x40, 'NOARP'],
  [0x80, 'PERMANENT'],
];

/** Pure: a neighbour entry's NUD_* bits as state names (`ip -j neigh`'s spelling). */
export function nudStateNames(bits: number): string[] {
  return NUD_STATES.filter(([b]) => (bits & b) !== 0).map(([, n]) => n);
}

interface NeighBinding {
  /** RTM_GETNEIGH dump, IPv6, one interface (by name, in the calling thread's namespace); state = NUD_* bits. */
  neighbours6(ifname: string): Array<{ dst: string; lladdr?: string; state: number }>;
}

/**
 * The kernel's IPv6 neighbour table of the calling thread's network
 * namespace, for one interface (netlink, through the native addon).
 * Synchronous, so it can run inside inNetns().
 */
export function readNeighbours6(ifname: string): NeighbourRow[] {
  if (!/^[^/\0]{1,15}$/.test(ifname) || ifname === '.' || ifname === '..') throw new Error(`neighbours6: '${ifname}' is not an interface name`);
  return (requireNativeAddon() as NeighBinding).neighbours6(ifname).map((n) => ({ dst: n.dst, ...(n.lladdr ? { lladdr: n.lladdr } : {}), state: nudStateNames(n.state) }));
}

/** One empty datagram to the discard port: the kernel resolves the address first. */
async function nudge(addresses: readonly string[]): Promise<void> {
  for (const family of [4, 6] as const) {
    const mine = addresses.filter((a) => isIpv6(a) === (family === 6));
    if (mine.length === 0) continue;
    const sock = createSocket(family === 4 ? 'udp4' : 'udp6');
    try {
      await Promise.all(mine.map((a) => new Promise<void>((resolve) => sock.send(Buffer.alloc(0), 9, a, () => resolve()))));
    } finally {
      sock.close();
    }
  }
}

export interface EdgeNeighbourSyncOptions {
  ifname: string;
  sources: readonly string[];
  /** Writes one trusted neighbour into the program's map; readAt: when the table was read (the program's clock). */
  trust: (ip: string, mac: string, readAt: bigint) => void;
  /** The program's clock (NodeDatapath.nowNs). */
  now: () => bigint;
  logger: Logger;
  /** Between table reads; default 30 s. */
  intervalMs?: number;
}

export class EdgeNeighbourSync {
  private timer: NodeJS.Timeout | null = null;
  private readonly written = new Map<string, string>();

  constructor(private readonly o: EdgeNeighbourSyncOptions) {}

  /** Reads the table, trusts what is there, and asks the single edge addresses that are missing. */
  async start(): Promise<void> {
    const rows = await this.syncOnce();
    const missing = unresolvedEdges(rows, this.o.sources);
    if (missing.length > 0) {
      this.o.logger.info({ edges: missing }, 'resolving edge addresses the node has no neighbour entry for');
      await nudge(missing).catch((e: unknown) => this.o.logger.warn({ err: e }, 'could not send to the edges to resolve them'));
      await new Promise((r) => setTimeout(r, 300));
      await this.syncOnce();
    }
    this.timer = setInterval(() => void this.syncAndResolve().catch((e: unknown) => this.o.logger.warn({ err: e }, 'edge neighbour sync failed')), this.o.intervalMs ?? 30_000);
    this.timer.unref();
  }

  /**
   * One periodic round: confirm the edges in the table, and ask the single
   * edge addresses that dropped out of it (the kernel forgets an unused
   * entry on a busy node, and an edge that forwards in XDP never asks for
   * the node again): their ARP replies / Neighbor Advertisements confirm
   * them before their trust expires (EDGE_MAC_TTL_NS).
   */
  private async syncAndResolve(): Promise<void> {
    const missing = unresolvedEdges(await this.syncOnce(), this.o.sources);
    if (missing.length > 0) await nudge(missing);
  }

  private warned6 = false;

  async syncOnce(): Promise<NeighbourRow[]> {
    // The program's clock is the coarse one: a tick earlier, so that an ARP
    // the program learnt right after the read never counts as before it.
    const readAt = this.o.now() - 10_000_000n;
    const rows = await readNeighbours(this.o.ifname);
    try {
      rows.push(...readNeighbours6(this.o.ifname));
      this.warned6 = false;
    } catch (e) {
      // IPv4 edges stay trusted; IPv6 ones are still learnt by the program from their NS/NA.
      if (!this.warned6) this.o.logger.warn({ err: (e as Error).message, ifname: this.o.ifname }, 'could not read the IPv6 neighbour table');
      this.warned6 = true;
    }
    // Written every round, not only when new: each write confirms the
    // neighbour for the program (a MAC unconfirmed for EDGE_MAC_TTL_NS is
    // trusted no more), and moves an edge whose MAC changed.
    for (const { ip, mac } of edgeNeighbourEntries(rows, this.o.sources)) {
      this.o.trust(ip, mac, readAt);
      if (this.written.get(mac) === ip) continue;
      this.written.set(mac, ip);
      this.o.logger.info({ ip, mac }, 'edge neighbour trusted (from the neighbour table)');
    }
    return rows;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
