// How long each change from Kubernetes took to apply, per target: the
// datapath (frontends upserted or removed) and BGP (the VIP set handed to
// gobgpd). The parts are built before the agent and its metrics, so the
// timer is handed to both: the sink calls go through it, the metrics listen.
export type ApplyTarget = 'datapath' | 'bgp';

export class ApplyTimer {
  private listener: ((target: ApplyTarget, seconds: number) => void) | null = null;

  /** Who hears each successful apply's duration (the agent's edgelb_reconcile_seconds). */
  listen(fn: (target: ApplyTarget, seconds: number) => void): void {
    this.listener = fn;
  }

  /** Runs a synchronous apply; a throw is passed on and is no latency. */
  time<T>(target: ApplyTarget, fn: () => T): T {
    const t0 = process.hrtime.bigint();
    const out = fn();
    this.heard(target, t0);
    return out;
  }

  async timeAsync<T>(target: ApplyTarget, fn: () => Promise<T>): Promise<T> {
    const t0 = process.hrtime.bigint();
    const out = await fn();
    this.heard(target, t0);
    return out;
  }

  private heard(target: ApplyTarget, t0: bigint): void {
    this.listener?.(target, Number(process.hrtime.bigint() - t0) / 1e9);
  }
}
