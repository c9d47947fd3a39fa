// The Kubernetes-node half of the datapath in the lab: bpf/node.o on each
// node's fabric interface (tc ingress + egress), maps pinned under the lab's
// bpffs directory, and the node's local services (what IPIP dispatch needs:
// VIP:port → this node's pods) derived from the API server's Services and
// EndpointSlices. The project has no node agent yet, so the lab plays it.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap, inNetns, removeClsact } from '../datapath/loader.js';
import { NodeDatapath } from '../datapath/node-datapath.js';
import {
  NODE_MAP_NAMES,
  NODE_COUNTER_NAMES,
  encodeSvcKey,
  encodeSvcValue,
  type LocalBackend,
  type SvcKey,
} from '../datapath/node-maps.js';
import type { L4Proto } from '../model/types.js';
import type { NodePlan } from './topology.js';

export function nodePinDir(bpffsDir: string, node: string): string {
  return join(bpffsDir, node);
}

/**
 * Loads node.o through NodeDatapath (maps pinned at `pinDir`, the node's
 * address for the IPIP outer-destination check, the edges' addresses as the
 * only trusted senders) and attaches both
 * directions to the node's fabric interface.
 */
export function attachNodeDatapath(node: NodePlan, pinDir: string, edgeSources: readonly string[]): void {
  mkdirSync(pinDir, { recursive: true });
  // The edges are learnt from their ARP for the node (the lab is fresh).
  const dp = NodeDatapath.load({ pinPath: pinDir, nodeIp: node.address, edgeSources });
  try {
    inNetns(node.ns, () => dp.attach(node.ifname));
  } finally {
    // Attached programs and pinned maps outlive this object.
    dp.close();
  }
}

export function detachNodeDatapath(node: NodePlan): void {
  try {
    inNetns(node.ns, () => removeClsact(node.ifname));
  } catch {
    /* namespace already gone */
  }
}

/** Sum of the per-CPU counters, by name (zeros omitted). */
export function nodeCounters(pinDir: string): Record<string, number> {
  const m = BpfMap.openPinned(join(pinDir, NODE_MAP_NAMES.counters));
  try {
    const out: Record<string, number> = {};
    NODE_COUNTER_NAMES.forEach((name, i) => {
      const key = Buffer.alloc(4);
      key.writeUInt32LE(i);
      const v = m.lookup(key);
      if (!v) return;
      let sum = 0n;
      for (let off = 0; off + 8 <= v.length; off += 8) sum += v.readBigUInt64LE(off);
      if (sum > 0n) out[name] = Number(sum);
    });
    return out;
  } finally {
    m.close();
  }
}

// ------------------------------------------------------------ local services

interface K8sList<T> {
  items: T[];
}
interface Svc {
  metadata: { namespace: string; name: string };
  spec?: { type?: string; ports?: { name?: string; port: number; protocol?: string; targetPort?: number | string }[] };
  status?: { loadBalancer?: { ingress?: { ip?: string }[] } };
}
interface Slice {
  metadata: { namespace: string; labels?: Record<string, string> };
  addressType?: string;
  ports?: { name?: string; port?: number; protocol?: string }[];
  endpoints?: { addresses?: string[]; nodeName?: string; conditions?: { ready?: boolean; serving?: boolean; terminating?: boolean } }[];
}

export interface LocalService {
  key: SvcKey;
  backends: LocalBackend[];
}

/** Pure: the local-services table of `nodeName` from Services and EndpointSlices. */
export function localServices(services: K8sList<Svc>, slices: K8sList<Slice>, nodeName: string): LocalService[] {
  const out: LocalService[] = [];
  for (const svc of services.items) {
    if (svc.spec?.type !== 'LoadBalancer') continue;
    const vips = (svc.status?.loadBalancer?.ingress ?? []).map((i) => i.ip).filter((ip): ip is string => !!ip && ip.includes('.'));
    const mine = slices.items.filter(
      (s) => s.metadata.namespace === svc.metadata.namespace && s.metadata.labels?.['kubernetes.io/service-name'] === svc.metadata.name && (s.addressType ?? 'IPv4') === 'IPv4',
    );
    for (const sp of svc.spec.ports ?? []) {
      const proto = (sp.protocol ?? 'TCP') as L4Proto;
      if (proto !== 'TCP' && proto !== 'UDP') continue;
      const backends: LocalBackend[] = [];
      for (const slice of mine) {
        const p = (slice.ports ?? []).find((x) => (x.name ?? '') === (sp.name ?? '') && (x.protocol ?? 'TCP') === proto);
        const port = p?.port ?? (typeof sp.targetPort === 'number' ? sp.targetPort : sp.port);
        for (const ep of slice.endpoints ?? []) {
          if (ep.nodeName !== nodeName) continue;
          // Terminating-but-serving pods keep their flows (node_fwd pins them); new flows go to ready ones.
          if (ep.conditions?.ready === false) continue;
          for (const ip of ep.addresses ?? []) backends.push({ ip, port });
        }
      }
      backends.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : a.port - b.port));
      for (const vip of vips) out.push({ key: { vip, port: sp.port, proto }, backends });
    }
  }
  return out;
}

/** Makes node_services at `pinDir` equal `want`; returns how many entries changed. */
export function writeLocalServices(pinDir: string, want: LocalService[]): number {
  const m = BpfMap.openPinned(join(pinDir, NODE_MAP_NAMES.services));
  try {
    let changed = 0;
    const keep = new Set<string>();
    for (const s of want) {
      const k = encodeSvcKey(s.key);
      keep.add(k.toString('hex'));
      const v = encodeSvcValue(s.backends);
      const cur = m.lookup(k);
      if (!cur || !cur.equals(v)) {
        m.update(k, v);
        changed++;
      }
    }
    for (const k of m.keys()) {
      if (!keep.has(k.toString('hex'))) {
        m.delete(k);
        changed++;
      }
    }
    return changed;
  } finally {
    m.close();
  }
}
