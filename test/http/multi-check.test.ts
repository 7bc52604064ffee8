/**
 * POST /v1/check with several dimensions, on a real node: all must pass, the answer names the
 * dimension that denied, the headers report the most restrictive, a denied dimension consumes
 * nothing in the others, and malformed lists are refused with a code and path.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestNode, type TestNode } from '../helpers/node.ts';

const rules = {
  rules: [
    { id: 'per-ip', key: 'ip:*', limits: [{ limit: 100, window: '1m' }] },
    { id: 'per-user', key: 'user:*', limits: [{ limit: 2, window: '1m' }] },
    { id: 'per-resource', key: 'res:*', metadata: { client: ['web', 'app'] }, limits: [{ limit: 10, window: '1m' }] },
  ],
};

describe('POST /v1/check with checks', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await startTestNode(rules);
  });
  afterAll(async () => {
    await n?.close();
  });

  const post = (body: unknown) => fetch(`${n.url}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const dims = (user: string) => ({
    checks: [
      { key: 'ip:10.0.0.1', name: 'ip' },
      { key: user, name: 'user' },
      { key: 'res:report', metadata: { client: 'web' }, name: 'resource' },
    ],
  });

  it('all pass: 200, every dimension counted, the most restrictive binds the headers', async () => {
    const res = await post(dims('user:u1'));
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown> & { dimensions: Record<string, unknown>[] };
    expect(body).toMatchObject({ allowed: true, ruleId: 'per-user', remaining: 1, dimension: 1, dimensionName: 'user' });
    expect(body.dimensions.map((d) => [d.name, d.key, d.ruleId, d.allowed])).toEqual([
      ['ip', 'ip:10.0.0.1', 'per-ip', true],
      ['user', 'user:u1', 'per-user', true],
      ['resource', 'res:report', 'per-resource', true],
    ]);
    expect(body.dimensions.every((d) => typeof d.admissionId === 'string')).toBe(true);
    expect(res.headers.get('ratelimit')).toContain('"per-user";r=1');
    expect([await n.usage('ip:10.0.0.1'), await n.usage('user:u1')]).toEqual([1, 1]);
  });

  it('one denied: 429 naming it, and nothing counted in the other dimensions', async () => {
    expect((await post(dims('user:u2'))).status).toBe(200);
    expect((await post(dims('user:u2'))).status).toBe(200);
    const ipBefore = await n.usage('ip:10.0.0.1');
    const res = await post(dims('user:u2'));
    expect(res.status).toBe(429);
    const body = (await res.json()) as Record<string, unknown> & { dimensions: Record<string, unknown>[] };
    expect(body).toMatchObject({ allowed: false, ruleId: 'per-user', dimension: 1, dimensionName: 'user' });
    expect(body.dimensions[0]).toMatchObject({ allowed: true, ruleId: 'per-ip' });
    expect(body.dimensions[0]).not.toHaveProperty('admissionId');
    expect(res.headers.get('retry-after')).not.toBeNull();
    expect(await n.usage('ip:10.0.0.1')).toBe(ipBefore);
    expect(await n.usage('user:u2')).toBe(2);
  });

  it('malformed dimension lists are refused with a code and path, counting nothing', async () => {
    const cases: [unknown, string, string][] = [
      [{ checks: [] }, 'BATCH_INVALID', '/checks'],
      [{ checks: [{ key: '' }] }, 'KEY_EMPTY', '/checks/0/key'],
      [{ checks: [{ key: 'ip:1', extra: 1 }] }, 'UNKNOWN_FIELD', '/checks/0/extra'],
      [{ checks: [{ key: 'ip:1' }, { key: 'ip:2', cost: 0 }] }, 'COST_INVALID', '/checks/1/cost'],
      [{ key: 'ip:1', checks: [{ key: 'ip:1' }] }, 'INVALID_BODY', '/key'],
      [{ checks: Array.from({ length: 17 }, (_, i) => ({ key: `ip:${i}` })) }, 'BATCH_INVALID', '/checks'],
      [{}, 'KEY_MISSING', '/key'],
    ];
    for (const [body, code, path] of cases) {
      const res = await post(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(await res.json(), JSON.stringify(body)).toMatchObject({ error: code, path });
    }
    expect(await n.usage('ip:1')).toBe(0);
  });
});
