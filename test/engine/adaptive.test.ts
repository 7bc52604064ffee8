/**
 * Adaptive limits with injected time: a rule's limits follow a smoothed load signal between a
 * floor and a ceiling, with hysteresis so they do not flap; counts are kept; the effective
 * limit is in every Decision and the adaptive status.
 */
import { describe, expect, it } from 'vitest';
import { EVENT_LOOP_SIGNAL, HYSTERESIS, Signals, eventLoopHealth, nextFactor } from '../../src/engine/adaptive.ts';
import { Engine } from '../../src/engine/engine.ts';
import { ConfigError } from '../../src/engine/errors.ts';
import { validateRules } from '../../src/engine/rules.ts';

const T0 = Date.UTC(2030, 0, 1);
const doc = {
  rules: [
    { id: 'db', key: 'db:*', adaptive: { signal: 'db', floor: 0.2 }, limits: [{ limit: 100, window: '1m' }] },
    { id: 'cpu', key: 'cpu:*', adaptive: { signal: EVENT_LOOP_SIGNAL, floor: 0.5, ceiling: 2 }, limits: [{ limit: 50, window: '1m', algorithm: 'token-bucket', burst: 10 }] },
    { id: 'fixed', key: '*', limits: [{ limit: 10, window: '1m' }] },
  ],
};
const engine = () => new Engine({ nodeId: 'n0', rules: validateRules(doc) });
const limitOf = (e: Engine, key: string) => e.decide({ key, cost: 1 }, T0).limit;

/** Feed `health` once a second for `seconds`, from `from`; returns the time after. */
function feed(e: Engine, name: string, health: number, seconds: number, from: number): number {
  let t = from;
  for (let i = 0; i < seconds; i++) e.setSignal(name, health, (t += 1000));
  return t;
}

describe('adaptive limits', () => {
  it('with no signal yet a rule is at its ceiling; a sustained bad signal brings it to its floor, a good one back', () => {
    const e = engine();
    expect(limitOf(e, 'db:a')).toBe(100);
    expect(limitOf(e, 'cpu:a')).toBe(20); // ceiling 2 × burst 10
    const t = feed(e, 'db', 0, 120, T0);
    expect(limitOf(e, 'db:b')).toBe(20);
    expect(e.adaptiveStatus().rules.find((r) => r.ruleId === 'db')).toMatchObject({ factor: 0.2, limits: [{ policy: 'db', limit: 20 }] });
    expect(e.policies('db')[0].limit).toBe(20);
    feed(e, 'db', 1, 120, t);
    expect(limitOf(e, 'db:c')).toBe(100);
    // Other rules are untouched.
    expect(limitOf(e, 'other')).toBe(10);
  });

  it('smoothing: one bad sample moves the limit only a little, and not at all within the hysteresis band', () => {
    const e = engine();
    e.setSignal('db', 0, T0 + 1000);
    // Smoothed health 1 − (1 − e^−0.1) ≈ 0.905: target factor 0.2 + 0.8 × 0.905 ≈ 0.924, 0.076 away: applied.
    expect(limitOf(e, 'db:a')).toBe(92);
    // A flicker back to healthy a second later moves the target ≈ 0.008: within the band, nothing changes.
    e.setSignal('db', 1, T0 + 2000);
    expect(limitOf(e, 'db:a')).toBe(92);
  });

  it('does not flap: a signal oscillating around a value changes the factor at most once after settling', () => {
    const e = engine();
    let t = feed(e, 'db', 0.5, 120, T0);
    const settled = e.adaptiveStatus().rules[0].factor;
    const seen = new Set<number>();
    for (let i = 0; i < 300; i++) {
      e.setSignal('db', i % 2 === 0 ? 0.4 : 0.6, (t += 1000));
      seen.add(e.adaptiveStatus().rules[0].factor);
    }
    expect(seen.size).toBeLessThanOrEqual(2);
    expect(Math.abs([...seen][seen.size - 1] - settled)).toBeLessThan(HYSTERESIS);
  });

  it('counts are kept when the factor moves: lowering denies at once, raising frees capacity at once', () => {
    const e = engine();
    for (let i = 0; i < 50; i++) e.decide({ key: 'db:k' }, T0);
    // 40 s of an overloaded backend: smoothed health ≈ e^−4, at the floor (all within the 1 m window).
    let t = feed(e, 'db', 0, 40, T0);
    expect(e.decide({ key: 'db:k' }, t)).toMatchObject({ allowed: false, limit: 20 });
    expect(e.inspect('db:k', undefined, t).limits[0].usage).toBe(50);
    let ok = 0;
    for (let i = 0; i < 30; i++) if (e.decide({ key: 'db:k2' }, t).allowed) ok++;
    expect(ok).toBe(20);
    // Healthy again for 15 s: the limit rises, and db:k2's 20 are still counted against it.
    t = feed(e, 'db', 1, 15, t);
    const f = e.adaptiveStatus().rules[0].factor;
    expect(f).toBeGreaterThan(0.5);
    const limit = Math.floor(100 * f);
    ok = 0;
    for (let i = 0; i < 200; i++) if (e.decide({ key: 'db:k2' }, t).allowed) ok++;
    expect(ok).toBe(limit - 20);
  });

  it('a rules change keeps the factor the signal asks for, and remote cells up to the ceiling are accepted', () => {
    const e = engine();
    const t = feed(e, 'db', 0, 120, T0);
    e.setRules(validateRules(doc));
    expect(limitOf(e, 'db:z')).toBe(20);
    // cpu's ceiling is 2 × its burst: a peer at the ceiling may hold 20 in a slot.
    const scope = [...e.allScopes()].find((c) => c.ruleId === 'cpu')!.scope;
    e.applyRemote([{ scope, key: 'cpu:r', node: 'peer', slot: Math.floor(t / 6000), p: 20, n: 0 }], t);
    expect(e.stats().refusedCells.CELL_OVER_CAPACITY).toBe(0);
  });

  it('the event-loop signal: healthy at or below 20 ms, overloaded at or above 200 ms', () => {
    expect([eventLoopHealth(5), eventLoopHealth(20), eventLoopHealth(110), eventLoopHealth(200), eventLoopHealth(900)]).toEqual([1, 1, 0.5, 0, 0]);
    const s = new Signals();
    expect(s.smoothed('never')).toBe(1);
    expect(nextFactor({ signal: 'x', floor: 0.5, ceiling: 1 }, 1, 0)).toBe(0.5);
  });

  it('validation: floor above ceiling, a floor of 0, a missing signal', () => {
    try {
      validateRules({ rules: [{ id: 'a', key: '*', adaptive: { signal: 'x', floor: 2, ceiling: 1 }, limits: [{ limit: 1, window: '1m' }] }, { id: 'b', key: 'b', adaptive: { floor: 0 }, limits: [{ limit: 1, window: '1m' }] }] });
      throw new Error('accepted');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems.map((p) => p.path)).toEqual(expect.arrayContaining(['/rules/0/adaptive/floor', '/rules/1/adaptive/floor', '/rules/1/adaptive/signal']));
    }
  });
});
