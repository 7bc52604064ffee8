/**
 * Public types of the engine: requests, decisions, rules. The engine decides; adapters
 * (HTTP, NATS, SQLite, metrics) sit around it.
 */
import type { SlotEntry } from '../../crdt/types.ts';

export type Algorithm = 'sliding-window' | 'fixed-window' | 'token-bucket';

/** How much a request matters, lowest first (default `normal`): rules may reserve capacity for, or be bypassed by, a priority. */
export const PRIORITIES = ['low', 'normal', 'high', 'critical'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** A check: may this request go ahead? `cost` defaults to 1, `priority` to `normal`. */
export interface CheckRequest {
  key: string;
  metadata?: Readonly<Record<string, string>>;
  cost?: number;
  priority?: Priority;
}

/** A refund: a previously admitted request did not happen (counted through the PN-counter's `n`). */
export interface RefundRequest {
  key: string;
  metadata?: Readonly<Record<string, string>>;
  cost: number;
}

/**
 * The answer to a check. "Limited" is a result, not an exception.
 * When several limits apply, the binding one (fewest remaining, or the longest retry when denied)
 * is reported.
 */
export interface Decision {
  allowed: boolean;
  /** Limit of the binding policy (requests per window, or bucket capacity). 0 when no rule matched. */
  limit: number;
  /** Cost units still available in the binding policy after this request. */
  remaining: number;
  /** Milliseconds until the binding policy's usage has fully reset. */
  resetMs: number;
  /** Milliseconds until a request of the same cost could be admitted (0 when allowed). */
  retryAfterMs: number;
  /** Id of the rule that applied, or null when no rule matched (the request is allowed). */
  ruleId: string | null;
  /** Name of the binding policy (`<ruleId>/<index>`), or null when no rule matched. */
  policy: string | null;
  /** Level in the rules hierarchy of the rule that decided (absent when no rule matched). */
  level?: RuleLevel;
  /**
   * Set on a denial that is not about usage: `RULE_KEY_CAP` (the rule holds its most keys);
   * `DEGRADED_SHARE` (peers unseen: this node used its share of the limit); `DEGRADED_CLOSED`
   * (peers unseen and the rule's mode is `closed`); `SHARE_WAIT` (the key is near its limit and
   * this node has used its share of the headroom: it waits for the peers' counts, src/engine/sharing.ts);
   * `PRIORITY_RESERVED` (only the rule's reserve is left, kept for higher priorities).
   */
  code?: 'RULE_KEY_CAP' | 'DEGRADED_SHARE' | 'DEGRADED_CLOSED' | 'SHARE_WAIT' | 'PRIORITY_RESERVED';
  /** Set (true) when the request's priority bypasses the rule: allowed, and counted nowhere. */
  bypassed?: boolean;
  /** Names this admission for a refund (set by the HTTP adapter on allowed checks that counted). */
  admissionId?: string;
}

/**
 * The answer to several checks decided together (one per dimension: per IP, per user, per
 * resource…): all must pass. Either every dimension was counted, or none was.
 */
export interface MultiDecision {
  allowed: boolean;
  /** Per dimension, in request order: its decision (when denied, what it would have been; nothing counted). */
  decisions: Decision[];
  /** The dimension that decides: the one that denied (the longest wait), else the most restrictive (least remaining). */
  binding: number;
}

export interface RefundResult {
  ruleId: string | null;
  /** Cost actually refunded (never more than was admitted in the live window). */
  refunded: number;
}

/** What an admin reset gave back: this node's own count of the key in its live windows. */
export interface ResetResult {
  ruleId: string | null;
  /** The largest amount given back over the rule's limits. */
  reset: number;
  /** Per limit (policy name): the amount given back. */
  limits: { policy: string; reset: number }[];
}

/** One limit of a rule, as written in the rules file (after validation and normalisation). */
export interface LimitSpec {
  limit: number;
  /** Window length in ms. */
  windowMs: number;
  /** The window as written (e.g. "1m"), for display. */
  window: string;
  algorithm: Algorithm;
  /** Token bucket capacity (defaults to `limit`). Only for token-bucket. */
  burst?: number;
  /** Slots per window (overrides the file default). */
  slotsPerWindow?: number;
}

export type KeyMatch =
  | { kind: 'any' }
  | { kind: 'exact'; value: string }
  | { kind: 'prefix'; value: string };

export interface RuleSpec {
  id: string;
  /** As written: "*" (any), "prefix*" or an exact key. */
  key: string;
  /** All constraints must match; a constraint is one allowed value or a list of allowed values. */
  metadata: Readonly<Record<string, readonly string[]>>;
  priority: number;
  limits: readonly LimitSpec[];
  description?: string;
  /**
   * Most live keys this rule holds on a node (each limit counted separately). At the cap, a
   * check of a key the rule does not hold yet is denied with `code: "RULE_KEY_CAP"`; keys it
   * holds keep working. Absent: only the node-wide --max-keys applies.
   */
  maxKeys?: number;
  /** What the rule does while peers cannot be seen (default `share`): src/engine/degradation.ts. */
  degraded?: DegradedMode;
  /**
   * Share the headroom near the limit while peers are healthy (default true; window algorithms
   * only): src/engine/sharing.ts. Off, each node admits up to the limit as it sees it.
   */
  nearLimitSharing?: boolean;
  /** The rule it refines (hierarchy): unset fields are inherited from it, already resolved here. */
  parent?: string;
  /** The tier a request must be in for this rule to apply (see RulesConfig.tiers). */
  tier?: string;
  /** Its level in the hierarchy: `default` (no parent), `tier` (has a tier), `override` (one exact key under a parent). */
  level?: RuleLevel;
  /** The last `share` of each limit is kept for requests of priority `for` or higher. */
  reserve?: { share: number; for: Priority };
  /** Priorities this rule lets through without limiting or counting them. */
  bypass?: readonly Priority[];
  /** Scale every limit between floor × and ceiling × its value from a load signal (src/engine/adaptive.ts). */
  adaptive?: AdaptiveSpec;
  /** Fields inherited through `parent`, each with the id of the rule that wrote it. */
  inherited?: Readonly<Partial<Record<'key' | 'metadata' | 'tier' | 'limits' | 'priority' | 'maxKeys' | 'degraded' | 'nearLimitSharing' | 'reserve' | 'bypass' | 'adaptive', string>>>;
}

/** A rule's adaptive limits: the factor follows the health of `signal` between `floor` and `ceiling`. */
export interface AdaptiveSpec {
  /** `event-loop-delay` (this node's), or a name posted to PUT /v1/signals/:name. */
  signal: string;
  /** Factor of every limit at health 0 (overloaded). */
  floor: number;
  /** Factor at health 1 (healthy). Default 1. */
  ceiling: number;
}

/** Where a rule sits in the hierarchy: global defaults → tiers → individual overrides. */
export type RuleLevel = 'default' | 'tier' | 'override';

/** How a request's tier is found: the key mapping first, then a metadata entry, then the default. */
export interface TiersSpec {
  names: readonly string[];
  /** Metadata entry naming the tier (e.g. "tier"). */
  metadata?: string;
  /** Exact keys mapped to a tier (wins over the metadata). */
  keys: Readonly<Record<string, string>>;
  /** The tier of a request neither the mapping nor the metadata names. */
  default?: string;
}

/** A rule's degradation mode: src/engine/degradation.ts. */
export type DegradedMode = 'share' | 'open' | 'closed';

export interface RulesConfig {
  version: 1;
  slotsPerWindow: number;
  rules: readonly RuleSpec[];
  /** Tiers (hierarchy); absent when the document declares none. */
  tiers?: TiersSpec;
}

/** A policy as advertised in the RateLimit-Policy header. */
export interface PolicyInfo {
  name: string;
  limit: number;
  windowSeconds: number;
}

/** Changed cells the adapters drain: own changes for replication, all changes for persistence. */
export type ChangeSet = SlotEntry[];

/** One admission, as remembered for a refund by id (src/engine/admissions.ts). */
export interface AdmissionRecord {
  ruleId: string;
  key: string;
  /** When it was counted (ms). */
  at: number;
  cost: number;
}

/** What the HTTP layer needs from the engine. Implemented by `Engine` (src/engine/engine.ts). */
export interface Limiter {
  /** This node's id: admission ids name it. */
  readonly nodeId: string;
  decide(req: CheckRequest, now: number): Decision;
  /** Several checks that must all pass: decided together, then all counted or none (optional for a Limiter). */
  decideAll?(reqs: readonly CheckRequest[], now: number): MultiDecision;
  /** Give back exactly one remembered admission (this node's own count, never more than it). */
  refundAdmission(a: AdmissionRecord, now: number): RefundResult;
  /** Give back this node's own count of a key in its live windows (admin reset). */
  resetOwn(req: { key: string; metadata?: Readonly<Record<string, string>> }, now: number): ResetResult;
  /** How long an admission under a rule stays refundable: its longest window (ms). */
  admissionTtlMs(ruleId: string): number;
  /** Policies of a rule, for the RateLimit-Policy header (empty for an unknown id or null). */
  policies(ruleId: string | null): readonly PolicyInfo[];
}
