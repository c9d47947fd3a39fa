// Hands a ruleset to nftables: `nft -j -f FILE` (or `-c` to only check it),
// optionally inside a network namespace.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NftRuleset } from './ruleset.js';

export interface NftOptions {
  /** nft binary. */
  nft?: string;
  /** Run inside `ip netns exec NAME`. */
  netns?: string;
  /** Check only (`nft -c`): nothing changes. */
  check?: boolean;
  timeoutMs?: number;
}

// By absolute path: node_modules/.bin (on PATH in the repo's scripts) has an
// unrelated "nft" (@vercel/nft).
export const NFT = existsSync('/usr/sbin/nft') ? '/usr/sbin/nft' : 'nft';

export async function runNft(args: string[], input: string | undefined, o: NftOptions = {}): Promise<string> {
  const nft = o.nft ?? NFT;
  const [cmd, argv] = o.netns ? ['ip', ['netns', 'exec', o.netns, nft, ...args]] : [nft, args];
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 10_000);
    child.stdout?.on('data', (b: Buffer) => { out += b.toString(); });
    child.stderr?.on('data', (b: Buffer) => { err += b.toString(); });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`nft ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${err.trim() || out.trim()}`));
    });
    // nft exiting early (bad arguments) must surface as its error, not EPIPE.
    child.stdin?.on('error', () => undefined);
    if (input !== undefined) child.stdin?.end(input);
  });
}

/**
 * Applies (or with `check`, only validates) a JSON ruleset. Through a file:
 * nft reads `-f -` by opening /dev/stdin, which fails on the socket Node
 * gives a child as stdin.
 */
export async function applyRuleset(rs: NftRuleset, o: NftOptions = {}): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-nft-'));
  try {
    const file = join(dir, 'ruleset.json');
    writeFileSync(file, JSON.stringify(rs), { mode: 0o600 });
    await runNft(['-j', ...(o.check ? ['-c'] : []), '-f', file], undefined, o);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
