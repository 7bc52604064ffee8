/**
 * One way to validate: every schema is compiled by one ajv instance and its errors become one
 * problem shape `{code, path, message, file?}`; the same kind of problem gets the same code and
 * message whether it is in the node options, a region file or an HTTP body.
 */
import { Type } from '@sinclair/typebox';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.ts';
import { ConfigError, type Problem } from '../src/engine/errors.ts';
import { compileSchema, problemsFromAjv, validate } from '../src/engine/validation.ts';
import { buildApp } from '../src/http/app.ts';
import { MAX_PROBLEMS } from '../src/http/errors.ts';
import { parseRegion } from '../regions/topology.ts';
import { regionFile } from './helpers/region-files.ts';
import { makeLimiter } from './http/helpers.ts';

function configProblems(argv: string[]): Problem[] {
  try {
    loadConfig(argv, {});
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  throw new Error('expected a ConfigError');
}

function regionProblems(edit: (r: ReturnType<typeof regionFile>) => void): Problem[] {
  const region = regionFile('eu-west');
  edit(region);
  const problems: Problem[] = [];
  expect(parseRegion(region, 'regions/eu-west.json', problems)).toBeNull();
  return problems;
}

let app: ReturnType<typeof buildApp> | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function httpProblems(body: unknown): Promise<{ error: string; path?: string; problems: Problem[] }> {
  app ??= buildApp({ limiter: makeLimiter() });
  const r = await app.inject({ method: 'POST', url: '/v1/check', payload: body as object });
  expect(r.statusCode).toBe(400);
  return r.json();
}

const SHAPE = ['code', 'file', 'message', 'path'];
const keysOf = (p: Problem) => Object.keys(p).filter((k) => SHAPE.includes(k)).sort();

describe('the same kind of problem gets the same code and shape everywhere', () => {
  it('an unknown field: UNKNOWN_FIELD at its path, from the options, a region file and an HTTP body', async () => {
    const [fromConfig] = configProblems(['--rules', 'r.yaml', '--colour', 'blue']);
    const [fromRegion] = regionProblems((r) => Object.assign(r, { colour: 'blue' }));
    const fromHttp = await httpProblems({ key: 'k', colour: 'blue' });
    expect(fromConfig).toEqual({ code: 'UNKNOWN_FIELD', file: '<command line>', path: '/colour', message: 'unknown option "--colour"' });
    expect(fromRegion).toEqual({ code: 'UNKNOWN_FIELD', file: 'regions/eu-west.json', path: '/colour', message: 'unknown field "colour"' });
    expect(fromHttp).toMatchObject({ error: 'UNKNOWN_FIELD', path: '/colour' });
    expect(fromHttp.problems).toEqual([{ code: 'UNKNOWN_FIELD', path: '/colour', message: 'unknown field "colour"' }]);
    for (const p of [fromConfig!, fromRegion!, fromHttp.problems[0]!]) expect(keysOf(p)).toEqual(Object.keys(p).sort());
  });

  it('a number out of range: OUT_OF_RANGE with the bound and the value, in the options and a region file', () => {
    const [fromConfig] = configProblems(['--rules', 'r.yaml', '--port', '70000']);
    const [fromRegion] = regionProblems((r) => (r.nodes[0]!.httpPort = 70000));
    expect(fromConfig).toEqual({ code: 'OUT_OF_RANGE', file: '--port', path: '/port', message: 'must be at most 65535, got 70000' });
    expect(fromRegion).toEqual({ code: 'OUT_OF_RANGE', file: 'regions/eu-west.json', path: '/nodes/0/httpPort', message: 'must be at most 65535, got 70000' });
  });

  it('a value of the wrong type: TYPE_MISMATCH, never coerced, in the options and a region file', () => {
    const [fromConfig] = configProblems(['--rules', 'r.yaml', '--port', 'eighty']);
    const [fromRegion] = regionProblems((r) => (r.nats.clientPort = '4222'));
    expect(fromConfig).toEqual({ code: 'TYPE_MISMATCH', file: '--port', path: '/port', message: 'must be an integer, got "eighty"' });
    expect(fromRegion).toEqual({ code: 'TYPE_MISMATCH', file: 'regions/eu-west.json', path: '/nats/clientPort', message: 'must be an integer, got "4222"' });
  });

  it('a name of the wrong form: PATTERN_MISMATCH with the same message for a node id in the options and in a region file', () => {
    const [fromConfig] = configProblems(['--rules', 'r.yaml', '--node-id', 'a.b']);
    const [fromRegion] = regionProblems((r) => (r.nodes[0]!.id = 'a.b'));
    expect(fromConfig).toMatchObject({ code: 'PATTERN_MISMATCH', path: '/nodeId' });
    expect(fromRegion).toMatchObject({ code: 'PATTERN_MISMATCH', path: '/nodes/0/id' });
    expect(fromConfig!.message).toBe(fromRegion!.message);
    expect(fromConfig!.message).toMatch(/^must be letters, digits, "-" and "_" .*, got "a\.b"$/);
  });

  it('a missing field: FIELD_MISSING at the missing field, in the options and a region file', () => {
    const [fromConfig] = configProblems([]);
    const [fromRegion] = regionProblems((r) => delete (r as Partial<typeof r>).nodes);
    expect(fromConfig).toMatchObject({ code: 'FIELD_MISSING', path: '/rules' });
    expect(fromRegion).toEqual({ code: 'FIELD_MISSING', file: 'regions/eu-west.json', path: '/nodes', message: 'missing required field "nodes"' });
  });

  it('an HTTP body lists every problem in the same shape, the first as error and path (fields keep their request codes)', async () => {
    const r = await httpProblems({ key: '', cost: 0, colour: 1 });
    expect(r.problems.map((p) => [p.code, p.path]).sort()).toEqual([
      ['COST_INVALID', '/cost'],
      ['KEY_EMPTY', '/key'],
      ['UNKNOWN_FIELD', '/colour'],
    ]);
    expect(r.problems.every((p) => Object.keys(p).sort().join() === 'code,message,path')).toBe(true);
    expect([r.error, r.path]).toEqual([r.problems[0]!.code, r.problems[0]!.path]);
    expect(r.problems.find((p) => p.path === '/cost')!.message).toBe('must be at least 1, got 0');
  });

  it('a batch of bad entries lists at most MAX_PROBLEMS problems', async () => {
    app ??= buildApp({ limiter: makeLimiter() });
    const checks = Array.from({ length: 300 }, () => ({ key: '' }));
    const r = await app.inject({ method: 'POST', url: '/v1/check/batch', payload: { checks } });
    expect(r.statusCode).toBe(400);
    const body = r.json() as { error: string; problems: Problem[] };
    expect(body.error).toBe('KEY_EMPTY');
    expect(body.problems).toHaveLength(MAX_PROBLEMS);
    expect(body.problems[99]).toMatchObject({ code: 'KEY_EMPTY', path: '/checks/99/key' });
  });
});

describe('problemsFromAjv', () => {
  const schema = Type.Object(
    {
      mode: Type.Union([Type.Literal('share'), Type.Literal('open')]),
      size: Type.Integer({ minimum: 1, maximum: 10 }),
      name: Type.String({ pattern: '^[a-z]+$', description: 'lower-case letters' }),
      secret: Type.String({ pattern: '^\\S{16,}$', writeOnly: true, description: 'at least 16 characters without spaces' }),
      either: Type.Union([Type.String(), Type.Array(Type.String())]),
      tags: Type.Array(Type.String(), { uniqueItems: true }),
      labels: Type.Unsafe<Record<string, string>>({ type: 'object', propertyNames: { type: 'string', maxLength: 3 }, additionalProperties: { type: 'string' } }),
    },
    { additionalProperties: false },
  );
  const check = compileSchema(schema);
  const valid = { mode: 'open', size: 3, name: 'abc', secret: 'x'.repeat(16), either: ['a'], tags: ['a', 'b'], labels: { ab: 'x' } };

  it('accepts a valid document and lists every problem of an invalid one with a kind code and a clear message', () => {
    expect(validate(check, valid)).toEqual([]);
    const bad = { mode: 'loud', size: 11, name: 'ABC', secret: 'hunter2 hunter2', either: 5, tags: ['a', 'a'], labels: { long: 'x' } };
    expect(validate(check, bad, { file: 'doc.json' })).toEqual([
      { code: 'VALUE_NOT_ALLOWED', path: '/mode', message: 'must be one of "share", "open", got "loud"', file: 'doc.json' },
      { code: 'OUT_OF_RANGE', path: '/size', message: 'must be at most 10, got 11', file: 'doc.json' },
      { code: 'PATTERN_MISMATCH', path: '/name', message: 'must be lower-case letters, got "ABC"', file: 'doc.json' },
      { code: 'PATTERN_MISMATCH', path: '/secret', message: 'must be at least 16 characters without spaces', file: 'doc.json' },
      { code: 'TYPE_MISMATCH', path: '/either', message: 'must be a string or an array, got 5', file: 'doc.json' },
      { code: 'VALUE_INVALID', path: '/tags', message: 'must not repeat an item (items 0 and 1 are equal)', file: 'doc.json' },
      { code: 'VALUE_INVALID', path: '/labels', message: 'has a name "long" that must have at most 3 characters', file: 'doc.json' },
    ]);
  });

  it('never repeats the value of a writeOnly (secret) field', () => {
    expect(JSON.stringify(validate(check, { ...valid, secret: 'hunter2 hunter2' }))).not.toContain('hunter2');
  });

  it('takes one code for every problem, or a function refining the kind code', () => {
    check({ ...valid, size: 0, extra: 1 });
    expect(problemsFromAjv(check.errors, { code: 'RULE_INVALID' }).map((p) => p.code)).toEqual(['RULE_INVALID', 'RULE_INVALID']);
    const refined = problemsFromAjv(check.errors, { code: (kind, e) => (e.instancePath === '/size' ? 'COST_INVALID' : kind) });
    expect(refined.map((p) => [p.code, p.path])).toEqual([['UNKNOWN_FIELD', '/extra'], ['COST_INVALID', '/size']]);
  });

  it('compiles strictly: a schema with an unknown keyword is refused', () => {
    expect(() => compileSchema({ type: 'string', maxlength: 3 })).toThrow(/unknown keyword/);
  });
});
