// Requests to the API server that fail for what they carry, told apart from
// those that fail for the moment. An unreachable or overloaded API server is
// retried quietly (debug): it passes. A write the API server refuses as
// invalid or too large (400, 413, 422) is refused again at every retry —
// a Lease whose annotations someone filled to the 256 KiB limit took no
// annotation of ours, so no edge ever led, and all it said was a debug line
// every D/5. Such a refusal is said once at warn, naming the object, and
// again only when it changes; the next success says it is over.
import type { Logger } from '../log/logger.js';

/** The HTTP status an API error carries (ApiStatusError's code, or a client's statusCode); null for none (a connection error). */
export function httpStatus(e: unknown): number | null {
  const c = (e as { code?: unknown; statusCode?: unknown } | null)?.code ?? (e as { statusCode?: unknown } | null)?.statusCode;
  return typeof c === 'number' ? c : null;
}

/** Answers that retrying the same request cannot change. */
const REFUSED: ReadonlySet<number> = new Set([400, 413, 422]);

export class RefusalReporter {
  private said: string | null = null;

  /** `what`: the object written, as the log should name it ("leader Lease kube-system/edgelb-ipam"). */
  constructor(
    private readonly logger: Pick<Logger, 'warn' | 'info'>,
    private readonly what: string,
  ) {}

  /** Whether `err` is such a refusal (then it was logged, once per message). */
  report(err: unknown): boolean {
    const status = httpStatus(err);
    if (status === null || !REFUSED.has(status)) return false;
    const message = err instanceof Error ? err.message : String(err);
    if (message !== this.said) {
      this.said = message;
      this.logger.warn({ object: this.what, status, err: message }, `the API server refuses what this edge writes to the ${this.what}; retrying, but the same will be refused until the object (or the config) changes`);
    }
    return true;
  }

  /** A write of the object succeeded: a refusal said before is over. */
  succeeded(): void {
    if (this.said === null) return;
    this.said = null;
    this.logger.info({ object: this.what }, `the API server takes the ${this.what} again`);
  }
}
