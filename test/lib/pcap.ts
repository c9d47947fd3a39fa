// The frames of a classic pcap file (what tcpdump -w writes): the global
// header's magic says the byte order; each record is a 16-byte header
// (seconds, microseconds, captured length, original length) and the bytes.
import { readFileSync } from 'node:fs';

export function readPcap(file: string): Buffer[] {
  const b = readFileSync(file);
  if (b.length < 24) throw new Error(`${file}: not a pcap file (${b.length} bytes)`);
  const magic = b.readUInt32LE(0);
  const le = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!le && b.readUInt32BE(0) !== 0xa1b2c3d4 && b.readUInt32BE(0) !== 0xa1b23c4d) throw new Error(`${file}: not a pcap file (magic ${magic.toString(16)})`);
  const frames: Buffer[] = [];
  for (let off = 24; off + 16 <= b.length;) {
    const len = le ? b.readUInt32LE(off + 8) : b.readUInt32BE(off + 8);
    if (off + 16 + len > b.length) break; // cut short while being written
    frames.push(b.subarray(off + 16, off + 16 + len));
    off += 16 + len;
  }
  return frames;
}
