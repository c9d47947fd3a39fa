/**
 * Service defaulting, validation and allocation (cluster IPs, node ports,
 * health-check node ports) as kube-apiserver does it on create and update.
 */
import {
  fieldDuplicate, fieldForbidden, fieldInvalid, fieldNotSupported, fieldRequired, type Cause,
} from './errors.js';
import type { Obj } from './tables.js';
import { isCIDR, isIPv4, isQualifiedName, nameProblem } from './validation.js';

function ipToInt(ip: string): number {
  return ip.split('.').reduce((a, p) => a * 256 + Number(p), 0);
}

function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

const TYPES = ['ClusterIP', 'ExternalName', 'LoadBalancer', 'NodePort'];

/**
 * On a type change, fields that only made sense for the old type and that the
 * client left as they were are dropped, so `kubectl patch -p '{"spec":{"type":
 * "ClusterIP"}}'` works on a LoadBalancer, as in Kubernetes.
 */
function dropTypeDependentFields(spec: Obj, oldSpec: Obj): void {
  const same = (k: string): boolean => JSON.stringify(spec[k]) === JSON.stringify(oldSpec[k]);
  const toExternal = spec.type === 'NodePort' || spec.type === 'LoadBalancer';
  if (!toExternal) {
    for (const p of (spec.ports ?? []) as Obj[]) {
      const o = ((oldSpec.ports ?? []) as Obj[]).find((x) => x.port === p.port);
      if (o && o.nodePort === p.nodePort) delete p.nodePort;
    }
    if (same('externalTrafficPolicy')) delete spec.externalTrafficPolicy;
  }
  if (spec.type !== 'LoadBalancer') {
    for (const k of ['healthCheckNodePort', 'allocateLoadBalancerNodePorts', 'loadBalancerClass']) if (same(k)) delete spec[k];
  }
  if (spec.type === 'ExternalName') {
    for (const k of ['clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy', 'internalTrafficPolicy', 'sessionAffinity']) if (same(k)) delete spec[k];
  }
}

export class ServiceAllocator {
  private readonly base: number;
  private readonly size: number;
  private readonly usedIPs = new Set<number>();
  private readonly usedPorts = new Set<number>();
  private ipCursor = 1;
  private portCursor: number;

  constructor(readonly cidr: string, readonly nodePortRange: [number, number]) {
    const [ip, len] = cidr.split('/');
    if (!ip || !isIPv4(ip) || len === undefined) throw new Error(`service CIDR "${cidr}" is not an IPv4 CIDR`);
    this.size = 2 ** (32 - Number(len));
    this.base = ipToInt(ip) - (ipToInt(ip) % this.size);
    this.portCursor = nodePortRange[0];
  }

  private inRange(ip: string): boolean {
    if (!isIPv4(ip)) return false;
    const n = ipToInt(ip) - this.base;
    return n > 0 && n < this.size - 1;
  }

  private nextIP(taken: Set<number>): number | undefined {
    for (let i = 0; i < this.size - 2; i++) {
      const off = ((this.ipCursor - 1 + i) % (this.size - 2)) + 1;
      const n = this.base + off;
      if (!this.usedIPs.has(n) && !taken.has(n)) {
        this.ipCursor = off + 1;
        return n;
      }
    }
    return undefined;
  }

  private nextPort(taken: Set<number>): number | undefined {
    const [lo, hi] = this.nodePortRange;
    const n = hi - lo + 1;
    for (let i = 0; i < n; i++) {
      const p = lo + ((this.portCursor - lo + i) % n);
      if (!this.usedPorts.has(p) && !taken.has(p)) {
        this.portCursor = p + 1;
        return p;
      }
    }
    return undefined;
  }

  /**
   * Defaults and validates `svc` (mutated in place; `old` on update) and, when
   * valid, moves allocations from `old` to it. Returns the problems otherwise.
   */
  admit(svc: Obj, old: Obj | undefined): Cause[] {
    const spec: Obj = (svc.spec ??= {});
    const causes: Cause[] = [];
    spec.type ??= 'ClusterIP';
    if (!TYPES.includes(spec.type)) return [fieldNotSupported('spec.type', spec.type, TYPES)];
    const isLB = spec.type === 'LoadBalancer';
    const external = isLB || spec.type === 'NodePort';
    if (old && old.spec?.type !== spec.type) dropTypeDependentFields(spec, old.spec ?? {});

    if (spec.type !== 'ExternalName') {
      spec.sessionAffinity ??= 'None';
      if (!['None', 'ClientIP'].includes(spec.sessionAffinity)) causes.push(fieldNotSupported('spec.sessionAffinity', spec.sessionAffinity, ['ClientIP', 'None']));
      if (spec.sessionAffinity === 'ClientIP') {
        spec.sessionAffinityConfig ??= {};
        spec.sessionAffinityConfig.clientIP ??= {};
        spec.sessionAffinityConfig.clientIP.timeoutSeconds ??= 10800;
        const t = spec.sessionAffinityConfig.clientIP.timeoutSeconds;
        if (!(Number.isInteger(t) && t > 0 && t <= 86400)) causes.push(fieldInvalid('spec.sessionAffinityConfig.clientIP.timeoutSeconds', t, 'must be greater than 0 and less than 86400'));
      } else if (spec.sessionAffinityConfig) {
        causes.push(fieldForbidden('spec.sessionAffinityConfig', `must not be set when session affinity is ${spec.sessionAffinity}`));
      }
      spec.internalTrafficPolicy ??= 'Cluster';
    } else if (!spec.externalName) {
      causes.push(fieldRequired('spec.externalName'));
    }

    if (external) {
      spec.externalTrafficPolicy ??= 'Cluster';
      if (!['Cluster', 'Local'].includes(spec.externalTrafficPolicy)) causes.push(fieldNotSupported('spec.externalTrafficPolicy', spec.externalTrafficPolicy, ['Cluster', 'Local']));
    } else if (spec.externalTrafficPolicy !== undefined && spec.externalTrafficPolicy !== '') {
      causes.push(fieldInvalid('spec.externalTrafficPolicy', spec.externalTrafficPolicy, 'may only be set when `type` is \'NodePort\' or \'LoadBalancer\''));
    }
    if (isLB) spec.allocateLoadBalancerNodePorts ??= true;
    else if (spec.allocateLoadBalancerNodePorts !== undefined) {
      causes.push(fieldForbidden('spec.allocateLoadBalancerNodePorts', 'may only be used when `type` is \'LoadBalancer\''));
    }

    if (spec.loadBalancerClass !== undefined && spec.loadBalancerClass !== null) {
      if (!isLB) causes.push(fieldForbidden('spec.loadBalancerClass', 'may only be used when `type` is \'LoadBalancer\''));
      else if (typeof spec.loadBalancerClass !== 'string' || !isQualifiedName(spec.loadBalancerClass)) {
        causes.push(fieldInvalid('spec.loadBalancerClass', spec.loadBalancerClass, 'must be a label-style qualified name'));
      }
    }
    if (old?.spec?.type === 'LoadBalancer' && isLB && (old.spec.loadBalancerClass ?? null) !== (spec.loadBalancerClass ?? null)) {
      causes.push(fieldInvalid('spec.loadBalancerClass', spec.loadBalancerClass ?? null, 'may not change once set'));
    }
    if (spec.loadBalancerSourceRanges !== undefined) {
      if (!isLB) causes.push(fieldForbidden('spec.loadBalancerSourceRanges', 'may only be used when `type` is \'LoadBalancer\''));
      for (const [i, r] of ((spec.loadBalancerSourceRanges ?? []) as string[]).entries()) {
        if (typeof r !== 'string' || !isCIDR(r.trim())) causes.push(fieldInvalid(`spec.loadBalancerSourceRanges[${i}]`, r, 'must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 '));
      }
    }
    if (spec.loadBalancerIP !== undefined && spec.loadBalancerIP !== '' && !isIPv4(spec.loadBalancerIP) && !String(spec.loadBalancerIP).includes(':')) {
      causes.push(fieldInvalid('spec.loadBalancerIP', spec.loadBalancerIP, 'must be a valid IP address'));
    }

    // Ports.
    const ports: Obj[] = spec.ports ?? [];
    if (spec.ports !== undefined && !Array.isArray(spec.ports)) return [...causes, fieldInvalid('spec.ports', spec.ports, 'must be a list')];
    const headless = spec.clusterIP === 'None' || (Array.isArray(spec.clusterIPs) && spec.clusterIPs[0] === 'None');
    if (ports.length === 0 && spec.type !== 'ExternalName' && !headless) causes.push(fieldRequired('spec.ports'));
    const seenNames = new Set<string>();
    const seenPorts = new Set<string>();
    for (const [i, p] of ports.entries()) {
      const f = `spec.ports[${i}]`;
      p.protocol ??= 'TCP';
      if (!['TCP', 'UDP', 'SCTP'].includes(p.protocol)) causes.push(fieldNotSupported(`${f}.protocol`, p.protocol, ['SCTP', 'TCP', 'UDP']));
      if (!(Number.isInteger(p.port) && p.port >= 1 && p.port <= 65535)) causes.push(fieldInvalid(`${f}.port`, p.port ?? 0, 'must be between 1 and 65535, inclusive'));
      p.targetPort ??= p.port;
      if (ports.length > 1 && !p.name) causes.push(fieldRequired(`${f}.name`));
      if (p.name) {
        const bad = nameProblem(p.name, 'dns1123label');
        if (bad) causes.push(fieldInvalid(`${f}.name`, p.name, bad));
        if (seenNames.has(p.name)) causes.push(fieldDuplicate(`${f}.name`, p.name));
        seenNames.add(p.name);
      }
      const pk = `${p.port}/${p.protocol}`;
      if (seenPorts.has(pk)) causes.push(fieldDuplicate(f, { port: p.port, protocol: p.protocol }));
      seenPorts.add(pk);
      if (p.nodePort !== undefined && p.nodePort !== null && p.nodePort !== 0 && !external) {
        causes.push(fieldForbidden(`${f}.nodePort`, 'may not be used when `type` is \'ClusterIP\''));
      }
    }
    if (causes.length > 0) return causes;

    // Allocations: keep what the old object had where the new one leaves it unset.
    const oldIP: string | undefined = old?.spec?.clusterIP;
    if (spec.type === 'ExternalName') {
      if (spec.clusterIP) causes.push(fieldForbidden('spec.clusterIP', 'may not be set for ExternalName services'));
      delete spec.clusterIP;
      delete spec.clusterIPs;
    } else {
      if (!spec.clusterIP) spec.clusterIP = spec.clusterIPs?.[0] || oldIP || '';
      if (old && oldIP && spec.clusterIP !== '' && spec.clusterIP !== oldIP) {
        causes.push(fieldInvalid('spec.clusterIPs[0]', spec.clusterIP, 'may not change once set'));
      }
    }

    const wantsNodePorts = external && !(isLB && spec.allocateLoadBalancerNodePorts === false);
    const oldPorts: Obj[] = old?.spec?.ports ?? [];
    const oldOwnPorts = new Set<number>(oldPorts.map((p) => p.nodePort).filter((n): n is number => typeof n === 'number' && n > 0));
    if (old?.spec?.healthCheckNodePort) oldOwnPorts.add(old.spec.healthCheckNodePort);
    const oldIPn = oldIP && isIPv4(oldIP) ? ipToInt(oldIP) : undefined;

    const claimPorts = new Set<number>();
    const [lo, hi] = this.nodePortRange;
    for (const [i, p] of ports.entries()) {
      if (!wantsNodePorts) {
        // Leaving NodePort/LoadBalancer drops node ports, as the real server does.
        if (!external || !p.nodePort) delete p.nodePort;
        continue;
      }
      if (!p.nodePort) {
        const prev = oldPorts.find((o) => o.port === p.port && o.nodePort);
        if (prev) p.nodePort = prev.nodePort;
      }
      if (p.nodePort) {
        if (!(p.nodePort >= lo && p.nodePort <= hi)) {
          causes.push(fieldInvalid(`spec.ports[${i}].nodePort`, p.nodePort, `provided port is not in the valid range. The range of valid ports is ${lo}-${hi}`));
        } else if ((this.usedPorts.has(p.nodePort) && !oldOwnPorts.has(p.nodePort)) || claimPorts.has(p.nodePort)) {
          causes.push(fieldInvalid(`spec.ports[${i}].nodePort`, p.nodePort, 'provided port is already allocated'));
        }
        claimPorts.add(p.nodePort);
      }
    }
    if (isLB && spec.externalTrafficPolicy === 'Local') {
      spec.healthCheckNodePort ||= old?.spec?.healthCheckNodePort;
    } else if (spec.healthCheckNodePort) {
      causes.push(fieldInvalid('spec.healthCheckNodePort', spec.healthCheckNodePort, 'may only be set when `type` is \'LoadBalancer\' and `externalTrafficPolicy` is \'Local\''));
    }
    if (spec.healthCheckNodePort) claimPorts.add(spec.healthCheckNodePort);

    let ipn: number | undefined;
    if (spec.type !== 'ExternalName' && spec.clusterIP !== 'None' && spec.clusterIP !== '') {
      if (!this.inRange(spec.clusterIP)) {
        causes.push(fieldInvalid('spec.clusterIPs', [spec.clusterIP], `failed to allocate IP ${spec.clusterIP}: provided IP is not in the valid range. The range of valid IPs is ${this.cidr}`));
      } else {
        ipn = ipToInt(spec.clusterIP);
        if (this.usedIPs.has(ipn) && ipn !== oldIPn) causes.push(fieldInvalid('spec.clusterIPs', [spec.clusterIP], `failed to allocate IP ${spec.clusterIP}: provided IP is already allocated`));
      }
    }
    const fams: string[] | undefined = spec.ipFamilies;
    if (fams?.some((f) => f !== 'IPv4')) {
      causes.push(fieldInvalid('spec.ipFamilies[0]', fams.find((f) => f !== 'IPv4'), 'not configured on this cluster'));
    }
    if (causes.length > 0) return causes;

    // Allocate what is still missing, then commit.
    if (spec.type !== 'ExternalName' && spec.clusterIP === '') {
      ipn = this.nextIP(new Set());
      if (ipn === undefined) return [fieldInvalid('spec.clusterIPs', [], `failed to allocate a serviceIP: range is full`)];
      spec.clusterIP = intToIp(ipn);
    }
    for (const p of wantsNodePorts ? ports : []) {
      if (p.nodePort) continue;
      const n = this.nextPort(claimPorts);
      if (n === undefined) return [fieldInvalid('spec.ports', p.port, 'failed to allocate a nodePort: range is full')];
      p.nodePort = n;
      claimPorts.add(n);
    }
    if (isLB && spec.externalTrafficPolicy === 'Local' && !spec.healthCheckNodePort) {
      const n = this.nextPort(claimPorts);
      if (n === undefined) return [fieldInvalid('spec.healthCheckNodePort', 0, 'failed to allocate a nodePort: range is full')];
      spec.healthCheckNodePort = n;
      claimPorts.add(n);
    }
    if (spec.type !== 'ExternalName') {
      spec.clusterIPs = [spec.clusterIP];
      if (spec.clusterIP !== 'None' || spec.selector) {
        spec.ipFamilies = ['IPv4'];
        spec.ipFamilyPolicy ??= 'SingleStack';
      }
    }

    if (old) this.release(old);
    if (ipn !== undefined) this.usedIPs.add(ipn);
    for (const p of claimPorts) this.usedPorts.add(p);
    return [];
  }

  /** Marks an admitted service's allocations as used again (undoing a dry run). */
  claim(svc: Obj): void {
    const ip = svc.spec?.clusterIP;
    if (typeof ip === 'string' && isIPv4(ip)) this.usedIPs.add(ipToInt(ip));
    for (const p of (svc.spec?.ports ?? []) as Obj[]) if (p.nodePort) this.usedPorts.add(p.nodePort);
    if (svc.spec?.healthCheckNodePort) this.usedPorts.add(svc.spec.healthCheckNodePort);
  }

  release(svc: Obj): void {
    const ip = svc.spec?.clusterIP;
    if (typeof ip === 'string' && isIPv4(ip)) this.usedIPs.delete(ipToInt(ip));
    for (const p of (svc.spec?.ports ?? []) as Obj[]) if (p.nodePort) this.usedPorts.delete(p.nodePort);
    if (svc.spec?.healthCheckNodePort) this.usedPorts.delete(svc.spec.healthCheckNodePort);
  }

  /** The address of the `kubernetes` service: the first of the range. */
  firstIP(): string {
    return intToIp(this.base + 1);
  }
}
