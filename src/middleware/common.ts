/**
 * What the fastify plugin and the express middleware share: how a request is keyed, the
 * RateLimit headers of a Decision, and the options both mirror from @fastify/rate-limit and
 * express-rate-limit where they mean the same thing.
 *
 * The limiter is anything with `check()`: a LimiterClient (`regionlimit/client`) or an embedded
 * limiter (`createLimiter`).
 */
import type { IncomingMessage } from 'node:http';
import proxyaddr from 'proxy-addr';
import { LimiterError } from '../engine/errors.ts';
import type { CheckRequest, Decision } from '../engine/types.ts';
import { formatPolicyHeader, retryAfterSeconds, sfString } from '../http/headers.ts';

/** What the middleware needs of a limiter. */
export interface Checker {
  check(req: CheckRequest): Promise<Decision>;
}

export type KeyBy<R> = 'ip' | 'user' | 'apiKey' | ((req: R) => string | undefined | Promise<string | undefined>);

export interface RateLimitOptions<R> {
  limiter: Checker;
  /**
   * How a request is keyed (default 'ip'): the client IP (the socket peer, or through
   * `trustedProxies` only), the user id (`user(req)`), an API key header (`apiKeyHeader`), or a
   * function. A request without a key (no user, no API key) is keyed by its IP.
   */
  keyBy?: KeyBy<R>;
  /** Prefix of every key (default: 'ip:', 'user:', 'apikey:' by kind; '' for a function). */
  keyPrefix?: string;
  /** Proxies (addresses or CIDRs) whose X-Forwarded-For is believed. Default none: the socket peer. */
  trustedProxies?: readonly string[];
  /** The user id of a request, for keyBy 'user'. */
  user?: (req: R) => string | undefined;
  /** Header carrying the API key, for keyBy 'apiKey' (default x-api-key). */
  apiKeyHeader?: string;
  /** Cost of a request (default 1). */
  cost?: number | ((req: R) => number);
  /** Metadata matched against rule constraints (e.g. { tier }). */
  metadata?: (req: R) => Record<string, string> | undefined;
  /** Requests not limited at all (e.g. health checks). Mirrors `skip` / `allowList`. */
  skip?: (req: R) => boolean | Promise<boolean>;
  /** Send RateLimit / RateLimit-Policy headers (default true). Mirrors `addHeaders` / `standardHeaders`. */
  headers?: boolean;
  /** Status of a denied request (default 429). Mirrors `statusCode`. */
  statusCode?: number;
  /** Body of a denied request (default { error: 'RATE_LIMITED', message, retryAfterMs }). Mirrors `message`. */
  message?: string | ((req: R, d: Decision) => unknown);
}

export interface Resolved<R> {
  limiter: Checker;
  keyOf(req: R, raw: IncomingMessage): Promise<string>;
  cost(req: R): number;
  metadata(req: R): Record<string, string> | undefined;
  skip: ((req: R) => boolean | Promise<boolean>) | undefined;
  headers: boolean;
  statusCode: number;
  body(req: R, d: Decision): unknown;
}

export function resolveOptions<R>(o: RateLimitOptions<R>, headerOf: (req: R, name: string) => string | undefined): Resolved<R> {
  if (o === null || typeof o !== 'object' || typeof o.limiter?.check !== 'function') {
    throw new LimiterError('CONFIG_INVALID', 'rate limit middleware needs { limiter } (a LimiterClient or an embedded limiter)');
  }
  const trust = proxyaddr.compile(o.trustedProxies !== undefined ? [...o.trustedProxies] : []);
  const ipOf = (raw: IncomingMessage) => {
    const a = proxyaddr(raw, trust);
    return /^::ffff:\d{1,3}(\.\d{1,3}){3}$/i.test(a) ? a.slice(7) : a;
  };
  const keyBy = o.keyBy ?? 'ip';
  const apiKeyHeader = (o.apiKeyHeader ?? 'x-api-key').toLowerCase();
  if (keyBy === 'user' && typeof o.user !== 'function') throw new LimiterError('CONFIG_INVALID', "keyBy 'user' needs user(req)");
  const prefix = (kind: string) => o.keyPrefix ?? kind;
  const keyOf = async (req: R, raw: IncomingMessage): Promise<string> => {
    let k: string | undefined;
    if (keyBy === 'user') k = o.user!(req);
    else if (keyBy === 'apiKey') k = headerOf(req, apiKeyHeader);
    else if (typeof keyBy === 'function') k = await keyBy(req);
    if (k === undefined || k === '') return `${o.keyPrefix ?? 'ip:'}${ipOf(raw)}`;
    return `${prefix(keyBy === 'user' ? 'user:' : keyBy === 'apiKey' ? 'apikey:' : '')}${k}`;
  };
  const statusCode = o.statusCode ?? 429;
  const message = o.message;
  return {
    limiter: o.limiter,
    keyOf,
    cost: typeof o.cost === 'function' ? o.cost : () => (o.cost as number | undefined) ?? 1,
    metadata: o.metadata ?? (() => undefined),
    skip: o.skip,
    headers: o.headers !== false,
    statusCode,
    body: (req, d) =>
      typeof message === 'function'
        ? message(req, d)
        : { error: 'RATE_LIMITED', message: message ?? `Too many requests: retry in ${retryAfterSeconds(d.retryAfterMs)} s`, retryAfterMs: d.retryAfterMs },
  };
}

/**
 * The IETF RateLimit headers of a Decision (draft-ietf-httpapi-ratelimit-headers): the binding
 * policy with its quota, remaining units and seconds to reset, and Retry-After on a denial. The
 * window (`w`) is not in a Decision, so the policy header carries the quota only.
 */
export function decisionHeaders(d: Decision): Record<string, string> {
  const h: Record<string, string> = {};
  if (d.policy !== null) {
    h['RateLimit-Policy'] = formatPolicyHeader([{ name: d.policy, limit: d.limit, windowSeconds: 0 }]).replace(/;w=\d+$/, '');
    h.RateLimit = `${sfString(d.policy)};r=${Math.max(0, Math.floor(d.remaining))};t=${Math.ceil(Math.max(0, d.resetMs) / 1000)}`;
  }
  if (!d.allowed) h['Retry-After'] = String(retryAfterSeconds(d.retryAfterMs));
  return h;
}

/** Decide one request: undefined when skipped. */
export async function decide<R>(r: Resolved<R>, req: R, raw: IncomingMessage): Promise<Decision | undefined> {
  if (r.skip !== undefined && (await r.skip(req))) return undefined;
  const metadata = r.metadata(req);
  const check: CheckRequest = { key: await r.keyOf(req, raw), cost: r.cost(req) };
  if (metadata !== undefined) (check as { metadata?: Record<string, string> }).metadata = metadata;
  return r.limiter.check(check);
}

/** The body of a request that could not be checked: the limiter's error code and message. */
export function limiterFailure(err: unknown): { error: string; message: string } {
  if (err instanceof LimiterError) return { error: err.code, message: err.message };
  return { error: 'INTERNAL', message: 'the rate limit check failed' };
}
