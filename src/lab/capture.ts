// Packet captures in lab namespaces: tcpdump started in the background
// (bounded by a hard timeout), ready once it says "listening", stopped with
// SIGINT; the packets are then counted or printed from the pcap file.
// --immediate-mode matters: without it libpcap hands packets over in
// blocks that retire after a timeout, and a block still open at SIGINT is
// lost — a short capture would count nothing. -Z root: tcpdump would
// otherwise drop to user tcpdump before opening the output file.
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { run } from './netns.js';

export interface Capture {
  ns: string;
  ifname: string;
  filter: string;
  file: string;
  /** Stops tcpdump (idempotent) and returns the number of packets captured. */
  stop(): Promise<number>;
  /** The captured packets as tcpdump prints them (after stop). */
  text(opts?: { verbose?: boolean; max?: number; ether?: boolean }): Promise<string>;
  remove(): void;
}

export async function startCapture(ns: string, ifname: string, filter: string, file: string, opts: { maxSeconds?: number; snaplen?: number } = {}): Promise<Capture> {
  const argv = ['netns', 'exec', ns, 'timeout', '-s', 'INT', String(opts.maxSeconds ?? 120), 'tcpdump', '-Z', 'root', '--immediate-mode', '-i', ifname, '-nn', '-U', '-s', String(opts.snaplen ?? 256), '-w', file, filter];
  const child: ChildProcess = spawn('ip', argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump on ${ns}/${ifname} did not start: ${stderr.trim()}`)), 5000);
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (/listening on/.test(stderr)) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`tcpdump on ${ns}/${ifname} exited: ${stderr.trim()}`));
    });
  });
  let stopped = false;
  const cap: Capture = {
    ns,
    ifname,
    filter,
    file,
    async stop() {
      if (!stopped) {
        stopped = true;
        if (child.exitCode !== null && child.exitCode !== 0) throw new Error(`tcpdump on ${ns}/${ifname} failed (exit ${child.exitCode}): ${stderr.trim()}`);
        // Give packets in flight a moment to be written.
        await new Promise((r) => setTimeout(r, 200));
        child.kill('SIGINT');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      const out = await run(['tcpdump', '-nn', '-r', file], { timeoutMs: 15000 }).catch(() => ({ stdout: '' }));
      return out.stdout.split('\n').filter((l) => l.trim() !== '').length;
    },
    async text(o = {}) {
      const flags = ['-nn', ...(o.verbose ? ['-v'] : []), ...(o.ether ? ['-e'] : []), ...(o.max ? ['-c', String(o.max)] : [])];
      const out = await run(['tcpdump', ...flags, '-r', file], { timeoutMs: 15000 }).catch((e: Error) => ({ stdout: e.message }));
      return out.stdout;
    },
    remove() {
      rmSync(file, { force: true });
    },
  };
  return cap;
}
