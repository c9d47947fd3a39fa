// Boots a disk image under QEMU (single-threaded TCG, OVMF, serial console to a file) and
// watches the console for lines. Writes never reach the image: the disk is
// opened with snapshot=on unless `writable` is set.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, openSync, closeSync, readSync, fstatSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

/**
 * The emulated machine (no KVM on these hosts). One TCG thread takes turns
 * between the vCPUs unless `mttcg`: QEMU 7.2's multi-threaded TCG lets one
 * vCPU run stale translated code while the other rewrites it (the guest
 * kernel patches live code for alternatives and static keys, in early boot
 * and whenever a key flips, e.g. when XDP attaches), and the guest dies of
 * an int3 Oops or a fault in interrupt context: about one boot in 25 on a
 * busy host, never on hardware or KVM. Multi-threaded TCG boots ~30 % faster
 * on two host cores, so the timed boot (the image's boot-time budget, measured
 * that way since the start) keeps it, with its retry (boot-test.ts).
 */
export function tcgMachineArgs(mttcg = false): string[] {
  return ['-machine', 'q35', '-accel', `tcg,thread=${mttcg ? 'multi' : 'single'}`, '-cpu', 'max'];
}

/**
 * The kernel's own account of a panic on a serial console: the first report
 * line (BUG/Oops/general protection/…), where it was (RIP) and the panic
 * line, or null when the console shows no panic.
 */
export function guestPanicSummary(console: string): string | null {
  // eslint-disable-next-line no-control-regex
  const lines = console.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '').split('\n');
  const panic = lines.find((l) => /Kernel panic - not syncing/.test(l));
  if (!panic) return null;
  const strip = (l: string) => l.replace(/^\[\s*\d+\.\d+\]\s*/, '').trim();
  const cause = lines.find((l) => /\b(BUG:|Oops:|general protection fault|kernel BUG at|invalid opcode:|stack segment:|double fault)/.test(l));
  const rip = lines.find((l) => /\bRIP: [0-9a-f]{4}:/.test(l));
  return [cause, rip, panic].filter((l): l is string => l !== undefined).map(strip).join(' | ');
}

export interface Credential {
  name: string;
  value: string | Buffer;
}

export interface BootOptions {
  image: string;
  serialLog: string;
  credentials?: Credential[];
  memoryMiB?: number;
  cpus?: number;
  /** Keep writes in the image file (upgrade tests); default: snapshot. */
  writable?: boolean;
  /**
   * Let the guest reboot (boot counting). Each reset the guest asks for is a
   * power cycle: QEMU runs with -no-reboot, exits at the reset, and the same
   * disk, EFI variable store and serial log boot again in a new QEMU. QEMU
   * 7.2's TCG can hang for good at a warm reset (no firmware output for 13
   * min after "reboot: Restarting system", QEMU spinning, in single- and
   * multi-threaded TCG alike); a new process has no such state to hang on.
   */
  allowReboot?: boolean;
  /** Reuse an OVMF variable store (EFI variables survive between boots). */
  varsFile?: string;
  /** One host thread per vCPU: faster, but see tcgMachineArgs. */
  mttcg?: boolean;
}

export interface RunningVm {
  /** Resolves with QEMU's exit code once the guest is off for good (or stopped). */
  exited: Promise<number | null>;
  /** Guest resets that became power cycles (allowReboot). */
  readonly powerCycles: number;
  /** The running QEMU's process ID (the latest one, after power cycles). */
  readonly pid: number | undefined;
  stop(): Promise<void>;
}

/** SMBIOS type 11 string carrying a systemd credential (base64: any bytes). */
export function smbiosCredential(c: Credential): string {
  const b64 = Buffer.from(c.value).toString('base64');
  return `type=11,value=io.systemd.credential.binary:${c.name}=${b64}`;
}

/** A NIC option without a boot ROM (the firmware then starts no iPXE driver for it). */
export const NO_BOOT_ROM = 'romfile=';

export function qemuArgs(o: BootOptions, varsFile: string): string[] {
  const args = [
    ...tcgMachineArgs(o.mttcg), '-m', String(o.memoryMiB ?? 1024), '-smp', String(o.cpus ?? 2),
    // A headless server with a serial console, as edge nodes are racked: no
    // VGA, CD-ROM, floppy or parallel port for firmware and kernel to drive.
    '-nodefaults',
    // append=on: the boots of one machine (allowReboot) share one console log.
    '-display', 'none', '-monitor', 'none', '-chardev', `file,id=console0,path=${o.serialLog},append=on`, '-serial', 'chardev:console0',
    '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`,
    '-drive', `if=pflash,format=raw,unit=1,file=${varsFile}`,
    '-drive', `file=${o.image},format=raw,if=virtio${o.writable ? '' : ',snapshot=on'}`,
    // One NIC the config can name as its uplink, isolated from everything
    // (restrict=on: no traffic leaves QEMU). romfile=: no iPXE boot ROM —
    // the VM never boots from the network, and the firmware spent ~0.7 s
    // of the measured boot starting that ROM's driver under emulation.
    '-netdev', 'user,id=n0,restrict=on', '-device', `virtio-net-pci,netdev=n0,addr=0x5,${NO_BOOT_ROM}`,
  ];
  // A guest reset ends this QEMU; bootVm boots again when reboots are allowed.
  args.push('-no-reboot');
  for (const c of o.credentials ?? []) args.push('-smbios', smbiosCredential(c));
  return args;
}

/**
 * Whether a QEMU run with -no-reboot ended in a reset the guest asked for (or
 * caused: a panic's reboot, a triple fault), so that the machine boots again:
 * QEMU exited by itself with status 0 and the guest did not power off.
 */
export function guestReset(exitCode: number | null, stopped: boolean, consoleOfRun: string): boolean {
  return !stopped && exitCode === 0 && !/reboot: Power down/.test(consoleOfRun);
}

export function bootVm(o: BootOptions): RunningVm {
  for (const f of [OVMF_CODE, OVMF_VARS]) if (!existsSync(f)) throw new Error(`${f} missing (apt-get install ovmf)`);
  let tmp: string | null = null;
  let vars = o.varsFile;
  if (!vars) {
    tmp = mkdtempSync(join(tmpdir(), 'edgelb-vm-'));
    vars = join(tmp, 'OVMF_VARS.fd');
    copyFileSync(OVMF_VARS, vars);
  }
  const args = qemuArgs(o, vars);
  writeFileSync(o.serialLog, '');
  let child: ChildProcess;
  let stopped = false;
  let powerCycles = 0;
  let resolveExited: (code: number | null) => void = () => undefined;
  const exited = new Promise<number | null>((resolve) => { resolveExited = resolve; });
  const finish = (code: number | null) => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    resolveExited(code);
  };
  const start = () => {
    const logStart = statSync(o.serialLog).size;
    const c = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    let stderr = '';
    c.stderr?.on('data', (b: Buffer) => { stderr += b.toString(); });
    c.on('exit', (code) => {
      if (code && stderr.trim()) process.stderr.write(`qemu: ${stderr.trim()}\n`);
      if (o.allowReboot && guestReset(code, stopped, readFrom(o.serialLog, logStart).text)) {
        powerCycles++;
        start();
      } else finish(code);
    });
    c.on('error', (e) => {
      process.stderr.write(`qemu: ${e.message}\n`);
      finish(-1);
    });
  };
  start();
  return {
    exited,
    get powerCycles() { return powerCycles; },
    get pid() { return child.pid; },
    async stop() {
      stopped = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const c = child;
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * What `file` holds from byte `offset` to its end now, and the offset after
 * it (to read on from). A file not there (yet) holds nothing.
 */
export function readFrom(file: string, offset: number): { text: string; end: number } {
  if (!existsSync(file)) return { text: '', end: offset };
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size <= offset) return { text: '', end: offset };
    const buf = Buffer.alloc(size - offset);
    const n = readSync(fd, buf, 0, buf.length, offset);
    return { text: buf.toString('utf8', 0, n), end: offset + n };
  } finally {
    closeSync(fd);
  }
}

/** Tails a file that another process appends to. */
export class LogTail {
  private pos = 0;
  private text = '';
  private partial = '';
  private readonly t0 = Date.now();
  /** Console lines with the seconds since the tail started when they were seen. */
  readonly timeline: string[] = [];
  constructor(private readonly file: string) {}

  /** Everything read so far. */
  get all(): string {
    return this.text;
  }

  poll(): string {
    const { text: s, end } = readFrom(this.file, this.pos);
    this.pos = end;
    if (!s) return '';
    this.text += s;
    const parts = (this.partial + s).split('\n');
    this.partial = parts.pop() ?? '';
    const t = ((Date.now() - this.t0) / 1000).toFixed(1).padStart(6);
    // eslint-disable-next-line no-control-regex
    for (const l of parts) this.timeline.push(`${t} ${l.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '')}`);
    return s;
  }
}

export interface WaitResult {
  match: RegExpMatchArray | null;
  elapsedMs: number;
}

/**
 * Waits until `re` matches the console text (from the start), QEMU exits,
 * or the deadline passes. Polls every 200 ms.
 */
export async function waitForConsole(tail: LogTail, re: RegExp, timeoutMs: number, vm?: RunningVm): Promise<WaitResult> {
  const t0 = Date.now();
  let exited = false;
  void vm?.exited.then(() => { exited = true; });
  for (;;) {
    tail.poll();
    const m = tail.all.match(re);
    if (m) return { match: m, elapsedMs: Date.now() - t0 };
    if (exited || Date.now() - t0 > timeoutMs) return { match: null, elapsedMs: Date.now() - t0 };
    await new Promise((r) => setTimeout(r, 200));
  }
}
