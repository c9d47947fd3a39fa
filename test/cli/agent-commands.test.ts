import test from 'ava';
import { createServer, type Server } from 'node:net';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commands } from '../../src/cli/agent-commands.js';
import { DRAIN_SECONDS_MAX } from '../../src/config/schema.js';

const tmp = mkdtempSync(join(tmpdir(), 'edgelb-cli-test-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

/** A control socket whose agent accepts connections and never answers (hung, or stopped with SIGSTOP). */
async function hungAgent(name: string): Promise<{ socket: string; server: Server }> {
  const socket = join(tmp, name);
  const server = createServer(() => undefined);
  await new Promise<void>((r) => server.listen(socket, () => r()));
  return { socket, server };
}

function edgelb(args: string[]): Promise<{ code: number; stderr: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile('bin/edgelb', args, (e, _stdout, stderr) => resolve({ code: e ? (e as { code: number }).code : 0, stderr, ms: Date.now() - t0 }));
  });
}

test('edgelb status against a hung agent gives up within seconds, exit 1, naming the socket', async (t) => {
  t.timeout(60_000);
  const { socket, server } = await hungAgent('status.sock');
  try {
    const r = await edgelb(['status', '--socket', socket]);
    t.is(r.code, 1);
    t.regex(r.stderr, /^edgelb status: agent did not answer GET \/status within \d+ ms/m);
    t.true(r.ms < 30_000, `took ${r.ms} ms`);
  } finally {
    server.close();
  }
});

test('edgelb drain waits for the longest drain the config allows (bgp.drainSeconds) before giving up; reads do not', (t) => {
  const timeout = (words: string) => commands.find((c) => c.words.join(' ') === words)!.timeoutMs;
  t.true(timeout('drain') > DRAIN_SECONDS_MAX * 1000, `drain gives up after ${timeout('drain')} ms`);
  for (const w of ['status', 'service list', 'bgp peers', 'bgp routes']) t.true(timeout(w) <= 30_000, `${w}: ${timeout(w)} ms`);
});
