/**
 * Listener bounds on a real socket, with small timeouts: sockets that trickle their headers or
 * body, go idle after their headers, or sit idle are closed within the configured timeout;
 * connections beyond --max-connections are closed at once; oversized heads and bodies are
 * refused. And a rule's maxKeys: a new key is denied once the rule holds its cap, existing keys
 * keep working.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createEngine } from '../../src/engine/engine.ts';
import { parseRules } from '../../src/engine/rules.ts';
import type { Decision } from '../../src/engine/types.ts';
import type { ServerLimits } from '../../src/http/server-options.ts';
import { request, serve, type Served } from './helpers.ts';

let s: Served | undefined;
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const c of sockets.splice(0)) c.destroy();
  await s?.close();
  s = undefined;
});

const SMALL: ServerLimits = { headersTimeoutMs: 300, requestTimeoutMs: 600, keepAliveTimeoutMs: 300, connectionTimeoutMs: 1500 };
/**
 * Slack on top of a timeout: Node checks request timeouts every quarter of the shortest one and
 * adds a second to keep-alive; the rest is a busy machine. Still far below the defaults (5 s,
 * 10 s, 30 s, 60 s) that would apply if the option were not passed through.
 */
const SLACK = 2500;

async function start(server: ServerLimits = SMALL, extra = {}): Promise<Served> {
  s = await serve({ server, ...extra });
  return s;
}

/** A raw connection; resolves once connected. */
function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host: '127.0.0.1', port }, () => resolve(c));
    sockets.push(c);
    c.on('error', reject);
  });
}

/** Resolves with the ms from now until the server closes `c` (its 'close' event), and what it sent. */
function closed(c: net.Socket): Promise<{ ms: number; received: string }> {
  const t0 = performance.now();
  let received = '';
  c.on('data', (d: Buffer) => (received += d.toString('latin1')));
  return new Promise((resolve) => c.on('close', () => resolve({ ms: performance.now() - t0, received })));
}

/** Writes one byte of `text` per `everyMs` until the socket closes (a slow client). */
function trickle(c: net.Socket, text: string, everyMs = 40): void {
  let i = 0;
  const timer = setInterval(() => {
    if (c.destroyed || c.writableEnded) return clearInterval(timer);
    c.write(text[i++ % text.length]);
  }, everyMs);
  c.on('close', () => clearInterval(timer));
}

describe('slow and idle clients are closed within the timeouts', () => {
  it('headers trickling in are cut off by the headers timeout (408)', async () => {
    const srv = await start();
    const c = await connect(srv.port);
    const done = closed(c);
    c.write('POST /v1/check HTTP/1.1\r\nHost: x\r\n');
    trickle(c, 'X-Slow: aaaaaaaaaaaaaaaa\r\n');
    const { ms, received } = await done;
    expect(received).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeLessThan(SMALL.headersTimeoutMs! + SLACK);
  });

  it('a body trickling in is cut off by the request timeout', async () => {
    const srv = await start();
    const c = await connect(srv.port);
    const done = closed(c);
    c.write('POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000\r\n\r\n{"key":"');
    trickle(c, 'a');
    const { ms, received } = await done;
    expect(received).toMatch(/^HTTP\/1\.1 408/);
    expect(ms).toBeLessThan(SMALL.requestTimeoutMs! + SLACK);
  });

  it('a client idle after its headers (body promised, never sent) is cut off by the request timeout', async () => {
    const srv = await start();
    const c = await connect(srv.port);
    const done = closed(c);
    c.write('POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n');
    const { ms } = await done;
    expect(ms).toBeLessThan(SMALL.requestTimeoutMs! + SLACK);
  });

  it('a kept-alive connection idle after its answer is closed by the keep-alive timeout', async () => {
    const srv = await start();
    const c = await connect(srv.port);
    const done = closed(c);
    c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const { ms, received } = await done;
    expect(received).toMatch(/^HTTP\/1\.1 200/);
    expect(ms).toBeLessThan(SMALL.keepAliveTimeoutMs! + SLACK);
  });

  it('a connection that never sends anything is closed too', async () => {
    const srv = await start();
    const c = await connect(srv.port);
    const { ms } = await closed(c);
    expect(ms).toBeLessThan(SMALL.connectionTimeoutMs! + SLACK);
  });
});

describe('connection count, head and body size', () => {
  it('connections beyond maxConnections are closed at once; the others keep working', async () => {
    const srv = await start({ ...SMALL, keepAliveTimeoutMs: 5000, connectionTimeoutMs: 5000, maxConnections: 3 });
    const held: net.Socket[] = [];
    for (let i = 0; i < 3; i++) {
      const c = await connect(srv.port);
      // An answered request proves the server accepted (and counts) the connection.
      const answered = new Promise<void>((r) => c.once('data', () => r()));
      c.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      await answered;
      held.push(c);
    }
    const extra = await connect(srv.port);
    const { received } = await closed(extra);
    expect(received).toBe('');
    held[0].destroy();
    await new Promise<void>((r) => held[0].once('close', () => r()));
    // A slot is free again once the server has seen the close.
    for (;;) {
      const count = await new Promise<number>((r) => srv.app.server.getConnections((_e, n) => r(n)));
      if (count < 3) break;
      await new Promise((r) => setImmediate(r));
    }
    expect((await request(srv.url, '/healthz')).status).toBe(200);
  });

  it('a request head over maxHeaderSize is answered 431 and nothing is counted', async () => {
    const srv = await start({ ...SMALL, maxHeaderSize: 2048 }, { inspect: (k: string, m: undefined, at: number) => srv.limiter.inspect(k, m, at) });
    const r = await request(srv.url, '/v1/check', { body: { key: 'k:big' }, headers: { 'x-pad': 'a'.repeat(4096) } });
    expect(r.status).toBe(431);
    const u = await request(srv.url, '/v1/usage?key=k:big');
    expect(u.json()).toMatchObject({ limits: [{ usage: 0 }] });
  });

  it('a body over bodyLimit is refused with 413 BODY_TOO_LARGE', async () => {
    const srv = await start(SMALL, { bodyLimit: 1024 });
    const r = await request(srv.url, '/v1/check', { body: { key: 'k:a', metadata: { pad: 'a'.repeat(2000) } } });
    expect(r.status).toBe(413);
    expect(r.json()).toMatchObject({ error: 'BODY_TOO_LARGE' });
  });
});

describe('rule maxKeys', () => {
  it('denies a new key of a rule at its cap with code RULE_KEY_CAP; keys it holds keep working', async () => {
    const srv = await start();
    const check = async (key: string) => {
      const r = await request(srv.url, '/v1/check', { body: { key } });
      return { status: r.status, d: r.json<Decision>() };
    };
    for (const k of ['cap:a', 'cap:b', 'cap:c']) expect((await check(k)).status).toBe(200);
    const denied = await check('cap:d');
    expect(denied.status).toBe(429);
    expect(denied.d).toMatchObject({ allowed: false, code: 'RULE_KEY_CAP', ruleId: 'capped', retryAfterMs: 60_000 });
    expect(denied.d.admissionId).toBeUndefined();
    expect((await check('cap:a')).d).toMatchObject({ allowed: true, remaining: 8 });
    // Other rules are not affected.
    expect((await check('k:new')).status).toBe(200);
    const g = await request(srv.url, '/v1/check?key=cap:e');
    expect(g.status).toBe(429);
    expect(g.json()).toMatchObject({ code: 'RULE_KEY_CAP' });
    expect(srv.limiter.stats().ruleKeyCapDenials).toBe(2);
  });

  it('a multi-limit rule counts its keys per limit, and a key freed by expiry makes room (engine, injected clock)', () => {
    const rules = parseRules(`
rules:
  - id: two
    key: "*"
    maxKeys: 2
    limits:
      - { limit: 5, window: 1s, algorithm: fixed-window }
      - { limit: 50, window: 10s, algorithm: fixed-window }
`);
    const e = createEngine({ nodeId: 'n', rules });
    const T = 1_900_000_000_000;
    expect(e.decide({ key: 'a' }, T).allowed).toBe(true);
    expect(e.decide({ key: 'b' }, T).allowed).toBe(true);
    expect(e.decide({ key: 'c' }, T)).toMatchObject({ allowed: false, code: 'RULE_KEY_CAP' });
    expect(e.decide({ key: 'a' }, T + 1).allowed).toBe(true);
    // After both windows have passed the idle keys are swept, and a new key fits.
    e.sweep(T + 20_000);
    expect(e.decide({ key: 'c' }, T + 20_000).allowed).toBe(true);
  });

  it('the rules schema refuses a maxKeys that is not a positive integer', () => {
    expect(() => parseRules('rules:\n  - { id: x, key: "*", maxKeys: 0, limits: [{ limit: 1, window: 1s }] }\n')).toThrow(/maxKeys|minimum|>= 1/);
  });
});
