// Signed images. The build writes SHA256SUMS (sha256sum's format) over what
// it made and a detached Ed25519 signature of that file, SHA256SUMS.sig,
// made with OpenSSL (Debian's openssl: `openssl pkeyutl -sign -rawin`). The
// image carries the public key(s) it trusts in /usr/lib/edgelb/upgrade-keys;
// `edgelb upgrade` checks the signature and the image's sha256 before it
// writes anything.
//
// The private key never enters the repository: the build takes it from a
// path (EDGELB_SIGNING_KEY or --signing-key) or, for tests and trying things
// out, makes a throwaway one under images/out/keys — and says which.
import { spawnSync } from 'node:child_process';
import { createHash, createPrivateKey, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { chmodSync, createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Where a running appliance keeps the public keys it accepts upgrades from. */
export const TRUSTED_KEYS_DIR = '/usr/lib/edgelb/upgrade-keys';
export const SUMS_FILE = 'SHA256SUMS';
export const SIG_SUFFIX = '.sig';

export interface SigningKey {
  /** PEM file with the Ed25519 private key. */
  privatePath: string;
  /** The public half, SPKI PEM. */
  publicPem: string;
  keyId: string;
  /** Made by the build for tests, not an operator's key. */
  throwaway: boolean;
}

/** First 16 hex digits of the sha256 of the key's DER SubjectPublicKeyInfo. */
export function keyId(pub: KeyObject | string): string {
  const k = typeof pub === 'string' ? createPublicKey(pub) : pub;
  return createHash('sha256').update(k.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
}

function openssl(args: string[], what: string): void {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.error) throw new Error(`${what}: openssl: ${r.error.message} (apt-get install openssl)`);
  if (r.status !== 0) throw new Error(`${what}: openssl ${args.join(' ')} failed: ${r.stderr.trim()}`);
}

/** Reads an operator's private key file: it must be Ed25519 and not readable by others. */
export function loadSigningKey(path: string, throwaway = false): SigningKey {
  if (!existsSync(path)) throw new Error(`signing key ${path} does not exist (make one: openssl genpkey -algorithm ed25519 -out ${path})`);
  if ((statSync(path).mode & 0o077) !== 0 && !throwaway) throw new Error(`signing key ${path} is readable by group or others; chmod 600 it`);
  let priv: KeyObject;
  try {
    priv = createPrivateKey(readFileSync(path));
  } catch (e) {
    throw new Error(`signing key ${path}: not a PEM private key (${(e as Error).message})`, { cause: e });
  }
  if (priv.asymmetricKeyType !== 'ed25519') throw new Error(`signing key ${path}: an ${priv.asymmetricKeyType ?? 'unknown'} key; an Ed25519 key is needed (openssl genpkey -algorithm ed25519)`);
  const pub = createPublicKey(priv);
  return { privatePath: path, publicPem: pub.export({ type: 'spki', format: 'pem' }).toString(), keyId: keyId(pub), throwaway };
}

export const THROWAWAY_KEY = 'throwaway-ed25519.pem';

/**
 * The key to sign with: `path` (or $EDGELB_SIGNING_KEY) when given, else the
 * throwaway key in `keysDir`, made with `openssl genpkey` the first time.
 */
export function signingKey(keysDir: string, path = process.env.EDGELB_SIGNING_KEY): SigningKey {
  if (path) return loadSigningKey(path);
  const file = join(keysDir, THROWAWAY_KEY);
  if (!existsSync(file)) {
    mkdirSync(keysDir, { recursive: true, mode: 0o700 });
    openssl(['genpkey', '-algorithm', 'ed25519', '-out', file], 'throwaway signing key');
    chmodSync(file, 0o600);
  }
  return loadSigningKey(file, true);
}

/** The key id a build would sign with now, without making a throwaway key (null: none yet). */
export function currentKeyId(keysDir: string, path = process.env.EDGELB_SIGNING_KEY): string | null {
  if (!path && !existsSync(join(keysDir, THROWAWAY_KEY))) return null;
  return signingKey(keysDir, path).keyId;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) h.update(c as Buffer);
  return h.digest('hex');
}

/** SHA256SUMS text for files in one directory, as `sha256sum` writes it (so `sha256sum -c` checks it). */
export async function sumsText(files: string[]): Promise<string> {
  const lines: string[] = [];
  for (const f of files) lines.push(`${await sha256File(f)}  ${basename(f)}`);
  return `${lines.join('\n')}\n`;
}

/** Detached Ed25519 signature of `file` into `file.sig`, by openssl. */
export function signFile(key: SigningKey, file: string): string {
  const sig = `${file}${SIG_SUFFIX}`;
  openssl(['pkeyutl', '-sign', '-rawin', '-inkey', key.privatePath, '-in', file, '-out', sig], `signing ${file}`);
  return sig;
}

export interface TrustedKey {
  keyId: string;
  key: KeyObject;
  file: string;
}

/** Public keys (PEM files) from a directory, or one file. */
export function trustedKeys(from: string): TrustedKey[] {
  if (!existsSync(from)) throw new Error(`no trusted upgrade keys: ${from} does not exist`);
  const files = statSync(from).isDirectory() ? readdirSync(from).filter((f) => f.endsWith('.pem') || f.endsWith('.pub')).sort().map((f) => join(from, f)) : [from];
  const keys = files.map((file) => {
    let key: KeyObject;
    try {
      key = createPublicKey(readFileSync(file));
    } catch (e) {
      throw new Error(`trusted key ${file}: not a PEM public key (${(e as Error).message})`, { cause: e });
    }
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`trusted key ${file}: ${key.asymmetricKeyType ?? 'unknown'}, not Ed25519`);
    return { keyId: keyId(key), key, file };
  });
  if (keys.length === 0) throw new Error(`no trusted upgrade keys in ${from}`);
  return keys;
}

/** Parses SHA256SUMS; a malformed line is an error (the file is signed: it must be exactly what the build wrote). */
export function parseSums(text: string, what = SUMS_FILE): Map<string, string> {
  const m = new Map<string, string>();
  text.split('\n').forEach((line, i) => {
    if (line === '') return;
    const r = /^([0-9a-f]{64}) [ *](.+)$/.exec(line);
    if (!r?.[1] || !r[2]) throw new Error(`${what}:${i + 1}: not a "SHA256  NAME" line`);
    m.set(r[2], r[1]);
  });
  return m;
}

export interface ImageSignature {
  /** The signing key's id. */
  keyId: string;
  /** The image file's sha256, as signed. */
  sha256: string;
  sums: string;
}

export interface VerifyOptions {
  /** SHA256SUMS (default: next to the image). */
  sums?: string;
  /** Its signature (default: SUMS.sig). */
  sig?: string;
  /** Trusted public keys: a directory of PEM files, or one file. */
  keys: string;
}

/**
 * Checks that `image` is listed in a SHA256SUMS signed by a trusted key and
 * that its contents match. Reads, never writes. Throws with what is wrong.
 */
export async function verifyImage(image: string, o: VerifyOptions): Promise<ImageSignature> {
  const sums = o.sums ?? join(dirname(image), SUMS_FILE);
  const sig = o.sig ?? `${sums}${SIG_SUFFIX}`;
  const keys = trustedKeys(o.keys);
  if (!existsSync(sums) || !existsSync(sig)) {
    throw new Error(`${image} is not signed: ${existsSync(sums) ? `no signature ${sig}` : `no ${sums}`} (an image comes with ${SUMS_FILE} and ${SUMS_FILE}${SIG_SUFFIX} from npm run image)`);
  }
  const text = readFileSync(sums);
  const signature = readFileSync(sig);
  const signer = keys.find((k) => signature.length === 64 && verify(null, text, k.key, signature));
  if (!signer) throw new Error(`${sums}: the signature ${sig} does not verify with any trusted key (${keys.map((k) => `${k.keyId} ${k.file}`).join(', ')})`);
  const want = parseSums(text.toString('utf8'), sums).get(basename(image));
  if (!want) throw new Error(`${basename(image)} is not listed in the signed ${sums}`);
  const got = await sha256File(image);
  if (got !== want) throw new Error(`${image} does not match its signed sha256 (${want.slice(0, 16)}…, the file has ${got.slice(0, 16)}…): changed or damaged since it was built`);
  return { keyId: signer.keyId, sha256: got, sums };
}
