// Shared by the second-chance packet tests (edge and node): the 20-byte
// option as docs/second-chance.md specifies it, built independently of the
// datapath's code.
import { DSR_OPT_TYPE, ipv4ToBytes } from '../lib/packets.js';

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
