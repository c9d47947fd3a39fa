// The agent's local control API: HTTP/JSON on a root-only unix socket.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdirSync } from 'node:fs';
import { listenReplacing, removeOwnSocket, socketOrNothing, type SocketFile } from '../socket-path.js';
import { dirname } from 'node:path';
import type { Logger } from '../log/logger.js';
import { closeNow } from './http-close.js';

export type Handler = (body: unknown) => Promise<unknown> | unknown;
export type Routes = Record<string, Handler>; // key: "GET /status"

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 1 << 20) throw new HttpError(413, 'request body too large');
    chunks.push(c as Buffer);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'request body is not JSON');
  }
}

export class ControlServer {
  private server: Server | null = null;
  private bound: SocketFile | null = null;
  constructor(
    private readonly socketPath: string,
    private readonly routes: Routes,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    mkdirSync(dirname(this.socketPath), { recursive: true, mode: 0o700 });
    // A socket there (a stale one, or the previous agent's during a
    // handover) is replaced; anything else (control.socket naming a file by
    // mistake) is not ours to delete.
    if (!socketOrNothing(this.socketPath)) throw new Error(`control.socket ${this.socketPath} exists and is not a socket; not removing it (name a path for the socket)`);
    const server = createServer((req, res) => void this.handle(req, res));
    this.bound = await listenReplacing(server, this.socketPath, 0o600);
    this.server = server;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    const handler = this.routes[`${req.method} ${path}`];
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(`${JSON.stringify(body)}\n`);
    };
    if (!handler) return send(404, { error: `no such endpoint: ${req.method} ${path}` });
    try {
      send(200, await handler(await readBody(req)));
    } catch (e) {
      const status = e instanceof HttpError ? e.status : 500;
      if (status === 500) this.log.error({ err: e, path }, 'control request failed');
      send(status, { error: (e as Error).message });
    }
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    await closeNow(s);
    // Only the socket this server made: after a handover the path is the next agent's.
    if (this.bound) removeOwnSocket(this.bound);
    this.bound = null;
  }
}
