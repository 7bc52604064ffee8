/**
 * The admin listener (--admin-port): the admin routes alone (the rules API, POST
 * /v1/admin/reset) on their own port, so that they can be kept off the network the checks are
 * served on; the main listener then answers them 404. Same admin token, same validation and
 * error handling as the main app.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Limiter } from '../engine/types.ts';
import { adminAuth } from './admin-auth.ts';
import { registerResetRoute } from './admission-routes.ts';
import { afterCommitWith } from './commit.ts';
import { errorHandler, frameworkErrors, makeNotFoundHandler } from './errors.ts';
import { registerRulesRoutes, type RulesApi } from './rules-routes.ts';
import { compileSchema } from '../engine/validation.ts';
import { errorBodySchema, type InputLimits } from './schemas.ts';
import { installStrictUtf8 } from './utf8.ts';

export interface AdminAppOptions {
  rules: RulesApi;
  limiter: Limiter;
  limits: Readonly<InputLimits>;
  now: () => number;
  /** Durability barrier after a reset gave counts back (`sync` durability). */
  commit?: () => Promise<unknown> | undefined | void;
  adminToken: string | undefined;
  /** HTTPS certificate and key (the main listener's); undefined: plain HTTP. */
  tls?: { cert: Buffer; key: Buffer };
  /** A pino logger instance, or false. */
  logger?: object | false;
}

export function buildAdminApp(o: AdminAppOptions): FastifyInstance {
  const app = Fastify({
    ...(o.logger ? { loggerInstance: o.logger as never } : { logger: false }),
    frameworkErrors,
    ...(o.tls !== undefined ? { https: { cert: o.tls.cert, key: o.tls.key } } : {}),
  }) as unknown as FastifyInstance;
  app.removeContentTypeParser('text/plain');
  installStrictUtf8(app);
  // The service's one ajv instance compiles every route schema (src/engine/validation.ts).
  app.setValidatorCompiler(({ schema }) => compileSchema(schema));
  app.setErrorHandler(errorHandler);
  const methodsByPath = new Map<string, string[]>();
  app.addHook('onRoute', (route) => {
    const list = methodsByPath.get(route.url) ?? [];
    for (const m of Array.isArray(route.method) ? route.method : [route.method]) if (!list.includes(m)) list.push(m);
    methodsByPath.set(route.url, list);
  });
  app.setNotFoundHandler(makeNotFoundHandler((path) => methodsByPath.get(path)));
  const guard = adminAuth(o.adminToken).hook;
  registerRulesRoutes(app, { rules: o.rules, guard });
  const errorResponses = { 400: errorBodySchema, 401: errorBodySchema, 413: errorBodySchema, 415: errorBodySchema };
  registerResetRoute(app, { limiter: o.limiter, limits: o.limits, now: o.now, afterCommit: afterCommitWith(o.commit), errorResponses, adminGuard: { onRequest: guard } });
  return app;
}
