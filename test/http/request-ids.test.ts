/**
 * Request ids on a real socket: a check repeated with the same requestId (same key and cost)
 * within the time-to-live is answered with the first Decision and counts nothing; in a batch
 * too; a different key or cost under the same id, or a repeat after the time-to-live, counts;
 * a malformed id is refused with REQUEST_ID_INVALID.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Decision } from '../../src/engine/types.ts';
import { RecentRequests } from '../../src/http/request-ids.ts';
import { request, serve, type Served } from './helpers.ts';

let s: Served;
beforeEach(async () => {
  s = await serve({ requestIdTtlMs: 5000, inspect: (k, m, at) => s.limiter.inspect(k, m, at) });
});
afterEach(() => s.close());

const usage = async (key: string) => (await request(s.url, `/v1/usage?key=${encodeURIComponent(key)}`)).json<{ limits: { usage: number }[] }>().limits[0].usage;
const check = async (body: object) => {
  const r = await request(s.url, '/v1/check', { body });
  return { status: r.status, d: r.json<Decision>() };
};

describe('requestId', () => {
  it('a repeated check is answered with its first Decision and counted once', async () => {
    const first = await check({ key: 'k:r1', requestId: 'req-1' });
    const again = await check({ key: 'k:r1', requestId: 'req-1' });
    expect(again.status).toBe(200);
    expect(again.d).toEqual(first.d);
    expect(await usage('k:r1')).toBe(1);
  });

  it('the same id with another key or cost, or after its time-to-live, counts as a new check', async () => {
    await check({ key: 'k:r2', requestId: 'req-2' });
    await check({ key: 'k:r3', requestId: 'req-2' });
    await check({ key: 'k:r3', requestId: 'req-2', cost: 2 });
    expect(await usage('k:r2')).toBe(1);
    expect(await usage('k:r3')).toBe(3);
    s.clock.now += 5000;
    await check({ key: 'k:r3', requestId: 'req-2', cost: 2 });
    expect(await usage('k:r3')).toBe(5);
  });

  it('a retried batch counts each check once', async () => {
    const body = { checks: [{ key: 'k:b1', requestId: 'b-1' }, { key: 'k:b1', requestId: 'b-2' }, { key: 'k:b2' }] };
    const a = (await request(s.url, '/v1/check/batch', { body })).json<{ results: Decision[] }>().results;
    const b = (await request(s.url, '/v1/check/batch', { body })).json<{ results: Decision[] }>().results;
    expect(b.slice(0, 2)).toEqual(a.slice(0, 2));
    expect(await usage('k:b1')).toBe(2);
    expect(await usage('k:b2')).toBe(2); // no id: counted each time
  });

  it('refuses a malformed requestId with REQUEST_ID_INVALID and counts nothing', async () => {
    for (const requestId of ['', 'x'.repeat(65), 7]) {
      const r = await request(s.url, '/v1/check', { body: { key: 'k:bad', requestId } });
      expect(r.status).toBe(400);
      expect(r.json<{ error: string }>().error).toBe('REQUEST_ID_INVALID');
    }
    expect(await usage('k:bad')).toBe(0);
  });

  it('holds at most maxEntries ids, forgetting the oldest first', () => {
    const r = new RecentRequests({ ttlMs: 1000, maxEntries: 2 });
    const d = { allowed: true } as Decision;
    r.remember('a', 'k', 1, d, 0);
    r.remember('b', 'k', 1, d, 0);
    r.remember('c', 'k', 1, d, 0);
    expect(r.size).toBe(2);
    expect(r.get('a', 'k', 1, 1)).toBeUndefined();
    expect(r.get('c', 'k', 1, 1)).toBe(d);
    expect(r.get('c', 'k', 1, 1000)).toBeUndefined();
  });
});
