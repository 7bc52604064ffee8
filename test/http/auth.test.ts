/**
 * API tokens and restricted status, on a real socket: with tokens configured the check, refund
 * and usage routes need `Authorization: Bearer <token>` (401 API_UNAUTHORIZED otherwise) while
 * /healthz and /readyz stay open; tokens from a file rotate without a restart (the file is
 * watched, and re-read on SIGHUP); --restrict-status puts /v1/status and /v1/usage behind the
 * admin token.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/engine/errors.ts';
import { ApiTokens } from '../../src/http/api-tokens.ts';
import { startNodeProcess } from '../../support/node-process.ts';
import { waitFor } from '../../support/wait.ts';
import { request, serve } from './helpers.ts';

const T1 = 'api-token-one-0123456789';
const T2 = 'api-token-two-0123456789';
const T3 = 'api-token-three-0123456789';
const ADMIN = 'admin-token-0123456789abcdef';
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'limiter-auth-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

describe('API tokens', () => {
  it('check, batch, GET check, refund and usage need a configured token; health and readiness stay open', async () => {
    const s = await serve({ apiTokens: new ApiTokens({ tokens: [T1, T2] }), inspect: () => ({ ruleId: null, limits: [] }), status: () => ({ ok: true }) });
    try {
      const routes: [string, unknown][] = [
        ['/v1/check', { key: 'k:a' }],
        ['/v1/check/batch', { checks: [{ key: 'k:a' }] }],
        ['/v1/check?key=k:a', undefined],
        ['/v1/refund', { admissionId: 'x.y.z' }],
        ['/v1/usage?key=k:a', undefined],
        ['/v1/status', undefined],
      ];
      for (const [path, body] of routes) {
        for (const headers of [{}, bearer('wrong-token-0123456789'), { authorization: T1 }]) {
          const r = await request(s.url, path, { body, headers });
          expect(r.status, path).toBe(401);
          expect(r.json()).toMatchObject({ error: 'API_UNAUTHORIZED' });
        }
        for (const t of [T1, T2]) expect((await request(s.url, path, { body, headers: bearer(t) })).status, path).not.toBe(401);
      }
      // A refused check counts nothing: after three refused ones, the first allowed one leaves 4 of 5.
      for (const headers of [{}, bearer(T3), bearer(ADMIN)]) expect((await request(s.url, '/v1/check', { body: { key: 'k:b' }, headers })).status).toBe(401);
      const d = (await request(s.url, '/v1/check', { body: { key: 'k:b' }, headers: bearer(T1) })).json();
      expect(d).toMatchObject({ allowed: true, remaining: 4 });
      expect((await request(s.url, '/healthz')).status).toBe(200);
      expect((await request(s.url, '/readyz')).status).toBe(200);
    } finally {
      await s.close();
    }
  });

  it('without tokens the routes are open', async () => {
    const s = await serve({ apiTokens: new ApiTokens({}) });
    try {
      expect((await request(s.url, '/v1/check', { body: { key: 'k:a' } })).status).toBe(200);
    } finally {
      await s.close();
    }
  });

  it('tokens in a file rotate without a restart: a changed file is re-read, and an empty file closes the routes', async () => {
    const file = join(tmp(), 'tokens');
    writeFileSync(file, `# rotated daily\n${T1}\n\n`);
    const tokens = new ApiTokens({ file, pollMs: 20 });
    tokens.watch();
    const s = await serve({ apiTokens: tokens });
    const status = async (t: string) => (await request(s.url, '/v1/check', { body: { key: 'r:x' }, headers: bearer(t) })).status;
    try {
      expect(await status(T1)).toBe(200);
      expect(await status(T2)).toBe(401);
      writeFileSync(file, `${T2}\n`);
      await waitFor('the new token to be accepted', async () => (await status(T2)) === 200);
      expect(await status(T1)).toBe(401);
      writeFileSync(file, '');
      await waitFor('an empty file to close the routes', async () => (await status(T2)) === 401);
      expect((await request(s.url, '/v1/check', { body: { key: 'r:x' } })).status).toBe(401);
    } finally {
      tokens.close();
      await s.close();
    }
  });

  it('reload() re-reads the file; an unreadable or invalid file keeps the tokens in force', () => {
    const file = join(tmp(), 'tokens');
    writeFileSync(file, `${T1}\n`);
    const errors: Error[] = [];
    const tokens = new ApiTokens({ file, tokens: [T3], onReloadError: (e) => errors.push(e) });
    expect(tokens.accepts(T1) && tokens.accepts(T3)).toBe(true);
    writeFileSync(file, `${T2}\n`);
    expect(tokens.reload()).toBe(true);
    expect([tokens.accepts(T1), tokens.accepts(T2), tokens.accepts(T3)]).toEqual([false, true, true]);
    writeFileSync(file, 'short\n');
    expect(tokens.reload()).toBe(false);
    expect(errors[0]).toBeInstanceOf(ConfigError);
    expect(errors[0].message).not.toContain('short');
    expect(tokens.accepts(T2)).toBe(true);
    rmSync(file);
    expect(tokens.reload()).toBe(false);
    expect(tokens.accepts(T2)).toBe(true);
    expect(() => new ApiTokens({ file })).toThrow(ConfigError);
  });

  it('a node process re-reads its tokens file on SIGHUP', async () => {
    const dir = tmp();
    const file = join(dir, 'tokens');
    writeFileSync(file, `${T1}\n`);
    const rules = join(dir, 'rules.yaml');
    writeFileSync(rules, 'rules:\n  - id: all\n    key: "*"\n    limits: [{ limit: 100, window: 1m }]\n');
    const node = await startNodeProcess(['--rules', rules, '--data', join(dir, 'data'), '--api-tokens-file', file]);
    try {
      const status = async (t: string) => (await request(node.url, '/v1/check', { body: { key: 'a' }, headers: bearer(t) })).status;
      expect(await status(T1)).toBe(200);
      expect(await status(T2)).toBe(401);
      writeFileSync(file, `${T2}\n`);
      node.proc.kill('SIGHUP');
      await waitFor('the SIGHUP re-read', () => node.logs.some((l) => l.includes('SIGHUP')));
      await waitFor('the rotated token to be accepted', async () => (await status(T2)) === 200);
      expect(await status(T1)).toBe(401);
    } finally {
      await node.stop();
    }
  });
});

describe('--restrict-status', () => {
  it('puts /v1/status and /v1/usage behind the admin token; checks keep their API token', async () => {
    const s = await serve({
      restrictStatus: true,
      adminToken: ADMIN,
      apiTokens: new ApiTokens({ tokens: [T1] }),
      inspect: () => ({ ruleId: null, limits: [] }),
      status: () => ({ ok: true }),
    });
    try {
      for (const path of ['/v1/status', '/v1/usage?key=k:a']) {
        for (const headers of [{}, bearer(T1)]) {
          const r = await request(s.url, path, { headers });
          expect(r.status, path).toBe(401);
          expect(r.json()).toMatchObject({ error: 'ADMIN_UNAUTHORIZED' });
        }
        expect((await request(s.url, path, { headers: bearer(ADMIN) })).status).toBe(200);
      }
      expect((await request(s.url, '/v1/check', { body: { key: 'k:a' }, headers: bearer(T1) })).status).toBe(200);
    } finally {
      await s.close();
    }
  });

  it('without an admin token, restricted status routes are disabled (403), never open', async () => {
    const s = await serve({ restrictStatus: true, status: () => ({ ok: true }) });
    try {
      const r = await request(s.url, '/v1/status');
      expect(r.status).toBe(403);
      expect(r.json()).toMatchObject({ error: 'ADMIN_DISABLED' });
    } finally {
      await s.close();
    }
  });
});
