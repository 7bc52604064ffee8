/**
 * What the client answers without the limiter: the denial cache (a denied check is answered
 * locally until its Retry-After) and the fallback when the limiter is unreachable or slow
 * (fail open, fail closed, or a local limit decided by the engine itself on in-memory counts).
 */
import { createEngine, type Engine } from '../engine/engine.ts';
import { ExpiryQueue } from '../engine/fifo.ts';
import { validateRules } from '../engine/rules.ts';
import type { CheckRequest, Decision } from '../engine/types.ts';

/** Where an answer came from: the limiter, the denial cache, or the fallback while the limiter was unavailable. */
export type DecisionSource = 'limiter' | 'cache' | 'fallback';

export interface ClientDecision extends Decision {
  source: DecisionSource;
  /** On a fallback answer: why the limiter did not answer. */
  unavailable?: 'LIMITER_UNREACHABLE' | 'LIMITER_TIMEOUT';
}

/** The identity of a check for the denial cache: its key and metadata. */
export function checkIdentity(req: CheckRequest): string {
  const md = req.metadata;
  if (md === undefined) return req.key;
  let s = req.key;
  for (const name of Object.keys(md).sort()) s += `\u0000${name}\u0000${md[name]}`;
  return s;
}

interface Denial {
  /** When the entry may go (its Retry-After). */
  expiresAt: number;
  until: number;
  cost: number;
  d: Decision;
  at: number;
}

/** Denied checks remembered until their Retry-After (bounded; the oldest forgotten first). */
export class DenialCache {
  private readonly entries = new ExpiryQueue<Denial>();
  constructor(private readonly maxEntries = 10_000) {}

  get size(): number {
    return this.entries.size;
  }

  note(id: string, req: CheckRequest, d: Decision, now: number): void {
    if (d.allowed) {
      this.entries.delete(id);
      return;
    }
    // Only denials about usage, with a time to wait.
    if (d.code !== undefined || d.retryAfterMs <= 0) return;
    if (this.entries.size >= this.maxEntries && this.entries.get(id) === undefined) this.entries.shift();
    const until = now + d.retryAfterMs;
    this.entries.push(id, { expiresAt: until, until, cost: req.cost ?? 1, d, at: now });
  }

  /** A local denial for a check that would certainly be denied now (same key, at least the same cost, before its Retry-After). */
  answer(id: string, req: CheckRequest, now: number): ClientDecision | undefined {
    const e = this.entries.get(id);
    if (e === undefined) return undefined;
    if (now >= e.until) {
      this.entries.delete(id);
      return undefined;
    }
    if ((req.cost ?? 1) < e.cost) return undefined;
    return {
      allowed: false,
      limit: e.d.limit,
      remaining: 0,
      resetMs: Math.max(0, e.d.resetMs - (now - e.at)),
      retryAfterMs: e.until - now,
      ruleId: e.d.ruleId,
      policy: e.d.policy,
      source: 'cache',
    };
  }
}

/** A local limit for every key while the limiter is unavailable: `limit` per `window` (e.g. "1s"). */
export interface FallbackLimit {
  limit: number;
  window: string;
}

export type OnUnavailable = 'error' | 'failOpen' | 'failClosed' | FallbackLimit;

/** Answers checks while the limiter is unavailable, as the client was told to. */
export class Fallback {
  private readonly engine: Engine | undefined;
  private calls = 0;

  constructor(readonly mode: OnUnavailable) {
    if (typeof mode === 'object') {
      this.engine = createEngine({
        nodeId: 'client-fallback',
        maxKeys: 100_000,
        rules: validateRules({ rules: [{ id: 'fallback', key: '*', limits: [{ limit: mode.limit, window: mode.window }] }] }, '<client onUnavailable>'),
      });
    }
  }

  /** The local answer, or undefined when the caller must get the error. */
  decide(req: CheckRequest, why: 'LIMITER_UNREACHABLE' | 'LIMITER_TIMEOUT', now: number): ClientDecision | undefined {
    const m = this.mode;
    if (m === 'error') return undefined;
    if (m === 'failOpen' || m === 'failClosed') {
      const allowed = m === 'failOpen';
      return { allowed, limit: 0, remaining: 0, resetMs: 0, retryAfterMs: allowed ? 0 : 1000, ruleId: null, policy: null, source: 'fallback', unavailable: why };
    }
    const engine = this.engine!;
    if (++this.calls % 1000 === 0) engine.sweep(now);
    const d = engine.decide({ key: req.key, cost: req.cost }, now);
    engine.drain();
    return { ...d, source: 'fallback', unavailable: why };
  }
}
