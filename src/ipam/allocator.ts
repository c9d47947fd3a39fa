// Pure address allocator for LoadBalancer Services. No I/O: the Kubernetes
// controller feeds it requests and writes the results to Service status.
//
// Decisions (documented for the README):
// - IPv4 CIDRs of /30 and wider never auto-assign their first (network) and
//   last (broadcast) address: some hosts and middleboxes mistreat them. /31
//   and /32 use every address (RFC 3021). IPv6 blocks of /126 and wider skip
//   the all-zero host (the subnet-router anycast address, RFC 4291).
//   An explicitly requested address is honoured even if it is one of these.
// - Auto-assignment takes the lowest free address, pools in config order,
//   CIDRs in pool order.
// - Sharing: an address holds several Services only if all carry the same
//   `edgelb.io/allow-shared-ip` key and no two use the same port+protocol.
//   Services of different namespaces share only when each one opts in for
//   the other's namespace (`edgelb.io/allow-shared-ip-namespaces`: a list,
//   or "*"): a key alone must not let one tenant join another's address.
// - Stability: a Service keeps the address(es) it already has (passed in as
//   `current`, i.e. read back from status.loadBalancer.ingress) as long as
//   they are still inside a pool that admits it and do not clash; callers
//   replay existing Services oldest first so the older one wins a conflict.
//   A Service object with another uid under the same name is a new Service:
//   what the allocator held for the old one is released first, not kept.
// - Reservation: an address a Service explicitly requested and was refused
//   (taken, or a clash) is not auto-assigned to another Service while that
//   request stands, so it goes to the requester once free — whichever
//   Service the same round decides first.
import { cidrContains, parseCidr, type Cidr, type CidrRules } from '../net/cidr.js';
import { bigIntToIp, canonicalIp, ipToBigInt, type Family } from '../net/ip.js';
import { SharedLists, sameList } from '../shared-lists.js';

/** What the allocator needs of a pool (the config's pools[] entries are these). */
export interface IpPool {
  name: string;
  /** IPv4/IPv6 CIDRs the pool allocates from. */
  cidrs: string[];
  /** Namespaces allowed to use the pool; empty = all. */
  namespaces: string[];
  /** Service labels that must match (matchLabels); empty = all. */
  serviceSelector: Record<string, string>;
  /** Allocate from this pool to Services that did not ask for an address. */
  autoAssign: boolean;
}

/** Pool CIDRs are read as the kernel reads a route (the config has already refused typos). */
const POOL_CIDR: CidrRules = { bareAddress: true, clearHostBits: true };

export interface PortSpec {
  port: number;
  protocol: string;
}

export interface IpRequest {
  /** "namespace/name". */
  key: string;
  /** The Service object's uid: another one under the same key is a new Service (its predecessor's addresses are not its own). */
  uid?: string;
  namespace: string;
  labels: Record<string, string>;
  /** Explicitly requested addresses (spec.loadBalancerIP, edgelb.io/loadBalancerIPs); empty = auto. */
  requested: string[];
  /**
   * `requested` is what this process gave the Service or its status shows,
   * replayed into a fresh allocator (restore), not what the Service asks
   * for: refused, it reserves nothing (the Service's round decides it).
   */
  replayed?: boolean;
  /** edgelb.io/allow-shared-ip; null = never share. */
  sharingKey: string | null;
  /** Other namespaces whose Services may share with this one (edgelb.io/allow-shared-ip-namespaces); '*' = any. Absent = none. */
  shareWithNamespaces?: readonly string[] | '*';
  ports: PortSpec[];
  /** Families required, one address each; empty = one address of any family. */
  families: Family[];
  /**
   * Families wanted as well when a pool has a free address of theirs
   * (PreferDualStack's second family); skipped, not a failure, otherwise.
   */
  preferredFamilies?: Family[];
  /** Addresses the Service already has (status), kept when still valid. */
  current: string[];
}

export interface Assigned {
  ip: string;
  pool: string;
}

export type FailureReason = 'InvalidRequest' | 'RequestRefused' | 'NoPool' | 'PoolExhausted' | 'AddressesReserved' | 'SharingConflict';

export type IpResult =
  | { ok: true; addresses: Assigned[] }
  | { ok: false; reason: FailureReason; message: string };

interface PoolState {
  config: IpPool;
  cidrs: Cidr[];
  /** Per CIDR: no free auto-assignable address below this offset. */
  hints: bigint[];
}

interface AddressUser {
  /** The Service ("namespace/name"). */
  key: string;
  /** The object's uid when the request named it (the informer's string, not a copy). */
  uid: string | undefined;
  namespace: string;
  ports: readonly PortSpec[];
  shareWith: readonly string[] | '*';
}

interface AddressUse {
  pool: string;
  sharingKey: string | null;
  /**
   * In the order they took the address. An array, not a Map: nearly every
   * address has one user, and a Map each was ~1.5 MB at 10 000 Services.
   */
  users: AddressUser[];
}

/** A Service's hold on one address, as others see it (IpAllocator.termsOf). */
interface HoldTerms {
  ip: string;
  sharingKey: string | null;
  /** null: the Service holds the address on no terms we know (never recorded). */
  user: AddressUser | null;
}

const samePort = (p: PortSpec, q: PortSpec): boolean => p.port === q.port && p.protocol === q.protocol;

/** Compared field by field: most Services share one frozen port list (sharedPortSpecs), so ports compare by reference first. */
function sameTerms(a: HoldTerms, b: HoldTerms): boolean {
  if (a.ip !== b.ip || a.sharingKey !== b.sharingKey) return false;
  if (a.user === null || b.user === null) return a.user === b.user;
  const sa = a.user.shareWith;
  const sb = b.user.shareWith;
  if (sa === '*' || sb === '*' ? sa !== sb : !sameList(sa, sb)) return false;
  return sameList(a.user.ports, b.user.ports, samePort);
}

const NO_NAMESPACES: readonly string[] = Object.freeze([]);
const portLists = new SharedLists<PortSpec>();

/** Services with the same ports (most of them: 80/TCP, 443/TCP) share one frozen copy. */
function sharedPortSpecs(ports: readonly PortSpec[]): readonly PortSpec[] {
  return portLists.get(ports.map((p) => `${p.port}/${p.protocol}`).join(','), () => ports.map((p) => ({ port: p.port, protocol: p.protocol })));
}

function admitsNamespace(shareWith: readonly string[] | '*', ns: string): boolean {
  return shareWith === '*' || shareWith.includes(ns);
}

/** Whether a pool admits a Service by namespace and label selector. */
export function poolAdmits(pool: IpPool, namespace: string, labels: Record<string, string>): boolean {
  if (pool.namespaces.length > 0 && !pool.namespaces.includes(namespace)) return false;
  for (const [k, v] of Object.entries(pool.serviceSelector)) {
    if (labels[k] !== v) return false;
  }
  return true;
}

/**
 * The pool that owns `ip` and admits the Service, or null. Edges that do not
 * allocate use this to accept addresses read from status: an address outside
 * every pool (someone else wrote it) is never advertised.
 */
export function poolForAddress<P extends IpPool>(pools: P[], ip: string, namespace: string, labels: Record<string, string>): P | null {
  const c = canonicalIp(ip);
  if (c === null) return null;
  const addr = ipToBigInt(c);
  return pools.find((p) => poolAdmits(p, namespace, labels) && poolContains(p, addr)) ?? null;
}

/** Whether `ip` lies in one of the pools' CIDRs, whichever Services they admit. */
export function inSomePool(pools: readonly IpPool[], ip: string): boolean {
  const c = canonicalIp(ip);
  if (c === null) return false;
  const addr = ipToBigInt(c);
  return pools.some((p) => poolContains(p, addr));
}

/**
 * Each pool's CIDRs parsed once: followers check every address in status
 * against the pools at every computation. Keyed by the pool object (a config
 * reload brings new ones; the old ones go with it).
 */
const parsedCidrs = new WeakMap<IpPool, readonly Cidr[]>();

function poolContains(pool: IpPool, addr: ReturnType<typeof ipToBigInt>): boolean {
  let cidrs = parsedCidrs.get(pool);
  if (!cidrs) parsedCidrs.set(pool, (cidrs = pool.cidrs.map((text) => parseCidr(text, POOL_CIDR))));
  return cidrs.some((c) => cidrContains(c, addr.family, addr.value));
}

function reservedOffset(c: Cidr, off: bigint): boolean {
  if (c.family === 4) return c.prefix <= 30 && (off === 0n || off === c.size - 1n);
  return c.prefix <= 126 && off === 0n;
}

function portKeys(ports: readonly PortSpec[]): Set<string> {
  return new Set(ports.map((p) => `${p.port}/${p.protocol.toUpperCase()}`));
}

/**
 * Whether a port+protocol of `a` is in `mine` (portKeys of the other side).
 * A set, not a pairwise comparison: a Service may list tens of thousands of
 * ports (allocateLoadBalancerNodePorts: false), and two such Services under
 * one sharing key took seconds of the event loop per assignment.
 */
function portsClash(a: readonly PortSpec[], mine: ReadonlySet<string>): boolean {
  return a.some((x) => mine.has(`${x.port}/${x.protocol.toUpperCase()}`));
}

export class IpAllocator {
  private readonly pools: PoolState[];
  private readonly used = new Map<string, AddressUse>();
  private readonly byKey = new Map<string, Assigned[]>();
  /** Addresses held under each sharing key (so joining one is not a scan of every address). */
  private readonly bySharingKey = new Map<string, Set<string>>();
  /** See takeLoosened. */
  private loosened = false;
  /**
   * Addresses explicitly requested by Services refused them (taken, or a
   * clash), with those Services: auto-assignment passes them over (see
   * reservedFor). Both ways, so a request that goes is dropped without a
   * scan. Empty nearly always.
   */
  private readonly wanted = new Map<string, Set<string>>();
  private readonly wantsOf = new Map<string, readonly string[]>();

  constructor(pools: IpPool[]) {
    this.pools = pools.map((config) => {
      const cidrs = config.cidrs.map((t) => {
        try {
          return parseCidr(t, POOL_CIDR);
        } catch (e) {
          throw new Error(`pool ${config.name}: ${(e as Error).message}`, { cause: e });
        }
      });
      return { config, cidrs, hints: cidrs.map(() => 0n) };
    });
  }

  /** Addresses currently held by a Service. */
  assignmentOf(key: string): Assigned[] | undefined {
    return this.byKey.get(key);
  }

  /** Services using an address. */
  usersOf(ip: string): string[] {
    return (this.used.get(canonicalIp(ip) ?? ip)?.users ?? []).map((u) => u.key);
  }

  /** Used/total auto-assignable addresses per pool (total capped for huge IPv6 blocks). */
  stats(): { pool: string; used: number; size: bigint }[] {
    return this.pools.map((p) => {
      let used = 0;
      for (const u of this.used.values()) if (u.pool === p.config.name) used++;
      let size = 0n;
      for (const c of p.cidrs) size += c.size - (c.family === 4 ? (c.prefix <= 30 ? 2n : 0n) : c.prefix <= 126 ? 1n : 0n);
      return { pool: p.config.name, used, size };
    });
  }

  /** The Service no longer wants an address (deleted, no longer ours, or refused one outright): nor does it reserve one. */
  release(key: string): void {
    if (this.byKey.has(key)) this.loosened = true;
    this.drop(key);
    this.loosenIfUnreserved(this.dropWants(key));
  }

  /**
   * Whether, since the last call, a Service let go of an address or changed
   * the terms it holds one on (its ports, sharing key or the namespaces it
   * shares with): a Service refused for exhaustion or a clash may fit now,
   * and is worth deciding again. Without the terms, one refused because its
   * ports clashed with the holder's stayed refused after the holder moved to
   * other ports, until someone edited it.
   */
  takeLoosened(): boolean {
    const v = this.loosened;
    this.loosened = false;
    return v;
  }

  /**
   * Decides the addresses of one Service and records them. On failure the
   * Service holds nothing (it no longer wants what it had, or never had it).
   */
  assign(req: IpRequest): IpResult {
    // Another object under the same name (deleted and created again before
    // the controller computed the deletion): a new Service. Kept as this
    // one's previous address, the old object's address stayed under the
    // name while a Service that had asked for it stayed refused — unless
    // the deletion happened to be computed in a round of its own.
    if (req.uid !== undefined) {
      const first = this.byKey.get(req.key)?.[0];
      const uid = first === undefined ? undefined : this.termsOf(req.key, first.ip).user?.uid;
      if (uid !== undefined && uid !== req.uid) this.release(req.key);
    }
    const previous = this.byKey.get(req.key) ?? [];
    const termsBefore = previous.map((a) => this.termsOf(req.key, a.ip));
    // Decide against the table without this Service, so its own addresses
    // do not clash with themselves, and without what it reserved: decided
    // again, it reserves what it asks for now.
    this.drop(req.key);
    const wantedBefore = this.dropWants(req.key);
    const result = req.requested.length > 0 ? this.decideRequested(req) : this.decideAuto(req, previous);
    if (result.ok) {
      for (const a of result.addresses) this.addUse(req, a);
      this.byKey.set(req.key, result.addresses);
    }
    if (termsBefore.length > 0) {
      const termsAfter = (result.ok ? result.addresses : []).map((a) => this.termsOf(req.key, a.ip));
      if (termsBefore.some((t) => !termsAfter.some((u) => sameTerms(t, u)))) this.loosened = true;
    }
    // (After the decision: refused again, it reserves the same addresses,
    // and that loosens nothing — no retry loop.)
    this.loosenIfUnreserved(wantedBefore);
    return result;
  }

  /** Whether an address is reserved for a Service other than `key` that asked for it and waits. */
  private reservedFor(ip: string, key: string): boolean {
    if (this.wanted.size === 0) return false;
    const keys = this.wanted.get(ip);
    return keys !== undefined && (keys.size > 1 || !keys.has(key));
  }

  /** Records that `key` asked for `ips` and was refused: they are kept from auto-assignment until it stops asking. */
  private reserve(key: string, ips: readonly string[]): void {
    this.wantsOf.set(key, ips);
    for (const ip of ips) {
      const keys = this.wanted.get(ip);
      if (keys) keys.add(key);
      else this.wanted.set(ip, new Set([key]));
    }
  }

  /** Drops what `key` reserved; the addresses it reserved. */
  private dropWants(key: string): readonly string[] {
    const ips = this.wantsOf.get(key);
    if (!ips) return [];
    this.wantsOf.delete(key);
    for (const ip of ips) {
      const keys = this.wanted.get(ip);
      keys?.delete(key);
      if (keys?.size === 0) this.wanted.delete(ip);
    }
    return ips;
  }

  /**
   * Of addresses no longer reserved by some Service: the free ones nobody
   * reserves now may go to anyone again — auto-assignment may have passed
   * them over (its hint is lowered to them), and Services refused for
   * exhaustion are worth deciding again.
   */
  private loosenIfUnreserved(ips: readonly string[]): void {
    for (const ip of ips) {
      if (this.used.has(ip) || this.wanted.has(ip)) continue;
      this.loosened = true;
      const { family, value } = ipToBigInt(ip);
      this.lowerHint(ip, this.pools.find((p) => p.cidrs.some((c) => cidrContains(c, family, value))));
    }
  }

  private drop(key: string): void {
    const held = this.byKey.get(key);
    if (!held) return;
    for (const a of held) this.dropUse(key, a.ip);
    this.byKey.delete(key);
  }

  /** What a Service's hold on an address allows others: the address, its sharing key, the ports and namespaces (see sameTerms). */
  private termsOf(key: string, ip: string): HoldTerms {
    const use = this.used.get(ip);
    const user = use?.users.find((u) => u.key === key);
    return use && user ? { ip, sharingKey: use.sharingKey, user } : { ip, sharingKey: null, user: null };
  }

  private decideRequested(req: IpRequest): IpResult {
    const out: Assigned[] = [];
    const families = new Set<Family>();
    // The first clash is the answer, as before; the addresses after it are
    // still checked, so that only a request that could be met once the
    // clash is gone reserves its addresses (all of them: a free second
    // family's address auto-assigned meanwhile would refuse it again).
    let clashed: IpResult | null = null;
    for (const raw of req.requested) {
      const ip = canonicalIp(raw.trim());
      if (ip === null) return clashed ?? { ok: false, reason: 'InvalidRequest', message: `requested address ${JSON.stringify(raw)} is not an IP address` };
      const { family, value } = ipToBigInt(ip);
      if (families.has(family)) return clashed ?? { ok: false, reason: 'InvalidRequest', message: `more than one IPv${family} address requested` };
      families.add(family);
      const owner = this.pools.find((p) => p.cidrs.some((c) => cidrContains(c, family, value)));
      if (!owner) return clashed ?? { ok: false, reason: 'RequestRefused', message: `requested address ${ip} is not inside any pool edgelb owns` };
      if (!poolAdmits(owner.config, req.namespace, req.labels)) {
        return clashed ?? { ok: false, reason: 'RequestRefused', message: `requested address ${ip} is in pool ${owner.config.name}, which does not admit this Service (namespace/selector)` };
      }
      const clash: string | null = clashed === null ? this.clashWith(req, ip) : null;
      if (clash !== null) clashed = { ok: false, reason: 'SharingConflict', message: `requested address ${ip} ${clash}` };
      out.push({ ip, pool: owner.config.name });
    }
    if (clashed !== null) {
      if (req.replayed !== true) this.reserve(req.key, out.map((a) => a.ip));
      return clashed;
    }
    return { ok: true, addresses: out };
  }

  private decideAuto(req: IpRequest, previous: Assigned[]): IpResult {
    const eligible = this.pools.filter((p) => poolAdmits(p.config, req.namespace, req.labels));
    const auto = eligible.filter((p) => p.config.autoAssign);
    const held = previous.map((a) => a.ip);
    const keepable = [...held, ...req.current];
    const wanted: (Family | null)[] = req.families.length > 0 ? [...new Set(req.families)] : [null];
    const out: Assigned[] = [];
    /** The first free address passed over because another Service reserved it (for the message). */
    const reserved: string[] = [];
    for (const fam of wanted) {
      const got = this.keepCurrent(req, keepable, held, fam, eligible, out) ?? this.joinShared(req, fam, auto, out) ?? this.takeFree(req, fam, auto, out, reserved);
      if (got === null) {
        if (auto.length === 0) {
          return { ok: false, reason: 'NoPool', message: 'no auto-assign pool admits this Service (namespace/selector)' };
        }
        // Not exhaustion: no address of that family would ever free up (an
        // IPv6 or dual-stack Service against IPv4-only pools).
        if (fam !== null && !auto.some((p) => p.cidrs.some((c) => c.family === fam))) {
          return { ok: false, reason: 'NoPool', message: `no free IPv${fam} address: no auto-assign pool admitting this Service has IPv${fam} addresses (pool(s) ${auto.map((p) => p.config.name).join(', ')})` };
        }
        const what = fam === null ? 'address' : `IPv${fam} address`;
        const pools = auto.map((p) => p.config.name).join(', ');
        // Not exhaustion either: a free address is there, for the Service
        // that asked for it (it is retried when that one stops asking).
        const ip = reserved[0];
        if (ip !== undefined) {
          // (Not every name: a thousand Services may wait for one address.)
          const keys = this.wanted.get(ip)!;
          let first = '';
          for (const k of keys) {
            if (k === req.key) continue;
            first = k;
            break;
          }
          const others = keys.size - (keys.has(req.key) ? 1 : 0) - 1;
          const who = others > 0 ? `${first} and ${others} more, which wait` : `${first}, which waits`;
          return { ok: false, reason: 'AddressesReserved', message: `no free ${what} in pool(s) ${pools} but ${ip}, requested by ${who} for it` };
        }
        return { ok: false, reason: 'PoolExhausted', message: `no free ${what} in pool(s) ${pools}` };
      }
      out.push(got);
    }
    for (const fam of req.preferredFamilies ?? []) {
      // One address per family: "any family" may already have given this one.
      if (wanted.includes(fam) || out.some((a) => ipToBigInt(a.ip).family === fam)) continue;
      const got = this.keepCurrent(req, keepable, held, fam, eligible, out) ?? this.joinShared(req, fam, auto, out) ?? this.takeFree(req, fam, auto, out, reserved);
      if (got !== null) out.push(got);
    }
    return { ok: true, addresses: out };
  }

  /** An address of `ips` the Service may keep: one it holds (`held`) even if another waits for it (the holder wins), one only its status shows unless reserved. */
  private keepCurrent(req: IpRequest, ips: string[], held: readonly string[], fam: Family | null, eligible: PoolState[], taken: Assigned[]): Assigned | null {
    for (const raw of ips) {
      const ip = canonicalIp(raw);
      if (ip === null || taken.some((a) => a.ip === ip)) continue;
      const { family, value } = ipToBigInt(ip);
      if (fam !== null && family !== fam) continue;
      if (!held.includes(ip) && this.reservedFor(ip, req.key)) continue;
      const pool = eligible.find((p) => p.cidrs.some((c) => cidrContains(c, family, value)));
      if (pool && this.clashWith(req, ip) === null) return { ip, pool: pool.config.name };
    }
    return null;
  }

  private joinShared(req: IpRequest, fam: Family | null, auto: PoolState[], taken: Assigned[]): Assigned | null {
    if (req.sharingKey === null) return null;
    const names = new Set(auto.map((p) => p.config.name));
    for (const ip of this.bySharingKey.get(req.sharingKey) ?? []) {
      const use = this.used.get(ip);
      if (!use || !names.has(use.pool) || taken.some((a) => a.ip === ip)) continue;
      if (fam !== null && ipToBigInt(ip).family !== fam) continue;
      // Joined, it would keep the address from the one who waits for it.
      if (this.reservedFor(ip, req.key)) continue;
      if (this.clashWith(req, ip) === null) return { ip, pool: use.pool };
    }
    return null;
  }

  /** The lowest free address not reserved for another Service; `reserved` gets the first reserved one passed over. */
  private takeFree(req: IpRequest, fam: Family | null, auto: PoolState[], taken: Assigned[], reserved: string[]): Assigned | null {
    for (const p of auto) {
      for (let i = 0; i < p.cidrs.length; i++) {
        const c = p.cidrs[i]!;
        if (fam !== null && c.family !== fam) continue;
        // Only used and reserved addresses can block, so a free one is
        // found within used.size + wanted.size + 3 steps
        // (network/broadcast included) if one exists.
        let off = p.hints[i]!;
        const limit = BigInt(this.used.size + this.wanted.size + taken.length + 3);
        for (let steps = 0n; off < c.size && steps < limit; off++, steps++) {
          if (reservedOffset(c, off)) continue;
          const ip = bigIntToIp(c.base + off, c.family);
          if (this.used.has(ip) || taken.some((a) => a.ip === ip)) continue;
          if (this.reservedFor(ip, req.key)) {
            if (reserved.length === 0) reserved.push(ip);
            continue;
          }
          p.hints[i] = off + 1n;
          return { ip, pool: p.config.name };
        }
        if (off >= c.size) p.hints[i] = c.size;
      }
    }
    return null;
  }

  /** null when `req` may use `ip`, else why not. */
  private clashWith(req: IpRequest, ip: string): string | null {
    const use = this.used.get(ip);
    if (!use || use.users.length === 0) return null;
    const others = use.users.map((u) => u.key).join(', ');
    if (req.sharingKey === null || use.sharingKey !== req.sharingKey) {
      return `is already used by ${others} (sharing needs the same edgelb.io/allow-shared-ip key on every Service)`;
    }
    const mine = req.shareWithNamespaces ?? [];
    const myPorts = portKeys(req.ports);
    for (const u of use.users) {
      const k = u.key;
      if (u.namespace !== req.namespace && !(admitsNamespace(u.shareWith, req.namespace) && admitsNamespace(mine, u.namespace))) {
        return `is used by ${k} in namespace ${u.namespace} (sharing across namespaces needs edgelb.io/allow-shared-ip-namespaces naming the other namespace on both Services)`;
      }
      if (portsClash(u.ports, myPorts)) return `is shared with ${k}, whose ports clash with this Service's`;
    }
    return null;
  }

  private addUse(req: IpRequest, a: Assigned): void {
    const shareWith = req.shareWithNamespaces ?? NO_NAMESPACES;
    const user: AddressUser = { key: req.key, uid: req.uid, namespace: req.namespace, ports: sharedPortSpecs(req.ports), shareWith: shareWith.length === 0 ? NO_NAMESPACES : shareWith };
    let use = this.used.get(a.ip);
    if (!use) {
      // A literal sized for its one user: push() onto [] reserves 17 slots.
      use = { pool: a.pool, sharingKey: req.sharingKey, users: [user] };
      this.used.set(a.ip, use);
      if (req.sharingKey !== null) {
        let set = this.bySharingKey.get(req.sharingKey);
        if (!set) this.bySharingKey.set(req.sharingKey, (set = new Set()));
        set.add(a.ip);
      }
      return;
    }
    const i = use.users.findIndex((u) => u.key === req.key);
    if (i >= 0) use.users[i] = user;
    else use.users.push(user);
  }

  private dropUse(key: string, ip: string): void {
    const use = this.used.get(ip);
    if (!use) return;
    const i = use.users.findIndex((u) => u.key === key);
    if (i >= 0) use.users.splice(i, 1);
    if (use.users.length > 0) return;
    this.used.delete(ip);
    if (use.sharingKey !== null) {
      const set = this.bySharingKey.get(use.sharingKey);
      set?.delete(ip);
      if (set?.size === 0) this.bySharingKey.delete(use.sharingKey);
    }
    this.lowerHint(ip, this.pools.find((p) => p.config.name === use.pool));
  }

  /** `ip` is free (again): auto-assignment of its pool starts its search no higher. */
  private lowerHint(ip: string, pool: PoolState | undefined): void {
    if (!pool) return;
    const { family, value } = ipToBigInt(ip);
    pool.cidrs.forEach((c, i) => {
      if (cidrContains(c, family, value) && value - c.base < pool.hints[i]!) pool.hints[i] = value - c.base;
    });
  }
}
