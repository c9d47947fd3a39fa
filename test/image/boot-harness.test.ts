// The boot test's retry covers only the emulator's early-boot fault, never a
// broken image: these consoles decide which is which.
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuSnapshot, firmwareSeconds, hostFactor, othersShare, procCpuTicks } from '../../src/image/host-speed.js';
import { EMULATOR_PANIC_RE, GOBGP_QUERY_SH, machineIdLines, overBudget, READY_RE } from '../../src/image/boot-test.js';
import { guestPanicSummary, guestReset, LogTail, qemuArgs, readFrom } from '../../src/image/qemu.js';

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

// A CI run's appliance VM under multi-threaded TCG: its last lines (CS/CR2 and the panic) as CI
// kept them; the Oops lines above them are what the kernel prints for such a fault.
const FAULT_IN_INTERRUPT = `[    2.790000] BUG: unable to handle page fault for address: 00007fad1f8a00ac
[    2.790100] #PF: supervisor read access in kernel mode
[    2.791000] Oops: 0000 [#1] PREEMPT SMP NOPTI
[    2.792000] RIP: 0010:native_sched_clock+0x1f/0x80
[    2.804943] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[    2.804948] CR2: 00007fad1f8a00ac CR3: 000000001f422000 CR4: 0000000000751ef0
[    2.805057] \x1b[0;1;31mKernel panic - not syncing: Fatal exception in interrupt\x1b[0m\r
[    4.411303] Shutting down cpus with NMI
`;

test('an Oops (int3, or a fault in interrupt context) and then a panic is the emulator fault that earns the timed boot one retry', (t) => {
  t.regex(TCG_FAULT, EMULATOR_PANIC_RE);
  t.regex(FAULT_IN_INTERRUPT, EMULATOR_PANIC_RE);
});

test('a panic from the image itself (no root fs) is not retried', (t) => {
  t.notRegex(BROKEN_ROOT, EMULATOR_PANIC_RE);
});

test('a guest panic is summarised by its cause, where, and the panic line, not by the register dump after it', (t) => {
  t.is(guestPanicSummary(FAULT_IN_INTERRUPT),
    'BUG: unable to handle page fault for address: 00007fad1f8a00ac | RIP: 0010:native_sched_clock+0x1f/0x80 | Kernel panic - not syncing: Fatal exception in interrupt');
  t.is(guestPanicSummary(BROKEN_ROOT), 'Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)');
  t.is(guestPanicSummary(TCG_FAULT), 'Oops: int3: 0000 [#1] PREEMPT SMP NOPTI | RIP: 0010:sched_clock_cpu+0x9/0x1d0 | Kernel panic - not syncing: Fatal exception in interrupt');
  t.is(guestPanicSummary('[    1.0] Run /init as init process\nWelcome to Debian\n'), null);
});

test('the READY banner the test waits for', (t) => {
  const m = 'edgelb login: [   62.03] node[427]: EDGELB READY node=boot-test peers=2 config=60762c83f26b'.match(READY_RE);
  t.deepEqual(m?.slice(1), ['boot-test', '2', '60762c83f26b']);
});

test('the VM is headless, emulated, serial-only and isolated', (t) => {
  const a = qemuArgs({ image: '/x.raw', serialLog: '/x.log' }, '/vars.fd');
  t.true(a.includes('-nodefaults'));
  t.is(a[a.indexOf('-machine') + 1], 'q35');
  t.is(a[a.indexOf('-accel') + 1], 'tcg,thread=single', 'one TCG thread: guest code patching never races a second vCPU');
  const timed = qemuArgs({ image: '/x.raw', serialLog: '/x.log', mttcg: true }, '/vars.fd');
  t.is(timed[timed.indexOf('-accel') + 1], 'tcg,thread=multi', 'the timed boot: one thread per vCPU');
  t.is(a[a.indexOf('-serial') + 1], 'chardev:console0');
  t.is(a[a.indexOf('-chardev') + 1], 'file,id=console0,path=/x.log,append=on', 'one console log across the power cycles of one machine');
  t.true(a.includes('-no-reboot'));
  t.true(qemuArgs({ image: '/x.raw', serialLog: '/x.log', allowReboot: true }, '/vars.fd').includes('-no-reboot'), 'a reset ends QEMU even when the guest may reboot: bootVm power-cycles it');
  t.true(a.includes('user,id=n0,restrict=on'), 'user networking with restrict=on: nothing leaves QEMU');
  t.true(a.includes('virtio-net-pci,netdev=n0,addr=0x5,romfile='), 'the NIC has no boot ROM for the firmware to start');
  t.regex(a[a.indexOf('-drive', a.indexOf('-drive', a.indexOf('-drive') + 1) + 1) + 1] ?? '', /snapshot=on/);
});

test('a guest reset is a power cycle; a power-off, a stop or a QEMU error is the end', (t) => {
  t.true(guestReset(0, false, '[   23.1] systemd-shutdown[1]: Rebooting.\r\n[   23.4] reboot: Restarting system\r\n'));
  t.true(guestReset(0, false, 'Kernel panic - not syncing: Attempted to kill init!\nRebooting in 10 seconds..\n'), 'a panic reboots the machine');
  t.false(guestReset(0, false, '[   40.2] reboot: Power down\n'));
  t.false(guestReset(0, true, '[   23.4] reboot: Restarting system\n'), 'stopped by the harness');
  t.false(guestReset(1, false, ''), 'QEMU failed');
  t.false(guestReset(null, false, ''), 'QEMU killed by a signal');
});

test('budgets: each one over, or not measured, is named', (t) => {
  const ref = { firmware_s: 5.2, others_cpu_share: 0, host_factor: 1 };
  t.deepEqual(overBudget({ build_s: 120, boot_to_ready_s: 45.2, raw_mib: 978, compressed_mib: 267.7, ...ref }), []);
  t.deepEqual(overBudget({ build_s: 601, boot_to_ready_s: 60.1, raw_mib: 1024, compressed_mib: 300.1, ...ref }), ['build_s: 601 > 600', 'boot_to_ready_s: 60.1 > 60', 'compressed_mib: 300.1 > 300']);
  t.deepEqual(overBudget({ build_s: 1, boot_to_ready_s: null, raw_mib: 1, compressed_mib: 1, ...ref }), ['boot_to_ready_s: not measured']);
});

test('boot budget: scaled by how much slower the firmware phase ran than on the reference host, never below 60 s, at most doubled', (t) => {
  const timeline = ['   0.4 random line', '   8.4 [=3hBdsDxe: loading Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0)', '   8.4 BdsDxe: starting Boot0001'];
  t.is(firmwareSeconds(timeline), 8.4);
  t.is(firmwareSeconds(['   3.0 EFI stub: Loaded initrd']), null, 'no boot manager line: unknown');
  // The afe3232 CI boot: every phase ~1.6× slower, 75.7 s to READY.
  const slow = hostFactor(8.4, 0, 5.2);
  t.is(slow, 1.62);
  const at = (boot: number, firmware: number | null, others: number | null = 0) => overBudget({ build_s: 1, boot_to_ready_s: boot, raw_mib: 1, compressed_mib: 1, firmware_s: firmware, others_cpu_share: others, host_factor: hostFactor(firmware, others, 5.2) });
  t.deepEqual(at(75.7, 8.4), [], '75.7 s on a host 1.62× slower is within 60 s × 1.62');
  t.deepEqual(at(75.7, 5.2), ['boot_to_ready_s: 75.7 > 60'], 'the same boot time on a reference-speed host is over');
  t.deepEqual(at(61, 4.0), ['boot_to_ready_s: 61 > 60'], 'a faster host never tightens below 60 s');
  t.deepEqual(at(61, null), ['boot_to_ready_s: 61 > 60'], 'unknown host speed: unscaled');
  t.deepEqual(at(125, 30), ['boot_to_ready_s: 125 > 120 (60 × host 2)'], 'at most doubled: a slow image still fails on a very slow host');
  t.is(hostFactor(-1), 1);
  t.is(hostFactor(Number.NaN), 1);
  // A busy host: the firmware (one vCPU) at its usual speed, another process holding one of the two cores.
  t.deepEqual(at(86.8, 5.4, 0.48), [], 'others took 48% of the CPU: 60 s × 1.04 / 0.52');
  t.deepEqual(at(86.8, 5.4, 0.05), ['boot_to_ready_s: 86.8 > 65.4 (60 × host 1.09)'], 'the same boot with the host to itself is over');
  t.is(hostFactor(5.2, 0.9, 5.2), 2, 'capped');
  t.is(hostFactor(5.2, null, 5.2), 1, 'unknown others: unscaled');
});

test('host CPU: what other processes used beside QEMU, from /proc/stat and QEMU\'s /proc/PID/stat', (t) => {
  // A command name with spaces and a parenthesis; utime 1200, stime 300.
  const stat = '4242 (qemu-system (x) 86) S 1 4242 4242 0 -1 4194560 100 0 0 0 1200 300 0 0 20 0 5 0 100 0 0';
  t.is(procCpuTicks(stat), 1500);
  t.is(procCpuTicks('garbage'), null);
  // 2 CPUs × 100 s = 20 000 ticks; 4 000 idle; QEMU 9 000: others 7 000 = 35%.
  t.is(othersShare({ idle: 0, total: 0, qemu: 0 }, { idle: 4000, total: 20000, qemu: 9000 }), 0.35);
  t.is(othersShare({ idle: 0, total: 0, qemu: 0 }, { idle: 2000, total: 20000, qemu: 18000 }), 0, 'QEMU alone');
  t.is(othersShare({ idle: 0, total: 0, qemu: null }, { idle: 0, total: 100, qemu: 5 }), null);
  const self = cpuSnapshot(process.pid);
  t.true(self.total > 0 && self.qemu !== null && self.qemu >= 0, JSON.stringify(self));
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
  // The directory goes once gobgpd has exited: removed while it was still
  // shutting down (its socket going or coming), an empty directory stayed behind in some runs.
  t.teardown(async () => {
    const running = gobgpd as ReturnType<typeof spawn> | null;
    if (running && running.exitCode === null && running.signalCode === null) {
      const exited = new Promise((r) => running.once('exit', r));
      running.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
    }
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

test('the console tail reads each appended byte once, lines into the timeline as they complete; no file yet is nothing', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-tail-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'serial.log');
  const tail = new LogTail(file);
  t.is(tail.poll(), '', 'QEMU has not made the file yet');
  writeFileSync(file, 'EFI stub\n[    1.0] systemd');
  t.is(tail.poll(), 'EFI stub\n[    1.0] systemd');
  t.is(tail.poll(), '', 'nothing new');
  appendFileSync(file, ' starting\r\n\x1b[0;32mEDGELB READY\x1b[0m\n');
  t.is(tail.poll(), ' starting\r\n\x1b[0;32mEDGELB READY\x1b[0m\n');
  t.is(tail.all, 'EFI stub\n[    1.0] systemd starting\r\n\x1b[0;32mEDGELB READY\x1b[0m\n');
  t.deepEqual(tail.timeline.map((l) => l.slice(7)), ['EFI stub', '[    1.0] systemd starting', 'EDGELB READY']);
});

test('a rebooting VM judges each run by its own console: the bytes from where that run started', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-tail-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'serial.log');
  t.deepEqual(readFrom(file, 0), { text: '', end: 0 });
  writeFileSync(file, 'first run\nreboot: Power down\n');
  const second = readFrom(file, 0).end;
  appendFileSync(file, 'second run\nreboot: Restarting system\n');
  t.deepEqual(readFrom(file, second), { text: 'second run\nreboot: Restarting system\n', end: second + 'second run\nreboot: Restarting system\n'.length });
  t.true(guestReset(0, false, readFrom(file, second).text), 'the first run\'s power-off is not this run\'s');
  t.false(guestReset(0, false, readFrom(file, 0).text));
  t.deepEqual(readFrom(file, 1000), { text: '', end: 1000 });
});
