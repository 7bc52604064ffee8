/**
 * A check answered SHARE_WAIT (near-limit sharing, CONSISTENCY.md §12) is decided again as the
 * peers' counts arrive, up to `maxWaitMs`: the caller sees a few milliseconds more latency
 * instead of a 429, and SHARE_WAIT only when the peers stay silent for longer. Used by the HTTP
 * routes and the embedded limiter; the engine itself never waits.
 */
import type { Decision } from '../engine/types.ts';

export interface ShareWait {
  /** Resolves when the peers' counts move on (a replicated batch was handled). */
  progress: () => Promise<void>;
  /** Longest wait (ms); 0 answers SHARE_WAIT at once. */
  maxWaitMs: number;
}

/** `first` if it is not a SHARE_WAIT; else `decide()` again after each progress until it is not, or the time is up. */
export async function settleShareWait(first: Decision, decide: () => Decision, wait: ShareWait): Promise<Decision> {
  let d = first;
  const deadline = performance.now() + wait.maxWaitMs;
  while (d.code === 'SHARE_WAIT') {
    const left = deadline - performance.now();
    if (left <= 0) return d;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([wait.progress(), new Promise<void>((r) => (timer = setTimeout(r, Math.min(left, Math.max(1, d.retryAfterMs)))))]);
    clearTimeout(timer);
    d = decide();
  }
  return d;
}
