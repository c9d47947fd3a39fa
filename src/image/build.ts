// `npm run image`: builds the edgelb appliance, a bootable x86_64 UEFI GPT
// raw disk image, from Debian's archive plus this repository's runtime.
//
//   base rootfs   mmdebstrap (trixie, images/packages.txt), cached as a
//                 tarball keyed by everything that goes into it
//   runtime       Node binary, dist/src bundled by esbuild (dist/app, see
//                 bundle.ts), production node_modules (pruned copy, cached by
//                 package-lock.json; pino loads from there), bin/edgelb,
//                 bpf/out, the native addon → /opt/edgelb
//   root slot     erofs (lz4hc) of base + overlay + units + runtime
//   ESP           FAT32 filled with mtools (nothing here may mount FAT)
//   disk          sgdisk table, partitions written in with dd
//
//   signature     SHA256SUMS over the outputs and SHA256SUMS.sig, Ed25519 by
//                 openssl (sign.ts); the public key goes into the image
//                 (/usr/lib/edgelb/upgrade-keys), which accepts upgrades
//                 signed with it. Key: --signing-key PATH or
//                 $EDGELB_SIGNING_KEY, else a throwaway one in images/out/keys.
//
// Outputs in images/out/: edgelb.raw, edgelb.raw.zst, edgelb.raw.bmap,
// SHA256SUMS, SHA256SUMS.sig, edgelb-upgrade.pub.pem (the key images built
// here trust) and edgelb.json (version, layout, sizes, build time, signing
// key). Needs root.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync, copyFileSync, symlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_PROTO_DIR } from '../bgp/api-types.js';
import { protoCachePath, writeProtoCache } from '../bgp/gobgp-proto.js';
import { BUNDLE_DIR, bundleRuntime } from './bundle.js';
import { ensureTools, HOST_TOOLS, progress, run } from './exec.js';
import { signFile, signingKey, sumsText, SUMS_FILE, TRUSTED_KEYS_DIR, verifyImage, type SigningKey } from './sign.js';
import {
  bootEntry, CFG_LABEL, DEFAULT_SIZES, entryFileName, espSlotDir, findPartition, installStamp, LOADER_CONF,
  MIB, PART, partitionSpecs, placePartitions, type DiskLayout, type LayoutSizes,
} from './layout.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const OUT_DIR = join(REPO, 'images/out');
export const IMAGE_RAW = join(OUT_DIR, 'edgelb.raw');
export const IMAGE_MANIFEST = join(OUT_DIR, 'edgelb.json');
/** Throwaway signing keys live here (never in the repository: images/out is ignored). */
export const KEYS_DIR = join(OUT_DIR, 'keys');
/** The public key of the last build's signing key, next to its outputs. */
export const PUBKEY_FILE = 'edgelb-upgrade.pub.pem';

const SUITE = 'trixie';
const MIRROR = 'http://deb.debian.org/debian';

export interface ImageManifest {
  version: string;
  /** sha256 over everything the build puts in besides the Debian base (see fingerprint()). */
  fingerprint: string;
  built: string;
  suite: string;
  kernel: string;
  layout: DiskLayout;
  rootBytes: number;
  rawBytes: number;
  compressedBytes: number;
  buildSeconds: number;
  steps: Record<string, number>;
  /** Who signed SHA256SUMS: the key's id, and whether it was the build's throwaway key. */
  signature: { keyId: string; throwaway: boolean; sums: string };
  /** A deliberately different test image (see BuildOptions.variant), or absent. */
  variant?: Variant;
}

function sha256(parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

function walk(dir: string, out: string[]): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (p !== join(REPO, 'images/out')) walk(p, out);
    } else {
      out.push(p);
    }
  }
}

/**
 * What the image is made of, by content (tsc rewrites every file, so times
 * say nothing): compiled runtime, units, image config, lock file, BPF objects.
 */
export function fingerprint(): string {
  const files: string[] = [];
  for (const d of ['dist/src', 'systemd', 'images', 'bpf/out', 'native/bpf-loader-napi/build/Release']) walk(join(REPO, d), files);
  for (const f of ['package-lock.json', 'docs/flash.md', 'config/minimal.yaml']) if (existsSync(join(REPO, f))) files.push(join(REPO, f));
  const h = createHash('sha256');
  for (const f of files.sort()) {
    h.update(f.slice(REPO.length));
    h.update('\0');
    h.update(lstatSync(f).isSymbolicLink() ? readlinkSync(f) : readFileSync(f));
  }
  return h.digest('hex').slice(0, 16);
}

function packageList(): string[] {
  const text = readFileSync(join(REPO, 'images/packages.txt'), 'utf8');
  return text.split('\n').map((l) => l.replace(/#.*/, '').trim()).filter(Boolean);
}

function gitVersion(): string {
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
  let rev = 'nogit';
  try {
    const r = (args: string[]) => spawnSyncText('git', args);
    rev = r(['rev-parse', '--short=10', 'HEAD']).trim();
    if (r(['status', '--porcelain', '--untracked-files=no']).trim()) rev += '.dirty';
  } catch { /* not a git checkout: keep "nogit" */ }
  return `${pkg.version}+${rev}`;
}

function spawnSyncText(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { cwd: REPO, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The cached base rootfs tarball; built by mmdebstrap when its key changed. */
async function baseRootfs(cacheDir: string): Promise<string> {
  const pkgs = packageList();
  const customize = join(REPO, 'images/hooks/customize');
  const hook = join(REPO, 'images/initramfs/edgelb-initrd');
  const conf = join(REPO, 'images/initramfs/edgelb.conf');
  const machineId = join(REPO, 'images/initramfs/edgelb-machine-id');
  // The appliance's module blacklist applies in the initrd too (mkinitramfs copies /etc/modprobe.d).
  const blacklist = join(REPO, 'images/overlay/etc/modprobe.d/edgelb-appliance.conf');
  const key = sha256([SUITE, MIRROR, pkgs.join(','), ...[customize, hook, conf, machineId, blacklist].map((f) => readFileSync(f)), 'v1']).slice(0, 16);
  const tar = join(cacheDir, `base-${SUITE}-${key}.tar`);
  if (existsSync(tar)) {
    progress(`base rootfs: cached ${basename(tar)}`);
    return tar;
  }
  for (const f of readdirSync(cacheDir)) if (f.startsWith('base-')) rmSync(join(cacheDir, f), { force: true });
  progress(`base rootfs: mmdebstrap ${SUITE} with ${pkgs.length} packages (about a minute)`);
  const tmp = `${tar}.part`;
  await run('mmdebstrap', [
    '--variant=minbase', '--components=main', '--mode=root', '--format=tar',
    `--include=${pkgs.join(',')}`,
    // The erofs hook and conf must be in place before the kernel's postinst builds the initrd.
    // So must the machine-id script (a stable ID kept on the state partition).
    `--setup-hook=mkdir -p "$1/etc/initramfs-tools/hooks" "$1/etc/initramfs-tools/conf.d" "$1/etc/initramfs-tools/scripts/local-bottom" && cp ${hook} "$1/etc/initramfs-tools/hooks/edgelb-initrd" && cp ${conf} "$1/etc/initramfs-tools/conf.d/edgelb.conf" && install -m 0755 ${machineId} "$1/etc/initramfs-tools/scripts/local-bottom/edgelb-machine-id" && install -D -m 0644 ${blacklist} "$1/etc/modprobe.d/edgelb-appliance.conf"`,
    `--customize-hook=${customize} "$1"`,
    '--dpkgopt=path-exclude=/usr/share/doc/*', '--dpkgopt=path-include=/usr/share/doc/*/copyright',
    '--dpkgopt=path-exclude=/usr/share/man/*', '--dpkgopt=path-exclude=/usr/share/locale/*',
    '--dpkgopt=path-exclude=/usr/share/info/*',
    SUITE, tmp, MIRROR,
  ], { inherit: true });
  await run('mv', [tmp, tar]);
  return tar;
}

/** node_modules with dev dependencies pruned, cached by package-lock.json. */
export async function productionModules(cacheDir: string): Promise<string> {
  const lock = readFileSync(join(REPO, 'package-lock.json'));
  const key = sha256([lock, readFileSync(join(REPO, 'package.json'))]).slice(0, 16);
  const dir = join(cacheDir, `modules-${key}`);
  if (existsSync(join(dir, '.done'))) {
    progress('node_modules (production): cached');
    return join(dir, 'node_modules');
  }
  for (const f of readdirSync(cacheDir)) if (f.startsWith('modules-')) rmSync(join(cacheDir, f), { recursive: true, force: true });
  progress('node_modules (production): copying and pruning dev dependencies');
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(REPO, 'package.json'), join(dir, 'package.json'));
  copyFileSync(join(REPO, 'package-lock.json'), join(dir, 'package-lock.json'));
  await copyModules(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  const npm = join(REPO, '.tools/node/bin/npm');
  await run(existsSync(npm) ? npm : 'npm', ['prune', '--omit=dev', '--offline', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error'], { cwd: dir });
  writeFileSync(join(dir, '.done'), '');
  return join(dir, 'node_modules');
}

/**
 * A real copy of node_modules for `npm prune` to cut down. In a git worktree
 * node_modules is often a symlink to the main checkout's: `cp -a` would copy
 * the link, and npm prune would then delete the dev dependencies (and
 * anything the lock file does not name) out of everyone's shared tree.
 */
export async function copyModules(from: string, to: string): Promise<void> {
  mkdirSync(to, { recursive: true });
  await run('cp', ['-a', `${from}/.`, `${to}/`]);
  if (lstatSync(to).isSymbolicLink()) throw new Error(`${to}: a symlink after copying ${from}; refusing to prune through it`);
}

/** Lays the edgelb runtime out under ROOT/opt/edgelb. */
export async function installRuntime(root: string, modules: string): Promise<void> {
  const opt = join(root, 'opt/edgelb');
  const node = join(REPO, '.tools/node/bin/node');
  if (!existsSync(node)) throw new Error(`${node} is missing: run scripts/setup first (the appliance ships this Node, Debian's is too old)`);
  if (!existsSync(join(REPO, 'dist/src'))) throw new Error('dist/src is missing: run scripts/setup --build-only first');
  mkdirSync(join(opt, '.tools/node/bin'), { recursive: true });
  copyFileSync(node, join(opt, '.tools/node/bin/node'));
  await run('chmod', ['0755', join(opt, '.tools/node/bin/node')]);
  const b = await bundleRuntime(REPO, opt);
  progress(`runtime: ${b.files} bundled files, ${(b.bytes / MIB).toFixed(1)} MiB in ${BUNDLE_DIR}`);
  await run('cp', ['-a', modules, join(opt, 'node_modules')]);
  await run('cp', ['-a', join(REPO, 'bin'), join(opt, 'bin')]);
  copyFileSync(join(REPO, 'package.json'), join(opt, 'package.json'));
  const optional: [string, string][] = [
    ['bpf/out', 'bpf/out'],
    // The runtime finds its root by this file (src/assets.ts repoRoot()).
    ['bpf/Makefile', 'bpf/Makefile'],
    ['native/probe/edgelb-probe', 'native/probe/edgelb-probe'],
    ['native/bpf-loader-napi/build/Release/bpf_loader.node', 'native/bpf-loader-napi/build/Release/bpf_loader.node'],
    ['config', 'config'],
    ['docs/flash.md', 'docs/flash.md'],
  ];
  for (const [from, to] of optional) {
    const src = join(REPO, from);
    if (!existsSync(src)) {
      progress(`runtime: ${from} not present, skipped`);
      continue;
    }
    mkdirSync(dirname(join(opt, to)), { recursive: true });
    await run('cp', ['-a', src, join(opt, to)]);
  }
  symlinkSync('/opt/edgelb/bin/edgelb', join(root, 'usr/bin/edgelb'));
}

/** Where the V8 code cache ships (units set NODE_COMPILE_CACHE to it). */
export const COMPILE_CACHE = '/opt/edgelb/.cache/node-compile';

async function warmCompileCache(root: string): Promise<void> {
  const cfg = '/opt/edgelb/config/minimal.yaml';
  const args = [root, '/usr/bin/env', `NODE_COMPILE_CACHE=${COMPILE_CACHE}`, '/opt/edgelb/.tools/node/bin/node', `/opt/edgelb/${BUNDLE_DIR}/warm.js`];
  if (existsSync(join(root, cfg))) args.push(cfg, '/tmp/warm-firewall.json');
  try {
    progress(await run('chroot', args));
  } catch (e) {
    progress(`warning: no compile cache (${e instanceof Error ? e.message : String(e)})`);
  }
  rmSync(join(root, 'tmp/warm-firewall.json'), { force: true });
}

/** Units from systemd/ go to /etc/systemd/system and are enabled per their [Install]. */
async function installUnits(root: string): Promise<string[]> {
  const dir = join(REPO, 'systemd');
  const units = readdirSync(dir).filter((f) => /\.(service|mount|timer|socket|target|path)$/.test(f)).sort();
  const enable: string[] = [];
  for (const u of units) {
    copyFileSync(join(dir, u), join(root, 'etc/systemd/system', u));
    if (/^\[Install\]/m.test(readFileSync(join(dir, u), 'utf8'))) enable.push(u);
  }
  enable.push('systemd-networkd.service');
  await run('systemctl', [`--root=${root}`, 'enable', ...enable]);
  return units;
}

async function makeEsp(work: string, root: string, layout: DiskLayout, version: string, stamp: string): Promise<string> {
  const esp = join(work, 'esp.img');
  const p = findPartition(layout, PART.esp);
  await run('mkfs.vfat', ['-F', '32', '-n', 'EDGELB-ESP', '-C', esp, String(p.sizeBytes / 1024)]);
  const img = ['-i', esp];
  await run('mmd', [...img, '::/EFI', '::/EFI/BOOT', '::/EFI/systemd', '::/loader', '::/loader/entries', '::/edgelb', `::${espSlotDir('a')}`, `::${espSlotDir('b')}`]);
  const efi = join(root, 'usr/lib/systemd/boot/efi/systemd-bootx64.efi');
  await run('mcopy', [...img, efi, '::/EFI/BOOT/BOOTX64.EFI']);
  await run('mcopy', [...img, efi, '::/EFI/systemd/systemd-bootx64.efi']);
  await run('mcopy', [...img, join(work, 'vmlinuz'), `::${espSlotDir('a')}/vmlinuz`]);
  await run('mcopy', [...img, join(work, 'initrd.img'), `::${espSlotDir('a')}/initrd.img`]);
  writeFileSync(join(work, 'loader.conf'), LOADER_CONF);
  await run('mcopy', [...img, join(work, 'loader.conf'), '::/loader/loader.conf']);
  // The shipped slot is known good: no boot counting on its entry.
  writeFileSync(join(work, 'entry.conf'), bootEntry({ slot: 'a', imageVersion: version, installStamp: stamp }));
  await run('mcopy', [...img, join(work, 'entry.conf'), `::/loader/entries/${entryFileName('a')}`]);
  // The image's version, for `edgelb-upgrade` reading a new image.
  writeFileSync(join(work, 'release'), `${version}\n`);
  await run('mcopy', [...img, join(work, 'release'), '::/edgelb/release']);
  return esp;
}

async function makeCfg(work: string, layout: DiskLayout): Promise<string> {
  const cfg = join(work, 'cfg.img');
  const p = findPartition(layout, PART.cfg);
  await run('mkfs.vfat', ['-n', CFG_LABEL, '-C', cfg, String(p.sizeBytes / 1024)]);
  await run('mmd', ['-i', cfg, '::/network']);
  await run('mcopy', ['-i', cfg, join(REPO, 'images/cfg/README.txt'), '::/README.txt']);
  const example = join(REPO, 'config/edgelb.example.yaml');
  if (existsSync(example)) await run('mcopy', ['-i', cfg, example, '::/edgelb.yaml.example']);
  return cfg;
}

async function makeState(work: string, layout: DiskLayout): Promise<string> {
  const state = join(work, 'state.img');
  const p = findPartition(layout, PART.state);
  await run('mkfs.ext4', ['-q', '-F', '-L', 'edgelb-state', '-m', '0', state, `${p.sizeBytes / 1024}k`]);
  return state;
}

async function assembleDisk(out: string, layout: DiskLayout, images: Record<string, string | null>): Promise<void> {
  rmSync(out, { force: true });
  await run('truncate', ['-s', String(layout.totalBytes), out]);
  const args = ['-o'];
  for (const p of layout.partitions) {
    args.push('-n', `${p.index}:${p.firstSector}:${p.lastSector}`, '-t', `${p.index}:${p.type}`, '-c', `${p.index}:${p.name}`);
  }
  await run('sgdisk', [...args, out]);
  for (const p of layout.partitions) {
    const img = images[p.name];
    if (!img) continue;
    const size = statSync(img).size;
    if (size > p.sizeBytes) throw new Error(`${p.name}: ${basename(img)} is ${(size / MIB).toFixed(1)} MiB, the partition only ${p.sizeMiB} MiB`);
    await run('dd', [`if=${img}`, `of=${out}`, 'bs=1M', `seek=${p.offsetBytes / MIB}`, 'conv=notrunc,sparse', 'status=none']);
  }
}

/**
 * Test images that must fail in a known way. broken-agent: the agent's unit
 * starts a process that crashes at once, everything else as built — an
 * upgrade that passes the config check but never gets READY (the boot-
 * counting test: it must be rolled back).
 */
export type Variant = 'broken-agent';

const VARIANT_FILES: Record<Variant, Record<string, string>> = {
  'broken-agent': {
    'etc/systemd/system/edgelb.service.d/zz-broken-test-image.conf': [
      '# A deliberately broken TEST image (npm run image variant broken-agent):',
      '# the agent crashes before READY. Never ship this.',
      '[Service]',
      'ExecStart=',
      `ExecStart=/opt/edgelb/.tools/node/bin/node -e "throw new Error('deliberately broken test image: the agent crashes at start')"`,
      '',
    ].join('\n'),
  },
};

export interface BuildOptions {
  sizes?: LayoutSizes;
  /** zstd level of the compressed copy. */
  zstdLevel?: number;
  /** Where the outputs go (default images/out); the Debian base cache stays in images/out/cache. */
  outDir?: string;
  variant?: Variant;
  /** Also write .zst and .bmap (default true). */
  compressed?: boolean;
  /** Private key (Ed25519 PEM) to sign with; default $EDGELB_SIGNING_KEY, else the throwaway key. */
  signingKey?: string;
}

export async function buildImage(o: BuildOptions = {}): Promise<ImageManifest> {
  const t0 = Date.now();
  const steps: Record<string, number> = {};
  let tStep = Date.now();
  const step = (name: string) => {
    steps[name] = Math.round((Date.now() - tStep) / 100) / 10;
    progress(`${name}: ${steps[name]} s`);
    tStep = Date.now();
  };
  if (process.getuid?.() !== 0) throw new Error('the image build needs root (mmdebstrap, device nodes in the rootfs)');
  await ensureTools(HOST_TOOLS);
  step('host tools');

  const outDir = o.outDir ?? OUT_DIR;
  const rawOut = join(outDir, 'edgelb.raw');
  const cacheDir = join(OUT_DIR, 'cache');
  const work = join(outDir, 'work');
  mkdirSync(cacheDir, { recursive: true });
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const key = signingKey(KEYS_DIR, o.signingKey ?? process.env.EDGELB_SIGNING_KEY);
  progress(key.throwaway
    ? `signing with a THROWAWAY key made on this machine for tests, ${key.privatePath} (id ${key.keyId}); to sign with your own: --signing-key PATH or EDGELB_SIGNING_KEY=PATH (openssl genpkey -algorithm ed25519 -out PATH)`
    : `signing with the key ${key.privatePath} (id ${key.keyId})`);
  const version = `${gitVersion()}${o.variant ? `+${o.variant}` : ''}`;
  const print = fingerprint();
  const now = new Date();
  const stamp = installStamp(now);
  progress(`edgelb ${version}, Debian ${SUITE}`);

  const base = await baseRootfs(cacheDir);
  step('base rootfs');
  const modules = await productionModules(cacheDir);
  step('production node_modules');

  const root = join(work, 'root');
  mkdirSync(root);
  await run('tar', ['-xf', base, '-C', root, '--numeric-owner']);
  // Kernel and initrd move to the ESP; the root slot does not need them.
  const boot = join(root, 'boot');
  const kernelFile = readdirSync(boot).find((f) => f.startsWith('vmlinuz-'));
  const initrdFile = readdirSync(boot).find((f) => f.startsWith('initrd.img-'));
  if (!kernelFile || !initrdFile) throw new Error(`no kernel/initrd in the base rootfs /boot (have: ${readdirSync(boot).join(', ')})`);
  const kernel = kernelFile.slice('vmlinuz-'.length);
  await run('mv', [join(boot, kernelFile), join(work, 'vmlinuz')]);
  await run('mv', [join(boot, initrdFile), join(work, 'initrd.img')]);
  await run('sh', ['-c', `rm -rf "${boot}"/* "${root}"/vmlinuz* "${root}"/initrd.img*`]);

  await run('cp', ['-a', `${join(REPO, 'images/overlay')}/.`, `${root}/`]);
  installTrustedKey(root, key);
  if (o.variant) {
    for (const [path, text] of Object.entries(VARIANT_FILES[o.variant])) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      writeFileSync(join(root, path), text);
    }
    progress(`variant ${o.variant}: a deliberately broken test image`);
  }
  await installRuntime(root, modules);
  // gobgp's API parsed once here instead of at every agent start (src/bgp/gobgp-proto.ts).
  const protoCache = protoCachePath(join(root, 'opt/edgelb'));
  mkdirSync(dirname(protoCache), { recursive: true });
  writeProtoCache(join(root, DEFAULT_PROTO_DIR.slice(1)), protoCache);
  await warmCompileCache(root);
  const units = await installUnits(root);
  progress(`units: ${units.join(' ')}`);
  // Empty machine-id: every flashed device gets its own. The initrd's
  // edgelb-machine-id script bind-mounts the one kept on the state partition
  // over it (made there on the first boot).
  writeFileSync(join(root, 'etc/machine-id'), '');
  writeFileSync(join(root, 'usr/lib/edgelb-release'), `${version}\n`);
  writeFileSync(join(root, 'usr/lib/os-release'), `${readFileSync(join(root, 'usr/lib/os-release'), 'utf8').trimEnd()}\nIMAGE_ID=edgelb\nIMAGE_VERSION=${version}\n`);
  mkdirSync(join(root, 'efi'), { recursive: true });
  step('rootfs assembled');

  const rootImg = join(work, 'root.erofs');
  await run('mkfs.erofs', ['-zlz4hc', '-T', String(Math.floor(now.getTime() / 1000)), rootImg, root]);
  const rootBytes = statSync(rootImg).size;
  progress(`root slot: ${(rootBytes / MIB).toFixed(1)} MiB erofs`);
  step('root erofs');

  const layout = placePartitions(partitionSpecs(o.sizes ?? DEFAULT_SIZES));
  const esp = await makeEsp(work, root, layout, version, stamp);
  const cfg = await makeCfg(work, layout);
  const state = await makeState(work, layout);
  step('esp, cfg, state');

  const tmpRaw = join(work, 'edgelb.raw');
  await assembleDisk(tmpRaw, layout, {
    [PART.esp]: esp, [PART.root('a')]: rootImg, [PART.root('b')]: null, [PART.cfg]: cfg, [PART.state]: state,
  });
  step('disk');

  const exts = o.compressed === false ? [''] : ['', '.zst', '.bmap'];
  if (o.compressed !== false) {
    await run('zstd', ['-q', '-f', '-T0', `-${o.zstdLevel ?? 6}`, tmpRaw, '-o', `${tmpRaw}.zst`]);
    await run('bmaptool', ['-q', 'create', '-o', `${tmpRaw}.bmap`, tmpRaw]);
    step('zstd + bmap');
  }

  // Signed before it is moved into place: an output without its signature never sits in outDir.
  const sums = join(work, SUMS_FILE);
  writeFileSync(sums, await sumsText(exts.map((e) => `${tmpRaw}${e}`)));
  signFile(key, sums);
  writeFileSync(join(work, PUBKEY_FILE), key.publicPem);
  await verifyImage(tmpRaw, { keys: join(work, PUBKEY_FILE) });
  step('sha256 + signature');

  for (const f of [...exts.map((e) => `edgelb.raw${e}`), SUMS_FILE, `${SUMS_FILE}.sig`, PUBKEY_FILE]) await run('mv', ['-f', join(work, f), join(outDir, f)]);
  rmSync(root, { recursive: true, force: true });
  const manifest: ImageManifest = {
    version, fingerprint: print, built: now.toISOString(), suite: SUITE, kernel, layout, rootBytes,
    rawBytes: statSync(rawOut).size, compressedBytes: o.compressed === false ? 0 : statSync(`${rawOut}.zst`).size,
    buildSeconds: Math.round((Date.now() - t0) / 100) / 10, steps,
    signature: { keyId: key.keyId, throwaway: key.throwaway, sums: SUMS_FILE },
    ...(o.variant ? { variant: o.variant } : {}),
  };
  writeFileSync(join(outDir, 'edgelb.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** The signing key's public half, trusted by the image for upgrades. */
function installTrustedKey(root: string, key: SigningKey): void {
  const dir = join(root, TRUSTED_KEYS_DIR.slice(1));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${key.keyId}.pem`), key.publicPem, { mode: 0o644 });
}

async function main(): Promise<void> {
  let key: string | undefined;
  try {
    key = parseArgs({ args: process.argv.slice(2), options: { 'signing-key': { type: 'string' } } }).values['signing-key'];
  } catch (e) {
    throw new Error(`${(e as Error).message}\nusage: npm run image [-- --signing-key PATH]  (or EDGELB_SIGNING_KEY=PATH; without either, a throwaway test key)`, { cause: e });
  }
  const m = await buildImage({ signingKey: key });
  progress(`done: ${IMAGE_RAW} (${(m.rawBytes / MIB).toFixed(0)} MiB raw, ${(m.compressedBytes / MIB).toFixed(0)} MiB zstd, root ${(m.rootBytes / MIB).toFixed(0)} MiB) in ${m.buildSeconds} s`);
  progress(`signed: ${join(OUT_DIR, SUMS_FILE)} + .sig by key ${m.signature.keyId}${m.signature.throwaway ? ' (THROWAWAY test key)' : ''}; the image trusts it for upgrades (${join(OUT_DIR, PUBKEY_FILE)})`);
  console.log(JSON.stringify({ build_s: m.buildSeconds, raw_mib: Math.round(m.rawBytes / MIB), compressed_mib: Math.round(m.compressedBytes / MIB * 10) / 10, root_mib: Math.round(m.rootBytes / MIB) }));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: unknown) => {
    process.stderr.write(`[image] FAILED: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
