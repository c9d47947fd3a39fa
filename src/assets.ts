// Where edgelb's built artefacts live. The repository (or the appliance's
// runtime root, /opt/edgelb) holds them beside dist/: the eBPF objects in
// bpf/out, the N-API addon, the probe helper. The root is found from this
// module's own location, so the same code works from dist/src, from the
// image's bundle (dist/app) and under tests. Each path has an environment
// override for running against another build.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * The repository (or runtime) root: the nearest ancestor of this module
 * holding bpf/Makefile (the image ships that file for this reason).
 */
export function repoRoot(): string {
  let dir = here;
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'bpf', 'Makefile'))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`cannot find the edgelb repository root above ${here}`);
}

/** Path of a compiled BPF object: bpf/out/NAME.o (EDGELB_BPF_DIR overrides the directory). */
export function bpfObjectPath(name: string): string {
  const dir = process.env.EDGELB_BPF_DIR ?? join(repoRoot(), 'bpf', 'out');
  return join(dir, name.endsWith('.o') ? name : `${name}.o`);
}

/** The native/probe helper that sends optioned probes (EDGELB_PROBE overrides it). */
export function probeBinaryPath(): string {
  return process.env.EDGELB_PROBE ?? join(repoRoot(), 'native', 'probe', 'edgelb-probe');
}

/** The N-API addon native/bpf-loader-napi builds (EDGELB_BPF_LOADER overrides it). */
export function nativeAddonPath(): string {
  return process.env.EDGELB_BPF_LOADER ?? join(repoRoot(), 'native', 'bpf-loader-napi', 'build', 'Release', 'bpf_loader.node');
}

/**
 * Loads the native addon (once: Node caches it by path). Its exports are
 * untyped here; each binding module (the BPF loader, sd_notify) declares the
 * part it uses.
 */
export function requireNativeAddon(): unknown {
  const path = nativeAddonPath();
  if (!existsSync(path)) {
    throw new Error(`BPF loader addon not built: ${path} is missing (run scripts/setup --build-only)`);
  }
  return createRequire(import.meta.url)(path);
}
