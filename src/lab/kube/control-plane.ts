// A real Kubernetes control plane for the lab, the demo, the tests and the
// benchmark: Debian's etcd, and kube-apiserver + kube-controller-manager of
// the release pinned in tools/kube (built by scripts/setup into
// .tools/kube/bin). The API server serves TLS only, authorizes with
// Node,RBAC and signs ServiceAccount tokens; the controller manager runs
// the controllers our objects need (EndpointSlices from Pods, ServiceAccounts
// and their tokens, namespace deletion, garbage collection and — when a
// kubelet plays along — node lifecycle).
//
// Everything is described by a plain ControlPlaneState (paths, ports, pids)
// so another process (`npm run lab -- …`, a test's teardown) can restart or
// stop a component of a control plane it did not start.
import { existsSync, mkdirSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, scaled, sleep } from '../netns.js';
import { alive, readSize, spawnInNs, stopPid, tail, type LabProcess } from '../procs.js';
import { clientCert, kubeconfigYaml, makePki, writeKubeconfig, type Pki } from './pki.js';
import { KUBE_BIN } from '../paths.js';
import { KubeHttp, type ApiResponse } from './http.js';

export type Component = 'etcd' | 'kube-apiserver' | 'kube-controller-manager';

export interface ControlPlaneState {
  dir: string;
  /** Network namespace the components run in ('' = the caller's). */
  ns: string;
  /** Address every component listens on. */
  host: string;
  ports: { apiserver: number; etcd: number; etcdPeer: number; controllerManager: number };
  server: string;
  pki: Pki;
  /** system:masters client certificate. */
  adminKubeconfig: string;
  /** kube-controller-manager --controllers. */
  controllers: string[];
  /** --service-cluster-ip-range: one IPv4 range, or IPv4 and IPv6 (a dual-stack cluster). */
  serviceCidrs?: string[];
  processes: Partial<Record<Component, LabProcess>>;
}

export interface ControlPlaneOptions {
  dir: string;
  ns?: string;
  host: string;
  /** Extra names and addresses for the serving certificate. */
  sans?: string[];
  /** Leave node-lifecycle-controller out when nobody renews node Leases (it would mark every Node NotReady after 50 s). */
  nodeLifecycle?: boolean;
  /** Start kube-controller-manager (default true; a benchmark with hand-made EndpointSlices leaves it out). */
  controllerManager?: boolean;
  /** A dual-stack cluster: Services may have IPv4 and IPv6 cluster addresses (PreferDualStack, RequireDualStack). */
  dualStack?: boolean;
  /** Called for every process started (the lab records them for `down`). */
  onProcess?: (p: LabProcess) => void;
  say?: (line: string) => void;
}

/** The binaries, or a message saying how to build them. */
export function kubeBinary(name: 'kube-apiserver' | 'kube-controller-manager' | 'kubectl'): string {
  const path = join(KUBE_BIN, name);
  if (!existsSync(path)) throw new Error(`${path} is missing: scripts/setup builds it from tools/kube (the pinned Kubernetes release)`);
  return path;
}

export const ETCD = process.env.EDGELB_ETCD ?? '/usr/bin/etcd';
export const ETCDCTL = process.env.EDGELB_ETCDCTL ?? '/usr/bin/etcdctl';

const SERVICE_CIDR = '10.96.0.0/16';
const SERVICE_CIDR6 = 'fd96::/108';
const BASE_CONTROLLERS = ['endpointslice-controller', 'serviceaccount-controller', 'serviceaccount-token-controller', 'namespace-controller', 'garbage-collector-controller'];

export async function startControlPlane(o: ControlPlaneOptions): Promise<ControlPlaneState> {
  mkdirSync(o.dir, { recursive: true, mode: 0o755 });
  const say = o.say ?? (() => undefined);
  const pki = await makePki(join(o.dir, 'pki'), [o.host, '127.0.0.1', '10.96.0.1', ...(o.sans ?? []).filter(isIp)], ['localhost', 'kubernetes', 'kubernetes.default', 'kubernetes.default.svc', ...(o.sans ?? []).filter((s) => !isIp(s))]);
  const st: ControlPlaneState = {
    dir: o.dir,
    ns: o.ns ?? '',
    host: o.host,
    ports: { apiserver: 6443, etcd: 2379, etcdPeer: 2380, controllerManager: 10257 },
    server: `https://${o.host}:6443`,
    pki,
    adminKubeconfig: join(o.dir, 'admin.kubeconfig'),
    controllers: [...BASE_CONTROLLERS, ...(o.nodeLifecycle ? ['node-lifecycle-controller'] : [])],
    serviceCidrs: o.dualStack ? [SERVICE_CIDR, SERVICE_CIDR6] : [SERVICE_CIDR],
    processes: {},
  };
  const admin = await clientCert(pki, 'admin', 'edgelb-lab-admin', ['system:masters']);
  writeKubeconfig(st.adminKubeconfig, kubeconfigYaml(st.server, pki.caCert, { name: 'admin', cert: admin }));
  const kcm = await clientCert(pki, 'kube-controller-manager', 'system:kube-controller-manager');
  writeKubeconfig(join(o.dir, 'kube-controller-manager.kubeconfig'), kubeconfigYaml(st.server, pki.caCert, { name: 'kube-controller-manager', cert: kcm }));
  const t0 = Date.now();
  await startComponent(st, 'etcd', o.onProcess);
  say(`    etcd ready (${ms(t0)})`);
  await startComponent(st, 'kube-apiserver', o.onProcess);
  say(`    kube-apiserver ready (${ms(t0)})`);
  if (o.controllerManager !== false) {
    await startComponent(st, 'kube-controller-manager', o.onProcess);
    say(`    kube-controller-manager ready (${ms(t0)})`);
  }
  return st;
}

const ms = (t0: number): string => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
const isIp = (s: string): boolean => /^[\d.]+$/.test(s) || s.includes(':');

function argv(st: ControlPlaneState, c: Component): string[] {
  const h = st.host;
  const etcdUrl = `http://${h}:${st.ports.etcd}`;
  switch (c) {
    case 'etcd':
      return [
        ETCD, '--name', 'lab', '--data-dir', join(st.dir, 'etcd'),
        '--listen-client-urls', etcdUrl, '--advertise-client-urls', etcdUrl,
        '--listen-peer-urls', `http://${h}:${st.ports.etcdPeer}`, '--initial-advertise-peer-urls', `http://${h}:${st.ports.etcdPeer}`,
        '--initial-cluster', `lab=http://${h}:${st.ports.etcdPeer}`,
        // The lab's state is disposable; fsync on a shared disk costs seconds per burst.
        '--unsafe-no-fsync',
        '--quota-backend-bytes', String(4 * 1024 ** 3),
      ];
    case 'kube-apiserver':
      return [
        kubeBinary('kube-apiserver'),
        '--etcd-servers', etcdUrl,
        '--bind-address', h, '--advertise-address', h, '--secure-port', String(st.ports.apiserver),
        '--cert-dir', join(st.dir, 'apiserver-certs'),
        '--tls-cert-file', st.pki.serverCert, '--tls-private-key-file', st.pki.serverKey,
        '--client-ca-file', st.pki.caCert,
        '--authorization-mode', 'Node,RBAC',
        '--enable-admission-plugins', 'NodeRestriction',
        '--service-account-issuer', 'https://kubernetes.default.svc.cluster.local',
        '--service-account-key-file', st.pki.saPub,
        '--service-account-signing-key-file', st.pki.saKey,
        '--service-cluster-ip-range', (st.serviceCidrs ?? [SERVICE_CIDR]).join(','),
        '--allow-privileged=true',
        '--profiling=false',
        // The `kubernetes` Service's endpoint may not be a loopback address;
        // tests on 127.x.y.z have no in-cluster clients that would need it.
        ...(h.startsWith('127.') ? ['--endpoint-reconciler-type', 'none'] : []),
      ];
    case 'kube-controller-manager': {
      const kc = join(st.dir, 'kube-controller-manager.kubeconfig');
      return [
        kubeBinary('kube-controller-manager'),
        '--kubeconfig', kc, '--authentication-kubeconfig', kc, '--authorization-kubeconfig', kc,
        '--bind-address', h, '--secure-port', String(st.ports.controllerManager),
        '--controllers', st.controllers.join(','),
        '--service-account-private-key-file', st.pki.saKey,
        '--root-ca-file', st.pki.caCert,
        '--use-service-account-credentials=true',
        '--leader-elect=false',
        '--profiling=false',
      ];
    }
  }
}

/** Starts one component and waits until it serves. */
export async function startComponent(st: ControlPlaneState, c: Component, onProcess?: (p: LabProcess) => void, timeoutMs = 120_000): Promise<LabProcess> {
  const old = st.processes[c];
  if (old && alive(old.pid)) throw new Error(`${c} already runs (pid ${old.pid})`);
  const log = join(st.dir, `${c}.log`);
  const mark = readSize(log);
  const p = spawnInNs(c, st.ns, argv(st, c), log);
  st.processes[c] = p;
  onProcess?.(p);
  timeoutMs = scaled(timeoutMs);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!alive(p.pid)) throw new Error(`${c} exited during start; last lines of ${log}:\n${tail(readFileSync(log).subarray(mark).toString('utf8'), 25)}`);
    if (await serving(st, c)) return p;
    if (Date.now() > deadline) throw new Error(`${c} did not become ready within ${timeoutMs} ms; last lines of ${log}:\n${tail(readFileSync(log).subarray(mark).toString('utf8'), 25)}`);
    await sleep(250);
  }
}

async function serving(st: ControlPlaneState, c: Component): Promise<boolean> {
  try {
    switch (c) {
      case 'etcd':
        return (await inNs(st, ['curl', '-sf', '--max-time', String(scaled(2000) / 1000), `http://${st.host}:${st.ports.etcd}/health`])).includes('true');
      case 'kube-apiserver':
        return (await adminRequest(st, 'GET', '/readyz')).code === 200;
      case 'kube-controller-manager': {
        // Serving is not enough: pods can only be created once the
        // ServiceAccount controller made the namespace's "default" account.
        const r = await adminRequest(st, 'GET', '/api/v1/namespaces/default/serviceaccounts/default');
        return r.code === 200;
      }
    }
  } catch {
    return false;
  }
}

function inNs(st: ControlPlaneState, cmd: string[]): Promise<string> {
  return run(st.ns === '' ? cmd : ['ip', 'netns', 'exec', st.ns, ...cmd], { timeoutMs: 5000 }).then((r) => r.stdout);
}

/** Stops one component (SIGTERM; etcd and the API server shut down cleanly on it). */
export async function stopComponent(st: ControlPlaneState, c: Component, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const p = st.processes[c];
  if (p) await stopPid(p.pid, signal, 15_000);
}

export async function restartComponent(st: ControlPlaneState, c: Component, onProcess?: (p: LabProcess) => void): Promise<LabProcess> {
  await stopComponent(st, c);
  return startComponent(st, c, onProcess);
}

export async function stopControlPlane(st: ControlPlaneState): Promise<void> {
  for (const c of ['kube-controller-manager', 'kube-apiserver', 'etcd'] as const) await stopComponent(st, c);
}

/**
 * `etcdctl compact` at etcd's current revision: every watch that resumes
 * from an older resourceVersion after the API server lost its watch cache
 * (restart) gets 410 Gone and must relist.
 */
export async function compactEtcd(st: ControlPlaneState): Promise<number> {
  const env = ['env', 'ETCDCTL_API=3'];
  const status = JSON.parse(await inNs(st, [...env, ETCDCTL, '--endpoints', `http://${st.host}:${st.ports.etcd}`, 'endpoint', 'status', '-w', 'json'])) as { Status: { header: { revision: number } } }[];
  const rev = status[0]!.Status.header.revision;
  await inNs(st, [...env, ETCDCTL, '--endpoints', `http://${st.host}:${st.ports.etcd}`, 'compact', String(rev)]);
  return rev;
}

/** The admin's client (system:masters) for a control plane in the caller's namespace. */
export function adminHttp(st: ControlPlaneState): KubeHttp {
  return new KubeHttp({ server: st.server, caFile: st.pki.caCert, certFile: join(st.pki.dir, 'admin.crt'), keyFile: join(st.pki.dir, 'admin.key') });
}

/**
 * One request with the admin's client certificate. From this process when
 * the control plane shares its namespace, else through curl in the lab's
 * mgmt namespace.
 */
export async function adminRequest(st: ControlPlaneState, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<ApiResponse> {
  if (st.ns !== '') return adminRequestInNs(st, method, path, body, contentType);
  const http = adminHttp(st);
  try {
    return await http.request(method, path, body, contentType);
  } finally {
    http.close();
  }
}

async function adminRequestInNs(st: ControlPlaneState, method: string, path: string, body: unknown, contentType: string): Promise<ApiResponse> {
  const d = st.pki.dir;
  const cmd = ['curl', '-s', '--max-time', String(scaled(10_000) / 1000), '-o', '-', '-w', '\n%{http_code}', '-X', method, '--cacert', st.pki.caCert, '--cert', join(d, 'admin.crt'), '--key', join(d, 'admin.key'), '-H', 'Accept: application/json'];
  if (body !== undefined) cmd.push('-H', `Content-Type: ${contentType}`, '--data-binary', JSON.stringify(body));
  const out = await inNs(st, [...cmd, `${st.server}${path}`]);
  const i = out.lastIndexOf('\n');
  let parsed: unknown = out.slice(0, i);
  try {
    parsed = JSON.parse(out.slice(0, i));
  } catch {
    /* keep text */
  }
  return { code: Number(out.slice(i + 1)), body: parsed };
}

/** Throws unless the response is 2xx. */
export async function adminOk(st: ControlPlaneState, method: string, path: string, body?: unknown, contentType?: string): Promise<unknown> {
  const r = await adminRequest(st, method, path, body, contentType);
  if (r.code < 200 || r.code >= 300) throw new Error(`${method} ${path}: HTTP ${r.code} ${(r.body as { message?: string })?.message ?? JSON.stringify(r.body)}`);
  return r.body;
}

/**
 * A kubeconfig carrying a bound ServiceAccount token (TokenRequest API),
 * valid for `seconds`: what an agent outside the cluster runs with.
 */
export async function serviceAccountKubeconfig(st: ControlPlaneState, namespace: string, sa: string, path: string, seconds = 86_400, server = st.server): Promise<string> {
  const r = (await adminOk(st, 'POST', `/api/v1/namespaces/${namespace}/serviceaccounts/${sa}/token`, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: seconds },
  })) as { status?: { token?: string } };
  const token = r.status?.token;
  if (!token) throw new Error(`no token for ServiceAccount ${namespace}/${sa}`);
  return writeKubeconfig(path, kubeconfigYaml(server, st.pki.caCert, { name: `${namespace}-${sa}`, token }));
}
