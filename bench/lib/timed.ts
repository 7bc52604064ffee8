/**
 * In-process throughput: a runner called in chunks of `CHUNK` calls until a duration has
 * passed (the clock is read once per chunk, not per call). A runner returns how many of its
 * calls had the wrong outcome (a denial where every call should be admitted, a request no rule
 * matched…); any makes the measurement throw.
 */

export const CHUNK = 1000;

/** Makes `ops` calls; returns the number with the wrong outcome. */
export type Runner = (ops: number) => number | Promise<number>;

/** Runs `fn` in chunks until `durationMs` has passed; returns calls per second. */
export async function timed(fn: Runner, durationMs: number): Promise<number> {
  let ops = 0;
  let bad = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < durationMs) {
    const r = fn(CHUNK);
    bad += typeof r === 'number' ? r : await r;
    ops += CHUNK;
    t = performance.now();
  }
  if (bad > 0) throw new Error(`${bad} of ${ops} calls had the wrong outcome`);
  return ops / ((t - t0) / 1000);
}
