// The kernel settings the datapath needs on the uplink, as a sysctl.d file
// (pure; the appliance's edgelb-config writes it to /run/sysctl.d, where
// systemd-sysctl and udev apply it — udev again whenever the uplink appears).
//
//   forwarding = 1    bpf_fib_lookup() answers "forwarding disabled" on an
//                     interface without it, and the XDP program then hands
//                     every rewritten packet to a stack that drops it. Only
//                     the uplink forwards: the edge is not a router (and the
//                     host firewall's forward chain takes the rest, see
//                     ruleset.ts).
//   rp_filter = 2     loose. A packet the datapath rewrote but could not
//                     send itself (the next hop's MAC not known yet) goes to
//                     the stack with the client's source address; DSR paths
//                     are asymmetric by design, so the route back to the
//                     client need not leave through the uplink (a default
//                     route via a management port, say), and strict mode
//                     would drop it. Loose still drops unroutable sources.
//   send_redirects = 0  forwarding back out of the uplink is the datapath's
//                     slow path, not a hint for the sender to take another
//                     route.
//   accept_redirects = 0, accept_source_route = 0  an edge takes its routes
//                     from its own configuration only.
import type { EdgelbConfig } from '../config/types.js';
import { IFNAME } from '../config/formats.js';

export const SYSCTL_FILE = '/run/sysctl.d/60-edgelb-uplink.conf';

/** The uplink's settings, key → value. */
export function uplinkSysctls(uplink: string): [string, string][] {
  // sysctl.d separates key parts with "." or "/"; an interface name with a
  // dot (eth0.100, a VLAN) must be written with "/" separators.
  if (!IFNAME.test(uplink)) throw new Error(`sysctl: cannot write settings for interface ${JSON.stringify(uplink)}`);
  const key = (name: string) => (uplink.includes('.') ? `net/ipv4/conf/${uplink}/${name}` : `net.ipv4.conf.${uplink}.${name}`);
  return [
    [key('forwarding'), '1'],
    [key('rp_filter'), '2'],
    [key('send_redirects'), '0'],
    [key('accept_redirects'), '0'],
    [key('accept_source_route'), '0'],
  ];
}

/** The sysctl.d file for a config. */
export function sysctlFile(cfg: EdgelbConfig): string {
  return [
    `# Written by edgelb config check --sysctl-out from the node's edgelb.yaml:`,
    `# the datapath's needs on node.uplink (${cfg.node.uplink}); see src/firewall/sysctl.ts.`,
    ...uplinkSysctls(cfg.node.uplink).map(([k, v]) => `${k} = ${v}`),
    '',
  ].join('\n');
}
