// Shared by the second-chance packet tests (edge and node): the 20-byte
// option (and its IPv6 header) as docs/second-chance.md specifies it, built independently of the
// datapath's code.
import { DSR_OPT_TYPE, ipv4ToBytes } from '../lib/packets.js';
import { DSR6_OPT_TYPE, NH_DSTOPTS, ip6Bytes, type ExtHeader } from '../lib/packets6.js';

export function scOption(o: { vip: string; port: number; secIp: string; secPort: number; secNode: string; flags?: number }): Buffer {
  const b = Buffer.alloc(20);
  b[0] = DSR_OPT_TYPE;
  b[1] = 20;
  b.writeUInt16BE(o.port, 2);
  ipv4ToBytes(o.vip).copy(b, 4);
  ipv4ToBytes(o.secIp).copy(b, 8);
  b.writeUInt16BE(o.secPort, 12);
  b[14] = o.flags ?? 0;
  b[15] = 0;
  ipv4ToBytes(o.secNode).copy(b, 16);
  return b;
}

/** The IPv6 form (bpf/include/sc_option.h): a 64-byte Destination Options header; its Next Header byte is the builder's. */
export function sc6Header(o: { vip: string; port: number; secIp: string; secPort: number; secNode: string; flags?: number }, over: Partial<{ hdrlen: number; optLen: number; pad: number[]; reserved: number }> = {}): ExtHeader {
  const b = Buffer.alloc(64);
  b[1] = over.hdrlen ?? 7;
  b[2] = DSR6_OPT_TYPE;
  b[3] = over.optLen ?? 54;
  b.writeUInt16BE(o.port, 4);
  ip6Bytes(o.vip).copy(b, 6);
  ip6Bytes(o.secIp).copy(b, 22);
  b.writeUInt16BE(o.secPort, 38);
  b[40] = o.flags ?? 0;
  b[41] = over.reserved ?? 0;
  ip6Bytes(o.secNode).copy(b, 42);
  Buffer.from(over.pad ?? [1, 4, 0, 0, 0, 0]).copy(b, 58);
  return { type: NH_DSTOPTS, bytes: b };
}
