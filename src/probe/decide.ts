// Pure: from probe results to the dispatch of one edge → node path.
//
// A path uses ip-option only while probes prove the marker arrives (IPv4:
// the DSR option; IPv6: the Destination Options DSR header). Proof against
// it (stripped, or marked packets lost while plain ones arrive) switches to
// IPIP (IPv6: IP6IP6) at once; switching back needs `recoverAfter` successes
// in a row so a flaky fabric does not flap. A node that answers nothing
// tells us nothing: the path keeps what it has.
import type { PathDispatch } from '../datapath/edge-datapath.js';
import type { Family } from '../net/ip.js';
import { markerName } from './wire.js';

export interface ProbeResult {
  /** The path's family (the node address probed). */
  family: Family;
  /** The probe carrying the option got an answer. */
  optionReply: boolean;
  /** …and the node saw the option. */
  optionSeen: boolean;
  /** A plain probe (no option) got an answer; only asked when the option probe got none. */
  plainReply: boolean | null;
  rttUs: number;
}

export interface PathState {
  dispatch: PathDispatch;
  reason: string;
  /** Consecutive probes that proved the option arrives. */
  goodStreak: number;
  probes: number;
  changedAt: number;
}

export function initialPathState(fallback: PathDispatch, now: number): PathState {
  return { dispatch: fallback, reason: 'not probed yet', goodStreak: 0, probes: 0, changedAt: now };
}

export function decidePath(prev: PathState, r: ProbeResult, now: number, recoverAfter = 3): PathState {
  const probes = prev.probes + 1;
  const to = (dispatch: PathDispatch, reason: string, goodStreak: number): PathState => ({
    dispatch, reason, goodStreak, probes, changedAt: dispatch === prev.dispatch ? prev.changedAt : now,
  });
  const marker = r.family === 4 ? 'option' : 'Destination Options header';
  if (r.optionReply && r.optionSeen) {
    const streak = prev.goodStreak + 1;
    // The first verdict on a path needs no history; later recoveries do.
    if (prev.dispatch === 'ip-option' || prev.probes === 0 || streak >= recoverAfter) {
      return to('ip-option', `${marker} arrives (rtt ${r.rttUs} µs)`, streak);
    }
    return to(prev.dispatch, `${marker} arrives again (${streak}/${recoverAfter} before switching back)`, streak);
  }
  if (r.optionReply && !r.optionSeen) return to('ipip', `the fabric strips ${markerName(r.family)} on this path`, 0);
  if (r.plainReply) return to('ipip', `the fabric drops packets carrying ${markerName(r.family)} on this path`, 0);
  return { ...prev, probes, goodStreak: 0, reason: `node not answering probes (keeping ${prev.dispatch})` };
}
