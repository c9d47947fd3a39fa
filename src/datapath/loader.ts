/**
 * Typed access to eBPF objects, programs and maps through the native
 * bpf_loader addon (native/bpf-loader-napi, libbpf 1.1). Everything is
 * synchronous and runs on the calling thread. This file is the loader's
 * face; the parts live in loader/, split like the addon's C++:
 *
 *   loader/object.ts    BpfObject (open options, load, programs and maps)
 *   loader/map.ts       BpfMap (lookups, updates, batches, per-CPU values)
 *   loader/program.ts   BpfProgram (test runs, attach), run time stats
 *   loader/attach.ts    XDP/tc attachments and detach/query by interface
 *   loader/netns.ts     inNetns() and the namespace an attachment lives in
 *   loader/fd.ts        the fd every map/program wrapper holds
 *   loader/constants.ts verdicts, flags, map types
 *   loader/binding.ts   the raw addon (used only inside loader/)
 *
 * Objects (ELF files built by bpf/Makefile into bpf/out/NAME.o;
 * bpfObjectPath() is in src/assets.ts):
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
 *   map.lookupBatches(batchSize)  // dump in packed chunks, without joining them
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
 * Helpers: possibleCpus(), ifIndex(name), unpin(path), fdMemlock(fd),
 * libbpfVersion(); constants XDP_*, TC_ACT_*, BPF_ANY/BPF_NOEXIST/BPF_EXIST,
 * BPF_F_TEST_XDP_LIVE_FRAMES, BPF_MAP_TYPE.
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
export {
  BPF_ANY,
  BPF_EXIST,
  BPF_F_TEST_RUN_ON_CPU,
  BPF_F_TEST_XDP_LIVE_FRAMES,
  BPF_MAP_TYPE,
  BPF_NOEXIST,
  TC_ACT_OK,
  TC_ACT_REDIRECT,
  TC_ACT_SHOT,
  TC_ACT_UNSPEC,
  XDP_ABORTED,
  XDP_DROP,
  XDP_PASS,
  XDP_REDIRECT,
  XDP_TX,
} from './loader/constants.js';
export {
  isBpfError,
  libbpfVersion,
  type BpfError,
  type MapDesc,
  type MapInfo,
  type ProgInfo,
  type ProgramDesc,
  type TcDirection,
  type TestRunLoopOptions,
  type TestRunLoopResult,
  type TestRunOptions,
  type TestRunResult,
  type XdpMode,
  type XdpQueryResult,
} from './loader/binding.js';
export { fdMemlock, unpin } from './loader/fd.js';
export { BpfMap, possibleCpus, type MapCreateSpec } from './loader/map.js';
export { BpfProgram, enableRunTimeStats, type TcAttachOptions, type XdpAttachOptions } from './loader/program.js';
export {
  detachTc,
  detachXdp,
  ifIndex,
  removeClsact,
  tcQuery,
  xdpQuery,
  TcAttachment,
  XdpAttachment,
} from './loader/attach.js';
export { inNetns } from './loader/netns.js';
export { BpfObject, type OpenOptions } from './loader/object.js';
