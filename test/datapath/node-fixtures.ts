// Shared fixtures for the node program's tests (node*.test.ts): addresses,
// a loader that tears down after the test, desired-state builders and a
// test-run wrapper.
import type { ExecutionContext } from 'ava';
import { NodeDatapath, type NodeDatapathOptions } from '../../src/datapath/node-datapath.js';
import type { BpfProgram } from '../../src/datapath/loader.js';
import { macBytes } from '../../src/datapath/node-maps.js';
import type { Backend, DesiredService, L4Proto } from '../../src/model/types.js';

export const MAC_A = '02:00:00:00:00:0a';
export const MAC_B = '02:00:00:00:00:0b';
/** Link-layer senders that are no edge (a router forwarding a client's packet, say). */
export const MAC_ROUTER = '02:00:00:00:00:0c';
export const MAC_OTHER = '02:00:00:00:00:0d';
export const CLIENT = '198.51.100.7';
export const CLIENT2 = '198.51.100.99';
export const VIP = '203.0.113.10';
export const VIP2 = '203.0.113.11';
export const EDGE_IP = '192.0.2.1';
export const NODE_IP = '192.0.2.21';
export const NODE_NAME = 'node-a';
export const POD1 = '10.244.1.5';
export const POD2 = '10.244.1.6';
export const POD3 = '10.244.1.7';
export const OTHER_NODE_POD = '10.244.2.9';

/** tc verdicts as BPF_PROG_TEST_RUN reports them (u32). */
export const TC_UNSPEC = 0xffffffff;
export const TC_SHOT = 2;

export function backend(ip: string, port: number, nodeName = NODE_NAME, state: Backend['state'] = 'active'): Backend {
  return { ip, port, nodeIp: nodeName === NODE_NAME ? NODE_IP : '192.0.2.99', nodeName, weight: 1, state };
}

export function service(vip: string, port: number, protocol: L4Proto, backends: Backend[], name = `ns/svc-${vip}-${port}`): DesiredService {
  return {
    service: name,
    frontend: { vip, port, protocol },
    mode: 'dsr',
    dispatch: 'auto',
    sourceRanges: [],
    affinityTimeoutSeconds: 0,
    backends,
  };
}

/** The services most tests use: VIP:80/TCP and VIP:53/UDP on pods of this node, VIP2:80 on another node. */
export function standardServices(): DesiredService[] {
  return [
    service(VIP, 80, 'TCP', [backend(POD1, 8080), backend(POD2, 8080), backend(POD3, 8080), backend(OTHER_NODE_POD, 8080, 'node-b')]),
    service(VIP, 53, 'UDP', [backend(POD1, 5353), backend(POD2, 5353)]),
    service(VIP2, 80, 'TCP', [backend(OTHER_NODE_POD, 8080, 'node-b')]),
  ];
}

/**
 * The fixture's edge neighbour, confirmed at the test clock's far end: a
 * confirmation later than "now" never expires (node_trust.h), so the edge
 * stays trusted whatever test clock a test sets. Confirmed at the real
 * clock instead (the machine's uptime), it expired as soon as a test moved
 * its clock more than NODE_EDGE_MAC_TTL_NS past the uptime: on a machine
 * booted less than ~73 minutes before, every test at a test clock of 5000 s
 * saw its option packets dropped as untrusted. Tests of expiry trust their
 * own neighbours (`edgeMac: null`) at a clock they set.
 */
function trustForAnyTestClock(dp: NodeDatapath, ip: string, mac: string): void {
  dp.setTestClock(TRUSTED_UNTIL_NS);
  dp.trustEdgeNeighbour(ip, mac);
  dp.setTestClock(null);
}

/** 2^62 ns (~146 years): beyond every test clock. */
const TRUSTED_UNTIL_NS = 1n << 62n;

/**
 * A node program with the standard services, EDGE_IP as its only edge
 * source and MAC_A (the sender of every test frame from "the edge") trusted
 * as that edge's link-layer address; `edgeMac: null` trusts no neighbour.
 */
export function loadNode(t: ExecutionContext, opts: NodeDatapathOptions = {}, trust: { edgeMac?: string | null } = {}): NodeDatapath {
  // Small flow maps: LRU maps preallocate, and tests load many objects.
  const dp = NodeDatapath.open({ maxFlows: 4096, edgeSources: [EDGE_IP], ...opts });
  t.teardown(() => dp.close());
  dp.applyServices(standardServices(), { name: NODE_NAME });
  const mac = trust.edgeMac === undefined ? MAC_A : trust.edgeMac;
  if (mac !== null) trustForAnyTestClock(dp, EDGE_IP, mac);
  return dp;
}

export interface RunOut {
  retval: number;
  out: Buffer;
}

export function run(prog: BpfProgram, data: Buffer): RunOut {
  const r = prog.testRun({ data });
  return { retval: r.retval, out: r.dataOut };
}

/** A frame as `mac` put it on the node's link (its Ethernet source replaced). */
export function fromSender(frame: Buffer, mac: string): Buffer {
  const f = Buffer.from(frame);
  macBytes(mac).copy(f, 6);
  return f;
}

// ---------------------------------------------------------------- IPv6

export const CLIENT6 = '2001:db8:c::7';
export const VIP6 = '2001:db8:f::10';
/** A frontend whose pods all run on another node. */
export const VIP6_ELSEWHERE = '2001:db8:f::11';
export const EDGE6 = '2001:db8:e::1';
export const POD6_1 = 'fd00:10:244:1::5';
export const POD6_2 = 'fd00:10:244:1::6';
export const POD6_3 = 'fd00:10:244:1::7';
export const OTHER_NODE_POD6 = 'fd00:10:244:2::9';

/** The IPv6 twins of standardServices(): VIP6:80/TCP, VIP6:53/UDP here, VIP6_ELSEWHERE:80 on another node. */
export function standardServices6(): DesiredService[] {
  return [
    service(VIP6, 80, 'TCP', [backend(POD6_1, 8080), backend(POD6_2, 8080), backend(POD6_3, 8080), backend(OTHER_NODE_POD6, 8080, 'node-b')]),
    service(VIP6, 53, 'UDP', [backend(POD6_1, 5353), backend(POD6_2, 5353)]),
    service(VIP6_ELSEWHERE, 80, 'TCP', [backend(OTHER_NODE_POD6, 8080, 'node-b')]),
  ];
}

/**
 * A node program with both families' standard services, EDGE_IP and EDGE6
 * as edge sources and MAC_A trusted (as the IPv6 edge's neighbour entry,
 * written by the agent); `edgeMac: null` trusts no neighbour.
 */
export function loadNode6(t: ExecutionContext, opts: NodeDatapathOptions = {}, trust: { edgeMac?: string | null } = {}): NodeDatapath {
  const dp = NodeDatapath.open({ maxFlows: 4096, edgeSources: [EDGE_IP, EDGE6], ...opts });
  t.teardown(() => dp.close());
  dp.applyServices([...standardServices(), ...standardServices6()], { name: NODE_NAME });
  const mac = trust.edgeMac === undefined ? MAC_A : trust.edgeMac;
  if (mac !== null) trustForAnyTestClock(dp, EDGE6, mac);
  return dp;
}
