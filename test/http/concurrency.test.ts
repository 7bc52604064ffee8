/**
 * Check-and-count is atomic over a real listening server: 500 concurrent requests for one key
 * with a limit of 100 admit exactly 100.
 */
import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/http/app.ts';
import { makeLimiter } from './helpers.ts';

let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  app = buildApp({ limiter: makeLimiter() });
  await app.listen({ port: 0, host: '127.0.0.1' });
  base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await app.close();
});

describe('500 concurrent checks over HTTP', () => {
  it('admits exactly the limit (100) and denies the rest (400), POST', async () => {
    const key = `atomic:post-${Date.now()}`;
    const responses = await Promise.all(
      Array.from({ length: 500 }, () =>
        fetch(`${base}/v1/check`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ key }),
        }).then(async (r) => ({ status: r.status, body: (await r.json()) as { allowed: boolean }, retryAfter: r.headers.get('retry-after') })),
      ),
    );
    const allowed = responses.filter((r) => r.status === 200);
    const denied = responses.filter((r) => r.status === 429);
    expect(allowed).toHaveLength(100);
    expect(denied).toHaveLength(400);
    expect(allowed.every((r) => r.body.allowed && r.retryAfter === null)).toBe(true);
    expect(denied.every((r) => !r.body.allowed && Number(r.retryAfter) >= 1)).toBe(true);
  });

  it('admits exactly the limit with GET and a custom deny status', async () => {
    const proxy = buildApp({ limiter: makeLimiter(), denyStatus: 403 });
    await proxy.listen({ port: 0, host: '127.0.0.1' });
    try {
      const url = `http://127.0.0.1:${(proxy.server.address() as AddressInfo).port}/v1/check?key=${encodeURIComponent(`atomic:get-${Date.now()}`)}`;
      const statuses = await Promise.all(Array.from({ length: 500 }, () => fetch(url).then(async (r) => (await r.arrayBuffer(), r.status))));
      expect(statuses.filter((s) => s === 200)).toHaveLength(100);
      expect(statuses.filter((s) => s === 403)).toHaveLength(400);
    } finally {
      await proxy.close();
    }
  });
});
