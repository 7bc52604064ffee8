/**
 * LimiterClient: the HTTP client of a node (`import { LimiterClient } from 'regionlimit/client'`).
 *
 * - Keep-alive connections (an undici Pool), a timeout per call.
 * - Automatic batching: checks made within one microtask (or `batch.windowMs`) go out as one
 *   POST /v1/check/batch, each caller getting its own Decision (a lone check goes as
 *   POST /v1/check).
 * - Every check carries a requestId; a check whose connection failed is retried with the same
 *   id, and the node answers a repeat without counting it again.
 * - Denial cache: a denied key is answered locally until its Retry-After.
 * - When the limiter is unreachable or slow: `onUnavailable` says what to answer (fail open,
 *   fail closed, a local fallback limit, or the typed error).
 * Errors are ClientErrors (a LimiterError) with a stable code: the node's codes for a refused
 * request, LIMITER_UNREACHABLE / LIMITER_TIMEOUT / LIMITER_BAD_RESPONSE / LIMITER_CLOSED.
 */
import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import { LimiterError, type ErrorCode } from '../engine/errors.ts';
import type { CheckRequest, Decision, MultiDecision, RefundResult } from '../engine/types.ts';
import { DenialCache, Fallback, checkIdentity, type ClientDecision, type OnUnavailable } from './local.ts';

export class ClientError extends LimiterError {
  /** The HTTP status the node answered, when it answered. */
  readonly status: number | undefined;
  constructor(code: ErrorCode, message: string, opts: { status?: number; path?: string; cause?: unknown } = {}) {
    super(code, message, { details: opts.path !== undefined ? { path: opts.path } : undefined, cause: opts.cause });
    this.name = 'ClientError';
    this.status = opts.status;
  }
}

export interface LimiterClientOptions {
  /** The node's base URL, e.g. http://127.0.0.1:8080. */
  url: string;
  /** API token (sent as `Authorization: Bearer <token>`), when the node requires one. */
  token?: string;
  /** Default time a call may take, ms (default 1000). */
  timeoutMs?: number;
  /** Keep-alive connections to the node (default 16). */
  connections?: number;
  /** Automatic batching (default on, one microtask): false, or the window in ms and the largest batch. */
  batch?: boolean | { windowMs?: number; maxSize?: number };
  /** Answer a denied key locally until its Retry-After (default true). */
  denialCache?: boolean;
  /** Retries of a check whose connection failed (never of a timed-out one), with the same requestId (default 1). */
  retries?: number;
  /**
   * When the limiter is unreachable or slow: reject with the typed error (`'error'`, default),
   * allow (`'failOpen'`), deny (`'failClosed'`), or decide locally with `{ limit, window }` per key.
   */
  onUnavailable?: OnUnavailable;
}

export interface CallOptions {
  /** This call's timeout, ms (default: the client's). */
  timeoutMs?: number;
}

export interface ClientStats {
  /** Checks answered by the limiter, by the denial cache and by the fallback. */
  limiter: number;
  cache: number;
  fallback: number;
  /** HTTP requests sent (a batch is one) and retries. */
  requests: number;
  retries: number;
}

interface Pending {
  req: CheckRequest & { requestId: string };
  resolve(d: ClientDecision): void;
  reject(err: unknown): void;
}

interface HttpAnswer {
  status: number;
  body: unknown;
}

const CONNECTION_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT']);

export class LimiterClient {
  readonly url: string;
  readonly stats: ClientStats = { limiter: 0, cache: 0, fallback: 0, requests: 0, retries: 0 };
  private readonly pool: Pool;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly batching: boolean;
  private readonly windowMs: number;
  private readonly maxBatch: number;
  private readonly retries: number;
  private readonly denials: DenialCache | undefined;
  private readonly fallback: Fallback;
  /** Checks waiting for the next flush, per timeout. */
  private readonly queues = new Map<number, Pending[]>();
  private flushScheduled = false;
  private readonly idPrefix = randomBytes(9).toString('base64url');
  private seq = 0;
  private closed = false;

  constructor(o: LimiterClientOptions) {
    if (o === null || typeof o !== 'object' || typeof o.url !== 'string') throw new ClientError('CONFIG_INVALID', 'LimiterClient needs { url }');
    let origin: URL;
    try {
      origin = new URL(o.url);
    } catch {
      throw new ClientError('CONFIG_INVALID', `url "${o.url}" is not a URL`);
    }
    const posInt = (v: number | undefined, name: string, min = 1) => {
      if (v !== undefined && !(Number.isSafeInteger(v) && v >= min)) throw new ClientError('CONFIG_INVALID', `${name} must be an integer ≥ ${min}`);
      return v;
    };
    this.url = origin.origin;
    this.timeoutMs = posInt(o.timeoutMs, 'timeoutMs') ?? 1000;
    const b = o.batch ?? true;
    this.batching = b !== false;
    this.windowMs = posInt(typeof b === 'object' ? b.windowMs : undefined, 'batch.windowMs', 0) ?? 0;
    this.maxBatch = posInt(typeof b === 'object' ? b.maxSize : undefined, 'batch.maxSize') ?? 500;
    this.retries = posInt(o.retries, 'retries', 0) ?? 1;
    this.denials = o.denialCache === false ? undefined : new DenialCache();
    this.fallback = new Fallback(o.onUnavailable ?? 'error');
    this.headers = { 'content-type': 'application/json' };
    if (o.token !== undefined) this.headers.authorization = `Bearer ${o.token}`;
    this.pool = new Pool(this.url, { connections: posInt(o.connections, 'connections') ?? 16, pipelining: 1, keepAliveTimeout: 10_000 });
  }

  /** Is this request admitted? Resolves with a Decision (`allowed` false is a denial, not an error). */
  check(req: CheckRequest, opts: CallOptions = {}): Promise<ClientDecision> {
    if (this.closed) return Promise.reject(new ClientError('LIMITER_CLOSED', 'the client is closed'));
    if (this.denials !== undefined) {
      const local = this.denials.answer(checkIdentity(req), req, Date.now());
      if (local !== undefined) {
        this.stats.cache++;
        return Promise.resolve(local);
      }
    }
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    return new Promise<ClientDecision>((resolve, reject) => {
      const p: Pending = { req: { ...req, requestId: this.nextId() }, resolve, reject };
      if (!this.batching) {
        void this.send([p], timeoutMs);
        return;
      }
      let q = this.queues.get(timeoutMs);
      if (q === undefined) this.queues.set(timeoutMs, (q = []));
      q.push(p);
      if (q.length >= this.maxBatch) {
        this.queues.delete(timeoutMs);
        void this.send(q, timeoutMs);
        return;
      }
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        if (this.windowMs === 0) queueMicrotask(() => this.flush());
        else setTimeout(() => this.flush(), this.windowMs);
      }
    });
  }

  /** Several checks in one request (split by `batch.maxSize`), answered in order; a refused entry refuses the call. */
  async checkMany(reqs: readonly CheckRequest[], opts: CallOptions = {}): Promise<ClientDecision[]> {
    if (this.closed) throw new ClientError('LIMITER_CLOSED', 'the client is closed');
    if (!Array.isArray(reqs) || reqs.length === 0) throw new ClientError('BATCH_INVALID', 'checkMany needs at least one check');
    const pending: Pending[] = [];
    const out = reqs.map((req) => new Promise<ClientDecision>((resolve, reject) => pending.push({ req: { ...req, requestId: this.nextId() }, resolve, reject })));
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    for (let i = 0; i < pending.length; i += this.maxBatch) void this.send(pending.slice(i, i + this.maxBatch), timeoutMs, false);
    return Promise.all(out);
  }

  /**
   * Several dimensions of one request that must all pass (POST /v1/check with `checks`): all
   * counted, or none when one is denied (`binding` names it). Never retried (a lost answer may
   * have counted) and not answered by the fallback or the denial cache.
   */
  async checkAll(reqs: readonly CheckRequest[], opts: CallOptions = {}): Promise<MultiDecision> {
    if (this.closed) throw new ClientError('LIMITER_CLOSED', 'the client is closed');
    if (!Array.isArray(reqs) || reqs.length === 0) throw new ClientError('BATCH_INVALID', 'checkAll needs at least one check');
    const r = await this.call('POST', '/v1/check', JSON.stringify({ checks: reqs }), opts.timeoutMs ?? this.timeoutMs, 0);
    if (r.status !== 200 && r.status !== 429) throw errorOf(r);
    const b = r.body as { allowed?: unknown; dimension?: unknown; dimensions?: unknown };
    if (typeof b?.allowed !== 'boolean' || typeof b.dimension !== 'number' || !Array.isArray(b.dimensions) || b.dimensions.length !== reqs.length || !b.dimensions.every(isDecision)) {
      throw new ClientError('LIMITER_BAD_RESPONSE', 'the limiter answered a body that is not the multi-dimension decision asked for', { status: r.status });
    }
    this.stats.limiter++;
    const decisions = (b.dimensions as (Decision & { key?: string; name?: string })[]).map(({ key: _key, name: _name, ...d }) => d);
    return { allowed: b.allowed, decisions, binding: b.dimension };
  }

  /** Give back one admission by the id its check answered. */
  async refund(admissionId: string, opts: CallOptions = {}): Promise<RefundResult> {
    const r = await this.call('POST', '/v1/refund', JSON.stringify({ admissionId }), opts.timeoutMs ?? this.timeoutMs, 0);
    if (r.status !== 200) throw errorOf(r);
    return r.body as RefundResult;
  }

  /** A key's usage under each of its rule's limits (counts nothing). */
  async usage(key: string, metadata?: Readonly<Record<string, string>>, opts: CallOptions = {}): Promise<{ key: string; ruleId: string | null; limits: { policy: string; usage: number; limit: number }[] }> {
    let q = `key=${encodeURIComponent(key)}`;
    for (const [k, v] of Object.entries(metadata ?? {})) q += `&m.${encodeURIComponent(k)}=${encodeURIComponent(v)}`;
    const r = await this.call('GET', `/v1/usage?${q}`, undefined, opts.timeoutMs ?? this.timeoutMs, this.retries);
    if (r.status !== 200) throw errorOf(r);
    return r.body as never;
  }

  /** Send what is waiting, then close the connections. Calls after this reject with LIMITER_CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    await this.pool.close();
  }

  private nextId(): string {
    return `${this.idPrefix}.${(++this.seq).toString(36)}`;
  }

  private flush(): void {
    this.flushScheduled = false;
    for (const [timeoutMs, q] of this.queues) {
      this.queues.delete(timeoutMs);
      void this.send(q, timeoutMs);
    }
  }

  /** One request for these checks; each caller gets its Decision, the fallback's answer or its error. */
  private async send(batch: Pending[], timeoutMs: number, resendOthers = true): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let todo = batch;
    // A batch refused for one entry's input: that caller gets the error, the others are sent again.
    for (let round = 0; todo.length > 0 && round < 2; round++) {
      let r: HttpAnswer;
      try {
        r =
          todo.length === 1
            ? await this.call('POST', '/v1/check', JSON.stringify(todo[0].req), deadline - Date.now(), this.retries)
            : await this.call('POST', '/v1/check/batch', JSON.stringify({ checks: todo.map((p) => p.req) }), deadline - Date.now(), this.retries);
      } catch (err) {
        this.unavailable(todo, err);
        return;
      }
      if (todo.length === 1 ? r.status === 200 || r.status === 429 : r.status === 200) {
        const results = todo.length === 1 ? [r.body] : (r.body as { results?: unknown }).results;
        if (!Array.isArray(results) || results.length !== todo.length || !results.every(isDecision)) {
          const err = new ClientError('LIMITER_BAD_RESPONSE', 'the limiter answered a body that is not the Decisions asked for', { status: r.status });
          for (const p of todo) p.reject(err);
          return;
        }
        const now = Date.now();
        for (let i = 0; i < todo.length; i++) {
          const d = results[i] as ClientDecision;
          d.source = 'limiter';
          this.denials?.note(checkIdentity(todo[i].req), todo[i].req, d, now);
          this.stats.limiter++;
          todo[i].resolve(d);
        }
        return;
      }
      if (r.status >= 500) {
        this.unavailable(todo, errorOf(r));
        return;
      }
      const err = errorOf(r);
      const m = todo.length > 1 ? /^\/checks\/(\d+)(\/|$)/.exec(String(err.details?.path ?? '')) : null;
      if (m === null || Number(m[1]) >= todo.length || !resendOthers) {
        for (const p of todo) p.reject(err);
        return;
      }
      const bad = Number(m[1]);
      todo[bad].reject(new ClientError(err.code, err.message, { status: err.status, path: String(err.details?.path).replace(/^\/checks\/\d+/, '') }));
      todo = todo.filter((_, i) => i !== bad);
    }
    if (todo.length > 0) void this.send(todo, Math.max(1, deadline - Date.now()));
  }

  /** The limiter did not answer: the fallback's answer, or the typed error. */
  private unavailable(batch: Pending[], err: unknown): void {
    const e = err instanceof ClientError ? err : new ClientError('LIMITER_UNREACHABLE', String(err), { cause: err });
    const why = e.code === 'LIMITER_TIMEOUT' ? 'LIMITER_TIMEOUT' : 'LIMITER_UNREACHABLE';
    const now = Date.now();
    for (const p of batch) {
      const d = e.code === 'LIMITER_TIMEOUT' || e.code === 'LIMITER_UNREACHABLE' || (e.status ?? 0) >= 500 ? this.fallback.decide(p.req, why, now) : undefined;
      if (d === undefined) p.reject(e);
      else {
        this.stats.fallback++;
        p.resolve(d);
      }
    }
  }

  /** One HTTP exchange, retried on connection failures while time remains. */
  private async call(method: 'GET' | 'POST', path: string, body: string | undefined, timeoutMs: number, retries: number): Promise<HttpAnswer> {
    if (this.closed) throw new ClientError('LIMITER_CLOSED', 'the client is closed');
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const left = deadline - Date.now();
      if (left <= 0) throw new ClientError('LIMITER_TIMEOUT', `no answer from ${this.url} within ${timeoutMs} ms`);
      this.stats.requests++;
      const signal = AbortSignal.timeout(left);
      try {
        const res = await this.pool.request({ method, path, body, headers: this.headers, signal });
        const text = await res.body.text();
        let parsed: unknown;
        try {
          parsed = text === '' ? undefined : JSON.parse(text);
        } catch {
          throw new ClientError('LIMITER_BAD_RESPONSE', `the limiter answered ${res.statusCode} with a body that is not JSON`, { status: res.statusCode });
        }
        return { status: res.statusCode, body: parsed };
      } catch (err) {
        if (err instanceof ClientError) throw err;
        if (signal.aborted) throw new ClientError('LIMITER_TIMEOUT', `no answer from ${this.url} within ${timeoutMs} ms`, { cause: err });
        const code = (err as { code?: string }).code ?? '';
        if (this.closed) throw new ClientError('LIMITER_CLOSED', 'the client is closed', { cause: err });
        if (!CONNECTION_ERRORS.has(code) || attempt >= retries) {
          throw new ClientError('LIMITER_UNREACHABLE', `cannot reach ${this.url}: ${(err as Error).message}${code ? ` (${code})` : ''}`, { cause: err });
        }
        this.stats.retries++;
      }
    }
  }
}

function isDecision(x: unknown): x is Decision {
  return typeof x === 'object' && x !== null && typeof (x as Decision).allowed === 'boolean' && typeof (x as Decision).retryAfterMs === 'number';
}

/** The node's error body as a ClientError with its code. */
function errorOf(r: HttpAnswer): ClientError {
  const b = r.body as { error?: unknown; message?: unknown; path?: unknown } | undefined;
  if (b !== undefined && typeof b.error === 'string' && typeof b.message === 'string') {
    return new ClientError(b.error as ErrorCode, b.message, { status: r.status, path: typeof b.path === 'string' ? b.path : undefined });
  }
  return new ClientError('LIMITER_BAD_RESPONSE', `the limiter answered ${r.status} without an error body`, { status: r.status });
}
