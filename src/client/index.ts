/**
 * `regionlimit/client`: the HTTP client of a limiter node (src/client/client.ts).
 *
 *   const client = new LimiterClient({ url: 'http://127.0.0.1:8080' });
 *   const d = await client.check({ key: 'user:42' });
 */
export { LimiterClient, ClientError, type LimiterClientOptions, type CallOptions, type ClientStats } from './client.ts';
export type { ClientDecision, DecisionSource, FallbackLimit, OnUnavailable } from './local.ts';
export type { CheckRequest, Decision, RefundResult } from '../engine/types.ts';
export type { ErrorCode } from '../engine/errors.ts';
