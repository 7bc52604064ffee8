/**
 * HTTP adapter: `buildApp()` builds a fastify instance around a `Limiter` without listening
 * (src/main.ts listens; tests use `inject`).
 *
 * Routes (the check routes are src/http/check-routes.ts)
 *   POST /v1/check        {key, metadata?, cost?, requestId?}  -> 200 allowed | 429 denied, Decision
 *                         {checks: [{key, metadata?, cost?, name?}, ...]}  -> 200 | 429, all must pass:
 *                         the deciding dimension's Decision + {dimension, dimensions} (none counted when denied)
 *   POST /v1/check/batch  {checks: [{key, metadata?, cost?, requestId?}, ...]}  -> 200 {results: Decision[]}
 *   POST /v1/refund       {admissionId}                    -> 200 RefundResult (src/http/admission-routes.ts)
 *   POST /v1/admin/reset  {key, metadata?}  (admin token)  -> 200 ResetResult
 *   GET, PUT /v1/rules, PUT, DELETE /v1/rules/:id  (admin token) -> src/http/rules-routes.ts
 *   GET  /v1/check?key=&cost=&m.<name>=                    -> 200 allowed | denyStatus denied
 *                                                             (no key: keyed by the client IP)
 *   GET  /v1/usage, GET /v1/status (admin token with restrictStatus)
 *   GET  /v1/rules/explain?key=&m.<name>=  (admin token)  -> 200 Explanation (src/http/explain-routes.ts)
 *   PUT  /v1/signals/:name  {health}       (admin token)  -> 200 signal state (src/http/signal-routes.ts)
 *   GET  /healthz, GET /readyz (always open)
 *
 * An allowed check that counted answers an `admissionId` (src/engine/admissions.ts) that a
 * refund names. With API tokens configured, the check, refund and usage routes need one.
 *
 * Every refused request is refused before the limiter is called, so nothing is counted for it.
 * Errors become `{error, message, path?}` in src/http/errors.ts only.
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions, type onRequestHookHandler } from 'fastify';
import { AdmissionLedger } from '../engine/admissions.ts';
import { ConfigError, type ConfigProblem } from '../engine/errors.ts';
import type { Decision, Limiter } from '../engine/types.ts';
import type { Explanation } from '../engine/explain.ts';
import { registerAdmissionRoutes } from './admission-routes.ts';
import { registerCheckRoutes } from './check-routes.ts';
import { afterCommitWith } from './commit.ts';
import type { ShareWait } from './share-wait.ts';
import { registerRulesRoutes, type RulesApi } from './rules-routes.ts';
import { registerExplainRoute } from './explain-routes.ts';
import { registerSignalRoute } from './signal-routes.ts';
import type { SignalState } from '../engine/adaptive.ts';
import { adminAuth } from './admin-auth.ts';
import type { ApiTokens } from './api-tokens.ts';
import { installForwardedHeader, trustProxyOption, type ForwardedHeader } from './client-ip.ts';
import { errorHandler, frameworkErrors, makeNotFoundHandler } from './errors.ts';
import { compileSchema, validate } from '../engine/validation.ts';
import { DEFAULT_LIMITS, appOptionsSchema, errorBodySchema, healthSchema, readySchema, type InputLimits } from './schemas.ts';
import { applyServerLimits, fastifyServerOptions, resolveServerLimits, type ServerLimits } from './server-options.ts';
import { parseCheckQuery } from './query.ts';
import { installStrictUtf8, parseQueryStrict } from './utf8.ts';
import { randomWords } from '../random-words.ts';

/** What /readyz reports. `degraded` nodes still serve (200) but say so. */
export interface ReadinessReport {
  ready: boolean;
  degraded?: boolean;
  reasons?: string[];
  details?: Record<string, unknown>;
}

export interface BuildAppOptions {
  limiter: Limiter;
  /** Clock passed to the limiter, ms since the epoch. Default `Date.now`. */
  now?: () => number;
  /** Maximum key length in UTF-8 bytes. Default 512. */
  maxKeyBytes?: number;
  /** Maximum cost of one check or refund. Default 1 000 000. */
  maxCost?: number;
  /** Maximum metadata entries per request. Default 16. */
  maxMetadataEntries?: number;
  /** Maximum metadata name length in UTF-8 bytes. Default 64. */
  maxMetadataNameBytes?: number;
  /** Maximum metadata value length in UTF-8 bytes. Default 256. */
  maxMetadataValueBytes?: number;
  /** Maximum request body in bytes. Default 64 KiB. */
  bodyLimit?: number;
  /** Maximum checks in one batch. Default 1000. */
  maxBatch?: number;
  /**
   * Status of a denied `GET /v1/check` (for proxies: nginx auth_request only understands
   * 2xx/401/403). Default 429. POST /v1/check always answers 429.
   */
  denyStatus?: number;
  /** Checks answered SHARE_WAIT wait for the peers' counts this long before answering it (near-limit sharing). */
  shareWait?: ShareWait;
  /** Readiness probe for /readyz. Default: always ready. */
  readiness?: () => ReadinessReport;
  /** fastify logger: false (default), true, pino options, or a pino logger instance. */
  logger?: boolean | object;
  /** Called after every decision (metrics). Must not throw; errors are logged and ignored. */
  onDecision?: (d: Decision, route: string) => void;
  /**
   * Durability barrier, called after something was counted (an allowed check, a refund). When it
   * returns a promise the answer waits for it (`sync` durability: group commit before answering);
   * `undefined` answers at once. If the promise rejects, the error is logged and the decision is
   * still answered: the count is in memory and the node keeps answering from it.
   */
  commit?: () => Promise<unknown> | undefined | void;
  /**
   * Read-only usage of a key (GET /v1/usage): counts nothing. Absent: the route is not served.
   */
  inspect?: (key: string, metadata: Readonly<Record<string, string>> | undefined, now: number) => UsageReport;
  /** What GET /v1/rules/explain answers (admin token). Absent: the route is not served. */
  explain?: (key: string, metadata: Readonly<Record<string, string>> | undefined) => Explanation;
  /** Takes a load signal for adaptive rules (PUT /v1/signals/:name, admin token). Absent: the route is not served. */
  setSignal?: (name: string, health: number, at: number) => SignalState;
  /** What GET /v1/status answers. Absent: the route is not served. */
  status?: () => unknown;
  /** Called on the new instance before any route is declared (metrics: per-route hooks). */
  instrument?: (app: FastifyInstance) => void;
  /**
   * Registers more routes (metrics, dashboard) on the same instance; `statusGuard` is what
   * guards /v1/status (spread it into a route's options to guard the same way), `limits` the
   * input limits keys are checked against.
   */
  extraRoutes?: (app: FastifyInstance, context: { statusGuard: { onRequest?: onRequestHookHandler }; limits: Readonly<InputLimits> }) => void;
  /** Bearer token of the admin routes; absent or empty: they answer 403 ADMIN_DISABLED. */
  adminToken?: string;
  /** The rules admin API (src/http/rules-routes.ts); absent: not served here (404). */
  rules?: RulesApi;
  /** Serve the admin routes (rules, reset) here. Default true; false: they are on an admin listener (src/http/admin-app.ts) and answer 404 here. */
  adminRoutes?: boolean;
  /** API tokens the check, refund and usage routes need (when it requires any). */
  apiTokens?: ApiTokens;
  /** /v1/status and /v1/usage need the admin token. Default false. */
  restrictStatus?: boolean;
  /** Proxies (addresses or CIDRs) whose forwarding header is believed. Default none. */
  trustedProxies?: readonly string[];
  /** Which header those proxies write. Default x-forwarded-for. */
  forwardedHeader?: ForwardedHeader;
  /** Listener bounds, timeouts and TLS (src/http/server-options.ts). */
  server?: ServerLimits;
  /** The ledger of admission ids (so the caller can report on it). Default: a new one. */
  admissions?: AdmissionLedger;
  /** Admission ids remembered at most, for a new ledger. Default 200 000. */
  maxAdmissions?: number;
  /** Random words for admission ids, for a new ledger. Default src/random-words.ts. */
  admissionRandom?: () => number;
  /** How long a check's requestId is remembered so that a retry is not counted twice (ms). Default 10 000. */
  requestIdTtlMs?: number;
}

/** What GET /v1/usage answers: the rule a key matches and its usage under every limit. */
export interface UsageReport {
  ruleId: string | null;
  limits: { policy: string; scope: string; usage: number; capacity: number }[];
}

export { ROUTE_BATCH, ROUTE_CHECK, ROUTE_CHECK_GET } from './check-routes.ts';

const DEFAULT_BODY_LIMIT = 64 * 1024;

const validAppOptions = compileSchema(appOptionsSchema);

/** Validates the options once (the schema, then what it cannot say); every problem is listed in one ConfigError. */
function resolveOptions(opts: BuildAppOptions) {
  const file = '<buildApp options>';
  const problems: ConfigProblem[] = validate(validAppOptions, opts, { file });
  const l = opts?.limiter;
  if (!l || typeof l.nodeId !== 'string' || typeof l.decide !== 'function' || typeof l.refundAdmission !== 'function' || typeof l.resetOwn !== 'function' || typeof l.admissionTtlMs !== 'function' || typeof l.policies !== 'function') {
    problems.push({ code: 'VALUE_INVALID', file, path: '/limiter', message: 'limiter must have a nodeId and implement decide, refundAdmission, resetOwn, admissionTtlMs and policies' });
  }
  if (opts?.now !== undefined && typeof opts.now !== 'function') problems.push({ code: 'TYPE_MISMATCH', file, path: '/now', message: 'must be a function' });
  if (problems.length > 0) throw new ConfigError(problems);
  const limits: InputLimits = { ...DEFAULT_LIMITS };
  for (const name of Object.keys(DEFAULT_LIMITS) as (keyof InputLimits)[]) limits[name] = opts[name] ?? limits[name];
  return { limits, bodyLimit: opts.bodyLimit ?? DEFAULT_BODY_LIMIT, denyStatus: opts.denyStatus ?? 429, now: opts.now ?? Date.now };
}

export function buildApp(opts: BuildAppOptions): FastifyInstance {
  const { limits, bodyLimit, denyStatus, now } = resolveOptions(opts);
  const limiter = opts.limiter;
  const onDecision = opts.onDecision;
  const readiness: () => ReadinessReport = opts.readiness ?? (() => ({ ready: true }));

  // fastify 5 takes logger options as `logger` and a ready logger (e.g. a pino instance) as
  // `loggerInstance`; accept either through the one `logger` option.
  const logger = opts.logger ?? false;
  const isInstance = typeof logger === 'object' && logger !== null && typeof (logger as { child?: unknown }).child === 'function';
  const serverLimits = resolveServerLimits(opts.server);
  const app = Fastify({
    ...(isInstance
      ? { loggerInstance: logger as FastifyServerOptions['loggerInstance'] }
      : { logger: logger as FastifyServerOptions['logger'] }),
    bodyLimit,
    frameworkErrors,
    trustProxy: trustProxyOption(opts.trustedProxies),
    routerOptions: { querystringParser: parseQueryStrict },
    ...fastifyServerOptions(serverLimits),
  }) as unknown as FastifyInstance;
  applyServerLimits(app, serverLimits);
  // Every route schema is compiled by the service's one ajv instance (no coercion: no route has a
  // querystring schema; GET /v1/check's query is read in src/http/query.ts).
  app.setValidatorCompiler(({ schema }) => compileSchema(schema));
  // Before any route, so that its onRoute hooks see them all (metrics).
  opts.instrument?.(app);

  // Only JSON bodies: drop the default text/plain parser so it is refused with 415.
  app.removeContentTypeParser('text/plain');
  installStrictUtf8(app);
  installForwardedHeader(app, opts.forwardedHeader ?? 'x-forwarded-for', opts.trustedProxies);
  app.setErrorHandler(errorHandler);

  const admin = adminAuth(opts.adminToken);
  const api = opts.apiTokens;
  /** onRequest hooks of the check, refund and usage routes. */
  const apiGuard = api !== undefined && api.required ? { onRequest: api.hook } : {};
  const statusGuard = opts.restrictStatus === true ? { onRequest: admin.hook } : apiGuard;
  const ledger = opts.admissions ?? new AdmissionLedger({ nodeId: limiter.nodeId, maxEntries: opts.maxAdmissions, random: opts.admissionRandom ?? randomWords() });

  // Known paths and their methods, so a wrong method answers 405 instead of 404.
  const methodsByPath = new Map<string, string[]>();
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const list = methodsByPath.get(route.url) ?? [];
    for (const m of methods) if (!list.includes(m)) list.push(m);
    methodsByPath.set(route.url, list);
  });
  app.setNotFoundHandler(makeNotFoundHandler((path) => methodsByPath.get(path)));

  /** Sends an answer now, or after the durability barrier when something was counted. */
  const afterCommit = afterCommitWith(opts.commit);


  const errorResponses = { 400: errorBodySchema, 401: errorBodySchema, 413: errorBodySchema, 415: errorBodySchema };

  registerCheckRoutes(app, {
    limiter,
    ledger,
    limits,
    now,
    denyStatus,
    apiGuard,
    afterCommit,
    errorResponses,
    onDecision,
    requestIdTtlMs: opts.requestIdTtlMs,
    shareWait: opts.shareWait !== undefined && opts.shareWait.maxWaitMs > 0 ? opts.shareWait : undefined,
  });

  const adminHere = opts.adminRoutes !== false;
  if (adminHere && opts.rules !== undefined) registerRulesRoutes(app, { rules: opts.rules, guard: admin.hook });
  registerAdmissionRoutes(app, { limiter, ledger, limits, now, apiGuard, adminGuard: adminHere ? { onRequest: admin.hook } : undefined, afterCommit, errorResponses });

  if (opts.inspect !== undefined) {
    const inspect = opts.inspect;
    app.get('/v1/usage', { ...statusGuard, exposeHeadRoute: false }, (req) => {
      const q = parseCheckQuery(req.query as Record<string, string | string[] | undefined>, limits, false);
      const r = inspect(q.key, q.metadata, now());
      return { key: q.key, ruleId: r.ruleId, limits: r.limits.map((l) => ({ policy: l.policy, usage: round2(l.usage), limit: l.capacity })) };
    });
  }

  if (opts.explain !== undefined) registerExplainRoute(app, { explain: opts.explain, limits, adminGuard: { onRequest: admin.hook } });
  if (opts.setSignal !== undefined) registerSignalRoute(app, { setSignal: opts.setSignal, now, adminGuard: { onRequest: admin.hook }, errorResponses });

  if (opts.status !== undefined) {
    const status = opts.status;
    app.get('/v1/status', { ...statusGuard }, () => status());
  }

  app.get('/healthz', { schema: { response: { 200: healthSchema } } }, (_req, reply) => reply.send({ status: 'ok' }));

  app.get('/readyz', { schema: { response: { 200: readySchema, 503: readySchema } } }, (req, reply) => {
    let body: ReadinessReport & { degraded: boolean; reasons: string[] };
    try {
      const r = readiness();
      body = { ready: r.ready === true, degraded: r.degraded === true, reasons: Array.isArray(r.reasons) ? r.reasons.map(String) : [] };
      if (r.details !== undefined) body.details = r.details;
    } catch (err) {
      req.log.error({ err }, 'readiness probe failed');
      body = { ready: false, degraded: false, reasons: ['readiness probe failed'] };
    }
    return reply.code(body.ready ? 200 : 503).send(body);
  });

  if (opts.extraRoutes) opts.extraRoutes(app, { statusGuard, limits });
  return app;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
