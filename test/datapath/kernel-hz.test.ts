import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { kernelHz, parseKernelHz } from '../../src/datapath/kernel-hz.js';

test('CONFIG_HZ from a kernel config: the listed rates, 0 for anything else', (t) => {
  t.is(parseKernelHz('CONFIG_HZ_250=y\nCONFIG_HZ=250\nCONFIG_SCHED_HRTICK=y\n'), 250);
  t.is(parseKernelHz('CONFIG_HZ=1000'), 1000);
  t.is(parseKernelHz('CONFIG_HZ=100\n'), 100);
  t.is(parseKernelHz('CONFIG_HZ=300\n'), 0, 'a rate the program does not convert');
  t.is(parseKernelHz('# CONFIG_HZ is not set\nCONFIG_HZ_PERIODIC=y\n'), 0);
  t.is(parseKernelHz('CONFIG_HZ=25O\n'), 0);
  t.is(parseKernelHz(''), 0);
});

test('the first readable config wins, plain or gzipped; none readable = 0', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-hz-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const plain = join(dir, 'config-x');
  const gz = join(dir, 'config.gz');
  writeFileSync(plain, 'CONFIG_HZ=1000\n');
  writeFileSync(gz, gzipSync('CONFIG_HZ=250\n'));
  t.is(kernelHz([join(dir, 'missing'), plain, gz]), 1000);
  t.is(kernelHz([join(dir, 'missing'), gz]), 250);
  t.is(kernelHz([join(dir, 'missing')]), 0);
  t.is(kernelHz([dir]), 0, 'a directory is not a config');
});
