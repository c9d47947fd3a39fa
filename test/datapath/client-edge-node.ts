// Three namespaces in a row for live datapath tests: a client, an edge that
// routes between the client's subnet and the nodes' subnet, and a node with a
// pod address on its loopback. Real veths, real FIB and neighbour resolution.
// Dual-stack (IPv6 addresses without duplicate address detection, so they
// are usable at once):
//
//   client C: c0 198.51.100.7/24, 2001:db8:1::7/64 (default via the edge)
//   edge   E: e0 198.51.100.1/24, 2001:db8:1::1/64 (client side), e1 10.0.0.1/24, fd00:10::1/64
//              (node side); forwards both families; pods via the node
//   node   N: n0 10.0.0.11/24, fd00:10::11/64, the pod addresses /32, /128 on lo, the client subnets via the edge
import type { ExecutionContext } from 'ava';
import { Cleanup, createNetns, nsRun, run, uniqueId } from '../lib/netns.js';

export const RIG_CLIENT = '198.51.100.7';
export const RIG_EDGE = '10.0.0.1';
export const RIG_NODE = '10.0.0.11';
export const RIG_CLIENT6 = '2001:db8:1::7';
export const RIG_EDGE6 = 'fd00:10::1';
export const RIG_NODE6 = 'fd00:10::11';
/** The node's IPv6 pod address (on its loopback), in the pods' prefix the edge routes to the node. */
export const RIG_POD6 = 'fd00:244::2';

export interface ClientEdgeNode {
  C: string;
  E: string;
  N: string;
  cleanup: Cleanup;
}

/** Builds the rig; `tag` (two letters) prefixes the namespaces' names. Everything is removed at the test's teardown. */
export async function clientEdgeNode(t: ExecutionContext, tag: string, pod: string): Promise<ClientEdgeNode> {
  const id = uniqueId();
  const cleanup = new Cleanup();
  t.teardown(async () => {
    await cleanup.run();
  });
  const C = await createNetns(`${tag}c-${id}`, cleanup);
  const E = await createNetns(`${tag}e-${id}`, cleanup);
  const N = await createNetns(`${tag}n-${id}`, cleanup);
  await run(['ip', 'link', 'add', `c${id}`, 'netns', C, 'type', 'veth', 'peer', 'name', `e${id}`, 'netns', E]);
  await run(['ip', 'link', 'add', `f${id}`, 'netns', E, 'type', 'veth', 'peer', 'name', `n${id}`, 'netns', N]);
  const sh = async (ns: string, ...cmds: string[][]): Promise<void> => {
    for (const c of cmds) await nsRun(ns, c);
  };
  await sh(
    C,
    ['ip', 'link', 'set', `c${id}`, 'name', 'c0'],
    ['ip', 'addr', 'add', `${RIG_CLIENT}/24`, 'dev', 'c0'],
    ['ip', '-6', 'addr', 'add', `${RIG_CLIENT6}/64`, 'dev', 'c0', 'nodad'],
    ['ip', 'link', 'set', 'c0', 'up'],
    ['ip', 'route', 'add', 'default', 'via', '198.51.100.1'],
    ['ip', '-6', 'route', 'add', 'default', 'via', '2001:db8:1::1'],
  );
  await sh(
    E,
    ['ip', 'link', 'set', `e${id}`, 'name', 'e0'],
    ['ip', 'link', 'set', `f${id}`, 'name', 'e1'],
    ['ip', 'addr', 'add', '198.51.100.1/24', 'dev', 'e0'],
    ['ip', 'addr', 'add', `${RIG_EDGE}/24`, 'dev', 'e1'],
    ['ip', '-6', 'addr', 'add', '2001:db8:1::1/64', 'dev', 'e0', 'nodad'],
    ['ip', '-6', 'addr', 'add', `${RIG_EDGE6}/64`, 'dev', 'e1', 'nodad'],
    ['ip', 'link', 'set', 'e0', 'up'],
    ['ip', 'link', 'set', 'e1', 'up'],
    ['sysctl', '-qw', 'net.ipv4.ip_forward=1'],
    ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1'],
    ['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0'],
    ['ip', 'route', 'add', '10.244.0.0/16', 'via', RIG_NODE],
    ['ip', '-6', 'route', 'add', 'fd00:244::/64', 'via', RIG_NODE6],
  );
  await sh(
    N,
    ['ip', 'link', 'set', `n${id}`, 'name', 'n0'],
    ['ip', 'addr', 'add', `${RIG_NODE}/24`, 'dev', 'n0'],
    ['ip', '-6', 'addr', 'add', `${RIG_NODE6}/64`, 'dev', 'n0', 'nodad'],
    ['ip', 'link', 'set', 'n0', 'up'],
    ['ip', 'addr', 'add', `${pod}/32`, 'dev', 'lo'],
    ['ip', '-6', 'addr', 'add', `${RIG_POD6}/128`, 'dev', 'lo'],
    ['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0'],
    ['sysctl', '-qw', 'net.ipv4.conf.n0.rp_filter=0'],
    ['ip', 'route', 'add', '198.51.100.0/24', 'via', RIG_EDGE],
    ['ip', '-6', 'route', 'add', '2001:db8:1::/64', 'via', RIG_EDGE6],
  );
  return { C, E, N, cleanup };
}
