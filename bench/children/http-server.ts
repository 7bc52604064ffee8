/**
 * HTTP server under test, run as a child process of the `http` section (so autocannon's CPU use
 * does not share its event loop). Answers `{type: 'ready', port}` once listening and stops on
 * `{type: 'stop'}`.
 *
 *   tsx bench/children/http-server.ts ours   --durability batch|sync --data DIR [--metrics] [--tracing-noop]
 *   tsx bench/children/http-server.ts bare                 fastify, one POST route, a Decision-like body
 *   tsx bench/children/http-server.ts bare-headers         the same + static RateLimit/RateLimit-Policy headers
 *   tsx bench/children/http-server.ts fastify-rate-limit   the same + @fastify/rate-limit (memory store)
 *
 * `ours` is wired like src/node.ts: Engine + SqliteStore + Persistence (flush every 50 ms, or a
 * group commit before answering in `sync` mode through buildApp's `commit` hook) + buildApp;
 * `--metrics` adds the Prometheus metrics as src/node.ts does (wrapped limiter, HTTP hook, GET /metrics).
 * `--tracing-noop` puts the tracing code on every check with tracing off: the limiter wrapped by
 * traceChecks (sampling every check) around OpenTelemetry's no-op tracer (no SDK registered),
 * which is more than the node does with tracing off (it does not wrap the limiter at all).
 */
import { parseArgs } from 'node:util';
import rateLimit from '@fastify/rate-limit';
import { trace } from '@opentelemetry/api';
import Fastify, { type FastifyInstance } from 'fastify';
import { Engine } from '../../src/engine/engine.ts';
import { buildApp } from '../../src/http/app.ts';
import { NodeMetrics } from '../../src/metrics/metrics.ts';
import { Persistence } from '../../src/storage/persistence.ts';
import { SqliteStore, type Durability } from '../../src/storage/sqlite.ts';
import { traceChecks } from '../../src/tracing/tracing.ts';
import { send, stopRequested } from '../lib/child.ts';
import { HIGH_LIMIT, catchAllRules } from '../lib/fixtures.ts';

/** Body and response schemas of the peers' route: the same shape as POST /v1/check. */
const peerRouteSchema = {
  body: {
    type: 'object',
    additionalProperties: false,
    required: ['key'],
    properties: {
      key: { type: 'string', minLength: 1, maxLength: 512 },
      cost: { type: 'integer', minimum: 1, maximum: 1_000_000 },
      metadata: { type: 'object', maxProperties: 16, additionalProperties: { type: 'string', maxLength: 256 } },
    },
  },
  response: {
    200: {
      type: 'object',
      properties: {
        allowed: { type: 'boolean' },
        limit: { type: 'integer' },
        remaining: { type: 'integer' },
        resetMs: { type: 'integer' },
        retryAfterMs: { type: 'integer' },
        ruleId: { type: ['string', 'null'] },
        policy: { type: ['string', 'null'] },
      },
    },
  },
} as const;

/** Static RateLimit headers as long as the ones POST /v1/check sends for the bench rule. */
const STATIC_RATELIMIT_HEADERS = { 'ratelimit-policy': `"bench";q=${HIGH_LIMIT};w=60`, ratelimit: `"bench";r=${HIGH_LIMIT - 1};t=60` };

function peerApp(withRateLimit: boolean, withHeaders = false): Promise<FastifyInstance> | FastifyInstance {
  const app = Fastify({ logger: false });
  const route = () =>
    // Same handler style as src/http/app.ts (synchronous, reply.send of a fresh object).
    app.post('/v1/check', { schema: peerRouteSchema }, (_req, reply) => {
      if (withHeaders) reply.headers(STATIC_RATELIMIT_HEADERS);
      return reply.send({ allowed: true, limit: HIGH_LIMIT, remaining: HIGH_LIMIT - 1, resetMs: 60_000, retryAfterMs: 0, ruleId: 'bench', policy: 'bench' });
    });
  if (!withRateLimit) {
    route();
    return app;
  }
  return (async () => {
    // In-memory store (the default), one key per client IP, a limit no run reaches.
    await app.register(rateLimit, { global: true, max: 1_000_000_000, timeWindow: 60_000 });
    route();
    return app;
  })();
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    args: process.argv.slice(2),
    options: { durability: { type: 'string', default: 'batch' }, data: { type: 'string' }, metrics: { type: 'boolean', default: false }, 'tracing-noop': { type: 'boolean', default: false } },
    allowPositionals: true,
  });
  const kind = positionals[0];
  let app: FastifyInstance;
  let close = async () => {};
  if (kind === 'ours') {
    const durability = values.durability as Durability;
    if (durability !== 'batch' && durability !== 'sync') throw new Error(`--durability must be batch or sync, not ${durability}`);
    if (!values.data) throw new Error('--data DIR is required for ours');
    const engine = new Engine({ nodeId: 'bench', rules: catchAllRules(HIGH_LIMIT, '1m'), maxKeys: 1_000_000 });
    const store = new SqliteStore({ dir: values.data, nodeId: 'bench', durability });
    const persistence = new Persistence({ engine, store, durability, flushIntervalMs: 50, now: Date.now });
    persistence.restore();
    persistence.start();
    const metrics = values.metrics
      ? new NodeMetrics({
          node: 'bench',
          region: 'bench',
          now: Date.now,
          replicator: undefined,
          readiness: () => ({ ready: true, degraded: false }),
          status: () => ({
            engine: engine.stats(),
            admissions: { held: 0, forgottenEarly: 0 },
            persistence: { ...persistence.stats },
            storage: { state: 'ok', writable: true, fault: null },
            overshoot: [...engine.allScopes()].map((cl) => ({ ruleId: cl.ruleId, policy: cl.policy.name, limit: cl.math.capacity, windowMs: cl.spec.windowMs, bound: 0, nodes: 1 })),
          }),
        })
      : undefined;
    app = buildApp({
      limiter: values['tracing-noop'] ? traceChecks(engine, trace.getTracer('regionlimit'), 1) : metrics ? metrics.wrap(engine) : engine,
      now: Date.now,
      commit: () => persistence.commitBarrier(),
      instrument: (a) => metrics?.instrument(a),
      extraRoutes: (a, g) => metrics?.serve(a, g.statusGuard),
    });
    close = async () => {
      await app.close();
      persistence.stop();
      store.close();
    };
  } else if (kind === 'bare' || kind === 'bare-headers' || kind === 'fastify-rate-limit') {
    app = await peerApp(kind === 'fastify-rate-limit', kind === 'bare-headers');
    close = () => app.close();
  } else {
    throw new Error(`unknown server kind ${kind}`);
  }
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  send({ type: 'ready', port: typeof addr === 'object' && addr !== null ? addr.port : 0 });
  await stopRequested();
  await close();
  process.disconnect?.();
}

main().catch((err: unknown) => {
  send({ type: 'error', message: (err as Error)?.stack ?? String(err) });
  process.exitCode = 1;
  process.disconnect?.();
});
