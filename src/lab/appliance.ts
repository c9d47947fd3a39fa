// The flashed appliance as a lab edge (`npm run lab -- up --appliance`):
// images/out/edgelb.raw boots under QEMU (TCG, OVMF) in place of edge1's
// agent, its two NICs on taps bridged into the lab's fabric and management
// networks, configured the way an operator configures a node — a "USB
// stick" labelled EDGELB-CFG with edgelb.yaml, systemd-networkd files for
// the static addresses and the secrets (the router's BGP password, the API
// server's kubeconfig) in secrets/. Nothing lab-specific is inside the VM.
//
// The lab keeps building edge1's namespace as for any edge; this module
// turns it into the VM's host: the addresses leave the namespace's
// interfaces, which become bridge ports next to QEMU's taps, so the VM holds
// the edge's addresses on the same wires. The lab hands in the plan, the
// edge, its options and the kubeconfig; the rest is here.
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { nsRun, run, sleep } from './netns.js';
import { edgeConfig } from './agent-config.js';
import { alive, spawnInNs, type LabProcess } from './procs.js';
import type { EdgePlan, LabPlan } from './topology.js';
import type { ApplianceRecord, LabOptions, LabState } from './state.js';
import { IMAGE_RAW } from '../image/build.js';
import { guestPanicSummary, NO_BOOT_ROM, OVMF_CODE, OVMF_VARS, smbiosCredential, tcgMachineArgs } from '../image/qemu.js';
import { CFG_LABEL } from '../image/layout.js';

/**
 * BFD timers for a lab with the appliance: an emulated CPU on a shared
 * machine can stall a few hundred ms, and 150 ms × 5 then flaps the VM's
 * session (and its routes). 300 ms × 5 still detects a dead VM in 1.5 s,
 * far inside the 9 s hold time.
 */
export const APPLIANCE_BFD_TIMERS = { minRxMs: 300, minTxMs: 300, multiplier: 5 } as const;

/** The edge the appliance replaces. */
export const APPLIANCE_EDGE = 'edge1';

/** Interface names inside the VM: virtio-net at PCI slots 5 and 6 on q35. */
export const VM_NICS = { uplink: { ifname: 'enp0s5', pciAddr: '0x5' }, mgmt: { ifname: 'enp0s6', pciAddr: '0x6' } } as const;

/** Names in the edge's namespace (which hosts QEMU). */
export const HOST_SIDE = { uplinkTap: 'vmup', mgmtTap: 'vmmgmt', uplinkBridge: 'brup', mgmtBridge: 'brmgmt' } as const;

export const SECRET_NAMES = { bgpPassword: 'bgp-router', kubeconfig: 'kubeconfig' } as const;
const SECRETS_DIR = '/run/edgelb/secrets';

/** How long the VM may take to READY (TCG on a shared 2-core machine; EDGELB_BOOT_TIMEOUT_S as for the image tests). */
export function applianceBootTimeoutMs(): number {
  return Number(process.env.EDGELB_BOOT_TIMEOUT_S ?? 420) * 1000;
}

export const READY_RE = /EDGELB READY node=(\S+) peers=(\d+) config=([0-9a-f]{12})/;

/** Locally administered MACs, one pair per edge. */
export function applianceMacs(edge: EdgePlan): { uplink: string; mgmt: string } {
  const n = Number(/(\d+)$/.exec(edge.name)?.[1] ?? 1);
  const h = n.toString(16).padStart(2, '0');
  return { uplink: `52:54:00:e0:00:${h}`, mgmt: `52:54:00:e0:ff:${h}` };
}

/**
 * The node's edgelb.yaml as its operator would write it: the lab edge's
 * settings with the appliance's own paths (gobgpd, bfdd and the control
 * socket at their defaults), the VM's NIC as uplink, the firewall on, and
 * the secrets by reference.
 */
export function applianceConfig(plan: LabPlan, edge: EdgePlan, opts: LabOptions): Record<string, unknown> {
  const base = edgeConfig(plan, edge, opts, { dir: '/unused', pinPath: '/unused', kubeconfig: `${SECRETS_DIR}/${SECRET_NAMES.kubeconfig}` }) as {
    node: Record<string, unknown>; bgp: { peers: Record<string, unknown>[]; drainSeconds: number }; datapath: Record<string, unknown>; kubernetes: Record<string, unknown>;
    pools: unknown; log: unknown;
  };
  const { pinPath: _pin, ...datapath } = base.datapath;
  return {
    node: { ...base.node, uplink: VM_NICS.uplink.ifname },
    bgp: {
      drainSeconds: base.bgp.drainSeconds,
      peers: base.bgp.peers.map((p) => ({ ...p, passwordFile: `${SECRETS_DIR}/${SECRET_NAMES.bgpPassword}` })),
    },
    pools: base.pools,
    datapath,
    kubernetes: base.kubernetes,
    metrics: { listen: `${edge.mgmtAddress}:9472` },
    firewall: { enabled: true, sshFrom: [] },
    log: base.log,
  };
}

/** systemd-networkd files for the two NICs, matched by MAC: static addresses, the default route via the router, the pod networks via their nodes. */
export function applianceNetworkFiles(plan: LabPlan, edge: EdgePlan): Record<string, string> {
  const macs = applianceMacs(edge);
  const uplink = [
    '# The fabric: BGP to the router, VIP traffic in, DSR out to the nodes.',
    '[Match]', `MACAddress=${macs.uplink}`, '',
    '[Network]', `Address=${edge.address}/24`, `Gateway=${plan.router.address}`, 'LinkLocalAddressing=no', 'IPv6AcceptRA=no', '',
    ...plan.nodes.flatMap((n) => ['[Route]', `Destination=${n.podCidr}`, `Gateway=${n.address}`, '']),
  ];
  const mgmt = [
    '# The management network: the Kubernetes API server, metrics.',
    '[Match]', `MACAddress=${macs.mgmt}`, '',
    '[Network]', `Address=${edge.mgmtAddress}/24`, 'LinkLocalAddressing=no', 'IPv6AcceptRA=no', '',
  ];
  return { '10-uplink.network': uplink.join('\n'), '20-mgmt.network': mgmt.join('\n') };
}

/** The lab's BGP password for the appliance's session with the router (random, kept root-only in the lab's directory). */
export function applianceBgpPassword(dir: string): string {
  const file = join(dir, 'appliance', 'bgp-password');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  mkdirSync(join(dir, 'appliance'), { recursive: true, mode: 0o700 });
  const pw = randomBytes(12).toString('base64url');
  writeFileSync(file, `${pw}\n`, { mode: 0o600 });
  return pw;
}

export interface QemuPlan {
  image: string;
  stick: string;
  serialLog: string;
  vars: string;
  macs: { uplink: string; mgmt: string };
  memoryMiB?: number;
  cpus?: number;
  /** A root shell on the VM's second serial port, this unix socket (lab debugging; see debugShellCredentials). */
  shellSocket?: string;
}

/**
 * Lab debugging only (EDGELB_APPLIANCE_SHELL=1): a root shell on the VM's
 * second serial port, as a unit passed in with systemd credentials (the
 * image itself has no such thing and no login). `socat -,raw,echo=0
 * UNIX-CONNECT:<lab dir>/appliance/shell.sock` reaches it.
 */
export function debugShellCredentials(): { name: string; value: string }[] {
  const unit = [
    '[Unit]', 'Description=edgelb lab: root shell on ttyS1 (debugging)',
    '[Service]', 'ExecStart=/bin/bash -i', 'StandardInput=tty-force', 'StandardOutput=tty', 'StandardError=tty',
    'TTYPath=/dev/ttyS1', 'TTYReset=yes', 'Environment=TERM=dumb', 'Restart=always', '',
  ].join('\n');
  return [
    { name: 'systemd.extra-unit.edgelb-lab-shell.service', value: unit },
    { name: 'systemd.unit-dropin.multi-user.target', value: '[Unit]\nWants=edgelb-lab-shell.service\n' },
  ];
}

/** QEMU's command line: the boot test's headless server, with tap NICs and the config stick as a second disk. */
export function applianceQemuArgs(q: QemuPlan): string[] {
  const nic = (id: string, tap: string, mac: string, addr: string) => [
    '-netdev', `tap,id=${id},ifname=${tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=${id},mac=${mac},addr=${addr},${NO_BOOT_ROM}`,
  ];
  return [
    'qemu-system-x86_64', ...tcgMachineArgs(), '-m', String(q.memoryMiB ?? 1024), '-smp', String(q.cpus ?? 2),
    '-nodefaults', '-display', 'none', '-monitor', 'none', '-serial', `file:${q.serialLog}`,
    '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`,
    '-drive', `if=pflash,format=raw,unit=1,file=${q.vars}`,
    // The flashed disk, never written: snapshot=on keeps the guest's writes in a temporary file.
    '-drive', `file=${q.image},format=raw,if=virtio,snapshot=on`,
    '-drive', `file=${q.stick},format=raw,if=virtio,readonly=on`,
    ...nic('up', HOST_SIDE.uplinkTap, q.macs.uplink, VM_NICS.uplink.pciAddr),
    ...nic('mgmt', HOST_SIDE.mgmtTap, q.macs.mgmt, VM_NICS.mgmt.pciAddr),
    '-no-reboot',
    ...(q.shellSocket ? ['-serial', `unix:${q.shellSocket},server=on,wait=off`, ...debugShellCredentials().flatMap((c) => ['-smbios', smbiosCredential(c)])] : []),
  ];
}

const MTOOLS_ENV = { ...process.env, MTOOLS_SKIP_CHECK: '1' };

/** A 16 MiB FAT image labelled EDGELB-CFG with these files (paths relative to its root). */
export async function makeConfigStick(path: string, files: Record<string, string>): Promise<void> {
  rmSync(path, { force: true });
  await run(['mkfs.vfat', '-n', CFG_LABEL, '-C', path, String(16 * 1024)]);
  const tmp = `${path}.d`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { mode: 0o700 });
  try {
    const dirs = new Set<string>();
    for (const name of Object.keys(files)) {
      const parts = name.split('/');
      for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
    }
    for (const d of [...dirs].sort()) await runEnv(['mmd', '-i', path, `::/${d}`]);
    for (const [name, text] of Object.entries(files)) {
      const local = join(tmp, name.replace(/\//g, '_'));
      writeFileSync(local, text, { mode: 0o600 });
      await runEnv(['mcopy', '-i', path, local, `::/${name}`]);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function runEnv(argv: string[]): Promise<void> {
  const { execFile } = await import('node:child_process');
  await new Promise<void>((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { env: MTOOLS_ENV }, (e, _o, err) => (e ? reject(new Error(`${argv.join(' ')}: ${err || e.message}`)) : resolve()));
  });
}

/**
 * Moves the edge's addresses off its namespace: its fabric and management
 * interfaces become bridge ports next to QEMU's taps (the VM takes the
 * addresses), and the nodes' pinned neighbour entry for the edge points at
 * the VM's MAC.
 */
export async function plumbVmHost(plan: LabPlan, edge: EdgePlan): Promise<void> {
  const macs = applianceMacs(edge);
  const sh = async (...cmd: string[]) => nsRun(edge.ns, cmd);
  await sh('ip', 'route', 'flush', 'table', 'main');
  for (const [ifname, tap, bridge] of [[edge.uplink, HOST_SIDE.uplinkTap, HOST_SIDE.uplinkBridge], [edge.mgmtIf, HOST_SIDE.mgmtTap, HOST_SIDE.mgmtBridge]] as const) {
    await sh('ip', 'addr', 'flush', 'dev', ifname);
    await sh('ip', 'link', 'add', bridge, 'type', 'bridge');
    // No STP, no forwarding delay: the bridge is a wire between the lab and the VM.
    await sh('ip', 'link', 'set', bridge, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0');
    await sh('ip', 'tuntap', 'add', 'dev', tap, 'mode', 'tap');
    for (const port of [ifname, tap]) await sh('ip', 'link', 'set', port, 'master', bridge);
    for (const l of [bridge, ifname, tap]) await sh('ip', 'link', 'set', l, 'up');
  }
  for (const n of plan.nodes) await nsRun(n.ns, ['ip', 'neigh', 'replace', edge.address, 'lladdr', macs.uplink, 'dev', n.ifname, 'nud', 'permanent']);
}

export interface StartApplianceOptions {
  plan: LabPlan;
  edge: EdgePlan;
  options: LabOptions;
  /** The kubeconfig the edge's agent should use (goes onto the stick as a secret). */
  kubeconfig: string;
  /** The lab's directory. */
  dir: string;
  image?: string;
  /** Called with QEMU's process as soon as it runs (for the lab's record). */
  onProcess: (p: LabProcess) => void;
  say?: (s: string) => void;
}

/** Boots the appliance as `edge`; resolves once QEMU runs (see waitApplianceReady). */
export async function startAppliance(o: StartApplianceOptions): Promise<ApplianceRecord> {
  const image = o.image ?? IMAGE_RAW;
  if (!existsSync(image)) throw new Error(`no appliance image at ${image}: build it first (npm run image)`);
  for (const f of [OVMF_CODE, OVMF_VARS]) if (!existsSync(f)) throw new Error(`${f} missing (apt-get install ovmf)`);
  const dir = join(o.dir, 'appliance');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const macs = applianceMacs(o.edge);
  const rec: ApplianceRecord = {
    edge: o.edge.name, ns: o.edge.ns, image, serialLog: join(dir, 'serial.log'), stick: join(dir, 'edgelb-cfg.img'), macs,
    taps: { uplink: HOST_SIDE.uplinkTap, mgmt: HOST_SIDE.mgmtTap }, pid: null, state: 'booting', readySeconds: null, detail: '',
  };
  const cfg = applianceConfig(o.plan, o.edge, o.options);
  const files: Record<string, string> = {
    'edgelb.yaml': `# edgelb config of ${o.edge.name}, an appliance VM in an edgelb lab\n${stringify(cfg)}`,
    [`secrets/${SECRET_NAMES.bgpPassword}`]: `${applianceBgpPassword(o.dir)}\n`,
    [`secrets/${SECRET_NAMES.kubeconfig}`]: readFileSync(o.kubeconfig, 'utf8'),
  };
  for (const [name, text] of Object.entries(applianceNetworkFiles(o.plan, o.edge))) files[`network/${name}`] = text;
  // For the operator reading along: the config without secrets.
  writeFileSync(join(dir, 'edgelb.yaml'), files['edgelb.yaml']!);
  await makeConfigStick(rec.stick, files);
  await plumbVmHost(o.plan, o.edge);
  const vars = join(dir, 'OVMF_VARS.fd');
  copyFileSync(OVMF_VARS, vars);
  rmSync(rec.serialLog, { force: true });
  const shell = process.env.EDGELB_APPLIANCE_SHELL === '1' ? join(dir, 'shell.sock') : undefined;
  const argv = applianceQemuArgs({ image, stick: rec.stick, serialLog: rec.serialLog, vars, macs, shellSocket: shell });
  if (shell) o.say?.(`  ${o.edge.name}: debug shell: socat -,raw,echo=0 UNIX-CONNECT:${shell}`);
  const proc = spawnInNs(`appliance-${o.edge.name}`, o.edge.ns, argv, join(dir, 'qemu.log'));
  rec.pid = proc.pid;
  rec.detail = `qemu pid ${proc.pid}, booting ${image}`;
  o.onProcess(proc);
  o.say?.(`  ${o.edge.name}: appliance VM booting (qemu pid ${proc.pid}, serial console ${rec.serialLog})`);
  return rec;
}

/** Waits for the agent's READY line on the VM's console; updates and returns the record. */
export async function waitApplianceReady(rec: ApplianceRecord, timeoutMs: number, startedAt = Date.now()): Promise<ApplianceRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = existsSync(rec.serialLog) ? readFileSync(rec.serialLog, 'utf8') : '';
    const m = READY_RE.exec(text);
    if (m) {
      rec.state = 'ready';
      rec.readySeconds = Math.round((Date.now() - startedAt) / 100) / 10;
      rec.detail = `qemu pid ${rec.pid}: ${m[0]}`;
      return rec;
    }
    const problem = /edgelb-config: (INVALID CONFIG|NO CONFIG)[^\n]*/.exec(text)?.[0] ?? (rec.pid && !alive(rec.pid) ? 'QEMU exited' : null);
    if (problem || Date.now() > deadline) {
      rec.state = 'failed';
      const panic = guestPanicSummary(text);
      rec.detail = `${problem ?? `no EDGELB READY within ${timeoutMs / 1000} s`}; console ${rec.serialLog}: ${panic ? `guest kernel panic: ${panic}` : consoleTail(text)}`;
      throw new Error(`appliance ${rec.edge}: ${rec.detail}`);
    }
    await sleep(500);
  }
}

function consoleTail(text: string, lines = 6): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '').trimEnd().split('\n').slice(-lines).join(' | ');
}

/** Cuts (or restores) the VM's uplink: its tap goes down, as a pulled cable would. */
export async function setApplianceUplink(rec: ApplianceRecord, up: boolean): Promise<void> {
  await nsRun(rec.ns, ['ip', 'link', 'set', rec.taps.uplink, up ? 'up' : 'down']);
}

/** What bootApplianceEdge needs of the lab's handle. */
export interface LabHandleLike {
  state: LabState;
  save(): void;
}

/**
 * The lab's hook: boots the appliance in place of `edge`'s agent, recording
 * QEMU's process and the appliance in the lab's state; resolves once READY.
 */
export async function bootApplianceEdge(lab: LabHandleLike, edge: EdgePlan, kubeconfig: string, say: (s: string) => void): Promise<void> {
  const t0 = Date.now();
  const rec = await startAppliance({
    plan: lab.state.plan, edge, options: lab.state.options, kubeconfig, dir: lab.state.dir, say,
    onProcess: (proc) => {
      lab.state.processes.push(proc);
      lab.save();
    },
  });
  lab.state.appliance = rec;
  lab.save();
  try {
    await waitApplianceReady(rec, applianceBootTimeoutMs(), t0);
    say(`  ${edge.name}: appliance VM READY after ${rec.readySeconds} s`);
  } finally {
    lab.save();
  }
}
