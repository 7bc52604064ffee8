/**
 * Admin authentication, for every admin route (reset today, a rules API later): a route is
 * admin when it runs `adminAuth(...).hook` on request. Never open by default: with no admin
 * token configured every admin route answers 403 ADMIN_DISABLED; a missing or wrong
 * `Authorization: Bearer <token>` answers 401 ADMIN_UNAUTHORIZED.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { LimiterError } from '../engine/errors.ts';
import { bearerOf, digestOf, matchesAny } from './tokens.ts';

export interface AdminAuth {
  /** Whether an admin token is configured. */
  readonly enabled: boolean;
  /** fastify onRequest hook: throws ADMIN_DISABLED / ADMIN_UNAUTHORIZED (mapped in src/http/errors.ts). */
  hook(req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void;
}

export function adminAuth(token: string | undefined): AdminAuth {
  const digests = token !== undefined && token !== '' ? [digestOf(token)] : [];
  return {
    enabled: digests.length > 0,
    hook(req, reply, done) {
      if (digests.length === 0) return done(new LimiterError('ADMIN_DISABLED', 'admin routes are disabled: start the node with --admin-token (LIMITER_ADMIN_TOKEN)'));
      if (!matchesAny(bearerOf(req.headers.authorization), digests)) {
        void reply.header('www-authenticate', 'Bearer realm="limiter-admin"');
        return done(new LimiterError('ADMIN_UNAUTHORIZED', 'this route needs Authorization: Bearer <admin token>'));
      }
      done();
    },
  };
}
