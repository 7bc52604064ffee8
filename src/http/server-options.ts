/**
 * Listener bounds: TLS, header size, connection count and the timeouts that close slow or idle
 * sockets. `fastifyServerOptions()` gives the options fastify passes to http(s).createServer;
 * `applyServerLimits()` sets what fastify has no option for on the server it created.
 *
 * - connectionTimeout: a socket with no activity for this long is destroyed (socket timeout);
 * - headersTimeout: the request head must arrive within this (Node's http server);
 * - requestTimeout: the whole request, body included, must arrive within this;
 * - keepAliveTimeout: an idle kept-alive socket is closed after this;
 * - maxConnections: sockets beyond it are closed at once;
 * - maxHeaderSize: a bigger request head is answered 431 and closed.
 */
import type { Server } from 'node:http';
import type { FastifyInstance } from 'fastify';

export interface ServerLimits {
  maxHeaderSize?: number;
  maxConnections?: number;
  connectionTimeoutMs?: number;
  requestTimeoutMs?: number;
  headersTimeoutMs?: number;
  keepAliveTimeoutMs?: number;
  /** PEM certificate chain and key: the listener speaks HTTPS. */
  tls?: { cert: string | Buffer; key: string | Buffer };
}

interface Bounds {
  maxHeaderSize: number;
  maxConnections: number;
  connectionTimeoutMs: number;
  requestTimeoutMs: number;
  headersTimeoutMs: number;
  keepAliveTimeoutMs: number;
}

export const DEFAULT_SERVER_LIMITS: Readonly<Bounds> = Object.freeze({
  maxHeaderSize: 16 * 1024,
  maxConnections: 1000,
  connectionTimeoutMs: 60_000,
  requestTimeoutMs: 10_000,
  headersTimeoutMs: 5_000,
  keepAliveTimeoutMs: 30_000,
});

type Resolved = Bounds & { tls?: ServerLimits['tls'] };

export function resolveServerLimits(l: ServerLimits | undefined): Resolved {
  const r: Resolved = { ...DEFAULT_SERVER_LIMITS };
  for (const k of Object.keys(DEFAULT_SERVER_LIMITS) as (keyof Bounds)[]) {
    const v = l?.[k];
    if (v !== undefined) r[k] = v;
  }
  if (l?.tls !== undefined) r.tls = l.tls;
  return r;
}

/** Options for Fastify(): timeouts it knows, plus what it hands to http(s).createServer. */
export function fastifyServerOptions(r: Resolved): Record<string, unknown> {
  // Node checks the headers and request timeouts of open sockets at this interval (default
  // 30 s, far too coarse for short timeouts).
  const checking = Math.max(10, Math.min(1000, Math.floor(Math.min(r.headersTimeoutMs, r.requestTimeoutMs) / 4)));
  const createServer = { maxHeaderSize: r.maxHeaderSize, connectionsCheckingInterval: checking, requestTimeout: r.requestTimeoutMs, headersTimeout: r.headersTimeoutMs };
  return {
    connectionTimeout: r.connectionTimeoutMs,
    requestTimeout: r.requestTimeoutMs,
    keepAliveTimeout: r.keepAliveTimeoutMs,
    ...(r.tls !== undefined ? { https: { ...createServer, cert: r.tls.cert, key: r.tls.key } } : { http: createServer }),
  };
}

export function applyServerLimits(app: FastifyInstance, r: Resolved): void {
  const server = app.server as Server;
  server.headersTimeout = r.headersTimeoutMs;
  server.requestTimeout = r.requestTimeoutMs;
  server.maxConnections = r.maxConnections;
}
