// Traffic from the lab's client: bounded request loops that count every
// failure (with when and why) and what the pods reported seeing.
//
//   http  — a new TCP connection per request, `concurrency` in parallel
//   keep  — `connections` long-lived keep-alive connections, a request on
//           each every `intervalMs` (ECMP rehash, restarts)
//   udp   — datagrams, each waiting for its answer; checks the answer came
//           from the address it was sent to (the VIP)
import { request, Agent } from 'node:http';
import { createSocket } from 'node:dgram';
import { parseEcho } from './echo.js';

export interface LoadOptions {
  kind: 'http' | 'keep' | 'udp';
  target: string;
  port: number;
  /** Source address to bind (the client has two). */
  bind?: string;
  /** Stop after this long (ms) … */
  durationMs?: number;
  /** … or after this many requests (whichever first; at least one bound is required). */
  count?: number;
  concurrency?: number;
  connections?: number;
  intervalMs?: number;
  timeoutMs?: number;
  /** HTTP path (e.g. `/?size=100000` for big answers). */
  path?: string;
}

export interface LoadFailure {
  /** ms since the start. */
  t: number;
  error: string;
  conn?: number;
  /** The client's source port of the failed TCP connection (to find it in a capture). */
  localPort?: number;
}

export interface LoadResult {
  kind: LoadOptions['kind'];
  sent: number;
  ok: number;
  failed: number;
  failures: LoadFailure[];
  /** Pod name → answers. */
  pods: Record<string, number>;
  /** Client address the pods saw → answers. */
  clients: Record<string, number>;
  /** UDP answers whose source was not the target address. */
  wrongSource: number;
  durationMs: number;
  /** keep: connections that saw at least one failure. */
  brokenConnections?: number;
  /** keep: the pod each connection was first answered by ('' = never answered), by connection index. */
  connectionPods?: string[];
  /** keep: indexes of the broken connections. */
  broken?: number[];
}

const MAX_FAILURES_KEPT = 200;

class Tally {
  readonly start = Date.now();
  sent = 0;
  ok = 0;
  failed = 0;
  wrongSource = 0;
  readonly failures: LoadFailure[] = [];
  readonly pods: Record<string, number> = {};
  readonly clients: Record<string, number> = {};

  answer(text: string): boolean {
    const e = parseEcho(text);
    if (!e) return false;
    this.pods[e.pod] = (this.pods[e.pod] ?? 0) + 1;
    this.clients[e.client] = (this.clients[e.client] ?? 0) + 1;
    this.ok++;
    return true;
  }

  fail(error: string, conn?: number, localPort?: number): void {
    this.failed++;
    if (this.failures.length < MAX_FAILURES_KEPT) {
      this.failures.push({ t: Date.now() - this.start, error, ...(conn !== undefined ? { conn } : {}), ...(localPort ? { localPort } : {}) });
    }
  }

  result(kind: LoadOptions['kind']): LoadResult {
    return { kind, sent: this.sent, ok: this.ok, failed: this.failed, failures: this.failures, pods: this.pods, clients: this.clients, wrongSource: this.wrongSource, durationMs: Date.now() - this.start };
  }
}

function bounds(o: LoadOptions): { until: number; count: number } {
  if (o.durationMs === undefined && o.count === undefined) throw new Error('load: give durationMs or count');
  // Hard ceiling: no load loop runs longer than 10 minutes.
  return { until: Date.now() + Math.min(o.durationMs ?? 600_000, 600_000), count: o.count ?? Number.MAX_SAFE_INTEGER };
}

class HttpError extends Error {
  constructor(
    message: string,
    readonly localPort: number | undefined,
  ) {
    super(message);
  }
}

function httpGet(o: LoadOptions, agent: Agent | false, path = '/'): Promise<string> {
  return new Promise((resolve, reject0) => {
    let localPort: number | undefined;
    const reject = (e: Error): void => reject0(new HttpError(e.message, localPort));
    const req = request(
      { host: o.target, port: o.port, path, agent, timeout: o.timeoutMs ?? 2000, ...(o.bind ? { localAddress: o.bind } : {}) },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
        res.on('error', reject);
      },
    );
    req.on('socket', (sock) => sock.once('connect', () => (localPort = sock.localPort)));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

async function httpLoad(o: LoadOptions): Promise<LoadResult> {
  const t = new Tally();
  const b = bounds(o);
  const worker = async (): Promise<void> => {
    while (Date.now() < b.until && t.sent < b.count) {
      t.sent++;
      try {
        const body = await httpGet(o, false, o.path);
        if (!t.answer(body)) t.fail(`not an echo answer: ${body.slice(0, 60)}`);
      } catch (e) {
        t.fail((e as Error).message, undefined, (e as HttpError).localPort);
        // A failed connect can return at once; do not spin.
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency ?? 4 }, worker));
  return t.result('http');
}

async function keepLoad(o: LoadOptions): Promise<LoadResult> {
  const t = new Tally();
  const b = bounds(o);
  const n = o.connections ?? 50;
  const broken = new Set<number>();
  const podOf = new Map<number, string>();
  const firstPod = new Map<number, string>();
  const conn = async (i: number): Promise<void> => {
    // One agent with one socket per connection: every request of connection i rides the same TCP connection.
    const agent = new Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1, keepAliveMsecs: 1000, timeout: 60_000 });
    try {
      while (Date.now() < b.until && t.sent < b.count) {
        t.sent++;
        try {
          const body = await httpGet(o, agent, o.path);
          const e = parseEcho(body);
          if (!t.answer(body) || !e) t.fail(`not an echo answer: ${body.slice(0, 60)}`, i);
          else {
            // The pod reports our source port: a change means the agent
            // silently opened a new TCP connection, i.e. the old one died.
            const id = `${e.pod}:${e.port}`;
            const prev = podOf.get(i);
            if (prev !== undefined && prev !== id) {
              t.fail(`connection re-opened (${prev} → ${id})`, i);
              broken.add(i);
            }
            podOf.set(i, id);
            if (!firstPod.has(i)) firstPod.set(i, e.pod);
          }
        } catch (e) {
          t.fail((e as Error).message, i);
          broken.add(i);
        }
        await new Promise((r) => setTimeout(r, o.intervalMs ?? 200));
      }
    } finally {
      agent.destroy();
    }
  };
  await Promise.all(Array.from({ length: n }, (_, i) => conn(i)));
  const connectionPods = Array.from({ length: n }, (_, i) => firstPod.get(i) ?? '');
  return { ...t.result('keep'), brokenConnections: broken.size, connectionPods, broken: [...broken].sort((a, b) => a - b) };
}

async function udpLoad(o: LoadOptions): Promise<LoadResult> {
  const t = new Tally();
  const b = bounds(o);
  const worker = async (): Promise<void> => {
    while (Date.now() < b.until && t.sent < b.count) {
      t.sent++;
      const sock = createSocket(o.target.includes(':') ? 'udp6' : 'udp4');
      try {
        await new Promise<void>((resolve, reject) => {
          sock.once('error', reject);
          sock.bind({ port: 0, ...(o.bind ? { address: o.bind } : {}) }, () => resolve());
        });
        const answer = await new Promise<{ text: string; from: string }>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('timeout')), o.timeoutMs ?? 1000);
          sock.once('message', (msg, rinfo) => {
            clearTimeout(timer);
            resolve({ text: msg.toString('utf8'), from: rinfo.address });
          });
          sock.send(`ping ${t.sent}`, o.port, o.target, (err) => {
            if (err) {
              clearTimeout(timer);
              reject(err);
            }
          });
        });
        if (answer.from !== o.target) t.wrongSource++;
        if (!t.answer(answer.text)) t.fail(`not an echo answer: ${answer.text.slice(0, 60)}`);
      } catch (e) {
        t.fail((e as Error).message);
      } finally {
        sock.close();
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency ?? 2 }, worker));
  return t.result('udp');
}

export function runLoad(o: LoadOptions): Promise<LoadResult> {
  switch (o.kind) {
    case 'http':
      return httpLoad(o);
    case 'keep':
      return keepLoad(o);
    case 'udp':
      return udpLoad(o);
    default:
      throw new Error(`load: unknown kind ${String(o.kind)}`);
  }
}
