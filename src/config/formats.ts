// Convict format functions. Each throws an Error whose message says what is
// wrong in the operator's terms; the loader adds the file, line, key path
// and the offending value.
import { checkCidr } from '../net/cidr.js';
import { ipToBigInt, isIpv4, isIp, isIpv6 } from '../net/ip.js';
import { parseHostPort } from '../net/l4.js';

// What the kernel takes (no whitespace, "/" or ":") less what the sysctl.d
// file cannot carry (sysctl.ts): "=", "#", ";", quotes, backslash, control characters.
// eslint-disable-next-line no-control-regex -- control characters are what it refuses
export const IFNAME = /^[^\s/:=#;'"\\\x00-\x1f\x7f]{1,15}$/;

export type Format = (value: unknown) => void;

const fail = (msg: string): never => {
  throw new Error(msg);
};

function requiredCheck(v: unknown): boolean {
  if (v === null || v === undefined) fail('is required');
  return true;
}

export function int(min: number, max: number, opts: { required?: boolean } = {}): Format {
  return (v) => {
    if (opts.required) requiredCheck(v);
    if (typeof v !== 'number' || !Number.isInteger(v)) fail(`must be an integer from ${min} to ${max}`);
    if ((v as number) < min || (v as number) > max) fail(`must be from ${min} to ${max}`);
  };
}

export function nullableInt(min: number, max: number): Format {
  const check = int(min, max);
  return (v) => {
    if (v !== null) check(v);
  };
}

export const bool: Format = (v) => {
  if (typeof v !== 'boolean') fail('must be true or false');
};

export function oneOf(values: readonly string[]): Format {
  return (v) => {
    if (typeof v !== 'string' || !values.includes(v)) fail(`must be one of ${values.join(', ')}`);
  };
}

export function str(opts: { required?: boolean; pattern?: RegExp; what?: string; whyRequired?: string } = {}): Format {
  return (v) => {
    if (opts.required && opts.whyRequired && (v === null || v === undefined)) fail(`is required: ${opts.whyRequired}`);
    if (opts.required) requiredCheck(v);
    if (typeof v !== 'string') fail('must be a string');
    if (opts.required && v === '') fail('must not be empty');
    if (opts.pattern && v !== '' && !opts.pattern.test(v as string)) fail(`must be ${opts.what ?? `a string matching ${opts.pattern}`}`);
  };
}

export function ipv4(opts: { required?: boolean; optional?: boolean } = {}): Format {
  return (v) => {
    if (opts.required) requiredCheck(v);
    if (opts.optional && v === '') return;
    if (!isIpv4(v)) fail('must be an IPv4 address such as 192.0.2.1');
  };
}

export function ipv6(opts: { required?: boolean; optional?: boolean } = {}): Format {
  return (v) => {
    if (opts.required) requiredCheck(v);
    if (opts.optional && v === '') return;
    if (!isIpv6(v)) fail('must be an IPv6 address such as 2001:db8::1');
  };
}

export function ip(opts: { required?: boolean; optional?: boolean } = {}): Format {
  return (v) => {
    if (opts.required) requiredCheck(v);
    if (opts.optional && v === '') return;
    if (!isIp(v)) fail('must be an IPv4 or IPv6 address');
  };
}

/**
 * Why an address cannot be one end of a BGP (and BFD) session edgelb
 * configures, or null. IPv6 has addresses that parse but cannot work here:
 * a link-local session needs an interface (gobgpd's neighbor interface, a
 * bfdd session bound to a device) that edgelb does not configure, and an
 * IPv4-mapped address is an IPv4 session spelt as IPv6.
 */
export function sessionAddressProblem(s: string): string | null {
  if (!isIpv6(s)) return null;
  if (s.includes('%')) return 'has a zone index (%...): link-local sessions are not supported; peer over a global or ULA address';
  const v = ipToBigInt(s).value;
  if (v === 0n) return 'is the unspecified address';
  if (v >> 118n === 0x3fan) return 'is link-local: a session over it needs an interface, which edgelb does not configure; peer over a global or ULA address';
  if (v >> 120n === 0xffn) return 'is a multicast address';
  if (v >> 32n === 0xffffn) return 'is an IPv4-mapped IPv6 address: write the IPv4 address for an IPv4 session';
  return null;
}

/** An address that can be one end of a BGP session (not link-local, mapped, multicast, unspecified). */
export function sessionIp(opts: { required?: boolean; optional?: boolean } = {}): Format {
  const base = ip(opts);
  return (v) => {
    base(v);
    if (opts.optional && v === '') return;
    const why = sessionAddressProblem(v as string);
    if (why) fail(why);
  };
}

/** A list whose items are checked by `item`; the first bad item is named by index. */
export function listOf(item: (v: unknown) => string | null, opts: { nonEmpty?: boolean } = {}): Format {
  return (v) => {
    if (!Array.isArray(v)) fail('must be a list');
    const list = v as unknown[];
    if (opts.nonEmpty && list.length === 0) fail('must list at least one entry');
    list.forEach((x, i) => {
      const why = item(x);
      if (why) fail(`[${i}] ${why}`);
    });
  };
}

export const cidrItem = (x: unknown): string | null => {
  const r = checkCidr(x);
  return typeof r === 'string' ? r : null;
};

export const ipItem = (x: unknown): string | null => (isIp(x) ? null : 'must be an IP address');

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const namespaceItem = (x: unknown): string | null =>
  typeof x === 'string' && DNS_LABEL.test(x) ? null : 'must be a namespace name (lowercase DNS label)';

const u16 = (s: string) => /^\d{1,5}$/.test(s) && Number(s) <= 65535;
const u32 = (s: string) => /^\d{1,10}$/.test(s) && Number(s) <= 4294967295;

export const communityItem = (x: unknown): string | null => {
  if (typeof x !== 'string') return 'must be a string "ASN:VALUE"';
  const parts = x.split(':');
  return parts.length === 2 && parts.every(u16) ? null : 'must be "ASN:VALUE" with each part 0-65535';
};

export const largeCommunityItem = (x: unknown): string | null => {
  if (typeof x !== 'string') return 'must be a string "GLOBAL:LOCAL1:LOCAL2"';
  const parts = x.split(':');
  return parts.length === 3 && parts.every(u32) ? null : 'must be "GLOBAL:LOCAL1:LOCAL2" with each part 0-4294967295';
};

// Kubernetes label key/value syntax (prefix/name and value).
const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/;
const LABEL_PREFIX = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?)$/;

export function isLabelKey(k: string): boolean {
  const slash = k.indexOf('/');
  if (slash < 0) return LABEL_NAME.test(k);
  return LABEL_PREFIX.test(k.slice(0, slash)) && LABEL_NAME.test(k.slice(slash + 1));
}

export const labelMap: Format = (v) => {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail('must be a map of label: value');
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
    if (!isLabelKey(k)) fail(`label key "${k}" is not a valid Kubernetes label key`);
    if (typeof val !== 'string' || !LABEL_VALUE.test(val)) fail(`label "${k}" must have a string value of at most 63 characters [A-Za-z0-9_.-]`);
  }
};

/** "HOST:PORT" with an IPv4/IPv6 host ("[::1]:9472" for v6), or empty. */
export const listenAddress: Format = (v) => {
  if (v === '') return;
  if (typeof v !== 'string') fail('must be "ADDRESS:PORT" such as 127.0.0.1:9472');
  const hp = parseHostPort(v as string);
  if (!hp) fail('must be "ADDRESS:PORT" such as 127.0.0.1:9472 (IPv6 as [::1]:9472)');
  // The host firewall accepts metrics.listen's port from every source: on
  // SSH's or BGP's port that rule would override firewall.sshFrom and the
  // peers-only BGP rule (and the port is taken by sshd or gobgpd anyway).
  const taken = HOST_TCP_PORTS.find((p) => p.port === hp!.port);
  if (taken) fail(`port ${taken.port} is ${taken.what}'s: the host firewall opens metrics.listen's port to every source; use another (default 9472)`);
};

/** TCP ports the host firewall restricts to some sources (firewall/ruleset.ts PORTS). */
const HOST_TCP_PORTS = [{ port: 22, what: 'SSH' }, { port: 179, what: 'BGP' }] as const;

export const absolutePath = (opts: { optional?: boolean } = {}): Format => (v) => {
  if (opts.optional && v === '') return;
  if (typeof v !== 'string' || !v.startsWith('/')) fail('must be an absolute path');
};

export function isPrime(n: number): boolean {
  if (n < 2 || !Number.isInteger(n)) return false;
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return true;
}

export const maglevSize: Format = (v) => {
  int(7, 65537)(v);
  if (!isPrime(v as number)) fail('must be a prime number (Maglev needs a prime table size), e.g. 16381 or 65521');
};

/** An IPv4 CIDR of /16../32, or empty. */
export const ipv4CidrOptional: Format = (v) => {
  if (v === '') return;
  const c = checkCidr(v);
  if (typeof c === 'string') return fail(c);
  if (c.family !== 4) fail('must be an IPv4 CIDR');
  if (c.prefix < 16) fail('must be /16 or longer (the datapath varies at most 16 host bits)');
};

/**
 * A password file's text → the TCP-MD5 key: the line as written, its line
 * endings dropped (an editor's trailing blank line too). The config check
 * and the speaker both decide with this, so what the check accepts is what
 * gobgpd gets. The kernel takes at most 80 bytes (TCP_MD5SIG_MAXKEYLEN),
 * and a router's password is one line.
 */
export function passwordFromText(text: string): string | { problem: string } {
  const pw = text.replace(/[\r\n]+$/, '');
  if (pw.trim() === '') return { problem: 'is empty' };
  if (/[\r\n]/.test(pw)) return { problem: 'holds more than one line; a TCP-MD5 password is one line' };
  const bytes = Buffer.byteLength(pw, 'utf8');
  if (bytes > 80) return { problem: `holds a password of ${bytes} bytes; TCP-MD5 keys are at most 80 bytes` };
  return pw;
}

const ifname = str({ required: true, pattern: IFNAME, what: 'a network interface name (1-15 characters, none of space / : = # ; \' " \\ or control characters)' });

/** node.uplink: an interface name, and not loopback (the XDP program, the tunnels' source address and the forwarding sysctls all go there). */
export const uplink: Format = (v) => {
  ifname(v);
  if (v === 'lo') fail('is the loopback interface: the uplink is the interface facing the routers');
};
