// The appliance boot test: builds the image when there is none (or it is
// older than the code), boots it under QEMU/TCG with OVMF and checks, from
// the serial console, that the agent came up with the injected config and
// gobgpd runs with it, that the uplink forwards behind the forward chain,
// and that the BGP password (a secret credential) reached gobgpd without
// landing in the journal or on the state partition; then that an invalid
// config stops at the check; then a signed A/B upgrade with the config and
// its secret on the EDGELB-CFG partition.
// Skipped — loudly — only when QEMU/OVMF cannot be installed or we are not root.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { IMAGE_RAW, OUT_DIR, PUBKEY_FILE, type ImageManifest } from '../../src/image/build.js';
import {
  BUDGET, bootWithConfig, ensureBootTools, freshImage, INVALID_CONFIG, machineIdLines, overBudget, sha12, summary, TEST_CONFIG, TEST_SECRET, TEST_SECRET_NAME, testSecretCredentials,
} from '../../src/image/boot-test.js';
import { readGpt } from '../../src/image/gpt.js';
import { describeQuiet } from '../../src/image/quiet-host.js';
import { describeHostSpeed } from '../../src/image/host-speed.js';
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

const skip = await prerequisites();
let manifest: ImageManifest | null = null;

if (skip) {
  process.stderr.write(`\n******** SKIPPING the appliance boot test: ${skip} ********\n\n`);
  test.skip(`appliance boot test — SKIPPED: ${skip}`, () => undefined);
} else {
  test.serial('image builds, boots under TCG and the agent is READY with the injected config', async (t) => {
    t.timeout(45 * 60 * 1000);
    mkdirSync(LOGS, { recursive: true });
    const image = await freshImage();
    manifest = image.manifest;
    t.log(`image ${manifest.version}, ${image.built ? `built now in ${manifest.buildSeconds} s` : 'built before'}; signed by ${manifest.signature.keyId}${manifest.signature.throwaway ? ' (throwaway test key)' : ''}`);
    t.true(manifest.rawBytes <= 1024 * MIB, `raw image ${manifest.rawBytes} bytes ≤ 1 GiB`);
    t.true(manifest.compressedBytes <= 300 * MIB, `zstd image ${manifest.compressedBytes} bytes ≤ 300 MB`);

    const r = await bootWithConfig({ image: IMAGE_RAW, config: TEST_CONFIG, credentials: testSecretCredentials(), serialLog: join(LOGS, 'valid.log'), expectReady: true, timeoutMs: BOOT_TIMEOUT_MS, timed: true });
    const rep = (k: string) => r.report.get(k) ?? '';
    t.log(`serial log: ${r.serialLog} (timeline: ${r.serialLog}.timeline)`);
    if (r.quiet) t.log(`before the timed boot: ${describeQuiet(r.quiet)}`);
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
    // Forwarding on the uplink only, behind the forward chain (src/firewall).
    t.regex(rep('sysctl'), /uplink=enp0s5 forwarding=1 rp_filter=2 all_forwarding=0 send_redirects=0/);
    t.regex(rep('nft-forward'), /policy drop;.*no frontend.*next hop not yet resolved.*not a router/);
    // The secret: root-only in RAM, used by gobgpd, nowhere else.
    t.regex(rep('secrets'), new RegExp(`dir=700:root files=${TEST_SECRET_NAME}:600:root`));
    t.regex(r.console, new RegExp(`edgelb-config: secret ${TEST_SECRET_NAME} from credential edgelb\\.secret\\.${TEST_SECRET_NAME}`));
    t.false(r.console.includes(TEST_SECRET), 'the secret never appears on the console');
    t.is(rep('secret-leaks'), 'journal=0 state=0 state-device=0 run=0', 'nor in the journal, on the state partition or elsewhere in /run/edgelb');
    t.regex(rep('secret-in-gobgpd'), /^[1-9]/, 'gobgpd has the peer\'s password');
    // The running image trusts exactly the key that signed it (edgelb upgrade checks against these).
    const pub = readFileSync(join(OUT_DIR, PUBKEY_FILE));
    t.is(rep('upgrade-keys'), `${manifest.signature.keyId}.pem:${createHash('sha256').update(pub).digest('hex').slice(0, 16)}`);
    // A fresh disk: the initrd makes the machine-id and keeps it on the state
    // partition; the system and journald run with it (rollback.test.ts shows it kept across reboots).
    const ids = machineIdLines(r.console);
    t.is(ids.length, 1, JSON.stringify(ids));
    t.is(ids[0]?.how, 'new', 'first boot of a flashed disk: a new machine-id');
    t.is(rep('machine-id'), `${ids[0]?.id} journal=${ids[0]?.id}`, '/etc/machine-id and journald use the initrd\'s ID');

    // Modules the appliance blacklists stay out, also those udev's coldplug meets in the initrd.
    const blacklisted = readFileSync('images/overlay/etc/modprobe.d/edgelb-appliance.conf', 'utf8').split('\n').map((l) => /^blacklist\s+(\S+)/.exec(l)?.[1]).filter((m): m is string => !!m);
    const loaded = rep('modules').split(/\s+/).filter(Boolean);
    t.true(loaded.includes('nf_tables') && loaded.includes('erofs'), `the report lists the loaded modules: ${loaded.join(' ')}`);
    t.deepEqual(loaded.filter((m) => blacklisted.includes(m)), [], 'no blacklisted module was loaded');
    const s = summary(manifest, r);
    t.log(describeHostSpeed(s.firmware_s, s.others_cpu_share, s.host_factor));
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
    t.is(r.report.get('sysctl'), 'uplink=none', 'no config reached /run, so no uplink to report on');
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
    const u = await upgrade({ image: `${IMAGE_RAW}.zst`, disk: copy, slot: 'b', log: (s) => t.log(s), keys: join(OUT_DIR, PUBKEY_FILE) });
    t.is(u.entry, 'edgelb-b+3.conf');
    t.is(u.signedBy, manifest?.signature.keyId ?? u.signedBy);
    // No credential this time: the operator's files on the config partition.
    const cfgPart = readGpt(copy).find((p) => p.name === PART.cfg);
    if (!cfgPart) return t.fail('no config partition');
    const yaml = join(LOGS, 'edgelb.yaml');
    writeFileSync(yaml, TEST_CONFIG);
    const secret = join(LOGS, TEST_SECRET_NAME);
    writeFileSync(secret, TEST_SECRET);
    const m = (args: string[]) => execFileSync(args[0]!, ['-i', `${copy}@@${cfgPart.offsetBytes}`, ...args.slice(1)], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
    m(['mcopy', '-o', yaml, '::/edgelb.yaml']);
    m(['mmd', '::/secrets']);
    m(['mcopy', '-o', secret, `::/secrets/${TEST_SECRET_NAME}`]);
    rmSync(secret);
    const r = await bootWithConfig({ image: copy, writable: true, config: null, serialLog: join(LOGS, 'upgraded.log'), expectReady: true, timeoutMs: BOOT_TIMEOUT_MS });
    for (const [k, v] of r.report) t.log(`${k}: ${v}`);
    t.truthy(r.ready, 'READY from the upgraded slot');
    t.regex(r.console, /edgelb-config: config OK from \/dev\/vda4 \(EDGELB-CFG\) edgelb\.yaml/);
    t.is(r.ready?.[3], sha12(TEST_CONFIG));
    t.is(r.report.get('slot'), 'b', 'booted root slot B');
    t.regex(r.console, new RegExp(`edgelb-config: secret ${TEST_SECRET_NAME} from /dev/vda4 \\(EDGELB-CFG\\) secrets/${TEST_SECRET_NAME}`));
    t.regex(r.report.get('secrets') ?? '', new RegExp(`dir=700:root files=${TEST_SECRET_NAME}:600:root`));
    t.is(r.report.get('secret-leaks'), 'journal=0 state=0 state-device=0 run=0');
    t.regex(r.report.get('boot-check') ?? '', /the agent is READY; this boot is good/, 'blessed because the agent got READY');
    t.regex(r.report.get('bless') ?? '', /^active check=active/, 'boot-check passed, systemd-bless-boot ran');
    const entries = listEntries(new Esp(copy, MIB)).map((e) => e.file).sort();
    t.deepEqual(entries, ['edgelb-a.conf', 'edgelb-b.conf'], 'the try counter is gone: slot B is blessed');
  });
}
