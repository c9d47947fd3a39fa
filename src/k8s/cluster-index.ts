// Indexes over the informers' caches that reconciliation needs: which
// EndpointSlices belong to which Service (by the kubernetes.io/service-name
// label) and each Node's dispatch addresses. Informer events update them and
// say which Services they affect.
import type { V1EndpointSlice, V1Node } from '@kubernetes/client-node';
import { nodeAddresses, type NodeAddresses } from '../model/desired.js';
import { unpackSlice, type PackedSlice } from './packed-slice.js';

/** "namespace/name" → [namespace, name]. */
export function parseKey(key: string): [string, string] {
  const i = key.indexOf('/');
  return [key.slice(0, i), key.slice(i + 1)];
}

export class ClusterIndex {
  readonly nodeAddrs = new Map<string, NodeAddresses>();
  private readonly sliceOwner = new Map<string, string>();
  /** A Service's slices (an array: most Services have one or two, and a Set costs ~4 times as much at 10 000 Services). */
  private readonly slicesBySvc = new Map<string, string[]>();

  /** Records a slice event; returns the Services whose endpoints it touched. */
  onSlice(ev: string, s: Pick<PackedSlice, 'metadata' | 'service'>): string[] {
    const sliceKey = `${s.metadata?.namespace ?? ''}/${s.metadata?.name ?? ''}`;
    const svcName = s.service;
    const owner = ev === 'delete' || !svcName ? null : `${s.metadata?.namespace ?? ''}/${svcName}`;
    const touched: string[] = [];
    const old = this.sliceOwner.get(sliceKey);
    if (old !== undefined && old !== owner) {
      const list = this.slicesBySvc.get(old);
      const i = list?.indexOf(sliceKey) ?? -1;
      if (i >= 0) list!.splice(i, 1);
      if (list?.length === 0) this.slicesBySvc.delete(old);
      this.sliceOwner.delete(sliceKey);
      touched.push(old);
    }
    if (owner !== null) {
      this.sliceOwner.set(sliceKey, owner);
      const list = this.slicesBySvc.get(owner);
      if (!list) this.slicesBySvc.set(owner, [sliceKey]);
      else if (!list.includes(sliceKey)) list.push(sliceKey);
      touched.push(owner);
    }
    return touched;
  }

  /** Records a node event; returns whether its dispatch addresses changed. */
  onNode(ev: string, n: V1Node): boolean {
    const name = n.metadata?.name ?? '';
    const prev = this.nodeAddrs.get(name);
    if (ev === 'delete') this.nodeAddrs.delete(name);
    else this.nodeAddrs.set(name, nodeAddresses(n));
    const cur = this.nodeAddrs.get(name);
    return prev?.v4 !== cur?.v4 || prev?.v6 !== cur?.v6;
  }

  /** The Service's slices as `get` (the informer cache) has them now, unpacked. */
  slicesOf(key: string, get: (name: string, ns: string) => PackedSlice | undefined): V1EndpointSlice[] {
    const out: V1EndpointSlice[] = [];
    for (const sk of this.slicesBySvc.get(key) ?? []) {
      const [ns, name] = parseKey(sk);
      const s = get(name, ns);
      if (s) out.push(unpackSlice(s));
    }
    return out;
  }
}
