/**
 * Label and field selectors with the grammar of k8s.io/apimachinery: the same
 * operators, the same rejection of malformed input (the server answers 400).
 */

export class SelectorError extends Error {}

export type LabelRequirement =
  | { key: string; op: 'exists' | '!exists' }
  | { key: string; op: '=' | '!='; value: string }
  | { key: string; op: 'in' | 'notin'; values: string[] }
  | { key: string; op: 'gt' | 'lt'; value: number };

export type Labels = Record<string, string> | undefined;

// A label key is an optional DNS-subdomain prefix and a name of ≤ 63 chars.
const KEY_RE = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const VALUE_RE = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/;

function checkKey(key: string, sel: string): string {
  const name = key.includes('/') ? key.slice(key.indexOf('/') + 1) : key;
  if (!KEY_RE.test(key) || name.length > 63) throw new SelectorError(`invalid label key "${key}" in selector "${sel}"`);
  return key;
}

function checkValue(v: string, sel: string): string {
  if (!VALUE_RE.test(v) || v.length > 63) throw new SelectorError(`invalid label value "${v}" in selector "${sel}"`);
  return v;
}

/** Splits on commas that are not inside parentheses. */
function splitTerms(sel: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const ch of sel) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (depth < 0) throw new SelectorError(`unbalanced parentheses in selector "${sel}"`);
    if (ch === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else {
      cur += ch;
    }
  }
  if (depth !== 0) throw new SelectorError(`unbalanced parentheses in selector "${sel}"`);
  out.push(cur);
  return out;
}

export function parseLabelSelector(sel: string | undefined | null): LabelRequirement[] {
  if (sel === undefined || sel === null || sel.trim() === '') return [];
  const reqs: LabelRequirement[] = [];
  for (const raw of splitTerms(sel)) {
    const term = raw.trim();
    if (term === '') throw new SelectorError(`empty requirement in selector "${sel}"`);
    let m: RegExpMatchArray | null;
    if ((m = term.match(/^!\s*(\S+)$/))) {
      reqs.push({ key: checkKey(m[1]!, sel), op: '!exists' });
    } else if ((m = term.match(/^(\S+?)\s+(in|notin)\s*\((.*)\)$/))) {
      const values = m[3]!.split(',').map((v) => checkValue(v.trim(), sel));
      reqs.push({ key: checkKey(m[1]!, sel), op: m[2] as 'in' | 'notin', values });
    } else if ((m = term.match(/^([^=!<>\s]+)\s*(==|=|!=)\s*(\S*)$/))) {
      reqs.push({ key: checkKey(m[1]!, sel), op: m[2] === '!=' ? '!=' : '=', value: checkValue(m[3]!, sel) });
    } else if ((m = term.match(/^([^=!<>\s]+)\s*([<>])\s*(\S+)$/))) {
      const n = Number(m[3]);
      if (!Number.isInteger(n)) throw new SelectorError(`"${m[3]}" is not an integer in selector "${sel}"`);
      reqs.push({ key: checkKey(m[1]!, sel), op: m[2] === '>' ? 'gt' : 'lt', value: n });
    } else if ((m = term.match(/^(\S+)$/))) {
      reqs.push({ key: checkKey(m[1]!, sel), op: 'exists' });
    } else {
      throw new SelectorError(`unable to parse requirement "${term}" in selector "${sel}"`);
    }
  }
  return reqs;
}

export function matchLabels(reqs: LabelRequirement[], labels: Labels): boolean {
  const l = labels ?? {};
  for (const r of reqs) {
    const has = Object.hasOwn(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case 'exists': if (!has) return false; break;
      case '!exists': if (has) return false; break;
      case '=': if (!has || v !== r.value) return false; break;
      case '!=': if (has && v === r.value) return false; break;
      case 'in': if (!has || !r.values.includes(v!)) return false; break;
      case 'notin': if (has && r.values.includes(v!)) return false; break;
      case 'gt': case 'lt': {
        const n = Number(v);
        if (!has || !Number.isInteger(n)) return false;
        if (r.op === 'gt' ? !(n > r.value) : !(n < r.value)) return false;
        break;
      }
    }
  }
  return true;
}

export interface FieldRequirement { field: string; op: '=' | '!='; value: string }

/**
 * Parses a field selector; `allowed` lists the fields this resource supports
 * (the real server refuses any other with "field label not supported").
 */
export function parseFieldSelector(sel: string | undefined | null, allowed: readonly string[], resource: string): FieldRequirement[] {
  if (sel === undefined || sel === null || sel.trim() === '') return [];
  const reqs: FieldRequirement[] = [];
  for (const raw of sel.split(',')) {
    const term = raw.trim();
    const m = term.match(/^([^=!\s]+)\s*(==|=|!=)\s*(.*)$/);
    if (!m) throw new SelectorError(`invalid field selector term "${term}"`);
    const field = m[1]!;
    if (!allowed.includes(field)) {
      throw new SelectorError(`field label not supported: ${field}`);
    }
    void resource;
    reqs.push({ field, op: m[2] === '!=' ? '!=' : '=', value: m[3]!.trim() });
  }
  return reqs;
}

/** Reads a dotted path (`spec.type`) as the string the field selector compares against. */
export function fieldValue(obj: unknown, path: string): string {
  let cur: unknown = obj;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return '';
    cur = (cur as Record<string, unknown>)[part];
  }
  if (cur === undefined || cur === null) return '';
  return typeof cur === 'string' ? cur : String(cur);
}

export function matchFields(reqs: FieldRequirement[], obj: unknown): boolean {
  for (const r of reqs) {
    const v = fieldValue(obj, r.field);
    if (r.op === '=' ? v !== r.value : v === r.value) return false;
  }
  return true;
}
