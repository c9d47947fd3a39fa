// Identity of this machine, for the edge's name and for telling two edges
// apart that present the same name. Derived from systemd's machine id
// (machine-id(5)), hashed with a purpose string as systemd recommends for
// applications (the raw id is not to be exposed). A hostname would not do:
// every appliance of one image shares it.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

export const MACHINE_ID_PATH = '/etc/machine-id';

/** The machine id (32 lowercase hex digits), or null when absent or malformed. */
export function machineId(path = MACHINE_ID_PATH): string | null {
  try {
    const id = readFileSync(path, 'utf8').trim().toLowerCase();
    return /^[0-9a-f]{32}$/.test(id) ? id : null;
  } catch {
    return null;
  }
}

/** sha256(purpose:machine-id) in hex, or null without a machine id. */
export function machineScopedId(purpose: string, path = MACHINE_ID_PATH): string | null {
  const id = machineId(path);
  return id === null ? null : createHash('sha256').update(`${purpose}:${id}`).digest('hex');
}

/** node.name's default: "edge-" and 12 hex digits unique to this machine; '' without a machine id (then node.name is required). */
export function defaultNodeName(path = MACHINE_ID_PATH): string {
  const h = machineScopedId('edgelb-node-name', path);
  return h === null ? '' : `edge-${h.slice(0, 12)}`;
}
