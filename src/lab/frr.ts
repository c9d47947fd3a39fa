// An FRR router (zebra + bgpd + bfdd) inside a namespace, every path
// overridden so it never touches the system's FRR, plus vtysh helpers that
// return parsed JSON. The lab's router; the BGP tests run their own.
import { chownSync, mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { nsRun, sleep } from './netns.js';
import { killAndWait, pidAlive, userIds } from '../bgp/daemon-files.js';

export interface FrrNeighbor {
  address: string;
  asn: number;
  password?: string;
  /** BFD with these timers (ms); absent = no BFD. */
  bfd?: { minRxMs: number; minTxMs: number; multiplier: number };
  holdTime?: number;
  keepalive?: number;
  /** Router address to source the session from (a secondary address). */
  updateSource?: string;
}

export interface FrrRouterConfig {
  hostname: string;
  asn: number;
  routerId: string;
  neighbors: FrrNeighbor[];
  maximumPaths?: number;
  /** Prefixes the router originates (to prove the edges import nothing). */
  networks?: string[];
}

const DAEMONS = ['zebra', 'bgpd', 'bfdd'] as const;
type Daemon = (typeof DAEMONS)[number];

function bfdProfile(n: FrrNeighbor): string {
  const b = n.bfd!;
  return `edge-${b.minRxMs}-${b.minTxMs}-${b.multiplier}`;
}

/** Pure: the three daemons' config files. */
export function generateFrrConfig(c: FrrRouterConfig): Record<Daemon, string> {
  const head = [`hostname ${c.hostname}`, 'log stdout informational', 'log timestamp precision 3', '!'];
  const zebra = [...head, 'zebra work-queue 0', '!', ''].join('\n');
  const profiles = new Map<string, FrrNeighbor>();
  for (const n of c.neighbors) if (n.bfd) profiles.set(bfdProfile(n), n);
  const bfdd = [...head, 'bfd'];
  for (const [name, n] of [...profiles.entries()].sort()) {
    bfdd.push(` profile ${name}`, `  detect-multiplier ${n.bfd!.multiplier}`, `  receive-interval ${n.bfd!.minRxMs}`, `  transmit-interval ${n.bfd!.minTxMs}`, ' exit', ' !');
  }
  bfdd.push('exit', '!', '');
  const bgp = [...head, `router bgp ${c.asn}`, ` bgp router-id ${c.routerId}`, ' no bgp ebgp-requires-policy', ' no bgp network import-check', ' bgp bestpath as-path multipath-relax', ' bgp log-neighbor-changes'];
  for (const n of c.neighbors) {
    bgp.push(` neighbor ${n.address} remote-as ${n.asn}`, ` neighbor ${n.address} timers connect 1`);
    if (n.holdTime !== undefined) bgp.push(` neighbor ${n.address} timers ${n.keepalive ?? Math.floor(n.holdTime / 3)} ${n.holdTime}`);
    if (n.updateSource) bgp.push(` neighbor ${n.address} update-source ${n.updateSource}`);
    if (n.password) bgp.push(` neighbor ${n.address} password ${n.password}`);
    if (n.bfd) bgp.push(` neighbor ${n.address} bfd`, ` neighbor ${n.address} bfd profile ${bfdProfile(n)}`);
  }
  // Each session carries its own family: FRR activates every neighbor for
  // IPv4 unicast by default, so IPv6 neighbors are taken out of it.
  const v6 = c.neighbors.filter((n) => n.address.includes(':'));
  bgp.push(' address-family ipv4 unicast', ...(c.networks ?? []).map((n) => `  network ${n}`), ...v6.map((n) => `  no neighbor ${n.address} activate`));
  bgp.push(`  maximum-paths ${c.maximumPaths ?? 8}`, ' exit-address-family', ' address-family ipv6 unicast');
  for (const n of v6) bgp.push(`  neighbor ${n.address} activate`);
  bgp.push(`  maximum-paths ${c.maximumPaths ?? 8}`, ' exit-address-family', 'exit', '!', '');
  return { zebra, bgpd: bgp.join('\n'), bfdd: bfdd.join('\n') };
}

export class FrrRouter {
  readonly ns: string;
  readonly dir: string;
  readonly runDir: string;
  config: FrrRouterConfig;
  private readonly pids = new Map<Daemon, number>();

  constructor(ns: string, dir: string, config: FrrRouterConfig) {
    this.ns = ns;
    this.dir = dir;
    this.runDir = join(dir, 'run');
    this.config = config;
  }

  async start(): Promise<void> {
    mkdirSync(this.runDir, { recursive: true });
    const files = generateFrrConfig(this.config);
    const ids = userIds('frr');
    for (const d of DAEMONS) writeFileSync(join(this.dir, `${d}.conf`), files[d]);
    // vtysh reads this to learn it may talk to each daemon.
    writeFileSync(join(this.dir, 'vtysh.conf'), '');
    if (ids) {
      for (const p of [this.dir, this.runDir]) chownSync(p, ids.uid, ids.gid);
    }
    for (const d of DAEMONS) {
      const args = [
        '-f', join(this.dir, `${d}.conf`),
        '-i', join(this.runDir, `${d}.pid`),
        '-z', join(this.runDir, 'zserv.api'),
        '--vty_socket', this.runDir,
        '-A', '127.0.0.1',
        '--log', `file:${join(this.dir, `${d}.log`)}`,
      ];
      if (d === 'bfdd') args.push('--bfdctl', join(this.runDir, 'bfdd.sock'));
      // Foreground (no -d), so the pid we hold is the daemon's own: FRR names
      // its /var/tmp/frr/<daemon>.<pid> dir after the pid before daemonizing.
      const child = spawn('ip', ['netns', 'exec', this.ns, `/usr/lib/frr/${d}`, ...args], { detached: true, stdio: 'ignore' });
      child.unref();
      if (child.pid === undefined) throw new Error(`could not start ${d}`);
      this.pids.set(d, child.pid);
      await this.waitPid(d, child.pid);
    }
    // bgpd/bfdd connect to zebra asynchronously; wait until vtysh answers for all.
    const deadline = Date.now() + 10000;
    for (;;) {
      try {
        await this.vtysh('show bgp summary json');
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(100);
      }
    }
  }

  /** Wait until the daemon wrote its pid file (it is then listening on its vty). */
  private async waitPid(d: Daemon, pid: number): Promise<void> {
    const f = join(this.runDir, `${d}.pid`);
    for (let i = 0; i < 200; i++) {
      if (!pidAlive(pid)) throw new Error(`${d} exited during start; see ${join(this.dir, `${d}.log`)}`);
      try {
        if (Number(readFileSync(f, 'utf8').trim()) === pid) return;
      } catch {
        /* not yet */
      }
      await sleep(25);
    }
    throw new Error(`${d} did not write ${f}`);
  }

  pidOf(d: Daemon): number | undefined {
    return this.pids.get(d);
  }

  async vtysh(...cmds: string[]): Promise<string> {
    const { stdout } = await nsRun(this.ns, ['vtysh', '--vty_socket', this.runDir, '--config_dir', this.dir, ...cmds.flatMap((c) => ['-c', c])]);
    return stdout;
  }

  async vtyshJson<T = unknown>(cmd: string): Promise<T> {
    const out = await this.vtysh(cmd);
    return JSON.parse(out || '{}') as T;
  }

  /** `show bgp ipv4|ipv6 unicast summary json` peers → state per neighbor of that family. */
  async neighbors(family: 4 | 6 = 4): Promise<Record<string, { state: string; peerUptimeMsec?: number; pfxRcd?: number; peerUptimeEstablishedEpoch?: number }>> {
    type Peers = Record<string, { state: string; peerUptimeMsec?: number; pfxRcd?: number; peerUptimeEstablishedEpoch?: number }>;
    // With an address family given FRR prints that family's summary at top level.
    const j = await this.vtyshJson<{ peers?: Peers; ipv4Unicast?: { peers?: Peers }; ipv6Unicast?: { peers?: Peers } }>(`show bgp ipv${family} unicast summary json`);
    return j.peers ?? (family === 4 ? j.ipv4Unicast?.peers : j.ipv6Unicast?.peers) ?? {};
  }

  /** Session counters that only move when a session is (re)established or dropped. */
  async sessionCounters(addr: string): Promise<{ established: number; dropped: number; state: string }> {
    const j = await this.vtyshJson<Record<string, { connectionsEstablished?: number; connectionsDropped?: number; bgpState?: string }>>(`show bgp neighbors ${addr} json`);
    const n = j[addr] ?? {};
    return { established: n.connectionsEstablished ?? 0, dropped: n.connectionsDropped ?? 0, state: n.bgpState ?? 'unknown' };
  }

  /** The session with `addr` is up (IPv6 neighbors carry IPv6 unicast, IPv4 ones IPv4 unicast). */
  async established(addr: string): Promise<boolean> {
    return (await this.neighbors(addr.includes(':') ? 6 : 4))[addr]?.state === 'Established';
  }

  /** `show bgp ipv4 unicast PREFIX json` (attributes as FRR received them). */
  async bgpRoute(prefix: string): Promise<FrrBgpRoute> {
    const fam = prefix.includes(':') ? 'ipv6' : 'ipv4';
    return this.vtyshJson<FrrBgpRoute>(`show bgp ${fam} unicast ${prefix} json`);
  }

  /**
   * zebra's view of a prefix (`show ip[v6] route PREFIX json`): the gateway
   * of each nexthop installed in the kernel (fib), sorted; [] when absent.
   */
  async fibNexthops(prefix: string): Promise<string[]> {
    const fam = prefix.includes(':') ? 'ipv6' : 'ip';
    type Entry = { protocol?: string; selected?: boolean; nexthops?: { ip?: string; fib?: boolean; active?: boolean }[] };
    const j = await this.vtyshJson<Record<string, Entry[]>>(`show ${fam} route ${prefix} json`);
    const e = (j[prefix] ?? []).find((x) => x.selected);
    return (e?.nexthops ?? []).filter((n) => n.fib).map((n) => n.ip ?? '').sort();
  }

  /** The router's BFD session with `peer` (`show bfd peers json`), or undefined. */
  async bfdPeer(peer: string): Promise<{ peer: string; local?: string; id: number; status: string; uptime?: number } | undefined> {
    const all = await this.vtyshJson<{ peer: string; local?: string; id: number; status: string; uptime?: number }[]>('show bfd peers json');
    return all.find((p) => p.peer === peer);
  }

  async stop(): Promise<void> {
    for (const d of [...DAEMONS].reverse()) {
      const pid = this.pids.get(d);
      if (pid === undefined) continue;
      await killAndWait(pid, 5000);
      rmSync(`/var/tmp/frr/${d}.${pid}`, { recursive: true, force: true });
      this.pids.delete(d);
    }
  }
}

export interface FrrBgpPath {
  aspath?: { string: string; length: number };
  community?: { string: string; list?: string[] };
  largeCommunity?: { string: string; list?: string[] };
  med?: number;
  metric?: number;
  locPrf?: number;
  nexthops?: { ip: string }[];
  peer?: { peerId: string };
  bestpath?: { overall: boolean };
  multipath?: boolean;
}

export interface FrrBgpRoute {
  prefix?: string;
  paths?: FrrBgpPath[];
}

