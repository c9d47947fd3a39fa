// Frontend ownership: a frontend (VIP:port/PROTO) is served for one Service.
// Two Services can only name the same frontend when something is broken —
// a leader that allocated wrongly, two edges' status writes racing — and
// then the first to claim it keeps it; the other is told (FrontendConflict)
// and gets it once the holder lets go. Claims made earlier in a round count
// as well as committed ones, so one round never hands a frontend out twice.

export class FrontendClaims {
  /** frontendKey → Service, as committed (accepted by the sink). */
  private readonly owners = new Map<string, string>();
  /** frontendKey → Service, taken during the current round. */
  private round: Map<string, string> | null = null;
  /** Services that lost a frontend to another one (retried when one is freed). */
  private readonly losers = new Set<string>();

  beginRound(): void {
    this.round = new Map();
  }

  endRound(): void {
    this.round = null;
  }

  /**
   * The Service that holds `fk` against `service`, or null when `service` may
   * have it (it is then claimed for the round). A committed owner counts only
   * while it is `live` (still reconciled).
   */
  claim(fk: string, service: string, live: (owner: string) => boolean): string | null {
    const claimed = this.round?.get(fk);
    const owner = claimed ?? this.owners.get(fk);
    if (owner !== undefined && owner !== service && (claimed !== undefined || live(owner))) return owner;
    this.round?.set(fk, service);
    return null;
  }

  /** Whether `service` currently lost a frontend to another Service. */
  setLoser(service: string, lost: boolean): void {
    if (lost) this.losers.add(service);
    else this.losers.delete(service);
  }

  /** Services waiting for a frontend another Service holds. */
  waiting(): Iterable<string> {
    return this.losers;
  }

  /**
   * Records what `service` holds once a round is committed (`after` null: it
   * is gone); returns whether it let go of a frontend another Service may want.
   */
  commit(service: string, before: Iterable<string>, after: ReadonlySet<string> | null): boolean {
    let freed = false;
    for (const fk of before) {
      if (this.owners.get(fk) !== service) continue;
      this.owners.delete(fk);
      if (!after?.has(fk)) freed = true;
    }
    if (after === null) this.losers.delete(service);
    else for (const fk of after) this.owners.set(fk, service);
    return freed;
  }
}
