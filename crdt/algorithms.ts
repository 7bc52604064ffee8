/**
 * Rate-limiting algorithms defined on the replicated slot-window state.
 *
 * Every algorithm reads the same thing: per slot, the total Σ over nodes of (p − n). They
 * differ only in slot geometry and in how the slots are read:
 *
 * - sliding-window (sliding window counter): S slots per window plus one; usage is the sum of
 *   the S newest slots plus the oldest slot weighted by the part of it still inside the window.
 * - fixed-window: one slot as wide as the window; usage is that slot; it resets at the boundary.
 * - token-bucket: capacity `burst`, refilled at `limit / window`. The bucket level is folded
 *   over the slots of the refill horizon (burst / rate), starting full: consumption older than
 *   the horizon cannot matter to a bucket that refills completely within it.
 *
 * Pure: `now` is a parameter.
 */
import type { SlotWindowStore } from './window.ts';
import type { ScopeGeometry } from './types.ts';

export type Algorithm = 'sliding-window' | 'fixed-window' | 'token-bucket';

export const ALGORITHMS: readonly Algorithm[] = ['sliding-window', 'fixed-window', 'token-bucket'];

export interface LimitParams {
  algorithm: Algorithm;
  /** Requests (cost units) per window; for token-bucket, the refill per window. */
  limit: number;
  windowMs: number;
  /** Token bucket capacity; defaults to `limit`. */
  burst?: number;
  /** Requested slots per window (≥ 1). */
  slotsPerWindow: number;
}

export interface Geometry extends ScopeGeometry {
  /** Slots per window actually used (may be lower than requested so that slots have integer width). */
  slots: number;
}

/** Slot geometry of a limit. Slot ids are floor(now / slotMs): aligned to the epoch on every node. */
export function geometryOf(p: LimitParams): Geometry {
  switch (p.algorithm) {
    case 'fixed-window':
      return { slotMs: p.windowMs, ringSlots: 1, slots: 1 };
    case 'sliding-window': {
      const slots = largestDivisorAtMost(p.windowMs, p.slotsPerWindow);
      return { slotMs: p.windowMs / slots, ringSlots: slots + 1, slots };
    }
    case 'token-bucket': {
      const horizon = Math.max(1, Math.ceil(((p.burst ?? p.limit) * p.windowMs) / p.limit));
      const slots = Math.max(1, Math.min(p.slotsPerWindow, horizon));
      return { slotMs: Math.ceil(horizon / slots), ringSlots: slots + 1, slots };
    }
  }
}

function largestDivisorAtMost(n: number, k: number): number {
  for (let d = Math.min(k, n); d > 1; d--) if (n % d === 0) return d;
  return 1;
}

/**
 * Reads one limit's usage from a store. One instance per scope; methods allocate nothing.
 * Callers advance the entry to the current slot before reading.
 */
export class LimitMath {
  readonly algorithm: Algorithm;
  /** Capacity compared with usage: `limit` for windows, `burst` for token buckets. */
  readonly capacity: number;
  readonly windowMs: number;
  readonly slotMs: number;
  readonly slots: number;
  /** Token refill per ms (token-bucket only). */
  readonly rate: number;
  /**
   * The most one node can hold net (p − n) in one slot: a node never admits beyond capacity,
   * and a token bucket refills at most `rate × slotMs` more within one slot. A replicated cell
   * above it cannot come from an honest node.
   */
  readonly maxSlotNet: number;

  constructor(p: LimitParams) {
    const g = geometryOf(p);
    // The constant itself, not the caller's string: a string parsed from a rules file is a
    // different object, and comparing it on every check is measurably slower.
    this.algorithm = ALGORITHMS.find((a) => a === p.algorithm) ?? p.algorithm;
    this.capacity = p.algorithm === 'token-bucket' ? (p.burst ?? p.limit) : p.limit;
    this.windowMs = p.windowMs;
    this.slotMs = g.slotMs;
    this.slots = g.slots;
    this.rate = p.limit / p.windowMs;
    this.maxSlotNet = p.algorithm === 'token-bucket' ? this.capacity + Math.ceil(this.rate * this.slotMs) : this.capacity;
  }

  /** Usage (cost units counted against capacity) of entry `e` at `now`. */
  usage(store: SlotWindowStore, e: number, now: number): number {
    const c = Math.floor(now / this.slotMs);
    switch (this.algorithm) {
      case 'fixed-window':
        return store.sumOf(e);
      case 'sliding-window': {
        const sum = store.sumOf(e);
        if (sum === 0) return 0;
        if (store.headOf(e) !== c) return sum; // head ahead of our clock (remote skew): count everything held
        const frac = (now - c * this.slotMs) / this.slotMs;
        return sum - frac * store.total(e, c - this.slots);
      }
      case 'token-bucket':
        return this.capacity - this.level(store, e, now);
    }
  }

  /** Token bucket level at `now` (may be negative after remote overshoot). */
  level(store: SlotWindowStore, e: number, now: number): number {
    const B = this.capacity;
    if (store.sumOf(e) === 0) return B;
    const c = Math.floor(now / this.slotMs);
    let level = B;
    for (let s = c - this.slots; s <= c; s++) {
      const dt = s === c ? now - c * this.slotMs : this.slotMs;
      level += this.rate * dt;
      if (level > B) level = B;
      level -= store.total(e, s);
    }
    return level;
  }

  /** Milliseconds until all usage currently held has expired (window) or the bucket is full. */
  resetMs(store: SlotWindowStore, e: number, now: number): number {
    const c = Math.floor(now / this.slotMs);
    switch (this.algorithm) {
      case 'fixed-window':
        return (c + 1) * this.slotMs - now;
      case 'sliding-window': {
        if (store.sumOf(e) <= 0) return 0;
        const head = store.headOf(e);
        for (let s = head; s >= head - this.slots; s--) {
          if (store.total(e, s) > 0) return Math.max(0, (s + this.slots + 1) * this.slotMs - now);
        }
        return 0;
      }
      case 'token-bucket': {
        const missing = this.capacity - this.level(store, e, now);
        return missing <= 0 ? 0 : Math.ceil(missing / this.rate);
      }
    }
  }

  /**
   * Milliseconds until a request of `cost` could be admitted if nothing else were counted.
   * 0 if it fits now; −1 if it can never fit (cost above capacity).
   */
  retryAfterMs(store: SlotWindowStore, e: number, now: number, cost: number): number {
    const C = this.capacity;
    if (cost > C) return -1;
    const c = Math.floor(now / this.slotMs);
    switch (this.algorithm) {
      case 'fixed-window':
        return this.usage(store, e, now) + cost <= C ? 0 : (c + 1) * this.slotMs - now;
      case 'token-bucket': {
        // The admission test exactly as the engine evaluates it (usage + cost ≤ capacity), so
        // rounding cannot make the two disagree.
        const fits = (t: number) => C - this.level(store, e, t) + cost <= C;
        if (fits(now)) return 0;
        // Project with the same fold that admission uses. Refill after consumption is counted
        // from the end of the slot that holds it, so a straight line from the current level can
        // be too early (it would send clients back while the bucket is still empty). With nothing
        // new counted the level never decreases, and once every counted slot has left the fold
        // the bucket is full (≥ cost): take the straight-line guess if it is the first fitting
        // millisecond, else search between now and that point.
        const guess = Math.max(1, Math.ceil((cost - this.level(store, e, now)) / this.rate));
        if (fits(now + guess) && (guess === 1 || !fits(now + guess - 1))) return guess;
        let lo = 0; // does not fit at now + lo
        let hi = Math.max(1, Math.ceil((Math.max(store.headOf(e), c) + this.slots + 1) * this.slotMs - now)); // fits at now + hi
        while (hi - lo > 1) {
          const mid = lo + Math.floor((hi - lo) / 2);
          if (fits(now + mid)) hi = mid;
          else lo = mid;
        }
        return hi;
      }
      case 'sliding-window': {
        const S = this.slots;
        const room = C - cost;
        // Walk forward slot by slot. Within slot k the oldest live slot (k − S) fades linearly
        // while the S newer slots count fully; no new counts arrive in this projection.
        let full = 0; // Σ of slots k−S+1..k
        for (let s = c - S + 1; s <= c; s++) full += store.total(e, s);
        for (let k = c; k <= c + S + 1; k++) {
          const old = store.total(e, k - S);
          const start = k * this.slotMs;
          const from = k === c ? now : start;
          const fracFrom = (from - start) / this.slotMs;
          if (full + (1 - fracFrom) * old <= room) return Math.max(0, Math.ceil(from - now));
          if (full <= room) {
            // Fits part-way through slot k: full + (1 − f)·old = room.
            const f = 1 - (room - full) / old;
            return Math.max(0, Math.ceil(start + f * this.slotMs - now));
          }
          // Next slot: slot k−S+1 becomes the fading one, a new empty slot enters.
          full -= store.total(e, k - S + 1);
        }
        return Math.max(0, Math.ceil((c + S + 1) * this.slotMs - now));
      }
    }
  }
}
