// The node side of path probing: echoes probe datagrams back to the edge.
// bpf/node_probe.c has already set the flag byte if the option (IPv4) or
// the marker header (IPv6) arrived.
//
// It answers only the edges (allowSources: the node agent's edge sources)
// and at most maxPerSecond probes a second: a forged source must not turn
// the nodes into reflectors, nor a flood into work for the agent.
//
// Without an explicit address it answers on both families: an IPv4 socket
// on 0.0.0.0 and an IPv6-only one on :: at the same port. A host without
// IPv6 (no ::, the family not supported) answers IPv4 only; `families`
// says which sockets are open.
import { createSocket, type Socket, type SocketType } from 'node:dgram';
import { ipToBigInt, isIpv6 } from '../net/ip.js';
import { cidrContains, parseCidr, type Cidr } from '../net/cidr.js';
import { isProbePayload, PROBE_PORT } from './wire.js';

/** Errors that mean "this host has no IPv6", not "something is wrong". */
const NO_IPV6 = new Set(['EAFNOSUPPORT', 'EADDRNOTAVAIL', 'EPROTONOSUPPORT']);

/** Probes answered per second when not told: edges probe each path every few seconds. */
const DEFAULT_MAX_PER_SECOND = 1000;

export interface ProbeResponderOptions {
  address?: string;
  port?: number;
  /** CIDRs whose probes are answered (the edge sources); absent: every source. */
  allowSources?: readonly string[];
  maxPerSecond?: number;
}

export class ProbeResponder {
  private sockets: Socket[] = [];
  answered = 0;
  /** Probes from a source outside allowSources, and probes over the rate cap: not answered. */
  refused = 0;
  overLimit = 0;
  /** The families answered on, after start(). */
  families: Array<4 | 6> = [];
  private readonly allow: Cidr[] | null;
  private windowStart = 0;
  private inWindow = 0;

  constructor(private readonly opts: ProbeResponderOptions = {}) {
    this.allow = opts.allowSources ? opts.allowSources.map((c) => parseCidr(c, { bareAddress: true })) : null;
  }

  private allowed(address: string): boolean {
    if (!this.allow) return true;
    try {
      const { family, value } = ipToBigInt(address.split('%')[0]!);
      return this.allow.some((c) => cidrContains(c, family, value));
    } catch {
      return false;
    }
  }

  /** A one-second window: at most maxPerSecond answers in it. */
  private underCap(): boolean {
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    return ++this.inWindow <= (this.opts.maxPerSecond ?? DEFAULT_MAX_PER_SECOND);
  }

  async start(): Promise<number> {
    const { address } = this.opts;
    try {
      if (address !== undefined) {
        const v6 = isIpv6(address);
        await this.open(v6 ? 'udp6' : 'udp4', address, this.opts.port ?? PROBE_PORT);
        this.families = [v6 ? 6 : 4];
        return this.port();
      }
      await this.open('udp4', '0.0.0.0', this.opts.port ?? PROBE_PORT);
      this.families = [4];
      try {
        await this.open('udp6', '::', this.port());
        this.families.push(6);
      } catch (e) {
        if (!NO_IPV6.has((e as NodeJS.ErrnoException).code ?? '')) throw e;
      }
      return this.port();
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  private port(): number {
    return this.sockets[0]!.address().port;
  }

  private async open(type: SocketType, address: string, port: number): Promise<void> {
    const s = createSocket({ type, reuseAddr: true, ...(type === 'udp6' ? { ipv6Only: true } : {}) });
    s.on('message', (msg, rinfo) => {
      if (!isProbePayload(msg)) return;
      if (!this.allowed(rinfo.address)) {
        this.refused++;
        return;
      }
      if (!this.underCap()) {
        this.overLimit++;
        return;
      }
      this.answered++;
      s.send(msg, rinfo.port, rinfo.address);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(port, address, () => {
          s.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      s.close();
      throw e;
    }
    s.on('error', () => {}); // a send to a vanished edge must not take the agent down
    this.sockets.push(s);
  }

  async stop(): Promise<void> {
    const all = this.sockets;
    this.sockets = [];
    this.families = [];
    await Promise.all(all.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
