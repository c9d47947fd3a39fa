// Tells systemd about the agent's life cycle (edgelb.service is Type=notify):
// `systemctl start edgelb` returns once the agent is READY, and units ordered
// after it start only then. Outside systemd this does nothing.
import { native } from '../datapath/loader.js';
import type { Logger } from '../log/logger.js';

export function sdNotify(state: Record<string, string>, log: Logger): void {
  if (!process.env.NOTIFY_SOCKET) return;
  const msg = Object.entries(state).map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`).join('\n');
  try {
    native().sdNotify(msg);
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'could not notify systemd');
  }
}
