// The lab's network: namespaces, the fabric bridge, the router's client side,
// the mgmt bridge, edges, nodes with their pod bridges, and the pods' veths
// (see topology.ts for the picture). Pure plumbing from a LabPlan; the caller
// records what exists so `down` can remove it.
import { join } from 'node:path';
import { addAddress, addBridge, createNetns, nsRun, setMaster, sysctl, vethPair } from './netns.js';
import { allNamespaces, type LabPlan, type NodePlan, type PodPlan } from './topology.js';
import { dist, nodeBin, root } from './paths.js';

/** Namespaces, veths, bridges, addresses, routes and permanent neighbours of the whole plan; each namespace is recorded before it is used. */
export async function buildNetwork(p: LabPlan, recordNamespace: (ns: string) => void, ipv6 = false): Promise<void> {
  for (const ns of allNamespaces(p)) {
    await createNetns(ns);
    recordNamespace(ns);
  }
  // Fabric: one bridge every router/edge/node port hangs off.
  await addBridge(p.fabric.ns, p.fabric.bridge);
  const fabricPort = async (ns: string, ifname: string, port: string, cidr: string): Promise<void> => {
    await vethPair(ns, ifname, p.fabric.ns, port);
    await setMaster(p.fabric.ns, port, p.fabric.bridge);
    await addAddress(ns, ifname, cidr);
  };
  // Router.
  await fabricPort(p.router.ns, p.router.fabricIf, p.router.fabricPort, `${p.router.address}/24`);
  await vethPair(p.client.ns, p.client.ifname, p.router.ns, p.router.clientIf);
  await addAddress(p.router.ns, p.router.clientIf, `${p.router.clientAddress}/24`);
  await addAddress(p.client.ns, p.client.ifname, `${p.client.address}/24`);
  await addAddress(p.client.ns, p.client.ifname, `${p.client.otherAddress}/24`);
  await nsRun(p.client.ns, ['ip', 'route', 'add', 'default', 'via', p.client.gateway]);
  // A veth hands packets on with the TCP/UDP checksum still to be done
  // (CHECKSUM_PARTIAL); an XDP program that rewrites such a packet and sends
  // it with XDP_TX makes a fresh frame whose checksum is never completed. A
  // real NIC computes it before the wire, so compute it at the sender here.
  await txChecksumOff(p.client.ns, p.client.ifname);
  for (const [k, v] of [['net.ipv4.ip_forward', '1'], ['net.ipv4.fib_multipath_hash_policy', '1'], ['net.ipv4.conf.all.rp_filter', '0'], ['net.ipv4.conf.default.rp_filter', '0']]) {
    await sysctl(p.router.ns, k!, v!);
  }
  for (const n of p.nodes) await nsRun(p.router.ns, ['ip', 'route', 'add', n.podCidr, 'via', n.address]);
  // Mgmt: the API server's bridge, reached by the edges over mgmt0.
  await addBridge(p.mgmt.ns, p.mgmt.bridge, `${p.mgmt.address}/24`);
  await nsRun(p.mgmt.ns, ['ip', 'link', 'set', 'dev', p.mgmt.bridge, 'address', '02:00:0a:ff:00:01']);
  // Edges.
  for (const e of p.edges) {
    await fabricPort(e.ns, e.uplink, e.fabricPort, `${e.address}/24`);
    // XDP_TX on a veth reaches the peer only when the peer runs NAPI, which
    // an XDP program on the peer turns on (GRO, on by default, does not).
    await nsRun(p.fabric.ns, ['ip', 'link', 'set', 'dev', e.fabricPort, 'xdp', 'obj', join(root, 'bpf/out/xdp_pass.o'), 'sec', 'xdp']);
    await vethPair(e.ns, e.mgmtIf, p.mgmt.ns, e.mgmtPort);
    await setMaster(p.mgmt.ns, e.mgmtPort, p.mgmt.bridge);
    await addAddress(e.ns, e.mgmtIf, `${e.mgmtAddress}/24`);
    await nsRun(e.ns, ['ip', 'route', 'add', 'default', 'via', p.router.address]);
    for (const n of p.nodes) await nsRun(e.ns, ['ip', 'route', 'add', n.podCidr, 'via', n.address]);
    for (const [k, v] of [['net.ipv4.ip_forward', '1'], ['net.ipv4.conf.all.rp_filter', '0'], ['net.ipv4.conf.default.rp_filter', '0']]) await sysctl(e.ns, k!, v!);
  }
  // Nodes and their pods.
  for (const n of p.nodes) {
    await fabricPort(n.ns, n.ifname, n.fabricPort, `${n.address}/24`);
    await vethPair(n.ns, n.mgmtIf, p.mgmt.ns, n.mgmtPort);
    await setMaster(p.mgmt.ns, n.mgmtPort, p.mgmt.bridge);
    await addAddress(n.ns, n.mgmtIf, `${n.mgmtAddress}/24`);
    await nsRun(n.ns, ['ip', 'route', 'add', 'default', 'via', p.router.address]);
    for (const [k, v] of [['net.ipv4.ip_forward', '1'], ['net.ipv4.conf.all.rp_filter', '0'], ['net.ipv4.conf.default.rp_filter', '0'], [`net.ipv4.conf.${n.ifname}.rp_filter`, '0']]) await sysctl(n.ns, k!, v!);
    await addBridge(n.ns, n.bridge, `${n.gateway}/24`);
    // A bridge without an address of its own takes the lowest port MAC and
    // changes it when a pod joins with a lower one; the pods' ARP entry for
    // their gateway then points nowhere and replies are lost until it ages
    // out. Kubelet-style CNIs pin it; so do we.
    await nsRun(n.ns, ['ip', 'link', 'set', 'dev', n.bridge, 'address', `02:00:0a:f4:${n.name.slice(4).padStart(2, '0')}:01`]);
    for (const pod of n.pods) await plugPod(n, pod, ipv6);
  }
  if (ipv6) await buildNetwork6(p);
  // Permanent neighbours where the XDP program looks next hops up
  // (bpf_fib_lookup does not resolve ARP; a miss would go to the slow path).
  const macs = new Map<string, string>();
  for (const n of p.nodes) macs.set(n.address, await macOf(n.ns, n.ifname));
  macs.set(p.router.address, await macOf(p.router.ns, p.router.fabricIf));
  for (const e of p.edges) {
    for (const [ip, mac] of macs) await nsRun(e.ns, ['ip', 'neigh', 'replace', ip, 'lladdr', mac, 'dev', e.uplink, 'nud', 'permanent']);
  }
  for (const e of p.edges) macs.set(e.address, await macOf(e.ns, e.uplink));
  for (const n of p.nodes) {
    for (const [ip, mac] of macs) if (ip !== n.address) await nsRun(n.ns, ['ip', 'neigh', 'replace', ip, 'lladdr', mac, 'dev', n.ifname, 'nud', 'permanent']);
  }
}

/**
 * The IPv6 half of a dual-stack lab, on the interfaces buildNetwork made:
 * addresses (no duplicate detection: nothing else on these links), routes
 * mirroring the IPv4 ones, forwarding, and permanent neighbours where the
 * edges' XDP program looks next hops up (bpf_fib_lookup does not resolve).
 */
async function buildNetwork6(p: LabPlan): Promise<void> {
  await addAddress(p.router.ns, p.router.fabricIf, `${p.router.address6}/64`);
  await addAddress(p.router.ns, p.router.clientIf, `${p.router.clientAddress6}/64`);
  // Linux prefers the most recently added IPv6 address as a source: the client's own one last.
  await addAddress(p.client.ns, p.client.ifname, `${p.client.otherAddress6}/64`);
  await addAddress(p.client.ns, p.client.ifname, `${p.client.address6}/64`);
  await nsRun(p.client.ns, ['ip', '-6', 'route', 'add', 'default', 'via', p.client.gateway6]);
  await sysctl(p.router.ns, 'net.ipv6.conf.all.forwarding', '1');
  await sysctl(p.router.ns, 'net.ipv6.fib_multipath_hash_policy', '1');
  for (const n of p.nodes) await nsRun(p.router.ns, ['ip', '-6', 'route', 'add', n.podCidr6, 'via', n.address6]);
  for (const e of p.edges) {
    await addAddress(e.ns, e.uplink, `${e.address6}/64`);
    await nsRun(e.ns, ['ip', '-6', 'route', 'add', 'default', 'via', p.router.address6]);
    for (const n of p.nodes) await nsRun(e.ns, ['ip', '-6', 'route', 'add', n.podCidr6, 'via', n.address6]);
    await sysctl(e.ns, 'net.ipv6.conf.all.forwarding', '1');
  }
  for (const n of p.nodes) {
    await addAddress(n.ns, n.ifname, `${n.address6}/64`);
    await nsRun(n.ns, ['ip', '-6', 'route', 'add', 'default', 'via', p.router.address6]);
    await sysctl(n.ns, 'net.ipv6.conf.all.forwarding', '1');
    await addAddress(n.ns, n.bridge, `${n.gateway6}/64`);
  }
  const macs = new Map<string, string>();
  for (const n of p.nodes) macs.set(n.address6, await macOf(n.ns, n.ifname));
  macs.set(p.router.address6, await macOf(p.router.ns, p.router.fabricIf));
  for (const e of p.edges) {
    for (const [ip, mac] of macs) await nsRun(e.ns, ['ip', '-6', 'neigh', 'replace', ip, 'lladdr', mac, 'dev', e.uplink, 'nud', 'permanent']);
  }
  for (const e of p.edges) macs.set(e.address6, await macOf(e.ns, e.uplink));
  for (const n of p.nodes) {
    for (const [ip, mac] of macs) if (ip !== n.address6) await nsRun(n.ns, ['ip', '-6', 'neigh', 'replace', ip, 'lladdr', mac, 'dev', n.ifname, 'nud', 'permanent']);
  }
}

/** A pod's veth on its node's bridge, its address(es) and default route(s) (the namespace exists). */
export async function plugPod(n: NodePlan, pod: PodPlan, ipv6: boolean): Promise<void> {
  await vethPair(pod.ns, 'eth0', n.ns, pod.hostIf);
  await setMaster(n.ns, pod.hostIf, n.bridge);
  await addAddress(pod.ns, 'eth0', `${pod.ip}/24`);
  await nsRun(pod.ns, ['ip', 'route', 'add', 'default', 'via', n.gateway]);
  if (ipv6) {
    await addAddress(pod.ns, 'eth0', `${pod.ip6}/64`);
    await nsRun(pod.ns, ['ip', '-6', 'route', 'add', 'default', 'via', n.gateway6]);
  }
  await txChecksumOff(pod.ns, 'eth0');
}

/** The echo pod's command line; a dual-stack lab's pods listen on :: (IPv4 too, as mapped addresses). */
export function echoArgv(name: string, p: LabPlan, ipv6: boolean): string[] {
  return [nodeBin, dist('src/lab/echo-main.js'), '--name', name, '--http', String(p.ports.http), '--udp', String(p.ports.udp), ...(ipv6 ? ['--host', '::'] : [])];
}

export async function txChecksumOff(ns: string, ifname: string): Promise<void> {
  await nsRun(ns, ['ethtool', '-K', ifname, 'tx', 'off']);
}

async function macOf(ns: string, ifname: string): Promise<string> {
  const { stdout } = await nsRun(ns, ['ip', '-j', 'link', 'show', 'dev', ifname]);
  return (JSON.parse(stdout) as { address: string }[])[0]!.address;
}
