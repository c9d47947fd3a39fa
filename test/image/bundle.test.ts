// The appliance runs the CLI from the esbuild bundle (src/image/bundle.ts);
// the boot test covers `config check` and `run` there. This runs the other
// commands from a fresh bundle, laid out as in the image, on this machine.
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bundleRuntime } from '../../src/image/bundle.js';
import { copyModules } from '../../src/image/build.js';
import { loadConfigFile } from '../../src/config/load.js';
import { firewallRuleset } from '../../src/firewall/ruleset.js';
import { sysctlFile } from '../../src/firewall/sysctl.js';

const run = promisify(execFile);
const REPO = process.cwd();

test('the bundled CLI: version, config check --firewall-out --sysctl-out, firewall, node/run/upgrade help, agent commands without an agent', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'edgelb-bundle-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const b = await bundleRuntime(REPO, root);
  t.true(b.files > 3, 'lazy imports became chunks');
  // As in the image: package.json and bpf/Makefile mark the runtime root, pino loads from node_modules.
  mkdirSync(join(root, 'bpf'));
  copyFileSync(join(REPO, 'bpf/Makefile'), join(root, 'bpf/Makefile'));
  copyFileSync(join(REPO, 'package.json'), join(root, 'package.json'));
  symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'));
  const main = join(root, 'dist/app/main.js');
  const cli = async (...args: string[]) => run(process.execPath, [main, ...args]).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );

  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
  t.regex((await cli('version')).out, new RegExp(`^edgelb ${pkg.version.replace(/\./g, '\\.')} \\(node `));

  const fw = join(root, 'fw.json');
  const sc = join(root, 'sysctl.conf');
  const ok = await cli('config', 'check', 'config/edgelb.example.yaml', '--firewall-out', fw, '--sysctl-out', sc);
  t.is(ok.code, 0, ok.err);
  t.deepEqual(JSON.parse(readFileSync(fw, 'utf8')), JSON.parse(JSON.stringify(firewallRuleset(loadConfigFile('config/edgelb.example.yaml')))));
  t.is(readFileSync(sc, 'utf8'), sysctlFile(loadConfigFile('config/edgelb.example.yaml')));
  // The boot's first Node process loads no more of Node than it needs: an
  // ESM import of node:http would load Node's internal undici (fetch) —
  // a quarter of this command's run, about a second under the boot test's emulation.
  const probe = join(root, 'probe.mjs');
  const loaded = join(root, 'loaded.json');
  writeFileSync(probe, `import { writeFileSync } from 'node:fs';\nprocess.on('exit', () => writeFileSync(${JSON.stringify(loaded)}, JSON.stringify(process.moduleLoadList)));\n`);
  await run(process.execPath, ['--import', probe, main, 'config', 'check', 'config/edgelb.example.yaml', '--firewall-out', fw, '--sysctl-out', sc]);
  const internals = JSON.parse(readFileSync(loaded, 'utf8')) as string[];
  t.true(internals.some((m) => /NativeModule fs/.test(m)), 'the probe saw the process\'s modules');
  t.deepEqual(internals.filter((m) => /undici/.test(m)), [], 'config check does not load undici');
  const bad = await cli('config', 'check', 'test/fixtures/config/invalid/02-bad-routerid.yaml', '--firewall-out', join(root, 'no.json'), '--sysctl-out', join(root, 'no.conf'));
  t.is(bad.code, 2, bad.err);
  t.regex(bad.err, /node\.routerId/);
  t.false(existsSync(join(root, 'no.json')) || existsSync(join(root, 'no.conf')), 'nothing written for an invalid config');

  const show = await cli('firewall', 'show', '--config', 'config/minimal.yaml');
  t.is(show.code, 0, show.err);
  t.truthy((JSON.parse(show.out) as { nftables: unknown[] }).nftables.length);

  for (const [args, re] of [[['node', 'run', '--help'], /Usage: edgelb node run/], [['run', '--help'], /Usage: edgelb run/], [['upgrade', '--help'], /usage: edgelb-upgrade/]] as const) {
    const r = await cli(...args);
    t.regex(r.out + r.err, re, args.join(' '));
  }
  const st = await cli('status', '--socket', join(root, 'nothing.sock'));
  t.is(st.code, 1);
  t.regex(st.err, /cannot reach the edgelb agent/);
});

test('production node_modules are copied for real, even from a symlinked node_modules (npm prune must not reach the shared tree)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-modules-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'shared/pkg'), { recursive: true });
  writeFileSync(join(dir, 'shared/pkg/index.js'), 'x');
  symlinkSync(join(dir, 'shared'), join(dir, 'link'));
  await copyModules(join(dir, 'link'), join(dir, 'copy'));
  t.false(lstatSync(join(dir, 'copy')).isSymbolicLink());
  rmSync(join(dir, 'copy/pkg'), { recursive: true });
  t.true(existsSync(join(dir, 'shared/pkg/index.js')), 'removing from the copy leaves the original alone');
});
