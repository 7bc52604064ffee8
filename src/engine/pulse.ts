/**
 * A wake-up for any number of waiters: every `next()` taken before a `fire()` resolves at that
 * fire. `fire()` with nobody waiting is a branch. Used to tell checks waiting for their share of
 * a key's headroom (SHARE_WAIT) that the peers' counts moved on.
 */
export class Pulse {
  private pending: Promise<void> | undefined;
  private resolve: (() => void) | undefined;

  next(): Promise<void> {
    this.pending ??= new Promise<void>((r) => (this.resolve = r));
    return this.pending;
  }

  fire(): void {
    const r = this.resolve;
    if (r === undefined) return;
    this.pending = undefined;
    this.resolve = undefined;
    r();
  }
}
