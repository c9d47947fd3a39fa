// Entry of the lab's load generator (see load.ts); prints one JSON LoadResult.
//   node dist/src/lab/load-main.js --kind http|keep|udp --target IP --port N
//        [--bind IP] [--duration-ms N] [--count N] [--concurrency N]
//        [--connections N] [--interval-ms N] [--timeout-ms N]
import { parseArgs } from 'node:util';
import { runLoad, type LoadOptions } from './load.js';

const { values } = parseArgs({
  options: {
    kind: { type: 'string' }, target: { type: 'string' }, port: { type: 'string' }, bind: { type: 'string' },
    'duration-ms': { type: 'string' }, count: { type: 'string' }, concurrency: { type: 'string' },
    connections: { type: 'string' }, 'interval-ms': { type: 'string' }, 'timeout-ms': { type: 'string' }, path: { type: 'string' },
  },
});
const num = (k: keyof typeof values): number | undefined => {
  const v = values[k];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    process.stderr.write(`--${k}: "${String(v)}" is not a number\n`);
    process.exit(2);
  }
  return n;
};
if (!values.kind || !values.target || !values.port) {
  process.stderr.write('usage: load-main.js --kind http|keep|udp --target IP --port N [--duration-ms N | --count N] ...\n');
  process.exit(2);
}
const opts: LoadOptions = { kind: values.kind as LoadOptions['kind'], target: values.target, port: num('port')! };
const set = <K extends keyof LoadOptions>(k: K, v: LoadOptions[K] | undefined): void => {
  if (v !== undefined) opts[k] = v;
};
set('bind', values.bind);
set('path', values.path);
set('durationMs', num('duration-ms'));
set('count', num('count'));
set('concurrency', num('concurrency'));
set('connections', num('connections'));
set('intervalMs', num('interval-ms'));
set('timeoutMs', num('timeout-ms'));
const r = await runLoad(opts);
process.stdout.write(`${JSON.stringify(r)}\n`);
