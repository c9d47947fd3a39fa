// A bpffs for tests that run agents under `ip netns exec` (which hides
// /sys/fs/bpf): mounted once under /run, visible to every namespace's
// processes, shared by all test files. Pins go in unique subdirectories.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { isOnBpffs } from '../../src/datapath/bpffs.js';

export const TEST_BPFFS = '/run/edgelb-test-bpffs';

export function testBpffs(): string {
  if (!isOnBpffs(TEST_BPFFS)) {
    mkdirSync(TEST_BPFFS, { recursive: true });
    try {
      execFileSync('mount', ['-t', 'bpf', 'bpf', TEST_BPFFS]);
    } catch (e) {
      // Another test file may have mounted it at the same moment.
      if (!isOnBpffs(TEST_BPFFS)) throw e;
    }
  }
  return TEST_BPFFS;
}
