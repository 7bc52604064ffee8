/**
 *   GET /v1/rules/explain?key=…&m.<name>=…   (admin token)  -> 200 Explanation
 *
 * Which rule a request would get, at which level of the hierarchy (default, tier, override),
 * its tier and where it came from, and every effective limit and setting with the rule it was
 * inherited from (src/engine/explain.ts). Counts nothing.
 */
import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import type { Explanation } from '../engine/explain.ts';
import { parseCheckQuery } from './query.ts';
import type { InputLimits } from './schemas.ts';

export interface ExplainRouteOptions {
  explain: (key: string, metadata: Readonly<Record<string, string>> | undefined) => Explanation;
  limits: InputLimits;
  adminGuard: { onRequest: onRequestHookHandler };
}

export function registerExplainRoute(app: FastifyInstance, o: ExplainRouteOptions): void {
  app.get('/v1/rules/explain', { ...o.adminGuard, exposeHeadRoute: false }, (req) => {
    const q = parseCheckQuery(req.query as Record<string, string | string[] | undefined>, o.limits, false);
    return o.explain(q.key, q.metadata);
  });
}
