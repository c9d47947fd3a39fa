/**
 * Server-side printing: the columns kube-apiserver's printers produce for the
 * kinds this server serves, so `kubectl get` (which asks for meta.k8s.io Tables)
 * shows what it shows against a real cluster.
 */

export type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface ColumnDefinition {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  format: string;
  description: string;
  priority: number;
}

export interface TableDef {
  columns: ColumnDefinition[];
  cells(obj: Obj, now: number): unknown[];
}

function col(name: string, description: string, priority = 0, type: ColumnDefinition['type'] = 'string', format = ''): ColumnDefinition {
  return { name, type, format, description, priority };
}

const NAME = col('Name', 'Name must be unique within a namespace.', 0, 'string', 'name');
const AGE = col('Age', 'CreationTimestamp is a timestamp representing the server time when this object was created.');

/** Go's apimachinery duration.HumanDuration: the AGE format kubectl users know. */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const dy = Math.floor(hours / 24) % 365;
    const y = Math.floor(hours / 24 / 365);
    return dy === 0 ? `${y}y` : `${y}y${dy}d`;
  }
  return `${Math.floor(hours / 24 / 365)}y`;
}

function since(ts: unknown, now: number): string {
  if (typeof ts !== 'string' || ts === '') return '<unknown>';
  const t = Date.parse(ts);
  return Number.isNaN(t) ? '<unknown>' : humanDuration(now - t);
}

function age(obj: Obj, now: number): string {
  return since(obj.metadata?.creationTimestamp, now);
}

function formatLabels(m: Record<string, string> | undefined): string {
  const keys = Object.keys(m ?? {}).sort();
  return keys.length === 0 ? '<none>' : keys.map((k) => `${k}=${m![k]}`).join(',');
}

function serviceExternalIP(svc: Obj, wide: boolean): string {
  const externalIPs: string[] = svc.spec?.externalIPs ?? [];
  switch (svc.spec?.type) {
    case 'ClusterIP': case 'NodePort': case undefined:
      return externalIPs.length > 0 ? externalIPs.join(',') : '<none>';
    case 'LoadBalancer': {
      const ingress: Obj[] = svc.status?.loadBalancer?.ingress ?? [];
      let lb = ingress.map((i) => i.ip || i.hostname).filter((x) => x).join(',');
      if (!wide && lb.length > 16) lb = lb.slice(0, 13) + '...';
      const all = [...externalIPs, ...(lb ? [lb] : [])];
      return all.length > 0 ? all.join(',') : '<pending>';
    }
    case 'ExternalName':
      return svc.spec?.externalName ?? '';
    default:
      return '<unknown>';
  }
}

function servicePorts(svc: Obj): string {
  const ports: Obj[] = svc.spec?.ports ?? [];
  if (ports.length === 0) return '<none>';
  return ports.map((p) => (p.nodePort ? `${p.port}:${p.nodePort}/${p.protocol}` : `${p.port}/${p.protocol}`)).join(',');
}

const service: TableDef = {
  columns: [
    NAME,
    col('Type', 'type determines how the Service is exposed.'),
    col('Cluster-IP', 'clusterIP is the IP address of the service.'),
    col('External-IP', 'externalIPs and status.loadBalancer.ingress addresses.'),
    col('Port(s)', 'The list of ports that are exposed by this service.'),
    AGE,
    col('Selector', 'Route service traffic to pods with label keys and values matching this selector.', 1),
  ],
  cells: (s, now) => [
    s.metadata.name,
    s.spec?.type ?? '',
    s.spec?.clusterIP ? s.spec.clusterIP : '<none>',
    // The API server prints with Wide set, so addresses are never truncated.
    serviceExternalIP(s, true),
    servicePorts(s),
    age(s, now),
    formatLabels(s.spec?.selector),
  ],
};

function nodeStatus(n: Obj): string {
  const conds: Obj[] = n.status?.conditions ?? [];
  const ready = conds.find((c) => c.type === 'Ready');
  const out = [!ready ? 'Unknown' : ready.status === 'True' ? 'Ready' : ready.status === 'False' ? 'NotReady' : 'Unknown'];
  if (n.spec?.unschedulable) out.push('SchedulingDisabled');
  return out.join(',');
}

function nodeRoles(n: Obj): string {
  const roles = Object.keys(n.metadata?.labels ?? {})
    .filter((k) => k.startsWith('node-role.kubernetes.io/'))
    .map((k) => k.slice('node-role.kubernetes.io/'.length))
    .filter((r) => r !== '')
    .sort();
  return roles.length > 0 ? roles.join(',') : '<none>';
}

function nodeAddress(n: Obj, type: string): string {
  const a = (n.status?.addresses ?? []).find((x: Obj) => x.type === type);
  return a ? a.address : '<none>';
}

const node: TableDef = {
  columns: [
    NAME,
    col('Status', 'The status of the node'),
    col('Roles', 'The roles of the node'),
    AGE,
    col('Version', 'Kubelet Version reported by the node.'),
    col('Internal-IP', 'List of internal IPs for the node.', 1),
    col('External-IP', 'List of external IPs for this node.', 1),
    col('OS-Image', 'OS image reported by the node.', 1),
    col('Kernel-Version', 'Kernel version reported by the node.', 1),
    col('Container-Runtime', 'Container runtime and version reported by the node.', 1),
  ],
  cells: (n, now) => [
    n.metadata.name, nodeStatus(n), nodeRoles(n), age(n, now), n.status?.nodeInfo?.kubeletVersion ?? '',
    nodeAddress(n, 'InternalIP'), nodeAddress(n, 'ExternalIP'),
    n.status?.nodeInfo?.osImage || '<unknown>', n.status?.nodeInfo?.kernelVersion || '<unknown>',
    n.status?.nodeInfo?.containerRuntimeVersion || '<unknown>',
  ],
};

function sliceEndpoints(s: Obj): string {
  const addrs: string[] = [];
  for (const e of s.endpoints ?? []) for (const a of e.addresses ?? []) addrs.push(a);
  if (addrs.length === 0) return '<unset>';
  const shown = addrs.slice(0, 3).join(',');
  return addrs.length > 3 ? `${shown} + ${addrs.length - 3} more...` : shown;
}

function slicePorts(s: Obj): string {
  const ports: Obj[] = s.ports ?? [];
  if (ports.length === 0) return '<unset>';
  const shown = ports.slice(0, 3).map((p) => (p.port === undefined || p.port === null ? '<unset>' : String(p.port))).join(',');
  return ports.length > 3 ? `${shown} + ${ports.length - 3} more...` : shown;
}

const endpointSlice: TableDef = {
  columns: [
    NAME,
    col('AddressType', 'The IP protocol for this slice'),
    col('Ports', 'The ports for this slice'),
    col('Endpoints', 'Endpoint addresses'),
    AGE,
  ],
  cells: (s, now) => [s.metadata.name, s.addressType ?? '', slicePorts(s), sliceEndpoints(s), age(s, now)],
};

const endpoints: TableDef = {
  columns: [NAME, col('Endpoints', 'Endpoints of the service'), AGE],
  cells: (e, now) => {
    const list: string[] = [];
    for (const ss of e.subsets ?? []) {
      for (const a of ss.addresses ?? []) {
        for (const p of ss.ports ?? [{}]) list.push(p.port !== undefined ? `${a.ip}:${p.port}` : a.ip);
      }
    }
    const shown = list.slice(0, 3).join(',');
    return [e.metadata.name, list.length === 0 ? '<none>' : list.length > 3 ? `${shown} + ${list.length - 3} more...` : shown, age(e, now)];
  },
};

const lease: TableDef = {
  columns: [NAME, col('Holder', 'The holder of the lease'), AGE],
  cells: (l, now) => [l.metadata.name, l.spec?.holderIdentity ?? '', age(l, now)],
};

const namespace: TableDef = {
  columns: [NAME, col('Status', 'The status of the namespace'), AGE],
  cells: (n, now) => [n.metadata.name, n.status?.phase ?? '', age(n, now)],
};

/** Core v1 view of an Event (events.k8s.io objects are converted before printing). */
const event: TableDef = {
  columns: [
    col('Last Seen', 'Time when last this event was observed'),
    col('Type', 'Type of this event (Normal, Warning)'),
    col('Reason', 'Reason why this event was generated'),
    col('Object', 'The object that this event is about'),
    col('Subobject', 'Subobject this event is about', 1),
    col('Source', 'The component reporting this event', 1),
    col('Message', 'A human-readable description of the status of this operation'),
    col('First Seen', 'Time when this event was first observed', 1),
    col('Count', 'The number of times this event has occurred', 1),
    NAME,
  ].map((c) => (c.name === 'Name' ? { ...c, priority: 1 } : c)),
  cells: (e, now) => {
    const last = e.series?.lastObservedTime ?? e.lastTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp;
    const first = e.firstTimestamp ?? e.eventTime ?? e.metadata?.creationTimestamp;
    const io = e.involvedObject ?? {};
    const src = e.source?.component ? [e.source.component, e.source.host].filter((x) => x).join(', ') : (e.reportingComponent ?? '');
    return [
      since(last, now), e.type ?? '', e.reason ?? '', `${String(io.kind ?? '').toLowerCase()}/${io.name ?? ''}`,
      io.fieldPath ?? '', src, (e.message ?? '').trim(), since(first, now), e.series?.count ?? e.count ?? 1, e.metadata.name,
    ];
  },
};

const generic: TableDef = {
  columns: [NAME, AGE],
  cells: (o, now) => [o.metadata.name, age(o, now)],
};

export const tables = { service, node, endpointSlice, endpoints, lease, namespace, event, generic };
