// `npm run image:node`: the node agent as an OCI image, built without a
// Docker engine from Debian's tools: mmdebstrap makes a small bookworm root
// (the same release the native addon and node binary are built on, with the
// libraries they link: libbpf1, libelf1, zlib1g, libstdc++6), the
// appliance's runtime layout goes to /opt/edgelb (installRuntime: bundled
// dist, production node_modules, the addon, bpf/out), and buildah commits it
// as localhost/edgelb-node:<version> (containers-storage, what podman runs)
// and writes it as an OCI layout under images/out/edgelb-node.oci (what
// runc runs after `umoci unpack`, and what a registry takes).
//
// The DaemonSet in deploy/node-agent.yaml runs this image.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { installRuntime, OUT_DIR, productionModules, REPO } from './build.js';
import { progress, run } from './exec.js';

const SUITE = 'bookworm';
const MIRROR = 'http://deb.debian.org/debian';
const PACKAGES = ['libbpf1', 'libelf1', 'zlib1g', 'libstdc++6', 'libgcc-s1', 'ca-certificates'];

export const NODE_IMAGE_NAME = 'localhost/edgelb-node';
export const NODE_IMAGE_LAYOUT = join(OUT_DIR, 'edgelb-node.oci');

export function nodeImageTag(): string {
  return (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
}

export interface NodeImage {
  /** name:tag in containers-storage. */
  ref: string;
  /** OCI image layout directory and the tag inside it. */
  layout: string;
  tag: string;
  seconds: number;
}

async function baseTar(cacheDir: string): Promise<string> {
  const key = createHash('sha256').update([SUITE, MIRROR, ...PACKAGES, 'oci-v1'].join(',')).digest('hex').slice(0, 16);
  const tar = join(cacheDir, `oci-base-${SUITE}-${key}.tar`);
  if (existsSync(tar)) {
    progress(`node image base: cached ${tar}`);
    return tar;
  }
  for (const f of readdirSync(cacheDir)) if (f.startsWith('oci-base-')) rmSync(join(cacheDir, f), { force: true });
  progress(`node image base: mmdebstrap ${SUITE} (essential + ${PACKAGES.join(', ')})`);
  await run('mmdebstrap', [
    '--variant=essential', '--components=main', '--mode=root', '--format=tar', `--include=${PACKAGES.join(',')}`,
    '--dpkgopt=path-exclude=/usr/share/doc/*', '--dpkgopt=path-exclude=/usr/share/man/*', '--dpkgopt=path-exclude=/usr/share/locale/*',
    SUITE, `${tar}.part`, MIRROR,
  ]);
  await run('mv', [`${tar}.part`, tar]);
  return tar;
}

/** Builds the image; returns where it is. Needs root, buildah and mmdebstrap. */
export async function buildNodeImage(): Promise<NodeImage> {
  const t0 = Date.now();
  const cacheDir = join(OUT_DIR, 'cache');
  mkdirSync(cacheDir, { recursive: true });
  const base = await baseTar(cacheDir);
  const modules = await productionModules(cacheDir);
  const tag = nodeImageTag();
  const ref = `${NODE_IMAGE_NAME}:${tag}`;
  const ctr = (await run('buildah', ['from', '--name', `edgelb-node-build-${process.pid}`, 'scratch'])).trim();
  try {
    const root = (await run('buildah', ['mount', ctr])).trim();
    await run('tar', ['-x', '-f', base, '-C', root]);
    await installRuntime(root, modules);
    await run('buildah', [
      'config',
      '--entrypoint', '["/opt/edgelb/bin/edgelb"]',
      '--cmd', '["node", "run", "--help"]',
      '--workingdir', '/opt/edgelb',
      '--env', 'NODE_ENV=production',
      '--label', 'org.opencontainers.image.title=edgelb node agent',
      '--label', `org.opencontainers.image.version=${tag}`,
      ctr,
    ]);
    await run('buildah', ['commit', '--quiet', ctr, ref]);
  } finally {
    await run('buildah', ['rm', ctr]).catch(() => undefined);
  }
  rmSync(NODE_IMAGE_LAYOUT, { recursive: true, force: true });
  await run('buildah', ['push', '--quiet', ref, `oci:${NODE_IMAGE_LAYOUT}:${tag}`]);
  const seconds = (Date.now() - t0) / 1000;
  progress(`node image ${ref} built in ${seconds.toFixed(1)} s; OCI layout ${NODE_IMAGE_LAYOUT}:${tag}`);
  return { ref, layout: NODE_IMAGE_LAYOUT, tag, seconds };
}

if (process.argv[1]?.endsWith('image/oci.js')) {
  buildNodeImage().then(
    (i) => process.stdout.write(`${JSON.stringify(i)}\n`),
    (e: unknown) => {
      process.stderr.write(`image:node: ${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
