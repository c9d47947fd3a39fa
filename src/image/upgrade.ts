// A/B upgrade of an edgelb appliance disk (the running system's, or an image
// file for tests):
//
//   upgrade IMAGE   IMAGE is a built edgelb.raw or edgelb.raw.zst, signed:
//                   SHA256SUMS and SHA256SUMS.sig from the build next to it,
//                   the signature made by a key this system trusts
//                   (/usr/lib/edgelb/upgrade-keys, see sign.ts), the file's
//                   sha256 the one listed. Checked before anything is
//                   written; the bytes written are hashed again on the way
//                   and must still match before the new slot gets a boot
//                   entry. Its root
//                   slot A is written into the inactive slot of the disk and
//                   its kernel+initrd onto the ESP; a boot entry with a try
//                   counter ("edgelb-b+3.conf") makes the new slot the default
//                   for the next boot. systemd-boot counts the tries down;
//                   edgelb-boot-check.service + systemd-bless-boot drop the
//                   counter once a boot reaches boot-complete.target. After
//                   3 failed tries the entry sorts behind the old slot, which
//                   boots again: the automatic rollback.
//                   Not an older image than the slot that stays (the
//                   running one): version from the image's ESP, build time
//                   from its root's erofs superblock, both inside the signed
//                   file (release.ts); --allow-downgrade for a deliberate
//                   rollback to an older image.
//   rollback        makes the other slot the default again (manual rollback).
//   status          lists the boot entries.
//
// The ESP is changed with mtools straight on the partition, as during the
// build: no FAT mount needed.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, fsyncSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { GPT_HEAD_BYTES, parseGpt, readGpt, type GptPartition } from './gpt.js';
import { bootEntry, entryFileName, entrySlot, espSlotDir, installStamp, PART, type Slot } from './layout.js';
import { describeRelease, upgradeVerdict, type Release } from './release.js';
import { TRUSTED_KEYS_DIR, verifyImage } from './sign.js';

const EROFS_MAGIC = 0xe0f5e1e2;
const EROFS_SB_OFFSET = 1024;
/** erofs_super_block.build_time: u64 seconds, set by the build's mkfs.erofs -T. */
const EROFS_SB_BUILD_TIME = 24;
/** The root's first bytes, up to the end of the erofs superblock (128 bytes). */
const ROOT_HEAD_BYTES = EROFS_SB_OFFSET + 128;
const DEFAULT_TRIES = 3;

function mtools(cmd: string, args: string[], input?: Buffer): string {
  const r = spawnSync(cmd, args, { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' }, input, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message} (is mtools installed?)`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

/** An ESP addressed inside a disk (file or device) by byte offset. */
export class Esp {
  constructor(private readonly disk: string, private readonly offset: number) {}
  private get img(): string {
    return `${this.disk}@@${this.offset}`;
  }
  list(dir: string): string[] {
    const out = mtools('mdir', ['-b', '-i', this.img, `::${dir}`]);
    return out.split('\n').map((l) => l.trim()).filter(Boolean).map((l) => basename(l));
  }
  read(path: string): Buffer {
    const r = spawnSync('mtype', ['-i', this.img, `::${path}`], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' }, maxBuffer: 256 * 1024 * 1024 });
    if (r.status !== 0) throw new Error(`mtype ::${path} failed: ${r.stderr.toString().trim()}`);
    return r.stdout;
  }
  /** Copies a local file in, replacing what is there. */
  put(local: string, path: string): void {
    mtools('mcopy', ['-o', '-i', this.img, local, `::${path}`]);
  }
  get(path: string, local: string): void {
    mtools('mcopy', ['-o', '-n', '-i', this.img, `::${path}`, local]);
  }
  exists(path: string): boolean {
    return spawnSync('mdir', ['-b', '-i', this.img, `::${path}`], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' }, stdio: 'ignore' }).status === 0;
  }
  mkdir(path: string): void {
    if (!this.exists(path)) mtools('mmd', ['-i', this.img, `::${path}`]);
  }
  remove(path: string): void {
    mtools('mdel', ['-i', this.img, `::${path}`]);
  }
}

export interface EntryInfo {
  file: string;
  slot: Slot;
  /** Tries left (null: not counted, i.e. known good). */
  triesLeft: number | null;
  version: string;
}

export function parseEntryName(file: string): { slot: Slot; triesLeft: number | null } | null {
  const slot = entrySlot(file);
  if (!slot) return null;
  const m = /\+(\d+)(?:-\d+)?\.conf$/.exec(file);
  return { slot, triesLeft: m?.[1] !== undefined ? Number(m[1]) : null };
}

/** An install stamp newer than every entry's, so the entry written with it sorts first. */
export function newerStamp(now: Date, entries: EntryInfo[]): string {
  const n = Math.max(Number(installStamp(now)), ...entries.map((e) => (/^\d+$/.test(e.version) ? Number(e.version) + 1 : 0)));
  return String(n);
}

export function listEntries(esp: Esp): EntryInfo[] {
  const out: EntryInfo[] = [];
  for (const file of esp.list('/loader/entries')) {
    const p = parseEntryName(file);
    if (!p) continue;
    const text = esp.read(`/loader/entries/${file}`).toString();
    out.push({ ...p, file, version: /^version\s+(\S+)/m.exec(text)?.[1] ?? '' });
  }
  return out;
}

/** The slot the running system booted from (root=PARTLABEL=edgelb-root-X), if any. */
export function runningSlot(cmdline = existsSync('/proc/cmdline') ? readFileSync('/proc/cmdline', 'utf8') : ''): Slot | null {
  const m = /root=PARTLABEL=edgelb-root-([ab])\b/.exec(cmdline);
  return m ? (m[1] as Slot) : null;
}

export const otherSlot = (s: Slot): Slot => (s === 'a' ? 'b' : 'a');

function partition(parts: GptPartition[], name: string, what: string): GptPartition {
  const p = parts.find((x) => x.name === name);
  if (!p) throw new Error(`${what}: no partition named ${name} (found: ${parts.map((x) => x.name).join(', ') || 'none'}) — not an edgelb disk?`);
  return p;
}

/**
 * Streams an image (raw, or .zst through `zstd -dc`) front to back, to its
 * end; `file` sees every byte of the file itself (for its sha256).
 */
async function* imageChunks(image: string, file: Hash): AsyncGenerator<Buffer> {
  const input = createReadStream(image, { highWaterMark: 4 * 1024 * 1024 });
  if (!image.endsWith('.zst')) {
    for await (const c of input) {
      file.update(c as Buffer);
      yield c as Buffer;
    }
    return;
  }
  const z = spawn('zstd', ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  let readErr: Error | null = null;
  z.stderr.on('data', (b: Buffer) => { err += b.toString(); });
  z.stdin.on('error', () => undefined);
  input.on('error', (e) => {
    readErr = e;
    z.stdin.destroy();
  });
  input.on('data', (c) => file.update(c as Buffer));
  input.pipe(z.stdin);
  const exited = new Promise<number | null>((r) => z.on('close', (code) => r(code)));
  let drained = false;
  try {
    for await (const c of z.stdout) yield c as Buffer;
    drained = true;
  } finally {
    // Only a reader that stopped early (an error) leaves zstd running.
    if (!drained) {
      input.destroy();
      z.kill();
    }
  }
  const code = await exited;
  if (readErr) throw new Error(`${image}: ${(readErr as Error).message}`);
  if (code !== 0) throw new Error(`zstd -dc ${image} failed: ${err.trim() || `exit ${code}`}`);
}

interface Region {
  offset: number;
  length: number;
  sink: (chunk: Buffer, at: number) => void;
}

/**
 * Reads the whole image once, handing each region's bytes to its sink
 * (regions sorted, not overlapping) and every byte of the file to `file`.
 */
async function readRegions(image: string, file: Hash, head: (b: Buffer) => Region[]): Promise<void> {
  let pos = 0;
  let headBuf: Buffer[] = [];
  let regions: Region[] | null = null;
  for await (const chunk of imageChunks(image, file)) {
    const start = pos;
    pos += chunk.length;
    if (!regions) {
      headBuf.push(chunk);
      if (pos < GPT_HEAD_BYTES) continue;
      regions = head(Buffer.concat(headBuf));
      headBuf = [];
    }
    for (const r of regions) {
      const a = Math.max(start, r.offset);
      const b = Math.min(pos, r.offset + r.length);
      if (a < b) r.sink(chunk.subarray(a - start, b - start), a - r.offset);
    }
  }
  if (!regions) throw new Error(`${image}: shorter than a GPT`);
  const last = regions.at(-1);
  if (last && pos < last.offset + last.length) throw new Error(`${image}: ends at ${pos} bytes, inside partition data (truncated download?)`);
}

export interface UpgradeOptions {
  image: string;
  /** Whole disk (device or image file) holding the edgelb partitions. */
  disk: string;
  /** Slot to write; default: the one not running. */
  slot?: Slot;
  tries?: number;
  now?: Date;
  log?: (s: string) => void;
  /** Public keys the image must be signed with: a directory of PEM files, or one file. */
  keys: string;
  /** SHA256SUMS (default: next to the image) and its signature (default: SUMS.sig). */
  sums?: string;
  sig?: string;
  /**
   * Install an image that is not newer than the slot that stays (or when
   * that slot's release cannot be read): an intended rollback.
   */
  allowDowngrade?: boolean;
}

export interface UpgradeResult {
  slot: Slot;
  version: string;
  entry: string;
  rootBytes: number;
  sha256: string;
  /** Id of the key that signed the image. */
  signedBy: string;
}

/**
 * The release in `slot` of the disk: the version its boot entry's title
 * names (written from the signed image's /edgelb/release when it was
 * installed) and the build time in its root's erofs superblock. A string
 * says why it cannot be told.
 */
function installedRelease(fd: number, esp: Esp, parts: GptPartition[], slot: Slot): Release | string {
  const entry = listEntries(esp).find((e) => e.slot === slot);
  if (!entry) return `no boot entry for slot ${slot}`;
  const version = /^title edgelb (\S+) \(slot [ab]\)$/m.exec(esp.read(`/loader/entries/${entry.file}`).toString())?.[1];
  if (!version) return `${entry.file} names no edgelb version in its title`;
  const sb = Buffer.alloc(ROOT_HEAD_BYTES - EROFS_SB_OFFSET);
  readSync(fd, sb, 0, sb.length, partition(parts, PART.root(slot), 'disk').offsetBytes + EROFS_SB_OFFSET);
  if (sb.readUInt32LE(0) !== EROFS_MAGIC) return `its root partition holds no erofs file system`;
  return { version, built: Number(sb.readBigUInt64LE(EROFS_SB_BUILD_TIME)) };
}

/** Throws unless `image` may replace what `stays` holds (or the operator allowed a downgrade). */
function checkDowngrade(o: UpgradeOptions, image: Release, installed: Release | string, stays: Slot, log: (s: string) => void): void {
  const refusal = typeof installed === 'string'
    ? `cannot tell which release slot ${stays} holds (${installed}), so not whether ${describeRelease(image)} is older`
    : ((v) => (v.allowed ? null : `${v.why} on slot ${stays}`))(upgradeVerdict(installed, image));
  if (refusal === null) return;
  if (!o.allowDowngrade) throw new Error(`${basename(o.image)}: refusing a downgrade: ${refusal}; nothing was written (pass --allow-downgrade for an intended rollback)`);
  log(`--allow-downgrade: installing although ${refusal}`);
}

export async function upgrade(o: UpgradeOptions): Promise<UpgradeResult> {
  const log = o.log ?? ((s: string) => process.stderr.write(`edgelb-upgrade: ${s}\n`));
  const running = runningSlot();
  const target = o.slot ?? (running ? otherSlot(running) : null);
  if (!target) throw new Error('cannot tell which slot is running (no root=PARTLABEL=edgelb-root-X on /proc/cmdline); pass --slot a|b');
  if (running === target && o.slot && o.disk === defaultDisk()) throw new Error(`slot ${target} is the running root; write the other one`);
  const diskParts = readGpt(o.disk);
  const dst = partition(diskParts, PART.root(target), o.disk);
  const espPart = partition(diskParts, PART.esp, o.disk);
  const esp = new Esp(o.disk, espPart.offsetBytes);
  // Unsigned, signed by a key we do not trust, or changed since: refused
  // here, before anything on the disk changes.
  const signed = await verifyImage(o.image, { keys: o.keys, sums: o.sums, sig: o.sig });
  log(`${basename(o.image)}: signature good (key ${signed.keyId}), sha256 ${signed.sha256.slice(0, 12)} as signed`);

  const tmp = mkdtempSync(join(tmpdir(), 'edgelb-upgrade-'));
  const fd = openSync(o.disk, 'r+');
  try {
    const stays = otherSlot(target);
    const installed = installedRelease(fd, esp, diskParts, stays);
    const espTmp = join(tmp, 'esp.img');
    const espFd = openSync(espTmp, 'w');
    const hash = createHash('sha256');
    const whole = createHash('sha256');
    let rootBytes = 0;
    let version = '';
    let rootHead: Buffer[] = [];
    let rootHeadBytes = 0;
    /**
     * Runs once the image's ESP and the head of its root are read, before a
     * byte of the disk changes: erofs, and not a downgrade. Bytes the stream
     * swapped in after the signature check are caught by the whole-file hash
     * below, which gates the boot entry.
     */
    const checkRoot = (head: Buffer, srcRootBytes: number): void => {
      const magic = head.readUInt32LE(EROFS_SB_OFFSET);
      if (magic !== EROFS_MAGIC) throw new Error(`${o.image}: root slot A holds no erofs file system (magic ${magic.toString(16)})`);
      version = new Esp(espTmp, 0).read('/edgelb/release').toString().trim() || 'unknown';
      checkDowngrade(o, { version, built: Number(head.readBigUInt64LE(EROFS_SB_OFFSET + EROFS_SB_BUILD_TIME)) }, installed, stays, log);
      // Remove the target slot's entries first: from here on it is not
      // bootable until the new entry is written last.
      for (const e of listEntries(esp).filter((x) => x.slot === target)) {
        log(`removing boot entry ${e.file}`);
        esp.remove(`/loader/entries/${e.file}`);
      }
      log(`writing root to slot ${target} (${dst.name}, ${Math.round(srcRootBytes / 1048576)} MiB)`);
    };
    log(`reading ${o.image}`);
    try {
      await readRegions(o.image, whole, (head) => {
        const parts = parseGpt(head, o.image);
        const srcEsp = partition(parts, PART.esp, o.image);
        const srcRoot = partition(parts, PART.root('a'), o.image);
        if (srcRoot.sizeBytes > dst.sizeBytes) throw new Error(`${o.image}: root slot is ${srcRoot.sizeBytes} bytes, the disk's slot ${target} only ${dst.sizeBytes}`);
        // The version is on the ESP: it must be read before the root is written.
        if (srcEsp.offsetBytes + srcEsp.sizeBytes > srcRoot.offsetBytes) throw new Error(`${o.image}: the ESP does not come before root slot A — not an edgelb image`);
        const writeRoot = (c: Buffer, at: number): void => {
          writeSync(fd, c, 0, c.length, dst.offsetBytes + at);
          hash.update(c);
          rootBytes += c.length;
        };
        return [
          { offset: srcEsp.offsetBytes, length: srcEsp.sizeBytes, sink: (c, at) => { writeSync(espFd, c, 0, c.length, at); } },
          {
            offset: srcRoot.offsetBytes, length: srcRoot.sizeBytes,
            sink: (c, at) => {
              if (rootHeadBytes >= ROOT_HEAD_BYTES) return writeRoot(c, at);
              // Held back until the superblock is in: nothing is written before checkRoot.
              rootHead.push(c);
              rootHeadBytes += c.length;
              if (rootHeadBytes < ROOT_HEAD_BYTES) return;
              const head = Buffer.concat(rootHead);
              rootHead = [];
              checkRoot(head, srcRoot.sizeBytes);
              writeRoot(head, 0);
            },
          },
        ];
      });
    } finally {
      closeSync(espFd);
    }
    if (rootHeadBytes < ROOT_HEAD_BYTES) throw new Error(`${o.image}: root slot A is shorter than an erofs superblock`);
    fsyncSync(fd);
    // The file as read for writing must still be the one whose signature was
    // checked (not replaced or changed in between); otherwise the new slot
    // gets no boot entry. This also vouches for the version and build time
    // the downgrade check read from the stream.
    if (whole.digest('hex') !== signed.sha256) throw new Error(`${o.image} changed while it was being written; slot ${target} has no boot entry, the running slot stays the default`);
    const sha256 = hash.digest('hex');
    // Read back what landed on the disk.
    const back = createHash('sha256');
    const buf = Buffer.alloc(4 * 1024 * 1024);
    for (let done = 0; done < rootBytes;) {
      const n = readSync(fd, buf, 0, Math.min(buf.length, rootBytes - done), dst.offsetBytes + done);
      if (n <= 0) throw new Error(`${o.disk}: short read verifying slot ${target}`);
      back.update(buf.subarray(0, n));
      done += n;
    }
    if (back.digest('hex') !== sha256) throw new Error(`slot ${target} does not read back what was written; the old entry was removed, the running slot stays the default`);
    log(`slot ${target} written and verified (sha256 ${sha256.slice(0, 12)})`);

    const srcEsp = new Esp(espTmp, 0);
    const dir = espSlotDir(target);
    esp.mkdir('/edgelb');
    esp.mkdir(dir);
    for (const f of ['vmlinuz', 'initrd.img']) {
      srcEsp.get(`${espSlotDir('a')}/${f}`, join(tmp, f));
      esp.put(join(tmp, f), `${dir}/${f}`);
    }
    const tries = o.tries ?? DEFAULT_TRIES;
    const entry = entryFileName(target, tries);
    const stamp = newerStamp(o.now ?? new Date(), listEntries(esp));
    writeFileSync(join(tmp, 'entry.conf'), bootEntry({ slot: target, imageVersion: version, installStamp: stamp }));
    esp.put(join(tmp, 'entry.conf'), `/loader/entries/${entry}`);
    log(`boot entry ${entry}: edgelb ${version} on slot ${target} is the default from the next boot; ${tries} tries, then slot ${otherSlot(target)} again`);
    return { slot: target, version, entry, rootBytes, sha256, signedBy: signed.keyId };
  } finally {
    closeSync(fd);
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Makes `slot`'s entry the newest (and counted as good): the manual rollback. */
export function promote(disk: string, slot: Slot, now = new Date()): string {
  const esp = new Esp(disk, partition(readGpt(disk), PART.esp, disk).offsetBytes);
  const entries = listEntries(esp);
  const e = entries.find((x) => x.slot === slot);
  if (!e) throw new Error(`slot ${slot} has no boot entry (never installed?)`);
  const text = esp.read(`/loader/entries/${e.file}`).toString().replace(/^version\s+\S+/m, `version ${newerStamp(now, entries)}`);
  const tmp = mkdtempSync(join(tmpdir(), 'edgelb-upgrade-'));
  try {
    writeFileSync(join(tmp, 'entry.conf'), text);
    esp.put(join(tmp, 'entry.conf'), `/loader/entries/${entryFileName(slot)}`);
    if (e.file !== entryFileName(slot)) esp.remove(`/loader/entries/${e.file}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return entryFileName(slot);
}

/** The disk holding the running system's ESP. */
export function defaultDisk(): string | undefined {
  const link = '/dev/disk/by-partlabel/edgelb-esp';
  if (!existsSync(link)) return undefined;
  const r = spawnSync('lsblk', ['-no', 'PKNAME', link], { encoding: 'utf8' });
  const name = r.stdout.split('\n')[0]?.trim();
  return name ? `/dev/${name}` : undefined;
}

const USAGE = `usage: edgelb-upgrade IMAGE [--disk DISK] [--slot a|b] [--tries N] [--keys DIR|FILE] [--sums FILE] [--sig FILE] [--allow-downgrade]
       edgelb-upgrade rollback [--disk DISK]
       edgelb-upgrade status [--disk DISK]

IMAGE must come with the SHA256SUMS and SHA256SUMS.sig that npm run image
wrote next to it (or --sums/--sig), signed by a key in --keys (default
${TRUSTED_KEYS_DIR}, the keys the running image trusts). An image older
than the running one (or the other slot's, with --slot) is refused unless
--allow-downgrade.`;

export async function upgradeMain(argv: string[], out: (s: string) => void = (s) => { process.stdout.write(`${s}\n`); }): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      disk: { type: 'string' }, slot: { type: 'string' }, tries: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      keys: { type: 'string' }, sums: { type: 'string' }, sig: { type: 'string' }, 'allow-downgrade': { type: 'boolean' },
    },
  });
  if (values.help || positionals.length !== 1) {
    out(USAGE);
    return values.help ? 0 : 2;
  }
  const disk = values.disk ?? defaultDisk();
  if (!disk) throw new Error('no edgelb disk found (no /dev/disk/by-partlabel/edgelb-esp); pass --disk');
  if (values.slot !== undefined && values.slot !== 'a' && values.slot !== 'b') throw new Error(`--slot must be a or b (got ${values.slot})`);
  const slot = values.slot as Slot | undefined;
  // The ESP is rewritten underneath the kernel's FAT driver otherwise.
  if (disk === defaultDisk()) spawnSync('umount', ['/efi'], { stdio: 'ignore' });
  const cmd = positionals[0] ?? '';
  if (cmd === 'status') {
    const esp = new Esp(disk, partition(readGpt(disk), PART.esp, disk).offsetBytes);
    const running = runningSlot();
    for (const e of listEntries(esp).sort((a, b) => b.version.localeCompare(a.version))) {
      out(`${e.file}\tslot ${e.slot}\tinstalled ${e.version}\t${e.triesLeft === null ? 'good' : e.triesLeft === 0 ? 'BAD (tries used up)' : `${e.triesLeft} tries left`}${running === e.slot ? '\t(running)' : ''}`);
    }
    return 0;
  }
  if (cmd === 'rollback') {
    const running = runningSlot();
    const to = slot ?? (running ? otherSlot(running) : null);
    if (!to) throw new Error('cannot tell which slot is running; pass --slot with the slot to go back to');
    out(`edgelb-upgrade: ${promote(disk, to)} is the default from the next boot`);
    return 0;
  }
  const tries = values.tries === undefined ? undefined : Number(values.tries);
  if (tries !== undefined && !(Number.isInteger(tries) && tries >= 1 && tries <= 9)) throw new Error(`--tries must be 1-9 (got ${values.tries})`);
  const r = await upgrade({ image: cmd, disk, slot, tries, keys: values.keys ?? TRUSTED_KEYS_DIR, sums: values.sums, sig: values.sig, allowDowngrade: values['allow-downgrade'] });
  out(`edgelb-upgrade: edgelb ${r.version} (signed by key ${r.signedBy}) installed in slot ${r.slot}; reboot to switch (entry ${r.entry})`);
  return 0;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  upgradeMain(process.argv.slice(2)).then((c) => process.exit(c), (e: unknown) => {
    process.stderr.write(`edgelb-upgrade: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
