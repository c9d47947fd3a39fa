// The allocator against random request sequences: explicit addresses that
// are garbage, of the other family, outside every pool, taken or repeated;
// sharing keys, namespaces and ports that do and do not let Services share;
// status addresses that belong to someone else; releases in between. After
// every step the books must hold: no throw, an address shared only by
// Services allowed to share it, every address inside a pool that admits its
// Service, one address per family per Service, and "exhausted" only when the
// pool really is.
import test from 'ava';
import type { PoolConfig } from '../../src/config/types.js';
import { IpAllocator, type IpRequest } from '../../src/ipam/allocator.js';
import { parseCidr, cidrContains } from '../../src/net/cidr.js';
import { ipToBigInt } from '../../src/net/ip.js';
import { mulberry32 as rng } from '../lib/seeded-random.js';

const advertise = { communities: [], largeCommunities: [], localPref: null, med: null, asPathPrepend: 0, peers: [] };
const pools: PoolConfig[] = [
  { name: 'small4', cidrs: ['192.0.2.0/29'], namespaces: [], serviceSelector: {}, autoAssign: true, advertise },
  { name: 'v6', cidrs: ['2001:db8::/126'], namespaces: [], serviceSelector: {}, autoAssign: true, advertise },
  { name: 'team', cidrs: ['198.51.100.0/30'], namespaces: ['team'], serviceSelector: {}, autoAssign: false, advertise },
];

const ADDRESSES = ['192.0.2.1', '192.0.2.2', '192.0.2.6', '192.0.2.7', '192.0.2.0', '198.51.100.1', '2001:db8::1', '2001:db8:0::0001', '10.0.0.1', 'not-an-ip', '', ' 192.0.2.3 ', '192.0.2.256', '::ffff:192.0.2.1'];

interface Held {
  req: IpRequest;
  ips: string[];
}

function randomRequest(r: () => number, key: string): IpRequest {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const ns = key.split('/')[0]!;
  const requested = r() < 0.35 ? Array.from({ length: 1 + Math.floor(r() * 2) }, () => pick(ADDRESSES)) : [];
  const ports = [{ port: pick([80, 443, 53]), protocol: pick(['TCP', 'UDP', 'tcp']) }];
  return {
    key,
    namespace: ns,
    labels: {},
    requested,
    sharingKey: r() < 0.5 ? pick(['k1', 'k2']) : null,
    shareWithNamespaces: r() < 0.3 ? pick([['team'], ['default'], '*'] as const) : [],
    ports,
    families: pick([[], [4], [6], [4, 6], [6, 4], [4, 4]] as const).slice() as (4 | 6)[],
    preferredFamilies: r() < 0.2 ? [6] : [],
    current: r() < 0.3 ? [pick(ADDRESSES)] : [],
  };
}

function portsClash(a: IpRequest['ports'], b: IpRequest['ports']): boolean {
  return a.some((x) => b.some((y) => x.port === y.port && x.protocol.toUpperCase() === y.protocol.toUpperCase()));
}

const parsedPools = pools.map((p) => ({ p, cidrs: p.cidrs.map((c) => parseCidr(c)) }));

function checkBooks(t: import('ava').ExecutionContext, a: IpAllocator, held: Map<string, Held>, step: string): void {
  const byIp = new Map<string, Held[]>();
  for (const h of held.values()) {
    const fams = h.ips.map((ip) => ipToBigInt(ip).family);
    t.is(new Set(fams).size, fams.length, `${step}: ${h.req.key} holds two addresses of one family`);
    for (const ip of h.ips) {
      const { family, value } = ipToBigInt(ip);
      const owner = parsedPools.find((x) => x.cidrs.some((c) => cidrContains(c, family, value)));
      t.truthy(owner, `${step}: ${ip} is in no pool`);
      if (owner && owner.p.namespaces.length > 0) t.true(owner.p.namespaces.includes(h.req.namespace), `${step}: ${ip} of pool ${owner.p.name} given to ${h.req.key}`);
      byIp.set(ip, [...(byIp.get(ip) ?? []), h]);
    }
    t.deepEqual(a.assignmentOf(h.req.key)?.map((x) => x.ip), h.ips, `${step}: books of ${h.req.key}`);
  }
  for (const [ip, users] of byIp) {
    t.deepEqual(a.usersOf(ip).sort(), users.map((u) => u.req.key).sort(), `${step}: users of ${ip}`);
    for (let i = 0; i < users.length; i++) {
      for (let j = i + 1; j < users.length; j++) {
        const x = users[i]!.req;
        const y = users[j]!.req;
        t.true(x.sharingKey !== null && x.sharingKey === y.sharingKey, `${step}: ${ip} shared by ${x.key} and ${y.key} without one sharing key`);
        t.false(portsClash(x.ports, y.ports), `${step}: ${ip} shared by ${x.key} and ${y.key} with clashing ports`);
      }
    }
  }
}

test('300 random sequences of 40 requests and releases: the books always hold', (t) => {
  const keys = ['default/a', 'default/b', 'default/c', 'team/d', 'team/e', 'other/f', 'other/g'];
  for (let seed = 1; seed <= 300; seed++) {
    const r = rng(seed);
    const a = new IpAllocator(pools);
    const held = new Map<string, Held>();
    for (let step = 0; step < 40; step++) {
      const key = keys[Math.floor(r() * keys.length)]!;
      const where = `seed ${seed} step ${step}`;
      if (r() < 0.2) {
        a.release(key);
        held.delete(key);
      } else {
        const req = randomRequest(r, key);
        let res;
        try {
          res = a.assign(req);
        } catch (e) {
          t.fail(`${where}: assign threw ${(e as Error).message} for ${JSON.stringify(req)}`);
          return;
        }
        if (res.ok) held.set(key, { req, ips: res.addresses.map((x) => x.ip) });
        else {
          held.delete(key);
          t.true(res.message.length > 0, where);
          t.is(a.assignmentOf(key), undefined, `${where}: a failed request holds nothing`);
          if (res.reason === 'PoolExhausted' && req.requested.length === 0 && req.families.length === 1 && req.families[0] === 4 && req.sharingKey === null) {
            // small4 has 6 usable addresses (.1–.6): exhausted means all six are taken.
            const taken = [...held.values()].flatMap((h) => h.ips).filter((ip) => ip.startsWith('192.0.2.'));
            t.is(new Set(taken).size, 6, `${where}: PoolExhausted with ${new Set(taken).size} of 6 taken`);
          }
        }
      }
      checkBooks(t, a, held, where);
    }
  }
});
