// Numbers the kernel and libbpf define (linux/bpf.h, if_link.h, pkt_cls.h)
// that the loader's callers use: program verdicts, map update flags,
// test-run flags, map types, XDP attach flags.

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

/** Map types whose values hold one slot per possible CPU. */
export const PER_CPU_TYPES = new Set<number>([
  BPF_MAP_TYPE.PERCPU_HASH,
  BPF_MAP_TYPE.PERCPU_ARRAY,
  BPF_MAP_TYPE.LRU_PERCPU_HASH,
  BPF_MAP_TYPE.PERCPU_CGROUP_STORAGE,
]);

/** XDP attach flags (if_link.h). */
export const XDP_FLAGS_UPDATE_IF_NOEXIST = 1;
export const XDP_FLAGS_SKB_MODE = 2;
export const XDP_FLAGS_DRV_MODE = 4;
