// Boot counting judges the agent, not the config check: a signed upgrade
// whose agent crashes before READY (the broken-agent test variant: the same
// image with a unit drop-in that makes the agent's process throw) passes the
// config check, so a check that only asked "did the runtime run" blessed it.
// Here it must not be: the new slot's counted entry uses up its tries (each
// bad boot reboots) and systemd-boot goes back to the old slot, which comes
// up READY, all without anyone touching the machine.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OUT_DIR, PUBKEY_FILE } from '../../src/image/build.js';
import {
  brokenAgentImage, ensureBootTools, freshImage, machineIdLines, parseReport, READY_RE, reportCredentials, TEST_CONFIG, testSecretCredentials,
} from '../../src/image/boot-test.js';
import { MIB } from '../../src/image/layout.js';
import { bootVm, LogTail, waitForConsole } from '../../src/image/qemu.js';
import { Esp, listEntries, upgrade } from '../../src/image/upgrade.js';

const LOGS = join(OUT_DIR, 'boot-test');
const BOOT_TIMEOUT_MS = Number(process.env.EDGELB_BOOT_TIMEOUT_S ?? 420) * 1000;
const TRIES = 2;

const skip = process.getuid?.() !== 0 ? 'not root' : await ensureBootTools().then(() => null, (e: Error) => `cannot install qemu-system-x86/ovmf: ${e.message}`);

if (skip) {
  process.stderr.write(`\n******** SKIPPING the rollback test: ${skip} ********\n\n`);
  test.skip(`rollback of a broken upgrade — SKIPPED: ${skip}`, () => undefined);
} else {
  test.serial(`an upgrade whose agent crashes is rolled back after its ${TRIES} tries`, async (t) => {
    t.timeout(40 * 60 * 1000);
    mkdirSync(LOGS, { recursive: true });
    await freshImage();
    const broken = await brokenAgentImage();
    t.log(`broken-agent image ${broken.manifest.version}${broken.built ? `, built now in ${broken.manifest.buildSeconds} s` : ''}`);
    const disk = join(LOGS, 'rollback.raw');
    t.teardown(() => rmSync(disk, { force: true }));
    execFileSync('cp', ['--sparse=always', join(OUT_DIR, 'edgelb.raw'), disk]);
    // The broken-agent image may have been built before the image it goes
    // over (one is rebuilt, the other reused): its age is not what this tests.
    const u = await upgrade({ image: broken.raw, disk, slot: 'b', tries: TRIES, keys: join(OUT_DIR, PUBKEY_FILE), log: (s) => t.log(s), allowDowngrade: true });
    t.is(u.entry, `edgelb-b+${TRIES}.conf`);
    t.regex(u.version, /\+broken-agent$/);

    const serialLog = join(LOGS, 'rollback.log');
    // One machine, rebooting as the node would: each reset is a power cycle
    // (bootVm, allowReboot) with the same disk and EFI variable store. One TCG
    // thread (tcgMachineArgs): under multi-threaded TCG about one boot in 25
    // dies of an Oops, which would use up a try without the boot check's word.
    const vm = bootVm({
      image: disk, serialLog, writable: true, allowReboot: true,
      credentials: [{ name: 'edgelb.yaml', value: TEST_CONFIG }, ...testSecretCredentials(), ...reportCredentials()],
    });
    t.teardown(() => vm.stop());
    const tail = new LogTail(serialLog);
    const t0 = Date.now();
    const badBoots = new RegExp(`(edgelb-boot-check: the agent is not READY[^\\n]*this boot is bad[\\s\\S]*){${TRIES}}`);
    const bad = await waitForConsole(tail, badBoots, BOOT_TIMEOUT_MS * TRIES, vm);
    t.truthy(bad.match, `${TRIES} boots of slot B judged bad (${(bad.elapsedMs / 1000).toFixed(0)} s)`);
    const good = await waitForConsole(tail, /EDGELB READY[\s\S]*EDGELB-TEST END/, BOOT_TIMEOUT_MS, vm);
    writeFileSync(`${serialLog}.timeline`, `${tail.timeline.join('\n')}\n`);
    t.log(`serial log ${serialLog}; rolled back and READY ${((Date.now() - t0) / 1000).toFixed(0)} s after power-on, ${vm.powerCycles} resets`);
    t.truthy(good.match, 'after the tries, the old slot booted and the agent is READY');
    t.is(vm.powerCycles, TRIES, 'each bad boot reset the machine once');
    await vm.stop();

    const text = tail.all;
    // The broken slot: the config check passed, the agent crashed.
    const firstBad = text.slice(0, text.search(/this boot is bad/));
    t.regex(firstBad, /edgelb-config: booted slot b, image \S+\+broken-agent/);
    t.regex(firstBad, /edgelb-config: config OK from credential edgelb\.yaml/, 'the config check passed in the broken slot');
    // (The agent's own error goes to the journal; the console shows the unit failing.)
    t.regex(firstBad, /Failed to start \S*edgelb\.service/, 'its agent crashed');
    t.notRegex(firstBad, READY_RE);
    // The last boot: slot A, the agent READY, the report from there.
    const last = text.slice(text.lastIndexOf('edgelb-config: booted slot'));
    t.regex(last, /^edgelb-config: booted slot a, /);
    t.regex(last, READY_RE);
    const report = parseReport(last);
    t.is(report.get('slot'), 'a');
    t.is(text.match(/edgelb-config: booted slot b/g)?.length, TRIES, `slot B was tried exactly ${TRIES} times`);
    // On the ESP: slot B's entry is marked bad (no tries left), slot A's is untouched.
    // One machine-id through all boots of both slots: made on the first, kept on the state partition.
    const ids = machineIdLines(text);
    t.is(ids.length, TRIES + 1, `one machine-id line per boot: ${JSON.stringify(ids)}`);
    t.deepEqual(ids.map((x) => x.how), ['new', ...Array<string>(TRIES).fill('kept')]);
    t.is(new Set(ids.map((x) => x.id)).size, 1, `the same ID on every boot: ${JSON.stringify(ids)}`);
    t.is(report.get('machine-id'), `${ids[0]?.id} journal=${ids[0]?.id}`, 'the last boot runs with it');
    const entries = listEntries(new Esp(disk, MIB)).map((e) => `${e.file}:${e.triesLeft ?? 'good'}`).sort();
    t.deepEqual(entries, ['edgelb-a.conf:good', `edgelb-b+0-${TRIES}.conf:0`]);
  });
}
