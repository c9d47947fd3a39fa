/**
 * Typed access to eBPF objects, programs and maps through the native
 * bpf_loader addon (native/bpf-loader-napi, libbpf 1.1). Everything is
 * synchronous and runs on the calling thread.
 *
 * Objects (ELF files built by bpf/Makefile into bpf/out/NAME.o):
 *
 *   const obj = BpfObject.open(bpfObjectPath('edge_xdp'), {
 *     pinMaps: '/sys/fs/bpf/edgelb',          // reuse/pin every map at DIR/<map name>
 *     maxEntries: { flows: 1 << 20 },         // size maps before load
 *     initialValues: { 'edge_xdp.rodata': cfgBytes },  // `const volatile` config
 *   }).load();                                // or BpfObject.load(path, opts)
 *   const prog = obj.program('edge_xdp');     // by function name or section
 *   const flows = obj.map('flows');
 *   ...
 *   obj.close();                              // closes every fd of the object
 *
 *   With pinMaps, libbpf reuses a map already pinned at DIR/<name> when its
 *   type, key/value size, max_entries and flags match, and fails the load
 *   (EINVAL, "couldn't reuse pinned map" in err.libbpfLog) when they do not;
 *   otherwise it creates the map and pins it. A restarted agent therefore
 *   keeps its maps (and their contents). Internal maps (.data/.rodata/.bss)
 *   are never pinned. `pinMaps: { dir, only: ['flows'] }` restricts it.
 *   Maps and programs obtained from an object are valid until obj.close().
 *
 * Maps (keys and values are raw bytes; sizes are checked here, a wrong size
 * throws RangeError):
 *
 *   map.lookup(key): Buffer | null
 *   map.update(key, value, flags = BPF_ANY)      // BPF_NOEXIST, BPF_EXIST
 *   map.delete(key): boolean                     // false when absent
 *   map.keys(): Buffer[]     map.entries(): [Buffer, Buffer][]
 *   map.updateBatch(keys, values, flags?)        // one syscall when supported
 *   map.clear(): number                          // deletes every key (hash types)
 *   map.info(): MapInfo      map.memlockBytes(): number
 *   map.dump(batchSize?): [Buffer, Buffer][]     // BPF_MAP_LOOKUP_BATCH, for big maps
 *   map.dumpPacked(), map.updateBatchPacked(keys, values)  // back-to-back bytes
 *   map.lookupAndDelete(key), map.freeze()
 *   map.pin(path)            BpfMap.openPinned(path)  (owns its fd: close() it)
 *   BpfMap.create({ type, keySize, valueSize, maxEntries, flags?, name?, innerMap? })
 *       standalone map (map-in-map inners: outer.update(key, u32le(inner.fd)))
 *   Per-CPU maps: lookup() returns possibleCpus() × roundup8(valueSize) bytes
 *   (map.valueBufSize); lookupPerCpu(key) / updatePerCpu(key, values[]) split
 *   and join the per-CPU slots; update() also takes a single value and writes
 *   it to every CPU.
 *
 * Programs:
 *
 *   prog.testRun({ data, repeat?, flags?, dataSizeOut?, ctxIn?, cpu? })
 *       -> { retval, dataOut, duration }     (BPF_PROG_TEST_RUN)
 *       With repeat > 1 the syscall runs on a helper thread, so libuv's
 *       io_uring task work cannot cut it short with EINTR.
 *       Live frames (flags BPF_F_TEST_XDP_LIVE_FRAMES) really transmit/pass
 *       the frames in the caller's netns and report neither verdict nor data.
 *   prog.testRunLoop(data, count, { flags?, ctxIn?, copyOut? })
 *       -> { count, totalNs, kernelNs, retval, retvalMismatches, nsPerCall,
 *            kernelNsPerCall }
 *       count × (repeat=1) calls in C: each call sees the original packet.
 *       Use this for benchmarks, with the floors bpf/xdp_pass.c (XDP) and
 *       bpf/tc_pass.c (tc) measured the same way in the same run.
 *   prog.attachXdp(ifname | ifindex, 'native' | 'generic' | 'auto', opts?)
 *       -> XdpAttachment { ifindex, mode, detach() }
 *   prog.attachTc(ifname | ifindex, 'ingress' | 'egress', { priority?, handle?, replace? })
 *       -> TcAttachment { ifindex, direction, priority, handle, detach() }
 *   detachXdp(ifname, mode), detachTc(ifname, direction, { priority, handle }),
 *   removeClsact(ifname), xdpQuery(ifname) are module functions (no program
 *   needed, e.g. to clean up after a crashed agent).
 *   prog.info(): ProgInfo (id, tag, verifiedInsns, runCnt …), prog.pin(path),
 *   BpfProgram.openPinned(path) (owns its fd: close() it).
 *   enableRunTimeStats() makes the kernel fill ProgInfo.runTimeNs/runCnt.
 *
 * Helpers: bpfObjectPath(name), possibleCpus(), ifIndex(name), unpin(path),
 * fdMemlock(fd), libbpfVersion(), repoRoot(); constants XDP_*, TC_ACT_*,
 * BPF_ANY/BPF_NOEXIST/BPF_EXIST, BPF_F_TEST_XDP_LIVE_FRAMES, BPF_MAP_TYPE.
 *
 * Errors: failures of the kernel or libbpf throw an Error with .errno
 * (number), .code ('EPERM', 'ENOENT', 'ENOTSUPP' …), .syscall (the failing
 * operation), .libbpfLog (what libbpf printed, if anything) and, for a
 * failed load, .verifierLog. Use isBpfError(e) to narrow. Bad arguments
 * throw TypeError/RangeError naming the argument.
 *
 * Network namespaces: inNetns(name, fn) runs a synchronous fn with the
 * calling thread in /run/netns/NAME (attach/detach/ifIndex then act there).
 * Attachments remember their namespace: att.detach() called outside
 * inNetns() re-enters the namespace of the attach (an ifindex names another
 * device elsewhere), or throws when it cannot.
 */
import { closeSync, mkdirSync, openSync, readFileSync, existsSync, statSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// ---------------------------------------------------------------- constants

export const XDP_ABORTED = 0;
export const XDP_DROP = 1;
export const XDP_PASS = 2;
export const XDP_TX = 3;
export const XDP_REDIRECT = 4;

export const TC_ACT_UNSPEC = -1;
export const TC_ACT_OK = 0;
export const TC_ACT_SHOT = 2;
export const TC_ACT_REDIRECT = 7;

/** Map update flags. */
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

/** testRun flags. */
export const BPF_F_TEST_RUN_ON_CPU = 1;
export const BPF_F_TEST_XDP_LIVE_FRAMES = 2;

export const BPF_MAP_TYPE = {
  HASH: 1,
  ARRAY: 2,
  PROG_ARRAY: 3,
  PERF_EVENT_ARRAY: 4,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12,
  HASH_OF_MAPS: 13,
  DEVMAP: 14,
  CPUMAP: 16,
  PERCPU_CGROUP_STORAGE: 21,
  DEVMAP_HASH: 25,
  RINGBUF: 27,
} as const;

const PER_CPU_TYPES = new Set<number>([
  BPF_MAP_TYPE.PERCPU_HASH,
  BPF_MAP_TYPE.PERCPU_ARRAY,
  BPF_MAP_TYPE.LRU_PERCPU_HASH,
  BPF_MAP_TYPE.PERCPU_CGROUP_STORAGE,
]);

const XDP_FLAGS_UPDATE_IF_NOEXIST = 1;
const XDP_FLAGS_SKB_MODE = 2;
const XDP_FLAGS_DRV_MODE = 4;

// ---------------------------------------------------------------- types

export interface BpfError extends Error {
  errno: number;
  code: string;
  syscall: string;
  libbpfLog?: string;
  verifierLog?: string;
}

export function isBpfError(e: unknown): e is BpfError {
  return e instanceof Error && typeof (e as Partial<BpfError>).errno === 'number' && typeof (e as Partial<BpfError>).code === 'string';
}

export interface ProgramDesc {
  name: string;
  section: string;
  type: number;
  typeName: string;
  autoload: boolean;
  /** -1 before load. */
  fd: number;
}

export interface MapDesc {
  name: string;
  type: number;
  typeName: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  /** .data/.rodata/.bss/.kconfig maps created by libbpf for globals. */
  internal: boolean;
  pinPath: string | null;
  /** After load: whether the map is pinned (created+pinned or reused). */
  pinned: boolean;
  /** -1 before load (unless reused). */
  fd: number;
}

export interface MapInfo {
  type: number;
  typeName: string;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

export interface ProgInfo {
  type: number;
  typeName: string;
  id: number;
  name: string;
  /** Hex of the 8-byte program tag. */
  tag: string;
  /** Only counted while kernel.bpf_stats_enabled=1. */
  runTimeNs: number;
  runCnt: number;
  xlatedLen: number;
  jitedLen: number;
  verifiedInsns: number;
  mapIds: number[];
}

export interface OpenOptions {
  /** Pin (or reuse the pinned) non-internal maps at DIR/<map name>. DIR is created. */
  pinMaps?: string | { dir: string; only?: string[] };
  /** max_entries per map name, applied before load. */
  maxEntries?: Record<string, number>;
  /** Use an existing map (another object's, or opened from bpffs) for a map name. */
  reuseMaps?: Record<string, BpfMap>;
  /** Programs to skip (false) at load. */
  autoload?: Record<string, boolean>;
  /** Initial contents of internal maps, e.g. { 'edge_xdp.rodata': buf }. */
  initialValues?: Record<string, Buffer>;
  /** Kernel verifier log level for load (1 = full log, 4 = stats); the log is in loadLog(). */
  logLevel?: number;
}

export interface MapCreateSpec {
  /** A BPF_MAP_TYPE value. */
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags?: number;
  name?: string;
  /** Outer maps (ARRAY_OF_MAPS/HASH_OF_MAPS): a map of the inner type, as template. */
  innerMap?: BpfMap;
}

export interface TestRunOptions {
  data: Buffer;
  /** Kernel repetitions (default 1). With repeat > 1 a rewriting XDP program sees its own output. */
  repeat?: number;
  flags?: number;
  /** Capacity for the output packet (default data.length + 512). */
  dataSizeOut?: number;
  /** Context (struct xdp_md / __sk_buff bytes); omit for none. */
  ctxIn?: Buffer;
  ctxSizeOut?: number;
  cpu?: number;
  batchSize?: number;
}

export interface TestRunResult {
  /** The program's verdict (always 0 in BPF_F_TEST_XDP_LIVE_FRAMES mode). */
  retval: number;
  /** The packet after the program (empty in live-frames mode). */
  dataOut: Buffer;
  /** Kernel-measured average ns per repetition. */
  duration: number;
  ctxOut?: Buffer;
}

export interface TestRunLoopOptions {
  flags?: number;
  ctxIn?: Buffer;
  /** Copy the output packet back each call (off by default: costs a copy). */
  copyOut?: boolean;
}

export interface TestRunLoopResult {
  count: number;
  /** Wall time of the whole C loop (CLOCK_MONOTONIC), syscall overhead included. */
  totalNs: number;
  /** Sum of the kernel's per-call durations. */
  kernelNs: number;
  /** Verdict of the first call. */
  retval: number;
  /** Calls whose verdict differed from the first. */
  retvalMismatches: number;
  nsPerCall: number;
  kernelNsPerCall: number;
}

export type XdpMode = 'native' | 'generic' | 'auto';
export type TcDirection = 'ingress' | 'egress';

export interface XdpQueryResult {
  /** Program attached in the reported attach mode (0 = none). */
  progId: number;
  drvProgId: number;
  skbProgId: number;
  hwProgId: number;
  /** XDP_ATTACHED_*: 0 none, 1 drv, 2 skb, 3 hw, 4 multi. */
  attachMode: number;
}

// ---------------------------------------------------------------- native binding

interface NativeObjectHandle {
  load(): void;
  /** load() on a worker thread; the handle is unusable until it settles. */
  loadAsync(): Promise<void>;
  close(): void;
  programs(): ProgramDesc[];
  maps(): MapDesc[];
  setMaxEntries(name: string, n: number): void;
  setPinPath(name: string, path: string | null): void;
  reuseMapFd(name: string, fd: number): void;
  setAutoload(name: string, on: boolean): void;
  setInitialValue(name: string, value: Buffer): void;
  loadLog(): string;
}

interface NativeBinding {
  NativeObject: new (path: string, opts?: { logLevel?: number }) => NativeObjectHandle;
  libbpfVersion: string;
  mapLookup(fd: number, key: Buffer, out: Buffer): boolean;
  mapUpdate(fd: number, key: Buffer, value: Buffer, flags: number): void;
  mapDelete(fd: number, key: Buffer): boolean;
  mapGetNextKey(fd: number, key: Buffer | null, out: Buffer): boolean;
  mapUpdateBatch(fd: number, keys: Buffer, values: Buffer, count: number, flags: number): { count: number; batched: boolean };
  mapLookupBatch(fd: number, cursorIn: Buffer | null, cursorOut: Buffer, keys: Buffer, values: Buffer, max: number): { count: number; done: boolean };
  mapInfo(fd: number): MapInfo;
  mapCreate(type: number, name: string | null, keySize: number, valueSize: number, maxEntries: number, flags: number, innerMapFd?: number): number;
  mapLookupAndDelete(fd: number, key: Buffer, out: Buffer): boolean;
  mapFreeze(fd: number): void;
  enableRunTimeStats(): number;
  mapGetFdById(id: number): number;
  objPin(fd: number, path: string): void;
  objGet(path: string): number;
  closeFd(fd: number): void;
  possibleCpus(): number;
  testRun(fd: number, opts: TestRunOptions): TestRunResult;
  testRunLoop(fd: number, data: Buffer, count: number, opts?: TestRunLoopOptions): Omit<TestRunLoopResult, 'nsPerCall' | 'kernelNsPerCall'>;
  progInfo(fd: number): ProgInfo;
  progGetFdById(id: number): number;
  ifNameToIndex(name: string): number;
  xdpAttach(ifindex: number, fd: number, flags: number, oldFd?: number): void;
  xdpDetach(ifindex: number, flags: number): void;
  xdpQuery(ifindex: number): XdpQueryResult;
  tcAttach(ifindex: number, dir: TcDirection, fd: number, priority: number, handle: number, replace: boolean): { priority: number; handle: number; progId: number };
  tcDetach(ifindex: number, dir: TcDirection, priority: number, handle: number): void;
  tcQuery(ifindex: number, dir: TcDirection, priority: number, handle: number): number | null;
  tcHookDestroy(ifindex: number): boolean;
  setNetns(fd: number): void;
  /** Attach a raw_tp program to a kernel tracepoint; returns the link fd (close it to detach). */
  rawTracepointOpen(name: string, fd: number): number;
  /** sd_notify(3): false when NOTIFY_SOCKET is unset. */
  sdNotify(state: string): boolean;
}

const here = dirname(fileURLToPath(import.meta.url));

/** The repository root: the nearest ancestor of this module holding bpf/Makefile. */
export function repoRoot(): string {
  let dir = here;
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'bpf', 'Makefile'))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`cannot find the edgelb repository root above ${here}`);
}

/** Path of a compiled BPF object: bpf/out/NAME.o (EDGELB_BPF_DIR overrides the directory). */
export function bpfObjectPath(name: string): string {
  const dir = process.env.EDGELB_BPF_DIR ?? join(repoRoot(), 'bpf', 'out');
  return join(dir, name.endsWith('.o') ? name : `${name}.o`);
}

let binding: NativeBinding | undefined;

/**
 * The raw addon (EDGELB_BPF_LOADER may point at another bpf_loader.node).
 * Unchecked: buffer sizes are trusted, so prefer the classes above.
 */
export function native(): NativeBinding {
  if (binding) return binding;
  const path = process.env.EDGELB_BPF_LOADER ?? join(repoRoot(), 'native', 'bpf-loader-napi', 'build', 'Release', 'bpf_loader.node');
  if (!existsSync(path)) {
    throw new Error(`BPF loader addon not built: ${path} is missing (run scripts/setup --build-only)`);
  }
  binding = createRequire(import.meta.url)(path) as NativeBinding;
  return binding;
}

// ---------------------------------------------------------------- helpers

let cpuCount: number | undefined;

/** Number of possible CPUs: the slot count of per-CPU map values. */
export function possibleCpus(): number {
  cpuCount ??= native().possibleCpus();
  return cpuCount;
}

const roundup8 = (n: number): number => (n + 7) & ~7;

/** Interface index by name (throws ENODEV with the name when absent); numbers pass through. */
export function ifIndex(ifname: string | number): number {
  if (typeof ifname === 'number') {
    if (!Number.isInteger(ifname) || ifname <= 0) throw new RangeError(`invalid ifindex ${ifname}`);
    return ifname;
  }
  return native().ifNameToIndex(ifname);
}

/** Bytes of locked memory charged for a map or program fd (from /proc/self/fdinfo). */
export function fdMemlock(fd: number): number {
  const text = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const m = /^memlock:\s+(\d+)/m.exec(text);
  if (!m?.[1]) throw new Error(`no memlock line in /proc/self/fdinfo/${fd}`);
  return Number(m[1]);
}

/** Removes a bpffs pin; returns false when nothing was pinned there. */
export function unpin(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

// fds this module owns (opened from bpffs / by id) are closed if their
// wrapper is collected without close(); close() unregisters first.
const fdReaper = new FinalizationRegistry<number>((fd) => {
  try {
    native().closeFd(fd);
  } catch {
    // already closed: nothing to reclaim
  }
});

function checkLen(what: string, buf: Buffer, want: number): void {
  if (!Buffer.isBuffer(buf)) throw new TypeError(`${what} must be a Buffer`);
  if (buf.length !== want) throw new RangeError(`${what} is ${buf.length} bytes, the map expects ${want}`);
}

/** Something that holds fds and may be closed (an object, or an owned pinned map/program). */
interface FdOwner {
  readonly closed: boolean;
  readonly label: string;
}

/**
 * The fd behind a map or program wrapper: its own (closed by close(), or by
 * fdReaper if the wrapper is collected first) or its object's (valid until
 * the object is closed).
 */
abstract class FdHandle {
  readonly #fd: number;
  readonly #owner: FdOwner | null;
  #closed = false;
  readonly #token = {};

  protected constructor(fd: number, owner: FdOwner | null) {
    this.#fd = fd;
    this.#owner = owner;
    if (!owner) fdReaper.register(this, fd, this.#token);
  }

  /** "map NAME" / "program NAME", for errors. */
  protected abstract get what(): string;

  get fd(): number {
    if (this.#closed) throw new Error(`${this.what} is closed`);
    if (this.#owner?.closed) throw new Error(`${this.what} belongs to ${this.#owner.label}, which is closed`);
    return this.#fd;
  }

  get closed(): boolean {
    return this.#closed || (this.#owner?.closed ?? false);
  }

  /** Pins it at path (on bpffs); it lives on after every fd is closed. */
  pin(path: string): void {
    native().objPin(this.fd, path);
  }

  /** Closes an owned fd; no-op for one that belongs to an object. */
  close(): void {
    if (this.#closed || this.#owner) return;
    this.#closed = true;
    fdReaper.unregister(this.#token);
    native().closeFd(this.#fd);
  }
}

/** Wraps an fd just opened (bpffs, by id, created); closes it if wrapping fails. */
function adoptFd<T>(fd: number, wrap: (fd: number) => T): T {
  try {
    return wrap(fd);
  } catch (e) {
    native().closeFd(fd);
    throw e;
  }
}

// ---------------------------------------------------------------- BpfMap

export class BpfMap extends FdHandle {
  readonly name: string;
  readonly type: number;
  readonly typeName: string;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  readonly perCpu: boolean;
  /** Bytes lookup() returns: valueSize, or possibleCpus() × roundup8(valueSize) for per-CPU maps. */
  readonly valueBufSize: number;

  private constructor(fd: number, info: MapInfo, owner: FdOwner | null) {
    super(fd, owner);
    this.name = info.name;
    this.type = info.type;
    this.typeName = info.typeName;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.flags = info.flags;
    this.perCpu = PER_CPU_TYPES.has(info.type);
    this.valueBufSize = this.perCpu ? possibleCpus() * roundup8(info.valueSize) : info.valueSize;
  }

  protected get what(): string {
    return `map ${this.name}`;
  }

  /** @internal A map whose fd belongs to `owner` (a BpfObject). */
  static fromObjectFd(fd: number, name: string, owner: FdOwner): BpfMap {
    const info = native().mapInfo(fd);
    // The kernel truncates names to 15 bytes; keep the ELF name.
    return new BpfMap(fd, { ...info, name }, owner);
  }

  /** Takes ownership of fd (closed by close()). */
  static fromFd(fd: number): BpfMap {
    return new BpfMap(fd, native().mapInfo(fd), null);
  }

  /** Opens a map pinned on bpffs; the returned map owns its fd. */
  static openPinned(path: string): BpfMap {
    return adoptFd(native().objGet(path), BpfMap.fromFd);
  }

  /**
   * Creates a standalone map (not part of any object); it owns its fd. Use it
   * for map-in-map inner maps: insert with outer.update(key, u32le(inner.fd));
   * looking the outer map up from user space returns the inner map's id.
   */
  static create(spec: MapCreateSpec): BpfMap {
    const fd = native().mapCreate(
      spec.type,
      spec.name ?? null,
      spec.keySize,
      spec.valueSize,
      spec.maxEntries,
      spec.flags ?? 0,
      spec.innerMap?.fd,
    );
    return adoptFd(fd, BpfMap.fromFd);
  }

  /** Opens a map by kernel id; the returned map owns its fd. */
  static fromId(id: number): BpfMap {
    return adoptFd(native().mapGetFdById(id), BpfMap.fromFd);
  }

  lookup(key: Buffer): Buffer | null {
    checkLen(`key of map ${this.name}`, key, this.keySize);
    const out = Buffer.allocUnsafe(this.valueBufSize);
    return native().mapLookup(this.fd, key, out) ? out : null;
  }

  /** Per-CPU maps: one valueSize-byte Buffer per possible CPU. */
  lookupPerCpu(key: Buffer): Buffer[] | null {
    this.requirePerCpu('lookupPerCpu');
    const all = this.lookup(key);
    if (!all) return null;
    const stride = roundup8(this.valueSize);
    const out: Buffer[] = [];
    for (let c = 0; c < possibleCpus(); c++) out.push(all.subarray(c * stride, c * stride + this.valueSize));
    return out;
  }

  /**
   * Sets key to value. For per-CPU maps value may be valueBufSize bytes (all
   * slots) or valueSize bytes (written to every CPU).
   */
  update(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    checkLen(`key of map ${this.name}`, key, this.keySize);
    native().mapUpdate(this.fd, key, this.fullValue(value), flags);
  }

  /** Per-CPU maps: one valueSize-byte value per possible CPU. */
  updatePerCpu(key: Buffer, values: Buffer[], flags = BPF_ANY): void {
    this.requirePerCpu('updatePerCpu');
    if (values.length !== possibleCpus()) {
      throw new RangeError(`map ${this.name}: ${values.length} per-CPU values given, ${possibleCpus()} CPUs are possible`);
    }
    const stride = roundup8(this.valueSize);
    const all = Buffer.alloc(this.valueBufSize);
    values.forEach((v, c) => {
      checkLen(`value for CPU ${c} of map ${this.name}`, v, this.valueSize);
      v.copy(all, c * stride);
    });
    this.update(key, all, flags);
  }

  /** Atomically reads and removes (hash/LRU/queue/stack maps); null when absent. */
  lookupAndDelete(key: Buffer): Buffer | null {
    checkLen(`key of map ${this.name}`, key, this.keySize);
    const out = Buffer.allocUnsafe(this.valueBufSize);
    return native().mapLookupAndDelete(this.fd, key, out) ? out : null;
  }

  /** Makes the map read-only for user space (BPF programs may still write). */
  freeze(): void {
    native().mapFreeze(this.fd);
  }

  /** Returns false when the key was absent. */
  delete(key: Buffer): boolean {
    checkLen(`key of map ${this.name}`, key, this.keySize);
    return native().mapDelete(this.fd, key);
  }

  /**
   * All keys, by get-next-key iteration. A datapath writing concurrently can
   * make the kernel restart the walk; the walk is bounded to 2 × maxEntries
   * steps and deduplicated.
   */
  keys(): Buffer[] {
    const seen = new Set<string>();
    const out: Buffer[] = [];
    let cur: Buffer | null = null;
    for (let i = 0; i < 2 * this.maxEntries + 1; i++) {
      const next = Buffer.allocUnsafe(this.keySize);
      if (!native().mapGetNextKey(this.fd, cur, next)) break;
      const id = next.toString('latin1');
      if (!seen.has(id)) {
        seen.add(id);
        out.push(next);
      }
      cur = next;
    }
    return out;
  }

  /** All [key, value] pairs (values as lookup() returns them); keys deleted meanwhile are skipped. */
  entries(): Array<[Buffer, Buffer]> {
    const out: Array<[Buffer, Buffer]> = [];
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v) out.push([k, v]);
    }
    return out;
  }

  /**
   * All [key, value] pairs using BPF_MAP_LOOKUP_BATCH (far fewer syscalls
   * than entries() for big maps); falls back to entries() for map types
   * without batch lookup. Like entries(), not a snapshot of a map the
   * datapath is writing to.
   */
  dump(batchSize = 256): Array<[Buffer, Buffer]> {
    const { keys, values, count } = this.dumpPacked(batchSize);
    const out: Array<[Buffer, Buffer]> = [];
    for (let i = 0; i < count; i++) {
      out.push([keys.subarray(i * this.keySize, (i + 1) * this.keySize), values.subarray(i * this.valueBufSize, (i + 1) * this.valueBufSize)]);
    }
    return out;
  }

  /**
   * Like dump(), packed: count keys back to back in `keys` and count values
   * (valueBufSize bytes each) in `values` -- no per-entry objects.
   */
  dumpPacked(batchSize = 256): { keys: Buffer; values: Buffer; count: number } {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`dump: batchSize must be a positive integer, got ${batchSize}`);
    const kChunks: Buffer[] = [];
    const vChunks: Buffer[] = [];
    let total = 0;
    // Hash maps use a 4-byte bucket cursor, other types the last key.
    const tokenSize = Math.max(this.keySize, 8);
    let cursorIn: Buffer | null = null;
    let n = Math.min(batchSize, Math.max(this.maxEntries, 1));
    for (;;) {
      const cursorOut = Buffer.alloc(tokenSize);
      const keys = Buffer.allocUnsafe(n * this.keySize);
      const values = Buffer.allocUnsafe(n * this.valueBufSize);
      let r: { count: number; done: boolean };
      try {
        r = native().mapLookupBatch(this.fd, cursorIn, cursorOut, keys, values, n);
      } catch (e) {
        if (isBpfError(e) && e.code === 'ENOSPC' && n < this.maxEntries) {
          // A hash bucket holds more elements than fit in one batch.
          n = Math.min(n * 2, this.maxEntries);
          continue;
        }
        if (isBpfError(e) && (e.code === 'ENOTSUPP' || e.code === 'EOPNOTSUPP' || (e.code === 'EINVAL' && cursorIn === null))) {
          const entries = this.entries();
          return {
            keys: Buffer.concat(entries.map(([k]) => k)),
            values: Buffer.concat(entries.map(([, v]) => v)),
            count: entries.length,
          };
        }
        throw e;
      }
      kChunks.push(keys.subarray(0, r.count * this.keySize));
      vChunks.push(values.subarray(0, r.count * this.valueBufSize));
      total += r.count;
      if (r.done) return { keys: Buffer.concat(kChunks), values: Buffer.concat(vChunks), count: total };
      cursorIn = cursorOut;
    }
  }

  /**
   * updateBatch() for keys and values already packed back to back
   * (keySize / valueBufSize bytes each), e.g. built in one big Buffer.
   */
  updateBatchPacked(keys: Buffer, values: Buffer, flags = BPF_ANY): { count: number; batched: boolean } {
    if (!Buffer.isBuffer(keys) || !Buffer.isBuffer(values)) throw new TypeError('updateBatchPacked: keys and values must be Buffers');
    const count = keys.length / this.keySize;
    if (!Number.isInteger(count)) throw new RangeError(`updateBatchPacked on map ${this.name}: ${keys.length} key bytes is not a multiple of ${this.keySize}`);
    if (values.length !== count * this.valueBufSize) {
      throw new RangeError(`updateBatchPacked on map ${this.name}: ${count} keys need ${count * this.valueBufSize} value bytes, got ${values.length}`);
    }
    if (count === 0) return { count: 0, batched: true };
    return native().mapUpdateBatch(this.fd, keys, values, count, flags);
  }

  /**
   * Updates many elements with one BPF_MAP_UPDATE_BATCH syscall, or one
   * update per element when the map type has no batch support. Per-CPU
   * values must be valueBufSize bytes each. On failure the error has
   * .updated = elements written before it.
   */
  updateBatch(keys: Buffer[], values: Buffer[], flags = BPF_ANY): { count: number; batched: boolean } {
    if (keys.length !== values.length) {
      throw new RangeError(`updateBatch on map ${this.name}: ${keys.length} keys but ${values.length} values`);
    }
    keys.forEach((k, i) => checkLen(`key ${i} of map ${this.name}`, k, this.keySize));
    values.forEach((v, i) => checkLen(`value ${i} of map ${this.name}`, v, this.valueBufSize));
    if (keys.length === 0) return { count: 0, batched: true };
    return native().mapUpdateBatch(this.fd, Buffer.concat(keys), Buffer.concat(values), keys.length, flags);
  }

  /**
   * Deletes every key; returns how many were deleted. Arrays cannot delete
   * (EINVAL): zero them with update instead.
   */
  clear(): number {
    let n = 0;
    for (const k of this.keys()) if (this.delete(k)) n++;
    return n;
  }

  info(): MapInfo {
    return { ...native().mapInfo(this.fd), name: this.name };
  }

  memlockBytes(): number {
    return fdMemlock(this.fd);
  }

  private fullValue(value: Buffer): Buffer {
    if (!Buffer.isBuffer(value)) throw new TypeError(`value of map ${this.name} must be a Buffer`);
    if (this.perCpu && value.length === this.valueSize && this.valueSize !== this.valueBufSize) {
      const stride = roundup8(this.valueSize);
      const all = Buffer.alloc(this.valueBufSize);
      for (let c = 0; c < possibleCpus(); c++) value.copy(all, c * stride);
      return all;
    }
    checkLen(`value of map ${this.name}`, value, this.valueBufSize);
    return value;
  }

  private requirePerCpu(op: string): void {
    if (!this.perCpu) throw new TypeError(`${op}: map ${this.name} (${this.typeName}) is not a per-CPU map`);
  }
}

// ---------------------------------------------------------------- attachments

export interface XdpAttachOptions {
  /** Fail with EBUSY if a program is already attached (default: replace it). */
  exclusive?: boolean;
  /** Atomically replace exactly this program (fails if another is attached). */
  replace?: BpfProgram;
}

/**
 * Where an attachment was made. An ifindex means nothing outside its network
 * namespace (the same number is another device elsewhere), so detach()
 * re-enters the namespace it was attached in, or refuses.
 */
interface NetnsRef {
  /** Inode of the namespace (identity). */
  ino: number;
  /** The inNetns() target in effect at attach time; null outside inNetns(). */
  path: string | null;
}

let inNetnsTarget: string | null = null;

function netnsIno(): number {
  return statSync('/proc/thread-self/ns/net').ino;
}

function currentNetns(): NetnsRef {
  return { ino: netnsIno(), path: inNetnsTarget };
}

function inNetnsOf<T>(ref: NetnsRef, what: string, fn: () => T): T {
  if (netnsIno() === ref.ino) return fn();
  if (ref.path) return inNetns(ref.path, fn);
  throw new Error(`${what}: attached in another network namespace (inode ${ref.ino}); call it inside inNetns()`);
}

export class XdpAttachment {
  readonly netns: NetnsRef;

  constructor(
    readonly ifindex: number,
    readonly mode: XdpMode,
  ) {
    this.netns = currentNetns();
  }

  /** Detaches (in the namespace of the attach) whatever is attached in this mode. */
  detach(): void {
    inNetnsOf(this.netns, `XDP detach from ifindex ${this.ifindex}`, () => native().xdpDetach(this.ifindex, xdpModeFlags(this.mode)));
  }
}

export interface TcAttachOptions {
  /** 1..65535; 0/absent lets the kernel choose (returned in the attachment). */
  priority?: number;
  /** Filter handle; 0/absent lets the kernel choose. */
  handle?: number;
  /** Replace the filter with the same priority/handle. */
  replace?: boolean;
}

export class TcAttachment {
  readonly netns: NetnsRef;

  constructor(
    readonly ifindex: number,
    readonly direction: TcDirection,
    readonly priority: number,
    readonly handle: number,
    readonly progId: number,
  ) {
    this.netns = currentNetns();
  }

  /** Removes this filter (in the namespace of the attach). */
  detach(): void {
    inNetnsOf(this.netns, `tc detach from ifindex ${this.ifindex}`, () =>
      native().tcDetach(this.ifindex, this.direction, this.priority, this.handle),
    );
  }
}

function xdpModeFlags(mode: XdpMode): number {
  switch (mode) {
    case 'native':
      return XDP_FLAGS_DRV_MODE;
    case 'generic':
      return XDP_FLAGS_SKB_MODE;
    case 'auto':
      return 0;
    default:
      throw new RangeError(`XDP mode must be 'native', 'generic' or 'auto', got '${String(mode)}'`);
  }
}

function checkDirection(d: TcDirection): void {
  if (d !== 'ingress' && d !== 'egress') throw new RangeError(`tc direction must be 'ingress' or 'egress', got '${String(d)}'`);
}

/** Detaches whatever XDP program is attached in that mode. */
export function detachXdp(ifname: string | number, mode: XdpMode): void {
  native().xdpDetach(ifIndex(ifname), xdpModeFlags(mode));
}

export function xdpQuery(ifname: string | number): XdpQueryResult {
  return native().xdpQuery(ifIndex(ifname));
}

export function detachTc(ifname: string | number, direction: TcDirection, filter: { priority: number; handle: number }): void {
  checkDirection(direction);
  native().tcDetach(ifIndex(ifname), direction, filter.priority, filter.handle);
}

/** Program id of the tc filter at priority/handle, or null when there is none. */
export function tcQuery(ifname: string | number, direction: TcDirection, filter: { priority: number; handle: number }): number | null {
  checkDirection(direction);
  return native().tcQuery(ifIndex(ifname), direction, filter.priority, filter.handle);
}

/** Deletes the clsact qdisc (all tc filters of both directions); false when there was none. */
export function removeClsact(ifname: string | number): boolean {
  return native().tcHookDestroy(ifIndex(ifname));
}

// ---------------------------------------------------------------- BpfProgram

export class BpfProgram extends FdHandle {
  readonly name: string;
  /** ELF section; '' for programs opened from bpffs or by id. */
  readonly section: string;
  readonly type: number;
  readonly typeName: string;

  private constructor(fd: number, name: string, section: string, type: number, typeName: string, owner: FdOwner | null) {
    super(fd, owner);
    this.name = name;
    this.section = section;
    this.type = type;
    this.typeName = typeName;
  }

  protected get what(): string {
    return `program ${this.name}`;
  }

  /** @internal */
  static fromObject(desc: ProgramDesc, owner: FdOwner): BpfProgram {
    return new BpfProgram(desc.fd, desc.name, desc.section, desc.type, desc.typeName, owner);
  }

  /** Takes ownership of fd. */
  static fromFd(fd: number): BpfProgram {
    const info = native().progInfo(fd);
    return new BpfProgram(fd, info.name, '', info.type, info.typeName, null);
  }

  /** Opens a program pinned on bpffs; the returned program owns its fd. */
  static openPinned(path: string): BpfProgram {
    return adoptFd(native().objGet(path), BpfProgram.fromFd);
  }

  static fromId(id: number): BpfProgram {
    return adoptFd(native().progGetFdById(id), BpfProgram.fromFd);
  }

  testRun(opts: TestRunOptions): TestRunResult {
    if (!Buffer.isBuffer(opts.data)) throw new TypeError('testRun: data must be a Buffer');
    return native().testRun(this.fd, opts);
  }

  /** count × testRun(repeat=1) in C; see TestRunLoopResult. */
  testRunLoop(data: Buffer, count: number, opts: TestRunLoopOptions = {}): TestRunLoopResult {
    if (!Buffer.isBuffer(data)) throw new TypeError('testRunLoop: data must be a Buffer');
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`testRunLoop: count must be a positive integer, got ${count}`);
    const r = native().testRunLoop(this.fd, data, count, opts);
    return { ...r, nsPerCall: r.totalNs / r.count, kernelNsPerCall: r.kernelNs / r.count };
  }

  attachXdp(ifname: string | number, mode: XdpMode = 'native', opts: XdpAttachOptions = {}): XdpAttachment {
    let flags = xdpModeFlags(mode);
    if (opts.exclusive) flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
    const ifindex = ifIndex(ifname);
    if (opts.replace) native().xdpAttach(ifindex, this.fd, flags, opts.replace.fd);
    else native().xdpAttach(ifindex, this.fd, flags);
    return new XdpAttachment(ifindex, mode);
  }

  /** Detaches whatever XDP program is attached to ifname in that mode. */
  detachXdp(ifname: string | number, mode: XdpMode = 'native'): void {
    detachXdp(ifname, mode);
  }

  /** Attaches as a direct-action filter on the clsact qdisc (created when missing). */
  attachTc(ifname: string | number, direction: TcDirection, opts: TcAttachOptions = {}): TcAttachment {
    checkDirection(direction);
    const ifindex = ifIndex(ifname);
    const r = native().tcAttach(ifindex, direction, this.fd, opts.priority ?? 0, opts.handle ?? 0, opts.replace ?? false);
    return new TcAttachment(ifindex, direction, r.priority, r.handle, r.progId);
  }

  detachTc(ifname: string | number, direction: TcDirection, filter: { priority: number; handle: number }): void {
    detachTc(ifname, direction, filter);
  }

  info(): ProgInfo {
    return native().progInfo(this.fd);
  }

  memlockBytes(): number {
    return fdMemlock(this.fd);
  }
}

// ---------------------------------------------------------------- BpfObject

export class BpfObject implements FdOwner {
  readonly path: string;
  #handle: NativeObjectHandle | null;
  #loaded = false;
  readonly #maps = new Map<string, BpfMap>();
  readonly #progs = new Map<string, BpfProgram>();

  private constructor(path: string, handle: NativeObjectHandle) {
    this.path = path;
    this.#handle = handle;
  }

  /** Opens an ELF object and applies the pre-load options; call load() next. */
  static open(path: string, opts: OpenOptions = {}): BpfObject {
    const abs = resolve(path);
    const handle = new (native().NativeObject)(abs, opts.logLevel !== undefined ? { logLevel: opts.logLevel } : {});
    const obj = new BpfObject(abs, handle);
    try {
      obj.configure(opts);
    } catch (e) {
      obj.close();
      throw e;
    }
    return obj;
  }

  /** open() then load(). */
  static load(path: string, opts: OpenOptions = {}): BpfObject {
    return BpfObject.open(path, opts).load();
  }

  get label(): string {
    return `BPF object ${this.path}`;
  }

  get closed(): boolean {
    return this.#handle === null;
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  /**
   * Loads every (autoload) program and creates/reuses the maps. On failure
   * the object is closed and the error carries .verifierLog.
   */
  load(): this {
    const h = this.handle();
    try {
      h.load();
    } catch (e) {
      this.#handle = null;
      throw e;
    }
    this.#loaded = true;
    return this;
  }

  /**
   * load() with the kernel's work (map creation, verification) on a worker thread: the event loop
   * (and the rest of the agent's start-up) goes on meanwhile. Same result
   * and errors as load(); the object must not be used until it settles.
   */
  async loadAsync(): Promise<this> {
    const h = this.handle();
    try {
      await h.loadAsync();
    } catch (e) {
      this.#handle = null;
      throw e;
    }
    this.#loaded = true;
    return this;
  }

  /** open() then loadAsync(). */
  static async loadAsync(path: string, opts: OpenOptions = {}): Promise<BpfObject> {
    return BpfObject.open(path, opts).loadAsync();
  }

  /** libbpf output of load() (the verifier log when logLevel was set). */
  loadLog(): string {
    return this.handle().loadLog();
  }

  programs(): ProgramDesc[] {
    return this.handle().programs();
  }

  maps(): MapDesc[] {
    return this.handle().maps();
  }

  /** A loaded program by function name, or by ELF section when no name matches. */
  program(nameOrSection: string): BpfProgram {
    this.requireLoaded(`program(${nameOrSection})`);
    const all = this.programs();
    const d = all.find((p) => p.name === nameOrSection) ?? all.find((p) => p.section === nameOrSection);
    if (!d) {
      throw new Error(`no program '${nameOrSection}' in ${this.path} (programs: ${all.map((p) => `${p.name} [${p.section}]`).join(', ')})`);
    }
    if (d.fd < 0) throw new Error(`program '${d.name}' in ${this.path} was not loaded (autoload off)`);
    let p = this.#progs.get(d.name);
    if (!p) {
      p = BpfProgram.fromObject(d, this);
      this.#progs.set(d.name, p);
    }
    return p;
  }

  /** A map of the loaded object by name (internal maps as libbpf names them, e.g. 'obj.rodata'). */
  map(name: string): BpfMap {
    this.requireLoaded(`map(${name})`);
    const cached = this.#maps.get(name);
    if (cached) return cached;
    const all = this.maps();
    const d = all.find((m) => m.name === name);
    if (!d) throw new Error(`no map '${name}' in ${this.path} (maps: ${all.map((m) => m.name).join(', ')})`);
    const m = BpfMap.fromObjectFd(d.fd, d.name, this);
    this.#maps.set(name, m);
    return m;
  }

  /** Closes the object and every program/map fd it owns (attached programs stay attached). */
  close(): void {
    this.#handle?.close();
    this.#handle = null;
  }

  private handle(): NativeObjectHandle {
    if (!this.#handle) throw new Error(`${this.label} is closed`);
    return this.#handle;
  }

  private requireLoaded(what: string): void {
    this.handle();
    if (!this.#loaded) throw new Error(`${what}: ${this.label} is not loaded yet (call load())`);
  }

  private configure(opts: OpenOptions): void {
    const h = this.handle();
    const mapNames = new Set(this.maps().map((m) => m.name));
    const requireMap = (name: string, opt: string): void => {
      if (!mapNames.has(name)) throw new Error(`${opt}: no map '${name}' in ${this.path} (maps: ${[...mapNames].join(', ')})`);
    };
    for (const [name, n] of Object.entries(opts.maxEntries ?? {})) {
      requireMap(name, 'maxEntries');
      if (!Number.isInteger(n) || n < 1) throw new RangeError(`maxEntries.${name} must be a positive integer, got ${n}`);
      h.setMaxEntries(name, n);
    }
    if (opts.pinMaps !== undefined) {
      const { dir, only } = typeof opts.pinMaps === 'string' ? { dir: opts.pinMaps, only: undefined } : opts.pinMaps;
      only?.forEach((n) => requireMap(n, 'pinMaps.only'));
      mkdirSync(dir, { recursive: true });
      for (const m of this.maps()) {
        if (m.internal || (only && !only.includes(m.name))) continue;
        h.setPinPath(m.name, join(dir, m.name));
      }
    }
    for (const [name, map] of Object.entries(opts.reuseMaps ?? {})) {
      requireMap(name, 'reuseMaps');
      h.reuseMapFd(name, map.fd);
    }
    for (const [name, on] of Object.entries(opts.autoload ?? {})) h.setAutoload(name, on);
    for (const [name, buf] of Object.entries(opts.initialValues ?? {})) {
      requireMap(name, 'initialValues');
      h.setInitialValue(name, buf);
    }
  }
}

// ---------------------------------------------------------------- network namespaces

/**
 * Runs fn with the calling thread inside a network namespace (a name under
 * /run/netns, or a path such as /proc/PID/ns/net) and moves back afterwards.
 * fn must be synchronous: anything it leaves pending would run outside.
 */
export function inNetns<T>(netns: string, fn: () => T): T {
  const target = netns.includes('/') ? netns : `/run/netns/${netns}`;
  const back = openSync('/proc/thread-self/ns/net', 'r');
  const outerTarget = inNetnsTarget;
  let result: T;
  try {
    const fd = openSync(target, 'r');
    try {
      native().setNetns(fd);
    } finally {
      closeSync(fd);
    }
    inNetnsTarget = target;
    try {
      result = fn();
    } finally {
      inNetnsTarget = outerTarget;
      native().setNetns(back);
    }
  } finally {
    closeSync(back);
  }
  if (result instanceof Promise) throw new TypeError('inNetns: fn must be synchronous (it returned a Promise)');
  return result;
}

/**
 * Turns on the kernel's per-program run time accounting (run_time_ns and
 * runCnt in ProgInfo) until the returned handle is closed.
 */
export function enableRunTimeStats(): { close(): void } {
  const fd = native().enableRunTimeStats();
  let open = true;
  return {
    close() {
      if (open) native().closeFd(fd);
      open = false;
    },
  };
}

/** Version of the libbpf the addon is linked against, e.g. "1.1". */
export function libbpfVersion(): string {
  return native().libbpfVersion;
}
