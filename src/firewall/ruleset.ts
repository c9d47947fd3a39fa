// The host firewall as data: EdgelbConfig → an nftables JSON ruleset (the
// `nft -j` format) in its own table, inet edgelb_host. Pure; applying it is
// apply.ts's job.
//
// What reaches the host: established/related traffic, loopback, the ICMP
// and ICMPv6 messages IP needs (errors, PMTU, neighbour discovery, MLD
// queries, echo),
// BGP (tcp/179) and BFD (udp/3784 control, 3785 echo, 4784 multihop) only
// from the configured peers, the metrics port only on metrics.listen's
// address, SSH only from firewall.sshFrom, DHCPv6 replies to the host's
// client. Everything else is dropped.
//
// DHCPv6 replies by port, not by conntrack: the client solicits the
// multicast ff02::1:2 and the server (or relay) answers from its own
// link-local address, which matches no connection the host made (conntrack
// calls it new). Dropped, a DHCPv6 client on the edge — the image's fallback
// networking is DHCP=yes, started by the M or O flag of the Router
// Advertisements the ICMPv6 rule lets in — never heard an answer: no IPv6
// address, DNS or NTP from DHCPv6. Like the RAs, only ever from the link.
//
// VIP traffic never gets here: the XDP program on the uplink takes packets
// for VIP:port before netfilter sees them, so this table only judges what
// the datapath passed on to the host stack.
//
// The forward chain: the uplink forwards (sysctl.ts; the FIB lookup needs
// it), but the edge is not a router. What the datapath sends itself
// (XDP_TX, XDP_REDIRECT) never reaches netfilter; what reaches this chain:
//   - packets to a VIP on a port that is no frontend (the datapath passed
//     them untouched). Routed on, they would go back to the router, which
//     routes the VIP to this edge again, until the TTL runs out: dropped.
//   - packets the datapath rewrote for a backend but could not send itself
//     because the next hop's MAC is not known yet: the kernel finishes
//     them (and resolves the neighbour, so the next ones go by XDP). They
//     come in and leave through the uplink: accepted, IPv4 and IPv6.
//   - anything else: someone using the edge as a router (to the management
//     network, say). Dropped.
import type { EdgelbConfig, PeerConfig } from '../config/types.js';
import { checkCidr } from '../net/cidr.js';
import { bigIntToIp, familyBits, ipFamily } from '../net/ip.js';
import { parseHostPort } from '../net/l4.js';

export const TABLE = 'edgelb_host';
export const FAMILY = 'inet';

export const PORTS = { bgp: 179, bfdControl: 3784, bfdEcho: 3785, bfdMultihop: 4784, ssh: 22, dhcp6Server: 547, dhcp6Client: 546 } as const;

// libnftables JSON, only as much of it as we emit.
export type Expr = Record<string, unknown>;
export interface NftRuleset {
  nftables: Record<string, unknown>[];
}

type Family = 'ip' | 'ip6';

const tableRef = { family: FAMILY, name: TABLE };

function match(left: Expr, right: unknown, op = '=='): Expr {
  return { match: { op, left, right } };
}
const payload = (protocol: string, field: string): Expr => ({ payload: { protocol, field } });
const accept: Expr = { accept: null };
const counter: Expr = { counter: null };

/** A value for the right-hand side: one element as itself, several as an anonymous set. */
function oneOrSet(items: unknown[]): unknown {
  return items.length === 1 ? items[0] : { set: items };
}

/** "192.0.2.0/24" → prefix expression; plain or full-length addresses stay strings. */
function addrExpr(cidr: string): unknown {
  const c = checkCidr(cidr, { bareAddress: true });
  if (typeof c === 'string') throw new Error(`firewall: not an IP address or CIDR: ${JSON.stringify(cidr)} (${c})`);
  const addr = bigIntToIp(c.base, c.family);
  return c.prefix === familyBits(c.family) ? addr : { prefix: { addr, len: c.prefix } };
}

function familyOf(cidr: string): Family {
  return ipFamily(cidr.split('/')[0] ?? '') === 6 ? 'ip6' : 'ip';
}

function byFamily(cidrs: string[]): Record<Family, string[]> {
  const out: Record<Family, string[]> = { ip: [], ip6: [] };
  for (const c of cidrs) {
    const fam = familyOf(c);
    if (!out[fam].includes(c)) out[fam].push(c);
  }
  return out;
}

interface RuleSpec {
  comment: string;
  expr: Expr[];
}

/** One rule per address family present: "from these sources, to these ports, accept". */
function fromSources(name: string, sources: string[], proto: 'tcp' | 'udp', ports: number[], extra: Expr[] = []): RuleSpec[] {
  const fams = byFamily(sources);
  const rules: RuleSpec[] = [];
  for (const fam of ['ip', 'ip6'] as const) {
    if (fams[fam].length === 0) continue;
    rules.push({
      comment: `${name} (${fam === 'ip' ? 'IPv4' : 'IPv6'})`,
      expr: [
        match(payload(fam, 'saddr'), oneOrSet(fams[fam].map(addrExpr))),
        ...extra,
        match(payload(proto, 'dport'), oneOrSet(ports)),
        counter,
        accept,
      ],
    });
  }
  return rules;
}

function bfdRules(peers: PeerConfig[]): RuleSpec[] {
  const bfd = peers.filter((p) => p.bfd.enabled);
  const single = bfd.filter((p) => p.multihop <= 1).map((p) => p.address);
  const multi = bfd.filter((p) => p.multihop > 1).map((p) => p.address);
  return [
    ...fromSources('BFD single-hop from peers', single, 'udp', [PORTS.bfdControl, PORTS.bfdEcho]),
    ...fromSources('BFD multihop from peers', multi, 'udp', [PORTS.bfdMultihop]),
  ];
}

/** "ADDRESS:PORT" or "[V6]:PORT" → parts; empty string → null (metrics off). */
export function parseListen(listen: string): { address: string; port: number } | null {
  if (!listen) return null;
  const hp = parseHostPort(listen);
  if (!hp) throw new Error(`firewall: metrics.listen must be ADDRESS:PORT (got ${JSON.stringify(listen)})`);
  return hp;
}

function metricsRules(listen: string): RuleSpec[] {
  const l = parseListen(listen);
  if (!l) return [];
  const wildcard = l.address === '0.0.0.0' || l.address === '::';
  const dst: Expr[] = wildcard ? [] : [match(payload(familyOf(l.address), 'daddr'), l.address)];
  return [{ comment: `metrics on ${listen}`, expr: [...dst, match(payload('tcp', 'dport'), l.port), counter, accept] }];
}

const ICMP_TYPES = ['echo-request', 'destination-unreachable', 'time-exceeded', 'parameter-problem'];
// MLD queries too: a host that never answers them loses its solicited-node
// memberships at MLD-snooping switches, which then stop delivering the
// neighbour solicitations for its addresses — IPv6, BGP to IPv6 peers
// included, dies one membership interval (260 s by default) after the
// ruleset is applied.
const ICMPV6_TYPES = [
  'echo-request', 'destination-unreachable', 'packet-too-big', 'time-exceeded', 'parameter-problem',
  'nd-router-advert', 'nd-neighbor-solicit', 'nd-neighbor-advert', 'mld-listener-query',
];

function baseRules(): RuleSpec[] {
  return [
    { comment: 'replies to connections the host made', expr: [match({ ct: { key: 'state' } }, { set: ['established', 'related'] }, 'in'), accept] },
    { comment: 'no conntrack state: drop', expr: [match({ ct: { key: 'state' } }, 'invalid', 'in'), counter, { drop: null }] },
    { comment: 'loopback', expr: [match({ meta: { key: 'iif' } }, 'lo'), accept] },
    { comment: 'ICMP errors and echo', expr: [match(payload('icmp', 'type'), { set: ICMP_TYPES }), counter, accept] },
    { comment: 'ICMPv6 errors, PMTU, neighbour discovery, MLD queries, echo', expr: [match(payload('icmpv6', 'type'), { set: ICMPV6_TYPES }), counter, accept] },
    {
      comment: 'DHCPv6 replies to the host\'s client (link-local)',
      expr: [match(payload('ip6', 'daddr'), { prefix: { addr: 'fe80::', len: 10 } }), match(payload('udp', 'sport'), PORTS.dhcp6Server), match(payload('udp', 'dport'), PORTS.dhcp6Client), counter, accept],
    },
  ];
}

/** Pool CIDRs by address family (VIPs come from these). */
function poolCidrs(cfg: EdgelbConfig): Record<Family, string[]> {
  return byFamily(cfg.pools.flatMap((p) => p.cidrs));
}

/** The rules of the forward chain, in order (policy drop). */
export function forwardRules(cfg: EdgelbConfig): RuleSpec[] {
  const pools = poolCidrs(cfg);
  const uplink = cfg.node.uplink;
  const vipRules: RuleSpec[] = (['ip', 'ip6'] as const).filter((fam) => pools[fam].length > 0).map((fam) => ({
    comment: `to a VIP on a port that is no frontend (${fam === 'ip' ? 'IPv4' : 'IPv6'}): never routed back to the router`,
    expr: [match(payload(fam, 'daddr'), oneOrSet(pools[fam].map(addrExpr))), counter, { drop: null }],
  }));
  return [
    ...vipRules,
    {
      comment: 'rewritten by the datapath, next hop not yet resolved: in and out of the uplink',
      expr: [match({ meta: { key: 'iifname' } }, uplink), match({ meta: { key: 'oifname' } }, uplink), counter, accept],
    },
    { comment: 'not a router: everything else', expr: [counter, { drop: null }] },
  ];
}

/** The rules of the input chain, in order (exported for tests and `show`). */
export function inputRules(cfg: EdgelbConfig): RuleSpec[] {
  const peers = cfg.bgp.peers.map((p) => p.address);
  return [
    ...baseRules(),
    ...fromSources('BGP from peers', peers, 'tcp', [PORTS.bgp]),
    ...bfdRules(cfg.bgp.peers),
    ...metricsRules(cfg.metrics.listen),
    ...fromSources('SSH from firewall.sshFrom', cfg.firewall.sshFrom, 'tcp', [PORTS.ssh]),
    { comment: 'everything else to the host', expr: [counter, { drop: null }] },
  ];
}

/**
 * The full ruleset, atomic and idempotent: (re)creates the table, so applying
 * it again replaces the previous rules in one transaction. With
 * firewall.enabled false it only removes our table.
 */
export function firewallRuleset(cfg: EdgelbConfig): NftRuleset {
  if (!cfg.firewall.enabled) return removeRuleset();
  const chain = { family: FAMILY, table: TABLE, name: 'input' };
  const fwd = { family: FAMILY, table: TABLE, name: 'forward' };
  const rule = (c: string) => (r: RuleSpec) => ({ add: { rule: { family: FAMILY, table: TABLE, chain: c, comment: r.comment, expr: r.expr } } });
  return {
    nftables: [
      { metainfo: { json_schema_version: 1 } },
      // add + delete + add: works whether or not the table exists yet.
      { add: { table: tableRef } },
      { delete: { table: tableRef } },
      { add: { table: tableRef } },
      { add: { chain: { ...chain, type: 'filter', hook: 'input', prio: 0, policy: 'drop' } } },
      ...inputRules(cfg).map(rule('input')),
      { add: { chain: { ...fwd, type: 'filter', hook: 'forward', prio: 0, policy: 'drop' } } },
      ...forwardRules(cfg).map(rule('forward')),
    ],
  };
}

/** Removes our table (and only ours); fine if it is not there. */
export function removeRuleset(): NftRuleset {
  return {
    nftables: [
      { metainfo: { json_schema_version: 1 } },
      { add: { table: tableRef } },
      { delete: { table: tableRef } },
    ],
  };
}
