/**
 * `regionlimit/middleware`: the fastify plugin, the express middleware and the drop-in stores
 * for @fastify/rate-limit and express-rate-limit.
 */
export { regionlimitFastify, type FastifyRateLimitOptions } from './fastify.ts';
export { regionlimitExpress, type ExpressRateLimitOptions } from './express.ts';
export { RegionlimitStore, fastifyRateLimitStore, type RefundingChecker } from './stores.ts';
export { decisionHeaders, type Checker, type KeyBy, type RateLimitOptions } from './common.ts';
