import pino, { type Logger, type LevelWithSilent } from 'pino';

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
}

/**
 * JSON lines for machines (journald, log shippers); readable lines when a
 * human is watching a terminal.
 */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const fd = opts.fd ?? 1;
  const stream = fd === 2 ? process.stderr : process.stdout;
  const pretty = opts.pretty ?? stream.isTTY === true;
  const base = { level: opts.level ?? 'info', name: opts.name ?? 'edgelb' };
  if (pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', destination: fd } } });
  }
  return pino(base, pino.destination({ fd, sync: true }));
}

/** A logger that drops everything, for tests and pure code paths. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
