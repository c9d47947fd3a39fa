// A Service's accepted frontends: frontendKey → digest of the entry as the
// sink took it. Nearly every Service has one frontend, and a Map each (its
// table sized for four entries, ~180 bytes) was ~1.8 MB at 10 000
// Services, all of it outliving V8's young generation — what V8 counts when
// it decides to grow that generation. The first entry is kept in two
// fields; a Map is made only when a second one comes. Entries are only ever
// added (a recomputed Service gets a new one), in the order they came.

export class FrontendDigests {
  private firstKey: string | undefined = undefined;
  private firstDigest = '';
  private more: Map<string, string> | null = null;

  get size(): number {
    return (this.firstKey === undefined ? 0 : 1) + (this.more?.size ?? 0);
  }

  get(fk: string): string | undefined {
    return fk === this.firstKey ? this.firstDigest : this.more?.get(fk);
  }

  has(fk: string): boolean {
    return fk === this.firstKey || (this.more?.has(fk) ?? false);
  }

  set(fk: string, digest: string): void {
    if (this.firstKey === undefined || fk === this.firstKey) {
      this.firstKey = fk;
      this.firstDigest = digest;
    } else (this.more ??= new Map()).set(fk, digest);
  }

  *keys(): IterableIterator<string> {
    if (this.firstKey === undefined) return;
    yield this.firstKey;
    if (this.more) yield* this.more.keys();
  }
}
