/**
 * The hierarchy over HTTP, on a real node: POST /v1/check answers the level that decided, and
 * GET /v1/rules/explain (admin token) shows the effective limits and where each came from.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestNode, type TestNode } from '../helpers/node.ts';

const TOKEN = 'explain-admin-token-0123456789';
const rules = {
  tiers: { names: ['free', 'pro'], metadata: 'tier', keys: { 'apikey:big': 'pro' }, default: 'free' },
  rules: [
    { id: 'api', key: 'apikey:*', limits: [{ limit: 5, window: '1m' }] },
    { id: 'api-pro', parent: 'api', tier: 'pro', limits: [{ limit: 50, window: '1m' }] },
    { id: 'api-vip', parent: 'api-pro', key: 'apikey:vip' },
  ],
};

describe('hierarchy over HTTP', () => {
  let n: TestNode;
  let off: TestNode;
  beforeAll(async () => {
    n = await startTestNode(rules, ['--admin-token', TOKEN]);
    off = await startTestNode(rules);
  });
  afterAll(async () => {
    await n?.close();
    await off?.close();
  });

  const check = async (key: string, metadata?: Record<string, string>) => {
    const res = await fetch(`${n.url}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key, metadata }) });
    return (await res.json()) as Record<string, unknown>;
  };

  it('the check answer names the rule and the level that decided', async () => {
    expect(await check('apikey:a')).toMatchObject({ allowed: true, ruleId: 'api', level: 'default', limit: 5 });
    expect(await check('apikey:a', { tier: 'pro' })).toMatchObject({ ruleId: 'api-pro', level: 'tier', limit: 50 });
    expect(await check('apikey:big')).toMatchObject({ ruleId: 'api-pro', level: 'tier' });
    expect(await check('apikey:vip')).toMatchObject({ ruleId: 'api-vip', level: 'override', limit: 50 });
    expect(await check('nomatch')).not.toHaveProperty('level');
  });

  it('explain shows tier, chain and the provenance of each limit; it needs the admin token', async () => {
    const url = `${n.url}/v1/rules/explain?key=apikey:vip&m.tier=free`;
    const ok = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      key: 'apikey:vip',
      metadata: { tier: 'free' },
      tier: { name: 'free', from: 'metadata' },
      ruleId: 'api-vip',
      level: 'override',
      chain: [{ id: 'api-vip' }, { id: 'api-pro' }, { id: 'api' }],
      limits: [{ limit: 50, window: '1m', from: 'api-pro' }],
    });
    // Nothing was counted by explaining.
    expect(await n.usage('apikey:vip')).toBe(1);
    const none = await fetch(url);
    expect(none.status).toBe(401);
    expect(await none.json()).toMatchObject({ error: 'ADMIN_UNAUTHORIZED' });
    const wrong = await fetch(url, { headers: { authorization: 'Bearer wrong-token-wrong-token' } });
    expect(wrong.status).toBe(401);
    const disabled = await fetch(`${off.url}/v1/rules/explain?key=apikey:vip`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(disabled.status).toBe(403);
    expect(await disabled.json()).toMatchObject({ error: 'ADMIN_DISABLED' });
    const bad = await fetch(`${n.url}/v1/rules/explain?nokey=1`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(bad.status).toBe(400);
  });
});
