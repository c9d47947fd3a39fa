// The edgelb command's own exits: an invalid config or a mistyped option
// through any command is the usage/config error it is in `config check`
// (exit 2, one line per problem), never a Node stack trace.
import test from 'ava';
import { execFile } from 'node:child_process';

function edgelb(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('bin/edgelb', args, (e, stdout, stderr) => resolve({ code: e ? (e as { code: number }).code : 0, stdout, stderr }));
  });
}

const noStack = (s: string) => !/^\s+at /m.test(s);

test('edgelb firewall show|apply with an invalid config: exit 2, the problems as config check prints them, no stack', async (t) => {
  const file = 'test/fixtures/config/invalid/03-asn-zero.yaml';
  for (const cmd of ['show', 'apply']) {
    const r = await edgelb(['firewall', cmd, '--config', file]);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, /^test\/fixtures\/config\/invalid\/03-asn-zero\.yaml:4: node\.asn: must be from 1 to 4294967294 \(got 0\)$/m);
    t.true(noStack(r.stderr), r.stderr);
  }
});

test('an unknown option to firewall or upgrade is a usage error: exit 2, no stack', async (t) => {
  for (const args of [['firewall', 'show', '--bogus'], ['upgrade', '--bogus']]) {
    const r = await edgelb(args);
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, /--bogus/);
    t.true(noStack(r.stderr), r.stderr);
  }
});

test('edgelb upgrade that cannot proceed says why in one line, exit 1, no stack', async (t) => {
  const r = await edgelb(['upgrade', '/nonexistent/edgelb.raw', '--disk', '/nonexistent/disk']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^edgelb upgrade: /m);
  t.true(noStack(r.stderr), r.stderr);
});

test('edgelb run --log-level with an unknown level is a usage error before anything starts', async (t) => {
  const r = await edgelb(['run', '--config', '/nonexistent/edgelb.yaml', '--log-level', 'verbose']);
  t.is(r.code, 2);
  t.regex(r.stderr, /^edgelb run: --log-level must be one of trace, debug, info, warn, error, fatal \(got "verbose"\)$/m);
  t.true(noStack(r.stderr), r.stderr);
});
