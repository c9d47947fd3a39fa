// A lab of one FRR router and N edges (each a namespace with gobgpd driven by
// a BgpSpeaker), wired through a bridge in the router's namespace:
//
//   edge i: eth0 10.<net>.0.<10+i>/24 ── veth ── br0 (router ns) 10.<net>.0.1/24
//
// Reused by the BGP tests, the benchmark and (later) the end-to-end lab.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BgpConfig, PeerConfig } from '../../src/config/types.js';
import { BgpSpeaker, type SpeakerConfig, type SpeakerOptions } from '../../src/bgp/speaker.js';
import { DEFAULT_PROTO_DIR } from '../../src/bgp/gobgp-client.js';
import { GobgpdProcess } from '../../src/bgp/gobgpd-process.js';
import { killAndWait, pidAlive } from '../../src/bgp/daemon-files.js';
import { addAddress, addBridge, Cleanup, createNetns, deleteNetns, nsRun, nsWrap, run, setMaster, sysctl, uniqueId, vethPair } from './netns.js';
import { FrrRouter, type FrrNeighbor } from '../../src/lab/frr.js';

export const ROUTER_ASN = 65000;

export interface EdgeSpec {
  asn?: number;
  /** Router-side neighbor settings (password, bfd, timers). */
  routerSide?: Partial<FrrNeighbor>;
  /** Edge-side peer settings merged into the default PeerConfig. */
  peer?: Partial<PeerConfig>;
  /**
   * Also give this edge a secondary address (10.N.0.(30+i)) and pre-configure
   * the router with a second neighbor for it, sourced from the router's
   * secondary address 10.N.0.2 — so a test can add a second peer by reload.
   */
  secondary?: boolean;
  /**
   * Also an IPv6 session: edge fd00:N::(10+i)/64 ↔ router fd00:N::1 (carries
   * the IPv6 VIPs; `routerSide` and `peer` apply to it too). With `secondary`
   * as well, a second IPv6 address fd00:N::(30+i) and a router neighbor for it
   * sourced from fd00:N::2 (lab.routerAddress6b).
   */
  v6?: boolean;
}

export interface LabEdge {
  index: number;
  ns: string;
  address: string;
  /** Secondary edge address when EdgeSpec.secondary (peer: lab.routerAddress2). */
  address2: string;
  /** IPv6 address when EdgeSpec.v6 (peer: lab.routerAddress6). */
  address6: string;
  /** Secondary IPv6 address when EdgeSpec.v6 and .secondary (peer: lab.routerAddress6b). */
  address6b: string;
  asn: number;
  dir: string;
  socket: string;
  config: SpeakerConfig;
  speaker: BgpSpeaker | null;
}

export interface BgpLab {
  id: string;
  dir: string;
  router: FrrRouter;
  routerNs: string;
  routerAddress: string;
  /** The router's secondary address (sessions to edges' secondary addresses). */
  routerAddress2: string;
  routerAddress6: string;
  /** The router's secondary IPv6 address (sessions to edges' secondary IPv6 addresses). */
  routerAddress6b: string;
  edges: LabEdge[];
  cleanup: Cleanup;
  /** Create (or re-create, e.g. after close) the edge's speaker and start it. */
  startSpeaker(i: number, opts?: SpeakerOptions): Promise<BgpSpeaker>;
  /** Tear everything down (processes by pid, namespaces, temp dirs). */
  destroy(): Promise<void>;
}

export function defaultPeer(address: string, over: Partial<PeerConfig> = {}): PeerConfig {
  return {
    address,
    asn: ROUTER_ASN,
    localAddress: '',
    passwordFile: '',
    holdTime: 9,
    keepalive: 3,
    multihop: 0,
    passive: false,
    bfd: { enabled: false, minRxMs: 100, minTxMs: 100, multiplier: 3 },
    gracefulRestart: { enabled: false, restartTime: 120 },
    ...over,
  };
}

export function edgeBgpConfig(dir: string, peers: PeerConfig[], drainSeconds = 1): BgpConfig {
  return {
    gobgp: { socket: join(dir, 'gobgp.sock'), binary: 'gobgpd', protoDir: DEFAULT_PROTO_DIR, manage: true },
    bfdd: { binary: '/usr/lib/frr/bfdd', runDir: join(dir, 'bfdd') },
    peers,
    drainSeconds,
  };
}

/** Kill any process whose network namespace is `ns` (only ones this test started live there). */
export async function killNsProcesses(ns: string): Promise<void> {
  const { execFile } = await import('node:child_process');
  const pids = await new Promise<number[]>((resolve) =>
    execFile('ip', ['netns', 'pids', ns], (err, out) => resolve(err ? [] : out.split(/\s+/).filter(Boolean).map(Number))),
  );
  for (const pid of pids) {
    await killAndWait(pid, 3000);
    for (const d of ['bfdd', 'bgpd', 'zebra']) rmSync(`/var/tmp/frr/${d}.${pid}`, { recursive: true, force: true });
  }
}

const LAB_DIR_RE = /^edgelb-bgp-([0-9a-f]{6})-/;

/**
 * Remove labs of this harness whose owning process died without tearing them
 * down (killed test runner): their namespaces (`elb<id>r`, `elb<id>e<n>`),
 * the processes inside them, and their temp dir. Labs whose owner is alive
 * are left alone, so parallel runs are safe.
 */
export async function reapStaleBgpLabs(): Promise<string[]> {
  const reaped: string[] = [];
  for (const name of readdirSync(tmpdir())) {
    const m = LAB_DIR_RE.exec(name);
    if (!m) continue;
    const dir = join(tmpdir(), name);
    let owner: number;
    try {
      owner = Number(readFileSync(join(dir, 'owner.pid'), 'utf8').trim());
    } catch {
      continue; // not fully created yet, or not ours to judge
    }
    if (owner > 0 && pidAlive(owner)) continue;
    const id = m[1]!;
    const { stdout } = await run(['ip', 'netns', 'list']);
    const names = stdout
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((n) => n === `elb${id}r` || new RegExp(`^elb${id}e[0-9]+$`).test(n));
    for (const ns of names) {
      await killNsProcesses(ns);
      await deleteNetns(ns);
    }
    rmSync(dir, { recursive: true, force: true });
    reaped.push(id);
  }
  return reaped;
}

export async function createBgpLab(edgeSpecs: EdgeSpec[], opts: { networks?: string[] } = {}): Promise<BgpLab> {
  await reapStaleBgpLabs();
  const id = uniqueId();
  const net = 100 + (parseInt(id.slice(0, 2), 16) % 100);
  const cleanup = new Cleanup();
  const dir = mkdtempSync(join(tmpdir(), `edgelb-bgp-${id}-`));
  cleanup.add('temp dir', () => rmSync(dir, { recursive: true, force: true }));
  // FRR daemons drop to user frr and must reach their run dirs below this one.
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'owner.pid'), `${process.pid}\n`);
  try {
    const routerNs = await createNetns(`elb${id}r`, cleanup);
    cleanup.add('router ns processes', () => killNsProcesses(routerNs));
    await sysctl(routerNs, 'net.ipv4.fib_multipath_hash_policy', '1');
    const routerAddress = `10.${net}.0.1`;
    const routerAddress2 = `10.${net}.0.2`;
    await addBridge(routerNs, 'br0', `${routerAddress}/24`);
    await addAddress(routerNs, 'br0', `${routerAddress2}/24`);
    const routerAddress6 = `fd00:${net}::1`;
    const routerAddress6b = `fd00:${net}::2`;
    if (edgeSpecs.some((e) => e.v6)) await addAddress(routerNs, 'br0', `${routerAddress6}/64`);
    if (edgeSpecs.some((e) => e.v6 && e.secondary)) await addAddress(routerNs, 'br0', `${routerAddress6b}/64`);
    const edges: LabEdge[] = [];
    const neighbors: FrrNeighbor[] = [];
    for (let i = 0; i < edgeSpecs.length; i++) {
      const spec = edgeSpecs[i]!;
      const ns = await createNetns(`elb${id}e${i}`, cleanup);
      cleanup.add(`edge ${i} processes`, () => killNsProcesses(ns));
      await vethPair(ns, 'eth0', routerNs, `e${i}`);
      await setMaster(routerNs, `e${i}`, 'br0');
      const address = `10.${net}.0.${10 + i}`;
      await addAddress(ns, 'eth0', `${address}/24`);
      const asn = spec.asn ?? 65101 + i;
      const edir = join(dir, `edge${i}`);
      mkdirSync(edir, { recursive: true });
      const peer = defaultPeer(routerAddress, spec.peer);
      const address6 = spec.v6 ? `fd00:${net}::${10 + i}` : '';
      const peers = [peer];
      if (address6) {
        await addAddress(ns, 'eth0', `${address6}/64`);
        peers.push(defaultPeer(routerAddress6, spec.peer));
        neighbors.push({ address: address6, asn, holdTime: 9, keepalive: 3, ...spec.routerSide });
      }
      const address6b = address6 && spec.secondary ? `fd00:${net}::${30 + i}` : '';
      if (address6b) {
        // Deprecated (preferred_lft 0): IPv6 has no primary address, and the
        // kernel would otherwise pick this one as the source of the first
        // session; a session bound to it (transport.localAddress) still works.
        await nsRun(ns, ['ip', 'addr', 'add', `${address6b}/64`, 'dev', 'eth0', 'nodad', 'preferred_lft', '0']);
        neighbors.push({ address: address6b, asn, holdTime: 9, keepalive: 3, ...spec.routerSide, updateSource: routerAddress6b });
      }
      const config: SpeakerConfig = { node: { asn, routerId: address }, bgp: edgeBgpConfig(edir, peers) };
      const address2 = spec.secondary ? `10.${net}.0.${30 + i}` : '';
      if (address2) {
        await addAddress(ns, 'eth0', `${address2}/24`);
        neighbors.push({ address: address2, asn, holdTime: 9, keepalive: 3, updateSource: routerAddress2 });
      }
      edges.push({ index: i, ns, address, address2, address6, address6b, asn, dir: edir, socket: config.bgp.gobgp.socket, config, speaker: null });
      neighbors.push({ address, asn, holdTime: 9, keepalive: 3, ...spec.routerSide });
    }
    const router = new FrrRouter(routerNs, join(dir, 'router'), { hostname: `r${id}`, asn: ROUTER_ASN, routerId: routerAddress, neighbors, networks: opts.networks });
    cleanup.add('router daemons', () => router.stop());
    await router.start();

    const lab: BgpLab = {
      id,
      dir,
      router,
      routerNs,
      routerAddress,
      routerAddress2,
      routerAddress6,
      routerAddress6b,
      edges,
      cleanup,
      async startSpeaker(i, sopts = {}) {
        const e = edges[i]!;
        const s = new BgpSpeaker(e.config, {
          wrap: nsWrap(e.ns),
          gobgpdLogFile: join(e.dir, 'gobgpd.log'),
          reconcileIntervalMs: 500,
          ...sopts,
        });
        await s.start();
        e.speaker = s;
        return s;
      },
      async destroy() {
        for (const e of edges) {
          await e.speaker?.close({ stopGobgpd: true, stopBfdd: true }).catch(() => undefined);
          // Belt and braces: a gobgpd recorded next to the socket that outlived its speaker.
          await new GobgpdProcess({ binary: 'gobgpd', socket: e.socket }).stop().catch(() => undefined);
        }
        const errors = await cleanup.run();
        if (errors.length) throw new AggregateError(errors, errors.map((x) => x.message).join('; '));
      },
    };
    return lab;
  } catch (e) {
    await cleanup.run();
    throw e;
  }
}

/** Write a 0600 password file in `dir`. */
export function writePasswordFile(dir: string, name: string, password: string): string {
  const f = join(dir, name);
  writeFileSync(f, `${password}\n`, { mode: 0o600 });
  return f;
}

/** Leftover check for tests: no /var/tmp/frr/<daemon>.<pid> dirs of dead pids we could have made. */
export function frrTmpDirsOf(pids: number[]): string[] {
  if (!existsSync('/var/tmp/frr')) return [];
  return readdirSync('/var/tmp/frr').filter((d) => pids.some((p) => d.endsWith(`.${p}`) && !pidAlive(p)));
}
