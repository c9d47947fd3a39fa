import { request } from 'node:http';

export class AgentUnreachable extends Error {}

/** One JSON request to the agent's control socket. */
export function callAgent(socketPath: string, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 120_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request({ socketPath, method, path, headers: data ? { 'content-type': 'application/json' } : {}, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          return reject(new Error(`agent sent a non-JSON reply to ${method} ${path}`));
        }
        if ((res.statusCode ?? 500) >= 400) {
          return reject(new Error((parsed as { error?: string }).error ?? `agent answered ${res.statusCode}`));
        }
        resolve(parsed);
      });
    });
    req.on('timeout', () => req.destroy(new Error(`agent did not answer ${method} ${path} within ${timeoutMs} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
        reject(new AgentUnreachable(`cannot reach the edgelb agent at ${socketPath} (${e.code}); is it running? (systemctl status edgelb)`));
      } else if (e.code === 'EACCES') {
        reject(new AgentUnreachable(`permission denied on ${socketPath}; the control socket is root-only`));
      } else reject(e);
    });
    if (data) req.write(data);
    req.end();
  });
}
