/**
 * The check routes: `POST /v1/check` (one check, or several dimensions that must all pass),
 * `POST /v1/check/batch` and `GET /v1/check` (for proxies such as nginx `auth_request`). Each
 * validates what its schema cannot say, decides (again, while a near-limit check waits for the
 * peers' counts), names an allowed check that counted with an admission id, sets the RateLimit
 * headers and answers after the durability barrier when something was counted.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler } from 'fastify';
import { admit, isCounted, type AdmissionLedger } from '../engine/admissions.ts';
import type { CheckRequest, Decision, Limiter } from '../engine/types.ts';
import { ipKey } from './client-ip.ts';
import type { AfterCommit } from './commit.ts';
import { inputError } from './errors.ts';
import { RateLimitHeaders } from './headers.ts';
import { parseCheckQuery } from './query.ts';
import { RecentRequests } from './request-ids.ts';
import {
  batchBodySchema,
  batchResultSchema,
  checkKey,
  checkMetadataBytes,
  checkRouteBodySchema,
  decisionSchema,
  type BatchBody,
  type CheckBody,
  type CheckRouteBody,
  type InputLimits,
  type InputProblem,
} from './schemas.ts';
import { settleShareWait, type ShareWait } from './share-wait.ts';

export const ROUTE_CHECK = 'POST /v1/check';
export const ROUTE_BATCH = 'POST /v1/check/batch';
export const ROUTE_CHECK_GET = 'GET /v1/check';

export interface CheckRoutesOptions {
  limiter: Limiter;
  ledger: AdmissionLedger;
  limits: InputLimits;
  now: () => number;
  /** Status of a denied GET /v1/check (POST always answers 429). */
  denyStatus: number;
  /** The API token hook, when tokens are required. */
  apiGuard: { onRequest?: onRequestHookHandler };
  /** Answers, after the durability barrier when something was counted (./commit.ts). */
  afterCommit: AfterCommit;
  errorResponses: Record<number, unknown>;
  /** Called with every decision and its route (metrics, logs); its failure is logged, never answered. */
  onDecision?: (d: Decision, route: string) => void;
  /** How long a request id is remembered (default src/http/request-ids.ts). */
  requestIdTtlMs?: number;
  /** Waiting for the peers' counts near the limit; undefined: answer SHARE_WAIT at once. */
  shareWait: ShareWait | undefined;
}

function refuse(p: InputProblem): never {
  throw inputError(p.code, p.message, p.path);
}

export function registerCheckRoutes(app: FastifyInstance, o: CheckRoutesOptions): void {
  const { limiter, ledger, limits, now, denyStatus, apiGuard, afterCommit, errorResponses, onDecision, shareWait } = o;
  const headers = new RateLimitHeaders(limiter);
  /** Names an allowed check that counted, for a refund. */
  const admitted = (d: Decision, req: CheckRequest, at: number): Decision => admit(d, req, at, limiter, ledger);
  const recent = new RecentRequests({ ttlMs: o.requestIdTtlMs });
  /** Decides a body check; a repeat of a check with a request id is answered as before, counting nothing. */
  const decideBody = (req: CheckBody, at: number): { d: Decision; counted: boolean } => {
    const id = req.requestId;
    if (id === undefined) {
      const d = admitted(limiter.decide(req, at), req, at);
      return { d, counted: isCounted(d) };
    }
    const cost = req.cost ?? 1;
    const seen = recent.get(id, req.key, cost, at);
    if (seen !== undefined) return { d: seen, counted: false };
    const d = admitted(limiter.decide(req, at), req, at);
    // A SHARE_WAIT counted nothing and is decided again: a repeat is a new decision.
    if (d.code !== 'SHARE_WAIT') recent.remember(id, req.key, cost, d, at);
    return { d, counted: isCounted(d) };
  };
  /** A check answered SHARE_WAIT is decided again as the peers' counts arrive (src/http/share-wait.ts). */
  const settled = async (first: Decision, decide: () => Decision): Promise<{ d: Decision; counted: boolean }> => {
    const d = await settleShareWait(first, decide, shareWait!);
    return { d, counted: isCounted(d) };
  };

  const report = (d: Decision, route: string, req: FastifyRequest) => {
    if (onDecision === undefined) return;
    try {
      onDecision(d, route);
    } catch (err) {
      req.log.error({ err }, 'onDecision hook failed');
    }
  };

  /** Headers, status and the Decision, after the durability barrier when it counted something. */
  const sendDecision = (reply: FastifyReply, d: Decision, deniedStatus: number, counted: boolean) => {
    const h = headers.headersFor(d);
    if (h !== null) reply.headers(h);
    reply.code(d.allowed ? 200 : deniedStatus);
    return afterCommit(reply, counted, d);
  };

  /** Several dimensions that must all pass: decided together, counted all or none. */
  const checkDimensions = (body: CheckRouteBody, req: FastifyRequest, reply: FastifyReply) => {
    const checks = body.checks!;
    for (const field of ['key', 'metadata', 'cost', 'priority', 'requestId'] as const) {
      if (body[field] !== undefined) throw inputError('INVALID_BODY', `give either "key" (one check) or "checks" (several dimensions), not both: "${field}" belongs in each check`, `/${field}`);
    }
    for (let i = 0; i < checks.length; i++) {
      const c = checks[i];
      const p = checkKey(c.key, limits, `/checks/${i}/key`) ?? (c.metadata !== undefined ? checkMetadataBytes(c.metadata, limits, `/checks/${i}/metadata`) : null);
      if (p !== null) refuse(p);
    }
    if (limiter.decideAll === undefined) throw inputError('INVALID_BODY', 'this limiter does not decide several dimensions in one check', '/checks');
    const t = now();
    const reqs: CheckRequest[] = checks.map((c) => ({ key: c.key, metadata: c.metadata, cost: c.cost, priority: c.priority }));
    const m = limiter.decideAll(reqs, t);
    const decided = m.decisions.map((d, i) => (m.allowed ? admitted(d, reqs[i], t) : d));
    const dimensions = decided.map((d, i) => (checks[i].name === undefined ? { key: checks[i].key, ...d } : { key: checks[i].key, name: checks[i].name, ...d }));
    const name = checks[m.binding].name;
    const answer: Record<string, unknown> = { ...decided[m.binding], dimension: m.binding };
    if (name !== undefined) answer.dimensionName = name;
    answer.dimensions = dimensions;
    report(m.decisions[m.binding], ROUTE_CHECK, req);
    const h = headers.headersFor(m.decisions[m.binding]);
    if (h !== null) reply.headers(h);
    reply.code(m.allowed ? 200 : 429);
    reply.serializer(JSON.stringify);
    const counted = m.allowed && m.decisions.some(isCounted);
    return afterCommit(reply, counted, answer);
  };

  app.post(
    '/v1/check',
    { ...apiGuard, schema: { body: checkRouteBodySchema(limits), response: { 200: decisionSchema, 429: decisionSchema, ...errorResponses } } },
    (req, reply) => {
      const body = req.body as CheckRouteBody;
      if (body.checks !== undefined) return checkDimensions(body, req, reply);
      if (body.key === undefined) throw inputError('KEY_MISSING', 'key is required (or checks, for several dimensions)', '/key');
      const p = checkKey(body.key, limits, '/key') ?? (body.metadata !== undefined ? checkMetadataBytes(body.metadata, limits, '/metadata') : null);
      if (p !== null) refuse(p);
      const first = decideBody(body as CheckBody, now());
      if (first.d.code === 'SHARE_WAIT' && shareWait !== undefined) {
        return settled(first.d, () => decideBody(body as CheckBody, now()).d).then(({ d, counted }) => {
          report(d, ROUTE_CHECK, req);
          return sendDecision(reply, d, 429, counted);
        });
      }
      report(first.d, ROUTE_CHECK, req);
      return sendDecision(reply, first.d, 429, first.counted);
    },
  );

  app.post(
    '/v1/check/batch',
    { ...apiGuard, schema: { body: batchBodySchema(limits), response: { 200: batchResultSchema, ...errorResponses } } },
    (req, reply) => {
      const checks = (req.body as BatchBody).checks;
      // Validate every entry before counting any.
      for (let i = 0; i < checks.length; i++) {
        const c = checks[i];
        const p =
          checkKey(c.key, limits, `/checks/${i}/key`) ??
          (c.metadata !== undefined ? checkMetadataBytes(c.metadata, limits, `/checks/${i}/metadata`) : null);
        if (p !== null) refuse(p);
      }
      const t = now();
      const results: Decision[] = new Array(checks.length);
      let counted = false;
      for (let i = 0; i < checks.length; i++) {
        const r = decideBody(checks[i], t);
        const d = r.d;
        results[i] = d;
        if (r.counted) counted = true;
        report(d, ROUTE_BATCH, req);
      }
      return afterCommit(reply, counted, { results });
    },
  );

  // GET for proxies. No schema: metadata arrives as dynamic `m.<name>` parameters, and query
  // strings are strings, so the checks are by hand (with the same codes as the body routes).
  // HEAD is not exposed: it would count. Without `key`, the key is `ip:<client IP>`
  // (src/http/client-ip.ts: the socket peer, or through trusted proxies only).
  app.get(
    '/v1/check',
    { ...apiGuard, exposeHeadRoute: false, schema: { response: { 200: decisionSchema, [denyStatus]: decisionSchema, ...errorResponses } } },
    (req, reply) => {
      const req1 = parseCheckQuery(req.query as Record<string, string | string[] | undefined>, limits, true, ipKey(req.ip));
      const decide = () => {
        const t = now();
        return admitted(limiter.decide(req1, t), req1, t);
      };
      const first = decide();
      if (first.code === 'SHARE_WAIT' && shareWait !== undefined) {
        return settled(first, decide).then(({ d }) => {
          report(d, ROUTE_CHECK_GET, req);
          return sendDecision(reply, d, denyStatus, isCounted(d));
        });
      }
      report(first, ROUTE_CHECK_GET, req);
      return sendDecision(reply, first, denyStatus, isCounted(first));
    },
  );

}
