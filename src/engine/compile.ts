/**
 * Rule compilation: a validated RuleSpec becomes a CompiledRule (its key pattern, metadata
 * constraints, rank and one CompiledLimit per limit, each with its counter scope and store).
 * Scopes that already exist keep their store, so counts survive a rules change.
 */
import { LimitMath, SlotWindowStore, geometryOf, type NodeTable, type ScopeId } from '../../crdt/index.ts';
import { formatDuration } from './duration.ts';
import { scaled } from './adaptive.ts';
import { PRIORITIES, type AdaptiveSpec, type DegradedMode, type KeyMatch, type LimitSpec, type PolicyInfo, type RuleLevel, type RuleSpec } from './types.ts';

/** One limit of a compiled rule: its spec, its counter scope and the store holding its keys. */
export interface CompiledLimit {
  readonly ruleId: string;
  readonly spec: LimitSpec;
  readonly scope: ScopeId;
  readonly store: SlotWindowStore;
  /** The limit's arithmetic at its capacity in force (an adaptive rule replaces it as its factor moves). */
  math: LimitMath;
  /** The arithmetic at the largest capacity the rule can have: what a replicated cell is checked against. */
  readonly bound: LimitMath;
  policy: PolicyInfo;
  /** The policy's name (kept here too: a decision reads it without loading the policy). */
  readonly name: string;
  /** The rule's degradation mode (RuleSpec.degraded, default `share`). */
  readonly mode: DegradedMode;
  /** The limit shares its headroom near the limit while healthy (./sharing.ts). */
  readonly sharing: boolean;
  /** The rule's level in the hierarchy (reported in its Decisions). */
  readonly level: RuleLevel;
}

export interface CompiledRule {
  readonly id: string;
  /** The rule as validated (inheritance resolved). */
  readonly spec: RuleSpec;
  readonly match: KeyMatch;
  readonly meta: readonly (readonly [string, readonly string[]])[];
  /** The tier a request must be in (null: any tier). */
  readonly tier: string | null;
  readonly priority: number;
  readonly level: RuleLevel;
  readonly limits: readonly CompiledLimit[];
  /** The rule's only limit when it has one (the common case: a decision then loads no array), else null. */
  readonly single: CompiledLimit | null;
  /** The limits' policies (a new array whenever an adaptive rule's factor moves). */
  policies: readonly PolicyInfo[];
  /** Adaptive limits: the spec and the factor in force (src/engine/adaptive.ts), or null. */
  readonly adaptive: { readonly spec: AdaptiveSpec; factor: number } | null;
  /** Position in the rules file (ties in priority and level keep file order). */
  readonly order: number;
  /**
   * Matching order as one number, lower first: highest priority, then the most specific level
   * (override, tier, default), then file order. Comparable across index buckets without a sort.
   */
  readonly rank: number;
  /** Most live keys per limit of this rule (RuleSpec.maxKeys); Infinity when uncapped. */
  readonly maxKeys: number;
  /** Longest window of the rule's limits (ms): how long an admission stays refundable. */
  readonly longestWindowMs: number;
  /**
   * Priority handling, or null when the rule has none (the fast path): requests below
   * `reserveFrom` (a PRIORITIES index) may use only `1 − reserveShare` of each limit; priorities
   * in `bypass` (by index) are let through uncounted.
   */
  readonly priorities: { readonly reserveShare: number; readonly reserveFrom: number; readonly bypass: readonly boolean[] } | null;
}

const LEVEL_RANK: Readonly<Record<RuleLevel, number>> = { override: 0, tier: 1, default: 2 };
/** Orders fit in 2^24 (the schema allows 10 000 rules); priorities are within ±10^6. */
const ORDER_SPAN = 2 ** 24;

export function rankOf(priority: number, level: RuleLevel, order: number): number {
  return ((1_000_000 - priority) * 3 + LEVEL_RANK[level]) * ORDER_SPAN + order;
}

/** Scope id of a limit: rule id + algorithm + geometry, so only compatible configurations share counters. */
export function scopeIdOf(ruleId: string, spec: LimitSpec, slotsPerWindow: number): ScopeId {
  const g = geometryOf({ ...spec, slotsPerWindow: spec.slotsPerWindow ?? slotsPerWindow });
  const alg = spec.algorithm === 'sliding-window' ? 'sw' : spec.algorithm === 'fixed-window' ? 'fw' : 'tb';
  return `${ruleId}|${alg}|${spec.windowMs}|${g.slotMs}`;
}

type LimitParams = LimitSpec & { slotsPerWindow: number };

/** A limit's parameters with its limit (and burst) scaled by `factor`. */
export function scaledParams(params: LimitParams, factor: number): LimitParams {
  const out: LimitParams = { ...params, limit: scaled(params.limit, factor) };
  if (params.burst !== undefined) out.burst = scaled(params.burst, factor);
  return out;
}

/**
 * Put an adaptive rule's factor in force: each limit gets the arithmetic and policy of its
 * scaled value (its counts are kept: the same store), and the rule a new policies array.
 */
export function rescale(rule: CompiledRule, factor: number, slotsPerWindow: number): void {
  for (const lim of rule.limits) {
    const params = { ...lim.spec, slotsPerWindow: lim.spec.slotsPerWindow ?? slotsPerWindow };
    lim.math = new LimitMath(scaledParams(params, factor));
    lim.policy = Object.freeze({ name: lim.policy.name, limit: lim.math.capacity, windowSeconds: lim.spec.windowMs / 1000 });
  }
  rule.policies = rule.limits.map((l) => l.policy);
  rule.adaptive!.factor = factor;
}

/**
 * Room for keys a new store starts with (it doubles as keys come): an exact-key rule only ever
 * holds its one key, and with many small stores (thousands of per-key overrides and prefixes)
 * unused room is what makes each check miss the cache.
 */
function initialKeysOf(key: string): number {
  return key === '*' ? 64 : key.endsWith('*') ? 8 : 1;
}

export function keyMatchOf(key: string): KeyMatch {
  return key === '*' ? { kind: 'any' } : key.endsWith('*') ? { kind: 'prefix', value: key.slice(0, -1) } : { kind: 'exact', value: key };
}

/**
 * Compile one rule. `existing` finds a scope's compiled limit in the rules in force (its store
 * is kept); `next` collects the scopes of the rules being compiled.
 */
export function compileRule(
  r: RuleSpec,
  order: number,
  slotsPerWindow: number,
  nodes: NodeTable,
  existing: (scope: ScopeId) => CompiledLimit | undefined,
  next: Map<ScopeId, CompiledLimit>,
): CompiledRule {
  const level = r.level ?? 'default';
  const limits = r.limits.map((spec, i) => {
    const scope = scopeIdOf(r.id, spec, slotsPerWindow);
    const prev = existing(scope) ?? next.get(scope);
    const params = { ...spec, slotsPerWindow: spec.slotsPerWindow ?? slotsPerWindow };
    const math = new LimitMath(params);
    const top = r.adaptive === undefined ? 1 : Math.max(1, r.adaptive.ceiling);
    const bound = top === 1 ? math : new LimitMath(scaledParams(params, top));
    const store = prev?.store ?? new SlotWindowStore(scope, geometryOf(params), nodes, initialKeysOf(r.key));
    const name = r.limits.length === 1 ? r.id : `${r.id}/${formatDuration(spec.windowMs)}${i > 0 && r.limits.slice(0, i).some((o) => o.windowMs === spec.windowMs) ? `-${i}` : ''}`;
    const policy: PolicyInfo = Object.freeze({ name, limit: math.capacity, windowSeconds: spec.windowMs / 1000 });
    const cl: CompiledLimit = { ruleId: r.id, spec, scope, store, math, bound, policy, name, mode: r.degraded ?? 'share', sharing: r.nearLimitSharing !== false && spec.algorithm !== 'token-bucket', level };
    next.set(scope, cl);
    return cl;
  });
  return {
    id: r.id,
    spec: r,
    match: keyMatchOf(r.key),
    meta: Object.entries(r.metadata),
    tier: r.tier ?? null,
    priority: r.priority,
    level,
    limits,
    single: limits.length === 1 ? limits[0] : null,
    policies: limits.map((l) => l.policy),
    adaptive: r.adaptive === undefined ? null : { spec: r.adaptive, factor: 1 },
    order,
    rank: rankOf(r.priority, level, order),
    maxKeys: r.maxKeys ?? Infinity,
    priorities:
      r.reserve === undefined && r.bypass === undefined
        ? null
        : {
            reserveShare: r.reserve?.share ?? 0,
            reserveFrom: r.reserve === undefined ? 0 : PRIORITIES.indexOf(r.reserve.for),
            bypass: PRIORITIES.map((p) => r.bypass?.includes(p) === true),
          },
    longestWindowMs: Math.max(...r.limits.map((l) => l.windowMs)),
  };
}
