// The flashed appliance carries real traffic: the lab with edge1 replaced by
// images/out/edgelb.raw under QEMU/TCG (npm run lab -- up --appliance),
// configured from an EDGELB-CFG stick (static addresses, the router as peer
// with a BGP password, the API server's kubeconfig as a secret). The router
// peers with the VM and routes the VIP to it; client requests through it
// reach the pods with the client's address; the replies never cross its
// tap; a VIP port with no frontend is dropped there instead of looping;
// cutting its tap takes it out of the router by BFD, long before the hold
// timer, while edge2 carries on.
import test from 'ava';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { OUT_DIR } from '../../src/image/build.js';
import { ensureBootTools, freshImage } from '../../src/image/boot-test.js';
import { startCapture } from '../../src/lab/capture.js';
import { renderStatus } from '../../src/lab/render.js';
import { APPLIANCE_BFD_TIMERS, APPLIANCE_EDGE, setApplianceUplink } from '../../src/lab/appliance.js';
import { bringUp, need, summary, tearDown, type LabHolder } from '../e2e/helpers.js';
import { sleep, waitFor } from '../lib/netns.js';

const execFileP = promisify(execFile);
let h: LabHolder | undefined;
/** How long after READY the router may take to see the VM's BGP and BFD sessions up. */
const SESSION_WAIT_MS = 90_000;

const skip = process.getuid?.() !== 0 ? 'not root' : await ensureBootTools().then(() => null, (e: Error) => `cannot install qemu-system-x86/ovmf: ${e.message}`);

if (skip) {
  process.stderr.write(`\n******** SKIPPING the appliance lab test: ${skip} ********\n\n`);
  test.skip(`appliance in the lab — SKIPPED: ${skip}`, () => undefined);
} else {
  test.after.always(async () => {
    // The VM's console outlives the lab (its directory goes with it).
    const serial = h?.lab?.state.appliance?.serialLog;
    if (serial && existsSync(serial)) {
      mkdirSync(join(OUT_DIR, 'boot-test'), { recursive: true });
      copyFileSync(serial, join(OUT_DIR, 'boot-test', 'appliance-lab.log'));
    }
    await tearDown(h);
  });

  test.serial('the appliance VM is edge1: READY, peered with the router, shown as a VM by lab status', async (t) => {
    t.timeout(30 * 60 * 1000);
    await freshImage();
    const t0 = Date.now();
    h = await bringUp({ appliance: true, bfdTimers: { ...APPLIANCE_BFD_TIMERS } });
    t.log(`lab up with the appliance in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    const lab = need(t, h);
    const vm = lab.state.appliance;
    if (!vm) return t.fail('no appliance record');
    t.log(`appliance READY ${vm.readySeconds} s after QEMU started (${vm.detail}); load ${(await execFileP('cat', ['/proc/loadavg'])).stdout.trim()}`);
    t.is(vm.state, 'ready');
    const status = (await execFileP(process.execPath, [join(process.cwd(), 'dist/src/lab/cli.js'), 'status', lab.prefix])).stdout;
    t.regex(status, new RegExp(`${APPLIANCE_EDGE} .*APPLIANCE VM .*qemu pid ${vm.pid}\\), ready`), status);
    t.regex(renderStatus(await lab.describe()), /NICs on taps vmup \(fabric/);
    // READY's peers=N counts configured peers, not sessions: the emulated CPU
    // opens the session some seconds later on a loaded host. Wait, bounded.
    const addr = lab.edge(APPLIANCE_EDGE).address;
    const t1 = Date.now();
    const bgpUp = await waitFor(() => lab.router().established(addr), SESSION_WAIT_MS, 500);
    const counters = await lab.router().sessionCounters(addr);
    t.log(`router's BGP session with the VM: ${counters.state} ${((Date.now() - t1) / 1000).toFixed(1)} s after READY (established ${counters.established}, dropped ${counters.dropped})`);
    t.true(bgpUp, `the router's BGP session with the VM (TCP-MD5 with the password from its stick) is up within ${SESSION_WAIT_MS / 1000} s of READY: ${JSON.stringify(counters)}`);
    const bfdUp = await waitFor(async () => (await lab.router().bfdPeer(addr))?.status === 'up', SESSION_WAIT_MS, 500);
    t.true(bfdUp, `BFD with the VM is up: ${await lab.vtysh('show bfd peers brief')}`);
  });

  let vip = '';

  test.serial('traffic through the VM: pods see the client, replies bypass it, a VIP port with no frontend dies there', async (t) => {
    t.timeout(10 * 60 * 1000);
    const lab = need(t, h);
    const vm = lab.state.appliance!;
    const spec = { name: 'through-vm' };
    await lab.applyService(spec);
    vip = await lab.waitForVip(spec.name, 60_000);
    await lab.waitForGateways(vip, lab.plan.edges.map((e) => e.address), 60_000);
    const route = await lab.vtysh(`show ip route ${vip}`);
    t.regex(route, new RegExp(`\\* ${lab.edge(APPLIANCE_EDGE).address.replace(/\./g, '\\.')}, via`), `the VM is a nexthop:\n${route}`);
    // Only the VM now: edge2 drains and withdraws.
    await lab.stopAgent('edge2', 'SIGTERM');
    await lab.waitForGateways(vip, [lab.edge(APPLIANCE_EDGE).address], 30_000);
    await lab.waitServing(vip, 80, 60_000);

    const dir = h!.dir;
    const requests = await startCapture(vm.ns, vm.taps.uplink, `dst host ${vip}`, join(dir, 'vm-requests.pcap'));
    const replies = await startCapture(vm.ns, vm.taps.uplink, `src host ${vip}`, join(dir, 'vm-replies.pcap'));
    const noFrontend = await startCapture(lab.plan.router.ns, lab.plan.router.fabricIf, `dst host ${vip} and tcp port 81`, join(dir, 'no-frontend.pcap'));
    const tcp = await lab.load({ kind: 'http', target: vip, port: 80, count: 60, concurrency: 3, timeoutMs: 3000 });
    const udp = await lab.load({ kind: 'udp', target: vip, port: 9090, count: 40, concurrency: 2, timeoutMs: 2000 });
    // Port 81 is no frontend: the VM must drop it, not route it back to the router (which routes the VIP to the VM …).
    const stray = await lab.load({ kind: 'http', target: vip, port: 81, count: 2, concurrency: 1, timeoutMs: 1500 });
    const [nReq, nRep, nLoop] = [await requests.stop(), await replies.stop(), await noFrontend.stop()];
    t.log(`through the VM: ${summary(tcp)}; ${summary(udp)}; on its tap: ${nReq} packets to ${vip}, ${nRep} from it; port 81 on the router's fabric port: ${nLoop}`);
    t.is(tcp.failed, 0, summary(tcp));
    t.is(udp.failed, 0, summary(udp));
    t.deepEqual(Object.keys(tcp.clients), [lab.plan.client.address], 'every pod saw the client\'s own address');
    t.deepEqual(Object.keys(udp.clients), [lab.plan.client.address]);
    t.true(Object.keys(tcp.pods).length >= 2, `pods on both nodes answered: ${JSON.stringify(tcp.pods)}`);
    t.true(nReq >= tcp.ok * 3, `the requests came in over the VM's tap (${nReq} packets)`);
    t.is(nRep, 0, 'no reply crossed the VM\'s tap');
    t.is(stray.ok, 0);
    // The router sends each SYN for :81 to the VM once; a routing loop would bring every one back dozens of times.
    t.true(nLoop <= stray.sent * 8, `SYNs to ${vip}:81 seen on the router's fabric port: ${nLoop} (a loop until TTL expiry would show ~30 per SYN)`);
  });

  test.serial('failover: the VM\'s tap cut, the router drops it by BFD and edge2 carries the traffic', async (t) => {
    t.timeout(10 * 60 * 1000);
    const lab = need(t, h);
    const vm = lab.state.appliance!;
    if (!vip) return t.fail('no VIP (the previous test failed)');
    await lab.startAgent('edge2');
    await lab.waitForGateways(vip, lab.plan.edges.map((e) => e.address), 60_000);
    // The router's BFD session with the VM must be up before the cable is cut
    // (an emulated CPU starved by the machine's load can flap it; say so).
    const addr = lab.edge(APPLIANCE_EDGE).address;
    const bfdUp = async () => (JSON.parse(await lab.vtysh('show bfd peers json')) as { peer: string; status: string }[]).find((p) => p.peer === addr)?.status === 'up';
    const deadline = Date.now() + 60_000;
    while (!(await bfdUp()) && Date.now() < deadline) await sleep(500);
    const counters = await lab.vtysh(`show bfd peer ${addr} counters`);
    t.log(`BFD with the VM before the cut: ${(await bfdUp()) ? 'up' : 'DOWN'}; ${counters.replace(/\s+/g, ' ').trim()}`);
    if (!(await bfdUp())) return t.fail(`the router's BFD session with the VM is not up before the cut (the VM is too starved to keep it?): ${counters}`);
    await setApplianceUplink(vm, false);
    let detectMs = -1;
    try {
      detectMs = await lab.waitForGateways(vip, [lab.edge('edge2').address], 15_000);
    } finally {
      t.log(`router dropped the VM ${detectMs} ms after its tap went down (BFD ${lab.state.options.bfdTimers.minRxMs} ms × ${lab.state.options.bfdTimers.multiplier}, hold 9 s)`);
    }
    const bfdMs = lab.state.options.bfdTimers.minRxMs * lab.state.options.bfdTimers.multiplier;
    t.true(detectMs >= 0 && detectMs < bfdMs + 2000, `BFD takes the VM out (${detectMs} ms), long before the 9 s hold timer`);
    t.regex(await lab.vtysh('show bfd peers brief'), new RegExp(`${lab.edge(APPLIANCE_EDGE).address.replace(/\./g, '\\.')}.*down`, 'i'));
    const after = await lab.load({ kind: 'http', target: vip, port: 80, count: 30, concurrency: 2, timeoutMs: 2000 });
    t.is(after.failed, 0, `edge2 serves alone: ${summary(after)}`);
    await setApplianceUplink(vm, true);
    await sleep(100);
  });
}
