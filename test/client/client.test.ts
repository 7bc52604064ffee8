/**
 * LimiterClient against a real node over HTTP (undici): Decisions, automatic batching of
 * concurrent checks into one request, the denial cache, typed errors, a retried check that is
 * not counted twice (response lost in a TCP proxy), timeouts, and each onUnavailable choice.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientError, LimiterClient } from 'regionlimit/client';
import { freePorts } from '../../support/ports.ts';
import { startTcpProxy } from '../../support/tcp-proxy.ts';
import { waitFor } from '../../support/wait.ts';
import { exampleInReadme, run, TSX } from '../helpers/examples.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';

const rules = {
  rules: [
    { id: 'few', key: 'few:*', limits: [{ limit: 2, window: '1h' }] },
    { id: 'many', key: 'many:*', limits: [{ limit: 100, window: '1h' }] },
  ],
};
const TOKEN = 'api-token-0123456789';
let t: TestNode;
const clients: LimiterClient[] = [];
const client = (o: Partial<ConstructorParameters<typeof LimiterClient>[0]> = {}) => {
  const c = new LimiterClient({ url: t.url, ...o });
  clients.push(c);
  return c;
};

beforeAll(async () => {
  t = await startTestNode(rules, ['--api-token', TOKEN], TOKEN);
});
afterAll(async () => {
  for (const c of clients) await c.close();
  await t.close();
});

describe('LimiterClient', () => {
  it('answers the node Decision; a denied key is then answered from the denial cache without a request', async () => {
    const c = client({ token: TOKEN });
    const a = await c.check({ key: 'few:1' });
    expect(a).toMatchObject({ allowed: true, limit: 2, remaining: 1, ruleId: 'few', retryAfterMs: 0, source: 'limiter' });
    expect(a.admissionId).toBeTypeOf('string');
    await c.check({ key: 'few:1' });
    const denied = await c.check({ key: 'few:1' });
    expect(denied).toMatchObject({ allowed: false, source: 'limiter' });
    expect(denied.retryAfterMs).toBeGreaterThan(0);
    const requests = c.stats.requests;
    const cached = await c.check({ key: 'few:1' });
    expect(cached).toMatchObject({ allowed: false, source: 'cache', ruleId: 'few', remaining: 0 });
    expect(cached.retryAfterMs).toBeGreaterThan(0);
    expect(cached.retryAfterMs).toBeLessThanOrEqual(denied.retryAfterMs);
    expect(c.stats.requests).toBe(requests);
    expect(c.stats.cache).toBe(1);
    // A refund names an admission; usage counts nothing.
    expect(await c.refund(a.admissionId!)).toEqual({ ruleId: 'few', refunded: 1 });
    expect((await c.usage('few:1')).limits[0]).toMatchObject({ usage: 1, limit: 2 });
  });

  it('checkAll: several dimensions in one request, all counted or none', async () => {
    const c = client({ token: TOKEN });
    const ok = await c.checkAll([{ key: 'many:all' }, { key: 'few:all' }]);
    expect(ok).toMatchObject({ allowed: true, binding: 1 });
    expect(ok.decisions.map((d) => d.ruleId)).toEqual(['many', 'few']);
    expect(ok.decisions[1]).not.toHaveProperty('key');
    await c.checkAll([{ key: 'many:all' }, { key: 'few:all' }]);
    const no = await c.checkAll([{ key: 'many:all' }, { key: 'few:all' }]);
    expect(no).toMatchObject({ allowed: false, binding: 1 });
    expect((await c.usage('many:all')).limits[0].usage).toBe(2);
    await expect(c.checkAll([{ key: '' }])).rejects.toMatchObject({ code: 'KEY_EMPTY' });
  });

  it('sends concurrent checks as one batch request, each caller getting its own Decision', async () => {
    const c = client({ token: TOKEN });
    const before = c.stats.requests;
    const ds = await Promise.all(Array.from({ length: 50 }, () => c.check({ key: 'many:batch' })));
    expect(c.stats.requests - before).toBe(1);
    expect(ds.every((d) => d.allowed && d.source === 'limiter')).toBe(true);
    expect(ds.map((d) => d.remaining).sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => 50 + i));
    expect(new Set(ds.map((d) => d.admissionId)).size).toBe(50);
    expect(await t.usage('many:batch')).toBe(50);
  });

  it('refuses only the caller whose check is invalid; the others in its batch are answered', async () => {
    const c = client({ token: TOKEN });
    const [good, bad, good2] = await Promise.allSettled([c.check({ key: 'many:mixed' }), c.check({ key: '' }), c.check({ key: 'many:mixed', cost: 2 })]);
    expect(good.status === 'fulfilled' && good.value.allowed).toBe(true);
    expect(good2.status === 'fulfilled' && good2.value.allowed).toBe(true);
    expect(bad.status).toBe('rejected');
    const err = (bad as PromiseRejectedResult).reason as ClientError;
    expect(err).toBeInstanceOf(ClientError);
    expect(err.code).toBe('KEY_EMPTY');
    expect(err.status).toBe(400);
    expect(await t.usage('many:mixed')).toBe(3);
  });

  it('checkMany answers in order in one request', async () => {
    const c = client({ token: TOKEN });
    const ds = await c.checkMany([{ key: 'few:m' }, { key: 'few:m' }, { key: 'few:m' }, { key: 'free' }]);
    expect(ds.map((d) => d.allowed)).toEqual([true, true, false, true]);
    expect(ds[3].ruleId).toBeNull();
  });

  it('rejects with the node error code: a missing API token is API_UNAUTHORIZED, not a fallback answer', async () => {
    const c = client({ onUnavailable: 'failOpen' });
    await expect(c.check({ key: 'many:x' })).rejects.toMatchObject({ code: 'API_UNAUTHORIZED', status: 401 });
  });

  it('retries a check whose answer was lost with the same requestId, so it is counted once', async () => {
    const port = Number(new URL(t.url).port);
    const proxy = await startTcpProxy({ target: { port } });
    try {
      const c = client({ url: `http://127.0.0.1:${proxy.port}`, token: TOKEN, timeoutMs: 10_000 });
      await c.check({ key: 'many:warm' }); // opens the connection
      proxy.delay(1500);
      const pending = c.check({ key: 'many:retry' });
      // The node has counted it; its answer is still held in the proxy: cut the connection.
      await waitFor('the node to count the check', async () => (await t.usage('many:retry')) === 1, { timeoutMs: 5000, intervalMs: 20 });
      proxy.reset();
      proxy.pass();
      const d = await pending;
      expect(d).toMatchObject({ allowed: true, remaining: 99, source: 'limiter' });
      expect(c.stats.retries).toBe(1);
      expect(await t.usage('many:retry')).toBe(1);
    } finally {
      await proxy.close();
    }
  });
});

describe('LimiterClient when the limiter is unavailable', () => {
  let closedUrl: string;
  let silent: net.Server;
  let silentUrl: string;
  const sockets: net.Socket[] = [];
  beforeAll(async () => {
    const [closedPort] = await freePorts(1);
    closedUrl = `http://127.0.0.1:${closedPort}`;
    // Accepts connections and never answers.
    silent = net.createServer((sock) => sockets.push(sock));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    silentUrl = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
  });
  afterAll(async () => {
    for (const sock of sockets) sock.destroy();
    await new Promise((r) => silent.close(r));
  });

  it('rejects with LIMITER_UNREACHABLE by default', async () => {
    const c = client({ url: closedUrl });
    await expect(c.check({ key: 'k' })).rejects.toMatchObject({ code: 'LIMITER_UNREACHABLE' });
  });

  it('rejects with LIMITER_TIMEOUT after the per-call timeout', async () => {
    const c = client({ url: silentUrl, timeoutMs: 10_000 });
    const started = Date.now();
    await expect(c.check({ key: 'k' }, { timeoutMs: 150 })).rejects.toMatchObject({ code: 'LIMITER_TIMEOUT' });
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(140);
    expect(took).toBeLessThan(2000);
  });

  it('failOpen allows and failClosed denies, saying why', async () => {
    expect(await client({ url: closedUrl, onUnavailable: 'failOpen' }).check({ key: 'k' })).toMatchObject({ allowed: true, source: 'fallback', unavailable: 'LIMITER_UNREACHABLE' });
    expect(await client({ url: silentUrl, timeoutMs: 100, onUnavailable: 'failClosed' }).check({ key: 'k' })).toMatchObject({ allowed: false, source: 'fallback', unavailable: 'LIMITER_TIMEOUT' });
  });

  it('a local fallback limit decides per key while the limiter is unreachable', async () => {
    const c = client({ url: closedUrl, onUnavailable: { limit: 2, window: '1m' } });
    const ds = await Promise.all([c.check({ key: 'a' }), c.check({ key: 'a' }), c.check({ key: 'a' }), c.check({ key: 'b' })]);
    expect(ds.map((d) => d.allowed)).toEqual([true, true, false, true]);
    expect(ds.every((d) => d.source === 'fallback')).toBe(true);
    expect(c.stats.fallback).toBe(4);
  });

  it('refuses bad options and calls after close with their codes', async () => {
    expect(() => new LimiterClient({ url: 'not a url' })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    expect(() => new LimiterClient({ url: closedUrl, timeoutMs: 0 })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    const c = new LimiterClient({ url: closedUrl });
    await c.close();
    await expect(c.check({ key: 'k' })).rejects.toMatchObject({ code: 'LIMITER_CLOSED' });
  });
});

describe('README example', () => {
  it('examples/client.ts is shown verbatim in the README and runs against a node', async () => {
    expect(exampleInReadme('examples/client.ts').shown, 'README.md must show examples/client.ts whole').toBe(true);
    const n = await startTestNode({ rules: [{ id: 'api', key: 'user:*', limits: [{ limit: 100, window: '1m' }] }] });
    try {
      const r = await run(TSX, ['examples/client.ts'], { LIMITER_URL: n.url });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('allowed, 99 left');
      expect(await n.usage('user:43')).toBe(1);
    } finally {
      await n.close();
    }
  });
});
