/**
 * Fuzzing the HTTP API on a real socket with fast-check: arbitrary bytes and arbitrary JSON as
 * the body of every route, and arbitrary query strings, never crash the node, never answer 5xx,
 * and never change the count of keys they do not name (checked through /v1/usage before and
 * after). A few hundred runs per property keep it to a few seconds.
 */
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkAsync } from '../helpers/fc.ts';
import { request, serve, type Served } from './helpers.ts';

const ADMIN = 'admin-token-0123456789abcdef';
const RUNS = 300;
let s: Served;
/** Keys with counts the fuzzing must not change. */
const WATCHED = ['k:watched', 'multi:watched', 't:watched'];
let baseline: string;

const usageOf = async () => {
  const out: unknown[] = [];
  for (const key of WATCHED) out.push((await request(s.url, `/v1/usage?key=${encodeURIComponent(key)}`)).json());
  return JSON.stringify(out);
};

beforeAll(async () => {
  s = await serve({ adminToken: ADMIN, inspect: (k, m, at) => s.limiter.inspect(k, m, at), status: () => ({ ok: true }) });
  for (const key of WATCHED) for (let i = 0; i < 2; i++) expect((await request(s.url, '/v1/check', { body: { key } })).status).toBe(200);
  baseline = await usageOf();
  expect(baseline).toContain('"usage":2');
});
afterAll(() => s.close());

const ROUTES = ['/v1/check', '/v1/check/batch', '/v1/refund', '/v1/admin/reset', '/v1/usage', '/v1/status', '/healthz', '/readyz', '/v1/nope'];
const METHODS = ['POST', 'GET', 'PUT', 'DELETE'];
const CONTENT_TYPES = ['application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'application/octet-stream'];

/** Bodies shaped like the API's, with wrong types and values in every field. */
const nearValid = fc.record(
  {
    key: fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.integer(), fc.constant(null)),
    cost: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(null)),
    metadata: fc.oneof(fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer())), fc.string()),
    admissionId: fc.oneof(fc.string(), fc.constant('http-test.zzzzzzzzzz.x'), fc.integer()),
    checks: fc.array(fc.anything(), { maxLength: 5 }),
  },
  { requiredKeys: [] },
);

async function expectNoServerError(status: number, what: string): Promise<void> {
  expect(status, what).toBeGreaterThanOrEqual(200);
  expect(status, what).toBeLessThan(500);
}

describe('fuzzing the HTTP API', () => {
  it('arbitrary bytes as bodies of every route: no 5xx, no crash', async () => {
    await checkAsync(
      fc.asyncProperty(fc.constantFrom(...ROUTES), fc.constantFrom(...METHODS.filter((m) => m !== 'GET')), fc.constantFrom(...CONTENT_TYPES), fc.uint8Array({ maxLength: 300 }), fc.boolean(), async (route, method, ct, body, admin) => {
        const r = await request(s.url, route, { method, body: Buffer.from(body), headers: { 'content-type': ct, ...(admin ? { authorization: `Bearer ${ADMIN}` } : {}) } });
        await expectNoServerError(r.status, `${method} ${route} ${ct} ${Buffer.from(body).toString('hex')}`);
      }),
      { numRuns: RUNS },
    );
    expect(await usageOf()).toBe(baseline);
  });

  it('arbitrary JSON and near-valid bodies on every route: no 5xx, and the watched counts do not move', async () => {
    await checkAsync(
      fc.asyncProperty(fc.constantFrom(...ROUTES), fc.oneof(fc.jsonValue(), nearValid), fc.boolean(), async (route, body, admin) => {
        const r = await request(s.url, route, { method: 'POST', body: Buffer.from(JSON.stringify(body) ?? 'null'), headers: { 'content-type': 'application/json', ...(admin ? { authorization: `Bearer ${ADMIN}` } : {}) } });
        await expectNoServerError(r.status, `POST ${route} ${JSON.stringify(body)}`);
      }),
      { numRuns: RUNS },
    );
    expect(await usageOf()).toBe(baseline);
  });

  it('arbitrary query strings (as raw bytes on the socket): no 5xx, no crash', async () => {
    // Any byte but space, CR and LF (which end the request target).
    const qsByte = fc.integer({ min: 0, max: 255 }).filter((b) => b !== 0x20 && b !== 0x0d && b !== 0x0a);
    await checkAsync(
      fc.asyncProperty(fc.constantFrom('/v1/check', '/v1/usage', '/v1/status', '/healthz'), fc.array(qsByte, { maxLength: 120 }), async (route, qs) => {
        const head = Buffer.concat([Buffer.from(`GET ${route}?`), Buffer.from(qs), Buffer.from(' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')]);
        const status = await rawStatus(head);
        await expectNoServerError(status, `${route}?${Buffer.from(qs).toString('hex')}`);
      }),
      { numRuns: RUNS },
    );
    // Percent-encoded arbitrary strings, through an ordinary client.
    await checkAsync(
      fc.asyncProperty(fc.constantFrom('/v1/check', '/v1/usage'), fc.array(fc.tuple(fc.string(), fc.string({ unit: 'binary' })), { maxLength: 6 }), async (route, pairs) => {
        const qs = pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
        const r = await request(s.url, `${route}?${qs}`);
        await expectNoServerError(r.status, `${route}?${qs}`);
      }),
      { numRuns: RUNS },
    );
    expect(await usageOf()).toBe(baseline);
    expect((await request(s.url, '/healthz')).status).toBe(200);
  });
});

/** Sends a raw request and resolves with the status of the answer (0 if the connection closed without one). */
function rawStatus(head: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port: s.port });
    let received = '';
    c.on('data', (d: Buffer) => (received += d.toString('latin1')));
    c.on('error', reject);
    c.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(received);
      resolve(m ? Number(m[1]) : 0);
    });
    c.end(head);
  });
}
