/**
 * What a rule does while this node cannot see every peer's counts (a peer staler than the
 * threshold, or NATS unreachable): its degradation mode (CONSISTENCY.md §11).
 *
 * - `share` (default): the node admits, per key, at most its share of the limit over the
 *   window: its own net count (what it admitted, less refunds) stays within
 *   `floor(share × limit)`. Shares follow each node's observed demand with a floor and sum to
 *   at most 1 over all nodes, so all sides of a partition together stay within the limit.
 * - `open`: admit and count locally, as when healthy (each side may admit a whole limit).
 * - `closed`: deny every check of the rule until the peers are back.
 *
 * The replication room decides when the node is degraded and with which shares
 * (src/replication/modes.ts); the engine only applies them. Pure: time is a parameter.
 */
import type { LimitMath, ScopeId, SlotWindowStore } from '../../crdt/index.ts';
import type { Decision, DegradedMode, RuleLevel } from './types.ts';

export interface Degradation {
  /** When the node became degraded (ms since epoch). */
  since: number;
  /** Why, for status and logs (e.g. "peers eu-west-1 silent for 1.2 s"). */
  reason: string;
  /** This node's share of each limit (0..1), by scope. */
  shares: ReadonlyMap<ScopeId, number>;
  /** Share of a limit with no entry in `shares` (1 / the number of nodes known). */
  defaultShare: number;
}

/** A limit as the degradation check needs it. */
export interface DegradableLimit {
  readonly scope: ScopeId;
  readonly mode: DegradedMode;
  readonly math: LimitMath;
  readonly store: SlotWindowStore;
  readonly name: string;
  readonly spec: { readonly windowMs: number };
  readonly level: RuleLevel;
}

/** This node's quota of `lim` while degraded: floor(share × capacity). */
export function shareQuota(d: Degradation, lim: DegradableLimit): number {
  return Math.floor((d.shares.get(lim.scope) ?? d.defaultShare) * lim.math.capacity);
}

/**
 * The denial a degraded node answers for `cost` more on entry `e` (−1: no entry yet) of `lim`,
 * or null when the mode admits it (the normal check still applies).
 */
export function degradedDenial(d: Degradation, ruleId: string, lim: DegradableLimit, e: number, cost: number, usage: number): Decision | null {
  if (lim.mode === 'open') return null;
  const cap = lim.math.capacity;
  if (lim.mode === 'closed') {
    return { allowed: false, limit: cap, remaining: 0, resetMs: 0, retryAfterMs: 1000, ruleId, policy: lim.name, level: lim.level, code: 'DEGRADED_CLOSED' };
  }
  const own = e < 0 ? 0 : lim.store.ownSumOf(e);
  const quota = shareQuota(d, lim);
  if (own + cost <= quota) return null;
  return {
    allowed: false,
    limit: cap,
    remaining: Math.max(0, Math.floor(Math.min(cap - usage, quota - own))),
    resetMs: 0,
    // Own counts leave the window slot by slot.
    retryAfterMs: Math.max(1, Math.ceil(lim.math.slotMs)),
    ruleId,
    policy: lim.name,
    level: lim.level,
    code: 'DEGRADED_SHARE',
  };
}
