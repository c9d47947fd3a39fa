// Reads a GPT partition table (primary header at LBA 1) from a disk image or
// block device: enough to find partitions by name without sgdisk.
import { closeSync, openSync, readSync } from 'node:fs';
import { SECTOR } from './layout.js';

export interface GptPartition {
  index: number;
  name: string;
  typeGuid: string;
  firstSector: number;
  lastSector: number;
  offsetBytes: number;
  sizeBytes: number;
}

function guid(b: Buffer, off: number): string {
  const h = (s: number, e: number) => b.subarray(off + s, off + e).toString('hex');
  const le = (s: number, e: number) => Buffer.from(b.subarray(off + s, off + e)).reverse().toString('hex');
  return `${le(0, 4)}-${le(4, 6)}-${le(6, 8)}-${h(8, 10)}-${h(10, 16)}`.toUpperCase();
}

/** Parses the primary GPT from the first sectors of a disk (≥ 34 sectors). */
export function parseGpt(head: Buffer, what = 'disk'): GptPartition[] {
  if (head.length < 2 * SECTOR) throw new Error(`${what}: too short for a GPT`);
  const hdr = head.subarray(SECTOR, 2 * SECTOR);
  if (hdr.toString('latin1', 0, 8) !== 'EFI PART') throw new Error(`${what}: no GPT header at LBA 1`);
  const entriesLba = Number(hdr.readBigUInt64LE(72));
  const count = hdr.readUInt32LE(80);
  const size = hdr.readUInt32LE(84);
  if (size < 128 || count > 1024) throw new Error(`${what}: implausible GPT (entries ${count} × ${size} bytes)`);
  const start = entriesLba * SECTOR;
  if (head.length < start + count * size) throw new Error(`${what}: GPT entries beyond the bytes read`);
  const parts: GptPartition[] = [];
  for (let i = 0; i < count; i++) {
    const e = head.subarray(start + i * size, start + (i + 1) * size);
    if (e.subarray(0, 16).every((x) => x === 0)) continue;
    const firstSector = Number(e.readBigUInt64LE(32));
    const lastSector = Number(e.readBigUInt64LE(40));
    const name = e.subarray(56, 128).toString('utf16le').replace(/\0.*$/s, '');
    parts.push({
      index: i + 1, name, typeGuid: guid(e, 0), firstSector, lastSector,
      offsetBytes: firstSector * SECTOR, sizeBytes: (lastSector - firstSector + 1) * SECTOR,
    });
  }
  return parts;
}

/** How many bytes hold a standard GPT (protective MBR, header, 128 entries). */
export const GPT_HEAD_BYTES = 34 * SECTOR;

export function readGpt(path: string): GptPartition[] {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(GPT_HEAD_BYTES);
    readSync(fd, buf, 0, buf.length, 0);
    return parseGpt(buf, path);
  } finally {
    closeSync(fd);
  }
}
