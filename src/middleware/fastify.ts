/**
 * Fastify plugin: every request is checked before its handler; a denied one is answered with
 * the status (429), Retry-After and the RateLimit headers; an allowed one carries the headers.
 *
 *   await app.register(regionlimitFastify, { limiter: new LimiterClient({ url }), keyBy: 'ip' });
 *
 * A limiter error (unreachable with `onUnavailable: 'error'`, a refused key) is answered 503
 * with `{error: <code>, message}`: the limiter failed, not the request.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { decide, decisionHeaders, limiterFailure, resolveOptions, type RateLimitOptions } from './common.ts';

export type FastifyRateLimitOptions = RateLimitOptions<FastifyRequest>;

const plugin: FastifyPluginAsync<FastifyRateLimitOptions> = async (app, opts) => {
  const r = resolveOptions<FastifyRequest>(opts, (req, name) => {
    const v = req.headers[name];
    return Array.isArray(v) ? v[0] : v;
  });
  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    let d;
    try {
      d = await decide(r, req, req.raw);
    } catch (err) {
      req.log.error({ err }, 'rate limit check failed');
      return reply.code(503).send(limiterFailure(err));
    }
    if (d === undefined) return;
    if (r.headers || !d.allowed) reply.headers(r.headers ? decisionHeaders(d) : { 'Retry-After': decisionHeaders(d)['Retry-After'] });
    if (!d.allowed) return reply.code(r.statusCode).send(r.body(req, d));
  });
};

export const regionlimitFastify = fp(plugin, { fastify: '5.x', name: 'regionlimit' });
export default regionlimitFastify;
