/**
 * The fastify plugin and the express middleware on real servers, in front of a real node through
 * LimiterClient (and once an embedded limiter): RateLimit / RateLimit-Policy headers, 429 with
 * Retry-After, keying by IP (socket peer, or X-Forwarded-For from trusted proxies only), by API
 * key and by function; and the drop-in stores driven by @fastify/rate-limit and
 * express-rate-limit themselves, express-rate-limit's decrement refunding the admission.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fastifyRateLimit from '@fastify/rate-limit';
import express from 'express';
import { rateLimit } from 'express-rate-limit';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLimiter, type Limiter } from 'regionlimit';
import { LimiterClient } from 'regionlimit/client';
import { RegionlimitStore, fastifyRateLimitStore, regionlimitExpress, regionlimitFastify } from 'regionlimit/middleware';
import { parseSfList } from '../http/helpers.ts';
import { exampleInReadme, startExample, TSX } from '../helpers/examples.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';
import { freePorts } from '../../support/ports.ts';

const rules = {
  rules: [
    { id: 'per-ip', key: 'ip:*', limits: [{ limit: 2, window: '1m' }] },
    { id: 'per-key', key: 'apikey:*', limits: [{ limit: 3, window: '1m' }] },
    { id: 'lib', key: 'lib:*', limits: [{ limit: 2, window: '1m' }] },
    { id: 'other', key: '*', limits: [{ limit: 2, window: '1m' }] },
  ],
};
let t: TestNode;
let client: LimiterClient;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  t = await startTestNode(rules);
  client = new LimiterClient({ url: t.url });
});
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await client.close();
  await t.close();
});

async function fastifyApp(setup: (app: FastifyInstance) => Promise<void>): Promise<string> {
  const app = Fastify();
  await setup(app);
  app.get('/', async () => ({ ok: true }));
  app.get('/fail', async (_req, reply) => reply.code(500).send({ ok: false }));
  await app.listen({ host: '127.0.0.1', port: 0 });
  closers.push(() => app.close());
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

async function expressApp(setup: (app: express.Express) => void): Promise<string> {
  const app = express();
  setup(app);
  app.get('/', (_req, res) => void res.json({ ok: true }));
  app.get('/fail', (_req, res) => void res.status(500).json({ ok: false }));
  const server: Server = await new Promise((r) => {
    const s = app.listen(0, '127.0.0.1', () => r(s));
  });
  closers.push(() => new Promise((r) => server.close(r)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const get = (url: string, headers: Record<string, string> = {}) => fetch(url, { headers });

describe('fastify plugin', () => {
  it('limits by client IP with RateLimit headers, then answers 429 with Retry-After', async () => {
    const url = await fastifyApp(async (app) => app.register(regionlimitFastify, { limiter: client }));
    const a = await get(url);
    expect(a.status).toBe(200);
    expect(parseSfList(a.headers.get('ratelimit-policy')!)).toEqual([{ value: 'per-ip', params: { q: 2 } }]);
    expect(parseSfList(a.headers.get('ratelimit')!)[0]).toMatchObject({ value: 'per-ip', params: { r: 1 } });
    expect((await get(url)).status).toBe(200);
    const denied = await get(url);
    expect(denied.status).toBe(429);
    expect(Number(denied.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(parseSfList(denied.headers.get('ratelimit')!)[0].params.r).toBe(0);
    expect(((await denied.json()) as { error: string }).error).toBe('RATE_LIMITED');
    expect(await t.usage('ip:127.0.0.1')).toBe(2);
  });

  it('believes X-Forwarded-For only from trusted proxies', async () => {
    const trusted = await fastifyApp(async (app) => app.register(regionlimitFastify, { limiter: client, keyPrefix: 'ip:trusted-', trustedProxies: ['127.0.0.1'] }));
    for (let i = 0; i < 3; i++) expect((await get(trusted, { 'x-forwarded-for': `203.0.113.${i}` })).status).toBe(200);
    expect(await t.usage('ip:trusted-203.0.113.1')).toBe(1);
    const untrusted = await fastifyApp(async (app) => app.register(regionlimitFastify, { limiter: client, keyPrefix: 'ip:untrusted-' }));
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await get(untrusted, { 'x-forwarded-for': `203.0.113.${i}` })).status);
    expect(codes).toEqual([200, 200, 429]);
    expect(await t.usage('ip:untrusted-127.0.0.1')).toBe(2);
  });
});

describe('express middleware', () => {
  it('limits by API key, falling back to the IP for requests without one', async () => {
    const url = await expressApp((app) => app.use(regionlimitExpress({ limiter: client, keyBy: 'apiKey', keyPrefix: 'apikey:' })));
    const codes = [];
    for (let i = 0; i < 4; i++) codes.push((await get(url, { 'x-api-key': 'k-123' })).status);
    expect(codes).toEqual([200, 200, 200, 429]);
    expect(await t.usage('apikey:k-123')).toBe(3);
    const denied = await get(url, { 'x-api-key': 'k-123' });
    expect(denied.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(parseSfList(denied.headers.get('ratelimit-policy')!)[0]).toEqual({ value: 'per-key', params: { q: 3 } });
  });

  it('keys by a function, with an embedded limiter', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'limiter-mw-'));
    const embedded: Limiter = await createLimiter({ rules, data: join(dir, 'data'), nodeId: 'mw-1' });
    closers.push(async () => {
      await embedded.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const url = await expressApp((app) => app.use(regionlimitExpress({ limiter: embedded, keyBy: (req) => `tenant:${req.get('x-tenant')}`, skip: (req) => req.path === '/fail' })));
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await get(url, { 'x-tenant': 'acme' })).status);
    expect(codes).toEqual([200, 200, 429]);
    expect((await get(url, { 'x-tenant': 'globex' })).status).toBe(200);
    expect((await get(`${url}/fail`, { 'x-tenant': 'acme' })).status).toBe(500); // skipped, not limited
    expect(embedded.usage('tenant:acme').limits[0].usage).toBe(2);
  });
});

describe('a limiter that cannot answer', () => {
  it("with onUnavailable 'error', both answer 503 with the limiter's code", async () => {
    const [closed] = await freePorts(1);
    const down = new LimiterClient({ url: `http://127.0.0.1:${closed}` });
    closers.push(() => down.close());
    const f = await fastifyApp(async (app) => app.register(regionlimitFastify, { limiter: down }));
    const e = await expressApp((app) => app.use(regionlimitExpress({ limiter: down })));
    for (const url of [f, e]) {
      const r = await get(url);
      expect(r.status).toBe(503);
      expect(((await r.json()) as { error: string }).error).toBe('LIMITER_UNREACHABLE');
    }
  });
});

describe('drop-in stores', () => {
  it('@fastify/rate-limit with fastifyRateLimitStore answers 429 when the limiter denies', async () => {
    const url = await fastifyApp(async (app) => {
      await app.register(fastifyRateLimit, { max: 2, timeWindow: 60_000, store: fastifyRateLimitStore({ limiter: client, prefix: 'lib:fastify-' }) as never });
    });
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await get(url)).status);
    expect(codes).toEqual([200, 200, 429]);
    expect(await t.usage('lib:fastify-127.0.0.1')).toBe(2);
  });

  it('express-rate-limit with RegionlimitStore limits, and its decrement refunds the admission', async () => {
    const url = await expressApp((app) =>
      app.use(rateLimit({ limit: 2, windowMs: 60_000, standardHeaders: 'draft-8', legacyHeaders: false, skipFailedRequests: true, store: new RegionlimitStore({ limiter: client, prefix: 'lib:express-' }) })),
    );
    // Failed requests are given back (decrement → refund of the latest admission).
    for (let i = 0; i < 3; i++) expect((await get(`${url}/fail`)).status).toBe(500);
    await expect.poll(() => t.usage('lib:express-127.0.0.1')).toBe(0);
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await get(url)).status);
    expect(codes).toEqual([200, 200, 429]);
    expect(await t.usage('lib:express-127.0.0.1')).toBe(2);
  });
});

describe('README examples', () => {
  for (const [file, headers, key] of [
    ['examples/express.ts', {}, 'ip:127.0.0.1'],
    ['examples/fastify.ts', { 'x-api-key': 'readme-key' }, 'apikey:readme-key'],
  ] as const) {
    it(`${file} is shown verbatim in the README and limits requests through a node`, async () => {
      expect(exampleInReadme(file).shown, `README.md must show ${file} whole`).toBe(true);
      const n = await startTestNode(rules);
      const [port] = await freePorts(1);
      const ex = await startExample(TSX, [file], { LIMITER_URL: n.url, PORT: String(port) });
      try {
        const codes = [];
        for (let i = 0; i < 4; i++) codes.push((await get(ex.url, headers)).status);
        expect(codes).toEqual(key.startsWith('ip:') ? [200, 200, 429, 429] : [200, 200, 200, 429]);
        expect(await n.usage(key)).toBe(key.startsWith('ip:') ? 2 : 3);
      } finally {
        await ex.stop();
        await n.close();
      }
    });
  }
});
