/**
 * The admin listener (--admin-port): the rules admin API alone, on its own port, so that it can
 * be kept off the network the checks are served on. Same admin token, same error handling.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { adminAuth } from './admin-auth.ts';
import { errorHandler, frameworkErrors, makeNotFoundHandler } from './errors.ts';
import { registerRulesRoutes, type RulesApi } from './rules-routes.ts';

export interface AdminAppOptions {
  rules: RulesApi;
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
  app.setErrorHandler(errorHandler);
  const methodsByPath = new Map<string, string[]>();
  app.addHook('onRoute', (route) => {
    const list = methodsByPath.get(route.url) ?? [];
    for (const m of Array.isArray(route.method) ? route.method : [route.method]) if (!list.includes(m)) list.push(m);
    methodsByPath.set(route.url, list);
  });
  app.setNotFoundHandler(makeNotFoundHandler((path) => methodsByPath.get(path)));
  registerRulesRoutes(app, { rules: o.rules, guard: adminAuth(o.adminToken).hook });
  return app;
}
