// End to end, a dual-stack lab (IPv6 beside every IPv4 address, IPv6 BGP
// sessions, a dual-stack Service range in the real kube-apiserver): a
// RequireDualStack and a PreferDualStack Service each get an address of
// both families from the pools of that family, the real EndpointSlice
// controller writes a slice per family, and the IPv4 VIP serves with the
// client's address kept. The edges' datapath does not forward IPv6 yet: its
// IPv6 frontends are reported on the Service (a Warning from each edge) and
// the IPv6 VIP is not announced, so the routers never draw IPv6 traffic
// into an edge that would drop it.
import test from 'ava';
import { bringUp, need, summary, tearDown, type LabHolder } from './helpers.js';
import type { LabServiceSpec } from '../../src/lab/manifests.js';

let h: LabHolder | undefined;

test.before(async () => {
  h = await bringUp({ ipv6: true });
});

test.after.always(async () => {
  await tearDown(h);
});

interface SvcJson {
  spec?: { ipFamilies?: string[] };
  status?: { loadBalancer?: { ingress?: { ip?: string }[] } };
}

async function until<T>(what: string, f: () => Promise<T | null>, ms = 20000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test.serial('every edge has an IPv6 BGP session beside its IPv4 one', async (t) => {
  const lab = need(t, h);
  const router = lab.router();
  const v6 = await until('IPv6 sessions up', async () => {
    const n = await router.neighbors(6);
    return lab.plan.edges.every((e) => n[e.address6]?.state === 'Established') ? n : null;
  });
  t.deepEqual(Object.keys(v6).sort(), lab.plan.edges.map((e) => e.address6).sort());
});

test.serial('RequireDualStack and PreferDualStack: an address of each family, a slice of each family; IPv4 serves with the client address; the IPv6 VIP is reported, not announced', async (t) => {
  const lab = need(t, h);
  const edges = lab.plan.edges.map((e) => e.address);
  const specs: LabServiceSpec[] = [
    { name: 'both', udpPort: null, ipFamilyPolicy: 'RequireDualStack', ipFamilies: ['IPv4', 'IPv6'] },
    { name: 'prefer', udpPort: null, ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv6', 'IPv4'] },
  ];
  for (const s of specs) await lab.applyService(s);
  for (const s of specs) {
    const ips = await until(`${s.name}: two addresses`, async () => {
      const svc = await lab.kubectlJson<SvcJson>(['get', 'service', s.name]);
      const got = (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? '');
      return got.length === 2 ? got : null;
    });
    const v4 = ips.find((ip) => !ip.includes(':'))!;
    const v6 = ips.find((ip) => ip.includes(':'))!;
    t.truthy(v4 && v6, `${s.name}: ${ips.join(', ')}`);
    t.true(v4.startsWith('198.51.100.'), `${s.name}: IPv4 from the IPv4 pool (${v4})`);
    t.true(v6.startsWith('2001:db8:5100::'), `${s.name}: IPv6 from the IPv6 pool (${v6})`);

    // The real EndpointSlice controller: one slice per family, every pod in each.
    const slices = await lab.kubectlJson<{ items: { addressType: string; endpoints?: { addresses: string[] }[] }[] }>(['get', 'endpointslices', '-l', `kubernetes.io/service-name=${s.name}`]);
    const byType = new Map(slices.items.map((x) => [x.addressType, (x.endpoints ?? []).flatMap((e) => e.addresses).sort()]));
    t.deepEqual(byType.get('IPv4'), lab.plan.nodes.flatMap((n) => n.pods.map((p) => p.ip)).sort());
    t.deepEqual(byType.get('IPv6'), lab.plan.nodes.flatMap((n) => n.pods.map((p) => p.ip6)).sort());

    await lab.waitForGateways(v4, edges);
    await lab.waitServing(v4);
    const r = await lab.load({ kind: 'http', target: v4, port: 80, count: 20, concurrency: 2, timeoutMs: 2000 });
    t.is(r.ok, 20, summary(r));
    t.deepEqual(Object.keys(r.clients), [lab.plan.client.address], `the pods saw the client's address: ${summary(r)}`);

    const warned = await until(`${s.name}: a Warning from each edge for the IPv6 frontend`, async () => {
      const ev = await lab.kubectlJson<{ items: { type: string; reason: string; note: string }[] }>(['get', 'events.events.k8s.io', '--field-selector', `regarding.name=${s.name}`]);
      const w = ev.items.filter((e) => e.type === 'Warning' && e.reason === 'UnsupportedFamily' && e.note.includes(v6));
      return new Set(w.map((e) => e.note.replace(/.*not served by edge (\S+)\)$/, '$1'))).size >= edges.length ? w : null;
    });
    t.true(warned.length >= edges.length);
  }
  const v6peers = await lab.router().neighbors(6);
  t.deepEqual(
    lab.plan.edges.map((e) => v6peers[e.address6]?.pfxRcd ?? 0),
    lab.plan.edges.map(() => 0),
    'no IPv6 VIP announced while the edges cannot forward it',
  );
});
