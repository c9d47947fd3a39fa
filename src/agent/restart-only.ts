// The settings a running agent reads only when it starts: what the datapath
// was loaded and attached with, the daemons and sockets it was given, its
// identity towards Kubernetes, its own listeners and log level. A reload
// that changes one of them is refused (nothing applied): taken with the
// rest, the agent reported the new file as in force — its hash, and status
// showing the new values (maglevTableSize, the uplink, node.name) — while
// the old ones ran until the next start.
import type { EdgelbConfig } from '../config/types.js';
import { servesIpv6 } from '../config/serves-ipv6.js';

const READ_AT_START: readonly (readonly [string, (c: EdgelbConfig) => string | number | boolean])[] = [
  ['node.name', (c) => c.node.name],
  ['node.uplink', (c) => c.node.uplink],
  ['datapath.xdp', (c) => c.datapath.xdp],
  ['datapath.maglevTableSize', (c) => c.datapath.maglevTableSize],
  ['datapath.pinPath', (c) => c.datapath.pinPath],
  ['datapath.secondChanceSeconds', (c) => c.datapath.secondChanceSeconds],
  // The IPv6 maps and program are loaded or not at start; with ipv6: auto a
  // first IPv6 pool (or the last one gone) changes that too.
  ['IPv6 serving (datapath.ipv6, or with ipv6 auto whether a pool is IPv6)', (c) => (servesIpv6(c) ? 'on' : 'off')],
  ['datapath.probePort', (c) => c.datapath.probePort],
  ['datapath.probeIntervalSeconds', (c) => c.datapath.probeIntervalSeconds],
  ['bgp.gobgp.socket', (c) => c.bgp.gobgp.socket],
  ['bgp.gobgp.binary', (c) => c.bgp.gobgp.binary],
  ['bgp.gobgp.protoDir', (c) => c.bgp.gobgp.protoDir],
  ['bgp.gobgp.manage', (c) => c.bgp.gobgp.manage],
  ['bgp.bfdd.binary', (c) => c.bgp.bfdd.binary],
  ['bgp.bfdd.runDir', (c) => c.bgp.bfdd.runDir],
  ['kubernetes.kubeconfig', (c) => c.kubernetes.kubeconfig],
  ['kubernetes.leaseName', (c) => c.kubernetes.leaseName],
  ['kubernetes.leaseNamespace', (c) => c.kubernetes.leaseNamespace],
  ['kubernetes.leaseDurationSeconds', (c) => c.kubernetes.leaseDurationSeconds],
  ['control.socket', (c) => c.control.socket],
  ['metrics.listen', (c) => c.metrics.listen],
  ['log.level', (c) => c.log.level],
];

/** Settings read only at start that `next` changes, each with both values; empty when a reload can apply it all. */
export function changedAtStartOnly(inForce: EdgelbConfig, next: EdgelbConfig): string[] {
  const out: string[] = [];
  for (const [name, get] of READ_AT_START) {
    const was = get(inForce);
    const now = get(next);
    if (was !== now) out.push(`${name} (${show(was)} in force, ${show(now)} in the file)`);
  }
  return out;
}

/** The reload's refusal for those settings, one sentence. */
export function restartNeeded(changed: readonly string[]): string {
  return `${changed.join(', ')} ${changed.length === 1 ? 'is' : 'are'} read only when the agent starts: restart the agent to apply ${changed.length === 1 ? 'it' : 'them'} (systemctl restart edgelb)`;
}

const show = (v: string | number | boolean): string => (v === '' ? '""' : String(v));
