/**
 * examples/nginx/nginx.conf run by a real nginx (Debian's, installed when missing) in front of a
 * real node and a small application: requests are limited by client IP (a client's own
 * X-Forwarded-For changes nothing), the RateLimit headers and Retry-After reach the client with
 * a 429, and with the limiter down the request follows the configuration's fail-open choice, or
 * fail-closed (503 with Retry-After) with the documented replacement line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http, { type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureDebianPackage } from '../../support/debian.ts';
import { freePorts } from '../../support/ports.ts';
import { waitFor } from '../../support/wait.ts';
import { parseSfList } from '../http/helpers.ts';
import { ROOT, exampleInReadme } from '../helpers/examples.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';

const FAIL_CLOSED = 'location @limiter_down { add_header Retry-After 1 always; return 503; }';
let node: TestNode;
let app: Server;
let appPort: number;
const running: { proc: ChildProcess; dir: string }[] = [];

beforeAll(async () => {
  ensureDebianPackage('nginx', 'nginx-light');
  node = await startTestNode({ rules: [{ id: 'per-ip', key: 'ip:*', limits: [{ limit: 2, window: '1m' }] }] }, ['--deny-status', '403', '--trusted-proxies', '127.0.0.1']);
  app = http.createServer((_req, res) => res.end('from the application\n'));
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appPort = (app.address() as AddressInfo).port;
});

afterAll(async () => {
  for (const n of running) {
    n.proc.kill('SIGTERM');
    await new Promise((r) => (n.proc.exitCode !== null ? r(null) : n.proc.once('exit', r)));
    rmSync(n.dir, { recursive: true, force: true });
  }
  await new Promise((r) => app.close(r));
  await node.close();
});

/** nginx with the example's configuration, its addresses replaced by this test's. */
async function startNginx(limiterPort: number, failClosed = false): Promise<string> {
  const [port] = await freePorts(1);
  let conf = readFileSync(join(ROOT, 'examples/nginx/nginx.conf'), 'utf8')
    .replace('server 127.0.0.1:8080;', `server 127.0.0.1:${limiterPort};`)
    .replace('server 127.0.0.1:9000;', `server 127.0.0.1:${appPort};`)
    .replace('listen 127.0.0.1:8000;', `listen 127.0.0.1:${port};`);
  if (failClosed) {
    expect(conf).toContain(`# ${FAIL_CLOSED}`);
    conf = conf.replace('location @limiter_down { proxy_pass http://app; }', FAIL_CLOSED);
  }
  const dir = mkdtempSync(join(tmpdir(), 'limiter-nginx-'));
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const proc = spawn('nginx', ['-e', 'stderr', '-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  running.push({ proc, dir });
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`nginx to listen (${err})`, async () => {
    if (proc.exitCode !== null) throw new Error(`nginx exited: ${err}`);
    return fetch(url).then(
      () => true,
      () => false,
    );
  }, { timeoutMs: 10_000, intervalMs: 20 });
  return url;
}

describe('nginx auth_request (examples/nginx/nginx.conf)', () => {
  it('the configuration is shown verbatim in the README', () => {
    expect(exampleInReadme('examples/nginx/nginx.conf').shown).toBe(true);
  });

  it('limits by client IP; RateLimit headers and Retry-After reach the client with a 429', async () => {
    const url = await startNginx(Number(new URL(node.url).port));
    // startNginx's readiness probe was the first request.
    expect(await node.usage('ip:127.0.0.1')).toBe(1);
    const ok = await fetch(url, { headers: { 'x-forwarded-for': '198.51.100.7' } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('from the application\n');
    expect(parseSfList(ok.headers.get('ratelimit-policy')!)).toEqual([{ value: 'per-ip', params: { q: 2, w: 60 } }]);
    expect(parseSfList(ok.headers.get('ratelimit')!)[0]).toMatchObject({ value: 'per-ip', params: { r: 0 } });
    const denied = await fetch(url, { headers: { 'x-forwarded-for': '198.51.100.8' } });
    expect(denied.status).toBe(429);
    expect(Number(denied.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(parseSfList(denied.headers.get('ratelimit')!)[0].params.r).toBe(0);
    expect(await denied.json()).toEqual({ error: 'RATE_LIMITED' });
    // The client's own X-Forwarded-For was replaced: one key, the real peer.
    expect(await node.usage('ip:127.0.0.1')).toBe(2);
    expect(await node.usage('ip:198.51.100.7')).toBe(0);
  });

  it('fails open with the limiter down: requests reach the application', async () => {
    const [closed] = await freePorts(1);
    const url = await startNginx(closed);
    const r = await fetch(url);
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('from the application\n');
  });

  it('fails closed with the documented replacement line: 503 with Retry-After', async () => {
    const [closed] = await freePorts(1);
    const url = await startNginx(closed, true);
    const r = await fetch(url);
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('1');
  });
});
