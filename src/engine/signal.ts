/**
 * A wake-up flag one consumer waits on: `fire()` costs a branch and a store on the hot path,
 * and `wait()` resolves at once when something fired since the last wait. Used by the engine
 * to tell the replication shipper that own changes wait to be shipped, without timers.
 *
 * A waiter may abandon a wait (racing it against a timer) and wait again later: the same
 * promise is handed out until it resolves, and a fire is never lost (at worst a waiter wakes
 * once more than needed, finds nothing to do and waits again).
 */
const RESOLVED = Promise.resolve();

export class Signal {
  private fired = false;
  private pending: Promise<void> | undefined;
  private resolve: (() => void) | undefined;

  fire(): void {
    this.fired = true;
    if (this.resolve !== undefined) {
      const r = this.resolve;
      this.resolve = undefined;
      this.pending = undefined;
      r();
    }
  }

  /** Resolves on the next fire, or at once if one happened since the last wait. */
  wait(): Promise<void> {
    if (this.fired) {
      this.fired = false;
      return RESOLVED;
    }
    this.pending ??= new Promise<void>((r) => (this.resolve = r));
    return this.pending;
  }

  /** Wake a waiter without a change (shutdown). */
  release(): void {
    this.fire();
  }
}
