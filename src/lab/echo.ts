// The lab's "pod": an HTTP and a UDP echo answering with the pod's name and
// the source address it saw, so a test can tell which pod served a request
// and whether the client's real address survived the trip.
//
//   run as: node dist/src/lab/echo-main.js --name echo-1a [--http 8080] [--udp 9090] [--host ::]
//
// Answers `pod=<name> client=<address> port=<port>\n`. SIGTERM is a graceful
// stop (the way a kubelet stops a pod): the listener closes, requests in
// flight finish, idle keep-alive connections close, then the process exits.
import { createServer, type Server } from 'node:http';
import { createSocket } from 'node:dgram';

export function echoLine(pod: string, address: string | undefined, port: number | undefined): string {
  return `pod=${pod} client=${(address ?? '?').replace(/^::ffff:/, '')} port=${port ?? 0}\n`;
}

/** Parses an echo answer; null when it is not one. */
export function parseEcho(text: string): { pod: string; client: string; port: number } | null {
  const m = /^pod=(\S+) client=(\S+) port=(\d+)$/.exec((text.split('\n')[0] ?? '').trim());
  return m ? { pod: m[1]!, client: m[2]!, port: Number(m[3]) } : null;
}

export interface EchoServers {
  http: Server;
  close(): Promise<void>;
}

export async function startEcho(name: string, httpPort: number, udpPort: number, host = '0.0.0.0'): Promise<EchoServers> {
  const http = createServer((req, res) => {
    // Drain the body, then answer; `?sleep=MS` holds the answer (long requests in tests).
    req.resume();
    req.on('end', () => {
      const q = new URL(req.url ?? '/', 'http://x').searchParams;
      const sleep = Math.min(Number(q.get('sleep') ?? 0) || 0, 60_000);
      // `?size=N` pads the answer to N more bytes: replies bigger than one
      // segment (GSO/TSO, page fragments) must be rewritten to the VIP too.
      const pad = Math.min(Number(q.get('size') ?? 0) || 0, 4 * 1024 * 1024);
      setTimeout(() => {
        const body = echoLine(name, req.socket.remoteAddress, req.socket.remotePort) + (pad > 0 ? `${'x'.repeat(pad - 1)}\n` : '');
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      }, sleep);
    });
  });
  http.keepAliveTimeout = 120_000;
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(httpPort, host, () => resolve());
  });
  // On :: the socket takes IPv4 too (as mapped addresses, which echoLine unmaps).
  const udp = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  udp.on('message', (msg, rinfo) => {
    udp.send(echoLine(name, rinfo.address, rinfo.port), rinfo.port, rinfo.address);
    void msg;
  });
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(udpPort, host, () => resolve());
  });
  return {
    http,
    async close() {
      udp.close();
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeIdleConnections();
      });
    },
  };
}
