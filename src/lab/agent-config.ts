// The edgelb configuration file of each lab edge. Pure: plan + options +
// paths in, the YAML object out (written by lab.ts, checked by
// `edgelb config check` in the tests).
import { join } from 'node:path';
import { EDGE_METRICS_PORT, type EdgePlan, type LabPlan } from './topology.js';
import type { LabOptions } from './state.js';

export interface EdgePaths {
  /** Directory for this edge's sockets and bfdd files. */
  dir: string;
  /** bpffs directory for the edge's pinned maps. */
  pinPath: string;
  kubeconfig: string;
}

export function edgeConfig(plan: LabPlan, edge: EdgePlan, opts: LabOptions, paths: EdgePaths): Record<string, unknown> {
  const bfd = { enabled: opts.bfd, ...opts.bfdTimers };
  return {
    node: { name: edge.name, routerId: edge.address, asn: edge.asn, uplink: edge.uplink, address: edge.address, ...(opts.ipv6 ? { address6: edge.address6 } : {}) },
    bgp: {
      gobgp: { socket: join(paths.dir, 'gobgp.sock'), binary: '/usr/bin/gobgpd', manage: true },
      bfdd: { binary: '/usr/lib/frr/bfdd', runDir: join(paths.dir, 'bfdd') },
      drainSeconds: opts.drainSeconds,
      peers: [
        { address: plan.router.address, localAddress: edge.address },
        // Dual-stack: IPv6 VIPs are announced over an IPv6 session.
        ...(opts.ipv6 ? [{ address: plan.router.address6, localAddress: edge.address6 }] : []),
      ].map((s) => ({ ...s, asn: plan.router.asn, holdTime: 9, keepalive: 3, bfd, gracefulRestart: { enabled: true, restartTime: 120 } })),
    },
    pools: [{ name: 'lab', cidrs: [plan.pool], autoAssign: true }, ...(opts.ipv6 ? [{ name: 'lab6', cidrs: [plan.pool6], autoAssign: true }] : [])],
    datapath: { mode: opts.mode, dispatch: opts.dispatch, xdp: 'native', mtu: 1500, pinPath: paths.pinPath, probeIntervalSeconds: opts.probeIntervalSeconds, secondChanceSeconds: opts.secondChanceSeconds ?? 600 },
    kubernetes: {
      kubeconfig: paths.kubeconfig,
      loadBalancerClass: 'edgelb.io/dsr',
      // Class-less Services too (`kubectl create service loadbalancer` sets
      // no class); the lab's node agents run with --default-class to match.
      defaultClass: true,
      leaseName: 'edgelb-ipam',
      // Where deploy/rbac.yaml lets the edgelb-edge account keep Leases.
      leaseNamespace: 'edgelb-system',
      leaseDurationSeconds: 5,
    },
    control: { socket: join(paths.dir, 'control.sock') },
    metrics: { listen: `${edge.address}:${EDGE_METRICS_PORT}` },
    firewall: { enabled: false, sshFrom: [] },
    log: { level: 'info' },
  };
}
