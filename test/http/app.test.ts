/** HTTP adapter tests with fastify inject (no socket). */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/engine/errors.ts';
import type { Decision, Limiter } from '../../src/engine/types.ts';
import { buildApp, type BuildAppOptions } from '../../src/http/app.ts';
import { makeLimiter, parseSfList } from './helpers.ts';

/** A minute boundary plus 30 s: every fixed window of the test rules is half way through. */
const T0 = Date.UTC(2030, 0, 1, 0, 0, 30);

let clock = T0;
let app: FastifyInstance;
let seq = 0;
/** A fresh key for each use, so tests do not share counts. */
const fresh = (prefix: string) => `${prefix}${++seq}-${Math.random().toString(36).slice(2, 8)}`;

function build(extra: Partial<BuildAppOptions> = {}): FastifyInstance {
  return buildApp({ limiter: makeLimiter(), now: () => clock, ...extra });
}

beforeEach(() => {
  clock = T0;
  app = build();
});
afterEach(async () => {
  await app.close();
});

const check = (payload: unknown, a = app) => a.inject({ method: 'POST', url: '/v1/check', payload: payload as object });
const decision = (r: LightMyRequestResponse) => r.json() as Decision;

/** Remaining after one more (valid) check of `key`. */
async function remainingAfterCheck(key: string, metadata?: Record<string, string>, a = app): Promise<number> {
  const r = await check(metadata ? { key, metadata } : { key }, a);
  expect(r.statusCode).toBe(200);
  return decision(r).remaining;
}

/**
 * Asserts that `bad` is refused with `status` and `code` (and `path` when given), and that
 * nothing was counted for `key`: the check after it has exactly one less remaining than the one
 * before it.
 */
async function expectRefused(
  key: string,
  bad: () => Promise<LightMyRequestResponse>,
  status: number,
  code: string,
  path?: string,
  a = app,
) {
  const before = await remainingAfterCheck(key, undefined, a);
  const r = await bad();
  expect(r.statusCode, r.body).toBe(status);
  expect(r.headers['content-type']).toMatch(/^application\/json/);
  const body = r.json() as { error: string; message: string; path?: string };
  expect(body.error).toBe(code);
  expect(typeof body.message).toBe('string');
  expect(body.message.length).toBeGreaterThan(0);
  if (path !== undefined) expect(body.path).toBe(path);
  expect(r.headers['ratelimit']).toBeUndefined();
  const after = await remainingAfterCheck(key, undefined, a);
  expect(after).toBe(before - 1);
  return body;
}

describe('POST /v1/check: allowed', () => {
  it('answers 200 with the Decision and parseable RateLimit headers', async () => {
    const key = fresh('k:');
    const r = await check({ key });
    expect(r.statusCode).toBe(200);
    const d = decision(r);
    expect(d).toMatchObject({ allowed: true, limit: 5, remaining: 4, retryAfterMs: 0, ruleId: 'per-key', policy: 'per-key' });
    expect(d.resetMs).toBeGreaterThan(0);

    const policy = parseSfList(String(r.headers['ratelimit-policy']));
    expect(policy).toEqual([{ value: 'per-key', params: { q: 5, w: 60 } }]);
    const rl = parseSfList(String(r.headers['ratelimit']));
    expect(rl).toHaveLength(1);
    expect(rl[0].value).toBe('per-key');
    expect(rl[0].params.r).toBe(d.remaining);
    expect(rl[0].params.t).toBe(Math.ceil(d.resetMs / 1000));
    expect(rl[0].params.t).toBeGreaterThanOrEqual(1);
    expect(rl[0].params.t).toBeLessThanOrEqual(60);
    expect(r.headers['retry-after']).toBeUndefined();
  });

  it('lists every policy of the rule in RateLimit-Policy, and the binding one in RateLimit', async () => {
    const key = fresh('multi:');
    const r = await check({ key });
    expect(r.statusCode).toBe(200);
    const policy = parseSfList(String(r.headers['ratelimit-policy']));
    expect(policy).toEqual([
      { value: 'multi/10s', params: { q: 3, w: 10 } },
      { value: 'multi/1m', params: { q: 10, w: 60 } },
    ]);
    const rl = parseSfList(String(r.headers['ratelimit']));
    expect(rl[0].value).toBe(decision(r).policy);
    expect(rl[0].value).toBe('multi/10s'); // 2 left of 3 binds before 9 left of 10
    expect(rl[0].params.r).toBe(2);
  });

  it('counts cost units', async () => {
    const key = fresh('k:');
    const r = await check({ key, cost: 3 });
    expect(decision(r).remaining).toBe(2);
    const r2 = await check({ key, cost: 3 });
    expect(r2.statusCode).toBe(429);
    expect(await remainingAfterCheck(key)).toBe(1);
  });

  it('sends no rate-limit headers when no rule matches', async () => {
    const r = await check({ key: fresh('other:') });
    expect(r.statusCode).toBe(200);
    expect(decision(r)).toMatchObject({ allowed: true, ruleId: null, policy: null });
    expect(r.headers['ratelimit']).toBeUndefined();
    expect(r.headers['ratelimit-policy']).toBeUndefined();
    expect(r.headers['retry-after']).toBeUndefined();
  });

  it('applies metadata constraints (highest priority match wins)', async () => {
    const key = fresh('t:');
    const free = await check({ key, metadata: { tier: 'free' } });
    expect(decision(free).ruleId).toBe('tier-free');
    const paid = await check({ key, metadata: { tier: 'paid' } });
    expect(decision(paid).ruleId).toBe('tier-any');
  });

  it('accepts application/json with a charset and keys with non-ASCII characters', async () => {
    const r = await app.inject({
      method: 'POST',
      url: '/v1/check',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      payload: JSON.stringify({ key: fresh('k:é😀-') }),
    });
    expect(r.statusCode).toBe(200);
    expect(decision(r).ruleId).toBe('per-key');
  });
});

describe('POST /v1/check: denied', () => {
  it('loops to 429 with Retry-After and remaining 0', async () => {
    const key = fresh('k:');
    const statuses: number[] = [];
    let last!: LightMyRequestResponse;
    for (let i = 0; i < 8; i++) {
      last = await check({ key });
      statuses.push(last.statusCode);
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    const d = decision(last);
    expect(d.allowed).toBe(false);
    expect(d.remaining).toBe(0);
    expect(d.retryAfterMs).toBeGreaterThan(0);
    const retryAfter = String(last.headers['retry-after']);
    expect(retryAfter).toMatch(/^\d+$/);
    expect(Number(retryAfter)).toBe(Math.max(1, Math.ceil(d.retryAfterMs / 1000)));
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(retryAfter)).toBeLessThanOrEqual(60);
    const rl = parseSfList(String(last.headers['ratelimit']));
    expect(rl[0]).toEqual({ value: 'per-key', params: { r: 0, t: Math.ceil(d.resetMs / 1000) } });
    expect(parseSfList(String(last.headers['ratelimit-policy']))).toEqual([{ value: 'per-key', params: { q: 5, w: 60 } }]);
  });

  it('allows again once Retry-After has passed', async () => {
    const key = fresh('k:');
    for (let i = 0; i < 5; i++) await check({ key });
    const denied = await check({ key });
    expect(denied.statusCode).toBe(429);
    clock += Number(denied.headers['retry-after']) * 1000;
    const again = await check({ key });
    expect(again.statusCode).toBe(200);
  });
});

describe('POST /v1/check: refused input counts nothing', () => {
  const post = (payload: string, contentType = 'application/json') => () =>
    app.inject({ method: 'POST', url: '/v1/check', headers: { 'content-type': contentType }, payload });

  it('malformed JSON -> 400 INVALID_JSON', async () => {
    const key = fresh('r:');
    await expectRefused(key, post(`{"key":"${key}"`), 400, 'INVALID_JSON');
    await expectRefused(key, post(''), 400, 'INVALID_JSON');
    await expectRefused(key, post(`{"key":"${key}","__proto__":{"x":1}}`), 400, 'INVALID_JSON');
  });

  it('no key -> 400 KEY_MISSING', async () => {
    const key = fresh('r:');
    await expectRefused(key, () => check({ cost: 1 }), 400, 'KEY_MISSING', '/key');
  });

  it('empty key -> 400 KEY_EMPTY', async () => {
    const key = fresh('r:');
    await expectRefused(key, () => check({ key: '' }), 400, 'KEY_EMPTY', '/key');
  });

  it('key over maxKeyBytes in UTF-8 bytes -> 400 KEY_TOO_LONG', async () => {
    const key = fresh('r:');
    await expectRefused(key, () => check({ key: 'k:' + 'x'.repeat(600) }), 400, 'KEY_TOO_LONG', '/key');
    // 257 characters but 514 bytes: only the byte count catches it.
    await expectRefused(key, () => check({ key: 'é'.repeat(257) }), 400, 'KEY_TOO_LONG', '/key');
    // exactly 512 bytes is fine
    const ok = await check({ key: 'é'.repeat(256) });
    expect(ok.statusCode).toBe(200);
  });

  it('key with control characters or lone surrogates, or not a string -> 400 KEY_INVALID', async () => {
    const key = fresh('r:');
    await expectRefused(key, () => check({ key: 'k:a\u0000b' }), 400, 'KEY_INVALID', '/key');
    await expectRefused(key, () => check({ key: 'k:a\nb' }), 400, 'KEY_INVALID', '/key');
    await expectRefused(key, () => check({ key: 'k:a\u007f' }), 400, 'KEY_INVALID', '/key');
    await expectRefused(key, () => check({ key: 'k:a\u0085' }), 400, 'KEY_INVALID', '/key');
    await expectRefused(key, post('{"key":"k:\\ud800x"}'), 400, 'KEY_INVALID', '/key');
    await expectRefused(key, () => check({ key: 42 }), 400, 'KEY_INVALID', '/key');
    await expectRefused(key, () => check({ key: [key] }), 400, 'KEY_INVALID', '/key');
  });

  it('cost not a positive integer <= maxCost -> 400 COST_INVALID', async () => {
    const key = fresh('r:');
    for (const cost of [0, -1, 1.5, '3', null, true, 1_000_001, {}]) {
      await expectRefused(key, () => check({ key, cost }), 400, 'COST_INVALID', '/cost');
    }
    const max = await check({ key: fresh('other:'), cost: 1_000_000 });
    expect(max.statusCode).toBe(200);
  });

  it('metadata not an object of strings -> 400 METADATA_INVALID', async () => {
    const key = fresh('r:');
    for (const metadata of [null, 'tier=free', ['free'], 7]) {
      await expectRefused(key, () => check({ key, metadata }), 400, 'METADATA_INVALID', '/metadata');
    }
    await expectRefused(key, () => check({ key, metadata: { tier: 1 } }), 400, 'METADATA_INVALID', '/metadata/tier');
    await expectRefused(key, () => check({ key, metadata: { tier: null } }), 400, 'METADATA_INVALID', '/metadata/tier');
    await expectRefused(key, () => check({ key, metadata: { tier: { a: 'b' } } }), 400, 'METADATA_INVALID', '/metadata/tier');
    await expectRefused(key, () => check({ key, metadata: { '': 'x' } }), 400, 'METADATA_INVALID', '/metadata');
    await expectRefused(key, () => check({ key, metadata: { tier: 'x'.repeat(257) } }), 400, 'METADATA_INVALID', '/metadata/tier');
    await expectRefused(key, () => check({ key, metadata: { tier: 'é'.repeat(129) } }), 400, 'METADATA_INVALID', '/metadata/tier');
    await expectRefused(key, () => check({ key, metadata: { ['n'.repeat(65)]: 'x' } }), 400, 'METADATA_INVALID', '/metadata');
  });

  it('too many metadata entries -> 400 METADATA_TOO_MANY', async () => {
    const key = fresh('r:');
    const metadata = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`m${i}`, 'v']));
    await expectRefused(key, () => check({ key, metadata }), 400, 'METADATA_TOO_MANY', '/metadata');
    const sixteen = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`m${i}`, 'v']));
    expect((await check({ key: fresh('other:'), metadata: sixteen })).statusCode).toBe(200);
  });

  it('unknown fields -> 400 UNKNOWN_FIELD (not silently dropped)', async () => {
    const key = fresh('r:');
    await expectRefused(key, () => check({ key, kee: 'x' }), 400, 'UNKNOWN_FIELD', '/kee');
    await expectRefused(key, () => check({ key, weight: 'high' }), 400, 'UNKNOWN_FIELD', '/weight');
  });

  it('a body that is not an object, or no body -> 400 INVALID_BODY', async () => {
    const key = fresh('r:');
    await expectRefused(key, post(JSON.stringify([{ key }])), 400, 'INVALID_BODY');
    await expectRefused(key, post('"k:x"'), 400, 'INVALID_BODY');
    await expectRefused(key, () => app.inject({ method: 'POST', url: '/v1/check' }), 400, 'INVALID_BODY');
  });

  it('body over bodyLimit -> 413 BODY_TOO_LARGE', async () => {
    const key = fresh('r:');
    const big = JSON.stringify({ key, metadata: { a: 'x'.repeat(70 * 1024) } });
    await expectRefused(key, post(big), 413, 'BODY_TOO_LARGE');

    const small = build({ bodyLimit: 100 });
    try {
      await expectRefused(key, () => small.inject({ method: 'POST', url: '/v1/check', payload: { key, metadata: { a: 'x'.repeat(120) } } }), 413, 'BODY_TOO_LARGE', undefined, small);
    } finally {
      await small.close();
    }
  });

  it('wrong content type -> 415 UNSUPPORTED_MEDIA_TYPE', async () => {
    const key = fresh('r:');
    await expectRefused(key, post(JSON.stringify({ key }), 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE');
    await expectRefused(key, post(`key=${key}`, 'application/x-www-form-urlencoded'), 415, 'UNSUPPORTED_MEDIA_TYPE');
    await expectRefused(key, post(JSON.stringify({ key }), 'application/xml'), 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('honours custom limits (maxKeyBytes, maxCost, maxMetadataEntries, maxMetadataValueBytes)', async () => {
    const a = build({ maxKeyBytes: 8, maxCost: 2, maxMetadataEntries: 1, maxMetadataValueBytes: 3 });
    try {
      const key = 'r:abc';
      await expectRefused(key, () => check({ key: 'k:abcdefg' }, a), 400, 'KEY_TOO_LONG', '/key', a);
      await expectRefused(key, () => check({ key: 'k:ééé…' }, a), 400, 'KEY_TOO_LONG', '/key', a);
      await expectRefused(key, () => check({ key, cost: 3 }, a), 400, 'COST_INVALID', '/cost', a);
      await expectRefused(key, () => check({ key, metadata: { a: 'b', c: 'd' } }, a), 400, 'METADATA_TOO_MANY', '/metadata', a);
      await expectRefused(key, () => check({ key, metadata: { a: 'bcde' } }, a), 400, 'METADATA_INVALID', '/metadata/a', a);
      await expectRefused(key, () => check({ key, metadata: { a: 'éé' } }, a), 400, 'METADATA_INVALID', '/metadata/a', a);
    } finally {
      await a.close();
    }
  });
});

describe('POST /v1/check/batch', () => {
  const batch = (checks: unknown, a = app) => a.inject({ method: 'POST', url: '/v1/check/batch', payload: { checks } as object });

  it('answers results in order, each decided independently', async () => {
    const k1 = fresh('k:');
    const k2 = fresh('multi:');
    const k3 = fresh('other:');
    const r = await batch([{ key: k1 }, { key: k2 }, { key: k1, cost: 3 }, { key: k3 }, { key: k1, cost: 2 }, { key: k2, cost: 3 }]);
    expect(r.statusCode).toBe(200);
    const { results } = r.json() as { results: Decision[] };
    expect(results.map((d) => [d.ruleId, d.allowed, d.remaining])).toEqual([
      ['per-key', true, 4],
      ['multi', true, 2],
      ['per-key', true, 1],
      [null, true, 0],
      ['per-key', false, 1], // denied: 2 > 1 left, and nothing counted for it
      ['multi', false, 2],
    ]);
    expect(r.headers['ratelimit']).toBeUndefined();
    expect(await remainingAfterCheck(k1)).toBe(0);
  });

  it('refuses the whole batch naming the index when one entry is invalid, counting nothing', async () => {
    const key = fresh('r:');
    const cases: [unknown[], string, string][] = [
      [[{ key }, { key }, { key }, { cost: 1 }], 'KEY_MISSING', '/checks/3/key'],
      [[{ key }, { key: '' }], 'KEY_EMPTY', '/checks/1/key'],
      [[{ key }, { key }, { key: 'é'.repeat(300) }], 'KEY_TOO_LONG', '/checks/2/key'],
      [[{ key }, { key: 'a\tb' }], 'KEY_INVALID', '/checks/1/key'],
      [[{ key }, { key, cost: 0 }], 'COST_INVALID', '/checks/1/cost'],
      [[{ key }, { key, metadata: { a: 1 } }], 'METADATA_INVALID', '/checks/1/metadata/a'],
      [[{ key }, { key, metadata: { a: 'x'.repeat(300) } }], 'METADATA_INVALID', '/checks/1/metadata/a'],
      [[{ key }, { key, extra: 1 }], 'UNKNOWN_FIELD', '/checks/1/extra'],
      [[{ key }, 'k:x'], 'INVALID_BODY', '/checks/1'],
    ];
    for (const [checks, code, path] of cases) {
      await expectRefused(key, () => batch(checks), 400, code, path);
    }
  });

  it('refuses an empty, oversized or missing batch with BATCH_INVALID', async () => {
    const key = fresh('r:');
    await expectRefused(key, () => batch([]), 400, 'BATCH_INVALID', '/checks');
    await expectRefused(key, () => batch({ key }), 400, 'BATCH_INVALID', '/checks');
    await expectRefused(key, () => app.inject({ method: 'POST', url: '/v1/check/batch', payload: {} }), 400, 'BATCH_INVALID', '/checks');
    await expectRefused(key, () => app.inject({ method: 'POST', url: '/v1/check/batch', payload: { checks: [{ key }], x: 1 } }), 400, 'UNKNOWN_FIELD', '/x');
    const small = build({ maxBatch: 3 });
    try {
      await expectRefused(key, () => batch([{ key }, { key }, { key }, { key }], small), 400, 'BATCH_INVALID', '/checks', small);
      expect((await batch([{ key }, { key }, { key }], small)).statusCode).toBe(200);
    } finally {
      await small.close();
    }
  });

  it('accepts maxBatch (1000) entries within the default body limit', async () => {
    const checks = Array.from({ length: 1000 }, () => ({ key: 'atomic:batch-' + seq }));
    const r = await batch(checks);
    expect(r.statusCode).toBe(200);
    const { results } = r.json() as { results: Decision[] };
    expect(results).toHaveLength(1000);
    expect(results.filter((d) => d.allowed)).toHaveLength(100);
    expect(results.slice(0, 100).every((d) => d.allowed)).toBe(true);
    const over = await batch([...checks, { key: 'x' }]);
    expect(over.statusCode).toBe(400);
    expect(over.json().error).toBe('BATCH_INVALID');
  });
});

describe('POST /v1/refund', () => {
  const refund = (payload: unknown) => app.inject({ method: 'POST', url: '/v1/refund', payload: payload as object });
  /** An allowed check of `key`, and the admission id it answered. */
  const admit = async (key: string) => {
    const r = await check({ key });
    expect(r.statusCode).toBe(200);
    return String(decision(r).admissionId);
  };

  it('gives back the admission it names', async () => {
    const key = fresh('k:');
    const ids = [await admit(key), await admit(key), await admit(key)];
    const r = await refund({ admissionId: ids[1] });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ ruleId: 'per-key', refunded: 1 });
    expect(await remainingAfterCheck(key)).toBe(2); // 5 - 3 + 1 - 1
  });

  it('lets a denied key through again', async () => {
    const key = fresh('k:');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await admit(key));
    expect((await check({ key })).statusCode).toBe(429);
    expect((await refund({ admissionId: ids[0] })).statusCode).toBe(200);
    expect((await check({ key })).statusCode).toBe(200);
  });

  it('refuses bad refunds without counting', async () => {
    const key = fresh('r:');
    await expectRefused(key, () => refund({}), 400, 'ADMISSION_ID_MISSING', '/admissionId');
    await expectRefused(key, () => refund({ key, cost: 1 }), 400, 'ADMISSION_ID_MISSING', '/admissionId');
    await expectRefused(key, () => refund({ admissionId: 5 }), 400, 'ADMISSION_ID_INVALID', '/admissionId');
    await expectRefused(key, () => refund({ admissionId: 'x', x: 1 }), 400, 'UNKNOWN_FIELD', '/x');
  });
});

describe('GET /v1/check', () => {
  const get = (qs: string, a = app) => a.inject({ method: 'GET', url: `/v1/check?${qs}` });

  it('answers 200 with the same headers as POST', async () => {
    const key = fresh('k:');
    const r = await get(`key=${encodeURIComponent(key)}&cost=2`);
    expect(r.statusCode).toBe(200);
    expect(decision(r)).toMatchObject({ allowed: true, remaining: 3, ruleId: 'per-key' });
    expect(parseSfList(String(r.headers['ratelimit-policy']))).toEqual([{ value: 'per-key', params: { q: 5, w: 60 } }]);
    expect(parseSfList(String(r.headers['ratelimit']))[0].params.r).toBe(3);
  });

  it('passes metadata as m.<name> parameters', async () => {
    const key = fresh('t:');
    const r = await get(`key=${encodeURIComponent(key)}&m.tier=free`);
    expect(decision(r).ruleId).toBe('tier-free');
    const r2 = await get(`key=${encodeURIComponent(key)}&m.tier=gold`);
    expect(decision(r2).ruleId).toBe('tier-any');
  });

  it('answers 429 by default and the configured denyStatus (403) when denied', async () => {
    const key = fresh('k:');
    for (let i = 0; i < 5; i++) expect((await get(`key=${key}`)).statusCode).toBe(200);
    const denied = await get(`key=${key}`);
    expect(denied.statusCode).toBe(429);

    const proxy = build({ denyStatus: 403 });
    try {
      for (let i = 0; i < 5; i++) expect((await get(`key=${key}`, proxy)).statusCode).toBe(200);
      const r = await get(`key=${key}`, proxy);
      expect(r.statusCode).toBe(403);
      expect(decision(r).allowed).toBe(false);
      expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(parseSfList(String(r.headers['ratelimit']))[0].params.r).toBe(0);
      // POST keeps 429
      const p = await check({ key }, proxy);
      expect(p.statusCode).toBe(429);
    } finally {
      await proxy.close();
    }
  });

  it('refuses bad query input without counting', async () => {
    const key = fresh('r:');
    await expectRefused(key, () => get('key='), 400, 'KEY_EMPTY', '/key');
    await expectRefused(key, () => get(`key=${key}&key=${key}`), 400, 'KEY_INVALID', '/key');
    await expectRefused(key, () => get(`key=${encodeURIComponent(key + '\u0001')}`), 400, 'KEY_INVALID', '/key');
    await expectRefused(key, () => get(`key=${'é'.repeat(257)}`), 400, 'KEY_TOO_LONG', '/key');
    for (const cost of ['0', '-1', '1.5', 'abc', '', '1000001', '1e3']) {
      await expectRefused(key, () => get(`key=${key}&cost=${cost}`), 400, 'COST_INVALID', '/cost');
    }
    await expectRefused(key, () => get(`key=${key}&m.a=1&m.a=2`), 400, 'METADATA_INVALID', '/metadata/a');
    await expectRefused(key, () => get(`key=${key}&m.=1`), 400, 'METADATA_INVALID');
    await expectRefused(key, () => get(`key=${key}&m.a=${'x'.repeat(257)}`), 400, 'METADATA_INVALID', '/metadata/a');
    const many = Array.from({ length: 17 }, (_, i) => `m.n${i}=v`).join('&');
    await expectRefused(key, () => get(`key=${key}&${many}`), 400, 'METADATA_TOO_MANY', '/metadata');
    await expectRefused(key, () => get(`key=${key}&tier=free`), 400, 'UNKNOWN_FIELD', '/tier');
  });

  it('does not expose HEAD (it would count)', async () => {
    const key = fresh('k:');
    const before = await remainingAfterCheck(key);
    const r = await app.inject({ method: 'HEAD', url: `/v1/check?key=${key}` });
    expect(r.statusCode).toBe(405);
    expect(await remainingAfterCheck(key)).toBe(before - 1);
  });
});

describe('routes, health and readiness', () => {
  it('unknown route -> 404 NOT_FOUND, wrong method -> 405 METHOD_NOT_ALLOWED with Allow', async () => {
    const r = await app.inject({ method: 'POST', url: '/v1/nope', payload: { key: 'k:a' } });
    expect(r.statusCode).toBe(404);
    expect(r.json()).toMatchObject({ error: 'NOT_FOUND' });
    const m = await app.inject({ method: 'DELETE', url: '/v1/check' });
    expect(m.statusCode).toBe(405);
    expect(m.json()).toMatchObject({ error: 'METHOD_NOT_ALLOWED' });
    expect(String(m.headers['allow']).split(', ').sort()).toEqual(['GET', 'POST']);
  });

  it('GET /healthz -> 200 {status:"ok"}', async () => {
    const r = await app.inject({ method: 'GET', url: '/healthz' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ status: 'ok' });
  });

  it('GET /readyz -> 200 when ready, 503 when not, 200 + degraded when degraded', async () => {
    let report: { ready: boolean; degraded?: boolean; reasons?: string[]; details?: Record<string, unknown> } = { ready: true };
    const a = build({ readiness: () => report });
    try {
      let r = await a.inject({ method: 'GET', url: '/readyz' });
      expect(r.statusCode).toBe(200);
      expect(r.json()).toEqual({ ready: true, degraded: false, reasons: [] });

      report = { ready: false, reasons: ['rules not loaded', 'storage not open'] };
      r = await a.inject({ method: 'GET', url: '/readyz' });
      expect(r.statusCode).toBe(503);
      expect(r.json()).toEqual({ ready: false, degraded: false, reasons: ['rules not loaded', 'storage not open'] });

      report = { ready: true, degraded: true, reasons: ['replication down: local share'], details: { lagMs: 1234 } };
      r = await a.inject({ method: 'GET', url: '/readyz' });
      expect(r.statusCode).toBe(200);
      expect(r.json()).toEqual({ ready: true, degraded: true, reasons: ['replication down: local share'], details: { lagMs: 1234 } });

      report = undefined as never; // a throwing probe is "not ready", not a 500
      r = await a.inject({ method: 'GET', url: '/readyz' });
      expect(r.statusCode).toBe(503);
      expect(r.json().ready).toBe(false);
    } finally {
      await a.close();
    }
  });

  it('reports every decision to onDecision with its route', async () => {
    const seen: [boolean, string][] = [];
    const a = build({ onDecision: (d, route) => seen.push([d.allowed, route]) });
    try {
      const key = fresh('k:');
      await check({ key }, a);
      await a.inject({ method: 'POST', url: '/v1/check/batch', payload: { checks: [{ key }, { key, cost: 9 }] } });
      await a.inject({ method: 'GET', url: `/v1/check?key=${key}` });
      await check({ key: '' }, a); // refused: not a decision
      expect(seen).toEqual([
        [true, 'POST /v1/check'],
        [true, 'POST /v1/check/batch'],
        [false, 'POST /v1/check/batch'],
        [true, 'GET /v1/check'],
      ]);
    } finally {
      await a.close();
    }
  });

  it('a failing onDecision hook does not fail the request', async () => {
    const a = build({
      onDecision: () => {
        throw new Error('metrics down');
      },
    });
    try {
      expect((await check({ key: fresh('k:') }, a)).statusCode).toBe(200);
    } finally {
      await a.close();
    }
  });

  it('a limiter failure is 500 INTERNAL without leaking the message', async () => {
    const limiter = makeLimiter();
    const a = buildApp({
      limiter: Object.assign(Object.create(limiter) as Limiter, { decide: () => { throw new Error('secret'); } }),
    });
    try {
      const r = await check({ key: 'k:a' }, a);
      expect(r.statusCode).toBe(500);
      expect(r.json()).toEqual({ error: 'INTERNAL', message: 'An unexpected internal error.' });
    } finally {
      await a.close();
    }
  });

  it('extraRoutes registers more routes on the same instance', async () => {
    const a = build({ extraRoutes: (x) => x.get('/metrics', async () => 'ok') });
    try {
      expect((await a.inject({ method: 'GET', url: '/metrics' })).body).toBe('ok');
    } finally {
      await a.close();
    }
  });

  it('refuses invalid options with one ConfigError listing every problem', () => {
    let err: unknown;
    try {
      buildApp({ limiter: makeLimiter(), denyStatus: 200, maxKeyBytes: 0, maxBatch: 1.5 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
    expect((err as ConfigError).problems.map((p) => [p.path, p.code]).sort()).toEqual([
      ['/denyStatus', 'OUT_OF_RANGE'],
      ['/maxBatch', 'TYPE_MISMATCH'],
      ['/maxKeyBytes', 'OUT_OF_RANGE'],
    ]);
  });
});

describe('logger option', () => {
  it('accepts false, logger options, or a pino instance', async () => {
    const { pino } = await import('pino');
    const lines: string[] = [];
    const instance = pino({ level: 'error' }, { write: (l: string) => void lines.push(l) });
    for (const logger of [false, { level: 'silent' }, instance]) {
      const a = buildApp({ limiter: makeLimiter(), logger });
      try {
        expect((await a.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
      } finally {
        await a.close();
      }
    }
    // errors of 500 are logged through the instance
    const broken = makeLimiter();
    const a = buildApp({ limiter: Object.assign(Object.create(broken) as Limiter, { decide: () => { throw new Error('boom'); } }), logger: instance });
    try {
      expect((await a.inject({ method: 'POST', url: '/v1/check', payload: { key: 'k:x' } })).statusCode).toBe(500);
      expect(lines.some((l) => l.includes('boom'))).toBe(true);
    } finally {
      await a.close();
    }
  });
});

describe('commit barrier (sync durability)', () => {
  it('answers an allowed check, a batch and a refund only after the barrier resolves', async () => {
    const events: string[] = [];
    let release!: () => void;
    let calls = 0;
    const a = build({
      commit: () => {
        calls++;
        return new Promise<void>((res) => {
          release = () => {
            events.push('committed');
            res();
          };
        });
      },
    });
    /** Waits until the barrier has been asked for `n` times (the app compiles its schemas on first use). */
    const barrierCalls = async (n: number) => {
      while (calls < n) await new Promise((res) => setTimeout(res, 5));
      await new Promise((res) => setTimeout(res, 20)); // and the answer is still held back
    };
    try {
      const key = fresh('k:');
      const pending = check({ key }, a).then((r) => {
        events.push('answered');
        return r;
      });
      await barrierCalls(1);
      expect(events).toEqual([]);
      release();
      const r = await pending;
      expect(r.statusCode).toBe(200);
      expect(events).toEqual(['committed', 'answered']);
      expect(parseSfList(String(r.headers['ratelimit']))[0].params.r).toBe(4);

      const b = a.inject({ method: 'POST', url: '/v1/check/batch', payload: { checks: [{ key }] } });
      await barrierCalls(2);
      release();
      expect((await b).statusCode).toBe(200);

      const f = a.inject({ method: 'POST', url: '/v1/refund', payload: { admissionId: decision(r).admissionId } });
      await barrierCalls(3);
      release();
      expect((await f).json()).toEqual({ ruleId: 'per-key', refunded: 1 });
      expect(calls).toBe(3);
    } finally {
      await a.close();
    }
  });

  it('does not wait when nothing was counted (denied, no rule, refused)', async () => {
    let calls = 0;
    const a = build({ commit: () => (calls++, new Promise<void>(() => {})) });
    try {
      expect((await check({ key: fresh('other:') }, a)).statusCode).toBe(200);
      expect((await check({ key: fresh('k:'), cost: 6 }, a)).statusCode).toBe(429);
      expect((await check({ key: '' }, a)).statusCode).toBe(400);
      expect(calls).toBe(0);
    } finally {
      await a.close();
    }
  });

  it('answers 503 STORAGE_FAILURE when the commit fails: admitted but not durable is not promised', async () => {
    const a = build({ commit: () => Promise.reject(new Error('disk full')) });
    try {
      const r = await check({ key: fresh('k:') }, a);
      expect(r.statusCode).toBe(503);
      expect(r.json()).toMatchObject({ error: 'STORAGE_FAILURE' });
      expect(r.json().message).toMatch(/disk full/);
      const t = build({
        commit: () => {
          throw new Error('locked');
        },
      });
      try {
        const r2 = await t.inject({ method: 'POST', url: '/v1/refund', payload: { admissionId: `http-test.${(clock + 60_000).toString(36)}.never-issued` } });
        // A refused refund changed nothing, so nothing had to be committed.
        expect(r2.json()).toMatchObject({ error: 'ADMISSION_UNKNOWN' });
        const r3 = await check({ key: fresh('k:') }, t);
        expect(r3.statusCode).toBe(503);
      } finally {
        await t.close();
      }
    } finally {
      await a.close();
    }
  });
});
