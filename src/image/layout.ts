// The appliance disk layout and boot-loader text, as pure data: the build
// writes it, the upgrade reads and rewrites it, the tests check it.
//
//   1 edgelb-esp     EFI system partition (FAT32): systemd-boot, one
//                    kernel+initrd per root slot, one boot entry per slot
//   2 edgelb-root-a  root slot A (erofs, read-only)
//   3 edgelb-root-b  root slot B (erofs; empty until the first upgrade)
//   4 edgelb-cfg     FAT, label EDGELB-CFG: the operator drops edgelb.yaml here
//   5 edgelb-state   ext4: last good config and other state, /var/lib/edgelb

export const SECTOR = 512;
export const MIB = 1024 * 1024;

export type Slot = 'a' | 'b';
export const SLOTS: readonly Slot[] = ['a', 'b'];

export interface PartitionSpec {
  /** GPT partition name (PARTLABEL). */
  name: string;
  /** sgdisk type code. */
  type: string;
  sizeMiB: number;
}

export interface PlacedPartition extends PartitionSpec {
  /** 1-based GPT index. */
  index: number;
  firstSector: number;
  lastSector: number;
  offsetBytes: number;
  sizeBytes: number;
}

export interface DiskLayout {
  partitions: PlacedPartition[];
  totalBytes: number;
}

export interface LayoutSizes {
  espMiB: number;
  rootSlotMiB: number;
  cfgMiB: number;
  stateMiB: number;
}

// The root slot size is fixed at build time: an upgrade image's root must
// fit the slot it is written to, so slots are sized with room to grow.
export const DEFAULT_SIZES: LayoutSizes = { espMiB: 128, rootSlotMiB: 384, cfgMiB: 16, stateMiB: 64 };

export const CFG_LABEL = 'EDGELB-CFG';
export const PART = {
  esp: 'edgelb-esp',
  root: (s: Slot) => `edgelb-root-${s}`,
  cfg: 'edgelb-cfg',
  state: 'edgelb-state',
} as const;

export function partitionSpecs(sizes: LayoutSizes = DEFAULT_SIZES): PartitionSpec[] {
  return [
    { name: PART.esp, type: 'ef00', sizeMiB: sizes.espMiB },
    { name: PART.root('a'), type: '8304', sizeMiB: sizes.rootSlotMiB },
    { name: PART.root('b'), type: '8304', sizeMiB: sizes.rootSlotMiB },
    // Basic data, so a laptop (any OS) can open it to edit edgelb.yaml.
    { name: PART.cfg, type: '0700', sizeMiB: sizes.cfgMiB },
    { name: PART.state, type: '8300', sizeMiB: sizes.stateMiB },
  ];
}

/** Places partitions back to back from 1 MiB, leaving 1 MiB for the backup GPT. */
export function placePartitions(specs: PartitionSpec[]): DiskLayout {
  const perMiB = MIB / SECTOR;
  let next = perMiB;
  const partitions = specs.map((p, i) => {
    if (!Number.isInteger(p.sizeMiB) || p.sizeMiB <= 0) throw new Error(`partition ${p.name}: size must be a positive whole MiB (got ${p.sizeMiB})`);
    const firstSector = next;
    const lastSector = firstSector + p.sizeMiB * perMiB - 1;
    next = lastSector + 1;
    return { ...p, index: i + 1, firstSector, lastSector, offsetBytes: firstSector * SECTOR, sizeBytes: p.sizeMiB * MIB };
  });
  return { partitions, totalBytes: (next + perMiB) * SECTOR };
}

export function findPartition<P extends { name: string }>(layout: { partitions: P[] }, name: string): P {
  const p = layout.partitions.find((x) => x.name === name);
  if (!p) throw new Error(`partition ${name} not found (have: ${layout.partitions.map((x) => x.name).join(', ') || 'none'})`);
  return p;
}

export function kernelCmdline(slot: Slot): string {
  return [
    `root=PARTLABEL=${PART.root(slot)}`, 'ro', 'rootfstype=erofs',
    // The last console= is /dev/console: the serial port, where unit output goes.
    'console=tty0', 'console=ttyS0,115200',
    // Reboot instead of hanging (kernel panic or initramfs failure), so boot
    // counting can move on to the other slot.
    'panic=10',
    'systemd.firstboot=off', 'loglevel=4',
  ].join(' ');
}

/** ESP directory holding a slot's kernel and initrd. */
export function espSlotDir(slot: Slot): string {
  return `/edgelb/${slot}`;
}

export interface EntryOptions {
  slot: Slot;
  /** Human-readable image version, shown in the menu. */
  imageVersion: string;
  /**
   * systemd-boot sorts entries of one sort-key by version, newest first, and
   * boots the first that is not marked bad: the most recently installed slot
   * wins, and a slot whose tries ran out falls behind the other one.
   */
  installStamp: string;
}

export function bootEntry(o: EntryOptions): string {
  const dir = espSlotDir(o.slot);
  return [
    `title edgelb ${o.imageVersion} (slot ${o.slot})`,
    'sort-key edgelb',
    `version ${o.installStamp}`,
    `linux ${dir}/vmlinuz`,
    `initrd ${dir}/initrd.img`,
    `options ${kernelCmdline(o.slot)}`,
    '',
  ].join('\n');
}

/** Entry file name; tries > 0 turns on systemd-boot's boot counting. */
export function entryFileName(slot: Slot, tries = 0): string {
  return tries > 0 ? `edgelb-${slot}+${tries}.conf` : `edgelb-${slot}.conf`;
}

/** The slot an entry file belongs to, whatever its counter says ("edgelb-b+2-1.conf" → b). */
export function entrySlot(fileName: string): Slot | null {
  const m = /^edgelb-([ab])(\+\d+(-\d+)?)?\.conf$/.exec(fileName);
  return m ? (m[1] as Slot) : null;
}

export const LOADER_CONF = [
  // No menu unless a key is held: boots are unattended.
  'timeout 0',
  'editor no',
  'console-mode keep',
  '',
].join('\n');

/** Install stamp: UTC time as a sortable number string. */
export function installStamp(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
}
