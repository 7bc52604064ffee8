/**
 * Drop-in stores: an application that already uses @fastify/rate-limit or express-rate-limit
 * switches to the limiter by configuration. The rules decide (limits and windows come from the
 * limiter's rules file, not from the library's `max` / `limit` and `timeWindow` / `windowMs`,
 * which should be set to the rule's values so the libraries' own headers agree).
 *
 * What the libraries count is mapped from the Decision: allowed → the units used so far (never
 * above the library's limit), denied → one above the library's limit, so the library answers 429
 * exactly when the limiter denied. `decrement` (express-rate-limit's skipSuccessfulRequests /
 * skipFailedRequests) and `resetKey` refund the latest admission of that key.
 */
import type { ClientRateLimitInfo, IncrementResponse, Options, Store } from 'express-rate-limit';
import type { Decision, RefundResult } from '../engine/types.ts';
import { ExpiryQueue } from '../engine/fifo.ts';
import type { Checker } from './common.ts';

/** A limiter that can also give an admission back: a LimiterClient or an embedded limiter. */
export interface RefundingChecker extends Checker {
  refund(admissionId: string): Promise<RefundResult>;
}

/** Latest admission id per key, held until the admission's window has reset (bounded). */
class LatestAdmissions {
  private readonly q = new ExpiryQueue<{ id: string; expiresAt: number }>();
  constructor(private readonly max = 100_000) {}
  note(key: string, d: Decision): void {
    if (d.admissionId === undefined) return;
    const now = Date.now();
    this.q.expire(now);
    if (this.q.size >= this.max) this.q.shift();
    this.q.push(key, { id: d.admissionId, expiresAt: now + d.resetMs });
  }
  take(key: string): string | undefined {
    const e = this.q.get(key);
    if (e === undefined) return undefined;
    this.q.delete(key);
    return e.id;
  }
}

function used(d: Decision, libraryLimit: number | undefined): number {
  const limit = libraryLimit ?? d.limit;
  if (!d.allowed) return limit + 1;
  return Math.max(1, Math.min(limit, d.limit - d.remaining));
}

/** express-rate-limit's Store over the limiter: `rateLimit({ store: new RegionlimitStore({ limiter }) , ... })`. */
export class RegionlimitStore implements Store {
  readonly localKeys = false;
  readonly prefix: string;
  private readonly limiter: RefundingChecker;
  private readonly latest = new LatestAdmissions();
  private limit: number | undefined;

  constructor(o: { limiter: RefundingChecker; prefix?: string }) {
    this.limiter = o.limiter;
    this.prefix = o.prefix ?? '';
  }

  init(options: Options): void {
    this.limit = typeof options.limit === 'number' ? options.limit : undefined;
  }

  async increment(key: string): Promise<IncrementResponse> {
    const k = this.prefix + key;
    const d = await this.limiter.check({ key: k });
    // A denial counted nothing: a decrement that follows it (express-rate-limit decrements its
    // own 429 with skipFailedRequests) must not give back an earlier admission.
    if (d.allowed) this.latest.note(k, d);
    else this.latest.take(k);
    return { totalHits: used(d, this.limit), resetTime: new Date(Date.now() + (d.allowed ? d.resetMs : d.retryAfterMs)) };
  }

  async get(key: string): Promise<ClientRateLimitInfo | undefined> {
    void key;
    return undefined;
  }

  async decrement(key: string): Promise<void> {
    const id = this.latest.take(this.prefix + key);
    if (id !== undefined) await this.limiter.refund(id).catch(() => undefined);
  }

  async resetKey(key: string): Promise<void> {
    await this.decrement(key);
  }
}

/** What @fastify/rate-limit passes to a store's `incr` callback. */
interface FastifyStoreResult {
  current: number;
  ttl: number;
}

/**
 * @fastify/rate-limit's custom store over the limiter: `app.register(rateLimit, { store: fastifyRateLimitStore({ limiter }), max, timeWindow })`.
 * The library constructs the class itself, so this returns a class bound to the limiter.
 */
export function fastifyRateLimitStore(o: { limiter: Checker; prefix?: string }) {
  const prefix = o.prefix ?? '';
  return class RegionlimitFastifyStore {
    constructor(readonly options: unknown = {}) {}
    incr(key: string, cb: (err: Error | null, res?: FastifyStoreResult) => void, _timeWindow?: number, max?: number): void {
      o.limiter.check({ key: prefix + key }).then(
        (d) => cb(null, { current: used(d, max), ttl: d.allowed ? d.resetMs : d.retryAfterMs }),
        (err: Error) => cb(err),
      );
    }
    child(routeOptions: unknown): RegionlimitFastifyStore {
      return new RegionlimitFastifyStore(routeOptions);
    }
  };
}
