// The model against random Services and EndpointSlices: values the API
// server accepts but nobody expects (odd protocols, named and numeric
// targetPorts, null fields, garbage annotations and source ranges, slices of
// the other family, endpoints on unknown nodes, duplicates), and the raw
// shapes an informer caches when trimming fails. desiredForService must never
// throw, and what it hands the datapath must be either servable or a
// rejection the datapath's own check names — never a value the sinks choke on.
import test from 'ava';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { PoolConfig } from '../../src/config/types.js';
import { desiredForService, type NodeAddresses } from '../../src/model/desired.js';
import { validateFrontend } from '../../src/datapath/edge-frontend-check.js';
import { ipFamily } from '../../src/net/ip.js';
import { mulberry32 as rng } from '../lib/seeded-random.js';

const advertise = { communities: [], largeCommunities: [], localPref: null, med: null, asPathPrepend: 0, peers: [] };
const pools: PoolConfig[] = [{ name: 'p', cidrs: ['192.0.2.0/24', '2001:db8::/64'], namespaces: [], serviceSelector: {}, autoAssign: true, advertise }];
const nodes = new Map<string, NodeAddresses>([['n1', { v4: '10.0.0.1', v6: null }], ['n2', { v4: '10.0.0.2', v6: 'fd00::2' }]]);

function caseFor(seed: number): { svc: V1Service; slices: V1EndpointSlice[]; addresses: { ip: string; pool: string }[] } {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const maybe = <T>(x: T): T | undefined => (r() < 0.8 ? x : undefined);
  const portNames = ['', 'http', 'web', 'dns', 'a-b', '80'];
  const protocols = ['TCP', 'UDP', 'SCTP', 'tcp', undefined, null];
  const targets = [8080, '8080', 'web', 'http', '', 0, 65535, '0', undefined, null];
  const nPorts = Math.floor(r() * 5);
  const ports = Array.from({ length: nPorts }, () => ({
    name: maybe(pick(portNames)),
    port: pick([80, 443, 53, 1, 65535, 8080]),
    protocol: pick(protocols) as string,
    targetPort: pick(targets) as unknown as never,
  }));
  const annotations: Record<string, string> = {};
  if (r() < 0.3) annotations['edgelb.io/mode'] = pick(['dsr', 'snat', 'hybrid', 'DSR', '', ' snat ', 'x']);
  if (r() < 0.3) annotations['edgelb.io/dispatch'] = pick(['ip-option', 'ipip', 'auto', 'IPIP', '', 'gre']);
  if (r() < 0.3) annotations['service.beta.kubernetes.io/load-balancer-source-ranges'] = pick(['10.0.0.0/8', '10.0.0.0/8, 2001:db8::/32', ',,', 'garbage', '1.2.3.4', '::/0', '300.1.1.1/8', '10.0.0.1/33']);
  const spec: Record<string, unknown> = {
    type: 'LoadBalancer',
    ports: r() < 0.05 ? null : ports,
    sessionAffinity: pick(['None', 'ClientIP', undefined]),
    sessionAffinityConfig: r() < 0.5 ? { clientIP: { timeoutSeconds: pick([1, 86400, 0, undefined, null]) } } : undefined,
    loadBalancerSourceRanges: r() < 0.3 ? [pick(['192.168.0.0/16', '2001:db8::/48', 'bad', '0.0.0.0/0', ''])] : undefined,
  };
  const svc = { metadata: { namespace: 'ns', name: `s${seed}`, annotations }, spec } as unknown as V1Service;
  const addressTypes = ['IPv4', 'IPv6', 'FQDN', undefined];
  const ips = ['10.1.0.1', '10.1.0.2', '2001:db8:1::1', 'fd00:1::5', '192.0.2.7', '224.0.0.1', '127.0.0.1', '0.0.0.0', 'not-an-ip', '', '010.001.000.001'];
  const slices: V1EndpointSlice[] = Array.from({ length: Math.floor(r() * 4) }, (_, i) => ({
    metadata: { namespace: 'ns', name: `s${seed}-${i}`, labels: { 'kubernetes.io/service-name': `s${seed}` } },
    addressType: pick(addressTypes) as string,
    ports: r() < 0.1 ? (null as unknown as []) : Array.from({ length: Math.floor(r() * 3) }, () => ({ name: maybe(pick(portNames)), port: pick([8080, 53, 1, 65535, null, undefined]) as number, protocol: pick(protocols) as string })),
    endpoints: Array.from({ length: Math.floor(r() * 6) }, () => ({
      addresses: r() < 0.05 ? (null as unknown as []) : r() < 0.05 ? [] : [pick(ips)],
      nodeName: pick(['n1', 'n2', 'gone', '', undefined, null]) as string,
      conditions: r() < 0.1 ? (null as unknown as Record<string, boolean>) : { ready: pick([true, false, undefined, null]) as boolean, serving: pick([true, false, undefined]), terminating: pick([true, false, undefined]) },
    })),
  }));
  const addresses = [pick([{ ip: '192.0.2.10', pool: 'p' }, { ip: '2001:db8::10', pool: 'p' }]), ...(r() < 0.3 ? [{ ip: '2001:db8::11', pool: 'p' }] : [])];
  return { svc, slices, addresses };
}

test('2 000 random Services and slices: never a throw; every frontend handed on is servable or rejected with a reason by the datapath check', (t) => {
  let served = 0;
  let rejectedByDatapath = 0;
  for (let seed = 1; seed <= 2000; seed++) {
    const { svc, slices, addresses } = caseFor(seed);
    let d;
    try {
      d = desiredForService(svc, slices, nodes, { datapath: { mode: 'dsr', dispatch: 'auto', maxPortsPerService: 3 }, pools }, addresses);
    } catch (e) {
      t.fail(`seed ${seed}: desiredForService threw ${(e as Error).stack}\n${JSON.stringify({ svc, slices })}`);
      return;
    }
    for (const ds of d.services) {
      const why = validateFrontend(ds, { ipv6: true });
      if (why === null) {
        served++;
        t.true(ds.backends.every((b) => ipFamily(b.ip) === ipFamily(ds.frontend.vip)), `seed ${seed}: a backend of the other family`);
      } else {
        rejectedByDatapath++;
        t.true(why.message.length > 0, `seed ${seed}`);
      }
      t.true(ds.backends.every((b) => b.ip !== '192.0.2.7' && b.ip !== '224.0.0.1' && b.ip !== '127.0.0.1'), `seed ${seed}: a refused backend address was used`);
    }
    for (const p of d.problems) t.true(p.message.length > 0 && p.reason.length > 0, `seed ${seed}`);
  }
  t.log(`served ${served}, rejected by the datapath check ${rejectedByDatapath}`);
  t.true(served > 500, 'the generator makes servable frontends too');
});
