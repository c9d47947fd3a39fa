// The boot test's retry covers only the emulator's early-boot fault, never a
// broken image: these consoles decide which is which.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EMULATOR_PANIC_RE, GOBGP_QUERY_SH, machineIdLines, overBudget, READY_RE } from '../../src/image/boot-test.js';
import { qemuArgs } from '../../src/image/qemu.js';

const TCG_FAULT = `EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path
[    4.116555] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI
[    4.117602] RIP: 0010:sched_clock_cpu+0x9/0x1d0
[    4.121748] Oops: int3: 0000 [#2] PREEMPT SMP NOPTI
[    4.122233] Kernel panic - not syncing: Fatal exception in interrupt
`;

const BROKEN_ROOT = `EFI stub: Loaded initrd from LINUX_EFI_INITRD_MEDIA_GUID device path
[    3.200000] VFS: Cannot open root device "PARTLABEL=edgelb-root-a" or unknown-block(0,0): error -6
[    3.200100] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)
`;

test('an int3 Oops followed by a panic is the emulator fault that earns one retry', (t) => {
  t.regex(TCG_FAULT, EMULATOR_PANIC_RE);
});

test('a panic from the image itself (no root fs) is not retried', (t) => {
  t.notRegex(BROKEN_ROOT, EMULATOR_PANIC_RE);
});

test('the READY banner the test waits for', (t) => {
  const m = 'edgelb login: [   62.03] node[427]: EDGELB READY node=boot-test peers=2 config=60762c83f26b'.match(READY_RE);
  t.deepEqual(m?.slice(1), ['boot-test', '2', '60762c83f26b']);
});

test('the VM is headless, emulated, serial-only and isolated', (t) => {
  const a = qemuArgs({ image: '/x.raw', serialLog: '/x.log' }, '/vars.fd');
  t.true(a.includes('-nodefaults'));
  t.is(a[a.indexOf('-machine') + 1], 'q35,accel=tcg');
  t.is(a[a.indexOf('-serial') + 1], 'file:/x.log');
  t.true(a.includes('user,id=n0,restrict=on'), 'user networking with restrict=on: nothing leaves QEMU');
  t.regex(a[a.indexOf('-drive', a.indexOf('-drive', a.indexOf('-drive') + 1) + 1) + 1] ?? '', /snapshot=on/);
});

test('budgets: each one over, or not measured, is named', (t) => {
  t.deepEqual(overBudget({ build_s: 120, boot_to_ready_s: 45.2, raw_mib: 978, compressed_mib: 267.7 }), []);
  t.deepEqual(overBudget({ build_s: 601, boot_to_ready_s: 60.1, raw_mib: 1024, compressed_mib: 300.1 }), ['build_s: 601 > 600', 'boot_to_ready_s: 60.1 > 60', 'compressed_mib: 300.1 > 300']);
  t.deepEqual(overBudget({ build_s: 1, boot_to_ready_s: null, raw_mib: 1, compressed_mib: 1 }), ['boot_to_ready_s: not measured']);
});

// The report's gobgp queries: the CLI gives up connecting after its own 1 s, which a starved TCG
// guest can exceed while gobgpd is fine. Here gobgpd starts 2 s after the query: the CLI alone
// fails, the report's query answers (a gobgpd with no BGP port, on a unix socket of its own).
test('the report\'s gobgp query outlasts the CLI\'s 1 s connect deadline', async (t) => {
  t.timeout(30_000);
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-gobgpq-'));
  const target = `unix://${dir}/gobgp.sock`;
  writeFileSync(join(dir, 'gobgpd.toml'), '[global.config]\n  as = 64512\n  router-id = "10.0.2.15"\n  port = -1\n');
  let gobgpd: ReturnType<typeof spawn> | null = null;
  t.teardown(() => {
    gobgpd?.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });
  const timer = setTimeout(() => {
    gobgpd = spawn('gobgpd', ['-f', join(dir, 'gobgpd.toml'), '--pprof-disable', '--api-hosts', target], { stdio: 'ignore' });
  }, 2000);
  t.teardown(() => clearTimeout(timer));
  const alone = spawnSync('gobgp', ['--target', target, 'global'], { encoding: 'utf8' });
  t.not(alone.status, 0);
  t.regex(alone.stderr + alone.stdout, /context deadline exceeded/);
  const q = await new Promise<string>((resolve) => {
    const sh = spawn('sh', ['-c', `${GOBGP_QUERY_SH}\nGOBGP_TARGET=${target}\ngobgp_q global`]);
    let out = '';
    sh.stdout.on('data', (d: Buffer) => (out += d.toString()));
    sh.on('close', () => resolve(out));
  });
  t.regex(q, /AS:\s+64512/);
  t.regex(q, /10\.0\.2\.15/);
});

test('machine-id lines: one per boot, new / kept / transient, read through CRs and kernel lines', (t) => {
  const id = '3f0c9e5b2d7a4e61b8c2a9d04f17e6b3';
  const text = `Begin: Running /scripts/local-bottom ... edgelb: machine-id: ${id} new\r\n[    5.1] random: crng init done\r\nedgelb: machine-id: ${id} kept\r\nedgelb: machine-id: transient (no /dev/disk/by-partlabel/edgelb-state)\r\n`;
  t.deepEqual(machineIdLines(text), [{ id, how: 'new' }, { id, how: 'kept' }, { id: null, how: 'transient (no /dev/disk/by-partlabel/edgelb-state)' }]);
  t.deepEqual(machineIdLines(`edgelb: machine-id: ${id.slice(1)} kept`), [], 'a short ID is no ID');
});
