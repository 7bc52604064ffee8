/**
 * The PN-counter of one (scope, key, slot): per node a `p` (admitted cost) and an `n`
 * (refunded cost). Its value is Σ over nodes of (p − n). A node only ever raises its own
 * entries; merge takes the pointwise maximum per node and field, which makes merge
 * commutative, associative and idempotent, and every state a lower bound of any merge.
 *
 * This is the reference form of a cell. SlotWindowStore (window.ts) keeps the same cells in a
 * compact layout for many keys and slots at once and follows exactly these rules.
 */
import type { NodeId } from './types.ts';

export interface PN {
  readonly p: number;
  readonly n: number;
}

export type PNCounter = ReadonlyMap<NodeId, PN>;

export const EMPTY_COUNTER: PNCounter = new Map();

/** Pointwise maximum per node and field. */
export function mergeCounters(a: PNCounter, b: PNCounter): PNCounter {
  const out = new Map(a);
  for (const [node, vb] of b) {
    const va = out.get(node);
    out.set(node, va === undefined ? vb : { p: Math.max(va.p, vb.p), n: Math.max(va.n, vb.n) });
  }
  return out;
}

/** Σ over nodes of (p − n). */
export function counterValue(c: PNCounter): number {
  let v = 0;
  for (const { p, n } of c.values()) v += p - n;
  return v;
}

/** Raise `node`'s p by `amount` (admission). */
export function increment(c: PNCounter, node: NodeId, amount: number): PNCounter {
  const cur = c.get(node) ?? { p: 0, n: 0 };
  return new Map(c).set(node, { p: cur.p + amount, n: cur.n });
}

/** Raise `node`'s n by `amount` (refund). */
export function decrement(c: PNCounter, node: NodeId, amount: number): PNCounter {
  const cur = c.get(node) ?? { p: 0, n: 0 };
  return new Map(c).set(node, { p: cur.p, n: cur.n + amount });
}

/** a ≤ b in the merge order: every field of a is ≤ the same field of b. */
export function counterLeq(a: PNCounter, b: PNCounter): boolean {
  for (const [node, va] of a) {
    const vb = b.get(node);
    if (vb === undefined) {
      if (va.p !== 0 || va.n !== 0) return false;
    } else if (va.p > vb.p || va.n > vb.n) return false;
  }
  return true;
}

export function countersEqual(a: PNCounter, b: PNCounter): boolean {
  return counterLeq(a, b) && counterLeq(b, a);
}
