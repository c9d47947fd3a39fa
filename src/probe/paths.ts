import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type PathDispatch = 'ip-option' | 'ipip';

/** The repository (or install) root: dist/src/probe/ → ../../.. */
export function repoRoot(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
}
