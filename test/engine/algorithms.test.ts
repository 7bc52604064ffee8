/**
 * The three algorithms as the engine runs them, with injected time (no sleeping):
 * sliding window (weighted oldest slot, no boundary burst), fixed window (reset at the
 * boundary, boundary burst of 2 × limit), token bucket (burst, then refill at the rate), and
 * retryAfterMs (waiting exactly that long admits; 1 ms less does not).
 *
 * CONSISTENCY.md §3 refers to this file for the reset, the boundary burst and retryAfterMs.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { geometryOf } from '../../crdt/index.ts';
import { Engine, type EngineOptions } from '../../src/engine/engine.ts';
import { validateRules } from '../../src/engine/rules.ts';
import type { Decision, RulesConfig } from '../../src/engine/types.ts';
import { check } from '../helpers/fc.ts';

/** 2030-01-01T00:00:00Z: a boundary of every window used here (day, hour, minute, second). */
const T0 = Date.UTC(2030, 0, 1);

type RawLimit = { limit: number; window: string | number; algorithm?: string; burst?: number; slotsPerWindow?: number };

function rulesOf(limits: RawLimit[], slotsPerWindow?: number): RulesConfig {
  return validateRules({ version: 1, ...(slotsPerWindow !== undefined ? { slotsPerWindow } : {}), rules: [{ id: 'r', key: '*', limits }] });
}

function engineWith(limits: RawLimit[], opts: Partial<EngineOptions> & { slotsPerWindow?: number } = {}): Engine {
  const { slotsPerWindow, ...rest } = opts;
  return new Engine({ nodeId: 'n0', rules: rulesOf(limits, slotsPerWindow), ...rest });
}

/** Requests of `cost` for `key` at `now` until one is denied (at most `max`); returns how many were allowed. */
function fill(engine: Engine, key: string, now: number, max = 10_000, cost = 1): number {
  let ok = 0;
  while (ok < max && engine.decide({ key, cost }, now).allowed) ok++;
  return ok;
}

function hit(engine: Engine, key: string, now: number, times: number, cost = 1): number {
  let ok = 0;
  for (let i = 0; i < times; i++) if (engine.decide({ key, cost }, now).allowed) ok++;
  return ok;
}

const usage = (engine: Engine, key: string, now: number, i = 0) => engine.inspect(key, undefined, now).limits[i].usage;

/** A fresh engine holding the same state, seen at `now`: asks "what if" without touching the original. */
function cloneAt(engine: Engine, now: number): Engine {
  const copy = new Engine({ nodeId: engine.nodeId, rules: engine.rulesConfig });
  copy.restore(engine.snapshot(), now);
  return copy;
}

/** How many cost-1 requests a copy of the engine would admit at `now`. */
const capacityAt = (engine: Engine, key: string, now: number) => fill(cloneAt(engine, now), key, now);

describe('geometry', () => {
  it('slots are window / S wide, aligned to the epoch, with one extra slot for the fading oldest one', () => {
    expect(geometryOf({ algorithm: 'sliding-window', limit: 10, windowMs: 60_000, slotsPerWindow: 10 })).toEqual({ slotMs: 6000, ringSlots: 11, slots: 10 });
    // S is lowered to a divisor of the window so slots have integer width.
    expect(geometryOf({ algorithm: 'sliding-window', limit: 10, windowMs: 7, slotsPerWindow: 10 })).toEqual({ slotMs: 1, ringSlots: 8, slots: 7 });
    expect(geometryOf({ algorithm: 'sliding-window', limit: 10, windowMs: 1009, slotsPerWindow: 10 })).toEqual({ slotMs: 1009, ringSlots: 2, slots: 1 });
    expect(geometryOf({ algorithm: 'fixed-window', limit: 10, windowMs: 60_000, slotsPerWindow: 10 })).toEqual({ slotMs: 60_000, ringSlots: 1, slots: 1 });
    // Token bucket: the ring covers the refill horizon burst / rate = 100 / (600 / 60 s) = 10 s.
    expect(geometryOf({ algorithm: 'token-bucket', limit: 600, windowMs: 60_000, burst: 100, slotsPerWindow: 10 })).toEqual({ slotMs: 1000, ringSlots: 11, slots: 10 });
  });
});

describe('sliding window', () => {
  it('admits exactly `limit`, then denies, with remaining counting down', () => {
    const e = engineWith([{ limit: 10, window: '1m' }]);
    const now = T0 + 12_345;
    for (let i = 0; i < 10; i++) {
      const d = e.decide({ key: 'k' }, now + i);
      expect(d).toMatchObject({ allowed: true, limit: 10, remaining: 9 - i, retryAfterMs: 0, ruleId: 'r', policy: 'r' });
    }
    const d = e.decide({ key: 'k' }, now + 10);
    expect(d).toMatchObject({ allowed: false, limit: 10, remaining: 0, ruleId: 'r' });
    expect(d.retryAfterMs).toBeGreaterThan(0);
    expect(usage(e, 'k', now + 10)).toBe(10);
    // A denial counts nothing.
    for (let i = 0; i < 5; i++) expect(e.decide({ key: 'k' }, now + 10).allowed).toBe(false);
    expect(usage(e, 'k', now + 10)).toBe(10);
  });

  it('admits costs up to exactly the limit', () => {
    const e = engineWith([{ limit: 10, window: '1m' }]);
    expect(hit(e, 'k', T0, 3, 3)).toBe(3); // 9
    expect(e.decide({ key: 'k', cost: 2 }, T0).allowed).toBe(false); // 11 > 10
    expect(e.decide({ key: 'k', cost: 1 }, T0)).toMatchObject({ allowed: true, remaining: 0 });
  });

  it('weights the oldest slot by the share of it still inside the window', () => {
    // 1 minute, 10 slots of 6 s. Ten requests at the start of slot c0.
    const e = engineWith([{ limit: 10, window: '1m' }]);
    expect(hit(e, 'k', T0, 10)).toBe(10);
    // Just before one window has passed, all ten count; at exactly one window the oldest slot is
    // still entirely inside [now − W, now].
    expect(usage(e, 'k', T0 + 59_999)).toBe(10);
    expect(usage(e, 'k', T0 + 60_000)).toBe(10);
    // One window + half a slot: half of the oldest slot still counts.
    expect(usage(e, 'k', T0 + 63_000)).toBe(5);
    expect(usage(e, 'k', T0 + 61_500)).toBe(7.5);
    expect(usage(e, 'k', T0 + 64_800)).toBeCloseTo(2, 10);
    // After one window + one slot it has gone.
    expect(usage(e, 'k', T0 + 66_000)).toBe(0);
    // And admission follows the weighted usage: at +63 s exactly 5 fit.
    const e2 = engineWith([{ limit: 10, window: '1m' }]);
    hit(e2, 'k', T0, 10);
    expect(fill(e2, 'k', T0 + 63_000)).toBe(5);
  });

  it('reports resetMs as the time until every counted slot has left the window', () => {
    const e = engineWith([{ limit: 10, window: '1m' }]);
    expect(e.decide({ key: 'k' }, T0 + 1000).resetMs).toBe(65_000); // slot c0 is gone at T0 + 66 s
    expect(e.decide({ key: 'k' }, T0 + 7000).resetMs).toBe(65_000); // now the newest slot is c0 + 1: gone at T0 + 72 s
  });

  it('prevents the fixed-window boundary burst', () => {
    const e = engineWith([{ limit: 10, window: '1m' }]);
    expect(hit(e, 'k', T0 + 59_999, 10)).toBe(10);
    expect(hit(e, 'k', T0 + 60_000, 10)).toBe(0);
    expect(hit(e, 'k', T0 + 65_999, 10)).toBe(0);
    // Nothing more until the burst's slot (T0 + 54..60 s) becomes the oldest one and fades
    // (T0 + 114..120 s); then admissions follow the fade, as if the burst had been spread
    // evenly over its slot (the documented approximation).
    let admitted = 0;
    for (let t = T0 + 60_000; t < T0 + 114_000; t += 250) admitted += hit(e, 'k', t, 1);
    expect(admitted).toBe(0);
    for (let t = T0 + 114_000; t < T0 + 120_000; t += 100) admitted += hit(e, 'k', t, 1);
    expect(admitted).toBe(9); // usage falls below 9 at one tenth of the slot, ... below 1 at nine tenths
    expect(hit(e, 'k', T0 + 120_000, 10)).toBe(1); // the slot has left; the 9 fading ones still count
  });
});

describe('fixed window', () => {
  const lim = [{ limit: 10, window: '1m', algorithm: 'fixed-window' }];

  it('resets exactly at the boundary', () => {
    const e = engineWith(lim);
    expect(hit(e, 'k', T0 + 30_000, 10)).toBe(10);
    const d = e.decide({ key: 'k' }, T0 + 59_999);
    expect(d).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 1, resetMs: 1 });
    expect(e.decide({ key: 'k' }, T0 + 60_000)).toMatchObject({ allowed: true, remaining: 9, resetMs: 60_000 });
  });

  it('lets 2 × limit through around a boundary (the documented difference from sliding windows)', () => {
    const e = engineWith(lim);
    expect(hit(e, 'k', T0 + 59_999, 20)).toBe(10);
    expect(hit(e, 'k', T0 + 60_000, 20)).toBe(10);
  });
});

describe('token bucket', () => {
  // 600 per minute = 10 per second, burst 100: horizon 10 s, slots of 1 s.
  const lim = [{ limit: 600, window: '1m', algorithm: 'token-bucket', burst: 100 }];

  it('admits a burst of `burst`, then denies, and reports the bucket capacity as the limit', () => {
    const e = engineWith(lim);
    const first = e.decide({ key: 'k' }, T0);
    expect(first).toMatchObject({ allowed: true, limit: 100, remaining: 99 });
    expect(hit(e, 'k', T0, 99)).toBe(99);
    expect(e.decide({ key: 'k' }, T0)).toMatchObject({ allowed: false, remaining: 0 });
  });

  it('refills at the rate after a burst (exact at slot boundaries), up to full', () => {
    const e = engineWith(lim);
    expect(fill(e, 'k', T0)).toBe(100);
    // Consumption is placed at slot granularity: refill is counted from the end of the slot
    // that holds it (conservative), then at 10 per second.
    expect(capacityAt(e, 'k', T0 + 999)).toBe(0);
    for (let s = 1; s <= 12; s++) expect(capacityAt(e, 'k', T0 + s * 1000)).toBe(Math.min(100, 10 * (s - 1)));
    expect(capacityAt(e, 'k', T0 + 2500)).toBe(15);
    // Steady traffic at the rate is admitted indefinitely once the burst is refilled.
    const t1 = T0 + 20_000;
    expect(fill(e, 'k', t1)).toBe(100);
    let admitted = 0;
    for (let t = t1 + 1000; t < t1 + 61_000; t += 100) admitted += hit(e, 'k', t, 1);
    // 60 s at 10/s = 600, minus the one-slot lag after the burst.
    expect(admitted).toBeGreaterThanOrEqual(590);
    expect(admitted).toBeLessThanOrEqual(600);
  });

  it('defaults burst to limit', () => {
    const e = engineWith([{ limit: 5, window: '1s', algorithm: 'token-bucket' }]);
    expect(fill(e, 'k', T0)).toBe(5);
  });
});

describe('costs above capacity', () => {
  it('are denied without counting, and told to wait a whole window', () => {
    for (const algorithm of ['sliding-window', 'fixed-window', 'token-bucket']) {
      const e = engineWith([{ limit: 5, window: '10s', algorithm }]);
      const d = e.decide({ key: 'k', cost: 6 }, T0);
      expect(d).toMatchObject({ allowed: false, limit: 5, remaining: 5, retryAfterMs: 10_000 });
      expect(e.stats().liveKeys).toBe(0);
      expect(e.decide({ key: 'k', cost: 5 }, T0).allowed).toBe(true);
      expect(e.decide({ key: 'k', cost: 6 }, T0)).toMatchObject({ allowed: false, retryAfterMs: 10_000 });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// retryAfterMs

/** Asserts the retry contract of a denied decision made at `now` for `cost`. */
function assertRetryContract(e: Engine, key: string, now: number, cost: number, d: Decision): void {
  expect(d.allowed).toBe(false);
  const r = d.retryAfterMs;
  expect(Number.isInteger(r)).toBe(true);
  expect(r).toBeGreaterThanOrEqual(1);
  expect(cloneAt(e, now + r).decide({ key, cost }, now + r).allowed, `not admitted after waiting retryAfterMs=${r}`).toBe(true);
  if (r > 1) expect(cloneAt(e, now + r - 1).decide({ key, cost }, now + r - 1).allowed, `admitted 1 ms before retryAfterMs=${r}`).toBe(false);
}

describe('retryAfterMs', () => {
  it('fixed window: the boundary', () => {
    const e = engineWith([{ limit: 3, window: '1m', algorithm: 'fixed-window' }]);
    hit(e, 'k', T0 + 10_000, 3);
    const d = e.decide({ key: 'k' }, T0 + 10_000);
    expect(d.retryAfterMs).toBe(50_000);
    assertRetryContract(e, 'k', T0 + 10_000, 1, d);
  });

  it('sliding window: part-way through the fading oldest slot', () => {
    const e = engineWith([{ limit: 10, window: '1m' }]);
    hit(e, 'k', T0, 10);
    const d = e.decide({ key: 'k' }, T0 + 30_000);
    // Usage falls below 10 − 1 when 1/10 of the oldest slot has faded: at T0 + 60 s + 600 ms.
    expect(d.retryAfterMs).toBe(30_600);
    assertRetryContract(e, 'k', T0 + 30_000, 1, d);
    const d4 = e.decide({ key: 'k', cost: 4 }, T0 + 30_000);
    expect(d4.retryAfterMs).toBe(32_400); // 4/10 of the slot
    assertRetryContract(e, 'k', T0 + 30_000, 4, d4);
  });

  it('sliding window: slots spread over the window', () => {
    const e = engineWith([{ limit: 10, window: '1m' }]);
    for (let i = 0; i < 10; i++) hit(e, 'k', T0 + i * 6000, 1);
    const now = T0 + 59_000;
    const d = e.decide({ key: 'k', cost: 3 }, now);
    assertRetryContract(e, 'k', now, 3, d);
  });

  it('token bucket: right after a burst, in the same slot', () => {
    const e = engineWith([{ limit: 600, window: '1m', algorithm: 'token-bucket', burst: 100 }]);
    hit(e, 'k', T0 + 200, 100);
    const d = e.decide({ key: 'k' }, T0 + 300);
    // Refill is counted from the end of the slot holding the burst (T0 + 1 s); 1 token takes 100 ms.
    expect(d.retryAfterMs).toBe(800);
    assertRetryContract(e, 'k', T0 + 300, 1, d);
    const d10 = e.decide({ key: 'k', cost: 10 }, T0 + 300);
    expect(d10.retryAfterMs).toBe(1700);
    assertRetryContract(e, 'k', T0 + 300, 10, d10);
  });

  it('token bucket: in a later slot, refill is linear', () => {
    const e = engineWith([{ limit: 600, window: '1m', algorithm: 'token-bucket', burst: 100 }]);
    hit(e, 'k', T0, 100);
    const d = e.decide({ key: 'k', cost: 5 }, T0 + 1200);
    expect(d.retryAfterMs).toBe(300);
    assertRetryContract(e, 'k', T0 + 1200, 5, d);
  });

  // Random configurations and histories: every denial honours the contract.
  const limitArb = fc.oneof(
    fc.record({
      algorithm: fc.constant('sliding-window'),
      limit: fc.integer({ min: 1, max: 20 }),
      window: fc.constantFrom(1000, 6000, 7000, 60_000, 3_600_000),
      slotsPerWindow: fc.integer({ min: 1, max: 12 }),
    }),
    fc.record({ algorithm: fc.constant('fixed-window'), limit: fc.integer({ min: 1, max: 20 }), window: fc.constantFrom(1000, 60_000, 86_400_000) }),
    fc.record({
      algorithm: fc.constant('token-bucket'),
      limit: fc.integer({ min: 1, max: 600 }),
      window: fc.constantFrom(1000, 60_000, 3_600_000),
      burst: fc.integer({ min: 1, max: 30 }),
      slotsPerWindow: fc.integer({ min: 1, max: 12 }),
    }),
  );
  const limitsArb = fc
    .uniqueArray(limitArb, { minLength: 1, maxLength: 2, selector: (l) => `${l.algorithm}/${l.window}` })
    .filter((ls) => ls.every((l) => l.algorithm !== 'token-bucket' || (l.burst ?? l.limit) * l.window >= l.limit)); // horizon ≥ 1 ms
  const stepArb = fc.record({
    dt: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 120_000 })),
    cost: fc.integer({ min: 1, max: 6 }),
  });

  it('property: waiting exactly retryAfterMs admits, 1 ms less does not (all algorithms, 1–2 limits)', () => {
    check(
      fc.property(limitsArb, fc.integer({ min: 0, max: 3_600_000 }), fc.array(stepArb, { minLength: 1, maxLength: 40, size: 'max' }), (limits, offset, steps) => {
        const e = engineWith(limits as RawLimit[]);
        const capacity = Math.min(...limits.map((l) => (l.algorithm === 'token-bucket' ? (l as { burst: number }).burst : l.limit)));
        let now = T0 + offset;
        let denials = 0;
        for (const { dt, cost } of steps) {
          now += dt;
          const d = e.decide({ key: 'k', cost }, now);
          expect(d.ruleId).toBe('r');
          expect(d.remaining).toBeGreaterThanOrEqual(0);
          if (d.allowed) {
            expect(d.retryAfterMs).toBe(0);
            continue;
          }
          if (cost > capacity || denials++ > 3) continue; // keep each run short
          assertRetryContract(e, 'k', now, cost, d);
        }
      }),
    );
  });
});
