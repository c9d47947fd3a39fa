// bfdd already runs (on the appliance, edgelb-bfdd.service starts it with no
// sessions) and the agent's first attempt to configure it fails — seen on
// the appliance under TCG, where vtysh took longer than its 5 s timeout while
// the boot was busy. The speaker said "retrying" but only ever retried when
// bfdd was not running, so the sessions were never configured and the
// router's BFD stayed down for good. The reconcile loop must retry.
import test from 'ava';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createBgpLab, type BgpLab } from '../lib/gobgpd.js';
import { nsRun, nsWrap, waitFor } from '../lib/netns.js';

const BFD = { minRxMs: 100, minTxMs: 100, multiplier: 3 };
let lab: BgpLab | undefined;

test.after.always(async () => {
  await lab?.destroy();
});

test('a failed first BFD configuration is retried by the reconcile loop while bfdd runs', async (t) => {
  t.timeout(90_000);
  lab = await createBgpLab([{ routerSide: { bfd: BFD }, peer: { bfd: { enabled: true, ...BFD } } }]);
  const e = lab.edges[0]!;
  // bfdd running with no sessions, as the appliance's unit leaves it: a first
  // speaker starts it, then goes away without stopping it, and the session is removed.
  const first = await lab.startSpeaker(0);
  await first.close({ stopGobgpd: false, stopBfdd: false });
  const vty = (cmds: string[]) => nsRun(e.ns, ['vtysh', '--vty_socket', e.config.bgp.bfdd.runDir, '-d', 'bfdd', ...cmds.flatMap((c) => ['-c', c])]);
  const sessions = JSON.parse((await vty(['show bfd peers json'])).stdout) as { peer: string; local?: string }[];
  await vty(['configure terminal', 'bfd', ...sessions.map((s) => `no peer ${s.peer}${s.local ? ` local-address ${s.local}` : ''}`), 'end']);
  t.notRegex((await vty(['show bfd peers brief'])).stdout, new RegExp(lab.routerAddress.replace(/\./g, '\\.')));

  // The next agent's first vtysh call fails; later ones go through.
  const flag = join(e.dir, 'vtysh-failed-once');
  const wrap = join(e.dir, 'flaky-vtysh');
  writeFileSync(wrap, `#!/bin/sh\ncase " $* " in *" vtysh "*) if [ ! -e ${flag} ]; then : > ${flag}; echo "vtysh: simulated timeout" >&2; exit 1; fi ;; esac\nexec "$@"\n`);
  chmodSync(wrap, 0o755);
  await lab.startSpeaker(0, { wrap: [wrap, ...nsWrap(e.ns)] });
  const up = await waitFor(async () => {
    const peers = await lab!.router.vtyshJson<{ peer: string; status: string }[]>('show bfd peers json');
    return peers.find((p) => p.peer === e.address)?.status === 'up';
  }, 20_000);
  t.true(up, `the router's BFD session with the edge: ${await lab.router.vtysh('show bfd peers brief')}`);
});
