/**
 * Routes that give counts back:
 *   POST /v1/refund       {admissionId}      -> 200 {ruleId, refunded}   (API token when configured)
 *   POST /v1/admin/reset  {key, metadata?}   -> 200 {key, ruleId, reset, limits}   (admin token)
 *
 * A refund names one admission this node made and gives back exactly its cost, once; the ledger
 * refuses an unknown, expired, already refunded or other node's id with its own code. A reset
 * gives back this node's own count of a key (what other nodes admitted stays theirs).
 */
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import type { AdmissionLedger } from '../engine/admissions.ts';
import type { Limiter } from '../engine/types.ts';
import type { AfterCommit } from './commit.ts';
import { inputError } from './errors.ts';
import { checkKey, checkMetadataBytes, refundBodySchema, refundResultSchema, resetBodySchema, resetResultSchema, type InputLimits, type RefundBody, type ResetBody } from './schemas.ts';

export interface AdmissionRoutesOptions {
  limiter: Limiter;
  ledger: AdmissionLedger;
  limits: InputLimits;
  now: () => number;
  apiGuard: { onRequest?: onRequestHookHandler };
  /** Guard of the reset route; absent: the reset route is not served here (an admin listener serves it). */
  adminGuard?: { onRequest: onRequestHookHandler };
  /** Durability barrier after something changed (src/http/app.ts). */
  afterCommit: AfterCommit;
  errorResponses: Record<number, unknown>;
}

export function registerAdmissionRoutes(app: FastifyInstance, o: AdmissionRoutesOptions): void {
  const { limiter, ledger, now, afterCommit } = o;

  app.post(
    '/v1/refund',
    { ...o.apiGuard, schema: { body: refundBodySchema(), response: { 200: refundResultSchema, ...o.errorResponses } } },
    (req, reply) => {
      const t = now();
      const admission = ledger.take((req.body as RefundBody).admissionId, t);
      const result = limiter.refundAdmission(admission, t);
      return afterCommit(reply, result.refunded > 0, result);
    },
  );

  if (o.adminGuard !== undefined) registerResetRoute(app, { ...o, adminGuard: o.adminGuard });
}

/** POST /v1/admin/reset alone (the main app, or the admin listener). */
export function registerResetRoute(app: FastifyInstance, o: Pick<AdmissionRoutesOptions, 'limiter' | 'limits' | 'now' | 'afterCommit' | 'errorResponses'> & { adminGuard: { onRequest: onRequestHookHandler } }): void {
  const { limiter, limits, now, afterCommit } = o;
  app.post(
    '/v1/admin/reset',
    { ...o.adminGuard, schema: { body: resetBodySchema(limits), response: { 200: resetResultSchema, ...o.errorResponses } } },
    (req, reply) => {
      const body = req.body as ResetBody;
      const p = checkKey(body.key, limits, '/key') ?? (body.metadata !== undefined ? checkMetadataBytes(body.metadata, limits, '/metadata') : null);
      if (p !== null) throw inputError(p.code, p.message, p.path);
      const result = limiter.resetOwn(body, now());
      req.log.info({ ruleId: result.ruleId, reset: result.reset }, 'admin reset of a key');
      return afterCommit(reply, result.reset > 0, { key: body.key, ...result });
    },
  );
}
