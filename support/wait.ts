/**
 * Waiting, for the tests, the bench and scripts/regions.ts: `sleep`, and `waitFor`, which polls a
 * condition until it holds, with a deadline and a description of what was awaited on timeout.
 */

export function sleep(ms: number): Promise<void> {
  return new Promise<void>((r) => setTimeout(r, ms));
}

export interface WaitForOptions {
  /** Give up after this long (default 20 s). */
  timeoutMs?: number;
  /** Pause between two polls (default 50 ms). */
  intervalMs?: number;
  /** More context for the timeout error (e.g. logs); called only on timeout. */
  describe?: () => string;
  /** Stops the wait: it then rejects with the signal's reason (checked around every poll). */
  signal?: AbortSignal;
}

/**
 * Polls `condition` until it returns a truthy value, and resolves with that value. A throw counts
 * as "not yet"; the last one is quoted in the timeout error, "timed out after N s waiting for
 * <what>: <last error>", followed by `describe()`.
 */
export async function waitFor<T>(
  what: string,
  condition: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  opts: WaitForOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    opts.signal?.throwIfAborted();
    try {
      const v = await condition();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    opts.signal?.throwIfAborted();
    if (Date.now() > deadline) {
      const extra = opts.describe ? `\n${opts.describe()}` : '';
      throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}${last ? `: ${(last as Error).message ?? last}` : ''}${extra}`);
    }
    await sleep(opts.intervalMs ?? 50);
  }
}
