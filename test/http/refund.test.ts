/**
 * Refunds by admission id, on a real socket: every allowed check answers an id; a refund gives
 * back exactly that admission once; unknown, expired, already refunded and other nodes' ids are
 * refused with their codes and change no count; an admin reset gives back this node's own count.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Decision } from '../../src/engine/types.ts';
import { createEngine } from '../../src/engine/engine.ts';
import { parseRules } from '../../src/engine/rules.ts';
import { TEST_RULES_YAML, request, serve, type Served } from './helpers.ts';

const ADMIN = 'admin-token-0123456789abcdef';
let s: Served;
let seq = 0;
const fresh = (prefix: string) => `${prefix}${++seq}-${Math.random().toString(36).slice(2, 8)}`;

beforeEach(async () => {
  s = await serve({ adminToken: ADMIN, inspect: (k, m, at) => s.limiter.inspect(k, m, at) });
});
afterEach(() => s.close());

const check = async (key: string, cost = 1) => {
  const r = await request(s.url, '/v1/check', { body: { key, cost } });
  return { status: r.status, d: r.json<Decision>() };
};
const refund = (admissionId: unknown, url = s.url) => request(url, '/v1/refund', { body: { admissionId } });
const usage = async (key: string) => (await request(s.url, `/v1/usage?key=${encodeURIComponent(key)}`)).json<{ limits: { usage: number }[] }>().limits[0].usage;

describe('admission ids', () => {
  it('an allowed check answers an unguessable id naming this node; a denied one or one without a rule answers none', async () => {
    const key = fresh('k:');
    const ids = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const { status, d } = await check(key);
      expect(status).toBe(200);
      expect(d.admissionId).toMatch(/^http-test\.[0-9a-z]+\.[0-9a-z]+-[0-9a-z]{1,7}-[0-9a-z]{1,7}$/);
      ids.add(String(d.admissionId));
    }
    expect(ids.size).toBe(5);
    const denied = await check(key);
    expect(denied.status).toBe(429);
    expect(denied.d.admissionId).toBeUndefined();
    expect((await check(fresh('other:'))).d.admissionId).toBeUndefined();
  });

  it('the batch and GET /v1/check answer ids too, and each refunds its own admission', async () => {
    const key = fresh('k:');
    const b = await request(s.url, '/v1/check/batch', { body: { checks: [{ key }, { key, cost: 2 }] } });
    const [one, two] = b.json<{ results: Decision[] }>().results;
    const g = await request(s.url, `/v1/check?key=${encodeURIComponent(key)}`);
    const three = g.json<Decision>();
    expect(new Set([one.admissionId, two.admissionId, three.admissionId]).size).toBe(3);
    expect(await usage(key)).toBe(4);
    expect((await refund(two.admissionId)).json()).toEqual({ ruleId: 'per-key', refunded: 2 });
    expect(await usage(key)).toBe(2);
    expect((await refund(three.admissionId)).json()).toEqual({ ruleId: 'per-key', refunded: 1 });
    expect(await usage(key)).toBe(1);
  });

  it('a refund gives back its admission once; a second refund is 409 ADMISSION_ALREADY_REFUNDED and changes nothing', async () => {
    const key = fresh('k:');
    const first = (await check(key, 2)).d.admissionId;
    await check(key, 1);
    expect(await usage(key)).toBe(3);
    const r = await refund(first);
    expect(r.status).toBe(200);
    expect(r.json()).toEqual({ ruleId: 'per-key', refunded: 2 });
    expect(await usage(key)).toBe(1);
    const again = await refund(first);
    expect(again.status).toBe(409);
    expect(again.json()).toMatchObject({ error: 'ADMISSION_ALREADY_REFUNDED', path: '/admissionId' });
    expect(await usage(key)).toBe(1);
  });

  it('refuses missing, malformed, unknown, expired and other nodes\' ids with their codes, changing no count', async () => {
    const key = fresh('k:');
    const id = String((await check(key)).d.admissionId);
    const [node, exp] = id.split('.');
    const cases: [unknown, number, string][] = [
      [undefined, 400, 'ADMISSION_ID_MISSING'],
      [42, 400, 'ADMISSION_ID_INVALID'],
      ['not-an-id', 400, 'ADMISSION_ID_INVALID'],
      [`${node}.${exp}.00000000-0000-4000-8000-000000000000`, 404, 'ADMISSION_UNKNOWN'],
      [`another-node.${exp}.${id.split('.')[2]}`, 421, 'ADMISSION_OTHER_NODE'],
      [`${node}.${(s.clock.now - 1).toString(36)}.${id.split('.')[2]}`, 410, 'ADMISSION_EXPIRED'],
    ];
    for (const [admissionId, status, code] of cases) {
      const r = await request(s.url, '/v1/refund', { body: admissionId === undefined ? {} : { admissionId } });
      expect(r.status, code).toBe(status);
      expect(r.json()).toMatchObject({ error: code });
      expect(await usage(key)).toBe(1);
    }
  });

  it('an id is refused as expired once its window has passed (injected clock), and the key is not touched', async () => {
    const key = fresh('k:');
    const id = (await check(key)).d.admissionId;
    s.clock.now += 60_000;
    const r = await refund(id);
    expect(r.status).toBe(410);
    expect(r.json()).toMatchObject({ error: 'ADMISSION_EXPIRED' });
  });

  it('an id made on another node is refused there (421) and refunds on its own node', async () => {
    const other = await serve({}, { limiter: createEngine({ nodeId: 'other-node', rules: parseRules(TEST_RULES_YAML) }) });
    try {
      const key = fresh('k:');
      const id = (await check(key)).d.admissionId;
      const there = await refund(id, other.url);
      expect(there.status).toBe(421);
      expect(there.json()).toMatchObject({ error: 'ADMISSION_OTHER_NODE' });
      expect((await refund(id)).json()).toEqual({ ruleId: 'per-key', refunded: 1 });
    } finally {
      await other.close();
    }
  });

  it('a refund never gives back more than this node still counts (after an admin reset it gives back 0)', async () => {
    const key = fresh('k:');
    const id = (await check(key, 3)).d.admissionId;
    const reset = await request(s.url, '/v1/admin/reset', { body: { key }, headers: { authorization: `Bearer ${ADMIN}` } });
    expect(reset.json()).toEqual({ key, ruleId: 'per-key', reset: 3, limits: [{ policy: 'per-key', reset: 3 }] });
    expect(await usage(key)).toBe(0);
    expect((await refund(id)).json()).toEqual({ ruleId: 'per-key', refunded: 0 });
    expect(await usage(key)).toBe(0);
  });

  it('a refund in a multi-limit rule gives back the admission in every limit', async () => {
    const key = fresh('multi:');
    const id = (await check(key, 2)).d.admissionId;
    await check(key, 1);
    expect((await refund(id)).json()).toEqual({ ruleId: 'multi', refunded: 2 });
    const u = (await request(s.url, `/v1/usage?key=${key}`)).json<{ limits: { usage: number }[] }>();
    expect(u.limits.map((l) => l.usage)).toEqual([1, 1]);
  });
});

describe('POST /v1/admin/reset', () => {
  const reset = (body: unknown, headers: Record<string, string> = {}, url = s.url) => request(url, '/v1/admin/reset', { body, headers });

  it('with the admin token, gives back this node\'s own count of the key and says how much', async () => {
    const key = fresh('k:');
    for (let i = 0; i < 5; i++) await check(key);
    expect((await check(key)).status).toBe(429);
    const r = await reset({ key }, { authorization: `Bearer ${ADMIN}` });
    expect(r.status).toBe(200);
    expect(r.json()).toMatchObject({ key, ruleId: 'per-key', reset: 5 });
    expect((await check(key)).status).toBe(200);
  });

  it('without the token or with a wrong one: 401 ADMIN_UNAUTHORIZED, nothing reset', async () => {
    const key = fresh('k:');
    for (let i = 0; i < 2; i++) await check(key);
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer wrong-token-0123456789' }, { authorization: `Basic ${ADMIN}` }, { authorization: `Bearer ${ADMIN}x` }]) {
      const r = await reset({ key }, headers);
      expect(r.status).toBe(401);
      expect(r.json()).toMatchObject({ error: 'ADMIN_UNAUTHORIZED' });
      expect(r.headers['www-authenticate']).toMatch(/^Bearer/);
    }
    expect(await usage(key)).toBe(2);
  });

  it('with no admin token configured: 403 ADMIN_DISABLED, whatever is sent', async () => {
    const open = await serve();
    try {
      for (const headers of [{} as Record<string, string>, { authorization: `Bearer ${ADMIN}` }, { authorization: 'Bearer ' }]) {
        const r = await reset({ key: 'k:x' }, headers, open.url);
        expect(r.status).toBe(403);
        expect(r.json()).toMatchObject({ error: 'ADMIN_DISABLED' });
      }
    } finally {
      await open.close();
    }
  });

  it('validates the body like a check', async () => {
    const auth = { authorization: `Bearer ${ADMIN}` };
    expect((await reset({}, auth)).json()).toMatchObject({ error: 'KEY_MISSING' });
    expect((await reset({ key: 'k:a', cost: 1 }, auth)).json()).toMatchObject({ error: 'UNKNOWN_FIELD' });
  });
});
