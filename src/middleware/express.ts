/**
 * Express middleware: every request is checked before the next handler; a denied one is
 * answered with the status (429), Retry-After and the RateLimit headers; an allowed one carries
 * the headers.
 *
 *   app.use(regionlimitExpress({ limiter: new LimiterClient({ url }), keyBy: 'ip' }));
 *
 * A limiter error (unreachable with `onUnavailable: 'error'`, a refused key) is answered 503
 * with `{error: <code>, message}`: the limiter failed, not the request.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { decide, decisionHeaders, limiterFailure, resolveOptions, type RateLimitOptions } from './common.ts';

export type ExpressRateLimitOptions = RateLimitOptions<Request>;

export function regionlimitExpress(opts: ExpressRateLimitOptions): RequestHandler {
  const r = resolveOptions<Request>(opts, (req, name) => req.get(name));
  return (req: Request, res: Response, next: NextFunction) => {
    decide(r, req, req).then(
      (d) => {
        if (d === undefined) return next();
        const h = decisionHeaders(d);
        if (r.headers) res.set(h);
        if (d.allowed) return next();
        if (!r.headers) res.set('Retry-After', h['Retry-After']);
        res.status(r.statusCode).json(r.body(req, d));
      },
      (err: unknown) => {
        if (res.headersSent) return next(err);
        res.status(503).json(limiterFailure(err));
      },
    );
  };
}
