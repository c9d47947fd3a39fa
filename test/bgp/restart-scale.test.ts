// BgpSpeaker against a real gobgpd holding 2 000 VIPs, through the outages
// an edge sees: gobgpd killed, gobgpd hung while the VIP set changes, a burst
// of changes while gobgpd is slow, and the agent replaced by a new one.
//
// No BGP listener (listenPort -1) and no peers: nothing goes on the network,
// so no namespace is needed. Every path the speaker sends is recorded by a
// wrapper around its client, so "nothing withdrawn that did not change" and
// "nothing added twice" are checked on what was sent, not only on the end
// state of the RIB.
import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { NO_ATTRS, type DesiredVip } from '../../src/bgp/attributes.js';
import { FAMILY_V4, type ApiPath } from '../../src/bgp/gobgp-client.js';
import { GobgpdProcess } from '../../src/bgp/gobgpd-process.js';
import { BgpSpeaker, type SpeakerOptions } from '../../src/bgp/speaker.js';
import { pidAlive } from '../../src/bgp/daemon-files.js';
import { edgeBgpConfig } from '../lib/gobgpd.js';
import { sleep, waitFor } from '../lib/netns.js';

const N = 2000;

/** A full garbage collection, so that heapUsed counts what is retained, not garbage not yet collected. */
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** VIP i of a /20: 198.19.(i >> 8).(i & 255)/32. */
const vip = (i: number): string => `198.19.${i >> 8}.${i & 255}/32`;
const vips = (from: number, to: number): DesiredVip[] => Array.from({ length: to - from }, (_, k) => ({ prefix: vip(from + k), attrs: NO_ATTRS }));

/** What the speaker sent to gobgpd, per prefix, in order. */
class Sent {
  adds: string[] = [];
  withdraws: string[] = [];
  reset(): void {
    this.adds = [];
    this.withdraws = [];
  }
  private record(p: ApiPath, withdraw = false): void {
    const nlri = p.nlri as unknown as { prefix: string; prefix_len: number };
    const prefix = `${nlri.prefix}/${nlri.prefix_len}`;
    (withdraw || p.is_withdraw ? this.withdraws : this.adds).push(prefix);
  }
  /** Wraps the speaker's client so that every AddPath/DeletePath/AddPathStream is recorded. */
  watch(sp: BgpSpeaker): this {
    const c = sp.client;
    const addPath = c.addPath.bind(c);
    const deletePath = c.deletePath.bind(c);
    const addPathStream = c.addPathStream.bind(c);
    c.addPath = (p) => (this.record(p), addPath(p));
    c.deletePath = (by) => ('path' in by && this.record(by.path, true), deletePath(by));
    c.addPathStream = (ps, batch) => (ps.forEach((p) => this.record(p)), addPathStream(ps, batch));
    return this;
  }
}

const duplicates = (xs: string[]): string[] => [...new Set(xs.filter((x, i) => xs.indexOf(x) !== i))];

/** The prefixes in gobgpd's global RIB (as many times as they are listed). */
async function rib(sp: BgpSpeaker): Promise<string[]> {
  return (await sp.client.listPath('GLOBAL', FAMILY_V4)).map((d) => d.prefix);
}

const sameSet = (a: string[], b: string[]): boolean => a.length === b.length && JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

function allStopped(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).every((tid) => /^State:\s+T/m.test(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8')));
  } catch {
    return false;
  }
}

interface Ctx {
  dir: string;
  speakers: BgpSpeaker[];
  gobgpds: GobgpdProcess[];
  speaker(manage: boolean, opts?: SpeakerOptions): BgpSpeaker;
  gobgpd(): GobgpdProcess;
}

function setup(t: { teardown: (fn: () => Promise<void>) => void }, asn: number): Ctx {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-restart-scale-'));
  const ctx: Ctx = {
    dir,
    speakers: [],
    gobgpds: [],
    speaker(manage, opts = {}) {
      const base = edgeBgpConfig(dir, []);
      const bgp = { ...base, gobgp: { ...base.gobgp, manage } };
      const sp = new BgpSpeaker({ node: { asn, routerId: '192.0.2.40' }, bgp }, { listenPort: -1, reconcileIntervalMs: 200, gobgpdLogFile: join(dir, 'gobgpd.log'), ...opts });
      ctx.speakers.push(sp);
      return sp;
    },
    gobgpd() {
      const g = new GobgpdProcess({ binary: 'gobgpd', socket: join(dir, 'gobgp.sock'), logFile: join(dir, 'gobgpd.log') });
      ctx.gobgpds.push(g);
      return g;
    },
  };
  t.teardown(async () => {
    for (const g of ctx.gobgpds) if (g.pid !== undefined && pidAlive(g.pid)) process.kill(g.pid, 'SIGCONT');
    for (const sp of ctx.speakers) {
      if (sp.gobgpd?.pid !== undefined && pidAlive(sp.gobgpd.pid)) process.kill(sp.gobgpd.pid, 'SIGCONT');
      await sp.close({ stopGobgpd: true });
    }
    for (const g of ctx.gobgpds) await g.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return ctx;
}

/** A gobgpd of its own with a speaker on it, announcing VIPs 0…n-1; its pid for SIGSTOP/SIGCONT. */
async function announcing(t: { teardown: (fn: () => Promise<void>) => void }, asn: number, n: number): Promise<{ pid: number; sp: BgpSpeaker }> {
  const ctx = setup(t, asn);
  const g = ctx.gobgpd();
  await g.start();
  const sp = ctx.speaker(false);
  await sp.start();
  await sp.setDesired(vips(0, n));
  return { pid: g.pid!, sp };
}

test.serial(`gobgpd SIGKILLed with ${N} VIPs: the speaker restarts it and re-adds each VIP once, withdraws none, and counts the resync`, async (t) => {
  t.timeout(60_000);
  const ctx = setup(t, 65140);
  const sp = ctx.speaker(true);
  await sp.start();
  const want = vips(0, N);
  await sp.setDesired(want);
  t.true(sameSet(await rib(sp), want.map((v) => v.prefix)));
  const sent = new Sent().watch(sp);
  const oldPid = sp.gobgpd!.pid!;
  const t0 = Date.now();
  process.kill(oldPid, 'SIGKILL');
  t.true(await waitFor(async () => !(await sp.status()).gobgpdHealthy, 5000), 'status says gobgpd is not answering');
  const back = await waitFor(async () => (await rib(sp).catch(() => [])).length >= N, 20_000, 100);
  const backMs = Date.now() - t0;
  t.truthy(back, `the ${N} VIPs are back in the RIB within 20 s`);
  t.log(`${N} VIPs back in the new gobgpd's RIB ${backMs} ms after SIGKILL`);
  await sleep(1000); // a few more reconcile rounds: nothing more may be sent
  const now = await rib(sp);
  t.deepEqual(duplicates(now), [], 'a VIP is listed twice in the RIB');
  t.true(sameSet(now, want.map((v) => v.prefix)), 'the RIB is the desired set');
  t.not(sp.gobgpd!.pid, oldPid, 'a new gobgpd');
  t.deepEqual(sent.withdraws, [], 'a VIP was withdrawn although it never changed');
  t.deepEqual(duplicates(sent.adds), [], 'a VIP was re-added more than once');
  t.is(sent.adds.length, N);
  t.is(sp.resyncs, 1, 'one resync');
  t.true((await sp.status()).gobgpdHealthy);
});

test.serial(`gobgpd hung (SIGSTOP) past the call timeouts while ${N} VIPs change: once it answers the RIB is the last desired set, and stays so`, async (t) => {
  t.timeout(60_000);
  const { pid, sp } = await announcing(t, 65141, N);
  const sent = new Sent().watch(sp);
  process.kill(pid, 'SIGSTOP');
  t.true(await waitFor(() => allStopped(pid), 5000));
  // Two changes while it hangs: each fails (kept for the reconcile loop), the second supersedes the first.
  const middle = [...vips(500, N), ...vips(N, N + 500)]; // 500 removed, 500 added
  const last = [...vips(1000, N), ...vips(N + 250, N + 1000)]; // of which 500 more removed, 250 never announced, 500 more added
  const t0 = Date.now();
  await t.throwsAsync(sp.setDesired(middle));
  await t.throwsAsync(sp.setDesired(last));
  const failMs = Date.now() - t0;
  t.true(failMs < 30_000, `the two changes failed after ${failMs} ms`);
  await sleep(1000); // reconcile rounds find it hung meanwhile
  process.kill(pid, 'SIGCONT');
  const t1 = Date.now();
  const want = last.map((v) => v.prefix);
  t.truthy(await waitFor(async () => sameSet(await rib(sp).catch(() => []), want), 20_000, 100), 'the RIB is the last desired set within 20 s of SIGCONT');
  t.log(`RIB equal to the last desired set ${Date.now() - t1} ms after SIGCONT (the changes failed after ${failMs} ms)`);
  // Requests sent while it hung are still in its socket: none may land later and undo the result.
  for (let i = 0; i < 10; i++) {
    await sleep(300);
    const now = await rib(sp);
    t.deepEqual(duplicates(now), []);
    if (!sameSet(now, want)) {
      t.fail(`the RIB left the desired set ${Date.now() - t1} ms after SIGCONT: ${now.length} paths`);
      break;
    }
  }
  // Never-desired-at-the-end VIPs 0..999 were announced before: withdrawn (once is enough, twice is harmless).
  // A VIP that stays from start to end (1000..1999) is never withdrawn nor re-added.
  const kept = new Set(vips(1000, N).map((v) => v.prefix));
  t.deepEqual(sent.withdraws.filter((p) => kept.has(p)), [], 'a VIP desired throughout was withdrawn');
  t.deepEqual(sent.adds.filter((p) => kept.has(p)), [], 'a VIP desired throughout was re-added');
  t.log(`sent while hung and after: ${sent.adds.length} adds, ${sent.withdraws.length} withdraws; duplicated adds ${duplicates(sent.adds).length}, withdraws ${duplicates(sent.withdraws).length}`);
});

test.serial(`a burst of ${N} VIP changes while gobgpd is slow: the event loop stays responsive, memory stays bounded, the last state wins`, async (t) => {
  t.timeout(60_000);
  const { pid, sp } = await announcing(t, 65142, N);
  // Slow: stopped 150 ms of every 200 ms.
  let slow = true;
  const throttle = (async () => {
    while (slow) {
      process.kill(pid, 'SIGSTOP');
      await sleep(150);
      process.kill(pid, 'SIGCONT');
      await sleep(50);
    }
  })();
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = Date.now();
  // N callers each replace the whole set by one differing in one VIP (each a full N-VIP list),
  // none waiting for the previous: only the newest set matters, not each one on the way.
  const calls: Promise<void>[] = [];
  for (let i = 0; i < N; i++) calls.push(sp.setDesired([...vips(i + 1, N), ...vips(N, N + i + 1)]).catch(() => undefined));
  // Issued, not yet applied: what the speaker holds for them now.
  gc();
  const heldMb = (process.memoryUsage().heapUsed - heap0) / 2 ** 20;
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([Promise.all(calls).then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), 30_000)))]);
  clearTimeout(timer);
  const burstMs = Date.now() - t0;
  slow = false;
  await throttle;
  process.kill(pid, 'SIGCONT');
  delay.disable();
  const maxDelayMs = delay.max / 1e6;
  t.log(`burst of ${N} changes settled: ${settled} after ${burstMs} ms; max event-loop delay ${maxDelayMs.toFixed(0)} ms; ${heldMb.toFixed(0)} MB held for the waiting calls`);
  t.true(settled, `the ${N} calls had not settled after 30 s`);
  t.true(maxDelayMs < 500, `event loop blocked for ${maxDelayMs.toFixed(0)} ms`);
  t.true(heldMb < 50, `${heldMb.toFixed(0)} MB held for the waiting calls (one set of ${N} VIPs is well under 5 MB)`);
  const want = [...vips(N, 2 * N)].map((v) => v.prefix);
  t.truthy(await waitFor(async () => sameSet(await rib(sp).catch(() => []), want), 15_000, 100), 'the RIB is the last desired set');
});

test.serial(`the agent replaced (no goodbye) with ${N} VIPs announced: the new speaker adopts them, sends nothing until told, then withdraws only what went`, async (t) => {
  t.timeout(60_000);
  const ctx = setup(t, 65143);
  const g = ctx.gobgpd();
  await g.start();
  const first = ctx.speaker(false);
  await first.start();
  await first.setDesired(vips(0, N));
  // A SIGKILLed agent says nothing to gobgpd: its speaker simply stops talking.
  await first.close();
  const second = ctx.speaker(false);
  const sent = new Sent();
  // Watch from the start: adoption itself must send nothing.
  sent.watch(second);
  await second.start();
  await sleep(1000); // reconcile rounds before the first desired state
  t.deepEqual([sent.adds.length, sent.withdraws.length], [0, 0], 'the new speaker sent paths before it was told the VIPs');
  t.is((await rib(second)).length, N);
  const stay = vips(100, N);
  await second.setDesired([...stay, ...vips(N, N + 10)]);
  await sleep(600);
  t.deepEqual(sent.withdraws.sort(), vips(0, 100).map((v) => v.prefix).sort(), 'withdrawn: exactly the VIPs no longer desired');
  t.deepEqual(sent.adds.sort(), vips(N, N + 10).map((v) => v.prefix).sort(), 'added: exactly the new VIPs');
  t.true(sameSet(await rib(second), [...stay, ...vips(N, N + 10)].map((v) => v.prefix)));
});

test.serial(`gobgpd hangs just as ${N} paths are streamed to it: the change fails within seconds, not after the stream's minute, and is applied once it answers`, async (t) => {
  t.timeout(90_000);
  const { pid, sp } = await announcing(t, 65144, 10);
  // Hang it at the moment the big AddPathStream starts (the rounds before it, ListPath and policy, answered).
  const c = sp.client;
  const addPathStream = c.addPathStream.bind(c);
  let hung = false;
  c.addPathStream = async (ps, batch) => {
    if (!hung) {
      hung = true;
      process.kill(pid, 'SIGSTOP');
      await waitFor(() => allStopped(pid), 5000);
    }
    return addPathStream(ps, batch);
  };
  const want = vips(0, N);
  const t0 = Date.now();
  const change = sp.setDesired(want);
  let timer: NodeJS.Timeout | undefined;
  const failed = await Promise.race([change.then(() => 'applied', () => 'failed'), new Promise<string>((r) => (timer = setTimeout(() => r('waiting'), 20_000)))]);
  clearTimeout(timer);
  const ms = Date.now() - t0;
  t.log(`the change ${failed} after ${ms} ms`);
  t.true(hung, 'the stream was reached');
  t.is(failed, 'failed', `the change was still ${failed} after ${ms} ms: a hung gobgpd holds every VIP change, drain and reconcile round`);
  process.kill(pid, 'SIGCONT');
  await change.catch(() => undefined);
  t.truthy(await waitFor(async () => sameSet(await rib(sp).catch(() => []), want.map((v) => v.prefix)), 20_000, 100), 'applied once it answers');
});
