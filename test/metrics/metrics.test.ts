/**
 * GET /metrics of a node running alone (real node, real HTTP server, real SQLite files):
 * checks by rule and outcome, engine and HTTP latency histograms, keys, SQLite flushes,
 * overshoot bound per policy and prom-client's process metrics; series do not grow with keys;
 * the separate --metrics-port listener; --metrics false; and the admin guard with
 * --restrict-status.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningNode } from '../../src/serve.ts';
import { freePorts } from '../../support/ports.ts';
import { waitFor } from '../../support/wait.ts';
import { sampleValue, scrape } from '../helpers/metrics.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';

let running: TestNode | undefined;

afterEach(async () => {
  await running?.close();
  running = undefined;
});

const RULES = {
  version: 1,
  rules: [
    { id: 'login', key: 'login:*', limits: [{ limit: 2, window: '1m' }, { limit: 100, window: '1h' }] },
    { id: 'api', key: 'api:*', limits: [{ limit: 1000000, window: '1h' }] },
  ],
};

async function start(extra: string[] = []): Promise<RunningNode> {
  running = await startTestNode(RULES, ['--log-level', 'silent', ...extra]);
  return running.node;
}

async function post(url: string, path: string, body: unknown): Promise<number> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await res.arrayBuffer();
  return res.status;
}

describe('GET /metrics', () => {
  it('counts checks by rule and outcome, times them in the engine and over HTTP, and reports keys, flushes, the overshoot bound and process metrics', async () => {
    const n = await start();
    for (let i = 0; i < 3; i++) await post(n.url, '/v1/check', { key: 'login:ann' }); // 2 allowed, 1 denied
    await post(n.url, '/v1/check', { key: 'other' }); // no rule: bypassed
    expect(await post(n.url, '/v1/check/batch', { checks: [{ key: 'api:1' }, { key: 'api:2' }, { key: 'login:bob' }] })).toBe(200);
    expect((await fetch(`${n.url}/v1/check?key=api:3`)).status).toBe(200);
    // The flush of those admissions is observed once it happened.
    await waitFor('a flush', () => n.persistence.stats.flushes > 0, { timeoutMs: 5000 });

    const { status, contentType, samples } = await scrape(`${n.url}/metrics`);
    expect(status).toBe(200);
    expect(contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    const checks = (rule: string, outcome: string) => sampleValue(samples, 'regionlimit_checks_total', { rule, outcome });
    expect(checks('login', 'allowed')).toBe(3);
    expect(checks('login', 'denied')).toBe(1);
    expect(checks('api', 'allowed')).toBe(3);
    expect(checks('api', 'denied')).toBe(0);
    expect(checks('(none)', 'bypassed')).toBe(1);
    // One engine observation per decision (8), one HTTP observation per check request (6).
    expect(sampleValue(samples, 'regionlimit_check_duration_seconds_count', { layer: 'engine' })).toBe(8);
    expect(sampleValue(samples, 'regionlimit_check_duration_seconds_count', { layer: 'http', route: 'POST /v1/check' })).toBe(4);
    expect(sampleValue(samples, 'regionlimit_check_duration_seconds_count', { layer: 'http', route: 'POST /v1/check/batch' })).toBe(1);
    expect(sampleValue(samples, 'regionlimit_check_duration_seconds_count', { layer: 'http', route: 'GET /v1/check' })).toBe(1);
    expect(sampleValue(samples, 'regionlimit_check_duration_seconds_sum', { layer: 'engine' })).toBeGreaterThan(0);
    expect(sampleValue(samples, 'regionlimit_http_requests_total', { route: 'POST /v1/check', code: '429' })).toBe(1);
    expect(sampleValue(samples, 'regionlimit_http_requests_total', { route: 'POST /v1/check', code: '200' })).toBe(3);
    // login:ann and login:bob under two limits each, api:1..3 under one.
    expect(sampleValue(samples, 'regionlimit_live_keys')).toBe(n.engine.stats().liveKeys);
    expect(sampleValue(samples, 'regionlimit_live_keys')).toBeGreaterThanOrEqual(5);
    expect(sampleValue(samples, 'regionlimit_evicted_keys_total', { reason: 'cap' })).toBe(0);
    expect(sampleValue(samples, 'regionlimit_sqlite_flush_duration_seconds_count')).toBeGreaterThan(0);
    expect(sampleValue(samples, 'regionlimit_sqlite_flush_failures_total')).toBe(0);
    expect(sampleValue(samples, 'regionlimit_storage_writable')).toBe(1);
    expect(sampleValue(samples, 'regionlimit_ready')).toBe(1);
    expect(sampleValue(samples, 'regionlimit_degraded')).toBe(0);
    // Alone, every bound is 0; one series per policy.
    for (const policy of ['login/1m', 'login/1h', 'api']) {
      expect(sampleValue(samples, 'regionlimit_overshoot_bound', { rule: policy.split('/')[0], policy })).toBe(0);
    }
    expect(sampleValue(samples, 'regionlimit_limit', { policy: 'login/1m' })).toBe(2);
    expect(sampleValue(samples, 'regionlimit_node_info', { node: 'local-1', region: 'local' })).toBe(1);
    expect(sampleValue(samples, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    // Alone: no replication series at all.
    expect(samples.filter((s) => s.name.startsWith('regionlimit_replication_'))).toEqual([]);
  });

  it('keeps the same series under 100 000 distinct keys, and never names a key', async () => {
    const n = await start(['--max-keys', '200000']);
    // Every route, outcome and status the load below will produce, seen once first.
    await post(n.url, '/v1/check/batch', { checks: [{ key: 'api:warm-0' }, { key: 'login:warm' }, { key: 'other-warm' }] });
    await waitFor('a flush', () => n.persistence.stats.flushes > 0, { timeoutMs: 5000 });
    await scrape(`${n.url}/metrics`); // the /metrics route itself is then counted too
    const before = await scrape(`${n.url}/metrics`);
    // Every series but Node's own by-kind ones, which gain one per kind of garbage collection
    // (minor, major, incremental…) or of handle (socket, timer…) as the process first has one.
    const byKind = (name: string) => name.startsWith('nodejs_gc_duration_seconds') || name.startsWith('nodejs_active_');
    const series = (s: typeof before) => new Set(s.samples.filter((x) => !byKind(x.name)).map((x) => `${x.name}${JSON.stringify(x.labels)}`));
    const seriesBefore = series(before);

    for (let b = 0; b < 100; b++) {
      const checks = Array.from({ length: 1000 }, (_, i) => ({ key: `api:user-${b * 1000 + i}` }));
      expect(await post(n.url, '/v1/check/batch', { checks })).toBe(200);
    }
    const after = await scrape(`${n.url}/metrics`);
    expect(sampleValue(after.samples, 'regionlimit_live_keys')).toBeGreaterThanOrEqual(100_000);
    expect(sampleValue(after.samples, 'regionlimit_checks_total', { rule: 'api', outcome: 'allowed' })).toBe(100_001);
    expect([...series(after)].sort()).toEqual([...seriesBefore].sort());
    expect(after.text).not.toContain('user-');
  }, 120_000);

  it('serves /metrics on its own listener with --metrics-port, and not on the HTTP port', async () => {
    const [port] = await freePorts(1);
    const n = await start(['--metrics-port', String(port)]);
    expect(n.metricsUrl).toBe(`http://127.0.0.1:${port}/metrics`);
    await post(n.url, '/v1/check', { key: 'login:ann' });
    const own = await scrape(n.metricsUrl!);
    expect(own.status).toBe(200);
    expect(sampleValue(own.samples, 'regionlimit_checks_total', { rule: 'login', outcome: 'allowed' })).toBe(1);
    expect((await fetch(`${n.url}/metrics`)).status).toBe(404);
    const other = await fetch(`http://127.0.0.1:${port}/v1/status`);
    expect(other.status).toBe(404);
    expect(((await other.json()) as { error: string }).error).toBe('NOT_FOUND');
    expect((await fetch(n.metricsUrl!, { method: 'POST' })).status).toBe(405);
  });

  it('serves no /metrics with --metrics false', async () => {
    const n = await start(['--metrics', 'false']);
    expect(n.metrics).toBeUndefined();
    expect((await fetch(`${n.url}/metrics`)).status).toBe(404);
    expect(await post(n.url, '/v1/check', { key: 'login:ann' })).toBe(200);
  });

  it('asks for the admin token with --restrict-status, like /v1/status', async () => {
    const token = 'metrics-admin-token-0123456789';
    const n = await start(['--restrict-status', 'true', '--admin-token', token]);
    const refused = await fetch(`${n.url}/metrics`);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: string }).error).toBe('ADMIN_UNAUTHORIZED');
    const ok = await scrape(`${n.url}/metrics`, token);
    expect(ok.status).toBe(200);
    expect(sampleValue(ok.samples, 'regionlimit_ready')).toBe(1);
  });
});
