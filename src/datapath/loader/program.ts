// BpfProgram: a program of a loaded object, pinned on bpffs or opened by
// id. Test runs (BPF_PROG_TEST_RUN, one call or a timed loop in C), XDP and
// tc attach, and the kernel's run time accounting.
import { native, type ProgInfo, type ProgramDesc, type TcDirection, type TestRunLoopOptions, type TestRunLoopResult, type TestRunOptions, type TestRunResult, type XdpMode } from './binding.js';
import { XDP_FLAGS_UPDATE_IF_NOEXIST } from './constants.js';
import { adoptFd, fdMemlock, FdHandle, type FdOwner } from './fd.js';
import { checkDirection, detachTc, detachXdp, ifIndex, TcAttachment, XdpAttachment, xdpModeFlags } from './attach.js';

export interface XdpAttachOptions {
  /** Fail with EBUSY if a program is already attached (default: replace it). */
  exclusive?: boolean;
  /** Atomically replace exactly this program (fails if another is attached). */
  replace?: BpfProgram;
}

export interface TcAttachOptions {
  /** 1..65535; 0/absent lets the kernel choose (returned in the attachment). */
  priority?: number;
  /** Filter handle; 0/absent lets the kernel choose. */
  handle?: number;
  /** Replace the filter with the same priority/handle. */
  replace?: boolean;
}

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
