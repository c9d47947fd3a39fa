// Transport protocols and ports: the names services use ('TCP', 'UDP'),
// the IP protocol numbers the datapath's maps and packets carry, and the
// port range check every encoder applies, and ADDRESS:PORT endpoints.
import { isIp } from './ip.js';

export type L4Proto = 'TCP' | 'UDP';

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export function protoNumber(p: L4Proto): number {
  if (p === 'TCP') return IPPROTO_TCP;
  if (p === 'UDP') return IPPROTO_UDP;
  throw new Error(`protocol '${String(p)}' is not TCP or UDP`);
}

export function protoName(n: number): L4Proto {
  if (n === IPPROTO_TCP) return 'TCP';
  if (n === IPPROTO_UDP) return 'UDP';
  throw new Error(`IP protocol ${n} is not TCP or UDP`);
}

/** Returns the port when it is an integer 0..65535; throws a RangeError naming `what` otherwise. */
export function checkPort(port: number, what: string): number {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`${what} ${port} is not a port number (0..65535)`);
  return port;
}

/**
 * "ADDRESS:PORT", IPv6 in brackets ("[::1]:9472"), port 1..65535; null when
 * the text is not that.
 */
export function parseHostPort(text: string): { address: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const address = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!isIp(address) || port < 1 || port > 65535) return null;
  return { address, port };
}
