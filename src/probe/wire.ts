// The path probe on the wire (native/probe/edgelb-probe.c sends it,
// bpf/node_probe.c marks it, responder.ts echoes it).
//
// Payload, either family: "ELBPROBE" | nonce (8) | flag (1; 1 = the marker
// arrived at the node).
//
// Marker, the DSR encapsulation of the probe's family naming no service
// (VIP unspecified, port 0), so the node can tell "our marking survived the
// fabric" from a flow:
//   IPv4: the 8-byte DSR IP option (dsr_option.h): 0x9e, 8, port 0, 0.0.0.0
//   IPv6: the 24-byte Destination Options DSR header (/work/coord wire
//         format, dsr_option.h) directly after the fixed header: next
//         header UDP, hdr ext len 2, option 0x5e with 18 data bytes (port 0,
//         address ::), PadN 0x01 0x00
import type { Family } from '../net/ip.js';

export const PROBE_PORT = 4790;
export const PROBE_MAGIC = Buffer.from('ELBPROBE');
export const PROBE_PAYLOAD_LEN = 17;

export function probePayload(nonce: Buffer, flag = 0): Buffer {
  if (nonce.length !== 8) throw new RangeError('probe nonce must be 8 bytes');
  return Buffer.concat([PROBE_MAGIC, nonce, Buffer.from([flag])]);
}

export function isProbePayload(b: Buffer): boolean {
  return b.length === PROBE_PAYLOAD_LEN && b.subarray(0, PROBE_MAGIC.length).equals(PROBE_MAGIC);
}

const IPPROTO_UDP = 17;

/** The marker bytes a probe of `family` carries (a fresh copy). */
export function probeMarker(family: Family): Buffer {
  if (family === 4) return Buffer.from([0x9e, 8, 0, 0, 0, 0, 0, 0]);
  const h = Buffer.alloc(24);
  h[0] = IPPROTO_UDP;
  h[1] = 2;
  h[2] = 0x5e;
  h[3] = 18;
  h[22] = 0x01;
  return h;
}

/** What carries the marker, for verdicts and status ("the fabric strips …"). */
export function markerName(family: Family): string {
  return family === 4 ? 'IPv4 options' : 'the IPv6 Destination Options header';
}
