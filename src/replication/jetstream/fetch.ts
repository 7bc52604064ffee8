/**
 * Reading a stream by sequence, without a consumer: direct gets (`$JS.API.DIRECT.GET.<stream>`,
 * streams have `allow_direct`), answered by the stream's own replica. Unlike STREAM.MSG.GET and
 * consumer creation, which nats-server 2.9 refuses (10008) once the meta group has been without
 * a leader for a few seconds, direct gets work in a region cut off from the others. The reader
 * (./consumer.ts) fetches this way what its push consumer delivered to a connection that died,
 * or skipped. Requests are retried until they succeed, so nothing is skipped because the server
 * was briefly unreachable.
 */
import type { NatsConnection } from 'nats';
import { JS_ERR, isApiError, isTransient, toError } from './errors.ts';

/** Direct gets in flight at once. */
export const FETCH_WINDOW = 64;

/** A message read from a stream. */
export interface FetchedMsg {
  seq: number;
  subject: string;
  data: Uint8Array;
  /** `Nats-Stream-Source` of a message an aggregate sourced: `<origin stream> <origin seq>`. */
  source?: string;
}

export interface FetchContext {
  nc(): NatsConnection;
  /** Time-out of one request (short: requests are retried). */
  timeoutMs: number;
  stopped(): boolean;
  /** A pause that ends early when stopped. */
  sleep(ms: number): Promise<void>;
  failure(err: Error): void;
  /** The stream does not exist (any more). */
  streamGone(): void;
}

/**
 * Runs a JetStream request until it succeeds; undefined when stopped or the stream is gone.
 * Transient failures are retried quickly (the connection is often back within moments).
 */
export async function retryRequest<T>(ctx: FetchContext, fn: () => Promise<T>): Promise<T | undefined> {
  for (let attempt = 0; !ctx.stopped(); attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (isApiError(err, JS_ERR.STREAM_NOT_FOUND)) {
        ctx.streamGone();
        return undefined;
      }
      if (!isTransient(err) || attempt > 0) ctx.failure(toError(err));
      await ctx.sleep(Math.min(1000, 50 * 2 ** attempt));
    }
  }
  return undefined;
}

const enc = new TextEncoder();

/** Thrown for a direct get answered with an unexpected status (not retried). */
export class DirectGetError extends Error {
  constructor(
    readonly status: number,
    description: string,
  ) {
    super(`direct get: ${status} ${description}`);
    this.name = 'DirectGetError';
  }
}

/**
 * The first message of `stream` at or after `seq` (`next_by_subj` ">": whatever its subject,
 * skipping deleted sequences), or null when there is none (yet). The answer is the message
 * itself with `Nats-Sequence` and `Nats-Subject` headers, or a status (404: nothing there).
 */
async function firstFrom(ctx: FetchContext, stream: string, seq: number): Promise<FetchedMsg | null> {
  const body = enc.encode(JSON.stringify({ seq, next_by_subj: '>' }));
  const r = await ctx.nc().request(`$JS.API.DIRECT.GET.${stream}`, body, { timeout: ctx.timeoutMs });
  const h = r.headers;
  const status = h?.code ?? 0;
  if (status === 404) return null;
  const got = Number(h?.get('Nats-Sequence'));
  if (!h || (status !== 0 && (status < 200 || status > 299)) || !Number.isSafeInteger(got) || got < seq) {
    throw new DirectGetError(status, h?.description ?? 'no headers');
  }
  return { seq: got, subject: h.get('Nats-Subject'), data: r.data, source: h.get('Nats-Stream-Source') || undefined };
}

/**
 * Hands `each` the stored messages of `stream` from sequence `from` on, in order, up to the
 * first one at or beyond `to` (or the stream's end), {@link FETCH_WINDOW} requests in flight.
 * A message's sequence may skip ahead of the one asked for: those between were deleted (e.g.
 * by `max_age`). Stops early (returning false) when stopped, when the stream is gone, or when
 * `each` returns false.
 */
export async function fetchRange(
  ctx: FetchContext,
  stream: string,
  from: number,
  to: number,
  each: (msg: FetchedMsg) => Promise<boolean>,
): Promise<boolean> {
  type Got = { msg: FetchedMsg | null } | undefined;
  const window: Array<Promise<Got>> = [];
  let next = from;
  let end = to; // lowered to where the stream ends
  let handed = from - 1;
  while (!ctx.stopped() && (next <= end || window.length > 0)) {
    while (next <= end && window.length < FETCH_WINDOW) {
      const seq = next++;
      const p = retryRequest(ctx, () => firstFrom(ctx, stream, seq)).then((msg): Got => (msg === undefined ? undefined : { msg }));
      p.catch(() => {});
      window.push(p);
    }
    const got = await window.shift()!;
    if (!got) return false;
    if (got.msg === null) {
      end = Math.min(end, next - 1); // nothing from here on: stop asking
      continue;
    }
    if (got.msg.seq <= handed) continue; // the same next message, asked from a deleted sequence
    handed = got.msg.seq;
    if (!(await each(got.msg))) return false;
    if (handed >= to) break;
  }
  return !ctx.stopped();
}
