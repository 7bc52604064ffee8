/**
 * Matching with many rules: the index finds exactly the rule a scan in rank order finds, a
 * 10 000-rule document resolves overrides, prefixes and the example rules, and the
 * asynchronous validation and swap give the same result as the synchronous ones, keep counts,
 * let checks run meanwhile, and let the last change made win.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NodeTable } from '../../crdt/index.ts';
import { compileRule } from '../../src/engine/compile.ts';
import { Engine } from '../../src/engine/engine.ts';
import { ConfigError } from '../../src/engine/errors.ts';
import { RuleMatcher } from '../../src/engine/matcher.ts';
import { validateRules, validateRulesAsync } from '../../src/engine/rules.ts';
import type { RulesConfig } from '../../src/engine/types.ts';
import { exampleRulesDocument, manyRulesDocument } from '../../support/many-rules.ts';
import { check } from '../helpers/fc.ts';

const T0 = Date.UTC(2030, 0, 1);

function matchers(config: RulesConfig): { index: RuleMatcher; scan: RuleMatcher } {
  const nodes = new NodeTable('n0');
  const scopes = new Map();
  const compiled = config.rules.map((r, i) => compileRule(r, i, config.slotsPerWindow, nodes, () => undefined, scopes));
  return { index: RuleMatcher.of(compiled, config.tiers, 0), scan: RuleMatcher.of(compiled, config.tiers, Infinity) };
}

describe('rule index', () => {
  // Short keys over a small alphabet, so exact keys, prefixes and metadata collide often.
  const keyArb = fc.stringMatching(/^[ab:]{0,5}$/);
  const ruleArb = fc.record({
    kind: fc.constantFrom('exact', 'prefix', 'any'),
    key: keyArb,
    priority: fc.integer({ min: -2, max: 2 }),
    meta: fc.option(fc.constantFrom('x', 'y'), { nil: undefined }),
  });

  it('property: the index picks the same rule as a scan in rank order (priority, then file order), metadata included', () => {
    check(
      fc.property(fc.array(ruleArb, { minLength: 1, maxLength: 40 }), fc.array(fc.tuple(keyArb, fc.option(fc.constantFrom('x', 'y', 'z'), { nil: undefined })), { minLength: 1, maxLength: 20 }), (raw, reqs) => {
        const rules = raw.map((r, i) => ({
          id: `r${i}`,
          key: r.kind === 'any' ? '*' : r.kind === 'prefix' ? `${r.key}*` : r.key || 'a',
          priority: r.priority,
          ...(r.meta !== undefined ? { metadata: { m: r.meta } } : {}),
          limits: [{ limit: 1, window: '1m' }],
        }));
        const { index, scan } = matchers(validateRules({ rules }));
        for (const [key, m] of reqs) {
          const md = m === undefined ? undefined : { m };
          expect(index.match(key, md)?.id).toBe(scan.match(key, md)?.id);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('with 10 000 rules: exact-key overrides win over the example tiers, tenant prefixes and their metadata variants apply, the example rules still match', () => {
    const engine = new Engine({ nodeId: 'n0', rules: validateRules(manyRulesDocument(10_000)) });
    expect(engine.rulesConfig.rules).toHaveLength(10_000);
    expect(engine.matchRule('apikey:cust-42', { tier: 'free' })?.id).toBe('cust-42');
    expect(engine.matchRule('apikey:someone', { tier: 'free' })?.id).toBe('api-free');
    expect(engine.matchRule('apikey:someone', { tier: 'pro' })?.id).toBe('api-paid');
    expect(engine.matchRule('tenant:7000:user:1')?.id).toBe('tenant-7000');
    // tenant-eu-<i> needs region=eu; without it no tenant rule covers that tenant: the catch-all.
    expect(engine.matchRule('tenant:9500:user:1', { region: 'eu' })?.id).toBe('tenant-eu-9500');
    expect(engine.matchRule('tenant:9500:user:1', { region: 'us' })?.id).toBe('default');
    expect(engine.matchRule('ip:10.0.0.1')?.id).toBe('per-client-ip');
    expect(engine.matchRule('tenant:')?.id).toBe('default');
    // Counting goes to the matched rule's own counters.
    for (let i = 0; i < 3; i++) engine.decide({ key: 'apikey:cust-42', metadata: { tier: 'free' } }, T0);
    expect(engine.inspect('apikey:cust-42', { tier: 'free' }, T0)).toMatchObject({ ruleId: 'cust-42', limits: [{ usage: 3 }] });
  });
});

describe('asynchronous validation and swap', () => {
  it('validateRulesAsync returns what validateRules returns, and rejects with the same problems', async () => {
    const doc = manyRulesDocument(2_000);
    expect(await validateRulesAsync(doc, 'big.yaml')).toEqual(validateRules(doc, 'big.yaml'));
    const bad = manyRulesDocument(2_000);
    bad.rules[1500] = { ...bad.rules[1500], id: bad.rules[10].id };
    bad.rules[1999] = { ...bad.rules[1999], limits: [{ limit: 0, window: '1m' }] };
    const sync = (() => {
      try {
        validateRules(bad, 'big.yaml');
      } catch (err) {
        return err as ConfigError;
      }
      throw new Error('accepted');
    })();
    const async = await validateRulesAsync(bad, 'big.yaml').then(
      () => {
        throw new Error('accepted');
      },
      (err: unknown) => err as ConfigError,
    );
    expect(async).toBeInstanceOf(ConfigError);
    expect(async.problems).toEqual(sync.problems);
    expect(async.problems.map((p) => [p.code, p.path])).toEqual([
      ['RULE_DUPLICATE_ID', '/rules/1500/id'],
      ['RULE_INVALID', '/rules/1999/limits/0/limit'],
    ]);
  });

  it('setRulesAsync lets the event loop run, checks meanwhile use the rules in force, and the swap keeps counts', async () => {
    const engine = new Engine({ nodeId: 'n0', rules: validateRules(exampleRulesDocument()) });
    engine.decide({ key: 'ip:10.0.0.1' }, T0);
    const next = await validateRulesAsync(manyRulesDocument(5_000));
    let during: string | null | undefined;
    let ticks = 0;
    const tick = () => {
      ticks++;
      // A check made while the new rules are compiled is decided by the old ones.
      during ??= engine.decide({ key: 'apikey:cust-1', metadata: { tier: 'free' } }, T0).ruleId;
      if (ticks < 1_000_000) immediate = setImmediate(tick);
    };
    let immediate = setImmediate(tick);
    await engine.setRulesAsync(next);
    clearImmediate(immediate);
    expect(ticks).toBeGreaterThan(1);
    expect(during).toBe('api-free');
    expect(engine.decide({ key: 'apikey:cust-1', metadata: { tier: 'free' } }, T0).ruleId).toBe('cust-1');
    // per-client-ip kept its scope (same id, algorithm and window): its count survived the swap.
    expect(engine.inspect('ip:10.0.0.1', undefined, T0).limits[0].usage).toBe(1);
  });

  it('the last change made wins: a setRules made during a setRulesAsync is not overwritten by it', async () => {
    const engine = new Engine({ nodeId: 'n0', rules: validateRules(exampleRulesDocument()) });
    const big = validateRules(manyRulesDocument(3_000));
    const small = validateRules({ rules: [{ id: 'only', key: '*', limits: [{ limit: 5, window: '1m' }] }] });
    const pending = engine.setRulesAsync(big);
    engine.setRules(small);
    await pending;
    expect(engine.rulesConfig).toBe(small);
    expect(engine.matchRule('apikey:cust-1', { tier: 'free' })?.id).toBe('only');
    // Two async changes: the later one is in force after both.
    const a = engine.setRulesAsync(big);
    const b = engine.setRulesAsync(small);
    await Promise.all([a, b]);
    expect(engine.rulesConfig).toBe(small);
  });
});
