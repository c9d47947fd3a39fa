// Reads edgelb.yaml, validates all of it, and returns a complete config or
// every problem at once — never a partly valid config.
import { readFileSync, statSync, accessSync, constants as fsc } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import convict from 'convict';
import { LineCounter, parseDocument, isMap, isSeq, isScalar, visit, type Node as YamlNode } from 'yaml';
import { rootSchema, peerSchema, poolSchema } from './schema.js';
import { passwordFromText } from './formats.js';
import { checkCidr, cidrContains, cidrsOverlap, type Cidr } from '../net/cidr.js';
import { canonicalIp, ipToBigInt, isIp, isIpv4 } from '../net/ip.js';
import { NOT_VIP_BLOCKS } from '../net/special-blocks.js';
import type { EdgelbConfig, PeerConfig, PoolConfig } from './types.js';

export type PathSeg = string | number;

export interface ConfigProblem {
  path: PathSeg[];
  message: string;
  /** Line in the file (1-based). */
  line: number;
  /** The offending value; absent when the key is missing. */
  value?: unknown;
  hasValue: boolean;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: ConfigProblem[],
  ) {
    super(`${file}: ${problems.length} problem(s) in the configuration\n${formatProblems(file, problems).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function pathToString(path: PathSeg[]): string {
  let s = '';
  for (const seg of path) s += typeof seg === 'number' ? `[${seg}]` : s === '' ? seg : `.${seg}`;
  return s === '' ? '(document)' : s;
}

function showValue(p: ConfigProblem): string {
  if (!p.hasValue) return 'nothing';
  const v = p.value;
  if (typeof v === 'string') return JSON.stringify(v);
  const json = JSON.stringify(v);
  return json === undefined ? String(v) : json.length > 80 ? `${json.slice(0, 77)}...` : json;
}

/** One line per problem: `FILE:LINE: key.path: what is wrong (got VALUE)`. */
export function formatProblems(file: string, problems: ConfigProblem[]): string[] {
  return problems.map((p) => `${file}:${p.line}: ${pathToString(p.path)}: ${p.message} (got ${showValue(p)})`);
}

type Schema = Record<string, unknown>;

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A schema node is a section when it has no `format` of its own. */
const isSection = (node: unknown): node is Schema => isPlainObject(node) && !('format' in node);

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

// Convict coerces strings by the type of a key's default ("yes" → true,
// "30s" → 30) unless the format is a registered name without a coercer; we
// want a type error instead, so every format function gets a name.
const formatNames = new WeakMap<object, string>();
let formatCount = 0;
function namedFormats(schema: Schema): Schema {
  const out: Schema = {};
  for (const [k, node] of Object.entries(schema)) {
    if (isSection(node)) {
      out[k] = namedFormats(node);
      continue;
    }
    const leaf = node as { format: unknown };
    if (typeof leaf.format === 'function') {
      let name = formatNames.get(leaf.format);
      if (!name) {
        name = `edgelb-format-${++formatCount}`;
        formatNames.set(leaf.format, name);
        convict.addFormat({ name, validate: leaf.format as (v: unknown) => void });
      }
      out[k] = { ...leaf, format: name };
    } else out[k] = leaf;
  }
  return out;
}
const namedSchemas = new WeakMap<Schema, Schema>();

/** Leaves whose value is a free-form map (label selectors): convict's load splits their dotted keys. */
function mapLeaves(schema: Schema): string[] {
  return Object.entries(schema)
    .filter(([, n]) => !isSection(n) && isPlainObject((n as { default: unknown }).default))
    .map(([k]) => k);
}

class Validator {
  readonly problems: ConfigProblem[] = [];
  private readonly reported = new Set<string>();
  constructor(
    private readonly doc: ReturnType<typeof parseDocument>,
    private readonly lines: LineCounter,
  ) {}

  /** Line of the key at `path`, or of its nearest existing ancestor. */
  lineOf(path: PathSeg[]): number {
    let node: unknown = this.doc.contents;
    let line = node && (node as YamlNode).range ? this.lines.linePos((node as YamlNode).range![0]).line : 1;
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((it) => isScalar(it.key) && String(it.key.value) === String(seg));
        if (!pair) break;
        const key = pair.key as YamlNode;
        if (key.range) line = this.lines.linePos(key.range[0]).line;
        node = pair.value;
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = node.items[seg] as YamlNode | undefined;
        if (!item) break;
        if (item.range) line = this.lines.linePos(item.range[0]).line;
        node = item;
      } else break;
    }
    return line;
  }

  add(path: PathSeg[], message: string, value?: { v: unknown }): void {
    this.problems.push({ path, message, line: this.lineOf(path), value: value?.v, hasValue: value !== undefined });
  }

  /** Drops values that should be mappings but are not, so convict sees sane shapes. */
  checkSections(raw: Record<string, unknown>, schema: Schema, prefix: PathSeg[]): void {
    for (const [k, sub] of Object.entries(schema)) {
      if (!isSection(sub) || !(k in raw)) continue;
      const v = raw[k];
      if (v === null || v === undefined) {
        delete raw[k]; // an empty section ("node:") means "all defaults"
      } else if (!isPlainObject(v)) {
        this.add([...prefix, k], 'must be a mapping of keys', { v });
        delete raw[k];
      } else {
        this.checkSections(v, sub, [...prefix, k]);
      }
    }
  }

  siblingKeys(schema: Schema, path: string[]): string[] {
    let node: unknown = schema;
    for (const seg of path) node = isSection(node) ? node[seg] : undefined;
    return isSection(node) ? Object.keys(node) : [];
  }

  /** Runs convict on one object and turns its combined message into problems. */
  runConvict<T>(schema: Schema, raw: Record<string, unknown>, prefix: PathSeg[]): T {
    this.checkSections(raw, schema, prefix);
    let named = namedSchemas.get(schema);
    if (!named) {
      named = namedFormats(schema);
      namedSchemas.set(schema, named);
    }
    const maps: Record<string, unknown> = {};
    for (const k of mapLeaves(schema)) {
      if (!(k in raw)) continue;
      const leaf = schema[k] as { format: (v: unknown) => void };
      try {
        leaf.format(raw[k]);
        maps[k] = raw[k];
      } catch (e) {
        this.add([...prefix, k], (e as Error).message, { v: raw[k] });
      }
      delete raw[k];
    }
    this.checkKeys(raw, schema, prefix);
    const conf = convict(named as convict.Schema<T>);
    conf.load(raw);
    try {
      conf.validate({ allowed: 'strict' });
    } catch (e) {
      for (const line of (e as Error).message.split('\n')) this.convictLine(line, schema, raw, prefix);
    }
    return { ...(conf.getProperties() as T), ...maps };
  }

  /**
   * Drops keys convict cannot be trusted with, each reported: it reads a
   * dotted key ("datapath.mode: snat") as a path it then neither applies nor
   * refuses, silently skips "__proto__" and "constructor", and stumbles on
   * an empty key with a message naming no key at all.
   */
  private checkKeys(raw: Record<string, unknown>, schema: Schema, prefix: PathSeg[]): void {
    for (const k of Object.keys(raw)) {
      const sub = schema[k];
      if (k.includes('.')) {
        this.add([...prefix, k], 'unknown key: a key with dots is not a path; nest each part' + (k.split('.').length === 2 ? ` ("${k.split('.')[0]}:" then "${k.split('.')[1]}:" under it)` : ''), { v: raw[k] });
      } else if (k === '' || k === '__proto__' || k === 'constructor') {
        this.add([...prefix, k], k === '' ? 'unknown key: an empty (or ~) key' : 'unknown key', { v: raw[k] });
      } else {
        if (isSection(sub) && isPlainObject(raw[k])) this.checkKeys(raw[k], sub, [...prefix, k]);
        continue;
      }
      delete raw[k];
    }
  }

  private convictLine(line: string, schema: Schema, raw: Record<string, unknown>, prefix: PathSeg[]): void {
    const valueAt = (segs: string[]): { v: unknown } | undefined => {
      let cur: unknown = raw;
      for (const s of segs) {
        if (!isPlainObject(cur) || !(s in cur)) return undefined;
        cur = cur[s];
      }
      return { v: cur };
    };
    const undeclared = /^configuration param '(.+)' not declared in the schema$/.exec(line);
    if (undeclared) {
      const full = undeclared[1]!.split('.');
      // Name the outermost unknown key ("bgpp", not "bgpp.peers").
      let known = 0;
      while (known < full.length - 1 && this.siblingKeys(schema, full.slice(0, known)).includes(full[known]!)) known++;
      const segs = full.slice(0, known + 1);
      if (this.reported.has(segs.join('.') + prefix.join('.'))) return;
      this.reported.add(segs.join('.') + prefix.join('.'));
      const leaf = segs[segs.length - 1]!;
      const near = this.siblingKeys(schema, segs.slice(0, -1)).filter((k) => editDistance(k, leaf) <= 2);
      const hint = near.length > 0 ? ` (did you mean "${near[0]}"?)` : '';
      this.add([...prefix, ...segs], `unknown key${hint}`, valueAt(segs));
      return;
    }
    const missing = /^configuration param '(.+)' missing from config/.exec(line);
    if (missing) {
      this.add([...prefix, ...missing[1]!.split('.')], 'is required');
      return;
    }
    const m = /^([^:\s]+): (.*?)(?:: value was .*)?$/.exec(line);
    if (!m) {
      this.add(prefix, line);
      return;
    }
    const segs = m[1]!.split('.');
    const msg = m[2]!;
    const item = /^\[(\d+)\] (.*)$/.exec(msg);
    const value = valueAt(segs);
    if (item) {
      const i = Number(item[1]);
      const list = value?.v as unknown[];
      this.add([...prefix, ...segs, i], item[2]!, { v: list[i] });
    } else if (value === undefined) {
      this.add([...prefix, ...segs], msg === 'is required' ? msg : `is required: ${msg}`);
    } else {
      this.add([...prefix, ...segs], msg, value);
    }
  }
}

function checkPeer(v: Validator, p: PeerConfig, i: number, edge: readonly NamedAddress[]): void {
  const at = (k: PathSeg[]): PathSeg[] => ['bgp', 'peers', i, ...k];
  const self = edge.find((e) => e.address === p.address);
  if (self) v.add(at(['address']), `is ${self.field}, this edge itself: a session needs the router's address`, { v: p.address });
  if (p.localAddress && p.localAddress === p.address) {
    v.add(at(['localAddress']), "is the peer's own address; it must be this edge's address on that session", { v: p.localAddress });
  }
  if (p.holdTime !== 0 && p.holdTime < 3) v.add(at(['holdTime']), 'must be 0 (no keepalives) or at least 3 seconds', { v: p.holdTime });
  if (p.holdTime === 0 && p.keepalive !== 0) v.add(at(['keepalive']), 'must be 0 when holdTime is 0', { v: p.keepalive });
  if (p.holdTime !== 0 && p.keepalive >= p.holdTime) v.add(at(['keepalive']), `must be less than holdTime (${p.holdTime})`, { v: p.keepalive });
  if (p.localAddress && typeof p.address === 'string' && isIpv4(p.address) !== isIpv4(p.localAddress)) {
    v.add(at(['localAddress']), 'must be of the same address family as address', { v: p.localAddress });
  }
  if (p.bfd.enabled && p.multihop > 1) {
    // bfdd can run multihop sessions, but we only configure single-hop ones.
    v.add(at(['bfd', 'enabled']), 'BFD is supported for directly connected peers only (multihop must be 0 or 1)', { v: true });
  }
  if (p.passwordFile) {
    try {
      const st = statSync(p.passwordFile);
      if (!st.isFile()) v.add(at(['passwordFile']), 'is not a regular file', { v: p.passwordFile });
      else if ((st.mode & 0o004) !== 0) v.add(at(['passwordFile']), 'is world-readable; chmod o-r it (it holds a BGP password)', { v: p.passwordFile });
      else {
        accessSync(p.passwordFile, fsc.R_OK);
        const pw = passwordFromText(readFileSync(p.passwordFile, 'utf8'));
        if (typeof pw !== 'string') v.add(at(['passwordFile']), pw.problem, { v: p.passwordFile });
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      v.add(at(['passwordFile']), code === 'ENOENT' ? 'does not exist' : `cannot be read (${code ?? String(e)})`, { v: p.passwordFile });
    }
  }
}

const familyName = (fam: 4 | 6): string => (fam === 4 ? 'IPv4' : 'IPv6');

/**
 * A VIP is announced only over sessions of its own family (an IPv6 VIP over
 * an IPv6 session, whose local address is the next hop), so each family a
 * pool allocates from needs a peer of that family among the peers it
 * advertises to; otherwise its VIPs are allocated and reach no router.
 * Without any peer there is no BGP at all, and nothing to check.
 */
function checkPoolFamilies(v: Validator, pool: PoolConfig, i: number, peerAddrs: Set<string>): void {
  if (peerAddrs.size === 0 || !Array.isArray(pool.cidrs)) return;
  const restricted = Array.isArray(pool.advertise?.peers) && pool.advertise.peers.length > 0;
  const eligible = restricted ? pool.advertise.peers.filter((a) => peerAddrs.has(a)) : [...peerAddrs];
  const families = new Set(eligible.map((a) => (isIpv4(a) ? 4 : 6)));
  pool.cidrs.forEach((text, j) => {
    const cidr = checkCidr(text);
    if (typeof cidr === 'string' || families.has(cidr.family)) return;
    const fam = familyName(cidr.family);
    const where = restricted ? `advertise.peers lists no ${fam} peer` : `bgp.peers has no ${fam} peer; add one`;
    v.add(['pools', i, 'cidrs', j], `${fam} VIPs are announced only over ${fam} BGP sessions and ${where}`, { v: text });
  });
}

/**
 * A pool's block must hold VIPs a client can reach, and none of the
 * addresses the edge and its routers talk over: allocated as a VIP, such an
 * address would be announced as a /32 (/128) and its own traffic — the BGP
 * sessions among it — drawn to the edges.
 */
function checkPoolBlock(v: Validator, cidr: Cidr, text: string, at: PathSeg[], own: readonly NamedAddress[], ipipSource: Cidr | null): void {
  const special = NOT_VIP_BLOCKS.find((b) => cidrsOverlap(b.cidr, cidr));
  if (special) {
    v.add(at, `overlaps ${special.what}: no router forwards packets for it to the edges, so no client could reach a VIP there`, { v: text });
    return;
  }
  for (const o of own) {
    const { family, value } = ipToBigInt(o.address);
    if (cidrContains(cidr, family, value)) {
      v.add(at, `holds ${o.field} ${o.address}: allocated as a VIP, that address would be announced to the routers and its own traffic drawn to the edges`, { v: text });
      return;
    }
  }
  if (ipipSource && cidrsOverlap(ipipSource, cidr)) v.add(at, `overlaps datapath.ipipSourceCidr ${ipipSource.text}, the edges' tunnel source addresses`, { v: text });
}

interface NamedAddress {
  /** Where the config names it ("node.address", "bgp.peers[0].address"). */
  field: string;
  /** In its one spelling. */
  address: string;
}

const named = (field: string, a: unknown): NamedAddress[] => (typeof a === 'string' && isIp(a) ? [{ field, address: canonicalIp(a) ?? a }] : []);

/** This edge's addresses that the config names (valid ones; the others are reported already). */
function edgeAddresses(node: Record<string, unknown> | undefined): NamedAddress[] {
  return [...named('node.address', node?.address), ...named('node.address6', node?.address6)];
}

/** The addresses this edge (`edge`: edgeAddresses) and its BGP peers talk over. */
function sessionAddresses(edge: readonly NamedAddress[], peers: readonly PeerConfig[]): NamedAddress[] {
  return [...edge, ...peers.flatMap((p, i) => [...named(`bgp.peers[${i}].address`, p.address), ...named(`bgp.peers[${i}].localAddress`, p.localAddress)])];
}

function checkPools(v: Validator, pools: PoolConfig[], peerAddrs: Set<string>, own: readonly NamedAddress[], ipipSource: Cidr | null): void {
  const names = new Map<string, number>();
  const seen: { cidr: Cidr; text: string; pool: number; idx: number }[] = [];
  pools.forEach((pool, i) => {
    if (typeof pool.name === 'string') {
      const first = names.get(pool.name);
      if (first !== undefined) v.add(['pools', i, 'name'], `duplicates the name of pools[${first}]`, { v: pool.name });
      else names.set(pool.name, i);
    }
    (Array.isArray(pool.cidrs) ? pool.cidrs : []).forEach((text, j) => {
      const cidr = checkCidr(text);
      if (typeof cidr === 'string') return; // already reported
      checkPoolBlock(v, cidr, text, ['pools', i, 'cidrs', j], own, ipipSource);
      const clash = seen.find((s) => cidrsOverlap(s.cidr, cidr));
      if (clash) {
        const where = clash.pool === i ? `cidrs[${clash.idx}] of the same pool` : `pools[${clash.pool}] (${pools[clash.pool]?.name}) ${clash.text}`;
        v.add(['pools', i, 'cidrs', j], `overlaps ${where}`, { v: text });
      }
      seen.push({ cidr, text, pool: i, idx: j });
    });
    (Array.isArray(pool.advertise?.peers) ? pool.advertise.peers : []).forEach((addr, j) => {
      if (!peerAddrs.has(addr)) v.add(['pools', i, 'advertise', 'peers', j], 'is not the address of a configured bgp.peers entry', { v: addr });
    });
    checkPoolFamilies(v, pool, i, peerAddrs);
  });
}

/** A valid address in its one spelling (RFC 5952 for IPv6); anything else (already reported) as it is. */
const respell = (a: string): string => (isIp(a) ? (canonicalIp(a) ?? a) : a);

/** Validates YAML text; throws ConfigError listing every problem. */
export function parseConfig(text: string, file: string): EdgelbConfig {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const v = new Validator(doc, lines);
  for (const err of doc.errors) {
    const line = err.linePos?.[0]?.line ?? lines.linePos(err.pos[0]).line;
    v.problems.push({ path: [], message: `YAML syntax: ${err.message.split('\n')[0]}`, line, hasValue: false });
  }
  if (v.problems.length > 0) throw new ConfigError(file, v.problems);

  let js: unknown;
  try {
    js = doc.toJS();
  } catch (e) {
    // yaml refuses aliases that expand past its limit (a "billion laughs"
    // file); anything else it throws here is a bug, not a config problem.
    if (!(e instanceof ReferenceError)) throw e;
    let line = 1;
    visit(doc, {
      Alias(_, node) {
        if (node.range) line = lines.linePos(node.range[0]).line;
        return visit.BREAK;
      },
    });
    throw new ConfigError(file, [{ path: [], message: 'YAML: aliases expand to too many nodes ("billion laughs"); write the values out', line, hasValue: false }]);
  }
  const raw: Record<string, unknown> = js === null || js === undefined ? {} : (js as Record<string, unknown>);
  if (!isPlainObject(raw)) throw new ConfigError(file, [{ path: [], message: 'must be a mapping of sections (node, bgp, pools, ...)', line: 1, value: js, hasValue: true }]);

  const root = v.runConvict<EdgelbConfig>(rootSchema as unknown as Schema, raw, []);

  const node = isPlainObject(raw.node) ? raw.node : undefined;
  // RFC 6286: a BGP identifier is a non-zero 32-bit number.
  if (node?.routerId === '0.0.0.0') v.add(['node', 'routerId'], 'must not be 0.0.0.0 (a BGP identifier is non-zero, RFC 6286)', { v: node.routerId });
  const edge = edgeAddresses(node);
  const rawPeers = isPlainObject(raw.bgp) && Array.isArray(raw.bgp.peers) ? (raw.bgp.peers as unknown[]) : [];
  const peers: PeerConfig[] = [];
  const peerAddrs = new Map<string, number>();
  rawPeers.forEach((el, i) => {
    if (!isPlainObject(el)) {
      v.add(['bgp', 'peers', i], 'must be a mapping (address, asn, ...)', { v: el });
      return;
    }
    const parsed = v.runConvict<PeerConfig>(peerSchema as unknown as Schema, { ...el }, ['bgp', 'peers', i]);
    // gobgpd keeps a neighbor's address as written while bfdd reports it
    // canonical: one spelling everywhere, or a differently written address
    // would not match its own BFD session (and would escape the duplicate check).
    const peer = { ...parsed, address: respell(parsed.address), localAddress: respell(parsed.localAddress) };
    checkPeer(v, peer, i, edge);
    if (typeof peer.address === 'string' && isIp(peer.address)) {
      const first = peerAddrs.get(peer.address);
      if (first !== undefined) v.add(['bgp', 'peers', i, 'address'], `duplicates bgp.peers[${first}]`, { v: parsed.address });
      else peerAddrs.set(peer.address, i);
    }
    peers.push(peer);
  });

  const rawPools = Array.isArray(raw.pools) ? (raw.pools as unknown[]) : [];
  const pools: PoolConfig[] = [];
  rawPools.forEach((el, i) => {
    if (!isPlainObject(el)) {
      v.add(['pools', i], 'must be a mapping (name, cidrs, ...)', { v: el });
      return;
    }
    const pool = v.runConvict<PoolConfig>(poolSchema as unknown as Schema, { ...el }, ['pools', i]);
    const peersOf = pool.advertise.peers;
    pools.push(Array.isArray(peersOf) ? { ...pool, advertise: { ...pool.advertise, peers: peersOf.map(respell) } } : pool);
  });
  const ipip = isPlainObject(raw.datapath) && typeof raw.datapath.ipipSourceCidr === 'string' && raw.datapath.ipipSourceCidr !== '' ? checkCidr(raw.datapath.ipipSourceCidr) : null;
  checkPools(v, pools, new Set(peerAddrs.keys()), sessionAddresses(edge, peers), typeof ipip === 'string' ? null : ipip);

  if (v.problems.length > 0) {
    v.problems.sort((a, b) => a.line - b.line);
    throw new ConfigError(file, v.problems);
  }
  return { ...root, bgp: { ...root.bgp, peers }, pools };
}

/** The text of a config file's bytes, or where it stops being UTF-8 (read as UTF-8 such bytes would become U+FFFD: a path in the file would silently name another file). */
export function decodeConfig(bytes: Buffer): string | { line: number; byte: number } {
  let line = 1;
  for (let start = 0; start < bytes.length; line++) {
    // "\n" (0x0a) is never part of a multi-byte sequence.
    const nl = bytes.indexOf(0x0a, start);
    const end = nl < 0 ? bytes.length : nl + 1;
    const part = bytes.subarray(start, end);
    if (!isUtf8(part)) {
      const good = Buffer.byteLength(part.toString('utf8').split('\uFFFD')[0]!, 'utf8');
      return { line, byte: part[good] ?? 0 };
    }
    start = end;
  }
  return bytes.toString('utf8');
}

export function loadConfigFile(file: string): EdgelbConfig {
  return readConfigFile(file).config;
}

/** The config and the bytes it was parsed from (whose hash the agent reports). */
export function readConfigFile(file: string): { config: EdgelbConfig; bytes: Buffer } {
  let bytes: Buffer;
  const problem = (message: string): ConfigError => new ConfigError(file, [{ path: [], message, line: 0, hasValue: false }]);
  try {
    // A FIFO or a device (/dev/zero) would be read for ever.
    if (!statSync(file).isFile()) throw problem('is not a regular file');
    bytes = readFileSync(file);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw problem(code === 'ENOENT' ? 'file does not exist' : `cannot read the file (${code ?? String(e)})`);
  }
  const text = decodeConfig(bytes);
  if (typeof text !== 'string') {
    throw new ConfigError(file, [{ path: [], message: `is not UTF-8 (byte 0x${text.byte.toString(16).padStart(2, '0')}); save it as UTF-8`, line: text.line, hasValue: false }]);
  }
  return { config: parseConfig(text, file), bytes };
}
