// The libbpf part of the native addon (native/bpf-loader-napi): the shapes
// that cross the N-API boundary, the errors it throws, and native() itself.
// Only the loader's own modules call native(); everything else goes through
// BpfObject, BpfMap and BpfProgram, which check sizes and own the fds.
import { requireNativeAddon } from '../../assets.js';

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

/** Where loadAsync()'s time went: the kernel's work, then the wait for the JS thread to take the result. */
export interface LoadTiming {
  workMs: number;
  waitMs: number;
}

export interface NativeObjectHandle {
  load(): void;
  /** load() on a worker thread; the handle is unusable until it settles. */
  loadAsync(): Promise<LoadTiming>;
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

export interface NativeBinding {
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
}

let binding: NativeBinding | undefined;

/**
 * The raw addon (EDGELB_BPF_LOADER may point at another bpf_loader.node).
 * Unchecked: buffer sizes are trusted, so prefer the classes.
 */
export function native(): NativeBinding {
  binding ??= requireNativeAddon() as NativeBinding;
  return binding;
}

/** Version of the libbpf the addon is linked against, e.g. "1.1". */
export function libbpfVersion(): string {
  return native().libbpfVersion;
}
