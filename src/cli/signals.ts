// How both agents (`edgelb run`, `edgelb node run`) end: SIGTERM/SIGINT stop
// for good, SIGQUIT hands over to the next agent (programs, maps and routes
// stay), a second signal exits at once. Resolves with the exit code.
import type { Logger } from '../log/logger.js';

export type StopMode = 'handover' | 'shutdown';

export function untilStopped(log: Logger, stop: (mode: StopMode) => Promise<void>, onHangup?: () => void): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (mode: StopMode, signal: string) => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      log.info({ signal }, 'signal received');
      stop(mode).then(
        () => resolve(0),
        (e: unknown) => {
          log.error({ err: e }, 'stop failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => onSignal('shutdown', 'SIGTERM'));
    process.on('SIGINT', () => onSignal('shutdown', 'SIGINT'));
    process.on('SIGQUIT', () => onSignal('handover', 'SIGQUIT'));
    if (onHangup) process.on('SIGHUP', onHangup);
  });
}
