/**
 * Several dimensions in one check (Engine.decideAll): all must pass; a denied dimension
 * consumes nothing in the others; the answer names the deciding dimension.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { validateRules } from '../../src/engine/rules.ts';

const T0 = Date.UTC(2030, 0, 1);
const rules = validateRules({
  rules: [
    { id: 'per-ip', key: 'ip:*', limits: [{ limit: 100, window: '1m' }] },
    { id: 'per-user', key: 'user:*', limits: [{ limit: 3, window: '1m' }] },
    { id: 'per-resource', key: 'res:*', limits: [{ limit: 10, window: '1m' }, { limit: 20, window: '1h' }] },
  ],
});
const engine = () => new Engine({ nodeId: 'n0', rules });
const usage = (e: Engine, key: string) => e.inspect(key, undefined, T0).limits.map((l) => l.usage);

describe('decideAll', () => {
  it('all dimensions pass: each is counted once, and the binding one is the most restrictive (least remaining)', () => {
    const e = engine();
    const m = e.decideAll([{ key: 'ip:1' }, { key: 'user:a' }, { key: 'res:x', cost: 2 }], T0);
    expect(m.allowed).toBe(true);
    expect(m.decisions.map((d) => [d.ruleId, d.remaining])).toEqual([
      ['per-ip', 99],
      ['per-user', 2],
      ['per-resource', 8],
    ]);
    expect(m.binding).toBe(1);
    expect([usage(e, 'ip:1'), usage(e, 'user:a'), usage(e, 'res:x')]).toEqual([[1], [1], [2, 2]]);
  });

  it('one dimension denied: nothing is counted in any, and the denied one is named', () => {
    const e = engine();
    for (let i = 0; i < 3; i++) e.decide({ key: 'user:a' }, T0);
    const m = e.decideAll([{ key: 'ip:1' }, { key: 'user:a' }, { key: 'res:x' }], T0);
    expect(m.allowed).toBe(false);
    expect(m.binding).toBe(1);
    expect(m.decisions[1]).toMatchObject({ allowed: false, ruleId: 'per-user', remaining: 0 });
    expect(m.decisions[1].retryAfterMs).toBeGreaterThan(0);
    // The others say what they would have been, and counted nothing.
    expect(m.decisions[0]).toMatchObject({ allowed: true, ruleId: 'per-ip', remaining: 99 });
    expect([usage(e, 'ip:1'), usage(e, 'user:a'), usage(e, 'res:x')]).toEqual([[0], [3], [0, 0]]);
  });

  it('the same rule and key named twice is decided for the sum of the costs', () => {
    const e = engine();
    const m = e.decideAll([{ key: 'user:a', cost: 2 }, { key: 'user:a', cost: 2 }], T0);
    expect(m.allowed).toBe(false);
    expect(m.binding).toBe(1);
    expect(usage(e, 'user:a')).toEqual([0]);
    const ok = e.decideAll([{ key: 'user:a', cost: 2 }, { key: 'user:a', cost: 1 }], T0);
    expect(ok.allowed).toBe(true);
    expect(usage(e, 'user:a')).toEqual([3]);
  });

  it('a dimension no rule matches neither blocks nor binds; with several denials the longest wait decides', () => {
    const e = engine();
    const m = e.decideAll([{ key: 'nothing' }, { key: 'ip:1' }], T0);
    expect(m).toMatchObject({ allowed: true, binding: 1 });
    expect(m.decisions[0].ruleId).toBeNull();
    for (let i = 0; i < 3; i++) e.decide({ key: 'user:b' }, T0);
    for (let i = 0; i < 10; i++) e.decide({ key: 'res:y' }, T0 + 30_000);
    const two = e.decideAll([{ key: 'user:b' }, { key: 'res:y' }], T0 + 31_000);
    expect(two.allowed).toBe(false);
    const [u, r] = two.decisions.map((d) => d.retryAfterMs);
    expect(two.binding).toBe(r > u ? 1 : 0);
    expect(Math.max(u, r)).toBe(two.decisions[two.binding].retryAfterMs);
  });
});
