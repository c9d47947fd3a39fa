// The agent's systemd notifications are real datagrams on NOTIFY_SOCKET
// (path and abstract names), received here by a Python listener.
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { notifySocketSend, sdNotify } from '../../src/agent/sd-notify.js';
import { silentLogger } from '../../src/log/logger.js';
import { stoppingNotice } from '../../src/cli/run.js';
import { DRAIN_SECONDS_MAX } from '../../src/config/schema.js';

const RECEIVER = `
import socket, sys
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(("\\0" + name[1:]) if name.startswith("@") else name)
s.settimeout(20)
print("bound", flush=True)
print(s.recv(4096).decode(), end="", flush=True)
`;

async function receiveOne(name: string, send: () => void): Promise<string> {
  const py = spawn('python3', ['-c', RECEIVER, name], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  py.stdout.on('data', (b: Buffer) => { out += b.toString(); });
  try {
    while (!out.startsWith('bound\n')) await new Promise((r) => setTimeout(r, 20));
    send();
    await once(py, 'exit');
    return out.slice('bound\n'.length);
  } finally {
    py.kill();
  }
}

test.serial('sdNotify sends KEY=VALUE lines to a NOTIFY_SOCKET path', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-notify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'notify');
  const old = process.env.NOTIFY_SOCKET;
  t.teardown(() => { if (old === undefined) delete process.env.NOTIFY_SOCKET; else process.env.NOTIFY_SOCKET = old; });
  process.env.NOTIFY_SOCKET = sock;
  const got = await receiveOne(sock, () => sdNotify({ READY: '1', STATUS: 'ready: 2 peers\nsecond line' }, silentLogger()));
  t.is(got, 'READY=1\nSTATUS=ready: 2 peers second line');
});

test.serial('sdNotify reaches an abstract NOTIFY_SOCKET (@name)', async (t) => {
  const name = `@edgelb-notify-test-${process.pid}`;
  const old = process.env.NOTIFY_SOCKET;
  t.teardown(() => { if (old === undefined) delete process.env.NOTIFY_SOCKET; else process.env.NOTIFY_SOCKET = old; });
  process.env.NOTIFY_SOCKET = name;
  const got = await receiveOne(name, () => sdNotify({ STOPPING: '1' }, silentLogger()));
  t.is(got, 'STOPPING=1');
});

test.serial('without NOTIFY_SOCKET nothing is sent; a bad socket name is an error naming it', (t) => {
  const old = process.env.NOTIFY_SOCKET;
  t.teardown(() => { if (old === undefined) delete process.env.NOTIFY_SOCKET; else process.env.NOTIFY_SOCKET = old; });
  delete process.env.NOTIFY_SOCKET;
  t.false(notifySocketSend('READY=1'));
  process.env.NOTIFY_SOCKET = 'relative/path';
  t.throws(() => notifySocketSend('READY=1'), { message: /NOTIFY_SOCKET=relative\/path/ });
  process.env.NOTIFY_SOCKET = '/nonexistent-edgelb-dir/notify';
  t.throws(() => notifySocketSend('READY=1'), { message: /sendto \/nonexistent-edgelb-dir\/notify/ });
});

test('stopping to shut down, the agent asks systemd for its drain (bgp.drainSeconds) plus slack beyond TimeoutStopSec; a handover does not', (t) => {
  const unit = readFileSync('systemd/edgelb.service', 'utf8');
  const timeoutStopSec = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1]);
  for (const drainSeconds of [0, 30, 600, DRAIN_SECONDS_MAX]) {
    const n = stoppingNotice('shutdown', drainSeconds);
    t.is(n.STOPPING, '1');
    // systemd kills the agent once max(TimeoutStopSec, the extension) has passed.
    const allowed = Math.max(timeoutStopSec, Number(n.EXTEND_TIMEOUT_USEC ?? 0) / 1e6);
    t.true(allowed >= drainSeconds + 30, `drainSeconds ${drainSeconds}: killed after ${allowed} s`);
  }
  t.deepEqual(Object.keys(stoppingNotice('handover', 600)).sort(), ['STATUS', 'STOPPING']);
});
