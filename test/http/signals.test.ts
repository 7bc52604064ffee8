/**
 * Adaptive limits over HTTP, on a real node: PUT /v1/signals/:name (admin token) moves a
 * rule's effective limit, visible in the check answer, the RateLimit-Policy header and /v1/status.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestNode, type TestNode } from '../helpers/node.ts';

const TOKEN = 'signals-admin-token-0123456789';

describe('PUT /v1/signals/:name', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await startTestNode({ rules: [{ id: 'db', key: 'db:*', adaptive: { signal: 'db', floor: 0.1 }, limits: [{ limit: 100, window: '1m' }] }] }, ['--admin-token', TOKEN]);
  });
  afterAll(async () => {
    await n?.close();
  });
  const put = (name: string, body: unknown, token = TOKEN) =>
    fetch(`${n.url}/v1/signals/${name}`, { method: 'PUT', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
  const check = async () => {
    const res = await fetch(`${n.url}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'db:q' }) });
    return { body: (await res.json()) as { limit: number }, policy: res.headers.get('ratelimit-policy') };
  };

  it('a bad health lowers the effective limit (smoothed), shown in the decision, the header and /v1/status', async () => {
    expect((await check()).body.limit).toBe(100);
    const res = await put('db', { health: 0 });
    expect(res.status).toBe(200);
    // The first sample counts as 1 s of signal: smoothed 1 − (1 − e^−0.1) ≈ 0.905, factor 0.1 + 0.9 × 0.905 ≈ 0.914.
    expect(await res.json()).toMatchObject({ name: 'db', health: 0, smoothed: 0.905 });
    const after = await check();
    expect(after.body.limit).toBe(91);
    expect(after.policy).toContain('q=91');
    const status = (await (await fetch(`${n.url}/v1/status`)).json()) as { adaptive: { signals: Record<string, unknown>; rules: unknown[] } };
    expect(status.adaptive.rules).toEqual([{ ruleId: 'db', signal: 'db', factor: 0.914, limits: [{ policy: 'db', limit: 91 }] }]);
    expect(status.adaptive.signals.db).toMatchObject({ health: 0 });
  });

  it('needs the admin token, and refuses a bad health or the node-measured signal', async () => {
    expect((await put('db', { health: 1 }, 'wrong-token-wrong-token')).status).toBe(401);
    const bad = await put('db', { health: 2 });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: 'OUT_OF_RANGE', path: '/health' });
    expect((await put('event-loop-delay', { health: 1 })).status).toBe(400);
    expect((await check()).body.limit).toBe(91);
  });
});
