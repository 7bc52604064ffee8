/**
 * Admission ids: every allowed check that counted something gets an id, remembered for the
 * window of its rule, so that a refund can name exactly the admission it gives back, once.
 *
 * An id reads `<nodeId>.<expiry, base 36 ms>.<token>`; the token is an unguessable random string
 * (injected: the engine reads no randomness itself). The node id and expiry in the id only pick
 * the refusal code (another node's id, an expired id); what a refund gives back comes from the
 * remembered entry alone, so a forged id can at most be refused.
 *
 * Memory is bounded: at most `maxEntries` ids are remembered (the oldest is forgotten first),
 * and every id is forgotten when its window has passed. Entries are kept in one FIFO map per
 * time-to-live, so the head of each map is always the next to expire and forgetting is O(1).
 * Time is a parameter of every call.
 */
import { LimiterError, type ErrorCode } from './errors.ts';
import { ExpiryQueue } from './fifo.ts';
import type { AdmissionRecord, CheckRequest, Decision, Limiter } from './types.ts';

/** What an admission counted: enough to give exactly it back. */
export type Admission = AdmissionRecord;

interface Entry extends Admission {
  expiresAt: number;
  refunded: boolean;
}

export interface AdmissionLedgerOptions {
  nodeId: string;
  /** Ids remembered at most (default 200 000). */
  maxEntries?: number;
  /** An unguessable random token (e.g. crypto.randomUUID); must not contain ".". */
  token: () => string;
}

/** Why a refund by id was refused. */
export type AdmissionRefusal = Extract<
  ErrorCode,
  'ADMISSION_ID_INVALID' | 'ADMISSION_UNKNOWN' | 'ADMISSION_EXPIRED' | 'ADMISSION_ALREADY_REFUNDED' | 'ADMISSION_OTHER_NODE'
>;

const MESSAGES: Record<AdmissionRefusal, string> = {
  ADMISSION_ID_INVALID: 'admissionId is not an admission id this service issues',
  ADMISSION_UNKNOWN: 'no such admission on this node (never issued, or forgotten because too many were held)',
  ADMISSION_EXPIRED: "the admission's window has passed: there is nothing left to refund",
  ADMISSION_ALREADY_REFUNDED: 'this admission was already refunded',
  ADMISSION_OTHER_NODE: 'this admission was made on another node: refund it there',
};

/** Longest id accepted (node id ≤ 64, expiry ≤ 11, token ≤ 64, two dots). */
export const MAX_ADMISSION_ID_LENGTH = 160;

export class AdmissionLedger {
  readonly nodeId: string;
  private readonly maxEntries: number;
  private readonly token: () => string;
  /** Per time-to-live, ids in issue order (so in expiry order). */
  private readonly byTtl = new Map<number, ExpiryQueue<Entry>>();
  private count = 0;
  /** Ids forgotten before their window passed because the ledger was full. */
  forgottenEarly = 0;

  constructor(opts: AdmissionLedgerOptions) {
    this.nodeId = opts.nodeId;
    this.maxEntries = opts.maxEntries ?? 200_000;
    this.token = opts.token;
  }

  get size(): number {
    return this.count;
  }

  /** Remember an admission for `ttlMs` from `now` and return its id. */
  issue(a: Admission, ttlMs: number, now: number): string {
    this.expire(now);
    if (this.count >= this.maxEntries) this.forgetSoonest();
    const expiresAt = now + ttlMs;
    const id = `${this.nodeId}.${expiresAt.toString(36)}.${this.token()}`;
    let fifo = this.byTtl.get(ttlMs);
    if (fifo === undefined) this.byTtl.set(ttlMs, (fifo = new ExpiryQueue()));
    fifo.push(id, { ruleId: a.ruleId, key: a.key, at: a.at, cost: a.cost, expiresAt, refunded: false });
    this.count++;
    return id;
  }

  /**
   * Take an admission for a refund: it is marked refunded (a second take is refused) and kept
   * until its window passes. Throws a LimiterError with the refusal code.
   */
  take(id: string, now: number): Admission {
    const refusal = (code: AdmissionRefusal): never => {
      throw new LimiterError(code, MESSAGES[code], { details: { path: '/admissionId' } });
    };
    const parts = id.length <= MAX_ADMISSION_ID_LENGTH ? id.split('.') : [];
    if (parts.length !== 3 || parts[0] === '' || parts[2] === '' || !/^[0-9a-z]{1,11}$/.test(parts[1])) return refusal('ADMISSION_ID_INVALID');
    if (parts[0] !== this.nodeId) return refusal('ADMISSION_OTHER_NODE');
    if (parseInt(parts[1], 36) <= now) return refusal('ADMISSION_EXPIRED');
    this.expire(now);
    for (const fifo of this.byTtl.values()) {
      const e = fifo.get(id);
      if (e === undefined) continue;
      if (e.refunded) return refusal('ADMISSION_ALREADY_REFUNDED');
      e.refunded = true;
      return { ruleId: e.ruleId, key: e.key, at: e.at, cost: e.cost };
    }
    return refusal('ADMISSION_UNKNOWN');
  }

  /** Forget every admission whose window has passed. */
  expire(now: number): void {
    for (const [ttl, fifo] of this.byTtl) {
      this.count -= fifo.expire(now);
      if (fifo.size === 0) this.byTtl.delete(ttl);
    }
  }

  /** The ledger is full: forget the id that would expire first. */
  private forgetSoonest(): void {
    let best: ExpiryQueue<Entry> | undefined;
    let bestAt = Infinity;
    for (const fifo of this.byTtl.values()) {
      const e = fifo.peek();
      if (e !== undefined && e.expiresAt < bestAt) {
        bestAt = e.expiresAt;
        best = fifo;
      }
    }
    if (best === undefined) return;
    best.shift();
    this.count--;
    this.forgottenEarly++;
  }
}

/** Names an allowed check that counted, for a refund (the HTTP routes and the embedded limiter). */
export function admit(d: Decision, req: CheckRequest, at: number, limiter: Limiter, ledger: AdmissionLedger): Decision {
  if (d.allowed && d.ruleId !== null) {
    d.admissionId = ledger.issue({ ruleId: d.ruleId, key: req.key, at, cost: req.cost ?? 1 }, limiter.admissionTtlMs(d.ruleId), at);
  }
  return d;
}
