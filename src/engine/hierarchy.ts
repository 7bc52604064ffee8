/**
 * The rules hierarchy: global defaults → tiers → individual overrides.
 *
 * A rule may name a `parent`: every field it does not set (key, metadata, tier, limits,
 * priority, maxKeys, degraded) comes from the parent, resolved up the chain; its metadata
 * constraints are the parent's plus its own. An override (one exact key) does not inherit the
 * tier: it applies to its key whatever the key's tier. A rule's level says where it sits: `override`
 * (a parent, and one exact key), `tier` (a tier, its own or inherited), else `default`.
 * Among rules of equal priority the more specific level wins (override, tier, default), so a
 * tier rule refines its parent for requests of that tier and an override refines it for one key.
 *
 * A request's tier comes from `tiers.keys` (exact keys), else the metadata entry named by
 * `tiers.metadata`, else `tiers.default`.
 *
 * Problems (all listed at once, with their JSON path): unknown parent, cycle, unknown tier,
 * a child key its parent's pattern does not cover, a rule without key or limits and no parent.
 */
import type { ConfigProblem } from './errors.ts';
import type { AdaptiveSpec, DegradedMode, LimitSpec, Priority, RuleLevel, RuleSpec, TiersSpec } from './types.ts';

/** A rule as written (validated field by field), before inheritance. */
export interface PartialRule {
  id: string;
  /** JSON path of the rule in the document, e.g. "/rules/3". */
  at: string;
  key?: string;
  parent?: string;
  tier?: string;
  metadata?: Record<string, readonly string[]>;
  priority?: number;
  limits?: LimitSpec[];
  description?: string;
  maxKeys?: number;
  degraded?: DegradedMode;
  nearLimitSharing?: boolean;
  reserve?: { share: number; for: Priority };
  bypass?: Priority[];
  adaptive?: AdaptiveSpec;
}

/** Most levels of parents a rule may have (defaults → tiers → overrides needs three). */
export const MAX_DEPTH = 32;

/** Fields a child inherits from its parent (RuleSpec.inherited names where each came from). */
export const INHERITED_FIELDS = ['key', 'metadata', 'tier', 'limits', 'priority', 'maxKeys', 'degraded', 'nearLimitSharing', 'reserve', 'bypass', 'adaptive'] as const;
export type InheritedField = (typeof INHERITED_FIELDS)[number];

/** The `tiers` section (already schema-checked when an object), with its tier names checked. */
export function tiersOf(raw: unknown, file: string, problems: ConfigProblem[]): TiersSpec | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const t = raw as { names?: unknown; metadata?: unknown; keys?: unknown; default?: unknown };
  if (!Array.isArray(t.names) || !t.names.every((n) => typeof n === 'string')) return undefined;
  const names = [...(t.names as string[])];
  const keys: Record<string, string> = Object.create(null) as Record<string, string>;
  if (typeof t.keys === 'object' && t.keys !== null) {
    for (const [k, v] of Object.entries(t.keys as Record<string, unknown>)) {
      if (typeof v !== 'string') continue;
      if (!names.includes(v)) problems.push(unknownTier(file, `/tiers/keys/${pointer(k)}`, v, names));
      keys[k] = v;
    }
  }
  const spec: TiersSpec = { names, keys };
  if (typeof t.metadata === 'string') spec.metadata = t.metadata;
  if (typeof t.default === 'string') {
    if (!names.includes(t.default)) problems.push(unknownTier(file, '/tiers/default', t.default, names));
    spec.default = t.default;
  }
  return spec;
}

/** Resolve inheritance; pushes every problem found. Rules stay in document order. */
export function resolveHierarchy(rules: readonly PartialRule[], tiers: TiersSpec | undefined, file: string, problems: ConfigProblem[]): RuleSpec[] {
  const steps = resolveHierarchySteps(rules, tiers, file, problems);
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
  }
}

/** Rules handled between two yields of resolveHierarchySteps. */
const SLICE = 250;

/** `resolveHierarchy` as steps: it yields after each slice of rules (validateRulesAsync lets the event loop run then). */
export function* resolveHierarchySteps(rules: readonly PartialRule[], tiers: TiersSpec | undefined, file: string, problems: ConfigProblem[]): Generator<void, RuleSpec[]> {
  const byId = new Map<string, PartialRule>();
  for (const r of rules) if (!byId.has(r.id)) byId.set(r.id, r);
  for (let ri = 0; ri < rules.length; ri++) {
    const r = rules[ri];
    if (ri % SLICE === SLICE - 1) yield;
    if (r.parent !== undefined && !byId.has(r.parent)) {
      problems.push({ code: 'RULE_UNKNOWN_PARENT', file, path: `${r.at}/parent`, message: `parent "${r.parent}" is not a rule id of this document` });
    }
    if (r.tier !== undefined && (tiers === undefined || !tiers.names.includes(r.tier))) {
      problems.push(unknownTier(file, `${r.at}/tier`, r.tier, tiers?.names ?? []));
    }
  }
  // Cycles: follow each chain; a chain that comes back to a rule on it is a cycle (reported once, at each rule's parent).
  const state = new Map<string, 'open' | 'done'>();
  const inCycle = new Set<string>();
  for (let ri = 0; ri < rules.length; ri++) {
    const r = rules[ri];
    if (ri % SLICE === SLICE - 1) yield;
    const path: PartialRule[] = [];
    let at: PartialRule | undefined = r;
    while (at !== undefined && state.get(at.id) === undefined) {
      state.set(at.id, 'open');
      path.push(at);
      at = at.parent === undefined ? undefined : byId.get(at.parent);
    }
    if (at !== undefined && state.get(at.id) === 'open') {
      const cycle = path.slice(path.indexOf(at));
      const names = [...cycle.map((c) => c.id), at.id].join(' → ');
      for (const c of cycle) {
        inCycle.add(c.id);
        problems.push({ code: 'RULE_CYCLE', file, path: `${c.at}/parent`, message: `the parents of rule "${c.id}" loop: ${names}` });
      }
    }
    for (const p of path) state.set(p.id, 'done');
  }

  const resolved = new Map<string, RuleSpec>();
  const tooDeep = new Set<string>();
  const resolve = (r: PartialRule, depth: number): RuleSpec | undefined => {
    const done = resolved.get(r.id);
    if (done !== undefined) return done;
    if (inCycle.has(r.id) || tooDeep.has(r.id)) return undefined;
    if (depth > MAX_DEPTH) {
      tooDeep.add(r.id);
      problems.push({ code: 'RULE_INVALID', file, path: `${r.at}/parent`, message: `more than ${MAX_DEPTH} levels of parents below rule "${r.id}"` });
      return undefined;
    }
    const parent = r.parent === undefined ? undefined : byId.get(r.parent);
    const base = parent === undefined ? undefined : resolve(parent, depth + 1);
    if (r.parent !== undefined && base === undefined) return undefined; // unknown parent or a cycle above: already reported
    const inherited: Partial<Record<InheritedField, string>> = {};
    const from = (field: InheritedField): string => base?.inherited?.[field] ?? base!.id;
    const pick = <T>(field: InheritedField, own: T | undefined, up: T | undefined): T | undefined => {
      if (own !== undefined) return own;
      if (up !== undefined) inherited[field] = from(field);
      return up;
    };
    const key = pick('key', r.key, base?.key);
    const limits = pick('limits', r.limits, base?.limits);
    if (key === undefined || limits === undefined) {
      for (const [missing, value] of [['key', key], ['limits', limits]] as const) {
        if (value === undefined) problems.push({ code: 'RULE_INVALID', file, path: `${r.at}/${missing}`, message: `missing required field "${missing}" (a rule without a parent needs a key and limits)` });
      }
      return undefined;
    }
    if (base !== undefined && r.key !== undefined && !covers(base.key, r.key)) {
      problems.push({ code: 'RULE_INVALID_PATTERN', file, path: `${r.at}/key`, message: `key "${r.key}" is outside its parent's pattern "${base.key}" (a child refines its parent)` });
    }
    let metadata: Record<string, readonly string[]> = r.metadata ?? {};
    if (base !== undefined && Object.keys(base.metadata).length > 0) {
      metadata = { ...base.metadata, ...metadata };
      if (r.metadata === undefined) inherited.metadata = from('metadata');
    }
    const spec: RuleSpec = { id: r.id, key, metadata, priority: pick('priority', r.priority, base?.priority) ?? 0, limits };
    // An override is for one key whatever its tier: it does not inherit its parent's tier constraint.
    const isOverride = r.parent !== undefined && !key.endsWith('*');
    const tier = isOverride ? r.tier : pick('tier', r.tier, base?.tier);
    if (tier !== undefined) spec.tier = tier;
    const maxKeys = pick('maxKeys', r.maxKeys, base?.maxKeys);
    if (maxKeys !== undefined) spec.maxKeys = maxKeys;
    const degraded = pick('degraded', r.degraded, base?.degraded);
    if (degraded !== undefined) spec.degraded = degraded;
    const sharing = pick('nearLimitSharing', r.nearLimitSharing, base?.nearLimitSharing);
    if (sharing !== undefined) spec.nearLimitSharing = sharing;
    const reserve = pick('reserve', r.reserve, base?.reserve);
    if (reserve !== undefined) spec.reserve = reserve;
    const bypass = pick('bypass', r.bypass, base?.bypass);
    if (bypass !== undefined) spec.bypass = bypass;
    const adaptive = pick('adaptive', r.adaptive, base?.adaptive);
    if (adaptive !== undefined) spec.adaptive = adaptive;
    if (r.description !== undefined) spec.description = r.description;
    if (r.parent !== undefined) spec.parent = r.parent;
    const level = levelOf(r.parent !== undefined, key, tier);
    if (level !== 'default') spec.level = level;
    if (Object.keys(inherited).length > 0) spec.inherited = inherited;
    resolved.set(r.id, spec);
    return spec;
  };
  const out: RuleSpec[] = [];
  const seen = new Set<string>();
  for (let ri = 0; ri < rules.length; ri++) {
    const r = rules[ri];
    if (ri % SLICE === SLICE - 1) yield;
    const spec = resolve(r, 0);
    // A duplicate id is reported elsewhere; only its first rule is resolved.
    if (spec !== undefined && !seen.has(r.id) && byId.get(r.id) === r) {
      seen.add(r.id);
      out.push(spec);
    }
  }
  return out;
}

export function levelOf(hasParent: boolean, key: string, tier: string | undefined): RuleLevel {
  if (hasParent && !key.endsWith('*')) return 'override';
  return tier !== undefined ? 'tier' : 'default';
}

/** Whether every key `child` matches is matched by `parent` (both "*", "prefix*" or exact). */
function covers(parent: string, child: string): boolean {
  if (parent === '*') return true;
  if (parent.endsWith('*')) return child.startsWith(parent.slice(0, -1));
  return child === parent;
}

function unknownTier(file: string, path: string, tier: string, names: readonly string[]): ConfigProblem {
  const known = names.length === 0 ? 'the document declares no tiers' : `tiers are ${names.map((n) => `"${n}"`).join(', ')}`;
  return { code: 'RULE_UNKNOWN_TIER', file, path, message: `unknown tier "${tier}": ${known}` };
}

/** A JSON pointer token (RFC 6901). */
function pointer(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}
