// The path-probe datagram (see native/probe/edgelb-probe.c and
// bpf/node_probe.c): "ELBPROBE" | nonce (8) | flag (1; 1 = the DSR option
// arrived at the node).
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
