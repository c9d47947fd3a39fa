// bench/lib/e2e-variants.ts: the configurations bench:e2e gives the edges
// and nodes for IPVS, nftables DSR and SNAT. Golden files:
// test/golden/bench/e2e-VARIANT.txt (UPDATE_GOLDEN=1 rewrites them; review
// the diff). nft must accept every generated ruleset.
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { kernelVariant, NFT, type E2eTopology, type KernelVariant, type Step } from '../../bench/lib/e2e-variants.js';

const GOLDEN = 'test/golden/bench';

const TOPO: E2eTopology = {
  vip: '198.51.100.3',
  tcpPort: 8080,
  udpPort: 9090,
  edges: [
    { name: 'edge1', ns: 'elb-0000-edge1', uplink: 'eth0', address: '10.0.0.11', mac: '02:00:00:00:00:11' },
    { name: 'edge2', ns: 'elb-0000-edge2', uplink: 'eth0', address: '10.0.0.12', mac: '02:00:00:00:00:12' },
  ],
  nodes: [
    { name: 'node1', ns: 'elb-0000-node1', ifname: 'eth0', address: '10.0.0.21', mac: '02:00:00:00:00:21', pods: ['10.244.1.10', '10.244.1.11'] },
    { name: 'node2', ns: 'elb-0000-node2', ifname: 'eth0', address: '10.0.0.22', mac: '02:00:00:00:00:22', pods: ['10.244.2.10'] },
  ],
};

function render(steps: Step[]): string {
  return steps.map((s) => `[${s.ns}]${s.mayFail ? ' (may fail)' : ''} ${s.argv.join(' ')}${s.input ? `\n${s.input.trimEnd()}` : ''}`).join('\n');
}

const VARIANTS: KernelVariant[] = ['ipvs', 'nftdsr', 'snat'];

for (const v of VARIANTS) {
  test(`golden: ${v}`, (t) => {
    const plan = kernelVariant(v, TOPO);
    const got = `# ${plan.describe}\n## probe\n${plan.probe ? render([plan.probe]) : '(none)'}\n## setup\n${render(plan.setup)}\n## teardown\n${render(plan.teardown)}\n`;
    const file = join(GOLDEN, `e2e-${v}.txt`);
    if (process.env.UPDATE_GOLDEN === '1') writeFileSync(file, got);
    t.is(got, readFileSync(file, 'utf8'));
  });
}

test('nft -c accepts every generated ruleset', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgelb-e2e-variants-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let n = 0;
  for (const v of VARIANTS) {
    for (const s of kernelVariant(v, TOPO).setup) {
      if (!s.input) continue;
      // The netdev table names its device: check it against one that exists here.
      const file = join(dir, `${v}-${n++}.nft`);
      writeFileSync(file, s.input.replaceAll('"eth0"', '"lo"'));
      t.notThrows(() => execFileSync(NFT, ['-c', '-f', file], { stdio: 'pipe' }), `${v}: ${s.input}`);
    }
  }
  t.true(n >= 5);
});

test('every setup step has a teardown: the DSR node half undoes its address, table and ARP settings', (t) => {
  for (const v of VARIANTS) {
    const plan = kernelVariant(v, TOPO);
    for (const s of plan.setup) {
      if (s.argv[0] === NFT) t.true(plan.teardown.some((x) => x.ns === s.ns && x.argv[0] === NFT && x.argv[1] === 'delete'), `${v}: table in ${s.ns} removed`);
      if (s.argv[0] === 'ip' && s.argv[2] === 'add') t.true(plan.teardown.some((x) => x.ns === s.ns && x.argv.join(' ') === s.argv.join(' ').replace(' add ', ' del ')), `${v}: ${s.argv.join(' ')} undone`);
      if (s.argv[0] === 'sysctl') {
        const key = s.argv[2]!.split('=')[0]!;
        t.true(plan.teardown.some((x) => x.ns === s.ns && x.argv[2] === `${key}=0`), `${v}: ${key} back to 0 in ${s.ns}`);
      }
    }
  }
});

test('weights follow the pods: a node with one pod gets half the share of a node with two', (t) => {
  const ipvs = render(kernelVariant('ipvs', TOPO).setup);
  t.regex(ipvs, /-r 10\.0\.0\.21:8080 -g -w 2/);
  t.regex(ipvs, /-r 10\.0\.0\.22:8080 -g -w 1/);
  const dsr = kernelVariant('nftdsr', TOPO).setup[0]!.input!;
  t.regex(dsr, /mod 3 map \{ 0 : 02:00:00:00:00:21, 1 : 02:00:00:00:00:21, 2 : 02:00:00:00:00:22 \}/);
});

test('a topology without pods is refused', (t) => {
  t.throws(() => kernelVariant('snat', { ...TOPO, nodes: [{ ...TOPO.nodes[0]!, pods: [] }] }), { message: /need edges and nodes with pods/ });
});
