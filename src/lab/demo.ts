// `npm run demo`: brings the lab up and tells the story with real commands
// and their real output, then tears everything down. A step that fails says
// so and why; the story goes on with what works; the exit code is non-zero
// when any step failed. The whole run is bounded in time.
import { join } from 'node:path';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { Lab, labDown, labUp, KUBECTL } from './lab.js';
import { renderStatus } from './render.js';
import { startCapture } from './capture.js';
import { nsRun } from './netns.js';

const DEMO_LIMIT_MS = 240_000;
const bold = (s: string): string => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const say = (s = ''): void => void process.stdout.write(`${s}\n`);
const indent = (text: string, n = 4): string =>
  text
    .trimEnd()
    .split('\n')
    .map((l) => `${' '.repeat(n)}${l}`)
    .join('\n');

interface StepResult {
  title: string;
  ok: boolean;
  detail: string;
}
const results: StepResult[] = [];

async function step(title: string, fn: () => Promise<void>): Promise<boolean> {
  say();
  say(bold(`== ${title}`));
  const t0 = Date.now();
  try {
    await fn();
    results.push({ title, ok: true, detail: `${((Date.now() - t0) / 1000).toFixed(1)} s` });
    return true;
  } catch (e) {
    const msg = (e as Error).message;
    say(indent(`STEP FAILED: ${msg}`));
    results.push({ title, ok: false, detail: msg.split('\n')[0] ?? msg });
    return false;
  }
}

/** Prints a command line the reader could type, then its real output. */
function show(cmdline: string, output: string): void {
  say(`  $ ${cmdline}`);
  if (output.trim()) say(indent(output));
}

async function main(): Promise<number> {
  const started = Date.now();
  let lab = null as Lab | null;
  const tmp = mkdtempSync(join(tmpdir(), 'edgelb-demo-'));
  chmodSync(tmp, 0o755);
  const watchdog = setTimeout(() => {
    say(`\nDEMO TIMED OUT after ${DEMO_LIMIT_MS / 1000} s: tearing down`);
    void (lab ? labDown(lab.prefix) : Promise.resolve([])).finally(() => process.exit(3));
  }, DEMO_LIMIT_MS);
  const stop = (sig: string): void => {
    say(`\n${sig}: tearing down`);
    void (lab ? labDown(lab.prefix) : Promise.resolve([])).finally(() => process.exit(130));
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));

  say(bold('edgelb demo: a LoadBalancer Service announced by two edges over BGP, served with direct server return'));
  say('Everything below runs in network namespaces on this machine and is removed at the end.');
  try {
    await step('1. Bring the lab up (dual-stack): client, FRR router, two edges (gobgpd + edgelb agent with XDP), two Kubernetes nodes with two echo pods each, etcd + kube-apiserver + kube-controller-manager', async () => {
      lab = await labUp({ say: (s) => say(`  ${s}`), keepOnFailure: true, ownerKind: 'demo', ipv6: true });
      say();
      say(indent(renderStatus(await lab.describe()), 2));
      if (lab.state.phase !== 'up') throw new Error(`the lab is only partly up: ${lab.state.problems.join('; ')}`);
    });
    if (!lab) return finish(started);
    const L: Lab = lab;
    const kubectlShown = (args: string[]): string => `kubectl ${args.join(' ')}`;
    const kubectl = async (args: string[], input?: string): Promise<string> => {
      const r = await L.kubectl(args, input === undefined ? {} : { input });
      show(kubectlShown(args), r.stdout + r.stderr);
      return r.stdout;
    };
    const version = (await L.kubectl(['version'])).stdout.trim().split('\n').join(', ');
    say(`\n(kubectl at ${KUBECTL}, talking to kube-apiserver ${L.state.controlPlane?.server ?? '?'} as the lab's admin: ${version})`);

    await step('2. The cluster: two nodes (the lab plays their kubelets) and the echo pods on them', async () => {
      await kubectl(['get', 'nodes', '-o', 'wide']);
      await kubectl(['get', 'pods', '-o', 'wide', '-l', 'app=echo']);
    });

    let vip = '';
    await step('3. Create a LoadBalancer Service for the echo pods; the EndpointSlice controller lists them', async () => {
      // No class on the command line: the edges and node agents take
      // class-less Services (kubernetes.defaultClass / --default-class).
      await kubectl(['create', 'service', 'loadbalancer', 'echo', `--tcp=80:${L.plan.ports.http}`]);
      const deadline = Date.now() + 20_000;
      let ready = 0;
      while (Date.now() < deadline && ready < 4) {
        const slices = await L.kubectlJson<{ items: { endpoints?: { conditions?: { ready?: boolean } }[] }[] }>(['get', 'endpointslices', '-l', 'kubernetes.io/service-name=echo']);
        ready = slices.items.flatMap((x) => x.endpoints ?? []).filter((e) => e.conditions?.ready).length;
        if (ready < 4) await new Promise((r) => setTimeout(r, 250));
      }
      await kubectl(['get', 'endpointslices', '-l', 'kubernetes.io/service-name=echo', '-o', 'wide']);
      if (ready < 4) throw new Error(`the EndpointSlice controller lists ${ready} ready endpoints, want 4`);
    });

    await step('4. An edge allocated the address; kubectl shows it as EXTERNAL-IP, our Events and the Advertised condition', async () => {
      vip = await L.waitForVip('echo', 20000);
      await kubectl(['get', 'svc', '-o', 'wide']);
      const deadline = Date.now() + 20_000;
      let cond = '';
      while (Date.now() < deadline && !cond.startsWith('True')) {
        cond = (await L.kubectl(['get', 'svc', 'echo', '-o', 'jsonpath={.status.conditions[?(@.type=="edgelb.io/Advertised")].status}'])).stdout;
        if (!cond.startsWith('True')) await new Promise((r) => setTimeout(r, 250));
      }
      await kubectl(['describe', 'svc', 'echo']);
      await kubectl(['get', 'svc', 'echo', '-o', 'jsonpath={range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\\n"}{end}']);
      if (!cond.startsWith('True')) throw new Error('the Advertised condition did not become True');
    });

    await step('5. Both edges announced it: the router has one route with both edges as ECMP nexthops', async () => {
      if (!vip) throw new Error('no VIP (step 4 failed)');
      const waited = await L.waitForGateways(vip, L.plan.edges.map((e) => e.address), 20000);
      say(`  (both nexthops present ${waited} ms after the address appeared)`);
      show(`vtysh -c 'show ip route ${vip}'   # in ${L.plan.router.ns}`, await L.vtysh(`show ip route ${vip}`));
      show(`ip route show ${vip}   # the router's kernel`, (await nsRun(L.plan.router.ns, ['ip', 'route', 'show', vip])).stdout);
    });

    await step('6. Requests from the client: the pods answer with their name and the source address they saw', async () => {
      if (!vip) throw new Error('no VIP (step 4 failed)');
      await L.waitServing(vip, 80, 15000);
      for (let i = 0; i < 8; i++) {
        const r = await nsRun(L.plan.client.ns, ['curl', '-s', '-m', '3', `http://${vip}/`]);
        show(`curl -s http://${vip}/   # from the client ${L.plan.client.address}`, r.stdout);
      }
      say(`  Every pod saw client=${L.plan.client.address}: the client's own address, not an edge's.`);
    });

    await step('7. On the edges\' uplinks: requests come in, and not one reply goes out', async () => {
      if (!vip) throw new Error('no VIP (step 4 failed)');
      const filter = `tcp and (host ${vip} or port ${L.plan.ports.http})`;
      const caps = await Promise.all(L.plan.edges.map((e) => startCapture(L.plan.fabric.ns, e.fabricPort, filter, join(tmp, `edge-${e.name}.pcap`))));
      const replies = await Promise.all(L.plan.edges.map((e) => startCapture(L.plan.fabric.ns, e.fabricPort, `src host ${vip}`, join(tmp, `replies-${e.name}.pcap`))));
      const load = await L.load({ kind: 'http', target: vip, port: 80, count: 20, concurrency: 2 });
      say(`  (20 requests: ${load.ok} answered, ${load.failed} failed)`);
      const counts = await Promise.all(caps.map((c) => c.stop()));
      const replyCounts = await Promise.all(replies.map((c) => c.stop()));
      L.plan.edges.forEach((e, i) => {
        say(`  ${e.name}: ${counts[i]} packets of these connections on its uplink; ${replyCounts[i]} with source ${vip}`);
      });
      const first = L.plan.edges.findIndex((_, i) => (counts[i] ?? 0) > 0);
      if (first >= 0) {
        const text = await caps[first]!.text({ max: 8, verbose: true });
        show(`tcpdump -nn -v -i ${L.plan.edges[first]!.fabricPort} '${filter}'   # the wire of ${L.plan.edges[first]!.name}'s uplink, first 8 packets`, text);
        say('  In: client → VIP. Out again at once (XDP_TX): client → pod, with the 8-byte option on the SYN. No VIP → client packet: the replies went straight from the nodes to the router.');
      }
      if (replyCounts.some((n) => n > 0)) throw new Error(`replies crossed an edge: ${replyCounts.join('/')}`);
    });

    await step('8. On a node: the SYN arrives addressed to the pod, carrying the VIP:port option; the reply leaves from the VIP', async () => {
      if (!vip) throw new Error('no VIP (step 4 failed)');
      const caps = await Promise.all(L.plan.nodes.map((n) => startCapture(n.ns, n.ifname, `tcp and (port ${L.plan.ports.http} or host ${vip})`, join(tmp, `node-${n.name}.pcap`))));
      await nsRun(L.plan.client.ns, ['curl', '-s', '-m', '3', `http://${vip}/`]);
      const counts = await Promise.all(caps.map((c) => c.stop()));
      const i = counts.findIndex((n) => n > 0);
      if (i < 0) throw new Error('no packet of the request seen on either node');
      show(`tcpdump -nn -v -i ${L.plan.nodes[i]!.ifname} 'tcp and (port ${L.plan.ports.http} or host ${vip})'   # on ${L.plan.nodes[i]!.name}`, await caps[i]!.text({ max: 4, verbose: true }));
      say(`  "options (unknown 158)" is the DSR option (type 0x9e) holding ${vip}:80; the node strips it before the pod.`);
      say(`  The SYN-ACK leaves the node with source ${vip}.80, rewritten by the node's tc program.`);
    });

    await step('9. IPv6: a dual-stack Service gets a VIP of each family; over IPv6 the pod sees the client\'s IPv6 address, and the SYN reaches the node with a Destination Options header', async () => {
      await kubectl(['apply', '-f', '-'], JSON.stringify({
        apiVersion: 'v1', kind: 'Service', metadata: { name: 'echo6' },
        spec: { type: 'LoadBalancer', ipFamilyPolicy: 'RequireDualStack', ipFamilies: ['IPv4', 'IPv6'], selector: { app: 'echo' }, ports: [{ port: 80, targetPort: L.plan.ports.http }] },
      }));
      const deadline = Date.now() + 20_000;
      let ips: string[] = [];
      while (Date.now() < deadline && ips.length < 2) {
        ips = (await L.kubectl(['get', 'svc', 'echo6', '-o', 'jsonpath={.status.loadBalancer.ingress[*].ip}'])).stdout.split(' ').filter(Boolean);
        if (ips.length < 2) await new Promise((r) => setTimeout(r, 250));
      }
      await kubectl(['get', 'svc', 'echo6', '-o', 'wide']);
      const vip6 = ips.find((ip) => ip.includes(':'));
      if (!vip6) throw new Error(`no IPv6 address in status (${ips.join(', ') || 'none'})`);
      await L.waitServing(vip6, 80, 15000);
      show(`vtysh -c 'show ipv6 route ${vip6}'   # in ${L.plan.router.ns}`, await L.vtysh(`show ipv6 route ${vip6}`));
      const caps = await Promise.all(L.plan.nodes.map((n) => startCapture(n.ns, n.ifname, 'ip6 and ip6[6] == 60', join(tmp, `node6-${n.name}.pcap`))));
      for (let i = 0; i < 4; i++) {
        const r = await nsRun(L.plan.client.ns, ['curl', '-s', '-m', '3', `http://[${vip6}]/`]);
        show(`curl -s 'http://[${vip6}]/'   # from the client ${L.plan.client.address6}`, r.stdout);
      }
      const counts = await Promise.all(caps.map((c) => c.stop()));
      const i = counts.findIndex((n) => n > 0);
      if (i < 0) throw new Error('no packet with a Destination Options header seen on either node');
      show(`tcpdump -nn -v -i ${L.plan.nodes[i]!.ifname} 'ip6 and ip6[6] == 60'   # on ${L.plan.nodes[i]!.name}`, await caps[i]!.text({ max: 2, verbose: true }));
      say(`  "DSTOPT (opt_type 0x5e: len=18)" is edgelb's IPv6 DSR header holding [${vip6}]:80; the node strips it before the pod.`);
    });

    await step('10. What the agents say', async () => {
      for (const e of L.plan.edges) {
        const st = await L.edgelb(e.name, ['status']);
        show(`edgelb status   # on ${e.name}`, st.stdout);
      }
      const sl = await L.edgelb(L.plan.edges[0]!.name, ['service', 'list']);
      show(`edgelb service list   # on ${L.plan.edges[0]!.name}`, sl.stdout);
    });
  } finally {
    clearTimeout(watchdog);
    await step('11. Tear down', async () => {
      if (lab) {
        const problems = await labDown((lab as Lab).prefix, (s) => say(`  ${s}`));
        if (problems.length) throw new Error(problems.join('; '));
      }
      rmSync(tmp, { recursive: true, force: true });
    });
  }
  return finish(started);
}

function finish(started: number): number {
  say();
  say(bold(`== Summary (${((Date.now() - started) / 1000).toFixed(1)} s)`));
  for (const r of results) say(`  ${r.ok ? 'ok  ' : 'FAIL'}  ${r.title.replace(/:.*$/, '')}  — ${r.detail}`);
  const failed = results.filter((r) => !r.ok).length;
  say(failed ? `${failed} step(s) failed (see above for why).` : 'Every step worked.');
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    say(`demo: ${(e as Error).stack ?? String(e)}`);
    process.exit(1);
  },
);
