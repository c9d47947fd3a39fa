// A small JSON client for the lab's own calls to the API server (the
// kubelet it plays, the harness as admin): TLS with the lab's CA and a
// client certificate, one keep-alive pool. The product's agents use
// src/k8s (RestClient, with a kubeconfig) instead.
import { Agent, request } from 'node:https';
import { readFileSync } from 'node:fs';
import { scaled } from '../netns.js';

export interface ApiResponse {
  code: number;
  body: unknown;
}

export interface KubeHttpOptions {
  server: string;
  caFile: string;
  certFile: string;
  keyFile: string;
}

export class KubeHttp {
  private readonly url: URL;
  private readonly agent: Agent;

  constructor(o: KubeHttpOptions) {
    this.url = new URL(o.server);
    this.agent = new Agent({ keepAlive: true, maxSockets: 8, ca: readFileSync(o.caFile), cert: readFileSync(o.certFile), key: readFileSync(o.keyFile) });
  }

  request(method: string, path: string, body?: unknown, contentType = 'application/json', timeoutMs = 10_000): Promise<ApiResponse> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: this.url.hostname,
          port: this.url.port || 443,
          method,
          path,
          agent: this.agent,
          headers: { accept: 'application/json', ...(payload === undefined ? {} : { 'content-type': contentType, 'content-length': Buffer.byteLength(payload) }) },
          timeout: scaled(timeoutMs),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = JSON.parse(text);
            } catch {
              /* keep the text (e.g. /readyz answers "ok") */
            }
            resolve({ code: res.statusCode ?? 0, body: parsed });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out after ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** Like request, but anything other than 2xx throws with the server's message. */
  async ok<T = unknown>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const r = await this.request(method, path, body, contentType);
    if (r.code < 200 || r.code >= 300) throw new Error(`${method} ${path}: HTTP ${r.code} ${(r.body as { message?: string } | null)?.message ?? JSON.stringify(r.body)}`);
    return r.body as T;
  }

  close(): void {
    this.agent.destroy();
  }
}
