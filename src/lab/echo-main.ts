// Entry of the lab's echo pod (see echo.ts).
import { parseArgs } from 'node:util';
import { startEcho } from './echo.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { name: { type: 'string' }, http: { type: 'string', default: '8080' }, udp: { type: 'string', default: '9090' }, host: { type: 'string', default: '0.0.0.0' } },
  });
  if (!values.name) {
    process.stderr.write('usage: echo-main.js --name POD [--http PORT] [--udp PORT] [--host ADDRESS]\n');
    process.exit(2);
  }
  const servers = await startEcho(values.name, Number(values.http), Number(values.udp), values.host);
  process.stdout.write(`ECHO READY pod=${values.name} http=${values.http} udp=${values.udp}\n`);
  const stop = (): void => {
    // Bounded: a client that never finishes cannot keep the pod alive.
    setTimeout(() => process.exit(0), 10_000).unref();
    void servers.close().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();
