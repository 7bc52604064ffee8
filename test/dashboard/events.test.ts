/**
 * GET /dashboard/events of a node running alone (real node, real HTTP server): a stream of
 * frames with the node's checks, mode, overshoot and the followed key's usage; a bad key
 * refused with the /v1/usage codes; the cross-origin preflight; the page and uPlot served by
 * the node itself; and a node closing while a stream is open.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { DashboardFrame } from '../../src/http/dashboard/routes.ts';
import type { RunningNode } from '../../src/serve.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';

let running: TestNode | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

async function start(): Promise<RunningNode> {
  const rules = { version: 1, rules: [{ id: 'conv', key: 'conv:*', limits: [{ limit: 5, window: '1m' }] }] };
  running = await startTestNode(rules, ['--log-level', 'silent', '--node-id', 'dash-1', '--region', 'here']);
  return running.node;
}

/**
 * Reads `n` frames of an events stream on a connection of its own (node:http, no agent), then
 * closes that connection.
 */
function frames(url: string, n: number): Promise<{ headers: http.IncomingHttpHeaders; frames: DashboardFrame[] }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      if (res.statusCode !== 200) {
        req.destroy();
        reject(new Error(`${url}: HTTP ${res.statusCode}`));
        return;
      }
      const out: DashboardFrame[] = [];
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0 && out.length < n) {
          out.push(JSON.parse(buf.slice(0, i).replace(/^data: /, '')) as DashboardFrame);
          buf = buf.slice(i + 2);
        }
        if (out.length === n) {
          req.destroy();
          resolve({ headers: res.headers, frames: out });
        }
      });
    });
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
  });
}

describe('GET /dashboard/events', () => {
  it('streams frames with checks, mode, overshoot and the key\'s usage, readable from another origin', async () => {
    const n = await start();
    for (let i = 0; i < 7; i++) await (await fetch(`${n.url}/v1/check?key=conv:a`)).arrayBuffer();
    const { headers, frames: got } = await frames(`${n.url}/dashboard/events?key=conv:a`, 2);
    expect(headers['content-type']).toBe('text/event-stream');
    expect(headers['access-control-allow-origin']).toBe('*');
    expect(got).toHaveLength(2);
    expect(got[1].at).toBeGreaterThan(got[0].at);
    const f = got[1];
    expect(f).toMatchObject({ node: 'dash-1', region: 'here', ready: true, degraded: false, checks: { allowed: 5, denied: 2, bypassed: 0 }, peers: [] });
    expect(f.overshoot).toEqual([{ policy: 'conv', limit: 5, bound: 0, observed: 0 }]);
    expect(f.usage).toEqual({ key: 'conv:a', ruleId: 'conv', limits: [{ policy: 'conv', usage: 5, limit: 5 }] });
    // Without a key: no usage.
    expect((await frames(`${n.url}/dashboard/events`, 1)).frames[0].usage).toBeNull();
  });

  it('refuses a bad key with the codes of /v1/usage', async () => {
    const n = await start();
    const res = await fetch(`${n.url}/dashboard/events?key=${'x'.repeat(600)}`);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: string }).error).toBe('KEY_TOO_LONG');
  });

  it('answers the cross-origin preflight of a request with a token', async () => {
    const n = await start();
    const res = await fetch(`${n.url}/dashboard/events`, { method: 'OPTIONS', headers: { origin: 'http://elsewhere', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
    expect(res.headers.get('access-control-allow-headers')).toBe('authorization');
  });

  it('serves the page, its script and uPlot from the node itself', async () => {
    const n = await start();
    const page = await fetch(`${n.url}/dashboard`);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).not.toMatch(/https?:\/\//); // nothing from elsewhere
    for (const asset of ['/dashboard/uPlot.iife.min.js', '/dashboard/uPlot.min.css', '/dashboard/page.js']) {
      expect(html).toContain(asset);
      const res = await fetch(`${n.url}${asset}`);
      expect(res.status, asset).toBe(200);
      expect((await res.text()).length).toBeGreaterThan(1000);
    }
  });

  it('closes while a stream is open', async () => {
    const n = await start();
    let ended!: () => void;
    const streamEnded = new Promise<void>((r) => (ended = r));
    const opened = new Promise<void>((resolve, reject) => {
      const req = http.get(`${n.url}/dashboard/events`, { agent: false }, (res) => {
        res.once('data', () => resolve());
        res.on('close', () => ended());
        res.resume();
      });
      req.on('error', () => ended());
      req.on('error', reject);
    });
    await opened;
    const t0 = Date.now();
    await n.close();
    // Well within the keep-alive timeout (30 s) a held connection would make it wait.
    expect(Date.now() - t0).toBeLessThan(5000);
    await streamEnded;
  });
});
