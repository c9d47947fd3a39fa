// The I/O half of bench:e2e's variants: running their steps in the lab's
// namespaces, and taking the edgelb agents' XDP program off the uplinks (and
// putting the same program back) without stopping the agents, so BGP, BFD
// and the router's ECMP route stay exactly as they are.
import { spawn } from 'node:child_process';
import { BpfProgram, detachXdp, inNetns, xdpQuery, type XdpMode } from '../../src/datapath/loader.js';
import { nsRun } from '../../test/lib/netns.js';
import type { Step } from './e2e-variants.js';
import { senderTsoOff } from './napi-cpu.js';

function runStep(s: Step): Promise<void> {
  const argv = ['ip', 'netns', 'exec', s.ns, ...s.argv];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: [s.input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${s.argv.join(' ')} in ${s.ns} failed (${code ?? 'killed'}): ${stderr.trim()}`));
    });
    if (child.stdin) {
      // A command that fails early closes its stdin: its exit status says why, not EPIPE.
      child.stdin.on('error', () => undefined);
      child.stdin.end(s.input);
    }
  });
}

/** Runs steps in order; a failing step stops the rest unless it may fail (teardown). */
export async function applySteps(steps: Step[]): Promise<void> {
  for (const s of steps) {
    try {
      await runStep(s);
    } catch (e) {
      // A teardown step may find its object already gone.
      if (!s.mayFail) throw e;
    }
  }
}

export async function macOf(ns: string, ifname: string): Promise<string> {
  const { stdout } = await nsRun(ns, ['ip', '-j', 'link', 'show', 'dev', ifname]);
  return (JSON.parse(stdout) as { address: string }[])[0]!.address;
}

export interface Uplink {
  ns: string;
  ifname: string;
  /** The veth sending into it (its fabric port): TSO off again after a detach, so skbs are polled by NAPI. */
  sender: { ns: string; ifname: string };
}

interface Parked extends Uplink {
  mode: XdpMode;
  prog: BpfProgram;
  attached: boolean;
}

/**
 * Holds each edge's XDP program (by id, so it survives detaching) and moves
 * it off and back onto the uplink. The agents are not told: they keep
 * announcing and never look at the attachment again.
 */
export class XdpPark {
  private readonly parked: Parked[] = [];

  constructor(uplinks: Uplink[]) {
    for (const u of uplinks) {
      const q = inNetns(u.ns, () => xdpQuery(u.ifname));
      const id = q.drvProgId || q.skbProgId;
      if (!id) throw new Error(`no XDP program on ${u.ifname} in ${u.ns}: is the edgelb agent running?`);
      this.parked.push({ ...u, mode: q.drvProgId ? 'native' : 'generic', prog: BpfProgram.fromId(id), attached: true });
    }
  }

  /** Takes the programs off (idempotent). */
  park(): void {
    for (const p of this.parked) {
      if (!p.attached) continue;
      inNetns(p.ns, () => detachXdp(p.ifname, p.mode));
      p.attached = false;
      senderTsoOff(p.sender);
    }
  }

  /** Puts the same programs back (idempotent). */
  restore(): void {
    for (const p of this.parked) {
      if (p.attached) continue;
      inNetns(p.ns, () => p.prog.attachXdp(p.ifname, p.mode));
      p.attached = true;
    }
  }

  close(): void {
    for (const p of this.parked) p.prog.close();
  }
}
