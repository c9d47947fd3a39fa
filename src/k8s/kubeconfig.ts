// The agent's own kubeconfig reader. @kubernetes/client-node costs ≈ 80 MB
// of RSS just to import (its generated API and its dependencies), more than
// half of the edge agent's budget at 10 000 Services, for what the agents use
// of it: where the API server is and how to authenticate. This reads the
// kubeconfig forms an operator uses with edgelb — a file (or $KUBECONFIG,
// ~/.kube/config) with a token, a token file, client certificates or an exec
// credential plugin, and the in-cluster ServiceAccount — and refuses the rest
// by name instead of connecting without credentials.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';
import { parse } from 'yaml';

/** What every request needs: TLS material and headers, as node:https takes them. */
export interface Connection {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  rejectUnauthorized: boolean;
  servername?: string;
  headers: Record<string, string>;
}

interface Cluster {
  server: string;
  ca?: Buffer;
  skipTLSVerify: boolean;
  tlsServerName?: string;
}

interface ExecPlugin {
  command: string;
  args: string[];
  env: Record<string, string>;
  apiVersion: string;
}

interface User {
  token?: string;
  tokenFile?: string;
  cert?: Buffer;
  key?: Buffer;
  exec?: ExecPlugin;
}

const IN_CLUSTER_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export class KubeConfigError extends Error {}

export class KubeConfig {
  /** Where the API server is, e.g. https://10.0.0.1:6443. */
  readonly server: URL;
  readonly skipTLSVerify: boolean;
  /** The context's namespace, if it names one. */
  readonly namespace: string | undefined;
  private readonly cluster: Cluster;
  private readonly user: User;
  private execCache: { token?: string; cert?: Buffer; key?: Buffer; untilMs: number } | null = null;

  private constructor(cluster: Cluster, user: User, namespace: string | undefined, where: string) {
    let server: URL;
    try {
      server = new URL(cluster.server);
    } catch {
      throw new KubeConfigError(`${where}: cluster server "${cluster.server}" is not a URL`);
    }
    if (server.protocol !== 'https:' && server.protocol !== 'http:') throw new KubeConfigError(`${where}: cluster server "${cluster.server}" is neither https nor http`);
    this.server = server;
    this.skipTLSVerify = cluster.skipTLSVerify;
    this.cluster = cluster;
    this.user = user;
    this.namespace = namespace;
  }

  /**
   * Loads a kubeconfig file, or, when `path` is empty, the first of
   * $KUBECONFIG (its files merged, first definition wins), ~/.kube/config
   * and the in-cluster ServiceAccount.
   */
  static load(path?: string): KubeConfig {
    if (path) return KubeConfig.fromFiles([path]);
    const env = process.env.KUBECONFIG;
    if (env) return KubeConfig.fromFiles(env.split(delimiter).filter((p) => p !== ''));
    const home = join(homedir(), '.kube', 'config');
    if (existsSync(home)) return KubeConfig.fromFiles([home]);
    if (process.env.KUBERNETES_SERVICE_HOST) return KubeConfig.inCluster();
    throw new KubeConfigError('no kubeconfig: set kubernetes.kubeconfig, $KUBECONFIG or ~/.kube/config, or run in a pod with a ServiceAccount');
  }

  /** The pod's ServiceAccount: token (re-read, it rotates) and CA from the projected volume. */
  static inCluster(dir = IN_CLUSTER_DIR): KubeConfig {
    const host = process.env.KUBERNETES_SERVICE_HOST ?? '';
    const port = process.env.KUBERNETES_SERVICE_PORT ?? '443';
    if (host === '') throw new KubeConfigError('in-cluster: KUBERNETES_SERVICE_HOST is not set');
    const hostPart = host.includes(':') ? `[${host}]` : host;
    const caFile = join(dir, 'ca.crt');
    return new KubeConfig(
      { server: `https://${hostPart}:${port}`, ca: readFileOr(caFile, 'in-cluster CA'), skipTLSVerify: false },
      { tokenFile: join(dir, 'token') },
      readFileOrUndefined(join(dir, 'namespace'))?.toString('utf8').trim(),
      'in-cluster',
    );
  }

  static fromFiles(paths: string[]): KubeConfig {
    const docs = paths.map((p) => {
      let text: string;
      try {
        text = readFileSync(p, 'utf8');
      } catch (e) {
        throw new KubeConfigError(`kubeconfig ${p}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
      }
      return { doc: parseDoc(text, `kubeconfig ${p}`), dir: dirname(resolve(p)), where: `kubeconfig ${p}` };
    });
    return KubeConfig.fromDocs(docs);
  }

  /** A kubeconfig given as text; relative file names resolve against `dir`. */
  static fromYaml(text: string, dir = process.cwd(), where = 'kubeconfig'): KubeConfig {
    return KubeConfig.fromDocs([{ doc: parseDoc(text, where), dir, where }]);
  }

  private static fromDocs(docs: { doc: Record<string, unknown>; dir: string; where: string }[]): KubeConfig {
    const where = docs.map((d) => d.where).join(', ');
    const current = docs.map((d) => d.doc['current-context']).find((c) => typeof c === 'string' && c !== '') as string | undefined;
    if (current === undefined) throw new KubeConfigError(`${where}: no current-context`);
    const ctx = findNamed(docs, 'contexts', 'context', current);
    if (!ctx) throw new KubeConfigError(`${where}: current-context "${current}" is not among its contexts`);
    const clusterName = str(ctx.value.cluster, `${ctx.where}: context "${current}".cluster`);
    const userName = ctx.value.user === undefined ? undefined : str(ctx.value.user, `${ctx.where}: context "${current}".user`);
    const cl = findNamed(docs, 'clusters', 'cluster', clusterName);
    if (!cl) throw new KubeConfigError(`${ctx.where}: context "${current}" names cluster "${clusterName}", which is not defined`);
    const us = userName === undefined ? null : findNamed(docs, 'users', 'user', userName);
    if (userName !== undefined && !us) throw new KubeConfigError(`${ctx.where}: context "${current}" names user "${userName}", which is not defined`);
    const cw = `${cl.where}: cluster "${clusterName}"`;
    const c = cl.value;
    const cluster: Cluster = {
      server: str(c.server, `${cw}.server`),
      ca: material(c['certificate-authority-data'], c['certificate-authority'], cl.dir, `${cw}.certificate-authority`),
      skipTLSVerify: c['insecure-skip-tls-verify'] === true,
      tlsServerName: c['tls-server-name'] === undefined ? undefined : str(c['tls-server-name'], `${cw}.tls-server-name`),
    };
    const user = us ? parseUser(us.value, us.dir, `${us.where}: user "${userName}"`) : {};
    const ns = ctx.value.namespace === undefined ? undefined : str(ctx.value.namespace, `${ctx.where}: context "${current}".namespace`);
    return new KubeConfig(cluster, user, ns, cw);
  }

  /** TLS options and the Authorization header for the next requests (token files and exec credentials re-read as needed). */
  async connection(): Promise<Connection> {
    const headers: Record<string, string> = {};
    let cert = this.user.cert;
    let key = this.user.key;
    let token = this.user.token;
    if (this.user.tokenFile !== undefined) token = readFileOr(this.user.tokenFile, 'token file').toString('utf8').trim();
    if (this.user.exec) {
      const got = await this.execCredential(this.user.exec);
      token = got.token ?? token;
      cert = got.cert ?? cert;
      key = got.key ?? key;
    }
    if (token) headers.authorization = `Bearer ${token}`;
    return {
      ca: this.cluster.ca,
      cert,
      key,
      rejectUnauthorized: !this.cluster.skipTLSVerify,
      servername: this.cluster.tlsServerName,
      headers,
    };
  }

  /**
   * The API server refused the credentials (401): an exec plugin's cached
   * credential is fetched again at the next request, as client-go does. A
   * credential without an expiry (kept for the process's life) or revoked
   * before it expired was otherwise refused until the agent restarted.
   */
  credentialsRejected(): void {
    this.execCache = null;
  }

  /** Runs the exec credential plugin (client.authentication.k8s.io), cached until the credential expires or is refused. */
  private async execCredential(p: ExecPlugin): Promise<{ token?: string; cert?: Buffer; key?: Buffer }> {
    if (this.execCache && Date.now() < this.execCache.untilMs) return this.execCache;
    const input = JSON.stringify({ apiVersion: p.apiVersion, kind: 'ExecCredential', spec: { interactive: false } });
    const out = await new Promise<string>((res, rej) => {
      execFile(p.command, p.args, { env: { ...process.env, ...p.env, KUBERNETES_EXEC_INFO: input }, timeout: 30_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
        if (err) rej(new KubeConfigError(`exec credential plugin ${p.command} failed: ${String(stderr).trim() || err.message}`));
        else res(stdout);
      });
    });
    let status: { token?: unknown; clientCertificateData?: unknown; clientKeyData?: unknown; expirationTimestamp?: unknown } | undefined;
    try {
      status = (JSON.parse(out) as { status?: typeof status }).status;
    } catch {
      throw new KubeConfigError(`exec credential plugin ${p.command}: its output is not JSON`);
    }
    if (!status) throw new KubeConfigError(`exec credential plugin ${p.command}: no status in its ExecCredential`);
    const expires = typeof status.expirationTimestamp === 'string' ? Date.parse(status.expirationTimestamp) : NaN;
    this.execCache = {
      token: typeof status.token === 'string' ? status.token : undefined,
      cert: typeof status.clientCertificateData === 'string' ? Buffer.from(status.clientCertificateData) : undefined,
      key: typeof status.clientKeyData === 'string' ? Buffer.from(status.clientKeyData) : undefined,
      // No expiry given: good for this process (as client-go does); else renewed 30 s early.
      untilMs: Number.isNaN(expires) ? Number.POSITIVE_INFINITY : expires - 30_000,
    };
    return this.execCache;
  }
}

/** Loads a kubeconfig file, or in-cluster/$KUBECONFIG/~/.kube/config when `path` is empty. */
export function loadKubeConfig(path: string | undefined): KubeConfig {
  return KubeConfig.load(path);
}

function parseDoc(text: string, where: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (e) {
    throw new KubeConfigError(`${where}: not YAML (${(e as Error).message.split('\n')[0]})`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new KubeConfigError(`${where}: not a kubeconfig (expected a mapping)`);
  return doc as Record<string, unknown>;
}

function findNamed(
  docs: { doc: Record<string, unknown>; dir: string; where: string }[],
  list: string,
  field: string,
  name: string,
): { value: Record<string, unknown>; dir: string; where: string } | null {
  for (const d of docs) {
    const items = d.doc[list];
    if (items === undefined || items === null) continue;
    if (!Array.isArray(items)) throw new KubeConfigError(`${d.where}: ${list} is not a list`);
    for (const it of items as unknown[]) {
      const named = it as { name?: unknown; [k: string]: unknown } | null;
      if (named?.name !== name) continue;
      const value = named[field];
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new KubeConfigError(`${d.where}: ${list} "${name}" has no ${field} mapping`);
      return { value: value as Record<string, unknown>, dir: d.dir, where: d.where };
    }
  }
  return null;
}

function parseUser(u: Record<string, unknown>, dir: string, where: string): User {
  // edgelb's own DaemonSet manifest once said `auth-provider: { name: tokenFile, config: { tokenFile } }`
  // (a client-node spelling of `tokenFile`): read as `tokenFile` so such a node keeps working.
  const provider = u['auth-provider'] as { name?: unknown; config?: { tokenFile?: unknown } } | undefined;
  let providerTokenFile: string | undefined;
  if (provider !== undefined && provider !== null && provider.name === 'tokenFile' && u.tokenFile === undefined) {
    providerTokenFile = str(provider.config?.tokenFile, `${where}.auth-provider.config.tokenFile`);
  } else if (provider !== undefined) {
    throw new KubeConfigError(`${where}: auth-provider is not supported by edgelb (use a token, a token file, client certificates or an exec plugin)`);
  }
  for (const unsupported of ['username', 'password']) {
    if (u[unsupported] !== undefined) throw new KubeConfigError(`${where}: ${unsupported} is not supported by edgelb (use a token, a token file, client certificates or an exec plugin)`);
  }
  const tokenFile = u.tokenFile === undefined ? providerTokenFile : str(u.tokenFile, `${where}.tokenFile`);
  const user: User = {
    token: u.token === undefined ? undefined : str(u.token, `${where}.token`),
    tokenFile: tokenFile === undefined ? undefined : absolute(tokenFile, dir),
    cert: material(u['client-certificate-data'], u['client-certificate'], dir, `${where}.client-certificate`),
    key: material(u['client-key-data'], u['client-key'], dir, `${where}.client-key`),
  };
  if ((user.cert === undefined) !== (user.key === undefined)) throw new KubeConfigError(`${where}: a client certificate needs its key and the key its certificate`);
  if (u.exec !== undefined) {
    const e = u.exec as Record<string, unknown> | null;
    if (e === null || typeof e !== 'object') throw new KubeConfigError(`${where}.exec: not a mapping`);
    const args = e.args === undefined || e.args === null ? [] : e.args;
    if (!Array.isArray(args) || args.some((a) => typeof a !== 'string')) throw new KubeConfigError(`${where}.exec.args: not a list of strings`);
    const env: Record<string, string> = {};
    for (const kv of (Array.isArray(e.env) ? e.env : []) as { name?: unknown; value?: unknown }[]) {
      env[str(kv?.name, `${where}.exec.env[].name`)] = str(kv?.value, `${where}.exec.env[].value`);
    }
    user.exec = { command: str(e.command, `${where}.exec.command`), args: args as string[], env, apiVersion: typeof e.apiVersion === 'string' ? e.apiVersion : 'client.authentication.k8s.io/v1' };
  }
  return user;
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '') throw new KubeConfigError(`${what}: expected a non-empty string`);
  return v;
}

function absolute(p: string, dir: string): string {
  return isAbsolute(p) ? p : join(dir, p);
}

/** Inline base64 data wins over a file name, as kubectl does. */
function material(data: unknown, file: unknown, dir: string, what: string): Buffer | undefined {
  if (data !== undefined && data !== null && data !== '') return Buffer.from(str(data, `${what}-data`), 'base64');
  if (file !== undefined && file !== null && file !== '') return readFileOr(absolute(str(file, what), dir), what);
  return undefined;
}

function readFileOr(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new KubeConfigError(`${what} ${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
}

function readFileOrUndefined(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch {
    return undefined;
  }
}
