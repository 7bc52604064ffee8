/**
 * Test helpers for the HTTP adapter: a structured-field parser for the RateLimit headers
 * (written independently of src/http/headers.ts), the real Engine with the test rules, an app
 * served on a real socket with a clock the test moves, and one raw HTTP(S) request.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { createEngine, type Engine } from '../../src/engine/engine.ts';
import { parseRules } from '../../src/engine/rules.ts';
import { buildApp, type BuildAppOptions } from '../../src/http/app.ts';

export interface SfItem {
  value: string;
  params: Record<string, number>;
}

/** Parses a structured-field List of sf-string Items with integer parameters. */
export function parseSfList(header: string): SfItem[] {
  const out: SfItem[] = [];
  let i = 0;
  const s = header;
  const ws = () => {
    while (s[i] === ' ' || s[i] === '\t') i++;
  };
  while (i < s.length) {
    ws();
    if (s[i] !== '"') throw new Error(`expected sf-string at ${i} in ${s}`);
    i++;
    let value = '';
    while (s[i] !== '"') {
      if (i >= s.length) throw new Error('unterminated sf-string');
      if (s[i] === '\\') i++;
      value += s[i++];
    }
    i++;
    const params: Record<string, number> = {};
    while (s[i] === ';') {
      i++;
      const m = /^([a-z*][a-z0-9_.*-]*)=(-?\d{1,15})/.exec(s.slice(i));
      if (!m) throw new Error(`bad parameter at ${i} in ${s}`);
      params[m[1]] = Number(m[2]);
      i += m[0].length;
    }
    out.push({ value, params });
    ws();
    if (i < s.length) {
      if (s[i] !== ',') throw new Error(`expected , at ${i} in ${s}`);
      i++;
    }
  }
  return out;
}

/**
 * The rules every HTTP test uses (fixed windows, so counts are exact at a fixed clock):
 *   per-key   k:*        5 per 1m                    policy "per-key"
 *   multi     multi:*    3 per 10s and 10 per 1m     policies "multi/10s", "multi/1m"
 *   atomic    atomic:*   100 per 1h                  policy "atomic"
 *   tier-free t:* with metadata tier=free, 2 per 1m, priority 10
 *   tier-any  t:*        50 per 1m, priority 1
 *   roomy     r:*        1000 per 1h (for tests that make many requests)
 *   capped    cap:*      10 per 1m, at most 3 live keys (maxKeys)
 *   by-ip     ip:*       1000 per 1h (GET /v1/check without a key)
 * Keys starting with "other:" match no rule.
 */
export const TEST_RULES_YAML = `
version: 1
rules:
  - id: per-key
    key: "k:*"
    limits: [{ limit: 5, window: 1m, algorithm: fixed-window }]
  - id: multi
    key: "multi:*"
    limits:
      - { limit: 3, window: 10s, algorithm: fixed-window }
      - { limit: 10, window: 1m, algorithm: fixed-window }
  - id: atomic
    key: "atomic:*"
    limits: [{ limit: 100, window: 1h, algorithm: fixed-window }]
  - id: tier-free
    key: "t:*"
    priority: 10
    metadata: { tier: free }
    limits: [{ limit: 2, window: 1m, algorithm: fixed-window }]
  - id: tier-any
    key: "t:*"
    priority: 1
    limits: [{ limit: 50, window: 1m, algorithm: fixed-window }]
  - id: roomy
    key: "r:*"
    limits: [{ limit: 1000, window: 1h, algorithm: fixed-window }]
  - id: capped
    key: "cap:*"
    maxKeys: 3
    limits: [{ limit: 10, window: 1m, algorithm: fixed-window }]
  - id: by-ip
    key: "ip:*"
    limits: [{ limit: 1000, window: 1h, algorithm: fixed-window }]
`;

/** A fresh real Engine with the test rules. */
export function makeLimiter(): Engine {
  return createEngine({ nodeId: 'http-test', rules: parseRules(TEST_RULES_YAML, 'test/http/rules.yaml') });
}

/** An app listening on a real socket (127.0.0.1, a port the kernel picks) with a clock the test moves. */
export interface Served {
  app: FastifyInstance;
  url: string;
  port: number;
  limiter: Engine;
  /** The app's clock (ms since the epoch); tests move it by assigning `clock.now`. */
  clock: { now: number };
  close(): Promise<void>;
}

/** A minute boundary plus 30 s: every fixed window of the test rules is half way through. */
export const SERVED_T0 = Date.UTC(2030, 0, 1, 0, 0, 30);

export async function serve(extra: Partial<BuildAppOptions> = {}, opts: { limiter?: Engine; host?: string } = {}): Promise<Served> {
  const clock = { now: SERVED_T0 };
  const limiter = opts.limiter ?? makeLimiter();
  const app = buildApp({ limiter, now: () => clock.now, ...extra });
  await app.listen({ host: opts.host ?? '127.0.0.1', port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  const scheme = extra.server?.tls !== undefined ? 'https' : 'http';
  return { app, url: `${scheme}://127.0.0.1:${port}`, port, limiter, clock, close: () => app.close() };
}

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  json<T = Record<string, unknown>>(): T;
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** A JS value is sent as JSON; a Buffer as it is. */
  body?: unknown;
  /** Source address of the connection (e.g. 127.0.0.2: another loopback peer). */
  localAddress?: string;
  /** CA to trust for https URLs. */
  ca?: string | Buffer;
}

/** One HTTP(S) request over a real socket (no keep-alive), with the raw path as given. */
export function request(url: string, path: string, o: RequestOptions = {}): Promise<RawResponse> {
  const u = new URL(url);
  const payload = o.body === undefined ? undefined : Buffer.isBuffer(o.body) ? o.body : Buffer.from(JSON.stringify(o.body));
  const headers: Record<string, string> = {
    ...(payload !== undefined && !Buffer.isBuffer(o.body) ? { 'content-type': 'application/json' } : {}),
    // Explicit, so a body is framed on every method (Node sends DELETE bodies unframed otherwise).
    ...(payload !== undefined ? { 'content-length': String(payload.length) } : {}),
    ...o.headers,
  };
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      { host: u.hostname, port: u.port, method: o.method ?? (payload !== undefined ? 'POST' : 'GET'), path, headers, agent: false, localAddress: o.localAddress, ca: o.ca },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: <T>() => JSON.parse(body) as T });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
