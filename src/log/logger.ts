import pino, { type Logger, type LevelWithSilent, type DestinationStream } from 'pino';

export type { Logger };

export interface LoggerOptions {
  level?: LevelWithSilent;
  /** Pretty-print; defaults to whether the output is a terminal. */
  pretty?: boolean;
  name?: string;
  /**
   * 1 = stdout, 2 = stderr. The agents log to stderr so that stdout carries
   * only their one-line READY banner (which the appliance shows on the console).
   */
  fd?: 1 | 2;
  /** Write JSON lines here instead of fd (tests). */
  stream?: DestinationStream;
}

/** Keys whose values are secrets wherever they appear in a log object (TCP-MD5 passwords: our PeerSpec, gobgpd's API). */
export const SECRET_KEYS = ['password', 'auth_password'] as const;

/**
 * pino `redact` paths for SECRET_KEYS at the top level and up to six levels
 * down (a peer diff logged on reload is { diff: { add: [ { password } ] } });
 * arrays count as a level. Values are replaced, keys kept, so a log still
 * shows that a password was set.
 */
export function redactPaths(depth = 6): string[] {
  const out: string[] = [];
  for (const key of SECRET_KEYS) {
    for (let d = 0; d <= depth; d++) out.push([...Array<string>(d).fill('*'), key].join('.'));
  }
  return out;
}

const redact = { paths: redactPaths(), censor: '[redacted]' };

/**
 * JSON lines for machines (journald, log shippers); readable lines when a
 * human is watching a terminal. Secrets never reach either (redact).
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const base = { level: opts.level ?? 'info', name: opts.name ?? 'edgelb', redact };
  if (opts.stream) return pino(base, opts.stream);
  const fd = opts.fd ?? 1;
  const stream = fd === 2 ? process.stderr : process.stdout;
  const pretty = opts.pretty ?? stream.isTTY === true;
  if (pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', destination: fd } } });
  }
  return pino(base, pino.destination({ fd, sync: true }));
}

/** A logger that drops everything, for tests and pure code paths. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
