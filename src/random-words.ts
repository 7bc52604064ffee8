/**
 * Random 32-bit words from the operating system's cryptographic generator, drawn from a pool
 * refilled 4 096 words at a time (one `randomFillSync` per 2 048 admission ids instead of a
 * random UUID each: the admission ledger asks for two words on every allowed check).
 */
import { randomFillSync } from 'node:crypto';

const POOL_WORDS = 4096;

/** A source of random words: each call returns the next uniformly random unsigned 32-bit integer. */
export function randomWords(): () => number {
  const pool = new Uint32Array(POOL_WORDS);
  let next = POOL_WORDS;
  return () => {
    if (next === POOL_WORDS) {
      randomFillSync(pool);
      next = 0;
    }
    return pool[next++]!;
  };
}
