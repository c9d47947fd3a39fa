// Identity of this machine, for the edge's name and for telling two edges
// apart that present the same name. Derived from systemd's machine id
// (machine-id(5)), hashed with a purpose string as systemd recommends for
// applications (the raw id is not to be exposed). A hostname would not do:
// every appliance of one image shares it.
//
// The appliance ships an empty /etc/machine-id on a read-only root: systemd
// then mounts a transient id over it, new at every boot (on KVM/QEMU it
// takes the VM's UUID, elsewhere a random one). A name that changes at every
// boot is no identity, so a transient machine id counts only where nothing
// stable exists: the firmware's system UUID (SMBIOS product_uuid, what
// systemd itself uses for VMs) comes first. Without either, there is no
// default and node.name must be set.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** What an edge's name (node.name) may be: a lowercase DNS name of at most 253 characters, as a Kubernetes node's. */
export const EDGE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export interface IdentitySources {
  /** machine-id(5). */
  machineId: string;
  /** To see whether machineId is a transient mount (systemd's, on a read-only root). */
  mountinfo: string;
  /** SMBIOS system UUID (root-readable). */
  productUuid: string;
}

export const IDENTITY_SOURCES: IdentitySources = {
  machineId: '/etc/machine-id',
  mountinfo: '/proc/self/mountinfo',
  productUuid: '/sys/class/dmi/id/product_uuid',
};

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** The machine id (32 lowercase hex digits), or null when absent or malformed. */
export function machineId(path = IDENTITY_SOURCES.machineId): string | null {
  const id = read(path)?.trim().toLowerCase() ?? '';
  return /^[0-9a-f]{32}$/.test(id) ? id : null;
}

/** Whether `path` is a mount point of its own in `mountinfo` (systemd's transient machine id). */
export function isMountPoint(path: string, mountinfo: string): boolean {
  // mountinfo(5): the fifth field is the mount point, with \040 etc. escapes.
  return mountinfo.split('\n').some((line) => line.split(' ')[4] === path);
}

/** The firmware's system UUID as 32 hex digits, or null when absent or a placeholder (all 0s / all Fs). */
export function productUuid(path = IDENTITY_SOURCES.productUuid): string | null {
  const hex = (read(path) ?? '').trim().toLowerCase().replace(/-/g, '');
  if (!/^[0-9a-f]{32}$/.test(hex) || /^(0+|f+)$/.test(hex)) return null;
  return hex;
}

export type IdentitySource = 'machine-id' | 'firmware-uuid' | 'transient-machine-id';

/**
 * What identifies this machine across reboots, and where it came from; null
 * when nothing stable does. `transientOk`: a machine id new at every boot
 * will do as a last resort (it still tells this boot's processes apart from
 * another machine's).
 */
export function machineIdentity(src: IdentitySources = IDENTITY_SOURCES, transientOk = false): { id: string; source: IdentitySource } | null {
  const mid = machineId(src.machineId);
  const transient = mid !== null && isMountPoint(src.machineId, read(src.mountinfo) ?? '');
  if (mid !== null && !transient) return { id: mid, source: 'machine-id' };
  const uuid = productUuid(src.productUuid);
  if (uuid !== null) return { id: uuid, source: 'firmware-uuid' };
  if (mid !== null && transientOk) return { id: mid, source: 'transient-machine-id' };
  return null;
}

/** sha256(purpose:identity) in hex, or null without a machine identity (see machineIdentity). */
export function machineScopedId(purpose: string, src: IdentitySources = IDENTITY_SOURCES, transientOk = false): string | null {
  const m = machineIdentity(src, transientOk);
  return m === null ? null : createHash('sha256').update(`${purpose}:${m.id}`).digest('hex');
}

/** node.name's default: "edge-" and 12 hex digits unique to this machine; '' without a stable identity (then node.name is required). */
export function defaultNodeName(src: IdentitySources = IDENTITY_SOURCES): string {
  const h = machineScopedId('edgelb-node-name', src);
  return h === null ? '' : `edge-${h.slice(0, 12)}`;
}
