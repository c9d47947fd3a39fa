/**
 * Runs the test API server standalone (for the lab and manual use):
 *   node dist/test/apiserver/main.js [--port N] [--kubeconfig-out FILE] [--token T]
 * Prints the URL on the first line of stdout and serves until SIGINT/SIGTERM.
 */
import { parseArgs } from 'node:util';
import { TestApiServer } from './server.js';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'kubeconfig-out': { type: 'string' },
    token: { type: 'string' },
    'node-port-range': { type: 'string' },
    'bookmark-interval-ms': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

if (values.help) {
  process.stdout.write('usage: main.js [--port N] [--host IP] [--kubeconfig-out FILE] [--token T] [--node-port-range LO-HI] [--bookmark-interval-ms MS]\n');
  process.exit(0);
}

const port = Number(values.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  process.stderr.write(`--port: "${values.port}" is not a port number\n`);
  process.exit(2);
}
let nodePortRange: [number, number] | undefined;
if (values['node-port-range']) {
  const m = values['node-port-range'].match(/^(\d+)-(\d+)$/);
  if (!m || Number(m[1]) > Number(m[2])) {
    process.stderr.write(`--node-port-range: "${values['node-port-range']}" is not LO-HI\n`);
    process.exit(2);
  }
  nodePortRange = [Number(m[1]), Number(m[2])];
}

const server = await TestApiServer.start({
  port,
  host: values.host,
  ...(values.token ? { token: values.token } : {}),
  ...(values['kubeconfig-out'] ? { kubeconfigPath: values['kubeconfig-out'] } : {}),
  ...(nodePortRange ? { nodePortRange } : {}),
  ...(values['bookmark-interval-ms'] ? { bookmarkIntervalMs: Number(values['bookmark-interval-ms']) } : {}),
});
process.stdout.write(`${server.url}\n`);
process.stderr.write(`kubeconfig: ${server.kubeconfigPath}\n`);

let stopping = false;
const shutdown = (): void => {
  if (stopping) return;
  stopping = true;
  void server.close().then(() => process.exit(0));
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
