/**
 * Request priority over HTTP, on a real node: `priority` in the check body, the reserve's
 * PRIORITY_RESERVED denial, a bypass, and both counted in /v1/status.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestNode, type TestNode } from '../helpers/node.ts';

describe('priority over HTTP', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await startTestNode({ rules: [{ id: 'api', key: 'api:*', reserve: { share: 0.5, for: 'critical' }, bypass: 'high', limits: [{ limit: 4, window: '1m' }] }] });
  });
  afterAll(async () => {
    await n?.close();
  });
  const check = async (body: unknown) => {
    const res = await fetch(`${n.url}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it('reserve and bypass answer with their code or flag, and /v1/status counts them', async () => {
    expect((await check({ key: 'api:k' })).status).toBe(200);
    expect((await check({ key: 'api:k', priority: 'low' })).status).toBe(200);
    const reserved = await check({ key: 'api:k', priority: 'normal' });
    expect(reserved).toMatchObject({ status: 429, body: { allowed: false, code: 'PRIORITY_RESERVED', ruleId: 'api' } });
    expect((await check({ key: 'api:k', priority: 'critical' })).status).toBe(200);
    const bypass = await check({ key: 'api:k', priority: 'high' });
    expect(bypass).toMatchObject({ status: 200, body: { allowed: true, bypassed: true } });
    expect(bypass.body).not.toHaveProperty('admissionId');
    expect(await n.usage('api:k')).toBe(3);
    const status = (await (await fetch(`${n.url}/v1/status`)).json()) as { engine: Record<string, number> };
    expect(status.engine).toMatchObject({ priorityReservedDenials: 1, priorityBypasses: 1 });
  });

  it('an unknown priority is refused with its path, counting nothing', async () => {
    const bad = await check({ key: 'api:z', priority: 'urgent' });
    expect(bad).toMatchObject({ status: 400, body: { error: 'VALUE_NOT_ALLOWED', path: '/priority' } });
    expect(await n.usage('api:z')).toBe(0);
  });
});
