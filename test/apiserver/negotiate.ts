/**
 * Accept-header negotiation the way kube-apiserver does it: the first media
 * type in the client's list that the server can produce wins, with
 * `as=Table` / `as=PartialObjectMetadata` / `as=APIGroupDiscoveryList` variants.
 */

export interface MediaType {
  type: string;
  params: Record<string, string>;
}

export function parseAccept(header: string | undefined): MediaType[] {
  if (!header || header.trim() === '') return [{ type: '*/*', params: {} }];
  return header.split(',').map((part) => {
    const [type, ...rest] = part.split(';').map((s) => s.trim());
    const params: Record<string, string> = {};
    for (const p of rest) {
      const i = p.indexOf('=');
      if (i > 0) params[p.slice(0, i).trim().toLowerCase()] = p.slice(i + 1).trim().replace(/^"|"$/g, '');
    }
    return { type: (type ?? '').toLowerCase(), params };
  });
}

const JSONISH = new Set(['application/json', 'application/*', '*/*']);

export type Output =
  | { kind: 'json' }
  | { kind: 'table'; version: 'v1' | 'v1beta1' }
  | { kind: 'partial'; version: 'v1' | 'v1beta1' };

/** For object endpoints (get/list/watch); undefined means 406. */
export function negotiateObject(accept: string | undefined): Output | undefined {
  for (const m of parseAccept(accept)) {
    if (!JSONISH.has(m.type)) continue;
    const as = m.params['as'];
    if (as === undefined) return { kind: 'json' };
    if (m.params['g'] !== 'meta.k8s.io') continue;
    const v = m.params['v'];
    if (v !== 'v1' && v !== 'v1beta1') continue;
    if (as === 'Table') return { kind: 'table', version: v };
    if (as === 'PartialObjectMetadata' || as === 'PartialObjectMetadataList') return { kind: 'partial', version: v };
  }
  return undefined;
}

/** For /api and /apis: aggregated discovery when asked for first, else the legacy document. */
export function negotiateDiscovery(accept: string | undefined): 'v2' | 'v2beta1' | 'legacy' | undefined {
  for (const m of parseAccept(accept)) {
    if (!JSONISH.has(m.type)) continue;
    const as = m.params['as'];
    if (as === undefined) return 'legacy';
    if (as === 'APIGroupDiscoveryList' && m.params['g'] === 'apidiscovery.k8s.io') {
      if (m.params['v'] === 'v2') return 'v2';
      if (m.params['v'] === 'v2beta1') return 'v2beta1';
    }
  }
  return undefined;
}

export function outputContentType(o: Output, list: boolean): string {
  switch (o.kind) {
    case 'json': return 'application/json';
    case 'table': return `application/json;as=Table;v=${o.version};g=meta.k8s.io`;
    case 'partial': return `application/json;as=${list ? 'PartialObjectMetadataList' : 'PartialObjectMetadata'};v=${o.version};g=meta.k8s.io`;
  }
}
