// The appliance runs edgelb from an esbuild bundle of dist/src instead of
// ~1 500 separate modules: on the emulated or small CPUs the boot budget is
// measured on, resolving and reading every file of @kubernetes/client-node
// alone cost seconds (natively: importing the Kubernetes controller 450–700 ms
// unbundled, 140 ms bundled). Lazy imports stay lazy: `--splitting` turns
// each dynamic import() into its own chunk, so `edgelb status` never loads
// the Kubernetes client.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { PluginBuild } from 'esbuild';

/** Where the bundle goes, relative to the runtime root (…/opt/edgelb). */
export const BUNDLE_DIR = 'dist/app';

/**
 * Left to node_modules: native addons, and pino, whose pretty-printing
 * transport starts a worker from a file path next to its own module.
 */
const EXTERNAL = ['*.node', 'pino', 'pino-pretty', 'thread-stream'];

// Bundled CommonJS dependencies call require() for Node built-ins; an ESM
// chunk has none of its own.
const REQUIRE_SHIM = "import { createRequire as __edgelbCreateRequire } from 'node:module'; const require = __edgelbCreateRequire(import.meta.url);";

/**
 * Node built-ins that the bundle takes through require() instead of an ESM
 * import. Importing node:http as ESM builds a module facade that reads every
 * export once, and http's lazy WebSocket/EventSource getters then load
 * Node's whole internal undici (fetch): a quarter of `edgelb config check`'s
 * run natively, about a second per process under the boot test's emulated
 * CPU. require() hands back the module object; esbuild's __toESM wraps it in
 * getters that read only what is used.
 */
const REQUIRED_BUILTINS = /^(node:)?https?$/;

const requireBuiltins = {
  name: 'edgelb-require-builtins',
  setup(build: Pick<PluginBuild, 'onResolve' | 'onLoad'>) {
    // The stand-in's own require() is the real built-in (esbuild leaves it to Node).
    build.onResolve({ filter: REQUIRED_BUILTINS }, (a) => (a.namespace === 'edgelb-required-builtin' ? { path: a.path, external: true } : { path: a.path.startsWith('node:') ? a.path : `node:${a.path}`, namespace: 'edgelb-required-builtin' }));
    build.onLoad({ filter: /.*/, namespace: 'edgelb-required-builtin' }, (a) => ({ contents: `module.exports = require(${JSON.stringify(a.path)});`, loader: 'js' }));
  },
};

export interface BundleResult {
  outDir: string;
  files: number;
  bytes: number;
}

/**
 * Bundles the CLI (every command, the agent included) and the compile-cache
 * warm-up script from the compiled dist/src of REPO into OUT_ROOT/dist/app.
 */
export async function bundleRuntime(repo: string, outRoot: string): Promise<BundleResult> {
  const outDir = join(outRoot, BUNDLE_DIR);
  const entries = ['dist/src/cli/main.js', 'dist/src/image/warm.js'].map((f) => join(repo, f));
  for (const e of entries) if (!existsSync(e)) throw new Error(`${e} is missing: run scripts/setup --build-only first`);
  rmSync(outDir, { recursive: true, force: true });
  const esbuild = await import('esbuild');
  const r = await esbuild.build({
    entryPoints: entries,
    outdir: outDir,
    entryNames: '[name]',
    chunkNames: 'chunk-[name]-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node22',
    external: EXTERNAL,
    plugins: [requireBuiltins],
    banner: { js: REQUIRE_SHIM },
    // Readable stack traces in the journal matter more than bytes here.
    minify: false,
    sourcemap: false,
    metafile: true,
    logLevel: 'warning',
    absWorkingDir: repo,
  });
  if (r.errors.length) throw new Error(`esbuild: ${r.errors.map((e) => e.text).join('; ')}`);
  const outputs = Object.entries(r.metafile.outputs);
  return { outDir, files: outputs.length, bytes: outputs.reduce((n, [, o]) => n + o.bytes, 0) };
}
