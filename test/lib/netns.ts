// Test-only namespace helpers (blackholes, polling, a route monitor) on top
// of the lab's plumbing in src/lab/netns.ts, re-exported here so tests and
// benchmarks import one module.
import { nsRun, sleep } from '../../src/lab/netns.js';

export * from '../../src/lab/netns.js';

// Absolute: the project's node_modules/.bin (first on PATH under scripts/with-node) has an unrelated `nft`.
const NFT = '/usr/sbin/nft';

/**
 * Drop every packet on an interface in both directions (a "blackholed
 * uplink"), or undo it. `only: 'ip6'` drops IPv6 alone (IPv6 broken on a
 * link whose IPv4 still works).
 */
export async function blackhole(ns: string, ifname: string, on: boolean, only?: 'ip6'): Promise<void> {
  const table = `elbbh_${ifname.replace(/[^a-zA-Z0-9]/g, '_')}`;
  if (on) {
    // One nft run (one transaction): both directions go dark at the same instant.
    const chains = (['ingress', 'egress'] as const).flatMap((hook) =>
      only
        ? [
            `add chain netdev ${table} ${hook} { type filter hook ${hook} device "${ifname}" priority -500; policy accept; }`,
            `add rule netdev ${table} ${hook} meta protocol ${only} drop`,
          ]
        : [`add chain netdev ${table} ${hook} { type filter hook ${hook} device "${ifname}" priority -500; policy drop; }`],
    );
    await nsRun(ns, [NFT, [`add table netdev ${table}`, ...chains].join('; ')]);
  } else {
    await nsRun(ns, [NFT, 'delete', 'table', 'netdev', table]).catch(() => undefined);
  }
}

/** Poll `fn` until it returns a truthy value or `timeoutMs` passes (bounded; returns the last value). */
export async function waitFor<T>(fn: () => Promise<T> | T, timeoutMs: number, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = await fn();
  while (!last && Date.now() < deadline) {
    await sleep(intervalMs);
    last = await fn();
  }
  return last;
}

export interface RouteEvent {
  kind: 'add' | 'del';
  dst: string;
  /** performance.now() when the line arrived. */
  at: number;
  line: string;
}

/**
 * Streams `ip monitor route` of a namespace and timestamps each change on
 * arrival — precise enough for ms-scale convergence measurements without
 * polling. `waitFor` resolves on the first event (past or future) matching.
 */
export class RouteMonitor {
  private readonly child: import('node:child_process').ChildProcess;
  private readonly events: RouteEvent[] = [];
  private readonly waiters: { pred: (e: RouteEvent) => boolean; resolve: (e: RouteEvent) => void }[] = [];
  private buf = '';
  listeners: ((e: RouteEvent) => void)[] = [];

  private constructor(child: import('node:child_process').ChildProcess) {
    this.child = child;
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      const at = performance.now();
      this.buf += chunk;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        this.onLine(line, at);
      }
    });
  }

  static async start(ns: string, family: 4 | 6 = 4): Promise<RouteMonitor> {
    const { spawn } = await import('node:child_process');
    const child = spawn('ip', ['netns', 'exec', ns, 'ip', `-${family}`, 'monitor', 'route'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const m = new RouteMonitor(child);
    await sleep(100); // let the netlink subscription open before callers act
    return m;
  }

  private onLine(line: string, at: number): void {
    const del = line.startsWith('Deleted ');
    const rest = del ? line.slice(8) : line;
    const dst = rest.split(' ')[0] ?? '';
    if (!dst || line.startsWith(' ') || line.startsWith('\t')) return;
    const e: RouteEvent = { kind: del ? 'del' : 'add', dst, at, line };
    this.events.push(e);
    if (this.events.length > 200000) this.events.splice(0, 100000);
    for (const l of this.listeners) l(e);
    for (let k = this.waiters.length - 1; k >= 0; k--) {
      const w = this.waiters[k]!;
      if (w.pred(e)) {
        this.waiters.splice(k, 1);
        w.resolve(e);
      }
    }
  }

  /** Next event (after `since`, a performance.now() value) matching pred; rejects after timeoutMs. */
  next(pred: (e: RouteEvent) => boolean, timeoutMs: number, since = 0): Promise<RouteEvent> {
    const past = this.events.find((e) => e.at >= since && pred(e));
    if (past) return Promise.resolve(past);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve: (e: RouteEvent) => (clearTimeout(timer), resolve(e)) };
      const timer = setTimeout(() => {
        const k = this.waiters.indexOf(w);
        if (k >= 0) this.waiters.splice(k, 1);
        reject(new Error(`no matching route event within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  stop(): void {
    this.child.kill('SIGTERM');
  }
}
