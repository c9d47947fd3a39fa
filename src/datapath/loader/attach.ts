// Hooking programs to interfaces: XDP and tc attachments (which remember
// their network namespace), and detach/query functions that need no program,
// e.g. to clean up after a crashed agent.
import { native, type TcDirection, type XdpMode, type XdpQueryResult } from './binding.js';
import { XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE } from './constants.js';
import { currentNetns, inNetnsOf, type NetnsRef } from './netns.js';

/** Interface index by name (throws ENODEV with the name when absent); numbers pass through. */
export function ifIndex(ifname: string | number): number {
  if (typeof ifname === 'number') {
    if (!Number.isInteger(ifname) || ifname <= 0) throw new RangeError(`invalid ifindex ${ifname}`);
    return ifname;
  }
  return native().ifNameToIndex(ifname);
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

export function xdpModeFlags(mode: XdpMode): number {
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

export function checkDirection(d: TcDirection): void {
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
