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

/**
 * Keeps a SIGHUP that arrives while the agent starts, for `release` to
 * replay once it is up. With no handler yet, SIGHUP's default action ended
 * the process, and systemd counts death by SIGHUP as a clean exit:
 * Restart=on-failure did not bring the edge back. (A reload then re-reads
 * the file, which may have changed after start read it.)
 */
export function holdHangups(log: Logger): { release(onHangup: () => void): void } {
  let held = false;
  const hold = () => {
    if (!held) log.info('SIGHUP while starting: the configuration is reloaded once the agent is up');
    held = true;
  };
  process.on('SIGHUP', hold);
  return {
    release(onHangup) {
      process.off('SIGHUP', hold);
      if (held) onHangup();
    },
  };
}
