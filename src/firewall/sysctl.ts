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
//
// IPv6, when the edge serves it (servesIpv6): the same forwarding on the
// uplink for bpf_fib_lookup(), and forwarding for all interfaces as well —
// unlike IPv4's, the IPv6 stack forwards only with net.ipv6.conf.all
// .forwarding (kernels before 6.17 have no per-interface switch), so without
// it the slow path (next hop not resolved yet) dropped every packet and the
// node's neighbour was never resolved: an IPv6 frontend whose node the edge
// had not talked to got nothing. The host firewall's forward chain (policy
// drop) keeps the edge from routing anything but the datapath's slow path.
// A forwarding interface ignores Router Advertisements unless accept_ra is
// 2: the uplink keeps taking them (its default route may come from one).
import type { EdgelbConfig } from '../config/types.js';
import { IFNAME } from '../config/formats.js';
import { servesIpv6 } from '../config/serves-ipv6.js';

export const SYSCTL_FILE = '/run/sysctl.d/60-edgelb-uplink.conf';

/** The uplink's settings, key → value; `ipv6`: also those IPv6 frontends need. */
export function uplinkSysctls(uplink: string, ipv6 = false): [string, string][] {
  // sysctl.d separates key parts with "." or "/"; an interface name with a
  // dot (eth0.100, a VLAN) must be written with "/" separators.
  if (!IFNAME.test(uplink)) throw new Error(`sysctl: cannot write settings for interface ${JSON.stringify(uplink)}`);
  const key = (family: 'ipv4' | 'ipv6', name: string) => (uplink.includes('.') ? `net/${family}/conf/${uplink}/${name}` : `net.${family}.conf.${uplink}.${name}`);
  const v4: [string, string][] = [
    [key('ipv4', 'forwarding'), '1'],
    [key('ipv4', 'rp_filter'), '2'],
    [key('ipv4', 'send_redirects'), '0'],
    [key('ipv4', 'accept_redirects'), '0'],
    [key('ipv4', 'accept_source_route'), '0'],
  ];
  if (!ipv6) return v4;
  return [
    ...v4,
    // First: writing "all" sets every interface's forwarding.
    ['net.ipv6.conf.all.forwarding', '1'],
    [key('ipv6', 'forwarding'), '1'],
    [key('ipv6', 'accept_ra'), '2'],
    [key('ipv6', 'accept_redirects'), '0'],
  ];
}

/** The sysctl.d file for a config. */
export function sysctlFile(cfg: EdgelbConfig): string {
  return [
    `# Written by edgelb config check --sysctl-out from the node's edgelb.yaml:`,
    `# the datapath's needs on node.uplink (${cfg.node.uplink}); see src/firewall/sysctl.ts.`,
    ...uplinkSysctls(cfg.node.uplink, servesIpv6(cfg)).map(([k, v]) => `${k} = ${v}`),
    '',
  ].join('\n');
}
