/** RateLimit header formatting (src/http/headers.ts). */
import { describe, expect, it } from 'vitest';
import { parseRules } from '../../src/engine/rules.ts';
import type { Decision, Limiter, PolicyInfo } from '../../src/engine/types.ts';
import { RateLimitHeaders, formatPolicyHeader, retryAfterSeconds, sfString } from '../../src/http/headers.ts';
import { buildApp } from '../../src/http/app.ts';
import { TEST_RULES_YAML, makeLimiter, parseSfList } from './helpers.ts';

describe('structured-field formatting', () => {
  it('quotes and escapes sf-strings; replaces what an sf-string cannot carry', () => {
    expect(sfString('per-key')).toBe('"per-key"');
    expect(sfString('a"b\\c')).toBe('"a\\"b\\\\c"');
    expect(sfString('é\n')).toBe('"??"');
    expect(parseSfList(`${sfString('a"b\\c')};q=1`)).toEqual([{ value: 'a"b\\c', params: { q: 1 } }]);
  });

  it('writes whole seconds: w and Retry-After are rounded up and at least 1', () => {
    const p: PolicyInfo[] = [
      { name: 'r/500ms', limit: 10, windowSeconds: 0.5 },
      { name: 'r/1500ms', limit: 20, windowSeconds: 1.5 },
      { name: 'r/1d', limit: 1000, windowSeconds: 86_400 },
    ];
    expect(formatPolicyHeader(p)).toBe('"r/500ms";q=10;w=1, "r/1500ms";q=20;w=2, "r/1d";q=1000;w=86400');
    expect(retryAfterSeconds(0)).toBe(1);
    expect(retryAfterSeconds(1)).toBe(1);
    expect(retryAfterSeconds(1000)).toBe(1);
    expect(retryAfterSeconds(1001)).toBe(2);
  });

  it('writes integer r and t (remaining floored and never negative, reset rounded up)', () => {
    const unused = () => {
      throw new Error('unused');
    };
    const limiter: Limiter = { nodeId: 'n', decide: unused, refundAdmission: unused, resetOwn: unused, admissionTtlMs: unused, policies: () => [] };
    const h = new RateLimitHeaders(limiter);
    const d: Decision = { allowed: true, limit: 10, remaining: 2.7, resetMs: 1001, retryAfterMs: 0, ruleId: 'x', policy: 'x' };
    expect(h.rateLimitHeader(d)).toBe('"x";r=2;t=2');
    expect(h.rateLimitHeader({ ...d, remaining: -1, resetMs: 0 })).toBe('"x";r=0;t=0');
    expect(h.headersFor({ ...d, ruleId: null, policy: null })).toBeNull();
  });
});

describe('RateLimit-Policy cache', () => {
  it('follows a rules change at run time', async () => {
    const engine = makeLimiter();
    const app = buildApp({ limiter: engine });
    try {
      const before = await app.inject({ method: 'POST', url: '/v1/check', payload: { key: 'k:cache' } });
      expect(before.headers['ratelimit-policy']).toBe('"per-key";q=5;w=60');
      engine.setRules(parseRules(TEST_RULES_YAML.replace('limit: 5, window: 1m', 'limit: 7, window: 1m'), 'changed.yaml'));
      const after = await app.inject({ method: 'POST', url: '/v1/check', payload: { key: 'k:cache' } });
      expect(after.headers['ratelimit-policy']).toBe('"per-key";q=7;w=60');
      expect(parseSfList(String(after.headers['ratelimit']))[0].params.r).toBe(5);
    } finally {
      await app.close();
    }
  });
});
