// Graceful drain (RFC 8326) as a small pure state machine; the speaker does
// the I/O. Draining: every VIP is re-announced with GRACEFUL_SHUTDOWN so the
// routers lower its preference and move traffic to the other edges while our
// route still exists; after `drainSeconds` the VIPs are withdrawn. Undrain
// (at any point) re-announces them without the community.

export type DrainState = 'active' | 'draining' | 'drained';

export interface DrainPlan {
  /** Announce the desired VIPs at all? */
  announce: boolean;
  /** Tag them with GRACEFUL_SHUTDOWN? */
  gracefulShutdown: boolean;
}

export function drainPlan(state: DrainState): DrainPlan {
  switch (state) {
    case 'active':
      return { announce: true, gracefulShutdown: false };
    case 'draining':
      return { announce: true, gracefulShutdown: true };
    case 'drained':
      return { announce: false, gracefulShutdown: false };
  }
}

export type DrainEvent = 'drain' | 'drain-timer' | 'undrain';

/** Next state for an event; events that do not apply leave the state as is. */
export function nextDrainState(state: DrainState, ev: DrainEvent): DrainState {
  switch (ev) {
    case 'drain':
      return state === 'active' ? 'draining' : state;
    case 'drain-timer':
      return state === 'draining' ? 'drained' : state;
    case 'undrain':
      return 'active';
  }
}
