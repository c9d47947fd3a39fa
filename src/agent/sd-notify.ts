// Tells systemd about the agent's life cycle (edgelb.service is Type=notify):
// `systemctl start edgelb` returns once the agent is READY, and units ordered
// after it start only then. Outside systemd this does nothing.
//
// The datagram is sent by the native addon (Node has no AF_UNIX datagram
// sockets; native/bpf-loader-napi/src/notify.cc says why not systemd-notify).
// It shares the addon's .node file with the BPF loader, but not the loader:
// this module declares and loads only its own entry point.
import { requireNativeAddon } from '../assets.js';
import type { Logger } from '../log/logger.js';

interface NotifyBinding {
  /** sd_notify(3): false when NOTIFY_SOCKET is unset; throws naming the socket when it cannot send. */
  sdNotify(state: string): boolean;
}

/** Sends one raw notification (KEY=VALUE lines) to $NOTIFY_SOCKET; false when it is unset. */
export function notifySocketSend(state: string): boolean {
  return (requireNativeAddon() as NotifyBinding).sdNotify(state);
}

export function sdNotify(state: Record<string, string>, log: Logger): void {
  if (!process.env.NOTIFY_SOCKET) return;
  const msg = Object.entries(state).map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`).join('\n');
  try {
    notifySocketSend(msg);
  } catch (e) {
    log.warn({ err: (e as Error).message }, 'could not notify systemd');
  }
}
