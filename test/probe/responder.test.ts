// src/probe/responder.ts on loopback: probe datagrams are echoed on both
// families (the IPv6 marker's probes arrive over IPv6), anything else is
// ignored.
import test from 'ava';
import { createSocket, type SocketType } from 'node:dgram';
import { ProbeResponder } from '../../src/probe/responder.js';
import { probePayload } from '../../src/probe/wire.js';

async function ask(type: SocketType, host: string, port: number, msg: Buffer, waitMs = 500): Promise<Buffer | null> {
  const s = createSocket(type);
  try {
    return await new Promise<Buffer | null>((resolve, reject) => {
      const timer = setTimeout(() => resolve(null), waitMs);
      s.on('message', (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      s.on('error', reject);
      s.send(msg, port, host);
    });
  } finally {
    s.close();
  }
}

test('the responder echoes probes over IPv4 and IPv6 on one port and ignores other datagrams', async (t) => {
  const r = new ProbeResponder({ port: 0 });
  const port = await r.start();
  t.teardown(() => r.stop());
  t.deepEqual(r.families, [4, 6]);
  const marked = probePayload(Buffer.from('0123456789abcdef', 'hex'), 1);
  t.deepEqual(await ask('udp6', '::1', port, marked), marked);
  t.deepEqual(await ask('udp4', '127.0.0.1', port, marked), marked);
  t.is(await ask('udp6', '::1', port, Buffer.from('NOTAPROBE-0123456'), 200), null);
  t.is(r.answered, 2);
});

test('with an IPv6 address the responder answers there only', async (t) => {
  const r = new ProbeResponder({ address: '::1', port: 0 });
  const port = await r.start();
  t.teardown(() => r.stop());
  t.deepEqual(r.families, [6]);
  const p = probePayload(Buffer.alloc(8, 7));
  t.deepEqual(await ask('udp6', '::1', port, p), p);
});

test('only the edges are answered, and never faster than the cap: a forged source (a reflection victim) or a flood gets nothing', async (t) => {
  // The node agent passes its --edge-sources: probes come from edges only.
  const r = new ProbeResponder({ port: 0, address: '127.0.0.1', allowSources: ['127.0.0.2/32', '::1/128'], maxPerSecond: 5 });
  const port = await r.start();
  t.teardown(() => r.stop());
  const probe = probePayload(Buffer.from('0123456789abcdef', 'hex'), 0);
  t.is(await ask('udp4', '127.0.0.1', port, probe, 300), null, 'from 127.0.0.1: not an edge source');
  t.is(r.refused, 1);
  const fromEdge = async (): Promise<Buffer | null> => {
    const s = createSocket('udp4');
    try {
      await new Promise<void>((res) => s.bind(0, '127.0.0.2', () => res()));
      return await new Promise<Buffer | null>((resolve) => {
        const timer = setTimeout(() => resolve(null), 300);
        s.on('message', (m) => {
          clearTimeout(timer);
          resolve(m);
        });
        s.send(probe, port, '127.0.0.1');
      });
    } finally {
      s.close();
    }
  };
  const answers = [];
  for (let i = 0; i < 8; i++) answers.push(await fromEdge());
  t.is(answers.filter((a) => a !== null).length, 5, 'five answered within the second, then the cap');
  t.is(r.answered, 5);
  t.is(r.overLimit, 3);
});
