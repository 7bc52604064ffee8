/**
 * Rules files: parsing (YAML and JSON), normalisation, freezing, and validation that lists every
 * problem with its code, file and JSON path.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.ts';
import { ConfigError, type ConfigProblem } from '../../src/engine/errors.ts';
import { DEFAULT_SLOTS_PER_WINDOW, loadRulesFile, parseRules, validateRules } from '../../src/engine/rules.ts';

const EXAMPLE = fileURLToPath(new URL('../../examples/rules.yaml', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'rules-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The problems of an invalid document (fails the test if it is accepted). */
function problemsOf(fn: () => unknown): { error: ConfigError; problems: ConfigProblem[] } {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const error = err as ConfigError;
    return { error, problems: [...error.problems] };
  }
  throw new Error('the rules were accepted');
}

const rule = (over: Record<string, unknown> = {}) => ({ id: 'r', key: '*', limits: [{ limit: 1, window: '1m' }], ...over });
const invalid = (doc: unknown) => problemsOf(() => validateRules(doc, 'rules.yaml')).problems;

describe('valid rules', () => {
  it('the example rules file loads, with a catch-all rule', () => {
    const cfg = loadRulesFile(EXAMPLE);
    expect(cfg.rules.length).toBeGreaterThanOrEqual(4);
    expect(cfg.rules.some((r) => r.key === '*')).toBe(true);
    const engine = new Engine({ nodeId: 'n0', rules: cfg });
    expect(engine.decide({ key: 'alice' }, Date.UTC(2030, 0, 1)).ruleId).toBe('default');
    expect(engine.decide({ key: 'apikey:1', metadata: { tier: 'pro' } }, Date.UTC(2030, 0, 1)).ruleId).toBe('api-paid');
  });

  it('YAML and JSON read the same, with defaults filled in and values normalised', () => {
    const yaml = `
rules:
  - id: a
    key: "user:*"
    metadata: { tier: free, region: [eu, us] }
    limits:
      - { limit: 5, window: 10s }
      - { limit: 100, window: 3600000, algorithm: fixed-window }
      - { limit: 600, window: 1m, algorithm: token-bucket, burst: 50, slotsPerWindow: 4 }
`;
    const json = JSON.stringify({
      rules: [
        {
          id: 'a',
          key: 'user:*',
          metadata: { tier: 'free', region: ['eu', 'us'] },
          limits: [
            { limit: 5, window: '10s' },
            { limit: 100, window: 3_600_000, algorithm: 'fixed-window' },
            { limit: 600, window: '1m', algorithm: 'token-bucket', burst: 50, slotsPerWindow: 4 },
          ],
        },
      ],
    });
    const a = parseRules(yaml);
    expect(parseRules(json)).toEqual(a);
    expect(a).toEqual({
      version: 1,
      slotsPerWindow: DEFAULT_SLOTS_PER_WINDOW,
      rules: [
        {
          id: 'a',
          key: 'user:*',
          metadata: { tier: ['free'], region: ['eu', 'us'] },
          priority: 0,
          limits: [
            { limit: 5, windowMs: 10_000, window: '10s', algorithm: 'sliding-window' },
            { limit: 100, windowMs: 3_600_000, window: '3600000ms', algorithm: 'fixed-window' },
            { limit: 600, windowMs: 60_000, window: '1m', algorithm: 'token-bucket', burst: 50, slotsPerWindow: 4 },
          ],
        },
      ],
    });
  });

  it('accepts every documented duration form', () => {
    for (const [window, ms] of [['500ms', 500], ['1s', 1000], ['1.5s', 1500], ['10m', 600_000], ['1h', 3_600_000], ['1d', 86_400_000], [250, 250]] as const) {
      expect(validateRules({ rules: [rule({ limits: [{ limit: 1, window }] })] }).rules[0].limits[0].windowMs).toBe(ms);
    }
  });

  it('the result is deeply frozen', () => {
    const cfg = validateRules({ rules: [rule({ metadata: { a: ['x'] } })] });
    expect(Object.isFrozen(cfg)).toBe(true);
    expect(Object.isFrozen(cfg.rules)).toBe(true);
    expect(Object.isFrozen(cfg.rules[0].limits[0])).toBe(true);
    expect(Object.isFrozen(cfg.rules[0].metadata.a)).toBe(true);
  });
});

describe('invalid rules: every problem, with code, file and path', () => {
  it('duplicate ids', () => {
    expect(invalid({ rules: [rule({ id: 'a' }), rule({ id: 'b' }), rule({ id: 'a' }), rule({ id: 'a' })] })).toEqual([
      expect.objectContaining({ code: 'RULE_DUPLICATE_ID', file: 'rules.yaml', path: '/rules/2/id' }),
      expect.objectContaining({ code: 'RULE_DUPLICATE_ID', file: 'rules.yaml', path: '/rules/3/id' }),
    ]);
  });

  it('bad windows', () => {
    for (const window of ['5 minutes', '0s', '-1s', '1.5ms', '1w', '', '10', '367d', 0, -5]) {
      const problems = invalid({ rules: [rule({ limits: [{ limit: 1, window }] })] });
      expect(problems, `window ${JSON.stringify(window)}`).toEqual([expect.objectContaining({ code: 'RULE_INVALID_WINDOW', file: 'rules.yaml', path: '/rules/0/limits/0/window' })]);
    }
    // A window of the wrong type is a schema problem (reported once, at the same path).
    for (const window of [1.5, true, null, ['1m']]) {
      expect(invalid({ rules: [rule({ limits: [{ limit: 1, window }] })] })).toEqual([expect.objectContaining({ code: 'RULE_INVALID', path: '/rules/0/limits/0/window' })]);
    }
  });

  it('unknown fields at every level', () => {
    expect(invalid({ rules: [rule()], extra: 1 })).toEqual([expect.objectContaining({ code: 'RULE_INVALID', path: '/extra' })]);
    expect(invalid({ rules: [rule({ prio: 1 })] })).toEqual([expect.objectContaining({ code: 'RULE_INVALID', path: '/rules/0/prio', message: 'unknown field "prio"' })]);
    expect(invalid({ rules: [rule({ limits: [{ limit: 1, window: '1m', windw: '1m' }] })] })).toEqual([
      expect.objectContaining({ code: 'RULE_INVALID', path: '/rules/0/limits/0/windw' }),
    ]);
  });

  it('burst on a limit that is not a token bucket', () => {
    for (const algorithm of [undefined, 'sliding-window', 'fixed-window']) {
      const limits = [{ limit: 1, window: '1m', burst: 5, ...(algorithm ? { algorithm } : {}) }];
      expect(invalid({ rules: [rule({ limits })] })).toEqual([expect.objectContaining({ code: 'RULE_INVALID', path: '/rules/0/limits/0/burst' })]);
    }
    expect(validateRules({ rules: [rule({ limits: [{ limit: 1, window: '1m', burst: 5, algorithm: 'token-bucket' }] })] }).rules[0].limits[0].burst).toBe(5);
  });

  it('"*" anywhere but alone or at the end of a key pattern', () => {
    for (const key of ['a*b', '*a', '**', 'a**', 'user:*:x']) {
      expect(invalid({ rules: [rule({ key })] }), key).toEqual([expect.objectContaining({ code: 'RULE_INVALID_PATTERN', path: '/rules/0/key' })]);
    }
    for (const key of ['*', 'a*', 'user:*', 'exact']) expect(() => validateRules({ rules: [rule({ key })] })).not.toThrow();
  });

  it('two limits of one rule with the same algorithm and window', () => {
    expect(invalid({ rules: [rule({ limits: [{ limit: 1, window: '1m' }, { limit: 2, window: '60s' }] })] })).toEqual([
      expect.objectContaining({ code: 'RULE_INVALID', path: '/rules/0/limits/1' }),
    ]);
  });

  it('schema violations: types, ranges, required fields, enums', () => {
    const cases: [unknown, string][] = [
      [{}, '/rules'],
      [{ rules: [{ key: '*', limits: [{ limit: 1, window: '1m' }] }] }, '/rules/0/id'],
      [{ rules: [rule({ limits: [] })] }, '/rules/0/limits'],
      [{ rules: [rule({ limits: [{ limit: 0, window: '1m' }] })] }, '/rules/0/limits/0/limit'],
      [{ rules: [rule({ limits: [{ limit: 1.5, window: '1m' }] })] }, '/rules/0/limits/0/limit'],
      [{ rules: [rule({ limits: [{ limit: 1, window: '1m', algorithm: 'leaky' }] })] }, '/rules/0/limits/0/algorithm'],
      [{ rules: [rule({ id: 'has space' })] }, '/rules/0/id'],
      [{ rules: [rule({ key: '' })] }, '/rules/0/key'],
      [{ rules: [rule({ priority: 'high' })] }, '/rules/0/priority'],
      [{ rules: [rule({ metadata: { tier: 5 } })] }, '/rules/0/metadata/tier'],
      [{ version: 2, rules: [rule()] }, '/version'],
      [{ slotsPerWindow: 0, rules: [rule()] }, '/slotsPerWindow'],
    ];
    for (const [doc, path] of cases) {
      const problems = invalid(doc);
      expect(problems.length, JSON.stringify(doc)).toBeGreaterThan(0);
      expect(problems.every((p) => p.code === 'RULE_INVALID' && p.file === 'rules.yaml')).toBe(true);
      expect(problems.map((p) => p.path), JSON.stringify(doc)).toContain(path);
    }
  });

  it('a file with many problems lists them all, and the message names each', () => {
    const yaml = `
rules:
  - id: dup
    key: "a*b"
    limits:
      - { limit: 1, window: soon }
      - { limit: 1, window: 1m, burst: 3 }
  - id: dup
    key: "*"
    limits: [{ limit: 1, window: 1m }]
`;
    const path = join(dir, 'many.yaml');
    writeFileSync(path, yaml);
    const { error, problems } = problemsOf(() => loadRulesFile(path));
    expect(error.code).toBe('CONFIG_INVALID');
    expect(problems.map((p) => [p.code, p.file, p.path])).toEqual([
      ['RULE_INVALID_PATTERN', path, '/rules/0/key'],
      ['RULE_INVALID_WINDOW', path, '/rules/0/limits/0/window'],
      ['RULE_INVALID', path, '/rules/0/limits/1/burst'],
      ['RULE_DUPLICATE_ID', path, '/rules/1/id'],
    ]);
    for (const p of problems) expect(error.message).toContain(`${p.code} ${path} at ${p.path}`);
  });

  it('schema problems are all listed too (not just the first)', () => {
    const problems = invalid({ rules: [rule({ extra: 1 }), rule({ id: 'b', limits: [{ limit: -1, window: '1m' }] }), { id: 'c' }] });
    const paths = problems.map((p) => p.path);
    expect(paths).toEqual(expect.arrayContaining(['/rules/0/extra', '/rules/1/limits/0/limit', '/rules/2/key', '/rules/2/limits']));
  });

  it('schema problems and semantic problems are listed together', () => {
    const problems = invalid({
      rules: [rule({ id: 'a', extra: true }), rule({ id: 'a', key: 'x*y', limits: [{ limit: 1, window: 'never' }, { limit: 0, window: '1m', burst: 2 }] }), 'not a rule'],
    });
    expect(problems.map((p) => [p.code, p.path])).toEqual(
      expect.arrayContaining([
        ['RULE_INVALID', '/rules/0/extra'],
        ['RULE_INVALID', '/rules/1/limits/1/limit'],
        ['RULE_INVALID', '/rules/2'],
        ['RULE_DUPLICATE_ID', '/rules/1/id'],
        ['RULE_INVALID_PATTERN', '/rules/1/key'],
        ['RULE_INVALID_WINDOW', '/rules/1/limits/0/window'],
        ['RULE_INVALID', '/rules/1/limits/1/burst'],
      ]),
    );
    expect(problems.every((p) => p.file === 'rules.yaml')).toBe(true);
    // Never the same problem twice.
    expect(new Set(problems.map((p) => `${p.code}|${p.path}|${p.message}`)).size).toBe(problems.length);
    // A document that is not even an object of rules is one schema problem, not a crash.
    for (const doc of [null, 5, 'rules', [], { rules: 'x' }]) expect(invalid(doc).length).toBeGreaterThan(0);
  });

  it('an unreadable or unparsable file is CONFIG_UNREADABLE with the file named', () => {
    const missing = join(dir, 'missing.yaml');
    const a = problemsOf(() => loadRulesFile(missing));
    expect(a.error.code).toBe('CONFIG_UNREADABLE');
    expect(a.problems).toEqual([expect.objectContaining({ code: 'CONFIG_UNREADABLE', file: missing })]);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'rules: [ { id: a, key: "*", limits: [ }');
    const b = problemsOf(() => loadRulesFile(bad));
    expect(b.error.code).toBe('CONFIG_UNREADABLE');
    expect(b.problems[0]).toMatchObject({ code: 'CONFIG_UNREADABLE', file: bad });
    // Duplicate keys in a YAML mapping are refused rather than silently overwritten.
    expect(problemsOf(() => parseRules('rules: []\nrules: []', 'dup.yaml')).problems[0]).toMatchObject({ code: 'CONFIG_UNREADABLE', file: 'dup.yaml' });
  });
});
