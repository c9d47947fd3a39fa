// The initrd's machine-id script (images/initramfs/edgelb-machine-id), run
// by the built initrd's own shell and tools (klibc's sh, mount, mv) against
// an ext4 file system on a loop device standing in for the state partition,
// in a private mount namespace: a new ID on an empty partition, the same one
// on the next boot, a damaged file replaced, and no state partition means a
// transient ID and a boot that goes on. The boot and rollback tests show the
// same in the VM; this shows the cases a VM boot does not reach, in seconds.
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, chmodSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { OUT_DIR } from '../../src/image/build.js';
import { freshImage, machineIdLines } from '../../src/image/boot-test.js';

const SCRIPT = join(process.cwd(), 'images/initramfs/edgelb-machine-id');
const INITRD = join(OUT_DIR, 'work/initrd.img');

/** Unpacks the newc cpio archives of an initramfs-tools initrd (an uncompressed one, then an lz4 one) into dir. */
function unpackInitrd(file: string, dir: string): void {
  const all = readFileSync(file);
  const lz4At = all.indexOf(Buffer.from('02214c18', 'hex'));
  const parts = [all.subarray(0, lz4At < 0 ? all.length : lz4At)];
  if (lz4At >= 0) parts.push(execFileSync('lz4', ['-dc'], { input: all.subarray(lz4At), maxBuffer: 1 << 30 }));
  for (const d of parts) {
    let i = 0;
    while (i + 110 <= d.length && d.subarray(i, i + 6).toString() === '070701') {
      const hex = (at: number) => parseInt(d.subarray(i + at, i + at + 8).toString(), 16);
      const mode = hex(14);
      const size = hex(54);
      const nameSize = hex(94);
      const name = d.subarray(i + 110, i + 110 + nameSize - 1).toString();
      const dataAt = (i + 110 + nameSize + 3) & ~3;
      const data = d.subarray(dataAt, dataAt + size);
      i = (dataAt + size + 3) & ~3;
      if (name === 'TRAILER!!!') {
        while (i < d.length && d[i] === 0) i++;
        continue;
      }
      const path = join(dir, name);
      const type = mode & 0o170000;
      if (type === 0o040000) mkdirSync(path, { recursive: true });
      else if (type === 0o120000 || type === 0o100000) {
        mkdirSync(dirname(path), { recursive: true });
        rmSync(path, { force: true });
        if (type === 0o120000) symlinkSync(data.toString(), path);
        else {
          writeFileSync(path, data);
          chmodSync(path, mode & 0o7777);
        }
      }
    }
  }
}

const skip = process.getuid?.() !== 0 ? 'not root' : null;

if (skip) {
  test.skip(`initrd machine-id script — SKIPPED: ${skip}`, () => undefined);
} else {
  test('the initrd keeps the machine-id on the state partition: new, kept, a damaged one replaced, none without the partition', async (t) => {
    t.timeout(20 * 60 * 1000);
    await freshImage();
    const dir = mkdtempSync(join(tmpdir(), 'edgelb-machine-id-'));
    const root = join(dir, 'initrd');
    const state = join(dir, 'state.img');
    let loop = '';
    t.teardown(() => {
      if (loop) spawnSync('losetup', ['-d', loop]);
      rmSync(dir, { recursive: true, force: true });
    });
    unpackInitrd(INITRD, root);
    t.true(readFileSync(join(root, 'scripts/local-bottom/ORDER'), 'utf8').includes('/scripts/local-bottom/edgelb-machine-id'), 'the built initrd runs the script');
    t.is(readFileSync(join(root, 'scripts/local-bottom/edgelb-machine-id'), 'utf8'), readFileSync(SCRIPT, 'utf8'), 'the built initrd has this script');
    copyFileSync(SCRIPT, join(root, 'machine-id-script'));
    execFileSync('truncate', ['-s', '8M', state]);
    execFileSync('mkfs.ext4', ['-q', state]);
    loop = execFileSync('losetup', ['-f', '--show', state], { encoding: 'utf8' }).trim();
    // One "boot": the script as local-bottom runs it, rootmnt=/root, then what /etc/machine-id reads.
    const boot = `: > "$R/root/etc/machine-id"; chroot "$R" /usr/bin/sh -c 'rootmnt=/root; export rootmnt; /usr/bin/sh /machine-id-script; echo "exit=$?"; echo "etc=$(cat /root/etc/machine-id)"; umount /root/etc/machine-id 2>/dev/null'`;
    const onState = (cmd: string) => `mount "$LOOP" "$M" && ${cmd}; umount "$M"`;
    const script = `
      set -u
      R=${root}; LOOP=${loop}; M=${dir}/m
      mkdir -p "$R/proc" "$R/dev/disk/by-partlabel" "$R/root/etc" "$R/run" "$M"
      mount -t proc proc "$R/proc"; mount -t tmpfs tmpfs "$R/dev"; mount -t tmpfs tmpfs "$R/run"
      cp -a "$LOOP" "$R/dev/"; mkdir -p "$R/dev/disk/by-partlabel"; ln -s "$LOOP" "$R/dev/disk/by-partlabel/edgelb-state"
      echo "== first"; ${boot}
      echo "== second"; ${boot}
      echo "== damaged"; ${onState('echo not-an-id > "$M/machine-id"')}; ${boot}
      echo "== saved"; ${onState('cat "$M/machine-id"')}
      echo "== no-partition"; rm "$R/dev/disk/by-partlabel/edgelb-state"; ${boot}
    `;
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { encoding: 'utf8', timeout: 120_000 });
    t.log(r.stdout.trim());
    if (r.stderr.trim()) t.log(r.stderr.trim());
    const section = (name: string) => r.stdout.split(`== ${name}\n`)[1]?.split('\n== ')[0] ?? '';
    const [first, second, damaged, none] = ['first', 'second', 'damaged', 'no-partition'].map(section).map((s) => ({ lines: machineIdLines(s!), text: s! }));
    const id = first!.lines[0]?.id ?? '';
    t.regex(id, /^[0-9a-f]{32}$/);
    t.is(first!.lines[0]?.how, 'new');
    t.regex(first!.text, new RegExp(`exit=0\\netc=${id}`), '/etc/machine-id reads the new ID');
    t.deepEqual(second!.lines, [{ id, how: 'kept' }], 'the next boot keeps it');
    t.regex(second!.text, new RegExp(`etc=${id}`));
    const replaced = damaged!.lines[0]?.id ?? '';
    t.is(damaged!.lines[0]?.how, 'new', 'a damaged file is replaced');
    t.regex(replaced, /^[0-9a-f]{32}$/);
    t.not(replaced, id);
    t.is(section('saved').trim(), replaced, 'and the replacement saved');
    t.regex(none!.lines[0]?.how ?? '', /^transient \(no \/dev\/disk\/by-partlabel\/edgelb-state\)/);
    t.regex(none!.text, /exit=0\netc=\n/, 'without the partition: the boot goes on, /etc/machine-id stays empty for systemd to fill');
  });
}
