// The per-frontend and per-backend counter families of /metrics, written as
// Prometheus text by hand and in steps.
//
// An edge with 10 000 frontends of 10 backends has 220 000 such samples.
// Through prom-client's gauges (a label map and a hash per sample) one scrape
// blocked the event loop for 1.4–1.7 s, built a 17 MB string at once and took
// the agent's RSS from 322 to 563 MB in three scrapes; BGP and Kubernetes
// rounds waited meanwhile. Here the datapath's counters are read a chunk of
// rows at a time (the caller's iterator reads its maps lazily) and the text
// leaves in chunks, the event loop turning between them. The samples are
// exactly what the gauges wrote: same names, help, labels and values.

/** One frontend's counters (backend null) or one of its backends' ("ip:port"). */
export interface ServiceCounterRow {
  frontend: string;
  backend: string | null;
  packets: number;
  bytes: number;
}

interface Family {
  name: string;
  help: string;
  perBackend: boolean;
  value: 'packets' | 'bytes';
}

export const SERVICE_FAMILIES: readonly Family[] = [
  { name: 'edgelb_service_packets', help: 'Packets forwarded per frontend (datapath counter)', perBackend: false, value: 'packets' },
  { name: 'edgelb_service_bytes', help: 'Bytes forwarded per frontend (datapath counter)', perBackend: false, value: 'bytes' },
  { name: 'edgelb_backend_packets', help: 'Packets forwarded per backend', perBackend: true, value: 'packets' },
  { name: 'edgelb_backend_bytes', help: 'Bytes forwarded per backend', perBackend: true, value: 'bytes' },
];

/** Rows read, and sample lines written, between two turns of the event loop. */
export const ROWS_PER_STEP = 1000;

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A label value as the text format wants it: backslash, double quote and newline escaped. */
function labelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function help(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A sample's value as prom-client writes it. */
function sampleValue(v: number): string {
  if (Number.isNaN(v)) return 'Nan';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/**
 * The four families' text, in chunks. `rows` is pulled ROWS_PER_STEP at a
 * time with a turn of the event loop in between; so are the lines written.
 */
export async function* serviceMetricsText(rows: Iterable<ServiceCounterRow>, perStep = ROWS_PER_STEP): AsyncGenerator<string> {
  const frontends: ServiceCounterRow[] = [];
  const backends: ServiceCounterRow[] = [];
  let n = 0;
  for (const r of rows) {
    (r.backend === null ? frontends : backends).push(r);
    if (++n % perStep === 0) await turn();
  }
  for (const f of SERVICE_FAMILIES) {
    const samples = f.perBackend ? backends : frontends;
    // A blank line before each family, as prom-client separates its own.
    let chunk = `\n# HELP ${f.name} ${help(f.help)}\n# TYPE ${f.name} gauge\n`;
    for (let i = 0; i < samples.length; i++) {
      const r = samples[i]!;
      const labels = f.perBackend ? `frontend="${labelValue(r.frontend)}",backend="${labelValue(r.backend!)}"` : `frontend="${labelValue(r.frontend)}"`;
      chunk += `${f.name}{${labels}} ${sampleValue(r[f.value])}\n`;
      if ((i + 1) % perStep === 0) {
        yield chunk;
        chunk = '';
        await turn();
      }
    }
    if (chunk !== '') yield chunk;
  }
}
