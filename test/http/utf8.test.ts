/**
 * Invalid UTF-8 is refused with 400 INVALID_UTF8 on every body route and in query strings,
 * never decoded into replacement characters (which would let different byte strings count as
 * one key), and nothing is counted. Valid UTF-8, raw or percent-encoded, names the same key.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request, serve, type Served } from './helpers.ts';

const ADMIN = 'admin-token-0123456789abcdef';
let s: Served;
beforeAll(async () => {
  s = await serve({ adminToken: ADMIN, inspect: (k, m, at) => s.limiter.inspect(k, m, at) });
});
afterAll(() => s.close());

/** Invalid UTF-8 sequences, by kind. */
const INVALID: Record<string, number[]> = {
  'overlong "/" (2 bytes)': [0xc0, 0xaf],
  'overlong "/" (3 bytes)': [0xe0, 0x80, 0xaf],
  'overlong NUL': [0xc0, 0x80],
  'lone continuation byte': [0x80],
  'lone continuation bytes': [0xbf, 0xbf],
  'high surrogate U+D800': [0xed, 0xa0, 0x80],
  'low surrogate U+DFFF': [0xed, 0xbf, 0xbf],
  'truncated 3-byte sequence': [0xe2, 0x82],
  'truncated 4-byte sequence': [0xf0, 0x9f, 0x98],
  'lead byte at the end': [0xc3],
  'above U+10FFFF': [0xf4, 0x90, 0x80, 0x80],
  'bytes never used': [0xfe, 0xff],
};

const bytes = (parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));
const pct = (b: number[]) => b.map((x) => `%${x.toString(16).toUpperCase().padStart(2, '0')}`).join('');
const JSON_CT = { 'content-type': 'application/json' };

const routes: { name: string; path: string; body: (bad: number[]) => Buffer; headers?: Record<string, string> }[] = [
  { name: 'POST /v1/check', path: '/v1/check', body: (b) => bytes(['{"key":"k:', b, '"}']) },
  { name: 'POST /v1/check (metadata)', path: '/v1/check', body: (b) => bytes(['{"key":"k:m","metadata":{"tier":"', b, '"}}']) },
  { name: 'POST /v1/check/batch', path: '/v1/check/batch', body: (b) => bytes(['{"checks":[{"key":"k:ok"},{"key":"k:', b, '"}]}']) },
  { name: 'POST /v1/refund', path: '/v1/refund', body: (b) => bytes(['{"admissionId":"http-test.zz.', b, '"}']) },
  { name: 'POST /v1/admin/reset', path: '/v1/admin/reset', body: (b) => bytes(['{"key":"k:', b, '"}']), headers: { authorization: `Bearer ${ADMIN}` } },
];

async function expectNothingCounted(): Promise<void> {
  expect(s.limiter.stats().liveKeys).toBe(0);
}

describe('invalid UTF-8 in JSON bodies', () => {
  for (const route of routes) {
    it(`${route.name}: every invalid sequence is refused with 400 INVALID_UTF8`, async () => {
      for (const [kind, bad] of Object.entries(INVALID)) {
        const r = await request(s.url, route.path, { body: route.body(bad), headers: { ...JSON_CT, ...route.headers } });
        expect(r.status, kind).toBe(400);
        expect(r.json(), kind).toMatchObject({ error: 'INVALID_UTF8' });
      }
      await expectNothingCounted();
    });
  }
});

describe('invalid UTF-8 in query strings', () => {
  it('GET /v1/check and /v1/usage refuse every invalid percent-encoded sequence, in a key, a value or a name', async () => {
    for (const [kind, bad] of Object.entries(INVALID)) {
      for (const qs of [`key=k:${pct(bad)}`, `key=k:a&m.tier=${pct(bad)}`, `key=k:a&m.${pct(bad)}=x`]) {
        for (const route of ['/v1/check', '/v1/usage']) {
          const r = await request(s.url, `${route}?${qs}`);
          expect(r.status, `${kind} ${route}?${qs}`).toBe(400);
          expect(r.json()).toMatchObject({ error: 'INVALID_UTF8' });
        }
      }
    }
    await expectNothingCounted();
  });

  it('raw (unescaped) invalid bytes in the request line are refused too', async () => {
    for (const bad of Object.values(INVALID)) {
      const c = net.connect({ host: '127.0.0.1', port: s.port });
      let received = '';
      c.on('data', (d: Buffer) => (received += d.toString('latin1')));
      c.end(bytes(['GET /v1/check?key=k:', bad, ' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n']));
      await new Promise((r) => c.on('close', r));
      expect(received).toMatch(/^HTTP\/1\.1 400/);
    }
    await expectNothingCounted();
  });
});

describe('valid UTF-8', () => {
  it('raw in a body and percent-encoded in a query string name the same key', async () => {
    const key = 'k:é✓😀';
    expect((await request(s.url, '/v1/check', { body: Buffer.from(JSON.stringify({ key })), headers: JSON_CT })).status).toBe(200);
    expect((await request(s.url, `/v1/check?key=${encodeURIComponent(key)}`)).status).toBe(200);
    const u = await request(s.url, `/v1/usage?key=${encodeURIComponent(key)}`);
    expect(u.json()).toMatchObject({ key, limits: [{ usage: 2 }] });
  });
});
