// dispatch: auto end to end in namespaces: edge ── hop ── node, the node
// running the real `edgelb node run`. A clean fabric proves ip-option; a
// hop that strips or drops IPv4 options turns the path to IPIP; a repaired
// fabric comes back after the recovery streak; a silent node changes nothing.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { Cleanup, createNetns, uniqueId, vethPair, addAddress, nsRun, sysctl, sleep } from '../lib/netns.js';
import { BpfObject, inNetns, type TcAttachment } from '../../src/datapath/loader.js';
import { bpfObjectPath } from '../../src/assets.js';
import { probePath } from '../../src/probe/prober.js';
import { testBpffs } from '../lib/test-bpffs.js';
import { decidePath, initialPathState, type PathState } from '../../src/probe/decide.js';

const id = uniqueId();
const E = `elbpe-${id}`, H = `elbph-${id}`, N = `elbpn-${id}`;
const o = 16 + (parseInt(id, 16) % 200);
const EDGE = `10.${o}.21.2`, NODE = `10.${o}.22.10`;
const PIN = `${testBpffs()}/edgelb-test-probe-${id}`;
const cleanup = new Cleanup();
let node: ChildProcess | null = null;
let hopObj: BpfObject;
const wrap = ['ip', 'netns', 'exec', E];

async function startNode(): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', N, 'bin/edgelb', 'node', 'run', '--interface', 'n0', '--node-name', 'node-1', '--node-ip', NODE, '--edge-sources', EDGE, '--pin-path', PIN], { stdio: ['ignore', 'pipe', 'pipe'] });
  node = child;
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 20_000;
  while (!out.includes('EDGELB NODE READY')) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`node agent did not start: ${out.slice(-1500)}`);
    await sleep(50);
  }
}

async function stopNode(): Promise<void> {
  const child = node;
  node = null;
  if (!child || child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await done;
  clearTimeout(t);
}

function hop(section: 'lab_strip_options' | 'lab_drop_options'): TcAttachment {
  return inNetns(H, () => hopObj.program(section).attachTc('h0', 'ingress'));
}

/** Three probe rounds folded through the decision, as the edge agent does. */
async function decide(start: PathState, rounds = 1): Promise<PathState> {
  let s = start;
  for (let i = 0; i < rounds; i++) s = decidePath(s, await probePath(NODE, { wrap, timeoutMs: 300 }), Date.now());
  return s;
}

test.before(async () => {
  cleanup.add('pins', () => rmSync(PIN, { recursive: true, force: true }));
  for (const ns of [E, H, N]) await createNetns(ns, cleanup);
  await vethPair(E, 'e0', H, 'h0');
  await vethPair(H, 'h1', N, 'n0');
  await addAddress(E, 'e0', `${EDGE}/24`);
  await addAddress(H, 'h0', `10.${o}.21.1/24`);
  await addAddress(H, 'h1', `10.${o}.22.1/24`);
  await addAddress(N, 'n0', `${NODE}/24`);
  await sysctl(H, 'net.ipv4.ip_forward', '1');
  await nsRun(E, ['ip', 'route', 'add', `10.${o}.22.0/24`, 'via', `10.${o}.21.1`]);
  await nsRun(N, ['ip', 'route', 'add', 'default', 'via', `10.${o}.22.1`]);
  hopObj = BpfObject.load(bpfObjectPath('lab_strip_options'));
  cleanup.add('hop object', () => hopObj.close());
  await startNode();
  cleanup.add('node agent', () => stopNode());
});

test.after.always(async () => {
  const errors = await cleanup.run();
  if (errors.length > 0) console.error(errors.map((e) => e.message).join('\n'));
});

test.serial('a clean fabric carries the option: the path uses ip-option', async (t) => {
  const r = await probePath(NODE, { wrap });
  t.true(r.optionReply);
  t.true(r.optionSeen);
  const s = await decide(initialPathState('ipip', Date.now()));
  t.is(s.dispatch, 'ip-option');
  t.regex(s.reason, /^option arrives \(rtt \d+ µs\)$/);
});

test.serial('a hop that strips options: answered but not seen → IPIP at once', async (t) => {
  const at = hop('lab_strip_options');
  try {
    const r = await probePath(NODE, { wrap });
    t.true(r.optionReply);
    t.false(r.optionSeen);
    const s = await decide({ ...initialPathState('ip-option', 0), probes: 5, goodStreak: 5 });
    t.is(s.dispatch, 'ipip');
    t.is(s.reason, 'the fabric strips IPv4 options on this path');
  } finally {
    at.detach();
  }
});

test.serial('a hop that drops optioned packets: plain probe answered → IPIP', async (t) => {
  const at = hop('lab_drop_options');
  try {
    const r = await probePath(NODE, { wrap });
    t.false(r.optionReply);
    t.true(r.plainReply);
    const s = await decide({ ...initialPathState('ip-option', 0), probes: 5 });
    t.is(s.dispatch, 'ipip');
    t.is(s.reason, 'the fabric drops packets carrying IPv4 options on this path');
  } finally {
    at.detach();
  }
});

test.serial('a repaired fabric switches back only after 3 good probes in a row', async (t) => {
  let s: PathState = { ...initialPathState('ipip', 0), probes: 4 };
  s = await decide(s, 2);
  t.is(s.dispatch, 'ipip');
  t.regex(s.reason, /^option arrives again \(2\/3 before switching back\)$/);
  s = await decide(s);
  t.is(s.dispatch, 'ip-option');
});

test.serial('a node that answers nothing changes nothing', async (t) => {
  await stopNode();
  const r = await probePath(NODE, { wrap, timeoutMs: 200 });
  t.false(r.optionReply);
  t.false(r.plainReply);
  const s = decidePath({ ...initialPathState('ip-option', 0), probes: 3 }, r, Date.now());
  t.is(s.dispatch, 'ip-option');
  t.is(s.reason, 'node not answering probes (keeping ip-option)');
});
