// A/B upgrade on small synthetic edgelb disks (same layout and tools as the
// real image, tiny partitions): slot written and verified, kernel copied,
// counted boot entry, rollback ordering, refusal of a non-erofs image; and
// signatures: an unsigned, tampered or foreign-signed image is refused
// before a byte of the disk changes. The keys are throwaway ones made here
// with openssl, as the build makes its own.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ensureTools, HOST_TOOLS } from '../../src/image/exec.js';
import { readGpt } from '../../src/image/gpt.js';
import {
  bootEntry, entryFileName, entrySlot, kernelCmdline, LOADER_CONF, MIB, PART, partitionSpecs, placePartitions, type DiskLayout,
} from '../../src/image/layout.js';
import { Esp, listEntries, newerStamp, parseEntryName, promote, runningSlot, upgrade, upgradeMain } from '../../src/image/upgrade.js';
import { parseSums, signFile, signingKey, sumsText, SUMS_FILE, verifyImage, type SigningKey } from '../../src/image/sign.js';

const tmp = mkdtempSync(join(tmpdir(), 'edgelb-upgrade-test-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));
const SIZES = { espMiB: 8, rootSlotMiB: 4, cfgMiB: 1, stateMiB: 1 };
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });

/**
 * A small edgelb disk: slot A holds an erofs with `marker`, its kernel is
 * `kernel`; `built` is the erofs build time (as the build's mkfs.erofs -T).
 */
function makeDisk(name: string, marker: string, kernel: string, release: string, rootIsErofs = true, built?: number): { path: string; layout: DiskLayout } {
  const dir = join(tmp, name);
  mkdirSync(join(dir, 'root/etc'), { recursive: true });
  writeFileSync(join(dir, 'root/etc/marker'), marker);
  writeFileSync(join(dir, 'root/etc/filler'), Buffer.alloc(200_000, marker));
  const root = join(dir, 'root.img');
  if (rootIsErofs) sh('mkfs.erofs', ['--quiet', ...(built === undefined ? [] : ['-T', String(built)]), root, join(dir, 'root')]);
  else writeFileSync(root, Buffer.alloc(1_000_000, 7));
  const esp = join(dir, 'esp.img');
  sh('mkfs.vfat', ['-C', esp, String(SIZES.espMiB * 1024)]);
  sh('mmd', ['-i', esp, '::/EFI', '::/loader', '::/loader/entries', '::/edgelb', '::/edgelb/a', '::/edgelb/b']);
  writeFileSync(join(dir, 'vmlinuz'), kernel);
  writeFileSync(join(dir, 'initrd.img'), `initrd of ${kernel}`);
  writeFileSync(join(dir, 'release'), `${release}\n`);
  writeFileSync(join(dir, 'loader.conf'), LOADER_CONF);
  writeFileSync(join(dir, 'entry'), bootEntry({ slot: 'a', imageVersion: release, installStamp: '20260101000000' }));
  for (const [f, to] of [['vmlinuz', '/edgelb/a/vmlinuz'], ['initrd.img', '/edgelb/a/initrd.img'], ['release', '/edgelb/release'], ['loader.conf', '/loader/loader.conf'], ['entry', `/loader/entries/${entryFileName('a')}`]]) {
    sh('mcopy', ['-i', esp, join(dir, f as string), `::${to as string}`]);
  }
  const layout = placePartitions(partitionSpecs(SIZES));
  const path = join(dir, 'disk.raw');
  sh('truncate', ['-s', String(layout.totalBytes), path]);
  const args = ['-o'];
  for (const p of layout.partitions) args.push('-n', `${p.index}:${p.firstSector}:${p.lastSector}`, '-t', `${p.index}:${p.type}`, '-c', `${p.index}:${p.name}`);
  sh('sgdisk', [...args, path]);
  const fd = openSync(path, 'r+');
  for (const [part, img] of [[PART.esp, esp], [PART.root('a'), root]] as const) {
    const p = layout.partitions.find((x) => x.name === part);
    const data = readFileSync(img);
    if (p) writeSync(fd, data, 0, data.length, p.offsetBytes);
  }
  closeSync(fd);
  return { path, layout };
}

function readRange(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  const b = Buffer.alloc(length);
  readSync(fd, b, 0, length, offset);
  closeSync(fd);
  return b;
}

let key: SigningKey;
let otherKey: SigningKey;
/** The public key file upgrades trust. */
let trusted: string;

test.before(async () => {
  await ensureTools(HOST_TOOLS);
  key = signingKey(join(tmp, 'keys'), '');
  otherKey = signingKey(join(tmp, 'other-keys'), '');
  trusted = join(tmp, 'trusted.pem');
  writeFileSync(trusted, key.publicPem);
});

/** SHA256SUMS + .sig next to `file`, as the build writes them. */
async function sign(file: string, by: SigningKey = key): Promise<void> {
  const sums = join(dirname(file), SUMS_FILE);
  writeFileSync(sums, await sumsText([file]));
  signFile(by, sums);
}

test('layout: partitions back to back from 1 MiB, GPT reads back names and offsets', (t) => {
  const { path, layout } = makeDisk('layout', 'x', 'k', 'r');
  const gpt = readGpt(path);
  t.deepEqual(gpt.map((p) => p.name), ['edgelb-esp', 'edgelb-root-a', 'edgelb-root-b', 'edgelb-cfg', 'edgelb-state']);
  t.deepEqual(gpt.map((p) => p.offsetBytes), layout.partitions.map((p) => p.offsetBytes));
  t.is(gpt[0]?.offsetBytes, MIB);
  t.is(gpt[0]?.typeGuid, 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B', 'ESP type GUID');
  t.is(gpt[1]?.typeGuid, '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709', 'x86-64 root type GUID');
});

test('boot entry names, slots and counters', (t) => {
  t.is(entryFileName('b', 3), 'edgelb-b+3.conf');
  t.is(entrySlot('edgelb-b+2-1.conf'), 'b');
  t.is(entrySlot('other.conf'), null);
  t.deepEqual(parseEntryName('edgelb-a+0-3.conf'), { slot: 'a', triesLeft: 0 });
  t.deepEqual(parseEntryName('edgelb-a.conf'), { slot: 'a', triesLeft: null });
  t.regex(kernelCmdline('b'), /root=PARTLABEL=edgelb-root-b ro rootfstype=erofs/);
  t.is(runningSlot('quiet root=PARTLABEL=edgelb-root-b ro'), 'b');
  t.is(runningSlot('root=/dev/sda1'), null);
  t.is(newerStamp(new Date('2026-01-01T00:00:00Z'), [{ file: '', slot: 'a', triesLeft: null, version: '20270101000000' }]), '20270101000001');
});

for (const compressed of [false, true]) {
  test(`upgrade writes the inactive slot, kernel and a counted entry${compressed ? ' (from .zst)' : ''}`, async (t) => {
    const tag = compressed ? 'zst' : 'raw';
    const next = makeDisk(`new-${tag}`, 'NEW ROOT', 'NEW KERNEL', '2.0.0-test');
    const target = makeDisk(`old-${tag}`, 'OLD ROOT', 'OLD KERNEL', '1.0.0-test');
    let image = next.path;
    if (compressed) {
      sh('zstd', ['-q', '-f', next.path, '-o', `${next.path}.zst`]);
      image = `${next.path}.zst`;
    }
    await sign(image);
    const logs: string[] = [];
    const r = await upgrade({ image, disk: target.path, slot: 'b', now: new Date('2026-11-22T06:00:00Z'), log: (s) => logs.push(s), keys: trusted });
    t.is(r.signedBy, key.keyId);
    t.is(r.slot, 'b');
    t.is(r.version, '2.0.0-test');
    t.is(r.entry, 'edgelb-b+3.conf');

    const src = next.layout.partitions.find((p) => p.name === PART.root('a'));
    const dst = target.layout.partitions.find((p) => p.name === PART.root('b'));
    const oldA = target.layout.partitions.find((p) => p.name === PART.root('a'));
    if (!src || !dst || !oldA) return t.fail('layout');
    t.deepEqual(readRange(target.path, dst.offsetBytes, dst.sizeBytes), readRange(next.path, src.offsetBytes, src.sizeBytes), 'slot B holds the new root');
    t.true(readRange(target.path, oldA.offsetBytes, 600_000).includes('OLD ROOT'), 'slot A untouched');

    const esp = new Esp(target.path, MIB);
    t.is(esp.read('/edgelb/b/vmlinuz').toString(), 'NEW KERNEL');
    t.is(esp.read('/edgelb/a/vmlinuz').toString(), 'OLD KERNEL');
    const entry = esp.read('/loader/entries/edgelb-b+3.conf').toString();
    t.regex(entry, /^options root=PARTLABEL=edgelb-root-b /m);
    t.regex(entry, /^linux \/edgelb\/b\/vmlinuz$/m);
    t.regex(entry, /^title edgelb 2\.0\.0-test \(slot b\)$/m);
    // Newest version sorts first in systemd-boot: the new slot is the default.
    const entries = listEntries(esp).sort((a, b) => b.version.localeCompare(a.version));
    t.deepEqual(entries.map((e) => e.file), ['edgelb-b+3.conf', 'edgelb-a.conf']);

    // Manual rollback: slot A becomes the newest entry again.
    t.is(promote(target.path, 'a', new Date('2026-11-22T06:00:00Z')), 'edgelb-a.conf');
    const after = listEntries(esp).sort((a, b) => b.version.localeCompare(a.version));
    t.is(after[0]?.file, 'edgelb-a.conf');

    // Upgrading slot B again replaces its entry (no duplicates).
    await upgrade({ image, disk: target.path, slot: 'b', log: () => undefined, keys: trusted });
    t.deepEqual(listEntries(esp).map((e) => e.file).sort(), ['edgelb-a.conf', 'edgelb-b+3.conf']);
  });
}

test('an image without an erofs root is refused; the running slot stays intact', async (t) => {
  const bad = makeDisk('bad', 'x', 'BAD KERNEL', '6.6.6', false);
  const target = makeDisk('target-bad', 'OLD ROOT', 'OLD KERNEL', '1.0.0-test');
  const before = readFileSync(target.path);
  // Signed, even: a signature vouches for where an image came from, not that it boots.
  await sign(bad.path);
  await t.throwsAsync(upgrade({ image: bad.path, disk: target.path, slot: 'b', log: () => undefined, keys: trusted }), { message: /no erofs file system/ });
  const esp = new Esp(target.path, MIB);
  t.deepEqual(listEntries(esp).map((e) => e.file), ['edgelb-a.conf']);
  const a = target.layout.partitions.find((p) => p.name === PART.root('a'));
  if (a) t.deepEqual(readRange(target.path, a.offsetBytes, a.sizeBytes), before.subarray(a.offsetBytes, a.offsetBytes + a.sizeBytes));
});

test('a truncated image is reported as such', async (t) => {
  const next = makeDisk('trunc', 'NEW', 'K', '2.0');
  const target = makeDisk('target-trunc', 'OLD', 'K', '1.0');
  const cut = join(tmp, 'cut.raw');
  copyFileSync(next.path, cut);
  const rootA = next.layout.partitions.find((p) => p.name === PART.root('a'));
  if (!rootA) return t.fail('layout');
  spawnSync('truncate', ['-s', String(rootA.offsetBytes + 4096), cut]);
  await sign(cut);
  await t.throwsAsync(upgrade({ image: cut, disk: target.path, slot: 'b', log: () => undefined, keys: trusted }), { message: /truncated|ends at/ });
});

/** Upgrading must fail with `message` and leave every byte of the target disk as it was. */
async function refused(t: import('ava').ExecutionContext, image: string, target: string, message: RegExp, keys = trusted): Promise<void> {
  const before = readFileSync(target);
  await t.throwsAsync(upgrade({ image, disk: target, slot: 'b', log: () => undefined, keys }), { message });
  t.true(readFileSync(target).equals(before), 'the disk is unchanged, boot entries included');
}

test('signatures: unsigned, tampered, foreign-signed and edited-sums images are refused before anything is written', async (t) => {
  const next = makeDisk('sig-new', 'NEW ROOT', 'NEW KERNEL', '2.0.0-sig');
  const target = makeDisk('sig-target', 'OLD ROOT', 'OLD KERNEL', '1.0.0-sig');
  const sums = join(dirname(next.path), SUMS_FILE);

  await refused(t, next.path, target.path, /is not signed: no .*SHA256SUMS/);
  await sign(next.path);
  rmSync(`${sums}.sig`);
  await refused(t, next.path, target.path, /is not signed: no signature/);

  // Signed by a key the target does not trust.
  await sign(next.path, otherKey);
  await refused(t, next.path, target.path, /does not verify with any trusted key/);

  // Signed, then one byte of the root changed (what a corrupted download or an attacker does).
  await sign(next.path);
  const rootA = next.layout.partitions.find((p) => p.name === PART.root('a'));
  if (!rootA) return t.fail('layout');
  const fd = openSync(next.path, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, rootA.offsetBytes + 5000);
  writeSync(fd, Buffer.from([b[0]! ^ 0xff]), 0, 1, rootA.offsetBytes + 5000);
  closeSync(fd);
  await refused(t, next.path, target.path, /does not match its signed sha256/);
  // … and SHA256SUMS edited to match the changed file: now the signature fails.
  writeFileSync(sums, await sumsText([next.path]));
  await refused(t, next.path, target.path, /does not verify with any trusted key/);
  // A file the signed list does not name.
  await sign(next.path);
  const renamed = join(dirname(next.path), 'other.raw');
  copyFileSync(next.path, renamed);
  await refused(t, renamed, target.path, /not listed in the signed/);

  // The same image, signed again as built: accepted.
  const r = await upgrade({ image: next.path, disk: target.path, slot: 'b', log: () => undefined, keys: trusted });
  t.is(r.signedBy, key.keyId);
});

test('the signature is plain OpenSSL Ed25519 over SHA256SUMS, which sha256sum -c checks', async (t) => {
  const d = makeDisk('sig-openssl', 'X', 'K', '1');
  await sign(d.path);
  const sums = join(dirname(d.path), SUMS_FILE);
  const pub = join(tmp, 'openssl-pub.pem');
  writeFileSync(pub, key.publicPem);
  const v = spawnSync('openssl', ['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', sums, '-sigfile', `${sums}.sig`], { encoding: 'utf8' });
  t.is(v.status, 0, v.stderr);
  t.regex(v.stdout, /Signature Verified Successfully/);
  t.is(spawnSync('sha256sum', ['-c', '--quiet', SUMS_FILE], { cwd: dirname(d.path) }).status, 0);
  t.deepEqual([...parseSums(readFileSync(sums, 'utf8')).keys()], ['disk.raw']);
  t.throws(() => parseSums('nonsense\n'), { message: /SHA256SUMS:1: not a/ });
  const s = await verifyImage(d.path, { keys: trusted });
  t.is(s.keyId, key.keyId);
});

test('edgelb upgrade without trusted keys on this system refuses, naming where it looked', async (t) => {
  const d = makeDisk('sig-cli', 'X', 'K', '1');
  const target = makeDisk('sig-cli-target', 'OLD', 'K', '0');
  await sign(d.path);
  await t.throwsAsync(upgradeMain([d.path, '--disk', target.path, '--slot', 'b', '--keys', join(tmp, 'no-such-dir')], () => undefined), { message: /no trusted upgrade keys: .*no-such-dir does not exist/ });
  const lines: string[] = [];
  t.is(await upgradeMain([d.path, '--disk', target.path, '--slot', 'b', '--keys', trusted], (s) => lines.push(s)), 0);
  t.regex(lines.join('\n'), new RegExp(`signed by key ${key.keyId}`));
});

// Downgrades. Version from the image's ESP (/edgelb/release), build time from
// its root erofs superblock: both inside the signed file.
const BUILT = 1_790_000_000;

test('an older signed image is refused before anything is written, naming both versions; --allow-downgrade installs it', async (t) => {
  const old = makeDisk('dg-old', 'OLD ROOT', 'OLD KERNEL', '1.2.0+aaaa', true, BUILT + 500);
  const target = makeDisk('dg-target', 'RUNNING ROOT', 'RUNNING KERNEL', '1.3.0+bbbb', true, BUILT);
  await sign(old.path);
  await refused(t, old.path, target.path, /edgelb 1\.2\.0\+aaaa \(built .*\) is an older version than the installed edgelb 1\.3\.0\+bbbb \(built .*\) on slot a.*--allow-downgrade/);
  await t.throwsAsync(upgradeMain([old.path, '--disk', target.path, '--slot', 'b', '--keys', trusted], () => undefined), { message: /older version/ });
  // What the file is called (and so what SHA256SUMS lists) does not count.
  const renamed = join(dirname(old.path), 'edgelb-9.9.9.raw');
  copyFileSync(old.path, renamed);
  await sign(renamed);
  await refused(t, renamed, target.path, /edgelb 1\.2\.0\+aaaa .* is an older version/);

  await sign(old.path);
  const lines: string[] = [];
  t.is(await upgradeMain([old.path, '--disk', target.path, '--slot', 'b', '--keys', trusted, '--allow-downgrade'], (s) => lines.push(s)), 0);
  t.regex(lines.join('\n'), /edgelb 1\.2\.0\+aaaa .*installed in slot b/);
  t.is(new Esp(target.path, MIB).read('/edgelb/b/vmlinuz').toString(), 'OLD KERNEL');
});

test('builds of one release are ordered by build time: older refused, newer and the same build again installed', async (t) => {
  const target = makeDisk('dg-builds-target', 'RUNNING', 'K', '0.1.0+cccc', true, BUILT);
  const older = makeDisk('dg-builds-older', 'OLDER', 'K', '0.1.0+dddd', true, BUILT - 60);
  const variant = makeDisk('dg-builds-variant', 'VARIANT', 'K', '0.1.0+cccc+variant', true, BUILT);
  const same = makeDisk('dg-builds-same', 'SAME', 'K', '0.1.0+cccc', true, BUILT);
  const newer = makeDisk('dg-builds-newer', 'NEWER', 'K', '0.1.0+eeee', true, BUILT + 60);
  for (const d of [older, variant, same, newer]) await sign(d.path);
  await refused(t, older.path, target.path, /edgelb 0\.1\.0\+dddd \(built 2026-.*\) is not a newer build of the installed edgelb 0\.1\.0\+cccc/);
  await refused(t, variant.path, target.path, /is not a newer build/);
  const opts = { disk: target.path, slot: 'b' as const, log: () => undefined, keys: trusted };
  t.is((await upgrade({ image: same.path, ...opts })).version, '0.1.0+cccc', 'a reinstall of the running build');
  t.is((await upgrade({ image: newer.path, ...opts })).version, '0.1.0+eeee');
  // Compared with the slot that stays (a), not with what slot b held.
  t.is((await upgrade({ image: same.path, ...opts })).version, '0.1.0+cccc');
});

test('an upgrade over a slot whose release cannot be read is refused unless --allow-downgrade', async (t) => {
  const next = makeDisk('dg-unknown-new', 'NEW', 'K', '2.0.0', true, BUILT);
  const target = makeDisk('dg-unknown-target', 'x', 'K', '1.0.0', false);
  await sign(next.path);
  await refused(t, next.path, target.path, /cannot tell which release slot a holds.*--allow-downgrade/);
  t.is((await upgrade({ image: next.path, disk: target.path, slot: 'b', log: () => undefined, keys: trusted, allowDowngrade: true })).version, '2.0.0');
});
