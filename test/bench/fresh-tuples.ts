// What both live generators promise of a "fresh tuple" frame (bench/bpf/
// live_frames.c in the kernel, bench/native/afpacket_tx.c in user space):
// valid IPv4 and TCP checksums, the source kept in 198.18/16, and nothing
// but the low half of the source address, the source port and the two
// checksums changed from the template.
import type { ExecutionContext } from 'ava';
import { verifyIpv4Checksum, verifyL4Checksum } from '../lib/packets.js';

/** Checks frame `i` against `template`; returns its "address:port" tuple. */
export function checkFreshFrame(t: ExecutionContext, frame: Buffer, template: Buffer, i: number): string {
  const ip = frame.subarray(14);
  t.true(verifyIpv4Checksum(ip), `IP checksum of frame ${i}`);
  t.true(verifyL4Checksum(ip), `TCP checksum of frame ${i}`);
  t.deepEqual([...ip.subarray(12, 14)], [198, 18], 'the high half of the source stays in 198.18/16');
  const masked = Buffer.from(frame);
  const tmpl = Buffer.from(template);
  for (const b of [masked, tmpl]) {
    b.fill(0, 24, 26); // IP checksum
    b.fill(0, 28, 30); // low half of the source address
    b.fill(0, 34, 36); // TCP source port
    b.fill(0, 50, 52); // TCP checksum
  }
  t.deepEqual(masked, tmpl, `frame ${i} differs from the template only in its tuple and checksums`);
  return `${ip.readUInt32BE(12)}:${ip.readUInt16BE(20)}`;
}
