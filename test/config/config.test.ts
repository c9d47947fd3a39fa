import test from 'ava';
import { readdirSync, readFileSync, writeFileSync, mkdtempSync, chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { hostname, tmpdir } from 'node:os';
import { defaultNodeName, machineIdentity } from '../../src/config/node-id.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { parseConfig, loadConfigFile, ConfigError, formatProblems } from '../../src/config/load.js';
import { servesIpv6 } from '../../src/config/serves-ipv6.js';

const run = promisify(execFile);
const FIXTURES = 'test/fixtures/config/invalid';
const tmp = mkdtempSync(join(tmpdir(), 'edgelb-config-test-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

async function edgelb(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run('bin/edgelb', args);
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

/** Copies a fixture to tmp, substituting placeholders that need a real file. */
function materialise(name: string): string {
  let text = readFileSync(join(FIXTURES, name), 'utf8');
  if (text.includes('@WORLD_READABLE@')) {
    const pw = join(tmp, 'world-readable-password');
    writeFileSync(pw, 'secret\n');
    chmodSync(pw, 0o644);
    text = text.replaceAll('@WORLD_READABLE@', pw);
  }
  const out = join(tmp, name);
  writeFileSync(out, text);
  return out;
}

const fixtures = readdirSync(FIXTURES).filter((f) => f.endsWith('.yaml')).sort();

test('there are at least 25 invalid-config fixtures', (t) => {
  t.true(fixtures.length >= 25, `only ${fixtures.length} fixtures`);
});

for (const name of fixtures) {
  test(`invalid fixture ${name}: exits 2 naming line, key path and reason`, async (t) => {
    const file = materialise(name);
    const text = readFileSync(file, 'utf8');
    const m = /^# expect: (\d+) (.+)$/m.exec(text);
    if (!m) return t.fail(`${name} has no "# expect: LINE key.path: reason" header`);
    const expected = `${file}:${m[1]}: ${m[2]}`;

    // In process: the first problem at that line is the one we expect.
    const err = t.throws(() => parseConfig(text, file), { instanceOf: ConfigError }) as ConfigError;
    const lines = formatProblems(file, err.problems);
    t.true(lines.some((l) => l.startsWith(expected)), `expected a line starting with\n  ${expected}\ngot\n  ${lines.join('\n  ')}`);

    // Through the CLI, exactly as an operator runs it.
    const r = await edgelb(['config', 'check', file]);
    t.is(r.code, 2);
    t.is(r.stdout, '');
    t.true(r.stderr.split('\n').some((l) => l.startsWith(expected)), r.stderr);
  });
}

test('every problem is reported, not only the first, each on its own line', (t) => {
  const text = ['node:', '  routerId: nope', '  asn: -1', '  uplink: eth0', '  extra: 1', 'datapath:', '  mode: fast', '  mtu: 1'].join('\n');
  const err = t.throws(() => parseConfig(text, 'f.yaml'), { instanceOf: ConfigError }) as ConfigError;
  t.deepEqual(formatProblems('f.yaml', err.problems), [
    'f.yaml:2: node.routerId: must be an IPv4 address such as 192.0.2.1 (got "nope")',
    'f.yaml:3: node.asn: must be from 1 to 4294967294 (got -1)',
    'f.yaml:5: node.extra: unknown key (got 1)',
    'f.yaml:7: datapath.mode: must be one of dsr, snat, hybrid (got "fast")',
    'f.yaml:8: datapath.mtu: must be from 576 to 9216 (got 1)',
  ]);
});

for (const example of ['config/edgelb.example.yaml', 'config/minimal.yaml']) {
  test(`${example} passes config check and prints the normalised config`, async (t) => {
    const r = await edgelb(['config', 'check', example]);
    t.is(r.code, 0, r.stderr);
    const printed = parseYaml(r.stdout) as Record<string, unknown>;
    t.deepEqual(printed, JSON.parse(JSON.stringify(loadConfigFile(example))));
  });
}

test('config check --firewall-out writes the config\'s nftables ruleset only when the config is valid', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-fwout-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'firewall.json');
  const ok = await edgelb(['config', 'check', 'config/edgelb.example.yaml', '--firewall-out', out]);
  t.is(ok.code, 0, ok.stderr);
  const { firewallRuleset } = await import('../../src/firewall/ruleset.js');
  t.deepEqual(JSON.parse(readFileSync(out, 'utf8')), JSON.parse(JSON.stringify(firewallRuleset(loadConfigFile('config/edgelb.example.yaml')))));
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'node:\n  asn: banana\n');
  const out2 = join(dir, 'firewall2.json');
  const r = await edgelb(['config', 'check', bad, '--firewall-out', out2]);
  t.is(r.code, 2);
  t.regex(r.stderr, /node\.asn/);
  t.throws(() => readFileSync(out2), { code: 'ENOENT' }, 'no ruleset for an invalid config');
});

test('defaults are filled in', (t) => {
  const c = loadConfigFile('config/minimal.yaml');
  t.is(c.datapath.maglevTableSize, 16381);
  t.is(c.datapath.mode, 'dsr');
  t.is(c.datapath.dispatch, 'ip-option');
  t.is(c.kubernetes.loadBalancerClass, 'edgelb.io/dsr');
  t.is(c.bgp.peers[0]?.holdTime, 90);
  t.is(c.bgp.peers[0]?.keepalive, 30);
  t.false(c.bgp.peers[0]?.bfd.enabled);
  t.true(c.pools[0]?.autoAssign);
  t.deepEqual(c.pools[0]?.serviceSelector, {});
});

test('a readable, private password file is accepted', (t) => {
  const pw = join(tmp, 'private-password');
  writeFileSync(pw, 'secret\n');
  chmodSync(pw, 0o600);
  const c = parseConfig(`node: {routerId: 10.0.0.1, asn: 1, uplink: e0}\nbgp: {peers: [{address: 10.0.0.2, asn: 2, passwordFile: "${pw}"}]}\n`, 'x');
  t.is(c.bgp.peers[0]?.passwordFile, pw);
});

test('holdTime 0 with keepalive 0 is valid; IPv6 peers and pools are valid', (t) => {
  const c = parseConfig(
    'node: {routerId: 10.0.0.1, asn: 1, uplink: e0}\nbgp: {peers: [{address: "2001:db8::2", asn: 2, holdTime: 0, keepalive: 0, localAddress: "2001:db8::1"}]}\npools: [{name: v6, cidrs: ["2001:db8:1::/64"]}]\n',
    'x',
  );
  t.is(c.bgp.peers[0]?.holdTime, 0);
  t.is(c.pools[0]?.cidrs[0], '2001:db8:1::/64');
});

test('IPv6 peer addresses are kept in one spelling (RFC 5952), so every comparison with gobgpd, bfdd and advertise.peers agrees', (t) => {
  const c = parseConfig(
    [
      'node: {routerId: 10.0.0.1, asn: 1, uplink: e0}',
      'bgp: {peers: [{address: "2001:DB8:0:0::2", asn: 2, localAddress: "2001:db8:0000::0:1"}, {address: 10.0.0.2, asn: 2}]}',
      'pools: [{name: v6, cidrs: ["2001:db8:1::/64"], advertise: {peers: ["2001:db8::0:2"]}}]',
    ].join('\n'),
    'x',
  );
  t.is(c.bgp.peers[0]?.address, '2001:db8::2');
  t.is(c.bgp.peers[0]?.localAddress, '2001:db8::1');
  t.is(c.bgp.peers[1]?.address, '10.0.0.2');
  t.deepEqual(c.pools[0]?.advertise.peers, ['2001:db8::2']);
});

test('IPv6 with the tc fallback (datapath.xdp off) is valid: the agent serves IPv6 on either hook', (t) => {
  const node = 'node: {routerId: 10.0.0.1, asn: 1, uplink: e0}';
  const on = parseConfig(`${node}\ndatapath: {xdp: 'off', ipv6: 'on'}\n`, 'x');
  t.is(on.datapath.xdp, 'off');
  t.is(on.datapath.ipv6, 'on');
  t.true(servesIpv6(on));
  // auto: on because a pool is IPv6, whichever hook.
  const auto = parseConfig(`${node}\ndatapath: {xdp: 'off'}\npools: [{name: v6, cidrs: ["2001:db8:1::/64"]}]\n`, 'x');
  t.true(servesIpv6(auto));
  t.false(servesIpv6(parseConfig(`${node}\ndatapath: {xdp: 'off', ipv6: 'off'}\npools: [{name: v6, cidrs: ["2001:db8:1::/64"]}]\n`, 'x')));
  t.false(servesIpv6(parseConfig(`${node}\ndatapath: {xdp: 'off'}\n`, 'x')), 'auto without an IPv6 pool');
});

test('a dual-stack pool is valid with a peer of each family, and without any peer (no BGP at all)', (t) => {
  const pools = 'pools: [{name: d, cidrs: [10.96.0.0/24, "2001:db8:1::/120"]}]';
  t.notThrows(() => parseConfig(`node: {routerId: 10.0.0.1, asn: 1, uplink: e0}\nbgp: {peers: [{address: 10.0.0.2, asn: 2}, {address: "2001:db8::2", asn: 2}]}\n${pools}\n`, 'x'));
  t.notThrows(() => parseConfig(`node: {routerId: 10.0.0.1, asn: 1, uplink: e0}\n${pools}\n`, 'x'));
  // The IPv4 side needs an IPv4 peer just the same.
  const err = t.throws(() => parseConfig(`node: {routerId: 10.0.0.1, asn: 1, uplink: e0}\nbgp: {peers: [{address: "2001:db8::2", asn: 2}]}\n${pools}\n`, 'x'), { instanceOf: ConfigError }) as ConfigError;
  t.deepEqual(formatProblems('x', err.problems), [
    'x:3: pools[0].cidrs[0]: IPv4 VIPs are announced only over IPv4 BGP sessions and bgp.peers has no IPv4 peer; add one (got "10.96.0.0/24")',
  ]);
});

test('an empty file reports the required keys', (t) => {
  const err = t.throws(() => parseConfig('', 'e.yaml'), { instanceOf: ConfigError }) as ConfigError;
  t.deepEqual(err.problems.map((p) => p.path.join('.')).sort(), ['node.asn', 'node.routerId', 'node.uplink']);
});

test('a missing file is one clear problem', async (t) => {
  const r = await edgelb(['config', 'check', '/nonexistent/edgelb.yaml']);
  t.is(r.code, 2);
  t.regex(r.stderr, /^\/nonexistent\/edgelb\.yaml:0: \(document\): file does not exist \(got nothing\)$/m);
});

test('edgelb version and --help work', async (t) => {
  const v = await edgelb(['version']);
  t.is(v.code, 0);
  t.regex(v.stdout, /^edgelb \d+\.\d+\.\d+ \(node 2[2-9]\./);
  for (const args of [['--help'], ['config', 'check', '--help'], ['run', '--help'], ['version', '--help']]) {
    const h = await edgelb(args);
    t.is(h.code, 0, `${args.join(' ')}: ${h.stderr}`);
    t.regex(h.stdout, /Usage: edgelb/);
  }
});

test('unknown commands and options are usage errors (exit 2)', async (t) => {
  t.is((await edgelb(['frobnicate'])).code, 2);
  const r = await edgelb(['config', 'check', '--bogus', 'config/minimal.yaml']);
  t.is(r.code, 2);
  t.regex(r.stderr, /edgelb config check: Unknown option '--bogus'/);
});

test('node.name defaults to a name unique per machine (from /etc/machine-id), never the hostname', (t) => {
  const mid = join(tmp, 'machine-id');
  const src = { machineId: mid, mountinfo: join(tmp, 'mountinfo-none'), productUuid: join(tmp, 'no-product-uuid') };
  writeFileSync(mid, '3d1219c7c4c5404aaa1f6d2a48adfda4\n');
  const a = defaultNodeName(src);
  t.regex(a, /^edge-[0-9a-f]{12}$/);
  t.is(defaultNodeName(src), a, 'stable');
  writeFileSync(mid, '0123456789abcdef0123456789abcdef\n');
  t.not(defaultNodeName(src), a, 'another machine, another name');
  t.false(defaultNodeName(src).includes('0123456789ab'), 'the raw machine id is not shown');
  writeFileSync(mid, '\n'); // e.g. an image before first boot
  t.is(defaultNodeName(src), '');
  t.is(defaultNodeName({ ...src, machineId: join(tmp, 'absent') }), '');
  const c = parseConfig('node: {routerId: 10.0.0.1, asn: 1, uplink: e0}\n', 'x');
  t.is(c.node.name, defaultNodeName());
  t.not(c.node.name, hostname());
});

test('the appliance (empty /etc/machine-id on a read-only root, a transient id mounted over it at every boot): node.name comes from the firmware UUID, else it is required', (t) => {
  const mid = join(tmp, 'machine-id-transient');
  const mountinfo = join(tmp, 'mountinfo-transient');
  const uuid = join(tmp, 'product_uuid');
  const src = { machineId: mid, mountinfo, productUuid: uuid };
  // What systemd does on a read-only root with an empty file: a tmpfs file mounted over it.
  writeFileSync(mountinfo, `22 1 0:20 / / ro,relatime - erofs /dev/vda2 ro\n41 22 0:25 /machine-id ${mid} ro,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755\n`);
  writeFileSync(uuid, '4C4C4544-0042-3510-8052-B4C04F4E3132\n');
  writeFileSync(mid, '3d1219c7c4c5404aaa1f6d2a48adfda4\n');
  const firstBoot = defaultNodeName(src);
  t.regex(firstBoot, /^edge-[0-9a-f]{12}$/);
  writeFileSync(mid, 'aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb\n'); // the next boot's transient id
  t.is(defaultNodeName(src), firstBoot, 'the same name after a reboot: the transient id is not used');
  t.is(machineIdentity(src)?.source, 'firmware-uuid');
  t.not(firstBoot, defaultNodeName({ ...src, mountinfo: join(tmp, 'mountinfo-none') }), 'a persistent machine id is preferred');
  // Firmware placeholders are no identity.
  for (const placeholder of ['00000000-0000-0000-0000-000000000000', 'FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF', 'Not Settable']) {
    writeFileSync(uuid, `${placeholder}\n`);
    t.is(defaultNodeName(src), '', placeholder);
  }
  // No default: the instance id (duplicate detection) still takes this boot's id; the name is required, saying why.
  t.is(machineIdentity(src, true)?.source, 'transient-machine-id');
  const err = t.throws(() => parseConfig('node: {name: null, routerId: 10.0.0.1, asn: 1, uplink: e0}\n', 'x'), { instanceOf: ConfigError });
  t.regex(err!.message, /node\.name: is required: this machine has no stable identity/);
});

test('a file that is not UTF-8 is one problem naming its first such line; a FIFO or device is refused without reading it', async (t) => {
  const latin1 = join(tmp, 'latin1.yaml');
  writeFileSync(latin1, Buffer.concat([
    Buffer.from('node: {routerId: 10.0.0.1, asn: 1, uplink: e0}\n# ok\nbgp: {peers: [{address: 10.0.0.2, asn: 2, passwordFile: "/etc/edgelb/cl'),
    Buffer.from([0xe9]), // "é" in Latin-1
    Buffer.from('"}]}\n'),
  ]));
  const err = t.throws(() => loadConfigFile(latin1), { instanceOf: ConfigError }) as ConfigError;
  t.deepEqual(formatProblems(latin1, err.problems), [`${latin1}:3: (document): is not UTF-8 (byte 0xe9); save it as UTF-8 (got nothing)`]);
  const r = await edgelb(['config', 'check', '/dev/zero']);
  t.is(r.code, 2);
  t.regex(r.stderr, /^\/dev\/zero:0: \(document\): is not a regular file/m);
});
