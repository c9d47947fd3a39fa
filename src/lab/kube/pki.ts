// The control plane's keys and certificates, made with openssl: one CA that
// signs the API server's serving certificate and every client certificate
// (the admin's, the controller manager's, each node's), and the
// ServiceAccount token signing key pair. EC P-256 keys: fast to make.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../netns.js';

export interface Pki {
  dir: string;
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  /** ServiceAccount token signing key and its public half. */
  saKey: string;
  saPub: string;
}

export interface ClientCert {
  cert: string;
  key: string;
}

async function ecKey(path: string): Promise<void> {
  await run(['openssl', 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
}

/** A CA, a serving certificate for `ips`/`dnsNames`, and the ServiceAccount key pair (reused when present). */
export async function makePki(dir: string, ips: string[], dnsNames: string[]): Promise<Pki> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const p: Pki = {
    dir,
    caCert: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    serverCert: join(dir, 'apiserver.crt'),
    serverKey: join(dir, 'apiserver.key'),
    saKey: join(dir, 'sa.key'),
    saPub: join(dir, 'sa.pub'),
  };
  if (!existsSync(p.caCert)) {
    await ecKey(p.caKey);
    await run(['openssl', 'req', '-x509', '-new', '-key', p.caKey, '-subj', '/CN=edgelb-lab-ca', '-days', '3650', '-out', p.caCert,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  }
  if (!existsSync(p.serverCert)) {
    const san = [...ips.map((i) => `IP:${i}`), ...dnsNames.map((d) => `DNS:${d}`)].join(',');
    await signed(p, p.serverKey, p.serverCert, '/CN=kube-apiserver', `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment`);
  }
  if (!existsSync(p.saKey)) {
    await ecKey(p.saKey);
    await run(['openssl', 'pkey', '-in', p.saKey, '-pubout', '-out', p.saPub]);
  }
  return p;
}

/**
 * A client certificate: Kubernetes takes the user from CN and the groups
 * from O (system:masters for the admin, system:nodes for a kubelet).
 */
export async function clientCert(p: Pki, name: string, cn: string, groups: string[] = []): Promise<ClientCert> {
  const c = { cert: join(p.dir, `${name}.crt`), key: join(p.dir, `${name}.key`) };
  if (!existsSync(c.cert)) {
    const subj = `${groups.map((g) => `/O=${g}`).join('')}/CN=${cn}`;
    await signed(p, c.key, c.cert, subj, 'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature');
  }
  return c;
}

async function signed(p: Pki, key: string, cert: string, subj: string, ext: string): Promise<void> {
  await ecKey(key);
  const csr = `${cert}.csr`;
  const extFile = `${cert}.ext`;
  writeFileSync(extFile, `${ext}\n`);
  await run(['openssl', 'req', '-new', '-key', key, '-subj', subj, '-out', csr]);
  await run(['openssl', 'x509', '-req', '-in', csr, '-CA', p.caCert, '-CAkey', p.caKey, '-CAcreateserial', '-days', '3650', '-extfile', extFile, '-out', cert]);
}

/** A kubeconfig for `server` with either a client certificate or a bearer token (data inline, so the file stands alone). */
export function kubeconfigYaml(server: string, caCert: string, user: { name: string } & ({ cert: ClientCert } | { token: string }), context = 'edgelb'): string {
  const b64 = (f: string): string => readFileSync(f).toString('base64');
  const cred = 'token' in user ? `    token: ${user.token}` : `    client-certificate-data: ${b64(user.cert.cert)}\n    client-key-data: ${b64(user.cert.key)}`;
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    `- name: ${context}`,
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(caCert)}`,
    'users:',
    `- name: ${user.name}`,
    '  user:',
    cred,
    'contexts:',
    `- name: ${context}`,
    '  context:',
    `    cluster: ${context}`,
    `    user: ${user.name}`,
    `current-context: ${context}`,
    '',
  ].join('\n');
}

export function writeKubeconfig(path: string, yaml: string): string {
  writeFileSync(path, yaml, { mode: 0o600 });
  return path;
}
