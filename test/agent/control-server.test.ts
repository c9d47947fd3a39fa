import test from 'ava';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlServer } from '../../src/agent/control-server.js';
import { callAgent } from '../../src/cli/control-client.js';
import { silentLogger } from '../../src/log/logger.js';

const tmp = mkdtempSync(join(tmpdir(), 'edgelb-control-test-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

test('control.socket naming an existing file that is no socket (a typo, the config itself) is refused, and the file is left alone', async (t) => {
  const file = join(tmp, 'edgelb.yaml');
  writeFileSync(file, 'node: {}\n');
  const server = new ControlServer(file, {}, silentLogger());
  await t.throwsAsync(() => server.start(), { message: new RegExp(`control\\.socket ${file} exists and is not a socket`) });
  t.is(readFileSync(file, 'utf8'), 'node: {}\n');
  await server.stop();
  t.true(existsSync(file), 'stop() removed it');
});

test('a stale socket from a previous agent is replaced; stop() removes the socket', async (t) => {
  const sock = join(tmp, 'control.sock');
  const old = new ControlServer(sock, {}, silentLogger());
  await old.start();
  // A killed agent leaves its socket file behind.
  const next = new ControlServer(sock, { 'GET /status': () => ({ ok: true }) }, silentLogger());
  await next.start();
  t.deepEqual(await callAgent(sock, 'GET', '/status'), { ok: true });
  await next.stop();
  t.false(existsSync(sock));
  await old.stop();
});

test('a handover: the old agent stopping after the new one bound control.socket leaves the new agent\'s socket in place', async (t) => {
  const sock = join(tmp, 'handover.sock');
  const old = new ControlServer(sock, { 'GET /status': () => ({ agent: 'old' }) }, silentLogger());
  await old.start();
  t.teardown(() => old.stop());
  const next = new ControlServer(sock, { 'GET /status': () => ({ agent: 'new' }) }, silentLogger());
  await next.start();
  t.teardown(() => next.stop());
  t.deepEqual(await callAgent(sock, 'GET', '/status'), { agent: 'new' });
  await old.stop();
  t.true(existsSync(sock), 'the old agent removed the new agent\'s socket');
  t.deepEqual(await callAgent(sock, 'GET', '/status'), { agent: 'new' });
  t.is(statSync(sock).mode & 0o777, 0o600, 'root only');
  await next.stop();
  t.false(existsSync(sock), 'the new agent removes its own socket when it stops');
  t.deepEqual(readdirSync(tmp).filter((f) => f !== 'edgelb.yaml' && f !== 'control.sock'), [], 'nothing else left in the directory');
});
