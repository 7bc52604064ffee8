/**
 * The rules hierarchy (global defaults → tiers → overrides): how a request's tier is found,
 * which rule and level decide, what a child inherits, explain's provenance, and every
 * hierarchy problem listed at once with its code and JSON path.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { ConfigError, type ConfigProblem } from '../../src/engine/errors.ts';
import { loadRulesFile, validateRules } from '../../src/engine/rules.ts';

const T0 = Date.UTC(2030, 0, 1);
const TIERS_EXAMPLE = fileURLToPath(new URL('../../examples/rules-tiers.yaml', import.meta.url));

const tiers = { names: ['free', 'pro', 'enterprise'], metadata: 'tier', keys: { 'apikey:acme': 'enterprise' }, default: 'free' };
const api = { id: 'api', key: 'apikey:*', priority: 50, limits: [{ limit: 60, window: '1m' }] };
const doc = {
  tiers,
  rules: [
    api,
    { id: 'api-pro', parent: 'api', tier: 'pro', limits: [{ limit: 600, window: '1m' }] },
    { id: 'api-ent', parent: 'api', tier: 'enterprise', degraded: 'open', maxKeys: 1000, limits: [{ limit: 6000, window: '1m' }] },
    { id: 'api-acme', parent: 'api-ent', key: 'apikey:acme', limits: [{ limit: 12000, window: '1m' }] },
    { id: 'api-slow', parent: 'api', key: 'apikey:slow' },
    { id: 'default', key: '*', limits: [{ limit: 10, window: '1m' }] },
  ],
};

function problemsOf(d: unknown): ConfigProblem[] {
  try {
    validateRules(d, 'rules.yaml');
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  throw new Error('the rules were accepted');
}

describe('resolution', () => {
  const engine = new Engine({ nodeId: 'n0', rules: validateRules(doc) });
  const decide = (key: string, metadata?: Record<string, string>) => engine.decide({ key, metadata }, T0);

  it('the tier comes from the key mapping, else the metadata, else the default; tier rules decide for their tier', () => {
    expect(decide('apikey:x', { tier: 'pro' })).toMatchObject({ ruleId: 'api-pro', level: 'tier', limit: 600 });
    expect(decide('apikey:x', { tier: 'enterprise' })).toMatchObject({ ruleId: 'api-ent', level: 'tier', limit: 6000 });
    // No tier metadata, or an unknown tier: the default tier (free), which has no tier rule: the global default.
    expect(decide('apikey:x')).toMatchObject({ ruleId: 'api', level: 'default', limit: 60 });
    expect(decide('apikey:x', { tier: 'platinum' })).toMatchObject({ ruleId: 'api', level: 'default' });
    // The mapping wins over the metadata.
    expect(engine.explain('apikey:acme', { tier: 'pro' }).tier).toEqual({ name: 'enterprise', from: 'keys' });
    expect(engine.explain('apikey:x', { tier: 'pro' }).tier).toEqual({ name: 'pro', from: 'metadata' });
    expect(engine.explain('apikey:x').tier).toEqual({ name: 'free', from: 'default' });
  });

  it('an override decides for its one key, with what it inherits; other keys are unaffected', () => {
    expect(decide('apikey:acme')).toMatchObject({ ruleId: 'api-acme', level: 'override', limit: 12000 });
    // api-slow writes no limits: it inherits api's, with its own counters.
    expect(decide('apikey:slow', { tier: 'pro' })).toMatchObject({ ruleId: 'api-slow', level: 'override', limit: 60 });
    expect(engine.inspect('apikey:slow', undefined, T0).limits[0].scope).not.toBe(engine.inspect('apikey:x', undefined, T0).limits[0].scope);
    expect(decide('other')).toMatchObject({ ruleId: 'default', level: 'default' });
  });

  it('children inherit key, priority, tier, maxKeys and degraded from up the chain, and say from where; an override keeps no tier', () => {
    const acme = engine.rulesConfig.rules.find((r) => r.id === 'api-acme')!;
    expect(acme).toMatchObject({ key: 'apikey:acme', priority: 50, maxKeys: 1000, degraded: 'open', level: 'override', parent: 'api-ent' });
    expect(acme.tier).toBeUndefined();
    expect(acme.inherited).toEqual({ priority: 'api', maxKeys: 'api-ent', degraded: 'api-ent' });
    const pro = engine.rulesConfig.rules.find((r) => r.id === 'api-pro')!;
    expect(pro.inherited).toEqual({ key: 'api', priority: 'api' });
    // An override decides for its key whatever tier the request names.
    expect(engine.decide({ key: 'apikey:acme', metadata: { tier: 'pro' } }, T0).ruleId).toBe('api-acme');
  });

  it('explain: the deciding rule, its chain to the root, each limit and setting with the rule it came from', () => {
    const x = engine.explain('apikey:acme');
    expect(x).toMatchObject({ ruleId: 'api-acme', level: 'override', tier: { name: 'enterprise', from: 'keys' } });
    expect(x.chain.map((c) => [c.id, c.level])).toEqual([
      ['api-acme', 'override'],
      ['api-ent', 'tier'],
      ['api', 'default'],
    ]);
    expect(x.limits).toEqual([{ policy: 'api-acme', limit: 12000, window: '1m', algorithm: 'sliding-window', from: 'api-acme' }]);
    expect(x.settings).toMatchObject({ key: { value: 'apikey:acme', from: 'api-acme' }, priority: { value: 50, from: 'api' }, degraded: { value: 'open', from: 'api-ent' }, maxKeys: { value: 1000, from: 'api-ent' } });
    expect(engine.explain('apikey:slow').limits[0]).toMatchObject({ limit: 60, from: 'api' });
    expect(engine.explain('nothing-matches-this', undefined)).toMatchObject({ ruleId: 'default' });
    const none = new Engine({ nodeId: 'n0', rules: validateRules({ rules: [api] }) }).explain('x');
    expect(none).toMatchObject({ ruleId: null, level: null, tier: null, chain: [], limits: [] });
  });

  it('a higher priority elsewhere still wins over a more specific level (priority first, then level, then file order)', () => {
    const e = new Engine({ nodeId: 'n0', rules: validateRules({ ...doc, rules: [...doc.rules, { id: 'freeze', key: 'apikey:*', priority: 99, limits: [{ limit: 1, window: '1m' }] }] }) });
    expect(e.decide({ key: 'apikey:acme' }, T0).ruleId).toBe('freeze');
  });

  it('the example hierarchy loads and resolves as its comments say', () => {
    const e = new Engine({ nodeId: 'n0', rules: loadRulesFile(TIERS_EXAMPLE) });
    expect(e.decide({ key: 'apikey:acme' }, T0)).toMatchObject({ ruleId: 'api-acme', level: 'override' });
    expect(e.decide({ key: 'apikey:globex' }, T0)).toMatchObject({ ruleId: 'api-pro', level: 'tier' });
    expect(e.decide({ key: 'apikey:k', metadata: { tier: 'enterprise' } }, T0)).toMatchObject({ ruleId: 'api-enterprise', level: 'tier' });
    expect(e.decide({ key: 'apikey:k' }, T0)).toMatchObject({ ruleId: 'api', level: 'default' });
    expect(e.decide({ key: 'apikey:k-5f2c', metadata: { tier: 'pro' } }, T0)).toMatchObject({ ruleId: 'api-abuser', level: 'override', limit: 5 });
  });
});

describe('hierarchy problems: every one listed at once, with code and path', () => {
  it('unknown parent, unknown tiers, a cycle, a self-parent, a duplicate id, bad patterns and a rule without key or limits', () => {
    const problems = problemsOf({
      tiers: { names: ['free', 'pro'], keys: { 'apikey:a': 'gold' }, default: 'silver' },
      rules: [
        api,
        { id: 'orphan', parent: 'nope', limits: [{ limit: 1, window: '1m' }] },
        { id: 'gold', parent: 'api', tier: 'gold' },
        { id: 'c1', parent: 'c2' },
        { id: 'c2', parent: 'c1' },
        { id: 'me', parent: 'me' },
        { id: 'api', key: 'x', limits: [{ limit: 1, window: '1m' }] },
        { id: 'bad-star', key: 'a*b', limits: [{ limit: 1, window: '1m' }] },
        { id: 'outside', parent: 'api', key: 'user:1' },
        { id: 'bare' },
      ],
    });
    expect(problems.map((p) => [p.code, p.path])).toEqual(
      expect.arrayContaining([
        ['RULE_UNKNOWN_TIER', '/tiers/keys/apikey:a'],
        ['RULE_UNKNOWN_TIER', '/tiers/default'],
        ['RULE_UNKNOWN_PARENT', '/rules/1/parent'],
        ['RULE_UNKNOWN_TIER', '/rules/2/tier'],
        ['RULE_CYCLE', '/rules/3/parent'],
        ['RULE_CYCLE', '/rules/4/parent'],
        ['RULE_CYCLE', '/rules/5/parent'],
        ['RULE_DUPLICATE_ID', '/rules/6/id'],
        ['RULE_INVALID_PATTERN', '/rules/7/key'],
        ['RULE_INVALID_PATTERN', '/rules/8/key'],
        ['RULE_INVALID', '/rules/9/key'],
        ['RULE_INVALID', '/rules/9/limits'],
      ]),
    );
    expect(problems).toHaveLength(12);
    expect(problems.every((p) => p.file === 'rules.yaml' && p.message.length > 0)).toBe(true);
    expect(problems.find((p) => p.code === 'RULE_CYCLE')!.message).toContain('c1 → c2 → c1');
  });

  it('a tier without a tiers section, and a tiers section that is not the schema', () => {
    expect(problemsOf({ rules: [api, { id: 't', parent: 'api', tier: 'pro' }] }).map((p) => [p.code, p.path])).toEqual([['RULE_UNKNOWN_TIER', '/rules/1/tier']]);
    expect(problemsOf({ tiers: { names: [], extra: 1 }, rules: [api] }).map((p) => [p.code, p.path])).toEqual(
      expect.arrayContaining([
        ['RULE_INVALID', '/tiers/names'],
        ['RULE_INVALID', '/tiers/extra'],
      ]),
    );
  });
});

describe('deep hierarchies', () => {
  it('a chain of parents deeper than MAX_DEPTH is refused with a problem, not a crash; a chain of 10 000 rules too', () => {
    const chain = (n: number) => ({ rules: [api, ...Array.from({ length: n }, (_, i) => ({ id: `c${i}`, parent: i === 0 ? 'api' : `c${i - 1}` }))] });
    expect(validateRules(chain(20)).rules).toHaveLength(21);
    const reversed = chain(9_999);
    reversed.rules.reverse();
    const problems = problemsOf(reversed);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.every((p) => p.code === 'RULE_INVALID' && p.message.includes('levels of parents'))).toBe(true);
  });
});
