/**
 * The random words behind admission ids: unsigned 32-bit integers, spread over the whole range,
 * different from one pool refill to the next and between sources.
 */
import { describe, expect, it } from 'vitest';
import { randomWords } from '../src/random-words.ts';

describe('randomWords', () => {
  it('draws unsigned 32-bit integers over the whole range, across pool refills, independent per source', () => {
    const a = randomWords();
    const b = randomWords();
    const draws = Array.from({ length: 20_000 }, () => a());
    for (const w of draws) expect(Number.isInteger(w) && w >= 0 && w < 2 ** 32).toBe(true);
    expect(new Set(draws).size).toBeGreaterThan(19_990);
    // Every byte of the word varies: the top and bottom 8 bits each take most of their 256 values.
    expect(new Set(draws.map((w) => w >>> 24)).size).toBeGreaterThan(250);
    expect(new Set(draws.map((w) => w & 255)).size).toBeGreaterThan(250);
    const mean = draws.reduce((s, w) => s + w, 0) / draws.length;
    expect(Math.abs(mean / 2 ** 31 - 1)).toBeLessThan(0.05);
    const fromB = Array.from({ length: 8 }, () => b());
    expect(fromB).not.toEqual(draws.slice(0, 8));
  });
});
