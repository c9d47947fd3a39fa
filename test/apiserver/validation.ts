/**
 * Object-meta and per-kind validation the real API server applies before
 * storing, reduced to what clients of this project can run into.
 */
import { isIPv4 as netIsIPv4, isIPv6 as netIsIPv6 } from 'node:net';
import { fieldInvalid, fieldNotSupported, fieldRequired, type Cause } from './errors.js';
import type { Obj } from './tables.js';

const DNS1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

export type NameRule = 'dns1035' | 'dns1123label' | 'dns1123subdomain';

export function nameProblem(name: string, rule: NameRule): string | undefined {
  switch (rule) {
    case 'dns1035':
      if (name.length > 63) return 'must be no more than 63 characters';
      if (!DNS1035.test(name)) {
        return "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
      }
      return undefined;
    case 'dns1123label':
      if (name.length > 63) return 'must be no more than 63 characters';
      if (!DNS1123_LABEL.test(name)) {
        return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
      }
      return undefined;
    case 'dns1123subdomain':
      if (name.length > 253) return 'must be no more than 253 characters';
      if (!DNS1123_SUBDOMAIN.test(name)) {
        return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
      }
      return undefined;
  }
}

export function isQualifiedName(s: string): boolean {
  const name = s.includes('/') ? s.slice(s.indexOf('/') + 1) : s;
  return QUALIFIED_NAME.test(s) && name.length <= 63;
}

/** Labels and annotations: keys are qualified names, label values ≤ 63 chars of a restricted set. */
export function validateMeta(meta: Obj): Cause[] {
  const causes: Cause[] = [];
  for (const [k, v] of Object.entries((meta.labels ?? {}) as Obj)) {
    if (!isQualifiedName(k)) causes.push(fieldInvalid('metadata.labels', k, 'name part must consist of alphanumeric characters, \'-\', \'_\' or \'.\''));
    if (typeof v !== 'string' || v.length > 63 || !LABEL_VALUE.test(v)) {
      causes.push(fieldInvalid('metadata.labels', v, "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
    }
  }
  for (const [k, v] of Object.entries((meta.annotations ?? {}) as Obj)) {
    if (!isQualifiedName(k)) causes.push(fieldInvalid('metadata.annotations', k, 'name part must consist of alphanumeric characters, \'-\', \'_\' or \'.\''));
    if (typeof v !== 'string') causes.push(fieldInvalid(`metadata.annotations[${k}]`, v, 'must be a string'));
  }
  return causes;
}

/** Dotted-quad only (no leading zeros), as Go's netip parser accepts. */
export function isIPv4(s: string): boolean {
  return netIsIPv4(s) && !/(^|\.)0\d/.test(s);
}

export function isIPv6(s: string): boolean {
  return netIsIPv6(s) && !s.includes('%');
}

export function isCIDR(s: string): boolean {
  const [ip, len, extra] = s.split('/');
  if (ip === undefined || len === undefined || extra !== undefined || !/^\d{1,3}$/.test(len)) return false;
  if (isIPv4(ip)) return Number(len) <= 32;
  if (isIPv6(ip)) return Number(len) <= 128;
  return false;
}

export function validateEndpointSlice(s: Obj): Cause[] {
  const causes: Cause[] = [];
  const types = ['IPv4', 'IPv6', 'FQDN'];
  if (!s.addressType) causes.push(fieldRequired('addressType'));
  else if (!types.includes(s.addressType)) causes.push(fieldNotSupported('addressType', s.addressType, types));
  if (s.endpoints !== undefined && s.endpoints !== null && !Array.isArray(s.endpoints)) {
    causes.push(fieldInvalid('endpoints', s.endpoints, 'must be a list'));
  }
  for (const [i, e] of ((s.endpoints ?? []) as Obj[]).entries()) {
    const addrs = e.addresses;
    if (!Array.isArray(addrs) || addrs.length === 0) {
      causes.push(fieldRequired(`endpoints[${i}].addresses`, 'must contain at least 1 address'));
      continue;
    }
    if (addrs.length > 100) causes.push(fieldInvalid(`endpoints[${i}].addresses`, addrs.length, 'must have at most 100 addresses'));
    for (const [j, a] of addrs.entries()) {
      const ok = s.addressType === 'IPv4' ? isIPv4(a) : s.addressType === 'IPv6' ? isIPv6(a) : typeof a === 'string';
      if (!ok) causes.push(fieldInvalid(`endpoints[${i}].addresses[${j}]`, a, `must be a valid ${s.addressType} address`));
    }
  }
  for (const [i, p] of ((s.ports ?? []) as Obj[]).entries()) {
    if (p.port !== undefined && p.port !== null && !(Number.isInteger(p.port) && p.port >= 1 && p.port <= 65535)) {
      causes.push(fieldInvalid(`ports[${i}].port`, p.port, 'must be between 1 and 65535, inclusive'));
    }
    if (p.protocol !== undefined && !['TCP', 'UDP', 'SCTP'].includes(p.protocol)) {
      causes.push(fieldNotSupported(`ports[${i}].protocol`, p.protocol, ['SCTP', 'TCP', 'UDP']));
    }
  }
  if ((s.endpoints ?? []).length > 1000) causes.push(fieldInvalid('endpoints', s.endpoints.length, 'must have at most 1000 items'));
  return causes;
}

/** events.k8s.io/v1 is stricter than core/v1 about what a new Event carries. */
export function validateNewEvent(e: Obj): Cause[] {
  const causes: Cause[] = [];
  if (!e.eventTime) causes.push(fieldRequired('eventTime'));
  if (!e.reportingController) causes.push(fieldRequired('reportingController'));
  if (!e.reportingInstance) causes.push(fieldRequired('reportingInstance'));
  if (!e.action) causes.push(fieldRequired('action'));
  if (!e.reason) causes.push(fieldRequired('reason'));
  if (e.type !== 'Normal' && e.type !== 'Warning') causes.push(fieldNotSupported('type', e.type ?? '', ['Normal', 'Warning']));
  if (typeof e.note === 'string' && e.note.length > 1024) causes.push(fieldInvalid('note', '', 'can have at most 1024 characters'));
  return causes;
}

export function validateLease(l: Obj): Cause[] {
  const causes: Cause[] = [];
  const d = l.spec?.leaseDurationSeconds;
  if (d !== undefined && d !== null && !(Number.isInteger(d) && d > 0)) causes.push(fieldInvalid('spec.leaseDurationSeconds', d, 'must be greater than 0'));
  const t = l.spec?.leaseTransitions;
  if (t !== undefined && t !== null && !(Number.isInteger(t) && t >= 0)) causes.push(fieldInvalid('spec.leaseTransitions', t, 'must be greater than or equal to 0'));
  return causes;
}

/** metav1.Time: RFC 3339 with whole seconds, as the API server re-encodes it. */
export function formatTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
export function formatMicroTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

const TIME_FIELDS: Record<string, { time: string[]; micro: string[] }> = {
  Lease: { time: [], micro: ['spec.acquireTime', 'spec.renewTime'] },
  Event: {
    time: ['firstTimestamp', 'lastTimestamp', 'deprecatedFirstTimestamp', 'deprecatedLastTimestamp'],
    micro: ['eventTime', 'series.lastObservedTime'],
  },
};

/**
 * Re-encodes timestamps the way a Go server round-trips them; an unparsable
 * one is an error message naming the field.
 */
export function normalizeTimes(kind: string, o: Obj): string | undefined {
  const fix = (holder: Obj | undefined, key: string, path: string, micro: boolean): string | undefined => {
    if (!holder || holder[key] === undefined || holder[key] === null || holder[key] === '') return undefined;
    const d = new Date(holder[key]);
    if (Number.isNaN(d.getTime())) return `${path}: cannot parse "${String(holder[key])}" as an RFC 3339 time`;
    holder[key] = micro ? formatMicroTime(d) : formatTime(d);
    return undefined;
  };
  const at = (path: string): { holder: Obj | undefined; key: string } => {
    const parts = path.split('.');
    let cur: Obj | undefined = o;
    for (const p of parts.slice(0, -1)) cur = cur && typeof cur[p] === 'object' ? cur[p] : undefined;
    return { holder: cur, key: parts[parts.length - 1]! };
  };
  const f = TIME_FIELDS[kind];
  for (const p of f?.time ?? []) {
    const { holder, key } = at(p);
    const e = fix(holder, key, p, false);
    if (e) return e;
  }
  for (const p of f?.micro ?? []) {
    const { holder, key } = at(p);
    const e = fix(holder, key, p, true);
    if (e) return e;
  }
  for (const [i, c] of ((o.status?.conditions ?? []) as Obj[]).entries()) {
    for (const k of ['lastTransitionTime', 'lastHeartbeatTime', 'lastProbeTime']) {
      const e = fix(c, k, `status.conditions[${i}].${k}`, false);
      if (e) return e;
    }
  }
  return undefined;
}

const CONDITION_REASON = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;

/** metav1.Condition lists (Service status.conditions): what ValidateConditions demands. */
export function validateConditions(conds: unknown, field: string): Cause[] {
  if (conds === undefined || conds === null) return [];
  if (!Array.isArray(conds)) return [fieldInvalid(field, conds, 'must be a list')];
  const causes: Cause[] = [];
  const seen = new Set<string>();
  for (const [i, c] of (conds as Obj[]).entries()) {
    const f = `${field}[${i}]`;
    if (!c.type) causes.push(fieldRequired(`${f}.type`));
    else if (!isQualifiedName(c.type)) causes.push(fieldInvalid(`${f}.type`, c.type, 'name part must consist of alphanumeric characters, \'-\', \'_\' or \'.\''));
    else if (seen.has(c.type)) causes.push({ reason: 'FieldValueDuplicate', message: `Duplicate value: ${JSON.stringify({ type: c.type })}`, field: f });
    seen.add(c.type);
    if (!['True', 'False', 'Unknown'].includes(c.status)) causes.push(fieldNotSupported(`${f}.status`, c.status ?? '', ['False', 'True', 'Unknown']));
    if (c.observedGeneration !== undefined && !(Number.isInteger(c.observedGeneration) && c.observedGeneration >= 0)) {
      causes.push(fieldInvalid(`${f}.observedGeneration`, c.observedGeneration, 'must be greater than or equal to zero'));
    }
    if (!c.lastTransitionTime) causes.push(fieldRequired(`${f}.lastTransitionTime`, 'must be set'));
    if (!c.reason) causes.push(fieldRequired(`${f}.reason`));
    else if (typeof c.reason !== 'string' || c.reason.length > 1024 || !CONDITION_REASON.test(c.reason)) {
      causes.push(fieldInvalid(`${f}.reason`, c.reason, "a condition reason must start with alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName',  or 'ReasonA,ReasonB',  or 'ReasonA:ReasonB', regex used for validation is '[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?')"));
    }
    if (typeof c.message === 'string' && c.message.length > 32768) causes.push(fieldInvalid(`${f}.message`, '', 'may not be more than 32768 bytes'));
  }
  return causes;
}
