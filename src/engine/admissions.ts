/**
 * Admission ids: every allowed check that counted something gets an id, remembered for the
 * window of its rule, so that a refund can name exactly the admission it gives back, once.
 *
 * An id reads `<nodeId>.<expiry, base 36 ms>.<slot, base 36>-<token>`; the token is 64 unguessable
 * random bits, two 32-bit words written in base 36 (injected: the engine reads no randomness
 * itself). Tokens are kept as numbers, so an admission keeps no string but its key. The node id and expiry in the id only pick
 * the refusal code (another node's id, an expired id); what a refund gives back comes from the
 * remembered entry alone, so a forged id can at most be refused.
 *
 * Memory is bounded: at most `maxEntries` ids are remembered (the oldest is forgotten first),
 * and every id is forgotten when its window has passed. Entries are kept in one FIFO map per
 * time-to-live, so the head of each queue is always the next to expire and forgetting is O(1).
 * Time is a parameter of every call.
 */
import { LimiterError, type ErrorCode } from './errors.ts';
import type { AdmissionRecord, CheckRequest, Decision, Limiter } from './types.ts';

/** What an admission counted: enough to give exactly it back. */
export type Admission = AdmissionRecord;

export interface AdmissionLedgerOptions {
  nodeId: string;
  /** Ids remembered at most (default 200 000). */
  maxEntries?: number;
  /** Uniformly random unsigned 32-bit words from a cryptographic source (src/random-words.ts). */
  random: () => number;
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

/** Longest id accepted (node id ≤ 64, expiry ≤ 11, slot and token ≤ 24, separators). */
export const MAX_ADMISSION_ID_LENGTH = 160;

/** `<slot>-<word>-<word>`, each base 36 (a word is below 2^32: at most 7 digits). */
const TOKEN = /^([0-9a-z]{1,7})-([0-9a-z]{1,7})-([0-9a-z]{1,7})$/;

/** Slots of one time-to-live in issue order (so in expiry order), consumed from `head`. */
interface Queue {
  slots: number[];
  head: number;
}

/**
 * Entries live in fixed slots (parallel arrays, no per-admission object and no Map: the
 * ledger is on every allowed check's path). An id carries its slot and a random token, so a
 * lookup is one array read and a token comparison; a freed slot's token is cleared, so an old
 * id naming a reused slot does not match. Expiry runs only once the soonest entry is due.
 */
export class AdmissionLedger {
  readonly nodeId: string;
  private readonly maxEntries: number;
  private readonly random: () => number;
  /** Per slot the token's two words; a free slot holds none (`live` 0). */
  private readonly tokens: Uint32Array;
  private readonly live: Uint8Array;
  private readonly keys: string[];
  private readonly ruleIds: string[];
  private readonly at: Float64Array;
  private readonly cost: Float64Array;
  private readonly expiresAt: Float64Array;
  private readonly refunded: Uint8Array;
  /** Free slots (a stack). */
  private readonly free: Int32Array;
  private freeTop: number;
  /** Per time-to-live, slots in issue order. */
  private readonly byTtl = new Map<number, Queue>();
  /** When the soonest remembered admission expires (Infinity: none held). */
  private nextExpiry = Infinity;
  /** Ids forgotten before their window passed because the ledger was full. */
  forgottenEarly = 0;

  constructor(opts: AdmissionLedgerOptions) {
    this.nodeId = opts.nodeId;
    this.maxEntries = opts.maxEntries ?? 200_000;
    this.random = opts.random;
    const n = this.maxEntries;
    this.tokens = new Uint32Array(2 * n);
    this.live = new Uint8Array(n);
    this.keys = new Array<string>(n).fill('');
    this.ruleIds = new Array<string>(n).fill('');
    this.at = new Float64Array(n);
    this.cost = new Float64Array(n);
    this.expiresAt = new Float64Array(n);
    this.refunded = new Uint8Array(n);
    this.free = new Int32Array(n);
    for (let i = 0; i < n; i++) this.free[i] = n - 1 - i;
    this.freeTop = n;
  }

  get size(): number {
    return this.maxEntries - this.freeTop;
  }

  /** Remember an admission for `ttlMs` from `now` and return its id. */
  issue(a: Admission, ttlMs: number, now: number): string {
    if (now >= this.nextExpiry) this.expire(now);
    if (this.freeTop === 0) this.forgetSoonest();
    const slot = this.free[--this.freeTop]!;
    const expiresAt = now + ttlMs;
    const hi = this.random() >>> 0;
    const lo = this.random() >>> 0;
    this.tokens[2 * slot] = hi;
    this.tokens[2 * slot + 1] = lo;
    this.live[slot] = 1;
    this.keys[slot] = a.key;
    this.ruleIds[slot] = a.ruleId;
    this.at[slot] = a.at;
    this.cost[slot] = a.cost;
    this.expiresAt[slot] = expiresAt;
    this.refunded[slot] = 0;
    let q = this.byTtl.get(ttlMs);
    if (q === undefined) this.byTtl.set(ttlMs, (q = { slots: [], head: 0 }));
    q.slots.push(slot);
    if (expiresAt < this.nextExpiry) this.nextExpiry = expiresAt;
    return `${this.nodeId}.${expiresAt.toString(36)}.${slot.toString(36)}-${hi.toString(36)}-${lo.toString(36)}`;
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
    if (parts.length !== 3 || parts[0] === '' || parts[2] === '' || !/^[0-9a-z]{1,11}$/.test(parts[1]!)) return refusal('ADMISSION_ID_INVALID');
    if (parts[0] !== this.nodeId) return refusal('ADMISSION_OTHER_NODE');
    if (parseInt(parts[1]!, 36) <= now) return refusal('ADMISSION_EXPIRED');
    if (now >= this.nextExpiry) this.expire(now);
    const words = TOKEN.exec(parts[2]!);
    if (words === null) return refusal('ADMISSION_UNKNOWN');
    const slot = parseInt(words[1]!, 36);
    if (!(slot < this.maxEntries) || this.live[slot] !== 1 || this.tokens[2 * slot] !== parseInt(words[2]!, 36) || this.tokens[2 * slot + 1] !== parseInt(words[3]!, 36)) return refusal('ADMISSION_UNKNOWN');
    if (this.refunded[slot] === 1) return refusal('ADMISSION_ALREADY_REFUNDED');
    this.refunded[slot] = 1;
    return { ruleId: this.ruleIds[slot]!, key: this.keys[slot]!, at: this.at[slot]!, cost: this.cost[slot]! };
  }

  /** Forget every admission whose window has passed. */
  expire(now: number): void {
    let next = Infinity;
    for (const [ttl, q] of this.byTtl) {
      while (q.head < q.slots.length && this.expiresAt[q.slots[q.head]!]! <= now) this.release(q.slots[q.head++]!);
      if (q.head === q.slots.length) this.byTtl.delete(ttl);
      else {
        compact(q);
        const at = this.expiresAt[q.slots[q.head]!]!;
        if (at < next) next = at;
      }
    }
    this.nextExpiry = next;
  }

  /** The ledger is full: forget the id that would expire first. */
  private forgetSoonest(): void {
    let best: Queue | undefined;
    let bestAt = Infinity;
    for (const q of this.byTtl.values()) {
      if (q.head < q.slots.length && this.expiresAt[q.slots[q.head]!]! < bestAt) {
        bestAt = this.expiresAt[q.slots[q.head]!]!;
        best = q;
      }
    }
    if (best === undefined) return;
    this.release(best.slots[best.head++]!);
    compact(best);
    this.forgottenEarly++;
    // The forgotten entry may have been the soonest: find the next one at the next issue.
    this.nextExpiry = bestAt;
  }

  private release(slot: number): void {
    this.live[slot] = 0;
    this.keys[slot] = '';
    this.free[this.freeTop++] = slot;
  }
}

/** Drops the consumed front of a queue once it is most of it (amortised O(1)). */
function compact(q: Queue): void {
  if (q.head > 1024 && q.head * 2 > q.slots.length) {
    q.slots = q.slots.slice(q.head);
    q.head = 0;
  }
}

/**
 * Whether a decision counted something: allowed, under a rule, not let through by a priority
 * bypass. What an admission id names, and what a durability barrier waits for.
 */
export function isCounted(d: Decision): d is Decision & { ruleId: string } {
  return d.allowed && d.ruleId !== null && d.bypassed !== true;
}

/** Names an allowed check that counted, for a refund (the HTTP routes and the embedded limiter). */
export function admit(d: Decision, req: CheckRequest, at: number, limiter: Limiter, ledger: AdmissionLedger): Decision {
  if (isCounted(d)) {
    d.admissionId = ledger.issue({ ruleId: d.ruleId, key: req.key, at, cost: req.cost ?? 1 }, limiter.admissionTtlMs(d.ruleId), at);
  }
  return d;
}
