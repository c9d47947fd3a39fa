// Hand-built frames sent from inside a namespace, with a capture of what
// comes back: test/lib/inject.py under Debian's python3-scapy (installed by
// scripts/setup; /usr/bin/python3, since the first python3 on PATH may lack
// it). Frames are built with test/lib/packets.ts.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../src/assets.js';

export interface InjectResult {
  sent: number;
  /** Frames captured on the interface matching `sniff` (Ethernet, as hex-decoded buffers). */
  captured: Buffer[];
}

/** `linear`: send each frame as a non-linear skb with only its first `linear` bytes in the head (frames over a page; see inject.py). */
export async function inject(ns: string, o: { iface: string; frames: Buffer[]; l3?: boolean; sniff?: string; waitSeconds?: number; linear?: number }): Promise<InjectResult> {
  const req = JSON.stringify({ iface: o.iface, frames: o.frames.map((f) => f.toString('hex')), l3: o.l3 ?? false, sniff: o.sniff ?? '', wait: o.waitSeconds ?? 2, linear: o.linear ?? 0 });
  const child = spawn('ip', ['netns', 'exec', ns, '/usr/bin/python3', join(repoRoot(), 'test/lib/inject.py')], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin.end(req);
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  if (code !== 0) throw new Error(`inject.py in ${ns} exited ${code}: ${err.slice(-800)}`);
  const r = JSON.parse(out.trim().split('\n').pop()!) as { sent: number; captured: string[] };
  return { sent: r.sent, captured: r.captured.map((h) => Buffer.from(h, 'hex')) };
}
