/**
 * The rules admin API on a real node (HTTP server, SQLite data directory): authentication,
 * GET/PUT with ETag and If-Match, every class of bad document refused as a whole with its
 * problems and the rules unchanged, PUT/DELETE of one rule, YAML bodies, counts kept across a
 * change of limit, the rules kept across a restart, the watched file, and --admin-port.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { startNode, type RunningNode } from '../../src/serve.ts';
import { freePorts } from '../../support/ports.ts';
import { waitFor } from '../../support/wait.ts';

const TOKEN = 'admin-token-0123456789';
const RULES = { version: 1, rules: [{ id: 'api', key: 'k:*', limits: [{ limit: 3, window: '1h', algorithm: 'fixed-window' }] }] };

const dirs: string[] = [];
const nodes: RunningNode[] = [];
afterEach(async () => {
  for (const n of nodes.splice(0)) await n.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Started {
  node: RunningNode;
  dir: string;
  log: () => string;
}

/** A node on `dir` (a new one by default) with RULES as its file unless the file exists. */
async function start(args: string[] = [], dir?: string, rules: object | undefined = RULES): Promise<Started> {
  if (dir === undefined) {
    dir = mkdtempSync(join(tmpdir(), 'limiter-rules-'));
    dirs.push(dir);
  }
  if (rules !== undefined) writeFileSync(join(dir, 'rules.json'), JSON.stringify(rules));
  let log = '';
  const sink = new Writable({ write: (chunk, _enc, cb) => ((log += String(chunk)), cb()) });
  const config = loadConfig(['--rules', join(dir, 'rules.json'), '--data', join(dir, 'data'), '--port', '0', ...args], {});
  const node = await startNode(config, { logger: pino({ level: 'info' }, sink) });
  nodes.push(node);
  return { node, dir, log: () => log };
}

const auth = { authorization: `Bearer ${TOKEN}` };

async function call(base: string, method: string, path: string, body?: unknown, headers: Record<string, string> = auth) {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + path, init);
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>) };
}

const getRules = async (url: string) => (await call(url, 'GET', '/v1/rules')).body as { version: string; rules: typeof RULES };
const check = async (url: string, key: string) => (await fetch(`${url}/v1/check`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key }) })).status;

describe('rules admin API', () => {
  it('answers 403 ADMIN_DISABLED with no admin token configured, 401 without or with a wrong token, 200 with the right one', async () => {
    const off = await start();
    for (const [m, p, b] of [['GET', '/v1/rules'], ['PUT', '/v1/rules', RULES], ['PUT', '/v1/rules/api', RULES.rules[0]], ['DELETE', '/v1/rules/api']] as const) {
      const r = await call(off.node.url, m, p, b);
      expect(r.status).toBe(403);
      expect(r.body?.error).toBe('ADMIN_DISABLED');
    }
    const on = await start(['--admin-token', TOKEN]);
    const none = await call(on.node.url, 'GET', '/v1/rules', undefined, {});
    expect([none.status, none.body?.error]).toEqual([401, 'ADMIN_UNAUTHORIZED']);
    const wrong = await call(on.node.url, 'PUT', '/v1/rules', RULES, { authorization: `Bearer ${TOKEN}x` });
    expect([wrong.status, wrong.body?.error]).toEqual([401, 'ADMIN_UNAUTHORIZED']);
    expect((await call(on.node.url, 'GET', '/v1/rules')).status).toBe(200);
    expect((await getRules(on.node.url)).version.startsWith('0.')).toBe(true);
  });

  it('GET answers the document and its version as ETag; PUT replaces it; a stale If-Match is refused with 412 and nothing changes; other methods 405, other media types 415', async () => {
    const { node } = await start(['--admin-token', TOKEN]);
    const first = await call(node.url, 'GET', '/v1/rules');
    expect(first.body).toEqual({ version: expect.any(String), rules: RULES });
    expect(first.headers.get('etag')).toBe(`"${first.body!.version as string}"`);
    const next = structuredClone(RULES);
    next.rules[0].limits[0].limit = 9;
    const put = await call(node.url, 'PUT', '/v1/rules', next, { ...auth, 'if-match': first.headers.get('etag')! });
    expect(put.status).toBe(200);
    expect(put.body?.version).not.toBe(first.body!.version);
    expect(await getRules(node.url)).toEqual({ version: put.body!.version, rules: next });
    const stale = await call(node.url, 'PUT', '/v1/rules', RULES, { ...auth, 'if-match': first.headers.get('etag')! });
    expect([stale.status, stale.body?.error]).toEqual([412, 'RULES_VERSION_STALE']);
    expect(await getRules(node.url)).toEqual({ version: put.body!.version, rules: next });
    expect(node.engine.rulesConfig.rules[0].limits[0].limit).toBe(9);
    const post = await call(node.url, 'POST', '/v1/rules', RULES);
    expect([post.status, post.body?.error, post.headers.get('allow')]).toEqual([405, 'METHOD_NOT_ALLOWED', 'GET, PUT']);
    const text = await call(node.url, 'PUT', '/v1/rules', 'rules: []', { ...auth, 'content-type': 'text/plain' });
    expect([text.status, text.body?.error]).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
  });

  it('refuses every class of bad document with 400 RULES_INVALID listing every problem, all or nothing', async () => {
    const { node } = await start(['--admin-token', TOKEN]);
    const before = await getRules(node.url);
    const rule = (over: object) => ({ version: 1, rules: [{ ...RULES.rules[0], ...over }] });
    const cases: [string, unknown, string, string?][] = [
      ['unknown field', rule({ colour: 'red' }), 'RULE_INVALID', '/rules/0/colour'],
      ['bad window', rule({ limits: [{ limit: 3, window: 'soon' }] }), 'RULE_INVALID_WINDOW', '/rules/0/limits/0/window'],
      ['zero limit', rule({ limits: [{ limit: 0, window: '1s' }] }), 'RULE_INVALID', '/rules/0/limits/0/limit'],
      ['negative limit', rule({ limits: [{ limit: -5, window: '1s' }] }), 'RULE_INVALID', '/rules/0/limits/0/limit'],
      ['duplicate id', { version: 1, rules: [RULES.rules[0], RULES.rules[0]] }, 'RULE_DUPLICATE_ID', '/rules/1/id'],
      ['bad pattern', rule({ key: 'a*b' }), 'RULE_INVALID_PATTERN', '/rules/0/key'],
      ['no rules', { version: 1 }, 'RULE_INVALID', '/rules'],
      ['not JSON', '{"rules": [', 'CONFIG_UNREADABLE'],
      ['not an object', '[1, 2]', 'RULE_INVALID'],
      ['too large', { version: 1, rules: [{ ...RULES.rules[0], description: 'x'.repeat(900) }], pad: 'y'.repeat(1_100_000) }, 'RULES_TOO_LARGE'],
    ];
    for (const [name, doc, code, path] of cases) {
      const r = await call(node.url, 'PUT', '/v1/rules', doc);
      expect(r.status, name).toBe(400);
      expect(r.body?.error, name).toBe('RULES_INVALID');
      const problems = r.body?.problems as { code: string; path: string; message: string }[];
      expect(problems.some((p) => p.code === code && (path === undefined || p.path === path)), `${name}: ${JSON.stringify(problems)}`).toBe(true);
      for (const p of problems) expect(Object.keys(p).sort()).toEqual(['code', 'message', 'path']);
    }
    // Several problems at once are all listed.
    const many = await call(node.url, 'PUT', '/v1/rules', { version: 1, rules: [{ ...RULES.rules[0], limits: [{ limit: 0, window: 'soon' }] }, RULES.rules[0]] });
    expect((many.body?.problems as unknown[]).length).toBeGreaterThanOrEqual(3);
    expect(await getRules(node.url)).toEqual(before);
  });

  it('PUT /v1/rules/:id replaces or adds one rule, DELETE removes one (404 RULE_NOT_FOUND for an unknown id), YAML bodies are read', async () => {
    const { node } = await start(['--admin-token', TOKEN]);
    const replaced = await call(node.url, 'PUT', '/v1/rules/api', { key: 'k:*', limits: [{ limit: 4, window: '1h', algorithm: 'fixed-window' }] });
    expect(replaced.status).toBe(200);
    const yaml = 'key: "y:*"\nlimits:\n  - limit: 2\n    window: 1m\n';
    const added = await call(node.url, 'PUT', '/v1/rules/extra', yaml, { ...auth, 'content-type': 'application/yaml' });
    expect(added.status).toBe(200);
    let doc = await getRules(node.url);
    expect(doc.rules.rules.map((r) => [r.id, r.limits[0].limit])).toEqual([['api', 4], ['extra', 2]]);
    expect(doc.version).toBe(added.body!.version);
    const mismatch = await call(node.url, 'PUT', '/v1/rules/extra', { id: 'other', key: 'z', limits: [{ limit: 1, window: '1s' }] });
    expect([mismatch.status, mismatch.body?.error]).toEqual([400, 'RULES_INVALID']);
    const del = await call(node.url, 'DELETE', '/v1/rules/extra');
    expect(del.status).toBe(200);
    const missing = await call(node.url, 'DELETE', '/v1/rules/extra');
    expect([missing.status, missing.body?.error]).toEqual([404, 'RULE_NOT_FOUND']);
    const wholeYaml = 'version: 1\nrules:\n  - id: api\n    key: "k:*"\n    limits: [{ limit: 6, window: 1h, algorithm: fixed-window }]\n';
    expect((await call(node.url, 'PUT', '/v1/rules', wholeYaml, { ...auth, 'content-type': 'application/yaml' })).status).toBe(200);
    doc = await getRules(node.url);
    expect(doc.rules.rules).toEqual([{ id: 'api', key: 'k:*', limits: [{ limit: 6, window: '1h', algorithm: 'fixed-window' }] }]);
    const badYaml = await call(node.url, 'PUT', '/v1/rules', 'rules: [a: b: c', { ...auth, 'content-type': 'application/yaml' });
    expect([badYaml.status, badYaml.body?.error]).toEqual([400, 'RULES_INVALID']);
  });

  it('a changed limit keeps the counts made: raising it frees capacity at once, lowering it denies at once', async () => {
    const { node } = await start(['--admin-token', TOKEN]);
    const statuses = async (n: number) => Promise.all(Array.from({ length: n }, () => check(node.url, 'k:a')));
    expect(await statuses(4)).toEqual([200, 200, 200, 429]);
    expect((await call(node.url, 'PUT', '/v1/rules/api', { key: 'k:*', limits: [{ limit: 5, window: '1h', algorithm: 'fixed-window' }] })).status).toBe(200);
    expect(await statuses(3)).toEqual([200, 200, 429]);
    expect((await call(node.url, 'PUT', '/v1/rules/api', { key: 'k:*', limits: [{ limit: 2, window: '1h', algorithm: 'fixed-window' }] })).status).toBe(200);
    expect(await statuses(1)).toEqual([429]);
  });

  it('the rules survive a restart; a rules file edited since it was last applied wins as a new change', async () => {
    const first = await start(['--admin-token', TOKEN]);
    const next = structuredClone(RULES);
    next.rules[0].limits[0].limit = 8;
    const put = await call(first.node.url, 'PUT', '/v1/rules', next);
    await first.node.close();

    const again = await start(['--admin-token', TOKEN], first.dir, undefined);
    expect(await getRules(again.node.url)).toEqual({ version: put.body!.version, rules: next });
    expect(again.node.engine.rulesConfig.rules[0].limits[0].limit).toBe(8);
    await again.node.close();

    const edited = structuredClone(RULES);
    edited.rules[0].limits[0].limit = 11;
    const third = await start(['--admin-token', TOKEN], first.dir, edited);
    const after = await getRules(third.node.url);
    expect(after.rules).toEqual(edited);
    expect(Number(after.version.split('.')[0])).toBeGreaterThan(Number((put.body!.version as string).split('.')[0]));
  });

  it('--watch-rules applies an edit of the file like a PUT; an invalid edit is logged and refused, the rules unchanged', async () => {
    const s = await start(['--admin-token', TOKEN, '--watch-rules', 'true']);
    const before = await getRules(s.node.url);
    const edited = structuredClone(RULES);
    edited.rules[0].limits[0].limit = 12;
    writeFileSync(join(s.dir, 'rules.json'), JSON.stringify(edited));
    const applied = await waitFor('the edit applied', async () => {
      const r = await getRules(s.node.url);
      return r.version !== before.version ? r : undefined;
    });
    expect(applied.rules).toEqual(edited);
    writeFileSync(join(s.dir, 'rules.json'), JSON.stringify({ version: 1, rules: [{ id: 'api', key: 'k:*', limits: [{ limit: 0, window: '1h' }] }] }));
    await waitFor('the invalid edit refused in the log', () => s.log().includes('rules file edit refused'));
    expect(s.log()).toContain('/rules/0/limits/0/limit');
    expect(await getRules(s.node.url)).toEqual(applied);
  });

  it('--admin-port serves the admin routes (rules, reset) on their own listener only; /v1/status and metrics report the version', async () => {
    const s = await start(['--admin-token', TOKEN, '--admin-port', '0']);
    expect(s.node.adminUrl).toBe(s.node.url); // 0: on the HTTP port
    const dir = s.dir;
    await s.node.close();
    const free = await freePorts(1);
    const split = await start(['--admin-token', TOKEN, '--admin-port', String(free[0])], dir, undefined);
    expect(split.node.adminUrl).not.toBe(split.node.url);
    expect((await call(split.node.url, 'GET', '/v1/rules')).status).toBe(404);
    expect((await call(split.node.url, 'POST', '/v1/admin/reset', { key: 'k:a' })).status).toBe(404);
    const reset = await call(split.node.adminUrl, 'POST', '/v1/admin/reset', { key: 'k:a' });
    expect([reset.status, reset.body?.key]).toEqual([200, 'k:a']);
    expect((await call(split.node.adminUrl, 'POST', '/v1/admin/reset', { key: 'k:a' }, {})).status).toBe(401);
    const r = await getRules(split.node.adminUrl);
    expect(r.rules).toEqual(RULES);
    const status = (await (await fetch(`${split.node.url}/v1/status`)).json()) as { rules: { version: string } };
    expect(status.rules.version).toBe(r.version);
    const metrics = await (await fetch(`${split.node.url}/metrics`)).text();
    expect(metrics).toContain(`regionlimit_rules_info{version="${r.version}"} 1`);
  });
});
