// attachState(): what the kernel really runs where an agent attached its
// program — the truth health, BFD and the node's metrics follow. Detached
// by hand, or replaced by another program, is reported at once.
import test from 'ava';
import { BpfObject, inNetns } from '../../src/datapath/loader.js';
import { bpfObjectPath } from '../../src/assets.js';
import { attachState } from '../../src/datapath/attach-state.js';
import { Cleanup, createNetns, nsRun, uniqueId } from '../lib/netns.js';
import { openEdge } from './edge-helpers.js';
import { loadNode } from './node-fixtures.js';
import { NODE_DEFAULTS } from '../../src/datapath/node-datapath.js';

async function veth(t: import('ava').ExecutionContext): Promise<string> {
  const cleanup = new Cleanup();
  t.teardown(async () => {
    await cleanup.run();
  });
  const ns = await createNetns(`edgelb-att-${uniqueId()}`, cleanup);
  await nsRun(ns, ['ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1']);
  await nsRun(ns, ['ip', 'link', 'set', 'up0', 'up']);
  await nsRun(ns, ['ip', 'link', 'set', 'up1', 'up']);
  return ns;
}

test('edge XDP: attached, then detached by hand, then replaced by another program — each seen at once', async (t) => {
  const ns = await veth(t);
  const dp = openEdge(t, { hooks: ['xdp'] });
  inNetns(ns, () => dp.attach('up1', 'native'));
  const at = dp.attachedAt()!;
  t.like(attachState(at.at, at.progId), { attached: true });
  await nsRun(ns, ['ip', 'link', 'set', 'dev', 'up1', 'xdpdrv', 'off']);
  const gone = attachState(at.at, at.progId);
  t.false(gone.attached);
  t.regex(gone.detail, /no XDP native program .*detached/);
  const other = BpfObject.load(bpfObjectPath('xdp_pass'));
  t.teardown(() => other.close());
  inNetns(ns, () => other.program('xdp_pass').attachXdp('up1', 'native'));
  const replaced = attachState(at.at, at.progId);
  t.false(replaced.attached);
  t.regex(replaced.detail, /runs program \d+, not ours/);
});

test('edge tc and the node\'s two filters: a filter deleted by hand is seen at once', async (t) => {
  const ns = await veth(t);
  const dp = openEdge(t, { hooks: ['tc'] });
  inNetns(ns, () => dp.attach('up1', 'tc'));
  const at = dp.attachedAt()!;
  t.like(attachState(at.at, at.progId), { attached: true });
  await nsRun(ns, ['tc', 'filter', 'del', 'dev', 'up1', 'ingress']);
  t.regex(attachState(at.at, at.progId).detail, /no tc ingress filter .*detached/);

  const node = loadNode(t);
  inNetns(ns, () => node.attach('up0'));
  t.like(node.attachState(), { ingress: { attached: true }, egress: { attached: true } });
  await nsRun(ns, ['tc', 'filter', 'del', 'dev', 'up0', 'egress', 'pref', String(NODE_DEFAULTS.tcPriority), 'handle', `0x${NODE_DEFAULTS.tcHandle.toString(16)}`, 'bpf']);
  t.like(node.attachState(), { ingress: { attached: true }, egress: { attached: false } });
  // The interface itself gone: not attached, and why.
  await nsRun(ns, ['ip', 'link', 'del', 'up0']);
  t.false(node.attachState()!.ingress.attached);
});
