/**
 * ExpiryQueue (src/engine/fifo.ts): insertion order, expiry, removal and replacement; and it stays
 * fast when used as a full queue (the case a Map iterated from its start slows down on).
 */
import { describe, expect, it } from 'vitest';
import { AdmissionLedger } from '../../src/engine/admissions.ts';
import { ExpiryQueue } from '../../src/engine/fifo.ts';

describe('ExpiryQueue', () => {
  it('shifts in insertion order, skipping removed and replaced values, and expires by time', () => {
    const q = new ExpiryQueue<{ expiresAt: number; n: number }>();
    q.push('a', { expiresAt: 10, n: 1 });
    q.push('b', { expiresAt: 20, n: 2 });
    q.push('c', { expiresAt: 30, n: 3 });
    q.delete('a');
    q.push('b', { expiresAt: 40, n: 4 }); // replaced: moves to the end
    expect(q.size).toBe(2);
    expect(q.peek()?.n).toBe(3);
    expect(q.expire(30)).toBe(1);
    expect(q.get('c')).toBeUndefined();
    expect(q.shift()?.n).toBe(4);
    expect(q.size).toBe(0);
    expect(q.shift()).toBeUndefined();
  });

  it('keeps its order array bounded when values are replaced and never shifted', () => {
    const q = new ExpiryQueue<{ expiresAt: number }>();
    for (let i = 0; i < 100_000; i++) q.push(`k${i % 10}`, { expiresAt: i });
    expect(q.size).toBe(10);
    expect((q as unknown as { order: unknown[] }).order.length).toBeLessThan(2000);
  });

  it('a full admission ledger issues 300 000 ids in well under a second per 100 000', () => {
    const ledger = new AdmissionLedger({ nodeId: 'n', maxEntries: 50_000, random: () => Math.floor(Math.random() * 2 ** 32) });
    const a = { ruleId: 'r', key: 'k', at: 0, cost: 1 };
    const t0 = performance.now();
    for (let i = 0; i < 300_000; i++) ledger.issue(a, 60_000, i);
    const ms = performance.now() - t0;
    expect(ledger.size).toBe(50_000);
    expect(ledger.forgottenEarly).toBe(250_000);
    // The Map-as-queue it replaced took minutes here (every issue walked the deleted entries).
    expect(ms).toBeLessThan(3000);
  });
});
