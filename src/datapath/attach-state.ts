// Is our program what the kernel actually runs on that hook right now? The
// agents remember what they attached, but an operator (`ip link set dev X
// xdp off`, `tc filter del …`), another tool or a replaced interface can
// take it away behind their back; health, BFD and metrics must follow the
// kernel, not the agent's memory. One netlink query per call.
import { statSync } from 'node:fs';
import { inNetns, tcQuery, xdpQuery, type TcAttachment, type XdpAttachment } from './loader.js';

export interface AttachState {
  attached: boolean;
  /** In words, for status and logs: what runs there instead, or why we could not tell. */
  detail: string;
}

function inNetnsOf<T>(at: XdpAttachment | TcAttachment, fn: () => T): T {
  if (at.netns.ino === statSync('/proc/thread-self/ns/net').ino || !at.netns.path) return fn();
  return inNetns(at.netns.path, fn);
}

/** Compares the program the kernel runs at `at` with `progId` (ours). */
export function attachState(at: XdpAttachment | TcAttachment, progId: number): AttachState {
  try {
    return inNetnsOf(at, () => ('direction' in at ? tcState(at, progId) : xdpState(at, progId)));
  } catch (e) {
    return { attached: false, detail: `cannot query ifindex ${at.ifindex}: ${(e as Error).message}` };
  }
}

function tcState(at: TcAttachment, progId: number): AttachState {
  const id = tcQuery(at.ifindex, at.direction, { priority: at.priority, handle: at.handle });
  if (id === progId) return { attached: true, detail: `tc ${at.direction} on ifindex ${at.ifindex}` };
  if (id === null) return { attached: false, detail: `no tc ${at.direction} filter at priority ${at.priority} handle ${at.handle} on ifindex ${at.ifindex} (detached)` };
  return { attached: false, detail: `tc ${at.direction} on ifindex ${at.ifindex} runs program ${id}, not ours (${progId})` };
}

function xdpState(at: XdpAttachment, progId: number): AttachState {
  const q = xdpQuery(at.ifindex);
  const id = at.mode === 'native' ? q.drvProgId : at.mode === 'generic' ? q.skbProgId : q.progId;
  if (id === progId) return { attached: true, detail: `XDP ${at.mode} on ifindex ${at.ifindex}` };
  if (id === 0) return { attached: false, detail: `no XDP ${at.mode} program on ifindex ${at.ifindex} (detached)` };
  return { attached: false, detail: `XDP ${at.mode} on ifindex ${at.ifindex} runs program ${id}, not ours (${progId})` };
}
