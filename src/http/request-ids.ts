/**
 * Request ids: a check may carry a `requestId` (the client sets one and keeps it across its
 * retries). The node remembers the Decision it answered for each id for a short time and
 * answers a repeat of the same check (same id, key and cost) with it without counting again, so
 * a retried check never counts twice. Memory is bounded (oldest forgotten first); every id is
 * forgotten after `ttlMs`. Time is a parameter of every call.
 */
import { ExpiryQueue } from '../engine/fifo.ts';
import type { Decision } from '../engine/types.ts';

interface Entry {
  key: string;
  cost: number;
  decision: Decision;
  expiresAt: number;
}

export interface RecentRequestsOptions {
  /** How long an id is remembered (ms, default 10 000). */
  ttlMs?: number;
  /** Ids remembered at most (default 100 000). */
  maxEntries?: number;
}

export class RecentRequests {
  readonly ttlMs: number;
  private readonly maxEntries: number;
  /** In insertion order, which is expiry order (one ttl). */
  private readonly entries = new ExpiryQueue<Entry>();
  /** Repeats answered from memory. */
  replayed = 0;

  constructor(o: RecentRequestsOptions = {}) {
    this.ttlMs = o.ttlMs ?? 10_000;
    this.maxEntries = o.maxEntries ?? 100_000;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The Decision answered earlier for this id and the same check, or undefined. */
  get(id: string, key: string, cost: number, now: number): Decision | undefined {
    this.expire(now);
    const e = this.entries.get(id);
    if (e === undefined || e.key !== key || e.cost !== cost) return undefined;
    this.replayed++;
    return e.decision;
  }

  remember(id: string, key: string, cost: number, decision: Decision, now: number): void {
    this.entries.delete(id);
    if (this.entries.size >= this.maxEntries) this.entries.shift();
    this.entries.push(id, { key, cost, decision, expiresAt: now + this.ttlMs });
  }

  private expire(now: number): void {
    this.entries.expire(now);
  }
}
