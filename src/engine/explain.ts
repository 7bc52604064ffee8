/**
 * Explain: which rule a request gets, at which level of the hierarchy, and where each of its
 * effective settings came from (the rule itself or the ancestor it inherited them from).
 */
import type { CompiledRule } from './compile.ts';
import { INHERITED_FIELDS, type InheritedField } from './hierarchy.ts';
import { tierOf, tierSourceOf } from './matcher.ts';
import type { Algorithm, RuleLevel, TiersSpec } from './types.ts';

export interface Explanation {
  key: string;
  metadata: Readonly<Record<string, string>>;
  /** The request's tier and what named it (null: the document has no tiers, or none applies). */
  tier: { name: string; from: 'keys' | 'metadata' | 'default' } | null;
  /** The rule that decides, or null (no rule matches: allowed, counted nowhere). */
  ruleId: string | null;
  level: RuleLevel | null;
  /** The deciding rule and its ancestors, nearest first. */
  chain: { id: string; level: RuleLevel; key: string; tier?: string }[];
  /** The effective limits, with the rule whose `limits` they are. */
  limits: { policy: string; limit: number; window: string; algorithm: Algorithm; burst?: number; from: string }[];
  /** Every other effective setting, with the rule that wrote it. */
  settings: Partial<Record<Exclude<InheritedField, 'limits'>, { value: unknown; from: string }>>;
}

export function explain(
  rule: CompiledRule | undefined,
  byId: ReadonlyMap<string, CompiledRule>,
  tiers: TiersSpec | undefined,
  key: string,
  metadata: Readonly<Record<string, string>> | undefined,
): Explanation {
  const tierName = tierOf(tiers, key, metadata);
  const tierFrom = tierSourceOf(tiers, key, metadata);
  const out: Explanation = {
    key,
    metadata: metadata ?? {},
    tier: tierName === undefined || tierFrom === null ? null : { name: tierName, from: tierFrom },
    ruleId: rule?.id ?? null,
    level: rule?.level ?? null,
    chain: [],
    limits: [],
    settings: {},
  };
  if (rule === undefined) return out;
  const spec = rule.spec;
  for (let at: CompiledRule | undefined = rule; at !== undefined; at = at.spec.parent === undefined ? undefined : byId.get(at.spec.parent)) {
    const link: Explanation['chain'][number] = { id: at.id, level: at.level, key: at.spec.key };
    if (at.spec.tier !== undefined) link.tier = at.spec.tier;
    out.chain.push(link);
    if (out.chain.length > byId.size) break;
  }
  const from = (field: InheritedField): string => spec.inherited?.[field] ?? spec.id;
  out.limits = rule.limits.map((l) => {
    const e: Explanation['limits'][number] = { policy: l.policy.name, limit: l.spec.limit, window: l.spec.window, algorithm: l.spec.algorithm, from: from('limits') };
    if (l.spec.burst !== undefined) e.burst = l.spec.burst;
    return e;
  });
  const values: Record<Exclude<InheritedField, 'limits'>, unknown> = {
    key: spec.key,
    metadata: Object.keys(spec.metadata).length > 0 ? spec.metadata : undefined,
    tier: spec.tier,
    priority: spec.priority,
    maxKeys: spec.maxKeys,
    degraded: spec.degraded ?? 'share',
    nearLimitSharing: spec.nearLimitSharing ?? true,
    reserve: spec.reserve,
    bypass: spec.bypass,
    adaptive: spec.adaptive,
  };
  for (const field of INHERITED_FIELDS) {
    if (field === 'limits') continue;
    const value = values[field];
    if (value !== undefined) out.settings[field] = { value, from: field === 'degraded' && spec.degraded === undefined ? '(default)' : from(field) };
  }
  return out;
}
