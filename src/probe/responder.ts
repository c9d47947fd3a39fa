// The node side of path probing: echoes probe datagrams back to the edge.
// bpf/node_probe.c has already set the flag byte if the option arrived.
import { createSocket, type Socket } from 'node:dgram';
import { isProbePayload, PROBE_PORT } from './wire.js';

export class ProbeResponder {
  private socket: Socket | null = null;
  answered = 0;

  constructor(private readonly opts: { address?: string; port?: number } = {}) {}

  async start(): Promise<number> {
    const s = createSocket({ type: 'udp4', reuseAddr: true });
    s.on('message', (msg, rinfo) => {
      if (!isProbePayload(msg)) return;
      this.answered++;
      s.send(msg, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(this.opts.port ?? PROBE_PORT, this.opts.address ?? '0.0.0.0', () => resolve());
    });
    this.socket = s;
    return s.address().port;
  }

  async stop(): Promise<void> {
    const s = this.socket;
    this.socket = null;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }
}
