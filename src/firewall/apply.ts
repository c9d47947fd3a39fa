// Hands a ruleset to nftables: `nft -j -f -` (or `-c` to only check it),
// optionally inside a network namespace.
import { spawn } from 'node:child_process';
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

export async function runNft(args: string[], input: string | undefined, o: NftOptions = {}): Promise<string> {
  const nft = o.nft ?? 'nft';
  const [cmd, argv] = o.netns ? ['ip', ['netns', 'exec', o.netns, nft, ...args]] : [nft, args];
  return await new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 10_000);
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { err += b.toString(); });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${cmd}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`nft ${args.join(' ')} failed (${signal ?? `exit ${code}`}): ${err.trim() || out.trim()}`));
    });
    child.stdin.end(input ?? '');
  });
}

/** Applies (or with `check`, only validates) a JSON ruleset. */
export async function applyRuleset(rs: NftRuleset, o: NftOptions = {}): Promise<void> {
  await runNft(['-j', ...(o.check ? ['-c'] : []), '-f', '-'], JSON.stringify(rs), o);
}
