// Flap damping for the set of advertising edges, as BGP damps a flapping
// route (RFC 2439, in spirit): each time an edge appears or disappears it
// gains a penalty of 1, which halves every half-life; while it is at or
// above SUPPRESS the edge is shown as it was before (its changes are not
// passed on) until the penalty has decayed below REUSE.
//
// Why: every Service's edgelb.io/Advertised condition names the advertising
// edges, so each change of that set rewrites every Service's status — 10 000
// status writes, and as many Service events for every watcher in the
// cluster (kube-proxy on every node included), per change. An edge whose BGP
// session or agent flaps would keep that going for as long as it flaps. A
// single join, leave or restart (two changes) is shown at once; from the
// third change within about a half-life the edge is held still, and its
// latest state is shown once it has been quiet for a while.
//
// Pure: the caller passes the observed set and the time.

/** Penalty at which an edge's changes stop being shown. */
export const SUPPRESS = 3;
/** Penalty below which a held edge is shown as it is again. */
export const REUSE = 1.5;
/** No more penalty than this: an edge that flapped for hours is held for at most two half-lives after it stops. */
export const MAX_PENALTY = 6;

interface EdgeRecord {
  /** As observed last. */
  up: boolean;
  /** As shown. */
  shown: boolean;
  penalty: number;
  /** When penalty was last brought up to date (ms). */
  at: number;
  held: boolean;
}

export class EdgeFlapDamper {
  private readonly edges = new Map<string, EdgeRecord>();

  constructor(private readonly halfLifeMs: number) {}

  /** The edges to show (sorted), given the edges observed at `now` (ms). */
  view(observed: readonly string[], now: number): string[] {
    const up = new Set(observed);
    for (const e of up) if (!this.edges.has(e)) this.edges.set(e, { up: false, shown: false, penalty: 0, at: now, held: false });
    const shown: string[] = [];
    for (const [e, r] of this.edges) {
      r.penalty *= 0.5 ** (Math.max(0, now - r.at) / this.halfLifeMs);
      r.at = now;
      const isUp = up.has(e);
      if (isUp !== r.up) {
        r.up = isUp;
        r.penalty = Math.min(MAX_PENALTY, r.penalty + 1);
      }
      if (r.penalty >= SUPPRESS) r.held = true;
      else if (r.held && r.penalty < REUSE) r.held = false;
      if (!r.held) r.shown = r.up;
      if (r.shown) shown.push(e);
      else if (!r.up && r.penalty < 0.01) this.edges.delete(e);
    }
    return shown.sort();
  }

  /** Edges whose changes are held back now. */
  held(): string[] {
    return [...this.edges].filter(([, r]) => r.held).map(([e]) => e).sort();
  }
}
