// Running the shell tools the image build drives: with progress on stderr,
// and a clear error naming the command when one fails.
import { spawn, spawnSync } from 'node:child_process';

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Show the tool's own output (long steps); otherwise it is captured and shown on failure. */
  inherit?: boolean;
  input?: string | Buffer;
}

export function progress(msg: string): void {
  process.stderr.write(`[image] ${msg}\n`);
}

export async function run(cmd: string, args: string[], o: RunOptions = {}): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: o.cwd,
      env: o.env ?? process.env,
      stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', o.inherit ? 'inherit' : 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => {
      out.push(b);
      if (o.inherit) process.stderr.write(b);
    });
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    if (o.input !== undefined) child.stdin?.end(o.input);
    child.on('error', (e) => reject(new Error(`${cmd}: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) return resolve(Buffer.concat(out).toString());
      const tail = Buffer.concat([...out, ...err]).toString().trim().split('\n').slice(-20).join('\n');
      reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`})${tail ? `:\n${tail}` : ''}`));
    });
  });
}

export function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Debian package per host command the build and the boot test need. */
export const HOST_TOOLS: Record<string, string> = {
  mmdebstrap: 'mmdebstrap',
  'mkfs.erofs': 'erofs-utils',
  'mkfs.vfat': 'dosfstools',
  mcopy: 'mtools',
  sgdisk: 'gdisk',
  'mkfs.ext4': 'e2fsprogs',
  zstd: 'zstd',
  bmaptool: 'bmap-tools',
  // Signs SHA256SUMS (sign.ts).
  openssl: 'openssl',
};

export const BOOT_TEST_TOOLS: Record<string, string> = {
  'qemu-system-x86_64': 'qemu-system-x86',
  ovmf: 'ovmf',
};

let aptUpdated = false;

/** Installs the Debian packages behind missing commands (root only). */
export async function ensureTools(tools: Record<string, string>, fileChecks: Record<string, string> = {}): Promise<void> {
  const missing = new Set<string>();
  for (const [cmd, pkg] of Object.entries(tools)) {
    const path = fileChecks[cmd];
    const ok = path ? spawnSync('test', ['-e', path]).status === 0 : have(cmd);
    if (!ok) missing.add(pkg);
  }
  if (missing.size === 0) return;
  const pkgs = [...missing];
  if (process.getuid?.() !== 0) throw new Error(`missing host packages ${pkgs.join(' ')}; install them as root (apt-get install ${pkgs.join(' ')})`);
  progress(`installing host packages: ${pkgs.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    await run('apt-get', ['update', '-qq'], { env });
    aptUpdated = true;
  }
  await run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { env });
}
