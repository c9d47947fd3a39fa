// A watch stream's lines split on bytes: lines across chunks, a UTF-8
// character cut between two chunks, empty lines, a stop from the caller, an
// over-long line and a stream cut inside a line.
import test from 'ava';
import { LineSplitter } from '../../src/k8s/line-splitter.js';

function feed(s: LineSplitter, chunks: Buffer[]): { lines: string[]; results: string[] } {
  const lines: string[] = [];
  const results = chunks.map((c) => s.push(c, (l) => (lines.push(l), true)));
  return { lines, results };
}

test('lines split across chunks come out whole, in order', (t) => {
  const text = '{"type":"ADDED","n":1}\n{"type":"MODIFIED","n":2}\n\n{"n":3}\n';
  const bytes = Buffer.from(text);
  for (const size of [1, 2, 3, 7, 16, bytes.length]) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += size) chunks.push(bytes.subarray(i, i + size));
    const s = new LineSplitter(1024);
    const { lines, results } = feed(s, chunks);
    t.deepEqual(lines, ['{"type":"ADDED","n":1}', '{"type":"MODIFIED","n":2}', '', '{"n":3}'], `chunks of ${size}`);
    t.true(results.every((r) => r === 'ok'));
    t.false(s.unfinished());
  }
});

test('a multi-byte character cut between chunks is decoded once the line is whole', (t) => {
  const bytes = Buffer.from('{"name":"café ünïcödé 🚀"}\n');
  const cut = bytes.indexOf(0xf0) + 2; // inside the 4-byte rocket
  const s = new LineSplitter(1024);
  const { lines } = feed(s, [bytes.subarray(0, cut), bytes.subarray(cut)]);
  t.deepEqual(lines.map((l) => JSON.parse(l) as unknown), [{ name: 'café ünïcödé 🚀' }]);
});

test('the caller stops: the rest of the chunk is not delivered', (t) => {
  const s = new LineSplitter(1024);
  const seen: string[] = [];
  t.is(s.push(Buffer.from('a\nb\nc\n'), (l) => (seen.push(l), l !== 'b')), 'stopped');
  t.deepEqual(seen, ['a', 'b']);
});

test('an unfinished line past the limit is reported; a stream cut inside a line is unfinished', (t) => {
  const s = new LineSplitter(10);
  t.is(s.push(Buffer.from('0123456'), () => true), 'ok');
  t.true(s.unfinished());
  t.is(s.push(Buffer.from('789ab'), () => true), 'too-long');
  const w = new LineSplitter(10);
  t.is(w.push(Buffer.from('x\n  '), () => true), 'ok');
  t.false(w.unfinished(), 'trailing whitespace is not a cut line');
});
