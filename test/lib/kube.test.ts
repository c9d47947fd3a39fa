// The test control plane's own contract: an address a caller asked for is
// used or refused, never swapped. An agent in another namespace only reaches
// the address it was given; a silent swap to loopback left it "unreachable"
// with nothing saying why.
import test from 'ava';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { TestCluster } from './kube.js';

test('a requested host already held by another control plane is refused, naming it', async (t) => {
  const host = '10.254.253.1';
  const record = `/run/edgelb-kube/${host}.json`;
  mkdirSync('/run/edgelb-kube', { recursive: true });
  // A live owner (this process), so removeOrphans leaves the record alone.
  writeFileSync(record, JSON.stringify({ owner: process.pid, tag: 'other', dir: `/run/edgelb-kube/${host}`, processes: [] }));
  try {
    const e = await t.throwsAsync(TestCluster.start({ tag: 'taken', host }));
    t.regex(e?.message ?? '', /TestCluster taken: 10\.254\.253\.1 is in use by another control plane/);
  } finally {
    rmSync(record, { force: true });
  }
});
