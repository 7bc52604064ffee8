/**
 * The live convergence dashboard: GET /dashboard (the page), its script and uPlot's (from
 * npm, served by the node: no CDN, works offline), and GET /dashboard/events, a server-sent
 * events stream of what this node sees, a frame every `intervalMs`. The page reads several
 * nodes' streams (`?nodes=URL,URL`), so the stream allows any origin; it is guarded like
 * /v1/status (the page sends the token it is given).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import { parseCheckQuery } from '../query.ts';
import type { InputLimits } from '../schemas.ts';

/** What one node sees, once per interval. */
export interface DashboardFrame {
  at: number;
  node: string;
  region: string;
  ready: boolean;
  degraded: boolean;
  reasons: string[];
  /** Checks decided since start (null with --metrics false). */
  checks: { allowed: number; denied: number; bypassed: number } | null;
  peers: Array<{ node: string; lagP99Ms: number; stalenessMs: number }>;
  overshoot: Array<{ policy: string; limit: number; bound: number; observed: number }>;
  /** The followed key's usage under each limit of its rule, as this node counts it (all nodes' counts merged). */
  usage: { key: string; ruleId: string | null; limits: Array<{ policy: string; usage: number; limit: number }> } | null;
}

export interface DashboardOptions {
  guard: { onRequest?: onRequestHookHandler };
  limits: InputLimits;
  frame(key: string | undefined): DashboardFrame;
  /** Between two frames (ms, default 500). */
  intervalMs?: number;
}

const require = createRequire(import.meta.url);
const asset = (name: string) => readFileSync(new URL(`./${name}`, import.meta.url), 'utf8');

export function registerDashboard(app: FastifyInstance, o: DashboardOptions): void {
  const page = asset('page.html');
  const script = asset('page.js');
  const uplotJs = readFileSync(require.resolve('uplot/dist/uPlot.iife.min.js'), 'utf8');
  const uplotCss = readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8');
  /** Sockets of the streams served (until they close). */
  const streams = new Set<Socket>();
  const intervalMs = o.intervalMs ?? 500;

  app.get('/dashboard', (_req, reply) => reply.type('text/html; charset=utf-8').send(page));
  app.get('/dashboard/page.js', (_req, reply) => reply.type('text/javascript; charset=utf-8').send(script));
  app.get('/dashboard/uPlot.iife.min.js', (_req, reply) => reply.type('text/javascript; charset=utf-8').header('cache-control', 'max-age=86400').send(uplotJs));
  app.get('/dashboard/uPlot.min.css', (_req, reply) => reply.type('text/css; charset=utf-8').header('cache-control', 'max-age=86400').send(uplotCss));

  // Cross-origin reads from a page served by another node: the preflight of a request with a token.
  app.options('/dashboard/events', (_req, reply) =>
    reply
      .code(204)
      .headers({ 'access-control-allow-origin': '*', 'access-control-allow-methods': 'GET', 'access-control-allow-headers': 'authorization', 'access-control-max-age': '600' })
      .send(),
  );
  app.get('/dashboard/events', { ...o.guard, exposeHeadRoute: false }, (req, reply) => {
    const q = req.query as Record<string, string | string[] | undefined>;
    // The key is checked like GET /v1/usage's (same codes); no key: no usage in the frames.
    const key = q.key === undefined ? undefined : parseCheckQuery(q, o.limits, false).key;
    const first = JSON.stringify(o.frame(key));
    reply.hijack();
    const res = reply.raw;
    // `connection: close`: the socket goes with the stream (an ended stream's keep-alive socket
    // would hold up closing the server for the keep-alive timeout).
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'close', 'access-control-allow-origin': '*', 'x-accel-buffering': 'no' });
    res.write(`data: ${first}\n\n`);
    const socket = res.socket;
    if (socket !== null) streams.add(socket);
    const timer = setInterval(() => {
      try {
        res.write(`data: ${JSON.stringify(o.frame(key))}\n\n`);
      } catch (err) {
        req.log.error({ err }, 'dashboard frame failed');
        res.end();
      }
    }, intervalMs);
    const done = () => {
      clearInterval(timer);
      if (socket !== null) streams.delete(socket);
    };
    res.once('close', done);
    socket?.once('close', done);
  });
  // Open streams never end on their own: cut them so that closing the server does not wait on them.
  app.addHook('preClose', (done) => {
    for (const socket of streams) socket.destroy();
    done();
  });
}
