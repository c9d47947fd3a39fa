// Golden files: the exact expected output of a generator (daemon configs,
// nftables rulesets), kept under test/golden/. After an intended change,
// run with UPDATE_GOLDEN=1 to rewrite them from what the code produces now,
// and review the diff before committing it.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const GOLDEN_DIR = 'test/golden';

/** The golden text at test/golden/NAME (rewritten to `actual` first when UPDATE_GOLDEN=1). */
export function golden(name: string, actual: string): string {
  const file = join(GOLDEN_DIR, name);
  if (process.env.UPDATE_GOLDEN === '1') {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, actual);
  }
  if (!existsSync(file)) throw new Error(`${file} is missing; run with UPDATE_GOLDEN=1 and review it`);
  return readFileSync(file, 'utf8');
}
