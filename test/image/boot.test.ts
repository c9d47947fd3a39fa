// The appliance boot test: builds the image when there is none (or it is
// older than the code), boots it under QEMU/TCG with OVMF and checks, from
// the serial console, that the agent came up with the injected config and
// gobgpd runs with it; then that an invalid config stops at the check.
// Skipped — loudly — only when QEMU/OVMF cannot be installed or we are not root.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fingerprint, IMAGE_MANIFEST, IMAGE_RAW, OUT_DIR, type ImageManifest } from '../../src/image/build.js';
import {
  BUDGET, bootWithConfig, ensureBootTools, imageForTest, INVALID_CONFIG, overBudget, sha12, summary, TEST_CONFIG,
} from '../../src/image/boot-test.js';
import { readGpt } from '../../src/image/gpt.js';
import { MIB, PART } from '../../src/image/layout.js';
import { Esp, listEntries, upgrade } from '../../src/image/upgrade.js';

const LOGS = join(OUT_DIR, 'boot-test');
// Bounded waits; generous because TCG on a busy 2-core machine is slow.
const BOOT_TIMEOUT_MS = Number(process.env.EDGELB_BOOT_TIMEOUT_S ?? 420) * 1000;

async function prerequisites(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'not root (the image build needs mmdebstrap as root)';
  try {
    await ensureBootTools();
  } catch (e) {
    return `cannot install qemu-system-x86/ovmf: ${e instanceof Error ? e.message : String(e)}`;
  }
  return null;
}

/** Rebuild when what goes into the image changed since it was built. */
function imageIsStale(): boolean {
  if (!existsSync(IMAGE_RAW) || !existsSync(IMAGE_MANIFEST)) return true;
  const m = JSON.parse(readFileSync(IMAGE_MANIFEST, 'utf8')) as Partial<ImageManifest>;
  return m.fingerprint !== fingerprint();
}

const skip = await prerequisites();
let manifest: ImageManifest | null = null;

if (skip) {
  process.stderr.write(`\n******** SKIPPING the appliance boot test: ${skip} ********\n\n`);
  test.skip(`appliance boot test — SKIPPED: ${skip}`, () => undefined);
} else {
  test.serial('image builds, boots under TCG and the agent is READY with the injected config', async (t) => {
    t.timeout(45 * 60 * 1000);
    mkdirSync(LOGS, { recursive: true });
    manifest = await imageForTest(imageIsStale() || process.env.EDGELB_IMAGE_REBUILD === '1');
    t.true(manifest.rawBytes <= 1024 * MIB, `raw image ${manifest.rawBytes} bytes ≤ 1 GiB`);
    t.true(manifest.compressedBytes <= 300 * MIB, `zstd image ${manifest.compressedBytes} bytes ≤ 300 MB`);

    const r = await bootWithConfig({ image: IMAGE_RAW, config: TEST_CONFIG, serialLog: join(LOGS, 'valid.log'), expectReady: true, timeoutMs: BOOT_TIMEOUT_MS });
    const rep = (k: string) => r.report.get(k) ?? '';
    t.log(`serial log: ${r.serialLog} (timeline: ${r.serialLog}.timeline)`);
    for (const [k, v] of r.report) t.log(`${k}: ${v}`);
    t.truthy(r.ready, 'EDGELB READY line on the serial console');
    t.is(r.ready?.[1], 'boot-test', 'READY names node.name from the injected config');
    t.is(r.ready?.[2], '2', 'READY counts the two configured peers');
    t.is(r.ready?.[3], sha12(TEST_CONFIG), 'READY carries the hash of the injected config');
    t.is(rep('config-sha'), sha12(TEST_CONFIG), '/run/edgelb/edgelb.yaml is the injected config');
    t.regex(rep('units'), /config=active firewall=active edgelb=active gobgpd=active/);
    t.regex(rep('edgelb-cmd'), /edgelb\/dist\/app\/main\.js run --config \/run\/edgelb\/edgelb\.yaml/);
    t.regex(rep('gobgp-global'), /AS:\s+64512/, 'gobgpd runs with the config\'s ASN (set by the agent)');
    t.regex(rep('gobgp-global'), /10\.0\.2\.15/, 'gobgpd runs with the config\'s router ID');
    t.regex(rep('nft-table'), /inet edgelb_host/, 'host firewall loaded');
    t.regex(rep('listen'), /tcp\/\S*:179\b/, 'gobgpd listens for BGP once the agent has started it');
    t.notRegex(rep('listen'), /:6060\b/, 'no gobgpd pprof listener');
    t.regex(rep('root'), /^erofs ro state=ext4/, 'read-only erofs root, ext4 state partition');

    const s = summary(manifest, r.readySeconds);
    writeFileSync(join(LOGS, 'summary.json'), `${JSON.stringify(s)}\n`);
    t.log(JSON.stringify(s));
    if (r.retriedAfterPanic) t.log('the first boot hit the emulator\'s early-boot panic and was retried (serial log .panic)');
    // The build time counts when this run built the image; a cached image's
    // manifest keeps the time of the build that made it.
    t.deepEqual(overBudget(s), [], `within the budgets ${JSON.stringify(BUDGET)}`);
  });

  test.serial('invalid config: problems on the console, agent not started', async (t) => {
    t.timeout(20 * 60 * 1000);
    if (!existsSync(IMAGE_RAW)) return t.fail('no image (the previous test builds it)');
    const r = await bootWithConfig({ image: IMAGE_RAW, config: INVALID_CONFIG, serialLog: join(LOGS, 'invalid.log'), expectReady: false, timeoutMs: BOOT_TIMEOUT_MS });
    for (const [k, v] of r.report) t.log(`${k}: ${v}`);
    t.regex(r.console, /edgelb-config: INVALID CONFIG from credential edgelb\.yaml/);
    t.regex(r.console, /edgelb-config: {3}edgelb\.yaml:2: node\.routerId: .*\(got "?300\.1\.2\.3"?\)/);
    t.regex(r.console, /edgelb-config: {3}edgelb\.yaml:\d+: bgp\.peers\[0\]\.asn: /);
    t.is(r.ready, null, 'no READY line');
    // gobgpd idles with only its unix API socket until the agent starts BGP
    // (and the agent never starts without a valid config and its firewall).
    t.regex(r.report.get('units') ?? '', /config=failed firewall=inactive edgelb=inactive gobgpd=active bfdd=inactive/);
    t.notRegex(r.report.get('listen') ?? '', /:(179|3784|3785|4784)\b/, 'no BGP or BFD port is open without a valid config and its firewall');
    // The first test writes the summary only when it passed: its failure is reported there, once.
    if (manifest && existsSync(join(LOGS, 'summary.json'))) {
      const s = JSON.parse(readFileSync(join(LOGS, 'summary.json'), 'utf8')) as unknown;
      // The budget line, last: {"build_s","boot_to_ready_s","raw_mib","compressed_mib"}.
      t.log(JSON.stringify(s));
    }
  });

  test.serial('A/B upgrade: slot B boots from a counted entry and is blessed; config from the EDGELB-CFG partition', async (t) => {
    t.timeout(25 * 60 * 1000);
    if (!existsSync(`${IMAGE_RAW}.zst`)) return t.fail('no image (the first test builds it)');
    const copy = join(LOGS, 'upgraded.raw');
    t.teardown(() => rmSync(copy, { force: true }));
    execFileSync('cp', ['--sparse=always', IMAGE_RAW, copy]);
    const u = await upgrade({ image: `${IMAGE_RAW}.zst`, disk: copy, slot: 'b', log: (s) => t.log(s) });
    t.is(u.entry, 'edgelb-b+3.conf');
    // No credential this time: the operator's file on the config partition.
    const cfgPart = readGpt(copy).find((p) => p.name === PART.cfg);
    if (!cfgPart) return t.fail('no config partition');
    const yaml = join(LOGS, 'edgelb.yaml');
    writeFileSync(yaml, TEST_CONFIG);
    execFileSync('mcopy', ['-o', '-i', `${copy}@@${cfgPart.offsetBytes}`, yaml, '::/edgelb.yaml'], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
    const r = await bootWithConfig({ image: copy, writable: true, config: null, serialLog: join(LOGS, 'upgraded.log'), expectReady: true, timeoutMs: BOOT_TIMEOUT_MS });
    for (const [k, v] of r.report) t.log(`${k}: ${v}`);
    t.truthy(r.ready, 'READY from the upgraded slot');
    t.regex(r.console, /edgelb-config: config OK from \/dev\/vda4 \(EDGELB-CFG\) edgelb\.yaml/);
    t.is(r.ready?.[3], sha12(TEST_CONFIG));
    t.is(r.report.get('slot'), 'b', 'booted root slot B');
    t.regex(r.report.get('bless') ?? '', /^active check=active/, 'boot-check passed, systemd-bless-boot ran');
    const entries = listEntries(new Esp(copy, MIB)).map((e) => e.file).sort();
    t.deepEqual(entries, ['edgelb-a.conf', 'edgelb-b.conf'], 'the try counter is gone: slot B is blessed');
  });
}
