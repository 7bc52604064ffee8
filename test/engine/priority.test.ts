/**
 * Request priority: a rule's reserve (the last share of each limit only for a priority and
 * above) and bypass (a priority let through uncounted), both counted in the engine stats.
 */
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { ConfigError } from '../../src/engine/errors.ts';
import { validateRules } from '../../src/engine/rules.ts';
import type { Priority } from '../../src/engine/types.ts';

const T0 = Date.UTC(2030, 0, 1);
const rules = validateRules({
  rules: [
    { id: 'api', key: 'api:*', reserve: { share: 0.1, for: 'critical' }, bypass: 'high', limits: [{ limit: 100, window: '1m' }] },
    { id: 'two', key: 'two:*', reserve: { share: 0.5, for: 'high' }, limits: [{ limit: 10, window: '1m' }, { limit: 4, window: '1s' }] },
    { id: 'plain', key: '*', limits: [{ limit: 10, window: '1m' }] },
  ],
});
const engine = () => new Engine({ nodeId: 'n0', rules });
const hit = (e: Engine, key: string, priority: Priority | undefined, n: number, at = T0) => {
  let ok = 0;
  for (let i = 0; i < n; i++) if (e.decide({ key, priority }, at).allowed) ok++;
  return ok;
};

describe('priority reserve', () => {
  it('below the reserved priority only 90 % is usable; critical gets the last 10 %; denials are counted with their own code', () => {
    const e = engine();
    expect(hit(e, 'api:k', 'normal', 95)).toBe(90);
    const d = e.decide({ key: 'api:k', priority: 'low' }, T0);
    expect(d).toMatchObject({ allowed: false, code: 'PRIORITY_RESERVED', ruleId: 'api', remaining: 0, limit: 100 });
    expect(d.retryAfterMs).toBeGreaterThan(0);
    expect(hit(e, 'api:k', 'critical', 15)).toBe(10);
    expect(e.inspect('api:k', undefined, T0).limits[0].usage).toBe(100);
    expect(e.stats().priorityReservedDenials).toBe(6);
  });

  it('waiting retryAfterMs admits a normal check again, once usage is below the reserve', () => {
    const e = engine();
    hit(e, 'api:w', 'normal', 90);
    const d = e.decide({ key: 'api:w' }, T0 + 1000);
    expect(d.code).toBe('PRIORITY_RESERVED');
    expect(e.decide({ key: 'api:w' }, T0 + 1000 + d.retryAfterMs - 1).allowed).toBe(false);
    expect(e.decide({ key: 'api:w' }, T0 + 1000 + d.retryAfterMs).allowed).toBe(true);
  });

  it('every limit of the rule keeps its reserve; high and critical may use it', () => {
    const e = engine();
    expect(hit(e, 'two:k', 'normal', 5)).toBe(2); // 1 s limit of 4: half reserved
    expect(hit(e, 'two:k', 'high', 5)).toBe(2);
    expect(e.stats().priorityReservedDenials).toBe(3);
  });
});

describe('priority bypass', () => {
  it('a bypassing priority is allowed at the limit and counted nowhere, but counted as a bypass; other rules ignore priority', () => {
    const e = engine();
    hit(e, 'api:b', 'critical', 100);
    expect(e.decide({ key: 'api:b', priority: 'critical' }, T0).allowed).toBe(false);
    const d = e.decide({ key: 'api:b', priority: 'high' }, T0);
    expect(d).toMatchObject({ allowed: true, bypassed: true, ruleId: 'api', remaining: 0 });
    expect(e.inspect('api:b', undefined, T0).limits[0].usage).toBe(100);
    expect(e.stats().priorityBypasses).toBe(1);
    expect(hit(e, 'other', 'critical', 12)).toBe(10);
  });

  it('in a multi-dimension check a bypassed dimension passes without counting, and counts its bypass once', () => {
    const e = engine();
    const m = e.decideAll([{ key: 'api:m', priority: 'high' }, { key: 'x' }], T0);
    expect(m.allowed).toBe(true);
    expect(m.decisions[0].bypassed).toBe(true);
    expect(e.inspect('api:m', undefined, T0).limits[0].usage).toBe(0);
    expect(e.stats().priorityBypasses).toBe(1);
  });
});

describe('validation', () => {
  it('refuses a reserve share outside (0, 1), an unknown priority, and lists them all', () => {
    try {
      validateRules({ rules: [{ id: 'a', key: '*', reserve: { share: 1, for: 'critical' }, bypass: ['urgent'], limits: [{ limit: 1, window: '1m' }] }] }, 'r.yaml');
      throw new Error('accepted');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems.map((p) => [p.code, p.path])).toEqual(
        expect.arrayContaining([
          ['RULE_INVALID', '/rules/0/reserve/share'],
          ['RULE_INVALID', '/rules/0/bypass'],
        ]),
      );
    }
  });

  it('children inherit reserve and bypass through the hierarchy', () => {
    const r = validateRules({ rules: [{ id: 'p', key: 'a:*', bypass: 'critical', reserve: { share: 0.2, for: 'high' }, limits: [{ limit: 10, window: '1m' }] }, { id: 'c', parent: 'p', key: 'a:1' }] });
    expect(r.rules[1]).toMatchObject({ bypass: ['critical'], reserve: { share: 0.2, for: 'high' }, inherited: { bypass: 'p', reserve: 'p' } });
  });
});
